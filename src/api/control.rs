//! `/api/control` beyond the seed, for Open Agent's dashboard: the loaded mission, the missions at
//! work, the waiting messages and progress; and its flat event payloads, which every stream frame and
//! stored event carries beside berth's own `{id, mission_id, seq, type, data, created_at}`.

use axum::extract::State;
use axum::Extension;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{Json, Path};
use crate::error::ApiResult;
use crate::missions::{Event, MissionView, Missions};
use crate::principal::Principal;

#[utoipa::path(
    get, path = "/api/control/missions/current", tag = "missions",
    summary = "The caller's loaded mission, or null",
    responses((status = 200, description = "the mission, or `null` when none is loaded", body = Option<MissionView>)),
)]
pub async fn current_mission(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Option<MissionView>>> {
    Ok(Json(m.current(&c).await?))
}

/// A mission at work, as Open Agent's overview reads it.
#[derive(Serialize, ToSchema)]
pub struct Running {
    mission_id: String,
    /// `running` (a turn) or `queued` (messages wait, no turn yet).
    state: &'static str,
    queue_len: usize,
    history_len: usize,
    seconds_since_activity: i64,
    /// Always `{status: "healthy"}`: berth reports a stuck turn as an error event instead.
    #[schema(value_type = Object)]
    health: Value,
    expected_deliverables: Vec<String>,
}

#[utoipa::path(
    get, path = "/api/control/running", tag = "missions",
    summary = "The caller's missions at work (an admin's: everyone's): running a turn or with messages waiting",
    responses((status = 200, description = "the missions at work", body = Vec<Running>)),
)]
pub async fn running(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Vec<Running>>> {
    let out = m
        .working(&c)
        .await?
        .into_iter()
        .map(|w| Running {
            mission_id: w.mission_id,
            state: if w.running { "running" } else { "queued" },
            queue_len: w.queue_len,
            history_len: w.history_len,
            seconds_since_activity: w.seconds_since_activity,
            health: json!({ "status": "healthy" }),
            expected_deliverables: Vec::new(),
        })
        .collect();
    Ok(Json(out))
}

/// A message waiting its turn.
#[derive(Serialize, ToSchema)]
pub struct Queued {
    id: String,
    content: String,
    agent: Option<String>,
    mission_id: String,
}

#[utoipa::path(
    get, path = "/api/control/queue", tag = "missions",
    summary = "Messages waiting their turn in the caller's missions, oldest first",
    responses((status = 200, description = "the waiting messages", body = Vec<Queued>)),
)]
pub async fn queue(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Vec<Queued>>> {
    let out = m
        .queued(&c)
        .await?
        .into_iter()
        .map(|q| Queued {
            id: q.id,
            content: q.content,
            agent: q.agent,
            mission_id: q.mission_id,
        })
        .collect();
    Ok(Json(out))
}

#[derive(Serialize, ToSchema)]
pub struct Cleared {
    /// How many waiting messages were dropped.
    cleared: u64,
}

#[utoipa::path(
    delete, path = "/api/control/queue", tag = "missions",
    summary = "Drop every message waiting in the caller's missions",
    responses((status = 200, description = "dropped", body = Cleared)),
)]
pub async fn clear_queue(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
) -> ApiResult<Json<Cleared>> {
    Ok(Json(Cleared {
        cleared: m.drop_queued(&c, None).await?,
    }))
}

#[utoipa::path(
    delete, path = "/api/control/queue/{id}", tag = "missions",
    summary = "Drop one waiting message of the caller's",
    params(("id" = String, Path, description = "the message's id")),
    responses(
        (status = 200, description = "dropped", body = Cleared),
        (status = 404, description = "no waiting message of the caller's with that id"),
    ),
)]
pub async fn drop_queued(
    State(m): State<Missions>,
    Extension(c): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<Cleared>> {
    Ok(Json(Cleared {
        cleared: m.drop_queued(&c, Some(&id)).await?,
    }))
}

/// Open Agent's subtask progress: berth's agent works in one turn at a time, without subtasks.
#[derive(Serialize, ToSchema)]
pub struct Progress {
    total_subtasks: u32,
    completed_subtasks: u32,
    current_subtask: Option<String>,
    current_depth: u32,
}

#[utoipa::path(
    get, path = "/api/control/progress", tag = "missions",
    summary = "Subtask progress (always none: berth's turns have no subtasks)",
    responses((status = 200, description = "the progress", body = Progress)),
)]
pub async fn progress(Extension(_c): Extension<Principal>) -> Json<Progress> {
    Json(Progress {
        total_subtasks: 0,
        completed_subtasks: 0,
        current_subtask: None,
        current_depth: 0,
    })
}

/// Whether a run-state `status` event means the agent works (`running`) or waits (`idle`).
fn state_of(status: &Value) -> &'static str {
    match status.as_str() {
        Some("running") | Some("retrying") => "running",
        _ => "idle",
    }
}

/// The id of the answer to a turn: OpenCode's message id, else one derived from the user message's.
fn answer_id(d: &Value) -> Value {
    match d["opencode_message_id"].as_str() {
        Some(id) => json!(id),
        None => json!(format!(
            "{}:answer",
            d["message_id"].as_str().unwrap_or_default()
        )),
    }
}

/// A stored event with Open Agent's fields beside berth's: `event_type`, `sequence`, `timestamp`,
/// `content` (text; a tool's arguments or result as JSON text), `metadata`, `event_id` (a message's
/// id), `tool_call_id`, `tool_name`, and each type's flat fields (`state`, `queue_len`, `queued`,
/// `success`, `name`, `args`, `result`, `done`, `message`).
pub fn with_open_agent_fields(ev: &Event) -> Value {
    let d = &ev.data;
    let mut v = json!(ev);
    v["event_type"] = json!(ev.event_type);
    v["sequence"] = json!(ev.seq);
    v["timestamp"] = json!(ev.created_at);
    v["metadata"] = json!({});
    let text = |x: &Value| match x {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match ev.event_type.as_str() {
        "status" => {
            v["state"] = json!(state_of(&d["status"]));
            v["queue_len"] = json!(d["queue_len"].as_u64().unwrap_or(0));
        }
        "user_message" => {
            v["content"] = d["content"].clone();
            v["queued"] = json!(d["queued"].as_bool().unwrap_or(false));
            v["event_id"] = d["message_id"].clone();
        }
        "assistant_message" => {
            // A failed turn's answer says so (`success: false`); any other is a success.
            let success = d["success"].as_bool().unwrap_or(true);
            v["content"] = d["content"].clone();
            v["success"] = json!(success);
            v["cost_cents"] = json!(0);
            v["model"] = d["model"].clone();
            v["event_id"] = answer_id(d);
            v["metadata"] = json!({ "success": success, "cost_cents": 0, "model": d["model"] });
        }
        "thinking" => {
            v["content"] = d["content"].clone();
            v["done"] = json!(true);
            v["metadata"] = json!({ "done": true });
        }
        "tool_call" => {
            v["tool_call_id"] = d["call_id"].clone();
            v["tool_name"] = d["tool"].clone();
            v["name"] = d["tool"].clone();
            v["args"] = d["input"].clone();
            v["content"] = json!(text(&d["input"]));
        }
        "tool_result" => {
            v["tool_call_id"] = d["call_id"].clone();
            v["tool_name"] = d["tool"].clone();
            v["name"] = d["tool"].clone();
            v["result"] = d["output"].clone();
            v["content"] = json!(text(&d["output"]));
        }
        "error" => {
            v["message"] = d["message"].clone();
            v["content"] = d["message"].clone();
        }
        _ => {}
    }
    v
}

/// A stream frame's payload: the stored event's fields, with a message's own id as `id` (so a
/// client matches it to what `POST /api/control/message` answered; the SSE `id:` line keeps the
/// event's global id).
pub fn frame_payload(ev: &Event) -> Value {
    let mut v = with_open_agent_fields(ev);
    if matches!(ev.event_type.as_str(), "user_message" | "assistant_message") {
        v["id"] = v["event_id"].clone();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, data: Value) -> Event {
        Event {
            id: 7,
            mission_id: "m1".into(),
            seq: 3,
            event_type: kind.into(),
            data,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn events_carry_open_agents_flat_fields_beside_berths() {
        let call = with_open_agent_fields(&ev(
            "tool_call",
            json!({ "tool": "bash", "call_id": "c1", "input": { "command": "ls" } }),
        ));
        assert_eq!(call["tool_call_id"], "c1");
        assert_eq!(call["name"], "bash");
        assert_eq!(call["args"]["command"], "ls");
        assert_eq!(call["content"], r#"{"command":"ls"}"#);
        assert_eq!(call["data"]["call_id"], "c1", "berth's own shape stays");
        assert_eq!(
            (call["id"].as_i64(), call["sequence"].as_i64()),
            (Some(7), Some(3))
        );
        let status = with_open_agent_fields(&ev("status", json!({ "status": "cancelled" })));
        assert_eq!(status["state"], "idle");
        let said = frame_payload(&ev(
            "user_message",
            json!({ "message_id": "u1", "content": "hi", "queued": false }),
        ));
        assert_eq!(
            (said["id"].as_str(), said["content"].as_str()),
            (Some("u1"), Some("hi"))
        );
        let answer = frame_payload(&ev(
            "assistant_message",
            json!({ "message_id": "u1", "content": "yo", "opencode_message_id": "msg_9" }),
        ));
        assert_eq!(answer["id"], "msg_9");
        assert_eq!(answer["success"], true);
    }
}
