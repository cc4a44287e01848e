//! A run's life after its trigger or claim: starting it in a new mission (a new OpenCode session) of the
//! codebase, then watching that mission's stored events until the turn ends, and recording the end on
//! the task and in the monitor log. A watcher also follows cancels, and gives up after the turn timeout.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};

use super::{runs_principal, Agents, TaskStatus};
use crate::error::{ApiError, ApiResult};
use crate::missions::CreateMission;
use crate::store::agents::{CodebaseRow, MonitorEntry};
use crate::store::tasks::{TaskRow, LOCAL_WORKER};

/// How a run's turn ended, read from its mission's stored events.
enum TurnEnd {
    Done(String),
    Failed(String),
    Cancelled,
    /// berth is stopping: the task stays running and is queued again at the next start.
    Interrupted,
}

impl Agents {
    /// Starts a claimed task's run in a new mission (a new OpenCode session) of the codebase, and
    /// watches it to its end; the session id. On failure the task fails and the codebase is free again.
    pub(super) async fn start_run(
        &self,
        mut row: CodebaseRow,
        task: &TaskRow,
    ) -> ApiResult<String> {
        match self.launch(&mut row, task).await {
            Ok((session, mission, message)) => {
                let this = self.clone();
                let task_id = task.id.clone();
                self.inner.tracker.spawn(async move {
                    this.watch_run(&row, &task_id, &mission, &message).await;
                });
                Ok(session)
            }
            Err(e) => {
                let _ = self
                    .inner
                    .store
                    .finish_task(
                        &task.id,
                        LOCAL_WORKER,
                        TaskStatus::Failed,
                        None,
                        Some(&e.to_string()),
                    )
                    .await;
                self.end_run(&row.id);
                Err(e)
            }
        }
    }

    /// `(session id, mission id, message id)` of the started run.
    async fn launch(
        &self,
        row: &mut CodebaseRow,
        task: &TaskRow,
    ) -> ApiResult<(String, String, String)> {
        let owner = runs_principal(&row.id);
        let missions = self.missions();
        let mission = missions
            .create(
                &owner,
                CreateMission {
                    title: Some(task.title.clone()),
                    workspace_id: row.workspace_id.clone(),
                    agent: Some(task.agent_type.clone()),
                    model_override: task.model.clone(),
                    ..Default::default()
                },
            )
            .await?;
        missions.load(&owner, &mission.id).await?;
        let session = missions.open_session(&owner, &mission.id).await?;
        let still_wanted = self
            .inner
            .store
            .set_task_session(&task.id, LOCAL_WORKER, Some(&session), Some(&mission.id))
            .await?;
        if !still_wanted {
            return Err(ApiError::conflict(format!(
                "task {} was cancelled before the agent started",
                task.id
            )));
        }
        let now = Utc::now();
        row.mission_id = Some(mission.id.clone());
        row.last_activity = Some(now);
        self.inner
            .store
            .set_codebase_mission(&row.id, &mission.id, now)
            .await?;
        let (message, _) = missions
            .message(&owner, &task.prompt, Some(&task.agent_type))
            .await?;
        self.monitor(
            "human",
            &row.name,
            &task.prompt,
            json!({ "codebase_id": row.id, "task_id": task.id, "session_id": session }),
        )
        .await;
        Ok((session, mission.id, message))
    }

    /// Waits for the run's turn to end and records it on the task and in the monitor log.
    async fn watch_run(&self, row: &CodebaseRow, task_id: &str, mission: &str, message: &str) {
        let started = Instant::now();
        let store = &self.inner.store;
        // A backstop: a turn ends within its own timeout, so a run that says nothing for longer is over.
        let deadline = started + Duration::from_secs(self.inner.config.turn_timeout_secs + 120);
        let end = loop {
            if let Some(end) = self.turn_end(mission, message).await {
                break end;
            }
            // Cancelled (task cancel, interrupt, stop, codebase deleted): abort the turn if it runs;
            // if it never ran (dropped from the queue), the run is over.
            let live = matches!(store.get_task(task_id).await, Ok(Some(t)) if t.status == TaskStatus::Running);
            if !live {
                if !self.missions().is_busy(mission).await {
                    break TurnEnd::Cancelled;
                }
                let _ = self
                    .missions()
                    .cancel(&runs_principal(&row.id), Some(mission))
                    .await;
            }
            if Instant::now() > deadline {
                break TurnEnd::Failed(
                    "the run did not report its end within the turn timeout".into(),
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = self.inner.shutdown.cancelled() => break TurnEnd::Interrupted,
            }
        };
        let secs = started.elapsed().as_secs_f64();
        // How the task ends; berth stopping leaves it running, to be queued again at the next start.
        let finish = match &end {
            TurnEnd::Done(text) => Some((TaskStatus::Completed, Some(text.as_str()), None)),
            TurnEnd::Failed(e) => Some((TaskStatus::Failed, None, Some(e.as_str()))),
            TurnEnd::Cancelled => Some((TaskStatus::Cancelled, None, Some("interrupted"))),
            TurnEnd::Interrupted => None,
        };
        if let Some((status, result, error)) = finish {
            if status != TaskStatus::Cancelled {
                self.monitor_entry(MonitorEntry {
                    kind: if error.is_some() { "error" } else { "agent" },
                    agent_name: &row.name,
                    content: result.or(error).unwrap_or_default(),
                    metadata: json!({ "codebase_id": row.id, "task_id": task_id }),
                    response_time: Some(secs),
                    error,
                })
                .await;
            }
            if let Err(e) = store
                .finish_task(task_id, LOCAL_WORKER, status, result, error)
                .await
            {
                tracing::error!(task.id = %task_id, error = %e, "recording the end of a run failed");
            }
        }
        self.log_tools(row, mission).await;
        self.end_run(&row.id);
    }

    /// The end of the turn of `message`, once its final status event is stored.
    async fn turn_end(&self, mission: &str, message: &str) -> Option<TurnEnd> {
        let types = ["status", "error", "assistant_message"].map(String::from);
        let events = self
            .inner
            .store
            .mission_events(mission, &types, 10_000, 0)
            .await
            .ok()?;
        let of_message: Vec<_> = events
            .iter()
            .filter_map(|e| {
                let data: Value = serde_json::from_str(&e.data).ok()?;
                (data["message_id"] == message).then_some((e.event_type.as_str(), data))
            })
            .collect();
        let end = of_message.iter().rev().find_map(|(kind, d)| {
            (*kind == "status")
                .then(|| d["status"].as_str())
                .flatten()
                .filter(|s| ["idle", "cancelled", "interrupted"].contains(s))
        })?;
        let text = |kind: &str, key: &str| {
            of_message
                .iter()
                .rev()
                .find(|(k, _)| *k == kind)
                .and_then(|(_, d)| d[key].as_str().map(str::to_string))
        };
        Some(match end {
            "cancelled" => TurnEnd::Cancelled,
            "interrupted" => TurnEnd::Interrupted,
            _ => match text("error", "message") {
                Some(e) => TurnEnd::Failed(e),
                None => TurnEnd::Done(text("assistant_message", "content").unwrap_or_default()),
            },
        })
    }

    /// The run's tool calls, for the monitor.
    async fn log_tools(&self, row: &CodebaseRow, mission: &str) {
        let types = ["tool_call".to_string()];
        let Ok(calls) = self
            .inner
            .store
            .mission_events(mission, &types, 10_000, 0)
            .await
        else {
            return;
        };
        for call in calls {
            let data: Value = serde_json::from_str(&call.data).unwrap_or_default();
            let tool = data["tool"].as_str().unwrap_or("tool");
            self.monitor(
                "tool",
                &row.name,
                &format!("{tool} {}", data["input"]),
                json!({ "codebase_id": row.id, "tool": tool }),
            )
            .await;
        }
    }
}
