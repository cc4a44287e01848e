//! A codebase's event stream in the seed's vocabulary (`status`, `output`, `tool_use`, `file_change`,
//! `complete`, `error`), mapped from the stored events of its runs (mission events) and of its tasks
//! (already in that vocabulary).

use axum::response::sse::Event as SseEvent;
use serde_json::{json, Value};

use crate::missions::Event;

/// Tools whose result means a file changed, and the action each stands for.
const FILE_TOOLS: [(&str, &str); 3] = [("write", "write"), ("edit", "edit"), ("patch", "patch")];

fn frame(kind: &str, data: Value) -> SseEvent {
    SseEvent::default().event(kind).data(data.to_string())
}

pub fn seed_frames(ev: &Event) -> Vec<SseEvent> {
    let d = &ev.data;
    let task = d.get("task_id").cloned();
    let with_ids = |mut v: Value| {
        v["mission_id"] = json!(ev.mission_id);
        if let Some(t) = &task {
            v["task_id"] = t.clone();
        }
        v
    };
    match ev.event_type.as_str() {
        "status" => match d["status"].as_str().unwrap_or_default() {
            "running" => vec![frame(
                "status",
                with_ids(
                    json!({ "status": "running", "message": d["message"].as_str().unwrap_or("Agent started") }),
                ),
            )],
            // A failed turn already said why in an error event.
            "idle" if d["result"] == "failed" => Vec::new(),
            "idle" => vec![frame(
                "complete",
                with_ids(json!({ "status": "completed", "message_id": d["message_id"] })),
            )],
            "cancelled" => vec![frame(
                "complete",
                with_ids(json!({ "status": "cancelled", "message_id": d["message_id"] })),
            )],
            "active" | "pending" => Vec::new(),
            _ => vec![frame("status", with_ids(d.clone()))],
        },
        "assistant_message" => vec![frame(
            "output",
            with_ids(json!({ "type": "text", "content": d["content"] })),
        )],
        "thinking" => vec![frame(
            "output",
            with_ids(json!({ "type": "reasoning", "content": d["content"] })),
        )],
        "tool_call" => vec![frame(
            "tool_use",
            with_ids(json!({ "tool": d["tool"], "args": d["input"], "call_id": d["call_id"] })),
        )],
        "tool_result" => {
            let tool = d["tool"].as_str().unwrap_or_default();
            let mut out = vec![frame(
                "output",
                with_ids(
                    json!({ "type": "tool_result", "tool": tool, "status": d["status"], "content": d["output"] }),
                ),
            )];
            if let Some((_, action)) = FILE_TOOLS.iter().find(|(t, _)| *t == tool) {
                if d["status"] == "completed" {
                    let path = d["title"].clone();
                    out.push(frame(
                        "file_change",
                        with_ids(json!({ "action": action, "path": path })),
                    ));
                }
            }
            out
        }
        "error" if d.get("code").is_some() => vec![frame("error", with_ids(d.clone()))],
        "error" => vec![frame(
            "error",
            with_ids(json!({ "error": d["message"], "code": "AGENT_ERROR" })),
        )],
        // Prompts are the client's own; other task events are already in the seed's vocabulary.
        "user_message" => Vec::new(),
        other => vec![frame(other, with_ids(d.clone()))],
    }
}
