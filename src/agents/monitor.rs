//! `/v1/monitor`: the activity log berth keeps of agent work (prompts, answers, tool calls, task and
//! worker changes, errors), the codebase agents, the workers, and totals.

use serde_json::{json, Value};

use super::{Agents, Caller, CodebaseStatus};
use crate::error::{ApiError, ApiResult};

pub const MONITOR_TYPES: [&str; 5] = ["agent", "human", "system", "tool", "error"];

impl Agents {
    /// The caller's part of the log (all of it for an admin, berth's own entries included).
    pub async fn monitor_messages(
        &self,
        caller: &Caller,
        kind: Option<&str>,
        limit: i64,
    ) -> ApiResult<Vec<Value>> {
        let owner = caller.require_user()?.listing_owner();
        if let Some(k) = kind {
            if !MONITOR_TYPES.contains(&k) {
                return Err(ApiError::invalid(format!(
                    "invalid type {k:?}; valid: {}",
                    MONITOR_TYPES.join(", ")
                )));
            }
        }
        let rows = self
            .inner
            .store
            .monitor_messages(kind, owner, limit)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                json!({
                    "id": r.id.to_string(),
                    "timestamp": r.timestamp,
                    "type": r.kind,
                    "agent_name": r.agent_name,
                    "content": r.content,
                    "metadata": serde_json::from_str::<Value>(&r.metadata).unwrap_or_default(),
                    "response_time": r.response_time,
                    "tokens": r.tokens,
                    "error": r.error,
                })
            })
            .collect())
    }

    /// One agent per codebase: its status, how much it has said and done, when it last worked.
    pub async fn monitor_agents(&self, caller: &Caller) -> ApiResult<Vec<Value>> {
        let owner = caller.require_user()?.listing_owner();
        let log = self
            .inner
            .store
            .monitor_messages(None, owner, 100_000)
            .await?;
        let mut out = Vec::new();
        for row in self.inner.store.codebases_of(owner).await? {
            let count = log.iter().filter(|m| m.agent_name == row.name).count();
            let status = self.status_of(&row).await;
            out.push(json!({
                "id": row.id,
                "name": row.name,
                "status": status,
                "messages_count": count,
                "last_seen": row.last_activity,
            }));
        }
        Ok(out)
    }

    /// berth's own counts for `/api/stats` (of one owner's objects, with `Some`): codebases, workers,
    /// tasks by status, agent servers running.
    pub async fn counts(&self, owner: Option<&str>) -> ApiResult<Value> {
        let mut tasks = serde_json::Map::new();
        for status in super::TaskStatus::ALL {
            tasks.insert(status.to_string(), json!(0));
        }
        for (status, n) in self.inner.store.task_counts(owner).await? {
            tasks.insert(status.to_string(), json!(n));
        }
        let mut servers = 0;
        for (ws, _) in self.missions().runtime().servers() {
            if owner.is_none() || self.inner.store.workspace_owner(&ws).await?.as_deref() == owner {
                servers += 1;
            }
        }
        Ok(json!({
            "codebases": self.inner.store.codebases_of(owner).await?.len(),
            "workers": self.inner.store.list_workers(owner).await?.len(),
            "tasks": tasks,
            "agent_servers": servers,
        }))
    }

    pub async fn monitor_stats(&self, caller: &Caller) -> ApiResult<Value> {
        let owner = caller.require_user()?.listing_owner();
        let (total, by_type, avg, tokens) = self.inner.store.monitor_totals(owner).await?;
        let of = |k: &str| {
            by_type
                .iter()
                .find(|(t, _)| t == k)
                .map(|(_, n)| *n)
                .unwrap_or(0)
        };
        let mut active = 0;
        for row in self.inner.store.codebases_of(owner).await? {
            if self.status_of(&row).await == CodebaseStatus::Running {
                active += 1;
            }
        }
        Ok(json!({
            "total_messages": total,
            "tool_calls": of("tool"),
            "errors": of("error"),
            "tokens": tokens,
            "avg_response_time": avg.unwrap_or(0.0),
            "active_agents": active,
            "interventions": of("human"),
        }))
    }
}
