//! A codebase's sessions: those its runs opened (one per trigger or task) and those its worker or a sync
//! reported, and a session's messages in the seed's simple shape.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};

use super::{owner_of, page, worker_key, Agents, Caller};
use crate::error::{ApiError, ApiResult};
use crate::missions::MissionStatus;
use crate::opencode::message_text;

impl Agents {
    /// The codebase's sessions, newest first: its runs' sessions and those its worker (or a sync)
    /// reported.
    pub async fn sessions(&self, codebase_id: &str, limit: i64, offset: i64) -> ApiResult<Value> {
        let row = self.codebase(codebase_id).await?;
        let store = &self.inner.store;
        let mut sessions: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for m in store.list_missions(Some(&owner_of(&row.id))).await? {
            let Some(sid) = m.opencode_session_id.clone() else {
                continue;
            };
            let running = self.missions().is_busy(&m.id).await;
            let count = store
                .count_mission_events(&m.id, &["user_message", "assistant_message"])
                .await?;
            let status = if running {
                "running"
            } else {
                match m.status {
                    MissionStatus::Failed => "failed",
                    MissionStatus::Interrupted => "interrupted",
                    _ => "completed",
                }
            };
            seen.insert(sid.clone());
            sessions.push(json!({
                "id": sid,
                "codebase_id": row.id,
                "started_at": m.created_at,
                "ended_at": (!running).then_some(m.updated_at),
                "status": status,
                "model": m.model_override,
                "prompt": m.title,
                "messages_count": count,
            }));
        }
        for data in store.synced_sessions(&row.id).await? {
            let s: Value = serde_json::from_str(&data).unwrap_or_default();
            let Some(sid) = s["id"].as_str() else {
                continue;
            };
            if seen.insert(sid.to_string()) {
                sessions.push(json!({
                    "id": sid,
                    "codebase_id": row.id,
                    "started_at": ms_time(&s["created"]).or(ms_time(&s["time"]["created"])),
                    "ended_at": ms_time(&s["updated"]).or(ms_time(&s["time"]["updated"])),
                    "status": s["status"].as_str().unwrap_or("completed"),
                    "model": s["model"],
                    "prompt": s["title"],
                    "messages_count": s["messageCount"].as_i64().unwrap_or(0),
                }));
            }
        }
        sessions.sort_by(|a, b| b["started_at"].as_str().cmp(&a["started_at"].as_str()));
        let total = sessions.len();
        let page = page(sessions, limit, offset);
        Ok(json!({ "sessions": page, "total": total, "limit": limit, "offset": offset }))
    }

    /// Records sessions: a worker's list for its codebase, or (no list) what the codebase's OpenCode
    /// server holds.
    pub async fn sync_sessions(
        &self,
        caller: &Caller,
        codebase_id: &str,
        worker_id: Option<String>,
        sessions: Option<Vec<Value>>,
    ) -> ApiResult<usize> {
        let row = self.codebase(codebase_id).await?;
        let store = &self.inner.store;
        let (list, from) = match sessions {
            Some(list) => {
                let worker = reporting_worker(caller, worker_id);
                self.check_serves(worker.as_deref(), &row).await?;
                (list, worker)
            }
            None => {
                let ws_id = row.workspace_id.as_deref().ok_or_else(|| {
                    ApiError::invalid("a remote codebase's worker sends its sessions in the body")
                })?;
                let ws = self.inner.workspaces.get(ws_id).await?;
                let client = self.missions().agent_client(&ws).await?;
                let v = client.get("/session").await?;
                (v.as_array().cloned().unwrap_or_default(), None)
            }
        };
        if list.len() > 10_000 {
            return Err(ApiError::invalid("at most 10000 sessions per sync"));
        }
        // All checked before any is stored: a refused sync stores nothing.
        let session_id = |s: &Value| {
            s["id"]
                .as_str()
                .filter(|id| !id.is_empty() && id.len() <= 256)
                .map(str::to_string)
        };
        if list.iter().any(|s| session_id(s).is_none()) {
            return Err(ApiError::invalid("every session needs a string id"));
        }
        for s in &list {
            let id = session_id(s).unwrap_or_default();
            let mut data = s.clone();
            // A session list carries no messages: keep those a message sync stored.
            if data.get("messages").is_none() {
                if let Some(before) = store.synced_session(&row.id, &id).await? {
                    let before: Value = serde_json::from_str(&before).unwrap_or_default();
                    if let Some(m) = before.get("messages") {
                        data["messages"] = m.clone();
                    }
                }
            }
            store
                .upsert_synced_session(&row.id, &id, from.as_deref(), &data.to_string())
                .await?;
        }
        Ok(list.len())
    }

    /// Records a session's messages as the worker serving the codebase sent them (all it has of the
    /// session: they replace what was stored); the session is recorded too if it was not.
    pub async fn sync_messages(
        &self,
        caller: &Caller,
        codebase_id: &str,
        session_id: &str,
        worker_id: Option<String>,
        messages: Vec<Value>,
    ) -> ApiResult<usize> {
        let row = self.codebase(codebase_id).await?;
        let worker = reporting_worker(caller, worker_id);
        self.check_serves(worker.as_deref(), &row).await?;
        if session_id.is_empty() || session_id.len() > 256 {
            return Err(ApiError::invalid("a session id is 1 to 256 characters"));
        }
        if messages.len() > 10_000 {
            return Err(ApiError::invalid("at most 10000 messages per sync"));
        }
        if messages.iter().any(|m| !m.is_object()) {
            return Err(ApiError::invalid("every message is a JSON object"));
        }
        let store = &self.inner.store;
        let mut data = match store.synced_session(&row.id, session_id).await? {
            Some(d) => serde_json::from_str(&d).unwrap_or_else(|_| json!({})),
            None => json!({ "id": session_id, "status": "running" }),
        };
        data["id"] = json!(session_id);
        data["messageCount"] = json!(messages.len());
        let n = messages.len();
        data["messages"] = Value::Array(messages);
        store
            .upsert_synced_session(&row.id, session_id, worker.as_deref(), &data.to_string())
            .await?;
        Ok(n)
    }

    /// A session's messages (the codebase's current one when none is named).
    pub async fn session_messages(
        &self,
        codebase_id: &str,
        session_id: Option<String>,
        limit: i64,
    ) -> ApiResult<Value> {
        let row = self.codebase(codebase_id).await?;
        let current = self.codebase_state(row.clone()).await.session_id;
        let sid = session_id.or(current).ok_or_else(|| {
            ApiError::not_found(format!("codebase {} has no session yet", row.name))
        })?;
        let Some(ws_id) = &row.workspace_id else {
            // A remote codebase's messages are what its worker synced with the session.
            let data = self.inner.store.synced_sessions(&row.id).await?;
            let s = data
                .iter()
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .find(|s| s["id"] == sid.as_str())
                .ok_or_else(|| ApiError::not_found(format!("Session {sid} not found")))?;
            let msgs: Vec<Value> = s["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(worker_message)
                .collect();
            return Ok(json!({ "messages": msgs, "session_id": sid }));
        };
        let ws = self.inner.workspaces.get(ws_id).await?;
        let client = self.missions().agent_client(&ws).await?;
        if !client.session_exists(&sid).await {
            return Err(ApiError::not_found(format!("Session {sid} not found")));
        }
        let raw = client.messages(&sid).await?;
        let messages: Vec<Value> = raw
            .iter()
            .rev()
            .take(limit as usize)
            .rev()
            .map(simple_message)
            .collect();
        Ok(json!({ "messages": messages, "session_id": sid }))
    }
}

/// The worker a sync reports for: a worker's token speaks for itself; a user's names one of theirs.
fn reporting_worker(caller: &Caller, named: Option<String>) -> Option<String> {
    match caller {
        Caller::Worker { id: me, .. } => Some(me.clone()),
        Caller::User(p) => named.map(|w| worker_key(&p.name, &w)),
    }
}

/// OpenCode's `{info, parts}` as the seed's `{id, role, content, timestamp}`.
pub(super) fn simple_message(m: &Value) -> Value {
    let info = &m["info"];
    json!({
        "id": info["id"],
        "role": info["role"],
        "content": message_text(m),
        "timestamp": ms_time(&info["time"]["created"]),
        "agent": info["agent"].as_str().or(info["mode"].as_str()),
        "model": info["modelID"].as_str().or(info["model"]["modelID"].as_str()),
    })
}

/// A message as a worker synced it: OpenCode's `{info, parts}`, or already flat (`{id, role, content,
/// timestamp}` or CodeTether's `{id, role, time: {created}, parts}`), in the seed's shape.
fn worker_message(m: &Value) -> Value {
    if m.get("info").is_some() {
        return simple_message(m);
    }
    let content = match m["content"].as_str() {
        Some(c) => c.to_string(),
        None => message_text(m),
    };
    let timestamp = match &m["timestamp"] {
        Value::String(t) => json!(t),
        _ => json!(ms_time(&m["time"]["created"])),
    };
    json!({ "id": m["id"], "role": m["role"], "content": content, "timestamp": timestamp })
}

/// OpenCode's epoch milliseconds as RFC 3339.
pub(super) fn ms_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_i64()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opencode_messages_become_simple_ones() {
        let m = json!({
            "info": { "id": "msg_1", "role": "assistant", "time": { "created": 1_700_000_000_000i64 }, "modelID": "fake-model" },
            "parts": [{ "type": "step-start" }, { "type": "text", "text": "Hel" }, { "type": "text", "text": "lo" }]
        });
        let s = simple_message(&m);
        assert_eq!(s["content"], "Hello");
        assert_eq!(s["role"], "assistant");
        assert_eq!(s["model"], "fake-model");
        assert_eq!(s["timestamp"], "2023-11-14T22:13:20Z");
        let flat = worker_message(&json!({
            "id": "m2", "role": "user", "time": { "created": 1_700_000_000_000i64 },
            "parts": [{ "type": "text", "text": "hi" }]
        }));
        assert_eq!(
            flat,
            json!({ "id": "m2", "role": "user", "content": "hi", "timestamp": "2023-11-14T22:13:20Z" })
        );
    }
}
