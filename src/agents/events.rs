//! A codebase's event stream in the seed's vocabulary (`status`, `output`, `tool_use`, `file_change`,
//! `complete`, `error`), mapped from the stored events of its runs (mission events) and of its tasks
//! (already in that vocabulary).

use serde_json::{json, Value};

use crate::missions::Event;

/// Tools whose completed result means a file was created or changed.
const FILE_TOOLS: [&str; 3] = ["write", "edit", "patch"];

/// One event of the seed's stream: its name and data.
pub type SeedEvent = (String, Value);

fn frame(kind: &str, data: Value) -> SeedEvent {
    (kind.to_string(), data)
}

/// The seed's events for one stored event (none for what clients sent themselves).
pub fn seed_events(ev: &Event) -> Vec<SeedEvent> {
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
        "status" => {
            let status = d["status"].as_str().unwrap_or_default();
            // Every status frame says something a person can read, as in the seed.
            let message = d["message"]
                .as_str()
                .or(d["reason"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("Agent {status}"));
            match status {
                "running" => vec![frame(
                    "status",
                    with_ids(json!({ "status": "running", "message": message })),
                )],
                // A failed turn already said why in an error event.
                "idle" if d["result"] == "failed" => Vec::new(),
                "idle" => vec![frame(
                    "complete",
                    with_ids(
                        json!({ "status": "completed", "summary": d["summary"], "message_id": d["message_id"] }),
                    ),
                )],
                "cancelled" => vec![frame(
                    "complete",
                    with_ids(
                        json!({ "status": "cancelled", "summary": null, "message_id": d["message_id"] }),
                    ),
                )],
                "active" | "pending" if task.is_none() => Vec::new(),
                _ => vec![frame(
                    "status",
                    with_ids(json!({ "status": status, "message": message })),
                )],
            }
        }
        // A failed turn's answer is its `error` event here.
        "assistant_message" if d["success"] == false => Vec::new(),
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
            if FILE_TOOLS.contains(&tool) && d["status"] == "completed" {
                let action = match (tool, d["existed"].as_bool()) {
                    ("write", Some(false)) => "create",
                    _ => "modify",
                };
                let path = if d["path"].is_string() {
                    &d["path"]
                } else {
                    &d["title"]
                };
                out.push(frame(
                    "file_change",
                    with_ids(json!({ "action": action, "path": path })),
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, data: Value) -> Event {
        Event {
            id: 7,
            mission_id: "m1".into(),
            seq: 1,
            event_type: kind.into(),
            data,
            created_at: chrono::Utc::now(),
        }
    }

    fn kinds(e: &Event) -> Vec<String> {
        seed_events(e).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn mission_events_become_the_seeds() {
        assert_eq!(
            kinds(&ev("status", json!({ "status": "running" }))),
            ["status"]
        );
        assert_eq!(
            kinds(&ev("status", json!({ "status": "idle" }))),
            ["complete"]
        );
        assert!(kinds(&ev(
            "status",
            json!({ "status": "idle", "result": "failed" })
        ))
        .is_empty());
        assert!(kinds(&ev("user_message", json!({ "content": "hi" }))).is_empty());
        let write = ev(
            "tool_result",
            json!({ "tool": "write", "status": "completed", "title": "hello.txt", "path": "/code/hello.txt", "existed": false, "output": "" }),
        );
        let out = seed_events(&write);
        assert_eq!(
            out[1],
            (
                "file_change".to_string(),
                json!({ "action": "create", "path": "/code/hello.txt", "mission_id": "m1" })
            )
        );
        let edit = ev(
            "tool_result",
            json!({ "tool": "edit", "status": "completed", "title": "a.rs" }),
        );
        assert_eq!(seed_events(&edit)[1].1["action"], "modify");
        let done = seed_events(&ev(
            "status",
            json!({ "status": "idle", "summary": "All done" }),
        ));
        assert_eq!(done[0].1["summary"], "All done");
        let interrupted = seed_events(&ev(
            "status",
            json!({ "status": "interrupted", "reason": "berth restarted" }),
        ));
        assert_eq!(interrupted[0].1["message"], "berth restarted");
        let bash = ev(
            "tool_result",
            json!({ "tool": "bash", "status": "completed" }),
        );
        assert_eq!(kinds(&bash), ["output"]);
        let err = seed_events(&ev("error", json!({ "message": "boom" })));
        assert_eq!(err[0].1["error"], "boom");
        assert_eq!(err[0].1["code"], "AGENT_ERROR");
        // A worker's events are already in the seed's vocabulary.
        let worker = seed_events(&ev(
            "output",
            json!({ "type": "text", "content": "x", "task_id": "t" }),
        ));
        assert_eq!(worker[0].0, "output");
        assert_eq!(worker[0].1["task_id"], "t");
    }
}
