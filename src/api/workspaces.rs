//! `/api/workspaces`: CRUD, build, exec, init-log, rerun-init, debug. Every route that names a
//! workspace acts only on one the caller may act on (their own; any for an admin); others are 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use axum::body::Bytes;

use super::{optional_json, Json, Path, Query};
use crate::audit::{Audit, Entry, Outcome};
use crate::error::ApiResult;
use crate::principal::Principal;
use crate::workspaces::model::WorkspaceView;
use crate::workspaces::{
    CreateWorkspace, ExecResult, ExecSpec, InitLog, LogWindow, RerunInitResult, SyncReport,
    UpdateWorkspace, Workspaces,
};

#[utoipa::path(
    get, path = "/api/workspaces", tag = "workspaces",
    summary = "The caller's workspaces (an admin's: everyone's)",
    responses(
        (status = 200, description = "the workspaces", body = Vec<WorkspaceView>),
    ),
)]
pub async fn list_workspaces(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Vec<WorkspaceView>>> {
    Ok(Json(
        ws.list_for(&who)
            .await?
            .iter()
            .map(WorkspaceView::from)
            .collect(),
    ))
}

#[utoipa::path(
    post, path = "/api/workspaces", tag = "workspaces",
    summary = "Create a workspace",
    request_body = CreateWorkspace,
    responses(
        (status = 201, description = "created; a container workspace is `pending` until built (one from a template starts building at once)", body = WorkspaceView),
        (status = 400, description = "an unknown field, a container-only field on a host workspace, or a value berth refuses (name, distro, template, packages, limits, env vars, init script, skills or tools that do not exist)"),
        (status = 403, description = "`host_workspaces_disabled`: `workspace_type: host` while host workspaces are off; `forbidden`: a host workspace or `network: host` for anyone but an admin"),
        (status = 409, description = "the caller already has a workspace of that name"),
    ),
)]
pub async fn create_workspace(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Json(req): Json<CreateWorkspace>,
) -> ApiResult<(StatusCode, Json<WorkspaceView>)> {
    let created = ws.create(&who, req).await?;
    audit
        .record(
            Entry::ok(&who.name, "workspace.create", Some(&created.id)).detail(serde_json::json!({
                "name": created.name,
                "type": created.workspace_type.as_str(),
                "network": created.network,
            })),
        )
        .await;
    Ok((StatusCode::CREATED, Json(WorkspaceView::from(&created))))
}

#[utoipa::path(
    get, path = "/api/workspaces/{id}", tag = "workspaces",
    summary = "Read a workspace",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    responses(
        (status = 200, description = "the workspace", body = WorkspaceView),
        (status = 404, description = "no workspace the caller may act on"),
    ),
)]
pub async fn get_workspace(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkspaceView>> {
    Ok(Json(WorkspaceView::from(&ws.owned(&who, &id).await?)))
}

#[utoipa::path(
    put, path = "/api/workspaces/{id}", tag = "workspaces",
    summary = "Edit a workspace; a change of distro, network, packages or limits to a built one sets `needs_rebuild`",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    request_body = UpdateWorkspace,
    responses(
        (status = 200, description = "the edited workspace", body = WorkspaceView),
        (status = 400, description = "an unknown field, a container-only field on a host workspace, or a value berth refuses"),
        (status = 403, description = "`network: host` for anyone but an admin"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "the caller already has a workspace of that name"),
    ),
)]
pub async fn update_workspace(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(req): Json<UpdateWorkspace>,
) -> ApiResult<Json<WorkspaceView>> {
    let id = ws.owned(&who, &id).await?.id;
    let updated = ws.update(&who, &id, req).await?;
    audit
        .record(Entry::ok(&who.name, "workspace.update", Some(&id)))
        .await;
    Ok(Json(WorkspaceView::from(&updated)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Keep the `/workspace` volume.
    #[param(default = false)]
    #[serde(default)]
    keep_volume: bool,
}

#[utoipa::path(
    delete, path = "/api/workspaces/{id}", tag = "workspaces",
    summary = "Delete a workspace: its container, image and (unless `keep_volume`) volume; a build in progress is cancelled",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"), DeleteQuery),
    responses(
        (status = 204, description = "deleted; a host workspace's directory stays"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 502, description = "the engine failed to remove the container, image or volume"),
    ),
)]
pub async fn delete_workspace(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let id = ws.owned(&who, &id).await?.id;
    ws.delete_for(&who, &id, q.keep_volume).await?;
    audit
        .record(Entry::ok(&who.name, "workspace.delete", Some(&id)))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    /// Build with this distro instead of the workspace's.
    distro: Option<String>,
    /// Rebuild the image and replace the container, keeping `/workspace`.
    #[serde(default)]
    rebuild: bool,
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/build", tag = "workspaces",
    summary = "Build a container workspace in the background; poll its `status`",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    request_body(content = Option<BuildRequest>, description = "optional; an empty body builds with the workspace's settings"),
    responses(
        (status = 202, description = "the build started (`status: building`)", body = WorkspaceView),
        (status = 400, description = "a host workspace (nothing to build), or an unknown distro"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "already building, or the distro's base image is missing and may not be pulled"),
        (status = 502, description = "the engine failed"),
    ),
)]
pub async fn build_workspace(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<WorkspaceView>)> {
    let id = ws.owned(&who, &id).await?.id;
    let req: BuildRequest = optional_json(&body)?;
    let w = ws
        .start_build(&id, req.distro.as_deref(), req.rebuild)
        .await?;
    audit
        .record(
            Entry::ok(&who.name, "workspace.build", Some(&id)).detail(serde_json::json!({
                "rebuild": req.rebuild,
                "distro": w.distro,
            })),
        )
        .await;
    Ok((StatusCode::ACCEPTED, Json(WorkspaceView::from(&w))))
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/exec", tag = "workspaces",
    summary = "Run a command in the workspace and answer its capped output",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    request_body = ExecSpec,
    responses(
        (status = 200, description = "the command ran (or timed out: `timed_out`)", body = ExecResult),
        (status = 400, description = "an empty command, a NUL byte, a timeout out of range, or a missing `cwd`"),
        (status = 403, description = "`host_workspaces_disabled`: a host workspace while they are off; `forbidden`: a host workspace for anyone but an admin"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "the workspace is not ready, or its container is not running"),
        (status = 502, description = "the engine failed"),
    ),
)]
pub async fn exec_in_workspace(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(spec): Json<ExecSpec>,
) -> ApiResult<Json<ExecResult>> {
    let target = ws.usable(&who, &id).await?;
    let id = target.id.clone();
    // The command runs to its end even if the client hangs up, so it is run and recorded (command
    // line, never env values) apart from the request.
    let detail = serde_json::json!({ "command": spec.command, "cwd": spec.cwd });
    let runner = ws.clone();
    // The answer goes out before the audit entry is written.
    let result = ws
        .detach_answering(move |answer| async move {
            let result = runner.exec(target, spec).await;
            let outcome = if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Failed
            };
            let _ = answer.send(result);
            audit
                .record(Entry {
                    outcome,
                    ..Entry::ok(&who.name, "workspace.exec", Some(&id)).detail(detail)
                })
                .await;
        })
        .await;
    Ok(Json(result?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InitLogQuery {
    /// The last N lines (default 500, at most 100000).
    lines: Option<usize>,
    /// Instead: the complete lines from this byte offset (a follower passes the last `next_byte`).
    from_byte: Option<u64>,
}

#[utoipa::path(
    get, path = "/api/workspaces/{id}/init-log", tag = "workspaces",
    summary = "The init log: image build and init output, during the build and after",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"), InitLogQuery),
    responses(
        (status = 200, description = "the log's last lines", body = InitLog),
        (status = 404, description = "no workspace the caller may act on"),
    ),
)]
pub async fn get_init_log(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<InitLogQuery>,
) -> ApiResult<Json<InitLog>> {
    let id = ws.owned(&who, &id).await?.id;
    let window = match q.from_byte {
        Some(offset) => LogWindow::From(offset),
        None => LogWindow::Last(q.lines.unwrap_or(500).clamp(1, 100_000)),
    };
    Ok(Json(ws.init_log(&id, window).await?))
}

#[derive(Deserialize, Default, ToSchema)]
pub struct RerunInitRequest {
    /// Bound on the run (default `BERTH_INIT_TIMEOUT_SECS`).
    timeout_secs: Option<u64>,
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/rerun-init", tag = "workspaces",
    summary = "Run the workspace's init again in its existing container",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    request_body(content = Option<RerunInitRequest>, description = "optional"),
    responses(
        (status = 200, description = "init ran (see `success`)", body = RerunInitResult),
        (status = 400, description = "a host workspace, or a timeout out of range"),
        (status = 403, description = "`host_workspaces_disabled`: a host workspace while they are off; `forbidden`: a host workspace for anyone but an admin"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "the workspace is building, not ready, or its container is not running"),
        (status = 502, description = "the engine failed"),
    ),
)]
pub async fn rerun_init(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<RerunInitResult>> {
    let id = ws.usable(&who, &id).await?.id;
    let req: RerunInitRequest = optional_json(&body)?;
    audit
        .record(Entry::ok(&who.name, "workspace.rerun_init", Some(&id)))
        .await;
    Ok(Json(ws.rerun_init(&id, req.timeout_secs).await?))
}

#[utoipa::path(
    get, path = "/api/workspaces/{id}/debug", tag = "workspaces",
    summary = "The container's real state from the engine: running, exit code, OOM, restarts, mounts, limits, hardening, init state, last error",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    responses(
        (status = 200, description = "the engine's view (a free-form object)", body = Object),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 502, description = "the engine failed"),
    ),
)]
pub async fn debug_workspace(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = ws.owned(&who, &id).await?.id;
    Ok(Json(ws.debug(&id).await?))
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/sync", tag = "workspaces",
    summary = "Copy the workspace's skills and tools into `.opencode/`",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    responses(
        (status = 200, description = "what was copied, and what the library lacks", body = SyncReport),
        (status = 403, description = "`host_workspaces_disabled`: a host workspace while they are off; `forbidden`: a host workspace for anyone but an admin"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "a container workspace that is not ready"),
        (status = 502, description = "the engine failed"),
    ),
)]
pub async fn sync_workspace(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<SyncReport>> {
    let id = ws.usable(&who, &id).await?.id;
    Ok(Json(ws.sync_skills(&id).await?))
}
