//! Codebases and the agent runs on them: register, trigger, message, interrupt, stop, status, sessions,
//! messages, and the event stream.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::Extension;
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::agents::events::seed_events;
use crate::agents::{
    Agents, Caller, CodebaseView, MessageRequest, RegisterCodebase, TriggerRequest,
};
use crate::api::auth::Lapse;
use crate::api::event_stream::{self, StreamQuery};
use crate::api::{limit_or, optional_json, Json, Page, Path, Query};
use crate::audit::{Audit, Entry};
use crate::error::ApiResult;

pub async fn list_codebases(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Vec<CodebaseView>>> {
    Ok(Json(a.list_codebases(&c).await?))
}

pub async fn register_codebase(
    State(a): State<Agents>,
    State(audit): State<Audit>,
    Extension(c): Extension<Caller>,
    Json(req): Json<RegisterCodebase>,
) -> ApiResult<Json<Value>> {
    let cb = a.register_codebase(&c, req).await?;
    audit
        .record(
            Entry::ok(&actor(&c), "codebase.register", Some(&cb.id))
                .detail(json!({ "path": cb.path, "worker_id": cb.worker_id })),
        )
        .await;
    Ok(Json(json!({ "success": true, "codebase": cb })))
}

pub async fn get_codebase(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<CodebaseView>> {
    Ok(Json(a.get_codebase(&c, &id).await?))
}

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
        .record(Entry::ok(&actor(&c), "codebase.delete", Some(&id)))
        .await;
    Ok(Json(
        json!({ "success": true, "message": format!("Codebase {id} deleted") }),
    ))
}

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

pub async fn interrupt_agent(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    Ok(Json(a.interrupt(&id).await?))
}

pub async fn stop_agent(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    c.require_user()?;
    Ok(Json(a.stop(&id).await?))
}

pub async fn get_agent_status(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    a.codebase_for(&c, &id).await?;
    Ok(Json(a.agent_status(&id).await?))
}

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
    a.codebase_for(&c, &id).await?;
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

/// Who an audit entry names: a user, or `worker:<id>`.
fn actor(c: &Caller) -> String {
    match c {
        Caller::User(p) => p.name.clone(),
        Caller::Worker { id, .. } => format!("worker:{id}"),
    }
}

/// The seed's events as SSE frames.
fn seed_frames(ev: &crate::missions::Event) -> Vec<SseEvent> {
    seed_events(ev)
        .into_iter()
        .map(|(kind, data)| SseEvent::default().event(kind).data(data.to_string()))
        .collect()
}
