//! `/api/control`: missions, the control session (load, message, cancel), stored events, and the SSE
//! stream with replay from `Last-Event-ID`.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::Extension;
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Lapse;
use super::event_stream::{self, StreamQuery};
use super::{Json, Page, Path, Query};
use crate::audit::{Audit, Entry};
use crate::error::ApiResult;
use crate::missions::{CreateMission, Event, MissionView, Missions};
use crate::principal::Principal;

pub async fn create_mission(
    State(m): State<Missions>,
    State(audit): State<Audit>,
    Extension(c): Extension<Principal>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<MissionView>)> {
    let req: CreateMission = super::optional_json(&body)?;
    let mission = m.create(&c, req).await?;
    audit
        .record(
            Entry::ok(&c.name, "mission.create", Some(&mission.id))
                .detail(json!({ "workspace_id": mission.workspace_id })),
        )
        .await;
    Ok((StatusCode::CREATED, Json(mission)))
}

pub async fn list_missions(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Vec<MissionView>>> {
    Ok(Json(m.list(&c).await?))
}

pub async fn get_mission(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<MissionView>> {
    Ok(Json(m.get(&c, &id).await?))
}

pub async fn delete_mission(
    State(m): State<Missions>,
    State(audit): State<Audit>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    m.delete(&c, &id).await?;
    audit
        .record(Entry::ok(&c.name, "mission.delete", Some(&id)))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn load_mission(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<MissionView>> {
    Ok(Json(m.load(&c, &id).await?))
}

#[derive(Deserialize)]
pub struct MessageRequest {
    content: String,
    agent: Option<String>,
}

pub async fn send_message(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Json(req): Json<MessageRequest>,
) -> ApiResult<Json<Value>> {
    let (id, queued) = m.message(&c, &req.content, req.agent.as_deref()).await?;
    Ok(Json(json!({ "id": id, "queued": queued })))
}

pub async fn cancel_current(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    Ok(Json(m.cancel(&c, None).await?))
}

pub async fn cancel_mission(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(m.cancel(&c, Some(&id)).await?))
}

#[derive(Deserialize)]
pub struct StatusRequest {
    status: String,
}

pub async fn set_mission_status(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
    Json(req): Json<StatusRequest>,
) -> ApiResult<Json<MissionView>> {
    Ok(Json(m.set_status(&c, &id, &req.status).await?))
}

pub async fn resume_mission(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<MissionView>> {
    Ok(Json(m.resume(&c, &id).await?))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    types: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_mission_events(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    let types: Vec<String> = q
        .types
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .get(100)?;
    Ok(Json(m.events(&c, &id, &types, limit, offset).await?))
}

pub async fn mission_tree(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    Ok(Json(m.tree(&c).await?))
}

/// The user's events as SSE, each with `id:` (its global id) and `event:` (its type).
pub async fn stream_mission_events(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Extension(lapse): Extension<Lapse>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    event_stream::stream(&m, &c.name, &headers, q, as_is, lapse)
}

fn as_is(ev: &Event) -> Vec<SseEvent> {
    vec![SseEvent::default()
        .event(ev.event_type.clone())
        .data(serde_json::to_string(ev).unwrap_or_default())]
}
