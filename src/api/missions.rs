//! `/api/control`: missions, the control session (load, message, cancel), stored events, and the SSE
//! stream with replay from `Last-Event-ID`.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::Extension;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::Lapse;
use super::event_stream::{self, StreamQuery};
use super::openapi::shapes;
use super::{Json, Page, Path, Query};
use crate::audit::{Audit, Entry};
use crate::error::ApiResult;
use crate::missions::{CreateMission, Event, MissionStatus, MissionView, Missions};
use crate::principal::Principal;

#[utoipa::path(
    post, path = "/api/control/missions", tag = "missions",
    summary = "Create a mission (in the caller's default workspace when it names none)",
    request_body(content = Option<CreateMission>, description = "optional; an empty body is a mission with defaults"),
    responses(
        (status = 201, description = "the mission", body = MissionView),
        (status = 400, description = "an unknown agent or model, an invalid `model_effort`, a title over 1000 characters, a workspace the caller does not have, or a host workspace"),
        (status = 409, description = "the default workspace is being replaced; retry"),
    ),
)]
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

#[utoipa::path(
    get, path = "/api/control/missions", tag = "missions",
    summary = "The caller's missions (an admin's: everyone's)",
    responses(
        (status = 200, description = "the missions", body = Vec<MissionView>),
    ),
)]
pub async fn list_missions(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Vec<MissionView>>> {
    Ok(Json(m.list(&c).await?))
}

#[utoipa::path(
    get, path = "/api/control/missions/{id}", tag = "missions",
    summary = "Read a mission",
    params(("id" = String, Path, description = "the mission's id")),
    responses(
        (status = 200, description = "the mission", body = MissionView),
        (status = 404, description = "no mission the caller may act on"),
    ),
)]
pub async fn get_mission(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<MissionView>> {
    Ok(Json(m.get(&c, &id).await?))
}

#[utoipa::path(
    delete, path = "/api/control/missions/{id}", tag = "missions",
    summary = "Delete a mission (cancelling its turn first)",
    params(("id" = String, Path, description = "the mission's id")),
    responses(
        (status = 200, description = "deleted", body = Deleted),
        (status = 404, description = "no mission the caller may act on"),
    ),
)]
pub async fn delete_mission(
    State(m): State<Missions>,
    State(audit): State<Audit>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    m.delete(&c, &id).await?;
    audit
        .record(Entry::ok(&c.name, "mission.delete", Some(&id)))
        .await;
    Ok(Json(Deleted {
        ok: true,
        deleted: id,
    }))
}

/// What was deleted (Open Agent's dashboard reads the answer as JSON).
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    ok: bool,
    deleted: String,
}

#[utoipa::path(
    post, path = "/api/control/missions/{id}/load", tag = "missions",
    summary = "Make a mission the caller's current one",
    params(("id" = String, Path, description = "the mission's id")),
    responses(
        (status = 200, description = "the mission, now current", body = MissionView),
        (status = 404, description = "no mission the caller may act on"),
    ),
)]
pub async fn load_mission(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<MissionView>> {
    Ok(Json(m.load(&c, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[schema(as = MissionMessage)]
pub struct MessageRequest {
    /// Under 1 MiB of text.
    content: String,
    /// A library agent, or one of OpenCode's.
    agent: Option<String>,
    /// The mission to send to (it becomes the loaded one); absent: the loaded mission.
    mission_id: Option<String>,
}

#[utoipa::path(
    post, path = "/api/control/message", tag = "missions",
    summary = "Send a message to the current mission; queued while a turn runs",
    request_body = MessageRequest,
    responses(
        (status = 200, description = "accepted", body = shapes::MessageQueued),
        (status = 400, description = "empty content, over 1 MiB or with a NUL byte, or an unknown agent"),
        (status = 409, description = "no mission is loaded, the mission is interrupted (resume it), completed or failed, or its workspace is not ready or was deleted"),
    ),
)]
pub async fn send_message(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Json(req): Json<MessageRequest>,
) -> ApiResult<Json<Value>> {
    if let Some(mission) = &req.mission_id {
        m.load(&c, mission).await?;
    }
    let (id, queued) = m.message(&c, &req.content, req.agent.as_deref()).await?;
    Ok(Json(json!({ "id": id, "queued": queued })))
}

#[utoipa::path(
    post, path = "/api/control/cancel", tag = "missions",
    summary = "Abort the current mission's running turn and drop its queue",
    responses(
        (status = 200, description = "cancelled", body = shapes::Cancelled),
        (status = 409, description = "no mission is loaded, or it is idle"),
    ),
)]
pub async fn cancel_current(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    Ok(Json(m.cancel(&c, None).await?))
}

#[utoipa::path(
    post, path = "/api/control/missions/{id}/cancel", tag = "missions",
    summary = "Abort a mission's running turn and drop its queue",
    params(("id" = String, Path, description = "the mission's id")),
    responses(
        (status = 200, description = "cancelled", body = shapes::Cancelled),
        (status = 404, description = "no mission the caller may act on"),
        (status = 409, description = "the mission is idle"),
    ),
)]
pub async fn cancel_mission(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(m.cancel(&c, Some(&id)).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct StatusRequest {
    /// `pending`, `active`, `completed`, `failed` or `interrupted`.
    status: MissionStatus,
}

#[utoipa::path(
    post, path = "/api/control/missions/{id}/status", tag = "missions",
    summary = "Set a mission's status",
    params(("id" = String, Path, description = "the mission's id")),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "the mission", body = MissionView),
        (status = 400, description = "an unknown status"),
        (status = 404, description = "no mission the caller may act on"),
    ),
)]
pub async fn set_mission_status(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
    Json(req): Json<StatusRequest>,
) -> ApiResult<Json<MissionView>> {
    Ok(Json(m.set_status(&c, &id, req.status).await?))
}

#[utoipa::path(
    post, path = "/api/control/missions/{id}/resume", tag = "missions",
    summary = "Continue an interrupted mission in the same OpenCode session",
    params(("id" = String, Path, description = "the mission's id")),
    responses(
        (status = 200, description = "the mission, active again", body = MissionView),
        (status = 404, description = "no mission the caller may act on"),
        (status = 409, description = "the mission is not interrupted"),
    ),
)]
pub async fn resume_mission(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<MissionView>> {
    Ok(Json(m.resume(&c, &id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated event types to keep, e.g. `assistant_message,tool_call`.
    types: Option<String>,
    /// 1 to 10000 (default 100).
    limit: Option<i64>,
    /// Default 0.
    offset: Option<i64>,
}

#[utoipa::path(
    get, path = "/api/control/missions/{id}/events", tag = "missions",
    summary = "A mission's stored events, in order",
    params(("id" = String, Path, description = "the mission's id"), EventsQuery),
    responses(
        (status = 200, description = "the events: berth's `{id, mission_id, seq, type, data, created_at}` with Open Agent's fields beside them (`event_type`, `sequence`, `timestamp`, `content`, `metadata`, `event_id`, `tool_call_id`, `tool_name`)", body = Vec<Event>),
        (status = 400, description = "limit or offset out of range"),
        (status = 404, description = "no mission the caller may act on"),
    ),
)]
pub async fn list_mission_events(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Vec<Value>>> {
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
    let events = m.events(&c, &id, &types, limit, offset).await?;
    Ok(Json(
        events
            .iter()
            .map(super::control::with_open_agent_fields)
            .collect(),
    ))
}

#[utoipa::path(
    get, path = "/api/control/tree", tag = "missions",
    summary = "The caller's active missions with their running turn and queue",
    responses(
        (status = 200, description = "the tree", body = shapes::MissionTree),
    ),
)]
pub async fn mission_tree(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    Ok(Json(m.tree(&c).await?))
}

/// The user's events as SSE, each with `id:` (its global id) and `event:` (its type).
#[utoipa::path(
    get, path = "/api/control/stream", tag = "missions",
    summary = "SSE of the caller's mission events, replaying after `Last-Event-ID`",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "replay events after this id"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "an event stream: each frame's `event:` is the type (`status`, `user_message`, `assistant_message`, `thinking`, `tool_call`, `tool_result`, `error`, or `notice` for a future id), `id:` its global id, `data:` the event as JSON (the `Event` schema). Keepalives are comments; the stream ends when the token becomes void", content_type = "text/event-stream", body = String),
        (status = 400, description = "`Last-Event-ID` is not an event id"),
    ),
)]
pub async fn stream_mission_events(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Extension(lapse): Extension<Lapse>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    // A client shows itself connected once it knows the agent's state: it is sent first.
    let hello = m.control_state(&c).await?;
    let first = SseEvent::default().event("status").data(hello.to_string());
    event_stream::stream(&m, &c.name, &headers, q, flat, lapse, Some(first))
}

/// Each event with Open Agent's flat fields beside berth's own, on one line.
fn flat(ev: &Event) -> Vec<SseEvent> {
    let payload = super::control::frame_payload(ev);
    vec![SseEvent::default()
        .event(ev.event_type.clone())
        .data(payload.to_string())]
}
