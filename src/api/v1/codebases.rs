//! Codebases and the agent runs on them: register, trigger, message, interrupt, stop, status, sessions,
//! messages, and the event stream.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::Extension;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::stock::Unvouched;
use crate::agents::events::seed_events;
use crate::agents::{
    shown, Agents, Caller, Codebase, CodebaseStatus, MessageRequest, RegisterCodebase, Start,
    TaskStatus, TriggerRequest,
};
use crate::api::auth::Lapse;
use crate::api::event_stream::{self, StreamQuery};
use crate::api::openapi::shapes::{self, SuccessMessage};
use crate::api::{limit_or, optional_json, Json, Page, Path, Query};
use crate::audit::{Audit, Entry};
use crate::error::{ApiError, ApiResult};

/// The seed's codebase object, plus what berth knows of its agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodebaseView {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub path: String,
    pub description: String,
    pub worker_id: Option<String>,
    pub agent_config: Value,
    pub created_at: DateTime<Utc>,
    pub last_activity: Option<DateTime<Utc>>,
    pub status: CodebaseStatus,
    pub workspace_id: Option<String>,
    pub session_id: Option<String>,
}

impl From<Codebase> for CodebaseView {
    fn from(c: Codebase) -> Self {
        let agent_config = c.agent_config();
        let r = c.row;
        Self {
            agent_config,
            status: c.status,
            session_id: c.session_id,
            id: r.id,
            owner: r.owner,
            name: r.name,
            path: r.path,
            description: r.description,
            worker_id: r.worker_id.as_deref().map(|w| shown(w).to_string()),
            created_at: r.created_at,
            last_activity: r.last_activity,
            workspace_id: r.workspace_id,
        }
    }
}

/// The seed's agent status of a codebase.
#[derive(Serialize, ToSchema)]
pub struct AgentStatus {
    codebase_id: String,
    status: CodebaseStatus,
    session_id: Option<String>,
    /// The running task's title.
    current_task: Option<String>,
    task_id: Option<String>,
    started_at: Option<DateTime<Utc>>,
    model: Option<String>,
}

/// The seed's answer to a trigger.
#[derive(Serialize, ToSchema)]
pub struct Triggered {
    success: bool,
    /// The OpenCode session; `""` until one is open (a worker reports it on the task).
    session_id: String,
    /// The task that records the run.
    task_id: String,
    /// `running`, or `pending` when queued for a worker or a workspace still building.
    status: TaskStatus,
    message: String,
}

/// The seed's answer to a follow-up message.
#[derive(Serialize, ToSchema)]
pub struct MessageSent {
    success: bool,
    message: String,
    message_id: String,
    /// True while the agent works: the message waits its turn.
    queued: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CodebaseRegistered {
    success: bool,
    codebase: CodebaseView,
}

#[derive(Serialize, ToSchema)]
pub struct SessionsSynced {
    success: bool,
    synced: usize,
    message: String,
}

#[utoipa::path(
    get, path = "/v1/opencode/codebases", tag = "v1 codebases",
    summary = "The caller's codebases (an admin's: everyone's; a worker's: its own)",
    responses(
        (status = 200, description = "the codebases", body = Vec<CodebaseView>),
    ),
)]
pub async fn list_codebases(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Vec<CodebaseView>>> {
    let all = a.list_codebases(&c).await?;
    Ok(Json(all.into_iter().map(CodebaseView::from).collect()))
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases", tag = "v1 codebases",
    summary = "Register a codebase (the same path again updates it in place)",
    request_body = RegisterCodebase,
    responses(
        (status = 200, description = "registered; a local codebase is `building` until its workspace is ready", body = CodebaseRegistered),
        (status = 400, description = "a name or path berth refuses (a local path must be a directory under `BERTH_CODEBASE_ROOTS`), or an invalid `agent_config`"),
        (status = 403, description = "a worker registering for another worker or a local codebase, or a workspace setting (e.g. `agent_config.network: host`) the registering user may not have"),
        (status = 404, description = "no worker of the caller's with that `worker_id`"),
        (status = 409, description = "the directory is being registered, or overlaps another user's codebase"),
    ),
)]
pub async fn register_codebase(
    State(a): State<Agents>,
    State(audit): State<Audit>,
    caller: Option<Extension<Caller>>,
    unvouched: Option<Extension<Unvouched>>,
    Json(req): Json<RegisterCodebase>,
) -> ApiResult<Json<Value>> {
    let Some(Extension(c)) = caller else {
        // CodeTether's worker registers before it vouches for itself: held until it does.
        let Some(Extension(u)) = unvouched else {
            return Err(ApiError::Unauthorized("Not authenticated".into()));
        };
        let (name, path) = (req.name.clone(), req.path.clone());
        let id = a.hold_codebase(u.addr, &u.worker_id, req).await?;
        return Ok(Json(json!({
            "success": true,
            "codebase": { "id": id, "name": name, "path": path, "worker_id": u.worker_id, "status": "pending" },
            "message": "registered once the worker's push channel opens with its token",
        })));
    };
    let cb = CodebaseView::from(a.register_codebase(&c, req).await?);
    audit
        .record(
            Entry::ok(&c.name(), "codebase.register", Some(&cb.id))
                .detail(json!({ "path": cb.path, "worker_id": cb.worker_id })),
        )
        .await;
    Ok(Json(json!(CodebaseRegistered {
        success: true,
        codebase: cb,
    })))
}

#[utoipa::path(
    get, path = "/v1/opencode/codebases/{id}", tag = "v1 codebases",
    summary = "Read a codebase",
    params(("id" = String, Path, description = "the codebase's id")),
    responses(
        (status = 200, description = "the codebase", body = CodebaseView),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
pub async fn get_codebase(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<CodebaseView>> {
    Ok(Json(a.get_codebase(&c, &id).await?.into()))
}

#[utoipa::path(
    delete, path = "/v1/opencode/codebases/{id}", tag = "v1 codebases",
    summary = "Delete a codebase: stops its agent, cancels its queued tasks, removes its workspace (the directory stays)",
    params(("id" = String, Path, description = "the codebase's id")),
    responses(
        (status = 200, description = "deleted", body = shapes::SuccessMessage),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
pub async fn delete_codebase(
    State(a): State<Agents>,
    State(audit): State<Audit>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<SuccessMessage>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    a.delete_codebase(&id).await?;
    audit
        .record(Entry::ok(&c.name(), "codebase.delete", Some(&id)))
        .await;
    Ok(Json(SuccessMessage::new(format!("Codebase {id} deleted"))))
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/trigger", tag = "v1 codebases",
    summary = "Start the agent in a new OpenCode session (on a worker's codebase: queue a task)",
    params(("id" = String, Path, description = "the codebase's id")),
    request_body = TriggerRequest,
    responses(
        (status = 200, description = "started, or queued for the worker", body = Triggered),
        (status = 400, description = "an empty or oversized prompt, a model not written `provider/model`, too many files, or non-object metadata"),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no codebase the caller may act on"),
        (status = 409, description = "an agent already runs on the codebase, or its workspace is building or failed"),
        (status = 503, description = "the agent server cannot be started"),
    ),
)]
pub async fn trigger_agent(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<TriggerRequest>,
) -> ApiResult<Json<Triggered>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    let t = a.trigger(&id, req).await?;
    let (session_id, status, message) = match t.start {
        Start::Running { session_id } => (
            session_id,
            TaskStatus::Running,
            format!("Agent started on codebase {}", t.codebase),
        ),
        // The worker opens the session when it starts the task; it reports it on the task.
        Start::Queued { worker } => (
            String::new(),
            TaskStatus::Pending,
            format!("Task queued for worker {worker}"),
        ),
        Start::AfterBuild => (
            String::new(),
            TaskStatus::Pending,
            format!(
                "Queued: the agent starts once codebase {}'s workspace is built",
                t.codebase
            ),
        ),
    };
    Ok(Json(Triggered {
        success: true,
        session_id,
        task_id: t.task_id,
        status,
        message,
    }))
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/message", tag = "v1 codebases",
    summary = "Continue the codebase's current session (queued while the agent works)",
    params(("id" = String, Path, description = "the codebase's id")),
    request_body = MessageRequest,
    responses(
        (status = 200, description = "sent or queued", body = MessageSent),
        (status = 400, description = "an empty or oversized message"),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no codebase the caller may act on"),
        (status = 409, description = "a worker's codebase (create a task instead), no session yet, or the workspace is not ready"),
        (status = 503, description = "the agent server cannot be started"),
    ),
)]
pub async fn message_agent(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<MessageRequest>,
) -> ApiResult<Json<MessageSent>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    let (message_id, queued) = a.message(&id, req).await?;
    Ok(Json(MessageSent {
        success: true,
        message: "Message sent to agent".into(),
        message_id,
        queued,
    }))
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/interrupt", tag = "v1 codebases",
    summary = "Abort the current turn",
    params(("id" = String, Path, description = "the codebase's id")),
    responses(
        (status = 200, description = "interrupted", body = shapes::SuccessMessage),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no codebase the caller may act on"),
        (status = 409, description = "nothing is running"),
    ),
)]
pub async fn interrupt_agent(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<SuccessMessage>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    a.interrupt(&id).await?;
    Ok(Json(SuccessMessage::new("Interrupt signal sent")))
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/stop", tag = "v1 codebases",
    summary = "Abort the run and stop the codebase's OpenCode server",
    params(("id" = String, Path, description = "the codebase's id")),
    responses(
        (status = 200, description = "stopped", body = shapes::SuccessMessage),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
pub async fn stop_agent(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<SuccessMessage>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    a.stop(&id).await?;
    Ok(Json(SuccessMessage::new("Agent stopped")))
}

#[utoipa::path(
    get, path = "/v1/opencode/codebases/{id}/status", tag = "v1 codebases",
    summary = "The codebase's agent: status, session, running task, model",
    params(("id" = String, Path, description = "the codebase's id")),
    responses(
        (status = 200, description = "the status", body = AgentStatus),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
pub async fn get_agent_status(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<AgentStatus>> {
    a.codebase_for(&c, &id).await?;
    let (cb, task) = a.agent_status(&id).await?;
    let model = task.as_ref().and_then(|t| t.model.clone()).or_else(|| {
        cb.agent_config()["default_model"]
            .as_str()
            .map(str::to_string)
    });
    Ok(Json(AgentStatus {
        codebase_id: cb.row.id,
        status: cb.status,
        session_id: task
            .as_ref()
            .and_then(|t| t.session_id.clone())
            .or(cb.session_id),
        current_task: task.as_ref().map(|t| t.title.clone()),
        task_id: task.as_ref().map(|t| t.id.clone()),
        started_at: task.as_ref().and_then(|t| t.started_at),
        model,
    }))
}

#[utoipa::path(
    get, path = "/v1/opencode/codebases/{id}/sessions", tag = "v1 codebases",
    summary = "The codebase's sessions, newest first",
    params(("id" = String, Path, description = "the codebase's id"), crate::api::Page),
    responses(
        (status = 200, description = "a page of sessions", body = shapes::SessionPage),
        (status = 400, description = "limit or offset out of range"),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
pub async fn list_sessions(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    let (limit, offset) = p.get(50)?;
    Ok(Json(a.sessions(&id, limit, offset).await?))
}

#[derive(Default, Deserialize, ToSchema)]
pub struct SyncBody {
    /// The reporting worker (a user's token names the codebase's worker).
    worker_id: Option<String>,
    /// The worker's sessions, each with a string `id`; absent: what the workspace's OpenCode holds.
    sessions: Option<Vec<Value>>,
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/sessions/sync", tag = "v1 codebases",
    summary = "Record sessions: a worker's list, or (no body) what the workspace's OpenCode server holds",
    params(("id" = String, Path, description = "the codebase's id")),
    request_body(content = Option<SyncBody>, description = "optional"),
    responses(
        (status = 200, description = "recorded", body = SessionsSynced),
        (status = 400, description = "a remote codebase without a list, over 10000 sessions, or a session without a string id"),
        (status = 403, description = "a worker reporting for another worker"),
        (status = 404, description = "no codebase the caller may act on"),
        (status = 409, description = "the worker does not serve the codebase"),
        (status = 502, description = "the OpenCode server did not answer"),
        (status = 503, description = "the agent server cannot be started"),
    ),
)]
pub async fn sync_sessions(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<SessionsSynced>> {
    a.codebase_for(&c, &id).await?;
    let req: SyncBody = optional_json(&body)?;
    let synced = a
        .sync_sessions(&c, &id, req.worker_id, req.sessions)
        .await?;
    Ok(Json(SessionsSynced {
        success: true,
        synced,
        message: format!("Synced {synced} sessions from OpenCode"),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct MessagesSyncBody {
    /// The reporting worker (a user's token names the codebase's worker).
    worker_id: Option<String>,
    /// The session's messages, as the worker has them (OpenCode's `{info, parts}` or flat).
    messages: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct MessagesSynced {
    success: bool,
    synced: usize,
    session_id: String,
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/sessions/{sid}/messages/sync", tag = "v1 codebases",
    summary = "Record a worker's session messages (they replace what was stored for the session)",
    params(
        ("id" = String, Path, description = "the codebase's id"),
        ("sid" = String, Path, description = "the session's id"),
    ),
    request_body = MessagesSyncBody,
    responses(
        (status = 200, description = "recorded", body = MessagesSynced),
        (status = 400, description = "over 10000 messages, a message that is not an object, or a user's call without `worker_id`"),
        (status = 404, description = "no codebase the caller may act on"),
        (status = 409, description = "the worker does not serve the codebase"),
    ),
)]
pub async fn sync_session_messages(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path((id, sid)): Path<(String, String)>,
    Json(req): Json<MessagesSyncBody>,
) -> ApiResult<Json<MessagesSynced>> {
    a.codebase_for(&c, &id).await?;
    let synced = a
        .sync_messages(&c, &id, &sid, req.worker_id, req.messages)
        .await?;
    Ok(Json(MessagesSynced {
        success: true,
        synced,
        session_id: sid,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Default: the codebase's current session.
    session_id: Option<String>,
    /// 1 to 10000 (default 100).
    limit: Option<i64>,
}

#[utoipa::path(
    get, path = "/v1/opencode/codebases/{id}/messages", tag = "v1 codebases",
    summary = "A session's messages (the current session's when none is named)",
    params(("id" = String, Path, description = "the codebase's id"), MessagesQuery),
    responses(
        (status = 200, description = "the messages", body = shapes::SessionMessages),
        (status = 400, description = "limit out of range"),
        (status = 404, description = "no codebase the caller may act on, no session yet, or no such session"),
        (status = 502, description = "the OpenCode server did not answer"),
        (status = 503, description = "the agent server cannot be started"),
    ),
)]
pub async fn list_session_messages(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    let limit = limit_or(q.limit, 100)?;
    Ok(Json(a.session_messages(&id, q.session_id, limit).await?))
}

/// The codebase's agent events as SSE, in the seed's vocabulary, with ids and `Last-Event-ID` replay.
#[utoipa::path(
    get, path = "/v1/opencode/codebases/{id}/events", tag = "v1 codebases",
    summary = "SSE of the codebase's agent events, replaying after `Last-Event-ID`",
    params(
        ("id" = String, Path, description = "the codebase's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "replay events after this id"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "an event stream: `event:` is `status`, `output`, `tool_use`, `file_change` (`create` or `modify`), `complete` (the final answer as `summary`) or `error`; `id:` is the event's id; `data:` JSON. Ends when the token becomes void", content_type = "text/event-stream", body = String),
        (status = 400, description = "`Last-Event-ID` is not an event id"),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
pub async fn stream_codebase_events(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Extension(lapse): Extension<Lapse>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    a.codebase_for(&c, &id).await?;
    event_stream::stream(
        a.missions(),
        &a.events_owner(&id),
        &headers,
        q,
        seed_frames,
        lapse,
        None,
    )
}

/// The seed's events as SSE frames.
fn seed_frames(ev: &crate::missions::Event) -> Vec<SseEvent> {
    seed_events(ev)
        .into_iter()
        .map(|(kind, data)| SseEvent::default().event(kind).data(data.to_string()))
        .collect()
}
