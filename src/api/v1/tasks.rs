//! Tasks and workers: the queue, the holder's reports, registration, heartbeats and claims.

use axum::body::Bytes;
use axum::extract::State;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::agents::{
    Agents, Caller, CreateTask, RegisterWorker, StatusUpdate, TaskView, WorkerView,
};
use crate::api::openapi::shapes;
use crate::api::{limit_or, optional_json, Json, Path, Query};
use crate::error::ApiResult;

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/tasks", tag = "v1 tasks",
    summary = "Queue a task on a codebase",
    params(("id" = String, Path, description = "the codebase's id")),
    request_body = CreateTask,
    responses(
        (status = 200, description = "queued", body = shapes::TaskEnvelope),
        (status = 400, description = "an empty or oversized title or prompt, a model not written `provider/model`, a priority outside -1000 to 1000, or non-object metadata"),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
pub async fn create_task(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<CreateTask>,
) -> ApiResult<Json<Value>> {
    let task = a.create_task(&c, &id, req).await?;
    Ok(Json(json!({ "success": true, "task": task })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskFilter {
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    status: Option<String>,
    /// 1 to 10000 (default 100).
    limit: Option<i64>,
    /// Only this codebase's (ignored on a codebase's own listing).
    codebase_id: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/opencode/tasks", tag = "v1 tasks",
    summary = "The caller's tasks (a worker's: those it holds or may claim), priority order then oldest first",
    params(TaskFilter),
    responses(
        (status = 200, description = "the tasks", body = shapes::TaskList),
        (status = 400, description = "an unknown status, or limit out of range"),
    ),
)]
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

#[utoipa::path(
    get, path = "/v1/opencode/codebases/{id}/tasks", tag = "v1 tasks",
    summary = "A codebase's tasks",
    params(("id" = String, Path, description = "the codebase's id"), TaskFilter),
    responses(
        (status = 200, description = "the tasks", body = shapes::TaskList),
        (status = 400, description = "an unknown status, or limit out of range"),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
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

#[utoipa::path(
    get, path = "/v1/opencode/tasks/{id}", tag = "v1 tasks",
    summary = "Read a task",
    params(("id" = String, Path, description = "the task's id")),
    responses(
        (status = 200, description = "the task", body = TaskView),
        (status = 404, description = "no task the caller may see"),
    ),
)]
pub async fn get_task(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    Ok(Json(a.get_task(&c, &id).await?))
}

#[utoipa::path(
    put, path = "/v1/opencode/tasks/{id}/status", tag = "v1 tasks",
    summary = "Report on a task (its holder): status, result, error, session",
    params(("id" = String, Path, description = "the task's id")),
    request_body = StatusUpdate,
    responses(
        (status = 200, description = "recorded; the report renews the holder's lease", body = shapes::TaskEnvelope),
        (status = 400, description = "an unknown status, or a user's report without `worker_id`"),
        (status = 403, description = "a worker reporting as another worker"),
        (status = 404, description = "no task the caller may see"),
        (status = 409, description = "the reporter does not hold the task, the report is about an earlier attempt, or the transition makes no sense"),
    ),
)]
pub async fn update_task_status(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<StatusUpdate>,
) -> ApiResult<Json<Value>> {
    let task = a.update_task_status(&c, &id, req).await?;
    Ok(Json(json!({ "success": true, "task": task })))
}

#[derive(Deserialize, ToSchema)]
pub struct OutputBody {
    /// The holder (a user's token names it).
    worker_id: Option<String>,
    /// The claim's attempt; a chunk about an earlier one is refused.
    attempt: Option<i64>,
    /// At most 1 MiB.
    output: String,
}

#[utoipa::path(
    post, path = "/v1/opencode/tasks/{id}/output", tag = "v1 tasks",
    summary = "Add a chunk of output to a task (its holder); kept in the store",
    params(("id" = String, Path, description = "the task's id")),
    request_body = OutputBody,
    responses(
        (status = 200, description = "stored", body = shapes::OutputAppended),
        (status = 400, description = "a chunk over 1 MiB, or a user's report without `worker_id`"),
        (status = 403, description = "a worker reporting as another worker"),
        (status = 404, description = "no task the caller may see"),
        (status = 409, description = "the reporter does not hold the task, or the chunk is about an earlier attempt"),
    ),
)]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Since {
    /// Only chunks after this `seq` (default 0: all).
    since: Option<i64>,
}

#[utoipa::path(
    get, path = "/v1/opencode/tasks/{id}/output", tag = "v1 tasks",
    summary = "A task's stored output, in order",
    params(("id" = String, Path, description = "the task's id"), Since),
    responses(
        (status = 200, description = "the chunks", body = shapes::TaskOutput),
        (status = 404, description = "no task the caller may see"),
    ),
)]
pub async fn get_task_output(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.task_output(&c, &id, q.since.unwrap_or(0)).await?))
}

#[utoipa::path(
    post, path = "/v1/opencode/tasks/{id}/cancel", tag = "v1 tasks",
    summary = "Cancel a pending or running task (a worker finds out at its next report)",
    params(("id" = String, Path, description = "the task's id")),
    responses(
        (status = 200, description = "cancelled", body = shapes::SuccessMessage),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no task the caller may see"),
        (status = 409, description = "the task has already ended"),
    ),
)]
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

#[utoipa::path(
    get, path = "/v1/opencode/workers", tag = "v1 workers",
    summary = "The caller's workers (an admin's: everyone's; a worker's: itself), `active` while they heartbeat",
    responses(
        (status = 200, description = "the workers", body = Vec<WorkerView>),
    ),
)]
pub async fn list_workers(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Vec<WorkerView>>> {
    Ok(Json(a.list_workers(&c).await?))
}

#[utoipa::path(
    post, path = "/v1/opencode/workers/register", tag = "v1 workers",
    summary = "Register a worker; the answer carries its token, shown once",
    request_body = RegisterWorker,
    responses(
        (status = 200, description = "registered", body = shapes::WorkerRegistered),
        (status = 400, description = "an empty or oversized name or hostname, or over 1000 capabilities or codebases"),
        (status = 403, description = "a worker's token, or codebases not registered with this worker"),
    ),
)]
pub async fn register_worker(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Json(req): Json<RegisterWorker>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.register_worker(&c, req).await?))
}

#[utoipa::path(
    post, path = "/v1/opencode/workers/{id}/unregister", tag = "v1 workers",
    summary = "Unregister a worker; the tasks it held go back to the queue",
    params(("id" = String, Path, description = "the worker's id")),
    responses(
        (status = 200, description = "unregistered", body = shapes::WorkerUnregistered),
        (status = 404, description = "no worker of the caller's with that id; register again"),
        (status = 409, description = "a worker's token naming another worker"),
    ),
)]
pub async fn unregister_worker(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.unregister_worker(&c, &id).await?))
}

#[derive(Default, Deserialize, ToSchema)]
pub struct HeartbeatBody {
    /// The codebases the worker serves now; only ones registered with its id.
    codebases: Option<Vec<String>>,
}

#[utoipa::path(
    post, path = "/v1/opencode/workers/{id}/heartbeat", tag = "v1 workers",
    summary = "Keep a worker online and its task leases alive",
    params(("id" = String, Path, description = "the worker's id")),
    request_body(content = Option<HeartbeatBody>, description = "optional"),
    responses(
        (status = 200, description = "recorded", body = shapes::Success),
        (status = 400, description = "over 1000 codebases"),
        (status = 403, description = "codebases not registered with this worker"),
        (status = 404, description = "no worker of the caller's with that id; register again"),
        (status = 409, description = "a worker's token naming another worker"),
    ),
)]
pub async fn heartbeat_worker(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: HeartbeatBody = optional_json(&body)?;
    Ok(Json(a.heartbeat(&c, &id, req.codebases).await?))
}

#[derive(Default, Deserialize, ToSchema)]
pub struct ClaimBody {
    /// Claim only from this codebase (one the worker serves).
    codebase_id: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/opencode/workers/{id}/claim", tag = "v1 workers",
    summary = "Take the next task the worker serves, atomically: a lease of `BERTH_TASK_LEASE_SECS`",
    params(("id" = String, Path, description = "the worker's id")),
    request_body(content = Option<ClaimBody>, description = "optional"),
    responses(
        (status = 200, description = "the task, or `task: null` when none is queued", body = shapes::Claimed),
        (status = 403, description = "a worker's token naming another worker"),
        (status = 404, description = "no such worker or codebase of the caller's"),
        (status = 409, description = "the worker does not serve the codebase"),
    ),
)]
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
