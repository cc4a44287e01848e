//! `/v1/opencode`, `/v1/monitor` and `/health`: the seed's CodeTether API. Errors here are
//! `{"detail"}` (see `detail_errors`); everything needs a user token or a worker's own token.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use super::event_stream::{self, StreamQuery};
use super::{optional_json, Json, Path, Query};
use crate::agents::events::seed_frames;
use crate::agents::{
    Agents, Caller, CodebaseView, CreateTask, MessageRequest, RegisterCodebase, RegisterWorker,
    StatusUpdate, TaskView, TriggerRequest, WorkerView,
};
use crate::app::AppState;
use crate::auth::Claims;
use crate::error::{ApiError, ApiResult};

/// Accepts a user's token or a worker's; the caller goes into the request.
pub async fn require_caller(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::Unauthorized("Not authenticated: send Authorization: Bearer <token>".into())
        })?
        .to_string();
    let caller = match s.agents.worker_for_token(&token).await? {
        Some(worker) => Caller::Worker(worker),
        None => {
            let claims: Claims = s
                .auth
                .verify(&token)
                .ok_or_else(|| ApiError::Unauthorized("invalid or expired token".into()))?;
            Caller::from_subject(&claims.sub)
        }
    };
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// The seed's error body: `{"detail": "..."}` for every error under `/v1` and `/health`, whoever made
/// it (handlers, extractors, auth, the body limit, the fallback).
pub async fn detail_errors(req: Request, next: Next) -> Response {
    let seed_path = req.uri().path().starts_with("/v1/") || req.uri().path() == "/health";
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !seed_path || resp.status().as_u16() < 400 || !is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, axum::Json(json!({ "detail": "error" }))).into_response();
    };
    let detail = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    let mut out = (parts.status, axum::Json(json!({ "detail": detail }))).into_response();
    for (k, v) in parts.headers.iter() {
        if k != CONTENT_TYPE && k != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

pub async fn health() -> Json<Value> {
    Json(json!({ "status": "healthy", "service": "berth", "version": env!("CARGO_PKG_VERSION") }))
}

pub async fn status(State(a): State<Agents>) -> ApiResult<Json<Value>> {
    Ok(Json(a.status().await?))
}

pub async fn models(State(a): State<Agents>) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(a.models().await?))
}

// Codebases.

pub async fn list_codebases(State(a): State<Agents>) -> ApiResult<Json<Vec<CodebaseView>>> {
    Ok(Json(a.list_codebases().await?))
}

pub async fn register_codebase(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Json(req): Json<RegisterCodebase>,
) -> ApiResult<Json<Value>> {
    let cb = a.register_codebase(&c, req).await?;
    Ok(Json(json!({ "success": true, "codebase": cb })))
}

pub async fn get_codebase(
    State(a): State<Agents>,
    Path(id): Path<String>,
) -> ApiResult<Json<CodebaseView>> {
    Ok(Json(a.get_codebase(&id).await?))
}

pub async fn delete_codebase(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require_user()?;
    a.delete_codebase(&id).await?;
    Ok(Json(
        json!({ "success": true, "message": format!("Codebase {id} deleted") }),
    ))
}

pub async fn trigger(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<TriggerRequest>,
) -> ApiResult<Json<Value>> {
    c.require_user()?;
    Ok(Json(a.trigger(&id, req).await?))
}

pub async fn message(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<MessageRequest>,
) -> ApiResult<Json<Value>> {
    c.require_user()?;
    Ok(Json(a.message(&id, req).await?))
}

pub async fn interrupt(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require_user()?;
    Ok(Json(a.interrupt(&id).await?))
}

pub async fn stop(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require_user()?;
    Ok(Json(a.stop(&id).await?))
}

pub async fn agent_status(
    State(a): State<Agents>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.agent_status(&id).await?))
}

#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
    offset: Option<i64>,
}

impl Page {
    fn get(&self, default: i64) -> ApiResult<(i64, i64)> {
        let limit = self.limit.unwrap_or(default);
        let offset = self.offset.unwrap_or(0);
        if !(1..=10_000).contains(&limit) || offset < 0 {
            return Err(ApiError::invalid(
                "limit must be 1 to 10000 and offset at least 0",
            ));
        }
        Ok((limit, offset))
    }
}

pub async fn sessions(
    State(a): State<Agents>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = p.get(50)?;
    Ok(Json(a.sessions(&id, limit, offset).await?))
}

#[derive(Default, Deserialize)]
pub struct SyncBody {
    worker_id: Option<String>,
    sessions: Option<Vec<Value>>,
}

pub async fn sync_sessions(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: SyncBody = optional_json(&body)?;
    Ok(Json(
        a.sync_sessions(&c, &id, req.worker_id, req.sessions)
            .await?,
    ))
}

#[derive(Deserialize)]
pub struct MessagesQuery {
    session_id: Option<String>,
    limit: Option<i64>,
}

pub async fn session_messages(
    State(a): State<Agents>,
    Path(id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 10000"));
    }
    Ok(Json(a.session_messages(&id, q.session_id, limit).await?))
}

/// The codebase's agent events as SSE, in the seed's vocabulary, with ids and `Last-Event-ID` replay.
pub async fn codebase_events(
    State(a): State<Agents>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    a.get_codebase(&id).await?;
    event_stream::stream(a.missions(), &a.events_owner(&id), &headers, q, seed_frames)
}

// Tasks.

pub async fn create_task(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Json(req): Json<CreateTask>,
) -> ApiResult<Json<Value>> {
    c.require_user()?;
    let task = a.create_task(&id, req).await?;
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
    Query(f): Query<TaskFilter>,
) -> ApiResult<Json<Value>> {
    let tasks = a
        .list_tasks(f.codebase_id.as_deref(), f.status.as_deref(), f.limit)
        .await?;
    Ok(Json(json!({ "tasks": tasks })))
}

pub async fn list_codebase_tasks(
    State(a): State<Agents>,
    Path(id): Path<String>,
    Query(f): Query<TaskFilter>,
) -> ApiResult<Json<Value>> {
    let tasks = a
        .list_tasks(Some(&id), f.status.as_deref(), f.limit)
        .await?;
    Ok(Json(json!({ "tasks": tasks })))
}

pub async fn get_task(
    State(a): State<Agents>,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    Ok(Json(a.get_task(&id).await?))
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

pub async fn append_output(
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

pub async fn task_output(
    State(a): State<Agents>,
    Path(id): Path<String>,
    Query(q): Query<Since>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.task_output(&id, q.since.unwrap_or(0)).await?))
}

pub async fn cancel_task(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    c.require_user()?;
    a.cancel_task(&id).await?;
    Ok(Json(
        json!({ "success": true, "message": "Task cancelled" }),
    ))
}

// Workers.

pub async fn list_workers(State(a): State<Agents>) -> ApiResult<Json<Vec<WorkerView>>> {
    Ok(Json(a.list_workers().await?))
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

pub async fn heartbeat(
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

pub async fn claim(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: ClaimBody = optional_json(&body)?;
    let task = a.claim(&c, &id, req.codebase_id.as_deref()).await?;
    Ok(Json(json!({ "success": true, "task": task })))
}

// Runtime.

pub async fn runtime_status(State(a): State<Agents>) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_status().await?))
}

pub async fn runtime_projects(State(a): State<Agents>) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_projects().await?))
}

#[derive(Deserialize)]
pub struct SessionFilter {
    project_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn runtime_sessions(
    State(a): State<Agents>,
    Query(f): Query<SessionFilter>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = Page {
        limit: f.limit,
        offset: f.offset,
    }
    .get(50)?;
    Ok(Json(
        a.runtime_sessions(f.project_id.as_deref(), limit, offset)
            .await?,
    ))
}

pub async fn runtime_session(
    State(a): State<Agents>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_session(&id).await?))
}

pub async fn runtime_messages(
    State(a): State<Agents>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = p.get(100)?;
    Ok(Json(a.runtime_messages(&id, limit, offset).await?))
}

#[derive(Deserialize)]
pub struct PartsQuery {
    message_id: Option<String>,
    limit: Option<i64>,
}

pub async fn runtime_parts(
    State(a): State<Agents>,
    Path(id): Path<String>,
    Query(q): Query<PartsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 10000"));
    }
    Ok(Json(
        a.runtime_parts(&id, q.message_id.as_deref(), limit).await?,
    ))
}

// Monitor.

pub async fn monitor_agents(State(a): State<Agents>) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(a.monitor_agents().await?))
}

#[derive(Deserialize)]
pub struct MonitorQuery {
    limit: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub async fn monitor_messages(
    State(a): State<Agents>,
    Query(q): Query<MonitorQuery>,
) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(
        a.monitor_messages(q.kind.as_deref(), q.limit.unwrap_or(100))
            .await?,
    ))
}

pub async fn monitor_stats(State(a): State<Agents>) -> ApiResult<Json<Value>> {
    Ok(Json(a.monitor_stats().await?))
}
