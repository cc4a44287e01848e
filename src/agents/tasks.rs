//! Tasks: creating, listing, reading, cancelling, and the holder's reports (status, output). Only the
//! holder may report on a running task, so a worker that lost its lease cannot overwrite what another
//! did; `queue` hands tasks out.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::codebases::check_text;
use super::runs::check_model;
use super::{owner_of, runs_principal, shown, worker_key, Agents, Caller, TaskStatus};
use crate::error::{ApiError, ApiResult};
use crate::store::agents::CodebaseRow;
use crate::store::tasks::{OutputRow, Report, TaskFilter, TaskRow, LOCAL_WORKER};

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateTask {
    pub title: String,
    pub prompt: String,
    #[serde(default)]
    pub agent_type: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub model: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusUpdate {
    pub status: TaskStatus,
    #[serde(default)]
    pub worker_id: Option<String>,
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    /// The attempt the report is about (from the claim); a report about an earlier attempt is refused.
    #[serde(default)]
    pub attempt: Option<i64>,
}

/// What a new task asks for; the queue's bookkeeping starts fresh (`new_task`).
pub(super) struct TaskSpec {
    pub title: String,
    pub prompt: String,
    pub agent: String,
    pub model: Option<String>,
    pub priority: i64,
    pub metadata: Value,
}

/// A task's metadata: a JSON object, empty when none is given.
pub(super) fn metadata_object(given: Option<Value>) -> ApiResult<Value> {
    let metadata = given.unwrap_or_else(|| json!({}));
    if !metadata.is_object() {
        return Err(ApiError::invalid("metadata must be a JSON object"));
    }
    Ok(metadata)
}

impl Agents {
    /// How long a claim lasts without renewal.
    pub fn lease_period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.inner.config.task_lease_secs)
    }

    pub(super) fn lease(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.inner.config.task_lease_secs as i64)
    }

    pub async fn create_task(
        &self,
        caller: &Caller,
        codebase_id: &str,
        req: CreateTask,
    ) -> ApiResult<TaskRow> {
        caller.require_user()?;
        let row = self.codebase_for(caller, codebase_id).await?;
        check_text("title", &req.title, 1000)?;
        check_text("prompt", &req.prompt, 1024 * 1024)?;
        check_model(req.model.as_deref())?;
        let agent = req.agent_type.clone().unwrap_or_else(|| "build".into());
        if row.worker_id.is_none() {
            self.missions().check_agent_name(&agent).await?;
        }
        let metadata = metadata_object(req.metadata.clone())?;
        let priority = req.priority.unwrap_or(0);
        if !(-1000..=1000).contains(&priority) {
            return Err(ApiError::invalid("priority must be between -1000 and 1000"));
        }
        let task = self.new_task(
            &row,
            TaskSpec {
                title: req.title.clone(),
                prompt: req.prompt.clone(),
                agent,
                model: req.model.clone(),
                priority,
                metadata,
            },
        );
        self.queue_task(&row, task).await
    }

    /// A pending task of the codebase, not yet stored.
    pub(super) fn new_task(&self, codebase: &CodebaseRow, spec: TaskSpec) -> TaskRow {
        TaskRow {
            id: uuid::Uuid::new_v4().to_string(),
            owner: codebase.owner.clone(),
            codebase_id: codebase.id.clone(),
            title: spec.title,
            prompt: spec.prompt,
            agent_type: spec.agent,
            model: spec.model,
            priority: spec.priority,
            metadata: spec.metadata.to_string(),
            status: TaskStatus::Pending,
            worker_id: None,
            lease_expires_at: None,
            attempts: 0,
            max_attempts: self.inner.config.task_max_attempts,
            session_id: None,
            mission_id: None,
            result: None,
            error: None,
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
        }
    }

    /// Stores a new pending task and tells the queue.
    pub(super) async fn queue_task(&self, row: &CodebaseRow, task: TaskRow) -> ApiResult<TaskRow> {
        self.inner.store.insert_task(&task).await?;
        self.push_task(&task).await;
        self.task_event(
            &task,
            "status",
            json!({ "status": "pending", "message": format!("Task: {} (pending)", task.title) }),
        )
        .await;
        self.monitor(
            "system",
            &row.name,
            &format!("task {} queued: {}", task.id, task.title),
            json!({ "codebase_id": row.id, "task_id": task.id, "priority": task.priority }),
        )
        .await;
        self.inner.wake.notify_one();
        Ok(task)
    }

    /// An event on the codebase's stream about one task (for remote work: there is no mission).
    pub(super) async fn task_event(&self, task: &TaskRow, kind: &str, mut data: Value) {
        data["task_id"] = json!(task.id);
        self.missions()
            .hub()
            .emit(
                &format!("task:{}", task.id),
                &owner_of(&task.codebase_id),
                kind,
                data,
            )
            .await;
    }

    /// Tasks the caller may see: a user's own (all for an admin), a worker's own work.
    pub async fn list_tasks(
        &self,
        caller: &Caller,
        codebase_id: Option<&str>,
        status: Option<TaskStatus>,
        limit: i64,
    ) -> ApiResult<Vec<TaskRow>> {
        if let Some(id) = codebase_id {
            self.codebase_for(caller, id).await?;
        }
        let filter = TaskFilter {
            codebase_id,
            status,
            owner: caller.listing_owner(),
            worker: caller.worker(),
        };
        let rows = self.inner.store.list_tasks(filter, limit).await?;
        Ok(rows)
    }

    async fn task(&self, id: &str) -> ApiResult<TaskRow> {
        self.inner
            .store
            .get_task(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Task {id} not found")))
    }

    /// A task the caller may see, or 404: a user's own (any for an admin); for a worker, one it
    /// holds or one of a codebase registered with its id.
    pub(super) async fn task_for(&self, caller: &Caller, id: &str) -> ApiResult<TaskRow> {
        let task = self.task(id).await?;
        let visible = match caller {
            Caller::User(p) => p.may_act_on(&task.owner),
            Caller::Worker { id: me, .. } => {
                task.worker_id.as_deref() == Some(me.as_str())
                    || self
                        .inner
                        .store
                        .get_codebase(&task.codebase_id)
                        .await?
                        .is_some_and(|c| c.worker_id.as_deref() == Some(me.as_str()))
            }
        };
        if !visible {
            return Err(ApiError::not_found(format!("Task {id} not found")));
        }
        Ok(task)
    }

    pub async fn get_task(&self, caller: &Caller, id: &str) -> ApiResult<TaskRow> {
        self.task_for(caller, id).await
    }

    /// The worker a call acts for: a worker token speaks for itself; a user names one of their own
    /// (any, for an admin).
    pub(super) async fn acting_worker(
        &self,
        caller: &Caller,
        named: Option<&str>,
    ) -> ApiResult<String> {
        match (caller, named) {
            (Caller::Worker { id: me, owner }, Some(w)) if worker_key(owner, w) != *me => {
                Err(ApiError::Forbidden(format!(
                    "this token belongs to worker {}, not {w}",
                    shown(me)
                )))
            }
            (Caller::Worker { id: me, .. }, _) => Ok(me.clone()),
            (Caller::User(_), Some(w)) => Ok(self.check_worker(caller, w).await?.id),
            (Caller::User(_), None) => Err(ApiError::invalid("worker_id is required")),
        }
    }

    /// A worker reports on a task. Transitions that make no sense (a finished task running again, a
    /// report from a worker that does not hold the task) are 409s.
    pub async fn update_task_status(
        &self,
        caller: &Caller,
        id: &str,
        req: StatusUpdate,
    ) -> ApiResult<TaskRow> {
        let task = self.task_for(caller, id).await?;
        if req.status == TaskStatus::Cancelled {
            if let Caller::Worker { id: me, .. } = caller {
                if task.worker_id.as_deref() != Some(me.as_str()) {
                    return Err(ApiError::Forbidden(format!(
                        "worker {} does not hold task {id}",
                        shown(me)
                    )));
                }
            }
            self.cancel(id).await?;
            return self.get_task(caller, id).await;
        }
        let worker = self.acting_worker(caller, req.worker_id.as_deref()).await?;
        if worker == LOCAL_WORKER {
            return Err(ApiError::conflict(
                "tasks berth runs itself are reported by berth",
            ));
        }
        let store = &self.inner.store;
        let ok = match req.status {
            TaskStatus::Running if task.status == TaskStatus::Pending => {
                let row = self.codebase(&task.codebase_id).await?;
                self.check_serves(Some(&worker), &row).await?;
                let only_this = [row.id.clone()];
                store
                    .claim_task(
                        &worker,
                        &only_this,
                        &self.busy_codebases(),
                        Some(id),
                        self.lease(),
                    )
                    .await?
                    .is_some()
            }
            // Running again (e.g. with its session id now) by the holder; the report renews its lease.
            TaskStatus::Running => {
                task.status == TaskStatus::Running
                    && task.worker_id.as_deref() == Some(&worker)
                    && store.renew_lease(id, &worker, self.lease()).await?
            }
            TaskStatus::Pending => store.release_task(id, &worker, false).await?,
            _ => {
                let report = Report {
                    status: req.status,
                    result: req.result.as_deref(),
                    error: req.error.as_deref(),
                    session_id: req.session_id.as_deref(),
                    attempt: req.attempt,
                };
                store.finish_task_attempt(id, &worker, report).await?
            }
        };
        if !ok {
            let holder = task
                .worker_id
                .map(|w| format!(" held by {}", shown(&w)))
                .unwrap_or_default();
            return Err(ApiError::conflict(format!(
                "task {id} is {}{holder}; {} may not set it {}",
                task.status,
                shown(&worker),
                req.status
            )));
        }
        // A running report may name the session the worker opened (a final one recorded it already).
        if let Some(sid) = req
            .session_id
            .as_deref()
            .filter(|_| req.status == TaskStatus::Running)
        {
            store.set_task_session(id, &worker, Some(sid), None).await?;
        }
        let task = self.task(id).await?;
        self.after_report(&task, &worker).await;
        Ok(task)
    }

    /// Events and monitor entries for a worker's report.
    pub(super) async fn after_report(&self, task: &TaskRow, worker: &str) {
        let name = self
            .codebase(&task.codebase_id)
            .await
            .map(|c| c.name)
            .unwrap_or_default();
        let msg = format!("Task: {} ({})", task.title, task.status);
        match task.status {
            TaskStatus::Completed => {
                self.task_event(
                    task,
                    "complete",
                    json!({ "status": "completed", "summary": task.result }),
                )
                .await
            }
            TaskStatus::Failed => {
                self.task_event(
                    task,
                    "error",
                    json!({ "error": task.error, "code": "TASK_FAILED" }),
                )
                .await
            }
            s => {
                self.task_event(task, "status", json!({ "status": s, "message": msg }))
                    .await
            }
        }
        let kind = if task.status == TaskStatus::Failed {
            "error"
        } else {
            "system"
        };
        self.monitor(
            kind,
            &name,
            &format!("{msg} by worker {}", shown(worker)),
            json!({ "task_id": task.id, "worker_id": shown(worker) }),
        )
        .await;
        if task.status != TaskStatus::Running {
            self.inner.wake.notify_one();
        }
    }

    /// Appends streamed output from the worker that holds the task.
    pub async fn append_output(
        &self,
        caller: &Caller,
        id: &str,
        worker_id: Option<&str>,
        attempt: Option<i64>,
        output: &str,
    ) -> ApiResult<i64> {
        let task = self.task_for(caller, id).await?;
        let worker = self.acting_worker(caller, worker_id).await?;
        if output.len() > 1024 * 1024 {
            return Err(ApiError::invalid("output chunks are at most 1 MiB"));
        }
        let seq = self
            .inner
            .store
            .append_output(id, &worker, attempt, output)
            .await?
            .ok_or_else(|| {
                ApiError::conflict(format!(
                    "task {id} is {}{}; output is only taken from the worker running it",
                    task.status,
                    task.worker_id
                        .as_deref()
                        .map(|w| format!(" (held by {})", shown(w)))
                        .unwrap_or_default()
                ))
            })?;
        // Output is a sign of life: the holder keeps its lease.
        self.inner
            .store
            .renew_lease(id, &worker, self.lease())
            .await?;
        self.task_event(
            &task,
            "output",
            json!({ "type": "text", "content": output, "worker_id": shown(&worker) }),
        )
        .await;
        Ok(seq)
    }

    /// A task's stored output after `since`, in order.
    pub async fn task_output(
        &self,
        caller: &Caller,
        id: &str,
        since: i64,
    ) -> ApiResult<Vec<OutputRow>> {
        self.task_for(caller, id).await?;
        Ok(self.inner.store.task_output(id, since).await?)
    }

    /// Cancels a pending or running task of the caller's; a run of berth's own is aborted, a worker
    /// finds out at its next report (409).
    pub async fn cancel_task(&self, caller: &Caller, id: &str) -> ApiResult<()> {
        caller.require_user()?;
        self.task_for(caller, id).await?;
        self.cancel(id).await
    }

    async fn cancel(&self, id: &str) -> ApiResult<()> {
        let task = self.task(id).await?;
        let Some(before) = self.inner.store.cancel_task(id).await? else {
            return Err(ApiError::conflict(format!(
                "task {id} is {}; only pending or running tasks can be cancelled",
                task.status
            )));
        };
        if before.worker_id.as_deref() == Some(LOCAL_WORKER) {
            if let Some(m) = &before.mission_id {
                let _ = self
                    .missions()
                    .cancel(&runs_principal(&before.codebase_id), Some(m))
                    .await;
            }
        }
        self.push_cancel(&before).await;
        self.task_event(&before, "status", json!({ "status": "cancelled", "message": format!("Task: {} (cancelled)", before.title) }))
            .await;
        self.monitor(
            "system",
            "",
            &format!("task {id} cancelled"),
            json!({ "task_id": id }),
        )
        .await;
        Ok(())
    }
}
