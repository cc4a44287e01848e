//! Codebases and the agent runs on them: register, trigger, message, interrupt, stop, status, sessions,
//! messages, and the event stream.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::Extension;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::stock::Unvouched;
use crate::agents::events::seed_events;
use crate::agents::{
    Agents, Caller, CodebaseView, MessageRequest, RegisterCodebase, TriggerRequest,
};
use crate::api::auth::Lapse;
use crate::api::event_stream::{self, StreamQuery};
use crate::api::openapi::shapes;
use crate::api::{limit_or, optional_json, Json, Page, Path, Query};
use crate::audit::{Audit, Entry};
use crate::error::{ApiError, ApiResult};

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
    Ok(Json(a.list_codebases(&c).await?))
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases", tag = "v1 codebases",
    summary = "Register a codebase (the same path again updates it in place)",
    request_body = RegisterCodebase,
    responses(
        (status = 200, description = "registered; a local codebase is `building` until its workspace is ready", body = shapes::CodebaseRegistered),
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
    let cb = a.register_codebase(&c, req).await?;
    audit
        .record(
            Entry::ok(&c.name(), "codebase.register", Some(&cb.id))
                .detail(json!({ "path": cb.path, "worker_id": cb.worker_id })),
        )
        .await;
    Ok(Json(json!({ "success": true, "codebase": cb })))
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
    Ok(Json(a.get_codebase(&c, &id).await?))
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
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    a.delete_codebase(&id).await?;
    audit
        .record(Entry::ok(&c.name(), "codebase.delete", Some(&id)))
        .await;
    Ok(Json(
        json!({ "success": true, "message": format!("Codebase {id} deleted") }),
    ))
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/trigger", tag = "v1 codebases",
    summary = "Start the agent in a new OpenCode session (on a worker's codebase: queue a task)",
    params(("id" = String, Path, description = "the codebase's id")),
    request_body = TriggerRequest,
    responses(
        (status = 200, description = "started, or queued for the worker", body = shapes::Triggered),
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
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    Ok(Json(a.trigger(&id, req).await?))
}

#[utoipa::path(
    post, path = "/v1/opencode/codebases/{id}/message", tag = "v1 codebases",
    summary = "Continue the codebase's current session (queued while the agent works)",
    params(("id" = String, Path, description = "the codebase's id")),
    request_body = MessageRequest,
    responses(
        (status = 200, description = "sent or queued", body = shapes::MessageSent),
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
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    Ok(Json(a.message(&id, req).await?))
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
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    Ok(Json(a.interrupt(&id).await?))
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
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    Ok(Json(a.stop(&id).await?))
}

#[utoipa::path(
    get, path = "/v1/opencode/codebases/{id}/status", tag = "v1 codebases",
    summary = "The codebase's agent: status, session, running task, model",
    params(("id" = String, Path, description = "the codebase's id")),
    responses(
        (status = 200, description = "the status", body = shapes::AgentStatus),
        (status = 404, description = "no codebase the caller may act on"),
    ),
)]
pub async fn get_agent_status(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    Ok(Json(a.agent_status(&id).await?))
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
        (status = 200, description = "recorded", body = shapes::SessionsSynced),
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
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    let req: SyncBody = optional_json(&body)?;
    Ok(Json(
        a.sync_sessions(&c, &id, req.worker_id, req.sessions)
            .await?,
    ))
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
    )
}

/// The seed's events as SSE frames.
fn seed_frames(ev: &crate::missions::Event) -> Vec<SseEvent> {
    seed_events(ev)
        .into_iter()
        .map(|(kind, data)| SseEvent::default().event(kind).data(data.to_string()))
        .collect()
}
