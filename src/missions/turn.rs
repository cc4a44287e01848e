//! One turn: a user message sent to the mission's OpenCode session, and OpenCode's event stream turned
//! into mission events (thinking, tool_call, tool_result, error, assistant_message) until the session is
//! idle again. Text deltas are not stored one by one: the final text is one `assistant_message`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{MissionStatus, Missions};
use crate::opencode::{message_text, Client};
use crate::store::missions::MessageRow;
use crate::workspaces::model::Status as WsStatus;

/// How a turn ended, for the message's stored status.
pub(super) enum Outcome {
    /// With the final answer, which the closing `idle` status carries as its summary.
    Done(String),
    Failed(String),
    Cancelled,
    Interrupted,
}

impl Missions {
    pub(super) async fn run_turn(
        &self,
        mission_id: &str,
        msg: MessageRow,
        cancel: CancellationToken,
    ) {
        let Ok(Some(mission)) = self.inner.store.get_mission(mission_id).await else {
            return;
        };
        let owner = mission.owner.clone();
        let hub = &self.inner.hub;
        let _ = self
            .inner
            .store
            .transition_mission(
                mission_id,
                &[MissionStatus::Pending, MissionStatus::Active],
                MissionStatus::Active,
            )
            .await;
        let waiting = self.inner.store.queued_count(mission_id).await.unwrap_or(0);
        hub.emit(
            mission_id,
            &owner,
            "status",
            json!({ "status": "running", "message_id": msg.id, "queue_len": waiting }),
        )
        .await;

        let outcome = self.turn(&mission, &msg, &cancel).await;
        self.finish_turn(&mission, &msg, outcome).await;
    }

    /// Records how a turn ended: the message's status, the closing events, and an interrupted mission.
    pub(super) async fn finish_turn(
        &self,
        mission: &crate::store::missions::MissionRow,
        msg: &MessageRow,
        outcome: Outcome,
    ) {
        let (mission_id, owner) = (mission.id.as_str(), mission.owner.as_str());
        let hub = &self.inner.hub;
        let (message_status, event) = match &outcome {
            Outcome::Done(summary) => (
                "done",
                json!({ "status": "idle", "message_id": msg.id, "summary": summary }),
            ),
            Outcome::Failed(e) => {
                hub.emit(
                    mission_id,
                    owner,
                    "error",
                    json!({ "message": e, "message_id": msg.id }),
                )
                .await;
                // The turn's answer is the failure: a conversation read back later (Open Agent's
                // history) shows it where the answer would be.
                hub.emit(
                    mission_id,
                    owner,
                    "assistant_message",
                    json!({ "content": e, "message_id": msg.id, "success": false }),
                )
                .await;
                (
                    "failed",
                    json!({ "status": "idle", "message_id": msg.id, "result": "failed" }),
                )
            }
            Outcome::Cancelled => (
                "cancelled",
                json!({ "status": "cancelled", "message_id": msg.id }),
            ),
            Outcome::Interrupted => (
                "interrupted",
                json!({ "status": "interrupted", "message_id": msg.id }),
            ),
        };
        if let Err(e) = self
            .inner
            .store
            .finish_message(&msg.id, message_status)
            .await
        {
            tracing::error!(mission.id = %mission_id, error = %e, "recording the turn's end failed");
        }
        if matches!(outcome, Outcome::Interrupted) {
            let _ = self
                .inner
                .store
                .transition_mission(
                    mission_id,
                    &[MissionStatus::Active],
                    MissionStatus::Interrupted,
                )
                .await;
        }
        let mut event = event;
        event["queue_len"] = json!(self.inner.store.queued_count(mission_id).await.unwrap_or(0));
        hub.emit(mission_id, owner, "status", event).await;
    }

    async fn turn(
        &self,
        mission: &crate::store::missions::MissionRow,
        msg: &MessageRow,
        cancel: &CancellationToken,
    ) -> Outcome {
        let ws = match self.inner.workspaces.get(&mission.workspace_id).await {
            Ok(ws) if ws.status == WsStatus::Ready => ws,
            Ok(ws) => {
                return Outcome::Failed(format!(
                    "workspace {} is {}, not ready",
                    ws.name,
                    ws.status.as_str()
                ))
            }
            Err(_) => return Outcome::Failed("the mission's workspace was deleted".into()),
        };
        let client = tokio::select! {
            c = self.agent_client(&ws) => match c {
                Ok(c) => c,
                Err(e) => return Outcome::Failed(format!("start the agent server: {e}")),
            },
            _ = cancel.cancelled() => return self.stopped(),
        };
        let session = match self.session(mission, &client).await {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(e),
        };
        // Subscribe before prompting, so no event of the turn is missed.
        let mut events = match client.events().await {
            Ok(e) => e,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        // A resumed message whose prompt OpenCode already has is continued, not sent again: what its
        // tools did is in the session, and sending it again would run them twice.
        let text = if msg.delivered_at.is_some() && prompt_in_session(&client, &session, msg).await
        {
            CONTINUE_PROMPT
        } else {
            msg.content.as_str()
        };
        let mut body = json!({ "parts": [{ "type": "text", "text": text }] });
        if let Some(agent) = msg.agent.as_ref().or(mission.agent.as_ref()) {
            body["agent"] = json!(agent);
        }
        if let Some((provider, model)) = mission
            .model_override
            .as_deref()
            .and_then(|m| m.split_once('/'))
        {
            body["model"] = json!({ "providerID": provider, "modelID": model });
        }
        if let Some(effort) = &mission.model_effort {
            // OpenCode's model variants carry the reasoning effort (`low`, `medium`, `high`).
            body["variant"] = json!(effort);
        }
        if let Err(e) = client.prompt(&session, &body).await {
            return Outcome::Failed(e.to_string());
        }
        if let Err(e) = self.inner.store.mark_delivered(&msg.id).await {
            tracing::warn!(mission.id = %mission.id, error = %e, "recording the prompt's delivery failed");
        }

        let mut tr = Translator::new(session.clone());
        let deadline = tokio::time::sleep(Duration::from_secs(self.inner.config.turn_timeout_secs));
        tokio::pin!(deadline);
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = client.abort(&session).await;
                    return self.stopped();
                }
                _ = &mut deadline => {
                    let _ = client.abort(&session).await;
                    return Outcome::Failed(format!("the turn took longer than {}s and was aborted", self.inner.config.turn_timeout_secs));
                }
                // OpenCode sends a heartbeat every 10 s; silence means the server is gone.
                ev = tokio::time::timeout(Duration::from_secs(30), events.next()) => ev,
            };
            let ev = match next {
                Ok(Some(ev)) => ev,
                Ok(None) | Err(_) => {
                    if client.healthy().await {
                        // The stream broke but the server lives: reconnect and look at the session.
                        match client.events().await {
                            Ok(e) => events = e,
                            Err(e) => return Outcome::Failed(e.to_string()),
                        }
                        if self.session_idle(&client, &session).await {
                            break;
                        }
                        continue;
                    }
                    self.inner.runtime.forget(&ws.id);
                    return Outcome::Failed("the agent server stopped mid-turn; it will be restarted for the next message".into());
                }
            };
            for (kind, data) in tr.handle(&ev) {
                self.inner
                    .hub
                    .emit(&mission.id, &mission.owner, kind, data)
                    .await;
            }
            if tr.idle {
                break;
            }
        }
        if let Some(err) = tr.error.take() {
            return Outcome::Failed(err);
        }
        match final_text(&client, &session).await {
            Ok((text, oc_id)) => {
                self.inner
                    .hub
                    .emit(&mission.id, &mission.owner, "assistant_message", json!({ "content": text, "message_id": msg.id, "opencode_message_id": oc_id }))
                    .await;
                Outcome::Done(text)
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    /// A stop asked for by the user, or by berth shutting down (which interrupts the mission).
    fn stopped(&self) -> Outcome {
        if self.inner.shutdown.is_cancelled() {
            Outcome::Interrupted
        } else {
            Outcome::Cancelled
        }
    }

    /// The mission's OpenCode session: the stored one while the server still has it (it lives on the
    /// workspace volume), else a new one.
    pub(super) async fn session(
        &self,
        mission: &crate::store::missions::MissionRow,
        client: &Client,
    ) -> Result<String, String> {
        if let Some(s) = &mission.opencode_session_id {
            if client.session_exists(s).await {
                return Ok(s.clone());
            }
        }
        let title = mission
            .title
            .clone()
            .unwrap_or_else(|| format!("berth mission {}", mission.id));
        let s = client
            .create_session(&title)
            .await
            .map_err(|e| e.to_string())?;
        self.inner
            .store
            .set_mission_session(&mission.id, &s)
            .await
            .map_err(|e| e.to_string())?;
        Ok(s)
    }

    pub(super) async fn session_idle(&self, client: &Client, session: &str) -> bool {
        let req = client.request(reqwest::Method::GET, "/session/status");
        match req.timeout(Duration::from_secs(10)).send().await {
            Ok(r) => r
                .json::<Value>()
                .await
                .map(|v| v.get(session).is_none())
                .unwrap_or(false),
            Err(_) => false,
        }
    }
}

/// What a resumed turn sends instead of a prompt OpenCode already has.
const CONTINUE_PROMPT: &str = "berth restarted while you were working on the previous message. Continue it from where you stopped. The tool calls above already ran: do not run them again.";

/// Whether the session holds `msg`'s prompt as its last user message.
async fn prompt_in_session(client: &Client, session: &str, msg: &MessageRow) -> bool {
    match client.messages(session).await {
        Ok(messages) => super::recovery::prompt_index(&messages, msg).is_some(),
        Err(_) => false,
    }
}

/// The text of the session's last assistant message, and its OpenCode id.
pub(super) async fn final_text(client: &Client, session: &str) -> Result<(String, Value), String> {
    let messages = client.messages(session).await.map_err(|e| e.to_string())?;
    let last = messages
        .iter()
        .rev()
        .find(|m| m["info"]["role"] == "assistant");
    let Some(last) = last else {
        return Ok((String::new(), Value::Null));
    };
    if let Some(err) = last["info"]["error"].as_object() {
        let msg = err
            .get("data")
            .and_then(|d| d["message"].as_str())
            .unwrap_or("agent error");
        return Err(msg.to_string());
    }
    Ok((message_text(last), last["info"]["id"].clone()))
}

/// Turns OpenCode events of one session into mission events, each once.
pub(super) struct Translator {
    session: String,
    pub(super) called: HashSet<String>,
    pub(super) resulted: HashSet<String>,
    thought: HashSet<String>,
    roles: HashMap<String, String>,
    idle: bool,
    error: Option<String>,
}

impl Translator {
    pub(super) fn new(session: String) -> Self {
        Self {
            session,
            called: HashSet::new(),
            resulted: HashSet::new(),
            thought: HashSet::new(),
            roles: HashMap::new(),
            idle: false,
            error: None,
        }
    }

    pub(super) fn handle(&mut self, ev: &Value) -> Vec<(&'static str, Value)> {
        let props = &ev["properties"];
        let session = props["sessionID"]
            .as_str()
            .or(props["part"]["sessionID"].as_str())
            .or(props["info"]["sessionID"].as_str());
        if session != Some(self.session.as_str()) {
            return Vec::new();
        }
        let mut out = Vec::new();
        match ev["type"].as_str().unwrap_or_default() {
            "message.updated" => {
                if let (Some(id), Some(role)) =
                    (props["info"]["id"].as_str(), props["info"]["role"].as_str())
                {
                    self.roles.insert(id.to_string(), role.to_string());
                }
            }
            "message.part.updated" => {
                let part = &props["part"];
                match part["type"].as_str() {
                    Some("tool") => {
                        let call = part["callID"].as_str().unwrap_or_default().to_string();
                        let state = &part["state"];
                        let status = state["status"].as_str().unwrap_or_default();
                        if matches!(status, "running" | "completed" | "error")
                            && self.called.insert(call.clone())
                        {
                            out.push(("tool_call", json!({ "tool": part["tool"], "call_id": call, "input": state["input"] })));
                        }
                        if matches!(status, "completed" | "error")
                            && self.resulted.insert(call.clone())
                        {
                            let output = if status == "error" {
                                &state["error"]
                            } else {
                                &state["output"]
                            };
                            // The path and whether the file existed let clients tell a created file
                            // from a changed one.
                            let path = state["input"]["filePath"].clone();
                            let existed = state["metadata"]["exists"].clone();
                            out.push(("tool_result", json!({ "tool": part["tool"], "call_id": call, "status": status, "output": output, "title": state["title"], "path": path, "existed": existed })));
                        }
                    }
                    Some("reasoning") if !part["time"]["end"].is_null() => {
                        let id = part["id"].as_str().unwrap_or_default().to_string();
                        if self.thought.insert(id) {
                            out.push(("thinking", json!({ "content": part["text"] })));
                        }
                    }
                    _ => {}
                }
            }
            "session.status" if props["status"]["type"] == "retry" => {
                out.push(("status", json!({ "status": "retrying", "attempt": props["status"]["attempt"], "message": props["status"]["message"] })));
            }
            "session.error" => {
                let err = &props["error"];
                if err["name"] != "MessageAbortedError" {
                    let message = err["data"]["message"]
                        .as_str()
                        .or(err["name"].as_str())
                        .unwrap_or("agent error");
                    self.error = Some(message.to_string());
                }
            }
            "session.idle" => self.idle = true,
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse_events(text: &str) -> Vec<Value> {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    }

    #[test]
    fn a_captured_tool_turn_becomes_one_call_and_one_result() {
        let text = include_str!("../../tests/fixtures/event_turn2_tool.sse");
        let events = sse_events(text);
        let session = events
            .iter()
            .find_map(|e| e["properties"]["sessionID"].as_str())
            .expect("a session id")
            .to_string();
        let mut tr = Translator::new(session);
        let out: Vec<_> = events.iter().flat_map(|e| tr.handle(e)).collect();
        let kinds: Vec<&str> = out.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, vec!["tool_call", "tool_result"], "{out:?}");
        assert_eq!(out[0].1["tool"], "bash");
        assert!(out[1].1["output"].as_str().unwrap().contains("hello.txt"));
        assert!(tr.idle);
        assert!(tr.error.is_none());
    }

    #[test]
    fn other_sessions_are_ignored_and_errors_are_kept() {
        let mut tr = Translator::new("ses_a".into());
        let other = json!({ "type": "session.idle", "properties": { "sessionID": "ses_b" } });
        assert!(tr.handle(&other).is_empty());
        assert!(!tr.idle);
        let err = json!({ "type": "session.error", "properties": { "sessionID": "ses_a", "error": { "name": "APIError", "data": { "message": "fake error 400" } } } });
        tr.handle(&err);
        assert_eq!(tr.error.as_deref(), Some("fake error 400"));
    }
}
