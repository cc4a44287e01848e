//! Turns a berth restart cut off. The agent server runs on in its container while berth is down, so the
//! turn may go on or finish there: at start-up berth reattaches to the server (or starts one on the same
//! session), waits until the session is idle, and records what OpenCode stored — tool calls and results
//! it has not recorded yet, and the answer — instead of calling the turn interrupted. Only a turn that
//! really stopped half-way (its server died) is `interrupted`; resuming it continues it, never re-sending
//! the prompt, so no tool call runs twice.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::turn::{final_text, Outcome, Translator};
use super::{MissionStatus, Missions};
use crate::opencode::message_text;
use crate::store::missions::{MessageRow, MissionRow};
use crate::workspaces::model::Status as WsStatus;

/// How often a session still working after the restart is looked at.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The index of `msg`'s prompt in the session: the last user message, if its text is the prompt's.
pub(super) fn prompt_index(messages: &[Value], msg: &MessageRow) -> Option<usize> {
    let (i, last_user) = messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| m["info"]["role"] == "user")?;
    (message_text(last_user).trim() == msg.content.trim()).then_some(i)
}

impl Missions {
    /// At start-up: each mission's turn that was running when berth stopped is settled in the
    /// background, its mission held busy meanwhile so no other turn starts on the session.
    pub async fn recover(&self) -> anyhow::Result<()> {
        let store = &self.inner.store;
        for m in store.missions_with_status(MissionStatus::Active).await? {
            let Some(msg) = store
                .messages_in(&m.id, "running")
                .await?
                .into_iter()
                .next()
            else {
                continue;
            };
            let token = self.inner.shutdown.child_token();
            self.inner
                .runners
                .lock()
                .await
                .insert(m.id.clone(), Some(token.clone()));
            let this = self.clone();
            self.inner.tracker.spawn(async move {
                tracing::info!(mission.id = %m.id, "settling a turn a restart cut off");
                let outcome = this.recover_turn(&m, &msg, &token).await;
                this.finish_turn(&m, &msg, outcome).await;
                this.inner.runners.lock().await.remove(&m.id);
                // What was queued behind it runs now, unless the mission waits for a resume.
                let active = matches!(
                    this.inner.store.get_mission(&m.id).await,
                    Ok(Some(now)) if now.status == MissionStatus::Active
                );
                if active {
                    this.kick(&m.id).await;
                }
            });
        }
        Ok(())
    }

    async fn recover_turn(
        &self,
        mission: &MissionRow,
        msg: &MessageRow,
        cancel: &CancellationToken,
    ) -> Outcome {
        let ws = match self.inner.workspaces.get(&mission.workspace_id).await {
            Ok(ws) if ws.status == WsStatus::Ready => ws,
            _ => return Outcome::Interrupted,
        };
        let Some(session) = mission.opencode_session_id.clone() else {
            return Outcome::Interrupted;
        };
        let client = tokio::select! {
            c = self.agent_client(&ws) => match c {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(mission.id = %mission.id, error = %e, "no agent server to settle a cut-off turn with");
                    return Outcome::Interrupted;
                }
            },
            _ = cancel.cancelled() => return Outcome::Interrupted,
        };
        // A turn still running in a server that outlived berth goes on to its end.
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.inner.config.turn_timeout_secs);
        while !self.session_idle(&client, &session).await {
            if tokio::time::Instant::now() >= deadline {
                let _ = client.abort(&session).await;
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = cancel.cancelled() => return Outcome::Interrupted,
            }
        }
        let messages = match client.messages(&session).await {
            Ok(m) => m,
            Err(_) => return Outcome::Interrupted,
        };
        let Some(start) = prompt_index(&messages, msg) else {
            // The prompt never reached OpenCode: nothing ran, and resume sends it.
            return Outcome::Interrupted;
        };
        self.record_stored_parts(mission, &session, &messages[start + 1..])
            .await;
        let Some(last) = messages[start + 1..]
            .iter()
            .rev()
            .find(|m| m["info"]["role"] == "assistant")
        else {
            return Outcome::Interrupted;
        };
        let info = &last["info"];
        let finished = !info["time"]["completed"].is_null()
            && info["finish"] != "tool-calls"
            && info["error"].is_null();
        if !finished {
            if info["error"]["name"]
                .as_str()
                .is_some_and(|n| n != "MessageAbortedError")
            {
                let m = info["error"]["data"]["message"]
                    .as_str()
                    .unwrap_or("agent error");
                return Outcome::Failed(m.to_string());
            }
            return Outcome::Interrupted;
        }
        match final_text(&client, &session).await {
            Ok((text, oc_id)) => {
                self.inner
                    .hub
                    .emit(&mission.id, &mission.owner, "assistant_message", json!({ "content": text, "message_id": msg.id, "opencode_message_id": oc_id, "recovered": true }))
                    .await;
                tracing::info!(mission.id = %mission.id, "a cut-off turn finished in OpenCode; recorded");
                Outcome::Done(text)
            }
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Emits the tool calls, results and thoughts OpenCode stored for the turn that berth has not
    /// recorded yet (those it streamed before the crash are recorded already).
    async fn record_stored_parts(&self, mission: &MissionRow, session: &str, after: &[Value]) {
        let mut tr = Translator::new(session.to_string());
        let kinds = ["tool_call".to_string(), "tool_result".to_string()];
        if let Ok(seen) = self
            .inner
            .store
            .mission_events(&mission.id, &kinds, 100_000, 0)
            .await
        {
            for e in seen {
                let data: Value = serde_json::from_str(&e.data).unwrap_or_default();
                if let Some(call) = data["call_id"].as_str() {
                    let set = if e.event_type == "tool_call" {
                        &mut tr.called
                    } else {
                        &mut tr.resulted
                    };
                    set.insert(call.to_string());
                }
            }
        }
        for message in after {
            for part in message["parts"].as_array().into_iter().flatten() {
                let mut part = part.clone();
                part["sessionID"] = json!(session);
                let ev = json!({ "type": "message.part.updated", "properties": { "part": part } });
                for (kind, data) in tr.handle(&ev) {
                    self.inner
                        .hub
                        .emit(&mission.id, &mission.owner, kind, data)
                        .await;
                }
            }
        }
    }
}
