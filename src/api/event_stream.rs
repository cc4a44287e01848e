//! SSE over stored events: the live stream of one owner's events (a user's missions, or a codebase's
//! agent), with replay from `Last-Event-ID`. Subscribers are only told the newest id and read what they
//! have not seen from the store, so a slow client is caught up, never dropped. Each event becomes zero
//! or more SSE frames through a mapping, all carrying the event's global id.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use super::auth::Lapse;
use crate::error::{ApiError, ApiResult};
use crate::missions::{Event, Missions};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// As the `Last-Event-ID` header, for clients that cannot set headers.
    last_event_id: Option<String>,
}

/// Turns one stored event into the frames a client sees (without their ids).
pub type Mapping = fn(&Event) -> Vec<SseEvent>;

/// The stream ends when `lapse` resolves (the token it was opened with no longer holds) or berth stops.
pub fn stream(
    m: &Missions,
    owner: &str,
    headers: &HeaderMap,
    q: StreamQuery,
    map: Mapping,
    lapse: Lapse,
    first: Option<SseEvent>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let raw = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.last_event_id);
    let latest = m.hub().latest();
    let mut notices = Vec::new();
    let cursor = match raw.as_deref().map(str::trim) {
        None | Some("") => latest,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if n < 0 => return Err(ApiError::invalid("Last-Event-ID must not be negative")),
            Ok(n) if n > latest => {
                notices.push(json!({ "message": format!("Last-Event-ID {n} is ahead of the newest event {latest}; streaming from {latest}") }));
                latest
            }
            Ok(n) => n,
            Err(_) => {
                return Err(ApiError::invalid(format!(
                    "Last-Event-ID {s:?} is not an event id"
                )))
            }
        },
    };
    let state = StreamState {
        missions: m.clone(),
        owner: owner.to_string(),
        cursor,
        buffer: first.into_iter().collect(),
        notices,
        rx: m.hub().subscribe(),
        map,
        _subscriber: crate::metrics::Subscriber::open(),
        closing: false,
    };
    let stream =
        futures::StreamExt::take_until(futures::stream::unfold(state, next_sse), lapse.wait());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct StreamState {
    missions: Missions,
    owner: String,
    cursor: i64,
    /// Frames ready to send, in order.
    buffer: Vec<SseEvent>,
    notices: Vec<Value>,
    rx: tokio::sync::watch::Receiver<i64>,
    map: Mapping,
    /// Counted as a subscriber while the stream lives.
    _subscriber: crate::metrics::Subscriber,
    /// berth is stopping: what is stored goes out, then the stream ends.
    closing: bool,
}

/// How long a stream waits at shutdown for cut-off turns to record how they ended (within the grace
/// requests get).
const CLOSING_WAIT: Duration = Duration::from_secs(3);

async fn next_sse(mut s: StreamState) -> Option<(Result<SseEvent, Infallible>, StreamState)> {
    if let Some(n) = s.notices.pop() {
        return Some((
            Ok(SseEvent::default().event("notice").data(n.to_string())),
            s,
        ));
    }
    loop {
        if !s.buffer.is_empty() {
            return Some((Ok(s.buffer.remove(0)), s));
        }
        match s.missions.events_since(&s.owner, s.cursor).await {
            Ok(evs) if !evs.is_empty() => {
                for ev in evs {
                    s.cursor = ev.id;
                    let id = ev.id.to_string();
                    s.buffer
                        .extend((s.map)(&ev).into_iter().map(|f| f.id(id.clone())));
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading events for a stream failed"),
        }
        if s.closing {
            return None;
        }
        // Wait for anything newer. When berth stops, the turns it cuts off record `interrupted` first
        // (briefly waited for), those events go out, and the stream ends: shutdown is not held up.
        let shutdown = s.missions.shutdown().clone();
        tokio::select! {
            changed = s.rx.changed() => if changed.is_err() { return None },
            _ = shutdown.cancelled() => {
                s.missions.turns_settled(CLOSING_WAIT).await;
                s.closing = true;
            }
        }
    }
}
