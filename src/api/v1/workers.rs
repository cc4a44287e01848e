//! Workers: registration, heartbeats, claims, and the push channel CodeTether's worker listens on
//! (`/v1/worker/*`), with the shapes it reads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::Extension;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use super::stock::Unvouched;
use super::TaskView;
use crate::agents::{
    shown, Agents, Caller, OpenChannel, Push, RegisterWorker, Registered, Tied, Worker,
};
use crate::api::auth::Lapse;
use crate::api::openapi::shapes;
use crate::api::{optional_json, Json, Path, Query};
use crate::error::{ApiError, ApiResult};
use crate::store::tasks::TaskRow;

/// A task as a worker is handed it: the seed's task object, plus `model_ref` (CodeTether's name for
/// the model its worker passes to OpenCode).
#[derive(Serialize, ToSchema)]
pub struct WorkerTask {
    #[serde(flatten)]
    pub task: TaskView,
    pub model_ref: Option<String>,
}

impl From<TaskRow> for WorkerTask {
    fn from(row: TaskRow) -> Self {
        let task = TaskView::from(row);
        Self {
            model_ref: task.model.clone(),
            task,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    pub worker_id: String,
    pub owner: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub hostname: Option<String>,
    pub codebases: Vec<String>,
    pub registered_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// `active` while its push channel is open or heartbeats come within a lease, else `offline`.
    pub status: WorkerStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerStatus {
    Active,
    Offline,
}

/// The answer to a registration.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerRegistered {
    pub success: bool,
    pub worker_id: String,
    /// The worker's token (`bwt_…`), shown once; only when a user's token registered it.
    pub token: Option<String>,
    pub worker: WorkerView,
}

impl From<Worker> for WorkerView {
    fn from(w: Worker) -> Self {
        let r = w.row;
        Self {
            capabilities: serde_json::from_str(&r.capabilities).unwrap_or_default(),
            codebases: serde_json::from_str(&r.codebases).unwrap_or_default(),
            worker_id: shown(&r.id).to_string(),
            owner: r.owner,
            name: r.name,
            hostname: r.hostname,
            registered_at: r.registered_at,
            last_seen: r.last_seen,
            status: if w.online {
                WorkerStatus::Active
            } else {
                WorkerStatus::Offline
            },
        }
    }
}

impl From<Registered> for WorkerRegistered {
    fn from(r: Registered) -> Self {
        let worker = WorkerView::from(r.worker);
        Self {
            success: true,
            worker_id: worker.worker_id.clone(),
            token: r.token,
            worker,
        }
    }
}

#[utoipa::path(
    get, path = "/v1/opencode/workers", tag = "v1 workers",
    summary = "The caller's workers (an admin's: everyone's; a worker's: itself), `active` while connected or heartbeating",
    responses(
        (status = 200, description = "the workers", body = Vec<WorkerView>),
    ),
)]
pub async fn list_workers(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Vec<WorkerView>>> {
    let all = a.list_workers(&c).await?;
    Ok(Json(all.into_iter().map(WorkerView::from).collect()))
}

#[utoipa::path(
    post, path = "/v1/opencode/workers/register", tag = "v1 workers",
    summary = "Register a worker under its own id (again: the same worker); a user's token gets the worker's token, shown once",
    description = "Without a token (CodeTether's worker), the registration is held until the worker's push channel opens with its token from the same address.",
    request_body = RegisterWorker,
    responses(
        (status = 200, description = "registered", body = WorkerRegistered),
        (status = 400, description = "an empty or oversized name or hostname, a worker id of other characters, or over 1000 capabilities or codebases"),
        (status = 403, description = "a worker's token naming another worker, or codebases registered with another worker"),
    ),
)]
pub async fn register_worker(
    State(a): State<Agents>,
    caller: Option<Extension<Caller>>,
    unvouched: Option<Extension<Unvouched>>,
    Json(req): Json<RegisterWorker>,
) -> ApiResult<Json<Value>> {
    if let Some(Extension(c)) = caller {
        let registered = WorkerRegistered::from(a.register_worker(&c, req).await?);
        return Ok(Json(json!(registered)));
    }
    let Some(Extension(u)) = unvouched else {
        return Err(ApiError::Unauthorized("Not authenticated".into()));
    };
    let name = req.name.clone();
    a.hold_worker(u.addr, req)?;
    Ok(Json(json!({
        "success": true,
        "worker_id": u.worker_id,
        "token": null,
        "message": format!("worker {name} is registered once its push channel opens with its token"),
    })))
}

#[derive(Serialize, ToSchema)]
pub struct WorkerUnregistered {
    success: bool,
    message: String,
    /// Tasks it held, back in the queue.
    requeued_tasks: Vec<String>,
}

#[utoipa::path(
    post, path = "/v1/opencode/workers/{id}/unregister", tag = "v1 workers",
    summary = "Unregister a worker; the tasks it held go back to the queue",
    params(("id" = String, Path, description = "the worker's id")),
    responses(
        (status = 200, description = "unregistered", body = WorkerUnregistered),
        (status = 404, description = "no worker of the caller's with that id; register again"),
        (status = 409, description = "a worker's token naming another worker"),
    ),
)]
pub async fn unregister_worker(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkerUnregistered>> {
    let requeued_tasks = a.unregister_worker(&c, &id).await?;
    Ok(Json(WorkerUnregistered {
        success: true,
        message: format!("Worker {id} unregistered"),
        requeued_tasks,
    }))
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
        (status = 403, description = "codebases registered with another worker"),
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
    a.heartbeat(&c, &id, req.codebases).await?;
    Ok(Json(json!({ "success": true })))
}

#[derive(Default, Deserialize, ToSchema)]
pub struct ClaimBody {
    /// Claim only from this codebase (one the worker serves).
    codebase_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Claimed {
    success: bool,
    /// `null` when none is queued.
    task: Option<TaskView>,
}

#[utoipa::path(
    post, path = "/v1/opencode/workers/{id}/claim", tag = "v1 workers",
    summary = "Take the next task the worker serves, atomically: a lease of `BERTH_TASK_LEASE_SECS`",
    params(("id" = String, Path, description = "the worker's id")),
    request_body(content = Option<ClaimBody>, description = "optional"),
    responses(
        (status = 200, description = "the task, or `task: null` when none is queued", body = Claimed),
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
) -> ApiResult<Json<Claimed>> {
    let req: ClaimBody = optional_json(&body)?;
    let task = a.claim(&c, &id, req.codebase_id.as_deref()).await?;
    Ok(Json(Claimed {
        success: true,
        task: task.map(TaskView::from),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChannelQuery {
    /// The worker's id (registered with it if it is new).
    #[allow(dead_code)] // read by the auth layer, which acts as this worker
    worker_id: Option<String>,
    /// Its name, for a worker registered by opening the channel.
    agent_name: Option<String>,
}

/// How often the channel shows it is alive (the stock worker reconnects after 45 s of silence).
const CHANNEL_BEAT: Duration = Duration::from_secs(15);

#[utoipa::path(
    get, path = "/v1/worker/tasks/stream", tag = "v1 workers",
    summary = "A worker's push channel (SSE): tasks of its codebases as they are queued",
    description = "Needs the worker's token, or a user's (worker) token with `worker_id`. Opening it registers the worker if it is new and vouches for the token-less calls it makes from the same address. Events: `connected`; `task_available` (a task it may claim, with `model_ref`), also every task waiting when it opens; `task.cancelled` (`{task_id}`); `heartbeat` every 15 s.",
    params(
        ChannelQuery,
        ("X-Codebases" = Option<String>, Header, description = "comma-separated ids of the codebases it serves (its own only)"),
    ),
    responses(
        (status = 200, description = "the channel", content_type = "text/event-stream", body = String),
        (status = 400, description = "no worker id"),
        (status = 403, description = "codebases registered with another worker"),
    ),
)]
pub async fn task_channel(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Extension(lapse): Extension<Lapse>,
    Extension(tied): Extension<Tied>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<ChannelQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let listed: Vec<String> = headers
        .get("x-codebases")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let open = a
        .open_channel(&c, peer.ip(), q.agent_name.as_deref(), &listed, &tied.token)
        .await?;
    let key = match &c {
        Caller::Worker { id, .. } => id.clone(),
        Caller::User(_) => unreachable!("open_channel takes only workers"),
    };
    let state = ChannelState {
        agents: a.clone(),
        caller: c.clone(),
        key,
        queued: Vec::new(),
        open,
        started: false,
        beat: {
            // Often enough to renew a lease shorter than the usual beat, too.
            let every = CHANNEL_BEAT
                .min(a.lease_period() / 3)
                .max(Duration::from_secs(1));
            tokio::time::interval_at(tokio::time::Instant::now() + every, every)
        },
    };
    let stream =
        futures::StreamExt::take_until(futures::stream::unfold(state, next_frame), lapse.wait());
    Ok(Sse::new(stream))
}

struct ChannelState {
    agents: Agents,
    caller: Caller,
    key: String,
    open: OpenChannel,
    /// Frames ready to send, in order.
    queued: Vec<SseEvent>,
    started: bool,
    beat: tokio::time::Interval,
}

fn task_frame(t: TaskRow) -> SseEvent {
    let data = serde_json::to_string(&WorkerTask::from(t)).unwrap_or_default();
    SseEvent::default().event("task_available").data(data)
}

async fn next_frame(mut s: ChannelState) -> Option<(Result<SseEvent, Infallible>, ChannelState)> {
    if !s.started {
        s.started = true;
        let hello = json!({
            "worker_id": s.open.worker_id,
            "codebases": s.open.codebases,
            "message": "connected; tasks of these codebases are pushed here",
        });
        let waiting = std::mem::take(&mut s.open.waiting);
        s.queued = waiting.into_iter().map(task_frame).collect();
        let frame = SseEvent::default()
            .event("connected")
            .data(hello.to_string());
        return Some((Ok(frame), s));
    }
    loop {
        if !s.queued.is_empty() {
            return Some((Ok(s.queued.remove(0)), s));
        }
        let shutdown = s.agents.shutdown_token();
        tokio::select! {
            got = s.open.rx.recv() => match got {
                Ok(Push::Task(t)) => return Some((Ok(task_frame(*t)), s)),
                Ok(Push::Cancelled(id)) => {
                    let data = json!({ "task_id": id, "status": "cancelled" }).to_string();
                    return Some((Ok(SseEvent::default().event("task.cancelled").data(data)), s));
                }
                // Fell behind: what waits now is sent again (the worker skips ids it has seen).
                Err(RecvError::Lagged(_)) => {
                    if let Ok(waiting) = s.agents.waiting_for(&s.key).await {
                        s.queued = waiting.into_iter().map(task_frame).collect();
                    }
                }
                Err(RecvError::Closed) => return None,
            },
            _ = s.beat.tick() => {
                s.agents.channel_alive(&s.caller).await;
                let data = json!({ "time": chrono::Utc::now() }).to_string();
                return Some((Ok(SseEvent::default().event("heartbeat").data(data)), s));
            }
            _ = shutdown.cancelled() => return None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct TaskIdBody {
    task_id: String,
}

#[utoipa::path(
    post, path = "/v1/worker/tasks/claim", tag = "v1 workers",
    summary = "Claim one task by id (the worker named by the token or `X-Worker-ID`), atomically",
    request_body = TaskIdBody,
    responses(
        (status = 200, description = "claimed: the task is running, held by the worker", body = Claimed),
        (status = 404, description = "no such task, or no such worker of the caller's"),
        (status = 409, description = "taken already, no longer pending, or of a codebase the worker does not serve"),
    ),
)]
pub async fn claim_by_id(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Json(req): Json<TaskIdBody>,
) -> ApiResult<Json<Claimed>> {
    let task = a.claim_by_id(&c, &req.task_id).await?;
    Ok(Json(Claimed {
        success: true,
        task: Some(task.into()),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Released {
    success: bool,
    /// The worker still held it: it is queued again.
    requeued: bool,
}

#[utoipa::path(
    post, path = "/v1/worker/tasks/release", tag = "v1 workers",
    summary = "The worker is done with a task; one it still holds (no final report) is queued again",
    request_body = TaskIdBody,
    responses(
        (status = 200, description = "released", body = Released),
        (status = 404, description = "no task the worker may see"),
        (status = 409, description = "another worker holds it"),
    ),
)]
pub async fn release_task(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Json(req): Json<TaskIdBody>,
) -> ApiResult<Json<Released>> {
    let requeued = a.release(&c, &req.task_id).await?;
    Ok(Json(Released {
        success: true,
        requeued,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct CodebasesBody {
    /// Ids of the codebases it serves; ids that name no codebase (`global`) are ignored.
    codebases: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WorkerCodebases {
    success: bool,
    /// What is recorded: the worker's own codebases of the list.
    codebases: Vec<String>,
}

#[utoipa::path(
    put, path = "/v1/worker/codebases", tag = "v1 workers",
    summary = "Set the codebases the worker (named by `worker_id`) serves",
    params(("worker_id" = Option<String>, Query, description = "the worker, with a user's token")),
    request_body = CodebasesBody,
    responses(
        (status = 200, description = "recorded", body = WorkerCodebases),
        (status = 403, description = "codebases registered with another worker"),
        (status = 404, description = "no such worker of the caller's"),
    ),
)]
pub async fn put_worker_codebases(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Json(req): Json<CodebasesBody>,
) -> ApiResult<Json<WorkerCodebases>> {
    let Caller::Worker { id, .. } = &c else {
        return Err(ApiError::invalid("name the worker: worker_id"));
    };
    a.check_worker(&c, crate::agents::shown(id)).await?;
    let codebases = a.set_worker_codebases(id, &req.codebases).await?;
    Ok(Json(WorkerCodebases {
        success: true,
        codebases,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct KeysSync {
    /// Always empty: provider keys stay on the server.
    #[schema(value_type = Object)]
    auth: Value,
    #[schema(value_type = Object)]
    providers: Value,
    message: String,
}

#[utoipa::path(
    get, path = "/v1/opencode/api-keys/sync", tag = "v1 workers",
    summary = "CodeTether's key sync for workers: berth hands out no provider keys (public, always empty)",
    responses((status = 200, description = "nothing to merge", body = KeysSync)),
)]
pub async fn sync_api_keys() -> Json<KeysSync> {
    Json(KeysSync {
        auth: json!({}),
        providers: json!({}),
        message: "berth does not hand provider keys to workers; configure them on the worker"
            .into(),
    })
}
