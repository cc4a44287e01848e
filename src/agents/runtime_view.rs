//! `/v1/opencode/status`, `/models` and `/runtime/*`: read from the OpenCode servers berth runs (one
//! per workspace), not from files on the host. A server that does not answer is skipped, so one dead
//! workspace never breaks the listing. A user sees only the servers of their own workspaces (an admin
//! all); workers see none: conversations are people's.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::sessions::ms_time;
use super::{page, Agents, Caller};
use crate::error::{ApiError, ApiResult};
use crate::opencode::Client;

/// Where OpenCode keeps its storage inside a workspace (its XDG data dir is on the volume).
const STORAGE_PATH: &str = "/workspace/.berth/opencode/data/opencode/storage";

impl Agents {
    /// The servers of the caller's workspaces that answer now, by workspace id.
    async fn live_servers(&self, caller: &Caller) -> ApiResult<Vec<(String, Client)>> {
        let who = caller.require_user()?;
        let mut out = Vec::new();
        for (ws, client) in self.missions().runtime().servers() {
            if self.inner.workspaces.visible_to(who, &ws).await && client.healthy().await {
                out.push((ws, client));
            }
        }
        Ok(out)
    }

    pub async fn status(&self, caller: &Caller) -> ApiResult<Value> {
        let oc = self.missions().runtime();
        let on_disk = oc.binary_on_disk().is_some();
        let codebases = self.list_codebases(caller).await?.len();
        let runtime = match caller {
            Caller::User(_) => self.runtime_status(caller).await?,
            Caller::Worker { .. } => Value::Null,
        };
        Ok(json!({
            "available": true,
            "message": if on_disk {
                "OpenCode integration ready"
            } else {
                "OpenCode integration ready; the pinned opencode binary is fetched on first use"
            },
            "opencode_binary": oc.binary_path_hint().display().to_string(),
            "registered_codebases": codebases,
            "auto_start": true,
            "runtime": runtime,
        }))
    }

    /// `[{id, name, provider}]`: the configured providers' models, then what running servers report.
    pub async fn models(&self, caller: &Caller) -> ApiResult<Vec<Value>> {
        let mut models: BTreeMap<String, Value> = BTreeMap::new();
        let fragment = self.missions().fragment();
        if let Some(providers) = fragment["provider"].as_object() {
            for (pid, p) in providers {
                let pname = p["name"].as_str().unwrap_or(pid);
                for (mid, m) in p["models"].as_object().into_iter().flatten() {
                    let id = format!("{pid}/{mid}");
                    models.insert(
                        id.clone(),
                        json!({ "id": id, "name": m["name"].as_str().unwrap_or(mid), "provider": pname }),
                    );
                }
            }
        }
        let servers = match caller {
            Caller::User(_) => self.live_servers(caller).await?,
            Caller::Worker { .. } => Vec::new(),
        };
        for (_, client) in servers {
            let Ok(v) = client.get("/config/providers").await else {
                continue;
            };
            for p in v["providers"].as_array().into_iter().flatten() {
                let pid = p["id"].as_str().unwrap_or_default();
                let pname = p["name"].as_str().unwrap_or(pid);
                for (mid, m) in p["models"].as_object().into_iter().flatten() {
                    let id = format!("{pid}/{mid}");
                    models.entry(id.clone()).or_insert_with(|| {
                        json!({ "id": id, "name": m["name"].as_str().unwrap_or(mid), "provider": pname })
                    });
                }
            }
        }
        Ok(models.into_values().collect())
    }

    pub async fn runtime_status(&self, caller: &Caller) -> ApiResult<Value> {
        let servers = self.live_servers(caller).await?;
        let projects = self.projects_of(&servers).await.len();
        let sessions = self.sessions_of(&servers).await.len();
        Ok(json!({
            "available": self.missions().runtime().binary_on_disk().is_some() || !servers.is_empty(),
            "message": format!("{} OpenCode server(s) running", servers.len()),
            "storage_path": STORAGE_PATH,
            "servers": servers.len(),
            "projects": projects,
            "sessions": sessions,
        }))
    }

    async fn projects_of(&self, servers: &[(String, Client)]) -> Vec<Value> {
        let mut out = Vec::new();
        for (ws, client) in servers {
            let sessions = self.sessions_of(&[(ws.clone(), client.clone())]).await;
            let Ok(v) = client.get("/project").await else {
                continue;
            };
            for p in v.as_array().into_iter().flatten() {
                let count = sessions
                    .iter()
                    .filter(|s| s["project_id"] == p["id"])
                    .count();
                out.push(json!({
                    "id": p["id"],
                    "worktree": p["worktree"],
                    "vcs": p["vcs"],
                    "vcs_dir": p["vcsDir"],
                    "created_at": ms_time(&p["time"]["created"]),
                    "updated_at": ms_time(&p["time"]["updated"]),
                    "session_count": count,
                    "workspace_id": ws,
                }));
            }
        }
        out.sort_by(|a, b| b["updated_at"].as_str().cmp(&a["updated_at"].as_str()));
        out
    }

    async fn sessions_of(&self, servers: &[(String, Client)]) -> Vec<Value> {
        let mut out = Vec::new();
        for (ws, client) in servers {
            let Ok(v) = client.get("/session").await else {
                continue;
            };
            for s in v.as_array().into_iter().flatten() {
                let mut view = session_view(s);
                view["workspace_id"] = json!(ws);
                out.push(view);
            }
        }
        out.sort_by(|a, b| b["updated_at"].as_str().cmp(&a["updated_at"].as_str()));
        out
    }

    pub async fn runtime_projects(&self, caller: &Caller) -> ApiResult<Value> {
        let servers = self.live_servers(caller).await?;
        Ok(json!({ "projects": self.projects_of(&servers).await }))
    }

    pub async fn runtime_sessions(
        &self,
        caller: &Caller,
        project_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> ApiResult<Value> {
        let servers = self.live_servers(caller).await?;
        let all: Vec<Value> = self
            .sessions_of(&servers)
            .await
            .into_iter()
            .filter(|s| project_id.is_none_or(|p| s["project_id"] == p))
            .collect();
        let total = all.len();
        let page = page(all, limit, offset);
        Ok(json!({ "sessions": page, "total": total, "limit": limit, "offset": offset }))
    }

    /// The server (of the caller's) that holds a session, and the session.
    async fn find_session(&self, caller: &Caller, sid: &str) -> ApiResult<(Client, Value)> {
        if sid.is_empty()
            || sid.len() > 256
            || !sid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ApiError::invalid(format!("{sid:?} is not a session id")));
        }
        for (_, client) in self.live_servers(caller).await? {
            if let Ok(s) = client.get(&format!("/session/{sid}")).await {
                return Ok((client, s));
            }
        }
        Err(ApiError::not_found(format!("Session {sid} not found")))
    }

    pub async fn runtime_session(&self, caller: &Caller, sid: &str) -> ApiResult<Value> {
        let (_, s) = self.find_session(caller, sid).await?;
        Ok(json!({ "session": session_view(&s) }))
    }

    pub async fn runtime_messages(
        &self,
        caller: &Caller,
        sid: &str,
        limit: i64,
        offset: i64,
    ) -> ApiResult<Value> {
        let (client, _) = self.find_session(caller, sid).await?;
        let raw = client.messages(sid).await?;
        let total = raw.len();
        let messages: Vec<Value> = page(raw, limit, offset)
            .iter()
            .map(|m| {
                let info = &m["info"];
                let tool_calls = m["parts"]
                    .as_array()
                    .map(|p| p.iter().filter(|p| p["type"] == "tool").count())
                    .unwrap_or(0);
                json!({
                    "id": info["id"],
                    "session_id": sid,
                    "role": info["role"],
                    "created_at": ms_time(&info["time"]["created"]),
                    "model": info["modelID"],
                    "cost": info["cost"],
                    "tokens": info["tokens"],
                    "tool_calls": tool_calls,
                })
            })
            .collect();
        Ok(
            json!({ "messages": messages, "total": total, "limit": limit, "offset": offset, "session_id": sid }),
        )
    }

    pub async fn runtime_parts(
        &self,
        caller: &Caller,
        sid: &str,
        message_id: Option<&str>,
        limit: i64,
    ) -> ApiResult<Value> {
        let (client, _) = self.find_session(caller, sid).await?;
        let raw = client.messages(sid).await?;
        let mut parts = Vec::new();
        for m in &raw {
            let mid = m["info"]["id"].as_str().unwrap_or_default();
            if message_id.is_some_and(|want| want != mid) {
                continue;
            }
            for p in m["parts"].as_array().into_iter().flatten() {
                let mut p = p.clone();
                p["message_id"] = json!(mid);
                parts.push(p);
            }
        }
        parts.truncate(limit as usize);
        Ok(json!({ "parts": parts, "session_id": sid, "message_id": message_id }))
    }
}

/// An OpenCode session in the runtime API's shape.
fn session_view(s: &Value) -> Value {
    json!({
        "id": s["id"],
        "project_id": s["projectID"],
        "directory": s["directory"],
        "title": s["title"],
        "version": s["version"],
        "created_at": ms_time(&s["time"]["created"]),
        "updated_at": ms_time(&s["time"]["updated"]),
        "summary": s["summary"],
    })
}
