//! Tasks and workers: the queue, the holder's reports, registration, heartbeats and claims.

use axum::body::Bytes;
use axum::extract::State;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::agents::{
    Agents, Caller, CreateTask, RegisterWorker, StatusUpdate, TaskView, WorkerView,
};
use crate::api::{limit_or, optional_json, Json, Path, Query};
use crate::error::ApiResult;

pub async fn create_task(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<CreateTask>,
) -> ApiResult<Json<Value>> {
    let task = a.create_task(&c, &id, req).await?;
    Ok(Json(json!({ "success": true, "task": task })))
}

#[derive(Deserialize)]
pub struct TaskFilter {
    status: Option<String>,
    limit: Option<i64>,
    codebase_id: Option<String>,
}

pub async fn list_tasks(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Query(f): Query<TaskFilter>,
) -> ApiResult<Json<Value>> {
    let tasks = a
        .list_tasks(
            &c,
            f.codebase_id.as_deref(),
            f.status.as_deref(),
            limit_or(f.limit, 100)?,
        )
        .await?;
    Ok(Json(json!({ "tasks": tasks })))
}

pub async fn list_codebase_tasks(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(f): Query<TaskFilter>,
) -> ApiResult<Json<Value>> {
    let tasks = a
        .list_tasks(&c, Some(&id), f.status.as_deref(), limit_or(f.limit, 100)?)
        .await?;
    Ok(Json(json!({ "tasks": tasks })))
}

pub async fn get_task(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    Ok(Json(a.get_task(&c, &id).await?))
}

pub async fn update_task_status(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<StatusUpdate>,
) -> ApiResult<Json<Value>> {
    let task = a.update_task_status(&c, &id, req).await?;
    Ok(Json(json!({ "success": true, "task": task })))
}

#[derive(Deserialize)]
pub struct OutputBody {
    worker_id: Option<String>,
    attempt: Option<i64>,
    output: String,
}

pub async fn append_task_output(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<OutputBody>,
) -> ApiResult<Json<Value>> {
    let seq = a
        .append_output(&c, &id, req.worker_id.as_deref(), req.attempt, &req.output)
        .await?;
    Ok(Json(json!({ "success": true, "seq": seq })))
}

#[derive(Deserialize)]
pub struct Since {
    since: Option<i64>,
}

pub async fn get_task_output(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.task_output(&c, &id, q.since.unwrap_or(0)).await?))
}

pub async fn cancel_task(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    a.cancel_task(&c, &id).await?;
    Ok(Json(
        json!({ "success": true, "message": "Task cancelled" }),
    ))
}

pub async fn list_workers(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Vec<WorkerView>>> {
    Ok(Json(a.list_workers(&c).await?))
}

pub async fn register_worker(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Json(req): Json<RegisterWorker>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.register_worker(&c, req).await?))
}

pub async fn unregister_worker(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.unregister_worker(&c, &id).await?))
}

#[derive(Default, Deserialize)]
pub struct HeartbeatBody {
    codebases: Option<Vec<String>>,
}

pub async fn heartbeat_worker(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: HeartbeatBody = optional_json(&body)?;
    Ok(Json(a.heartbeat(&c, &id, req.codebases).await?))
}

#[derive(Default, Deserialize)]
pub struct ClaimBody {
    codebase_id: Option<String>,
}

pub async fn claim_task(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: ClaimBody = optional_json(&body)?;
    let task = a.claim(&c, &id, req.codebase_id.as_deref()).await?;
    Ok(Json(json!({ "success": true, "task": task })))
}
