//! Agent runs on a codebase: trigger (a task that runs at once), follow-up messages, interrupt, stop
//! and status. A local run is a mission owned by the codebase, so it has the missions' stored events,
//! queue, cancel and restart behaviour; a remote codebase's work goes to its worker as a task.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::codebases::check_text;
use super::{owner_of, Agents};
use crate::error::{ApiError, ApiResult};
use crate::missions::CreateMission;
use crate::store::agents::{CodebaseRow, MonitorEntry};
use crate::store::tasks::{TaskRow, LOCAL_WORKER};

const MAX_PROMPT: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
pub struct TriggerRequest {
    pub prompt: String,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct MessageRequest {
    pub message: String,
    #[serde(default)]
    pub agent: Option<String>,
}

/// How a run's turn ended, read from its mission's stored events.
enum TurnEnd {
    Done(String),
    Failed(String),
    Cancelled,
    /// berth is stopping: the task stays running and is queued again at the next start.
    Interrupted,
}

pub(super) fn check_model(model: Option<&str>) -> ApiResult<()> {
    match model {
        Some(m) if !m.contains('/') || m.len() > 256 => Err(ApiError::invalid(format!(
            "model {m:?} must be provider/model"
        ))),
        _ => Ok(()),
    }
}

/// The prompt, with the files to focus on (relative paths inside the codebase).
fn prompt_with_files(prompt: &str, files: &[String]) -> ApiResult<String> {
    if files.len() > 100 {
        return Err(ApiError::invalid("at most 100 files"));
    }
    for f in files {
        if f.is_empty() || f.starts_with('/') || f.contains('\0') || f.split('/').any(|p| p == "..")
        {
            return Err(ApiError::invalid(format!(
                "file {f:?} must be a relative path inside the codebase"
            )));
        }
    }
    if files.is_empty() {
        return Ok(prompt.to_string());
    }
    Ok(format!(
        "{prompt}\n\nFocus on these files: {}",
        files.join(", ")
    ))
}

impl Agents {
    pub async fn trigger(&self, codebase_id: &str, req: TriggerRequest) -> ApiResult<Value> {
        let row = self.codebase(codebase_id).await?;
        check_text("prompt", &req.prompt, MAX_PROMPT)?;
        check_model(req.model.as_deref())?;
        let prompt = prompt_with_files(&req.prompt, &req.files)?;
        let config: Value = serde_json::from_str(&row.agent_config).unwrap_or_default();
        let agent = req
            .agent
            .clone()
            .or_else(|| config["agent"].as_str().map(str::to_string))
            .unwrap_or_else(|| "build".into());
        let model = req
            .model
            .clone()
            .or_else(|| config["default_model"].as_str().map(str::to_string));
        let mut metadata = req.metadata.clone().unwrap_or_else(|| json!({}));
        if !metadata.is_object() {
            return Err(ApiError::invalid("metadata must be a JSON object"));
        }
        metadata["files"] = json!(req.files);
        let title: String = req.prompt.chars().take(80).collect();

        if let Some(worker) = &row.worker_id {
            let task = self
                .queue_task(&row, &title, &prompt, &agent, model, 0, metadata)
                .await?;
            return Ok(json!({
                "success": true,
                "session_id": null,
                "task_id": task.id,
                "status": "pending",
                "message": format!("Task queued for worker {worker}"),
            }));
        }
        self.missions().check_agent_name(&agent).await?;
        self.ready_for_run(&row).await?;
        let now = Utc::now();
        let task = TaskRow {
            id: uuid::Uuid::new_v4().to_string(),
            codebase_id: row.id.clone(),
            title,
            prompt,
            agent_type: agent,
            model,
            priority: 0,
            metadata: metadata.to_string(),
            status: "running".into(),
            worker_id: Some(LOCAL_WORKER.into()),
            lease_expires_at: None,
            attempts: 1,
            max_attempts: self.inner.config.task_max_attempts,
            session_id: None,
            mission_id: None,
            result: None,
            error: None,
            created_at: now,
            started_at: Some(now),
            completed_at: None,
        };
        // The start goes on in its own task: if the client hangs up while the agent server boots, the
        // run still starts (or fails) and records it, instead of leaving the codebase marked busy.
        let this = self.clone();
        let (started_row, started_task) = (row.clone(), task.clone());
        let session = self
            .inner
            .tracker
            .spawn(async move { this.start_trigger(started_row, started_task).await })
            .await
            .map_err(|e| ApiError::Internal(e.into()))??;
        Ok(json!({
            "success": true,
            "session_id": session,
            "task_id": task.id,
            "status": "running",
            "message": format!("Agent started on codebase {}", row.name),
        }))
    }

    /// Takes the codebase for the trigger's run, records the task and starts it; the session id.
    async fn start_trigger(&self, row: CodebaseRow, task: TaskRow) -> ApiResult<String> {
        if !self.begin_run(&row.id) {
            return Err(ApiError::conflict(format!(
                "An agent is already running on codebase {}",
                row.name
            )));
        }
        if let Err(e) = self.inner.store.insert_task(&task).await {
            self.end_run(&row.id);
            return Err(e.into());
        }
        self.start_run(row, &task).await
    }

    /// A local codebase's workspace must be ready for a run.
    async fn ready_for_run(&self, row: &CodebaseRow) -> ApiResult<()> {
        match self.status_of(row).await.as_str() {
            "idle" => Ok(()),
            "running" => Err(ApiError::conflict(format!(
                "An agent is already running on codebase {}",
                row.name
            ))),
            "building" => Err(ApiError::conflict(format!(
                "codebase {}'s workspace is still building; retry when its status is idle",
                row.name
            ))),
            _ => Err(ApiError::conflict(format!(
                "codebase {}'s workspace failed to build; see GET /api/workspaces/{}",
                row.name,
                row.workspace_id.as_deref().unwrap_or("?")
            ))),
        }
    }

    /// Marks the codebase as having a local run; false if it already has one.
    pub(super) fn begin_run(&self, codebase_id: &str) -> bool {
        self.inner
            .active
            .lock()
            .expect("active lock")
            .insert(codebase_id.to_string())
    }

    pub(super) fn end_run(&self, codebase_id: &str) {
        self.inner
            .active
            .lock()
            .expect("active lock")
            .remove(codebase_id);
        self.inner.wake.notify_one();
    }

    pub(super) fn busy_codebases(&self) -> Vec<String> {
        self.inner
            .active
            .lock()
            .expect("active lock")
            .iter()
            .cloned()
            .collect()
    }

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
                    .finish_task(&task.id, LOCAL_WORKER, "failed", None, Some(&e.to_string()))
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
        let owner = owner_of(&row.id);
        let missions = self.missions();
        let mission = missions
            .create(
                &owner,
                CreateMission {
                    title: Some(task.title.clone()),
                    workspace_id: row.workspace_id.clone(),
                    agent: Some(task.agent_type.clone()),
                    model_override: task.model.clone(),
                    model_effort: None,
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
        row.mission_id = Some(mission.id.clone());
        row.last_activity = Some(Utc::now());
        self.inner.store.update_codebase(row).await?;
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
            let live =
                matches!(store.get_task(task_id).await, Ok(Some(t)) if t.status == "running");
            if !live {
                if !self.missions().is_busy(mission).await {
                    break TurnEnd::Cancelled;
                }
                let _ = self
                    .missions()
                    .cancel(&owner_of(&row.id), Some(mission))
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
        let outcome = match &end {
            TurnEnd::Done(text) => {
                self.monitor_entry(MonitorEntry {
                    kind: "agent",
                    agent_name: &row.name,
                    content: text,
                    metadata: json!({ "codebase_id": row.id, "task_id": task_id }),
                    response_time: Some(secs),
                    error: None,
                })
                .await;
                store
                    .finish_task(task_id, LOCAL_WORKER, "completed", Some(text), None)
                    .await
            }
            TurnEnd::Failed(e) => {
                self.monitor_entry(MonitorEntry {
                    kind: "error",
                    agent_name: &row.name,
                    content: e,
                    metadata: json!({ "codebase_id": row.id, "task_id": task_id }),
                    response_time: Some(secs),
                    error: Some(e),
                })
                .await;
                store
                    .finish_task(task_id, LOCAL_WORKER, "failed", None, Some(e))
                    .await
            }
            TurnEnd::Cancelled => {
                store
                    .finish_task(
                        task_id,
                        LOCAL_WORKER,
                        "cancelled",
                        None,
                        Some("interrupted"),
                    )
                    .await
            }
            TurnEnd::Interrupted => Ok(true),
        };
        if let Err(e) = outcome {
            tracing::error!(task.id = %task_id, error = %e, "recording the end of a run failed");
        }
        self.log_tools(row, mission, message).await;
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
    async fn log_tools(&self, row: &CodebaseRow, mission: &str, _message: &str) {
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

    /// A follow-up message to the codebase's current session; queued while the agent works.
    pub async fn message(&self, codebase_id: &str, req: MessageRequest) -> ApiResult<Value> {
        let row = self.codebase(codebase_id).await?;
        check_text("message", &req.message, MAX_PROMPT)?;
        if let Some(w) = &row.worker_id {
            return Err(ApiError::conflict(format!(
                "codebase {} runs on worker {w}; create a task for it instead",
                row.name
            )));
        }
        let mission = row.mission_id.clone().ok_or_else(|| {
            ApiError::conflict(format!(
                "No active session for codebase {}; trigger the agent first",
                row.name
            ))
        })?;
        let owner = owner_of(&row.id);
        let missions = self.missions();
        if missions.get(&owner, &mission).await?.status == "interrupted" {
            missions.resume(&owner, &mission).await?;
        }
        missions.load(&owner, &mission).await?;
        let (id, queued) = missions
            .message(&owner, &req.message, req.agent.as_deref())
            .await?;
        self.monitor(
            "human",
            &row.name,
            &req.message,
            json!({ "codebase_id": row.id, "message_id": id }),
        )
        .await;
        Ok(
            json!({ "success": true, "message": "Message sent to agent", "message_id": id, "queued": queued }),
        )
    }

    /// Aborts what the agent is doing now; the session stays for follow-ups.
    pub async fn interrupt(&self, codebase_id: &str) -> ApiResult<Value> {
        let row = self.codebase(codebase_id).await?;
        if !self.halt(&row, "interrupted").await {
            return Err(ApiError::conflict(format!(
                "No agent is running on codebase {}",
                row.name
            )));
        }
        Ok(json!({ "success": true, "message": "Interrupt signal sent" }))
    }

    /// Aborts the run and stops the codebase's OpenCode server (a new one starts with the next run).
    pub async fn stop(&self, codebase_id: &str) -> ApiResult<Value> {
        let row = self.codebase(codebase_id).await?;
        self.halt(&row, "stopped").await;
        if let Some(ws) = &row.workspace_id {
            if let Ok(ws) = self.inner.workspaces.get(ws).await {
                self.missions().runtime().kill(&ws).await;
            }
        }
        Ok(json!({ "success": true, "message": "Agent stopped" }))
    }

    /// Cancels the codebase's running task and turn; whether anything was running.
    pub(super) async fn halt(&self, row: &CodebaseRow, reason: &str) -> bool {
        let mut stopped = false;
        if let Some(task) = self.running_task(&row.id).await {
            if let Ok(Some(_)) = self.inner.store.cancel_task(&task.id).await {
                stopped = true;
                self.monitor(
                    "system",
                    &row.name,
                    &format!("task {} cancelled: {reason}", task.id),
                    json!({ "codebase_id": row.id, "task_id": task.id }),
                )
                .await;
            }
        }
        if let Some(m) = &row.mission_id {
            if self.missions().is_busy(m).await
                && self
                    .missions()
                    .cancel(&owner_of(&row.id), Some(m))
                    .await
                    .is_ok()
            {
                stopped = true;
            }
        }
        stopped
    }

    pub(super) async fn running_task(&self, codebase_id: &str) -> Option<TaskRow> {
        self.inner
            .store
            .list_tasks(Some(codebase_id), Some("running"), 1)
            .await
            .ok()?
            .into_iter()
            .next()
    }

    pub async fn agent_status(&self, codebase_id: &str) -> ApiResult<Value> {
        let row = self.codebase(codebase_id).await?;
        let view = self.codebase_view(row.clone()).await;
        let task = self.running_task(&row.id).await;
        let model = task.as_ref().and_then(|t| t.model.clone()).or_else(|| {
            view.agent_config["default_model"]
                .as_str()
                .map(str::to_string)
        });
        Ok(json!({
            "codebase_id": row.id,
            "status": view.status,
            "session_id": task.as_ref().and_then(|t| t.session_id.clone()).or(view.session_id),
            "current_task": task.as_ref().map(|t| t.title.clone()),
            "task_id": task.as_ref().map(|t| t.id.clone()),
            "started_at": task.as_ref().and_then(|t| t.started_at),
            "model": model,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_stay_inside_the_codebase() {
        assert!(prompt_with_files("p", &["src/a.rs".into()])
            .unwrap()
            .ends_with("Focus on these files: src/a.rs"));
        assert!(prompt_with_files("p", &["../etc/passwd".into()]).is_err());
        assert!(prompt_with_files("p", &["/etc/passwd".into()]).is_err());
        assert_eq!(prompt_with_files("p", &[]).unwrap(), "p");
    }
}
