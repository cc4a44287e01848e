//! `POST /api/workspaces/{id}/stop` and `/start`: a built workspace's container stopped with everything
//! kept, and started again as it was (no build, no init).

use axum::extract::State;
use axum::Extension;

use super::{Json, Path};
use crate::audit::{Audit, Entry};
use crate::error::ApiResult;
use crate::principal::Principal;
use crate::workspaces::model::WorkspaceView;
use crate::workspaces::Workspaces;

#[utoipa::path(
    post, path = "/api/workspaces/{id}/stop", tag = "workspaces",
    summary = "Stop the workspace's container, keeping everything: it becomes `pending` with `container_state: stopped`",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    responses(
        (status = 200, description = "stopped (or already stopped)", body = WorkspaceView),
        (status = 400, description = "a host workspace"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "not built yet, building, or in error for another reason than its container stopping"),
        (status = 502, description = "the engine failed"),
    ),
)]
pub async fn stop_workspace(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkspaceView>> {
    let w = ws.owned(&who, &id).await?;
    let w = ws.stop(&w).await?;
    audit
        .record(Entry::ok(&who.name, "workspace.stop", Some(&w.id)))
        .await;
    Ok(Json(WorkspaceView::from(&w)))
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/start", tag = "workspaces",
    summary = "Start a stopped (or exited) workspace's container again as it was: no build, no init",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    responses(
        (status = 200, description = "running (`status: ready`)", body = WorkspaceView),
        (status = 400, description = "a host workspace"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "not built yet, building, its container removed (build it), or in error for another reason"),
        (status = 502, description = "the engine failed"),
    ),
)]
pub async fn start_workspace(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkspaceView>> {
    let w = ws.owned(&who, &id).await?;
    let w = ws.start(&w).await?;
    audit
        .record(Entry::ok(&who.name, "workspace.start", Some(&w.id)))
        .await;
    Ok(Json(WorkspaceView::from(&w)))
}
