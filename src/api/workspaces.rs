//! `/api/workspaces`: CRUD, build, exec, init-log, rerun-init, debug. Every route that names a
//! workspace acts only on one the caller may act on (their own; any for an admin); others are 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;

use axum::body::Bytes;

use super::{optional_json, Json, Path, Query};
use crate::audit::{Audit, Entry, Outcome};
use crate::error::ApiResult;
use crate::principal::Principal;
use crate::workspaces::model::WorkspaceView;
use crate::workspaces::{
    CreateWorkspace, ExecResult, ExecSpec, InitLog, RerunInitResult, SyncReport, UpdateWorkspace,
    Workspaces,
};

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

pub async fn get_workspace(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkspaceView>> {
    Ok(Json(WorkspaceView::from(&ws.owned(&who, &id).await?)))
}

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

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    keep_volume: bool,
}

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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BuildRequest {
    distro: Option<String>,
    #[serde(default)]
    rebuild: bool,
}

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

pub async fn exec_in_workspace(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(spec): Json<ExecSpec>,
) -> ApiResult<Json<ExecResult>> {
    let id = ws.usable(&who, &id).await?.id;
    // The command line is recorded; env values never are.
    let detail = serde_json::json!({ "command": spec.command, "cwd": spec.cwd });
    let result = ws.exec(&id, spec).await;
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    audit
        .record(Entry {
            outcome,
            ..Entry::ok(&who.name, "workspace.exec", Some(&id)).detail(detail)
        })
        .await;
    Ok(Json(result?))
}

#[derive(Deserialize)]
pub struct InitLogQuery {
    lines: Option<usize>,
}

pub async fn get_init_log(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<InitLogQuery>,
) -> ApiResult<Json<InitLog>> {
    let id = ws.owned(&who, &id).await?.id;
    let lines = q.lines.unwrap_or(500).clamp(1, 100_000);
    Ok(Json(ws.init_log(&id, lines).await?))
}

#[derive(Deserialize, Default)]
pub struct RerunInitRequest {
    timeout_secs: Option<u64>,
}

pub async fn rerun_init(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<RerunInitResult>> {
    let id = ws.usable(&who, &id).await?.id;
    let req: RerunInitRequest = optional_json(&body)?;
    Ok(Json(ws.rerun_init(&id, req.timeout_secs).await?))
}

pub async fn debug_workspace(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = ws.owned(&who, &id).await?.id;
    Ok(Json(ws.debug(&id).await?))
}

pub async fn sync_workspace(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<SyncReport>> {
    let id = ws.usable(&who, &id).await?.id;
    Ok(Json(ws.sync_skills(&id).await?))
}
