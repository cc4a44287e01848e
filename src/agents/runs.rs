//! Agent runs on a codebase: trigger (a task that runs at once), follow-up messages, interrupt, stop
//! and status. A local run is a mission owned by the codebase, so it has the missions' stored events,
//! queue, cancel and restart behaviour; a remote codebase's work goes to its worker as a task.

use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::codebases::check_text;
use super::tasks::{metadata_object, TaskSpec};
use super::{runs_principal, Agents, Codebase, CodebaseStatus, TaskStatus};
use crate::error::{ApiError, ApiResult};
use crate::store::agents::CodebaseRow;
use crate::store::tasks::{TaskRow, LOCAL_WORKER};

const MAX_PROMPT: usize = 1024 * 1024;
/// How long a trigger's answer waits for a workspace that is still building.
const TRIGGER_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Deserialize, ToSchema)]
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

/// How a trigger went.
#[derive(Debug)]
pub struct Triggered {
    pub codebase: String,
    pub task_id: String,
    pub start: Start,
}

#[derive(Debug)]
pub enum Start {
    /// berth runs the agent now, in this OpenCode session.
    Running { session_id: String },
    /// Queued for the codebase's worker, which opens the session when it starts the task.
    Queued { worker: String },
    /// Queued until the codebase's workspace is built (longer than a trigger waits).
    AfterBuild,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MessageRequest {
    pub message: String,
    #[serde(default)]
    pub agent: Option<String>,
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
    pub async fn trigger(&self, codebase_id: &str, req: TriggerRequest) -> ApiResult<Triggered> {
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
        let mut metadata = metadata_object(req.metadata.clone())?;
        metadata["files"] = json!(req.files);
        let spec = TaskSpec {
            title: req.prompt.chars().take(80).collect(),
            prompt,
            agent,
            model,
            priority: 0,
            metadata,
        };

        if let Some(worker) = &row.worker_id {
            let task = self.new_task(&row, spec);
            let task = self.queue_task(&row, task).await?;
            return Ok(Triggered {
                codebase: row.name.clone(),
                task_id: task.id,
                start: Start::Queued {
                    worker: super::shown(worker).to_string(),
                },
            });
        }
        self.missions().check_agent_name(&spec.agent).await?;
        // A workspace whose build failed or was cut off builds again for the run that asks for it.
        if matches!(
            self.status_of(&row).await,
            CodebaseStatus::Error | CodebaseStatus::Stopped
        ) {
            self.rebuild_if_stuck(&row, true).await?;
        }
        if self.status_of(&row).await == CodebaseStatus::Building {
            return self.trigger_when_built(&row, spec).await;
        }
        self.ready_for_run(&row).await?;
        // Runs at once, held by berth itself.
        let mut task = self.new_task(&row, spec);
        task.status = TaskStatus::Running;
        task.worker_id = Some(LOCAL_WORKER.into());
        task.attempts = 1;
        task.started_at = Some(task.created_at);
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
        Ok(Triggered {
            codebase: row.name,
            task_id: task.id,
            start: Start::Running {
                session_id: session,
            },
        })
    }

    /// A trigger while the codebase's workspace builds: queued, it starts once the workspace is ready
    /// (berth's runner takes it then). The answer waits for that start, up to `TRIGGER_WAIT`; a longer
    /// build is answered `pending`, and the run still starts when the build ends.
    async fn trigger_when_built(&self, row: &CodebaseRow, spec: TaskSpec) -> ApiResult<Triggered> {
        let task = self.new_task(row, spec);
        let task = self.queue_task(row, task).await?;
        let deadline = tokio::time::Instant::now() + TRIGGER_WAIT;
        let session = loop {
            let now = self.inner.store.get_task(&task.id).await?;
            match now {
                Some(t) if t.session_id.is_some() => break t.session_id,
                Some(t) if t.status.is_final() => {
                    return Err(ApiError::conflict(format!(
                        "the agent did not start on codebase {}: {}",
                        row.name,
                        t.error.unwrap_or_else(|| t.status.to_string())
                    )))
                }
                None => return Err(ApiError::not_found(format!("Task {} not found", task.id))),
                Some(_) => {}
            }
            if self.status_of(row).await == CodebaseStatus::Error {
                // The build failed: its queued tasks would wait for a workspace that never comes.
                let waiting = crate::store::tasks::TaskFilter {
                    codebase_id: Some(&row.id),
                    status: Some(TaskStatus::Pending),
                    ..Default::default()
                };
                for t in self.inner.store.list_tasks(waiting, 10_000).await? {
                    self.inner.store.cancel_task(&t.id).await?;
                }
                return Err(ApiError::conflict(format!(
                    "codebase {}'s workspace failed to build; see GET /api/workspaces/{}",
                    row.name,
                    row.workspace_id.as_deref().unwrap_or("?")
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                _ = self.inner.shutdown.cancelled() => break None,
            }
        };
        Ok(Triggered {
            codebase: row.name.clone(),
            task_id: task.id,
            start: match session {
                Some(session_id) => Start::Running { session_id },
                None => Start::AfterBuild,
            },
        })
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
        match self.status_of(row).await {
            CodebaseStatus::Idle => Ok(()),
            CodebaseStatus::Running => Err(ApiError::conflict(format!(
                "An agent is already running on codebase {}",
                row.name
            ))),
            CodebaseStatus::Building => Err(ApiError::conflict(format!(
                "codebase {}'s workspace is still building; retry when its status is idle",
                row.name
            ))),
            CodebaseStatus::Stopped => Err(ApiError::conflict(format!(
                "codebase {}'s workspace is stopped; POST /api/workspaces/{}/start",
                row.name,
                row.workspace_id.as_deref().unwrap_or("?")
            ))),
            CodebaseStatus::Error => Err(ApiError::conflict(format!(
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

    /// A follow-up message to the codebase's current session; queued while the agent works.
    /// Sends a follow-up to the codebase's current session: the message's id, and whether it waits
    /// for the agent's turn to end.
    pub async fn message(
        &self,
        codebase_id: &str,
        req: MessageRequest,
    ) -> ApiResult<(String, bool)> {
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
        // What would refuse the message is checked before an interrupted run is resumed for it.
        if let Some(a) = &req.agent {
            self.missions().check_agent_name(a).await?;
        }
        self.ready_for_message(&row).await?;
        let owner = runs_principal(&row.id);
        let missions = self.missions();
        if missions.get(&owner, &mission).await?.status
            == crate::missions::MissionStatus::Interrupted
        {
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
        Ok((id, queued))
    }

    /// The codebase's workspace is ready for a turn.
    async fn ready_for_message(&self, row: &CodebaseRow) -> ApiResult<()> {
        let Some(ws) = &row.workspace_id else {
            return Err(ApiError::conflict(format!(
                "codebase {} has no workspace yet",
                row.name
            )));
        };
        let ws = self.inner.workspaces.get(ws).await?;
        if ws.status != crate::workspaces::model::Status::Ready {
            return Err(ApiError::conflict(format!(
                "the workspace of codebase {} is {}, not ready",
                row.name,
                ws.status.as_str()
            )));
        }
        Ok(())
    }

    /// Aborts what the agent is doing now; the session stays for follow-ups.
    pub async fn interrupt(&self, codebase_id: &str) -> ApiResult<()> {
        let row = self.codebase(codebase_id).await?;
        if !self.halt(&row, "interrupted").await {
            return Err(ApiError::conflict(format!(
                "No agent is running on codebase {}",
                row.name
            )));
        }
        Ok(())
    }

    /// Aborts the run and stops the codebase's OpenCode server (a new one starts with the next run).
    pub async fn stop(&self, codebase_id: &str) -> ApiResult<()> {
        let row = self.codebase(codebase_id).await?;
        self.halt(&row, "stopped").await;
        if let Some(ws) = &row.workspace_id {
            if let Ok(ws) = self.inner.workspaces.get(ws).await {
                self.missions().runtime().kill(&ws).await;
            }
        }
        Ok(())
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
                    .cancel(&runs_principal(&row.id), Some(m))
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
            .list_tasks(
                crate::store::tasks::TaskFilter {
                    codebase_id: Some(codebase_id),
                    status: Some(TaskStatus::Running),
                    ..Default::default()
                },
                1,
            )
            .await
            .ok()?
            .into_iter()
            .next()
    }

    /// The codebase's state and the task running on it, if one is.
    pub async fn agent_status(&self, codebase_id: &str) -> ApiResult<(Codebase, Option<TaskRow>)> {
        let row = self.codebase(codebase_id).await?;
        let task = self.running_task(&row.id).await;
        Ok((self.codebase_state(row).await, task))
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
