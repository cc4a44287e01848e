//! `/v1/monitor`: the activity log berth keeps of agent work (prompts, answers, tool calls, task and
//! worker changes, errors), the codebase agents, the workers, and totals.

use serde_json::{json, Value};

use super::Agents;
use crate::error::{ApiError, ApiResult};

pub const MONITOR_TYPES: [&str; 5] = ["agent", "human", "system", "tool", "error"];

impl Agents {
    pub async fn monitor_messages(&self, kind: Option<&str>, limit: i64) -> ApiResult<Vec<Value>> {
        if let Some(k) = kind {
            if !MONITOR_TYPES.contains(&k) {
                return Err(ApiError::invalid(format!(
                    "invalid type {k:?}; valid: {}",
                    MONITOR_TYPES.join(", ")
                )));
            }
        }
        let rows = self.inner.store.monitor_messages(kind, limit).await?;
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
    pub async fn monitor_agents(&self) -> ApiResult<Vec<Value>> {
        let log = self.inner.store.monitor_messages(None, 100_000).await?;
        let mut out = Vec::new();
        for row in self.inner.store.list_codebases().await? {
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

    /// berth's own counts for `/api/stats`: codebases, tasks by status, agent servers running.
    pub async fn counts(&self) -> ApiResult<Value> {
        let mut tasks = serde_json::Map::new();
        for status in super::tasks::TASK_STATUSES {
            tasks.insert(status.to_string(), json!(0));
        }
        for (status, n) in self.inner.store.task_counts().await? {
            tasks.insert(status, json!(n));
        }
        Ok(json!({
            "codebases": self.inner.store.list_codebases().await?.len(),
            "workers": self.inner.store.list_workers().await?.len(),
            "tasks": tasks,
            "agent_servers": self.missions().runtime().servers().len(),
        }))
    }

    pub async fn monitor_stats(&self) -> ApiResult<Value> {
        let (total, by_type, avg, tokens) = self.inner.store.monitor_totals().await?;
        let of = |k: &str| {
            by_type
                .iter()
                .find(|(t, _)| t == k)
                .map(|(_, n)| *n)
                .unwrap_or(0)
        };
        let mut active = 0;
        for row in self.inner.store.list_codebases().await? {
            if self.status_of(&row).await == "running" {
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
