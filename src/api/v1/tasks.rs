//! Tasks and workers: the queue, the holder's reports, registration, heartbeats and claims.

use axum::extract::State;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::stock::StockPoll;
use super::WorkerTask;
use crate::agents::{shown, Agents, Caller, CreateTask, StatusUpdate, TaskStatus};
use crate::api::openapi::shapes::{self, SuccessMessage};
use crate::api::{limit_or, Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::store::tasks::TaskRow;

/// The seed's task object, with the queue's bookkeeping.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    pub id: String,
    /// Whose codebase it is for.
    pub owner: String,
    pub codebase_id: String,
    pub title: String,
    pub prompt: String,
    pub agent_type: String,
    pub model: Option<String>,
    pub status: TaskStatus,
    pub priority: i64,
    pub metadata: Value,
    pub session_id: Option<String>,
    pub worker_id: Option<String>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<TaskRow> for TaskView {
    fn from(t: TaskRow) -> Self {
        Self {
            metadata: serde_json::from_str(&t.metadata).unwrap_or_else(|_| json!({})),
            id: t.id,
            owner: t.owner,
            codebase_id: t.codebase_id,
            title: t.title,
            prompt: t.prompt,
            agent_type: t.agent_type,
            model: t.model,
            status: t.status,
            priority: t.priority,
            session_id: t.session_id,
            worker_id: t.worker_id.as_deref().map(|w| shown(w).to_string()),
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            lease_expires_at: t.lease_expires_at,
            result: t.result,
            error: t.error,
            created_at: t.created_at,
            started_at: t.started_at,
            completed_at: t.completed_at,
        }
    }
}

pub fn views(rows: Vec<TaskRow>) -> Vec<TaskView> {
    rows.into_iter().map(TaskView::from).collect()
}

/// `{success, task}`: a task created or reported on.
#[derive(Serialize, ToSchema)]
pub struct TaskEnvelope {
    success: bool,
    task: TaskView,
}

impl From<TaskRow> for TaskEnvelope {
    fn from(t: TaskRow) -> Self {
        Self {
            success: true,
            task: t.into(),
        }
    }
}

/// Priority order, then oldest first.
#[derive(Serialize, ToSchema)]
pub struct TaskList {
    tasks: Vec<TaskView>,
}

#[derive(Serialize, ToSchema)]
pub struct OutputAppended {
    success: bool,
    /// The chunk's sequence number (for `?since=`).
    seq: i64,
}

#[derive(Serialize, ToSchema)]
pub struct TaskOutput {
    task_id: String,
    outputs: Vec<OutputChunk>,
    total: usize,
}

#[derive(Serialize, ToSchema)]
pub struct OutputChunk {
    seq: i64,
    output: String,
    timestamp: DateTime<Utc>,
    worker_id: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/tasks", tag = "v1 tasks",
    summary = "Queue a task on a codebase",
    params(("id" = String, Path, description = "the codebase's id")),
    request_body = CreateTask,
    responses(
        (status = 200, description = "queued", body = TaskEnvelope),
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
) -> ApiResult<Json<TaskEnvelope>> {
    Ok(Json(a.create_task(&c, &id, req).await?.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskFilter {
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    status: Option<TaskStatus>,
    /// 1 to 10000 (default 100).
    limit: Option<i64>,
    /// Only this codebase's (ignored on a codebase's own listing).
    codebase_id: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/opencode/tasks", tag = "v1 tasks",
    summary = "The caller's tasks (a worker's: those it holds or may claim), priority order then oldest first",
    description = "A token-less call from an address whose workers vouched for themselves (CodeTether's worker polling while its push channel is down) is answered with what that worker reads: a bare JSON array of the tasks waiting for those workers, each with `model_ref`. Every caller with a token gets the seed's `{\"tasks\": [...]}`.",
    params(TaskFilter),
    responses(
        (status = 200, description = "the tasks", body = TaskList),
        (status = 400, description = "an unknown status, or limit out of range"),
    ),
)]
pub async fn list_tasks(
    State(a): State<Agents>,
    caller: Option<Extension<Caller>>,
    poll: Option<Extension<StockPoll>>,
    Query(f): Query<TaskFilter>,
) -> ApiResult<Json<Value>> {
    let limit = limit_or(f.limit, 100)?;
    let Some(Extension(c)) = caller else {
        let Some(Extension(poll)) = poll else {
            return Err(ApiError::Unauthorized("Not authenticated".into()));
        };
        let mut waiting: Vec<WorkerTask> = Vec::new();
        for w in &poll.workers {
            waiting.extend(
                a.waiting_for(&w.key)
                    .await?
                    .into_iter()
                    .map(WorkerTask::from),
            );
        }
        waiting.truncate(limit as usize);
        return Ok(Json(json!(waiting)));
    };
    let tasks = a
        .list_tasks(&c, f.codebase_id.as_deref(), f.status, limit)
        .await?;
    Ok(Json(json!(TaskList {
        tasks: views(tasks)
    })))
}

#[utoipa::path(
    get, path = "/v1/opencode/codebases/{id}/tasks", tag = "v1 tasks",
    summary = "A codebase's tasks",
    params(("id" = String, Path, description = "the codebase's id"), TaskFilter),
    responses(
        (status = 200, description = "the tasks", body = TaskList),
        (status = 400, description = "an unknown status, or limit out of range"),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
pub async fn list_codebase_tasks(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(f): Query<TaskFilter>,
) -> ApiResult<Json<TaskList>> {
    let tasks = a
        .list_tasks(&c, Some(&id), f.status, limit_or(f.limit, 100)?)
        .await?;
    Ok(Json(TaskList {
        tasks: views(tasks),
    }))
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
    Ok(Json(a.get_task(&c, &id).await?.into()))
}

#[utoipa::path(
    put, path = "/v1/opencode/tasks/{id}/status", tag = "v1 tasks",
    summary = "Report on a task (its holder): status, result, error, session",
    params(("id" = String, Path, description = "the task's id")),
    request_body = StatusUpdate,
    responses(
        (status = 200, description = "recorded; the report renews the holder's lease", body = TaskEnvelope),
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
) -> ApiResult<Json<TaskEnvelope>> {
    Ok(Json(a.update_task_status(&c, &id, req).await?.into()))
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
        (status = 200, description = "stored", body = OutputAppended),
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
) -> ApiResult<Json<OutputAppended>> {
    let seq = a
        .append_output(&c, &id, req.worker_id.as_deref(), req.attempt, &req.output)
        .await?;
    Ok(Json(OutputAppended { success: true, seq }))
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
        (status = 200, description = "the chunks", body = TaskOutput),
        (status = 404, description = "no task the caller may see"),
    ),
)]
pub async fn get_task_output(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> ApiResult<Json<TaskOutput>> {
    let rows = a.task_output(&c, &id, q.since.unwrap_or(0)).await?;
    let outputs: Vec<OutputChunk> = rows
        .into_iter()
        .map(|r| OutputChunk {
            seq: r.seq,
            output: r.output,
            timestamp: r.created_at,
            worker_id: r.worker_id.as_deref().map(|w| shown(w).to_string()),
        })
        .collect();
    Ok(Json(TaskOutput {
        task_id: id,
        total: outputs.len(),
        outputs,
    }))
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
) -> ApiResult<Json<SuccessMessage>> {
    a.cancel_task(&c, &id).await?;
    Ok(Json(SuccessMessage::new("Task cancelled")))
}
