//! The queue: tasks wait in priority order (then oldest first); berth's own runner and external workers
//! take them with the same atomic claim. A claim is a lease: a worker's heartbeats extend it, and a
//! lapsed lease puts the task back in the queue, or fails it once it has been tried `max_attempts`
//! times.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Agents, Caller, CodebaseStatus, TaskStatus};
use crate::error::{ApiError, ApiResult};
use crate::store::agents::CodebaseRow;
use crate::store::tasks::{TaskRow, LOCAL_WORKER};

/// A lease far enough away that the sweeper never takes berth's own runs: they end with their turn,
/// and a crash puts them back at the next start.
fn local_lease() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(3650)
}

impl Agents {
    /// Whether `worker` may work on the codebase: only one registered with its id (by the worker, or
    /// by its owner naming it). Listing a codebase in a heartbeat grants nothing.
    pub(super) async fn check_serves(
        &self,
        worker: Option<&str>,
        row: &CodebaseRow,
    ) -> ApiResult<()> {
        let Some(worker) = worker else {
            return Err(ApiError::invalid("worker_id is required"));
        };
        if row.worker_id.as_deref() != Some(worker) {
            return Err(ApiError::conflict(format!(
                "worker {} does not serve codebase {}",
                super::shown(worker),
                row.id
            )));
        }
        Ok(())
    }

    /// The codebases a worker may take tasks of.
    pub(super) async fn served_by(&self, worker: &str) -> ApiResult<Vec<String>> {
        Ok(self
            .inner
            .store
            .codebases_of_worker(worker)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect())
    }

    /// A worker takes the next task it serves (of one codebase, if named): atomically, with a lease.
    pub async fn claim(
        &self,
        caller: &Caller,
        worker_id: &str,
        codebase_id: Option<&str>,
    ) -> ApiResult<Option<TaskRow>> {
        let worker = self.acting_worker(caller, Some(worker_id)).await?;
        let wanted = match codebase_id {
            Some(id) => {
                let row = self.codebase_for(caller, id).await?;
                self.check_serves(Some(&worker), &row).await?;
                vec![row.id]
            }
            None => self.served_by(&worker).await?,
        };
        // Codebases berth itself is running an agent on are not handed out meanwhile.
        let task = self
            .inner
            .store
            .claim_task(&worker, &wanted, &self.busy_codebases(), None, self.lease())
            .await?;
        self.inner.store.heartbeat(&worker, self.lease()).await?;
        if let Some(t) = &task {
            self.after_report(t, &worker).await;
        }
        Ok(task)
    }

    /// berth's own runner: takes queued tasks of local codebases whose workspace is ready, up to the
    /// configured concurrency, one run per codebase at a time.
    pub(super) async fn run_queue(&self) {
        loop {
            if let Err(e) = self.start_queued().await {
                tracing::warn!(error = %e, "starting queued tasks failed");
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    async fn start_queued(&self) -> ApiResult<()> {
        loop {
            let busy = self.busy_codebases();
            if busy.len() >= self.inner.config.task_concurrency {
                return Ok(());
            }
            let mut ready = Vec::new();
            for c in self.inner.store.list_codebases().await? {
                if c.worker_id.is_none()
                    && !busy.contains(&c.id)
                    && self.status_of(&c).await == CodebaseStatus::Idle
                {
                    ready.push(c.id);
                }
            }
            let Some(task) = self
                .inner
                .store
                .claim_task(LOCAL_WORKER, &ready, &busy, None, local_lease())
                .await?
            else {
                return Ok(());
            };
            let row = match self.codebase(&task.codebase_id).await {
                Ok(row) => row,
                Err(e) => {
                    // Deleted meanwhile: the task cannot run.
                    self.inner
                        .store
                        .finish_task(
                            &task.id,
                            LOCAL_WORKER,
                            TaskStatus::Failed,
                            None,
                            Some(&e.to_string()),
                        )
                        .await?;
                    continue;
                }
            };
            if !self.begin_run(&row.id) {
                // A trigger got there first; the task waits for the next round, its attempt unspent.
                self.inner
                    .store
                    .release_task(&task.id, LOCAL_WORKER, true)
                    .await?;
                return Ok(());
            }
            self.task_event(&task, "status", json!({ "status": "running", "message": format!("Task: {} (running)", task.title) }))
                .await;
            if let Err(e) = self.start_run(row, &task).await {
                tracing::warn!(task.id = %task.id, error = %e, "a queued task failed to start");
            }
        }
    }

    /// Puts back (or fails) the tasks of workers that stopped heartbeating.
    pub(super) async fn sweep_leases(&self) {
        let every = Duration::from_secs((self.inner.config.task_lease_secs / 4).clamp(1, 15));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            let expired = match self.inner.store.expire_leases(Utc::now()).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping task leases failed");
                    continue;
                }
            };
            let requeued = expired.requeued.iter().map(|t| {
                let data = json!({ "status": "pending", "message": t.error });
                (
                    t,
                    "status",
                    data,
                    "a worker's lease lapsed; task queued again",
                )
            });
            let failed = expired.failed.iter().map(|t| {
                let data = json!({ "error": t.error, "code": "LEASE_EXPIRED" });
                (t, "error", data, "a task ran out of attempts")
            });
            for t in &expired.requeued {
                self.push_task(t).await;
            }
            for (t, kind, data, what) in requeued.chain(failed) {
                tracing::warn!(task.id = %t.id, attempts = t.attempts, "{what}");
                self.task_event(t, kind, data).await;
                let error = t.error.as_deref().unwrap_or_default();
                self.monitor("error", "", error, json!({ "task_id": t.id }))
                    .await;
            }
            if !expired.requeued.is_empty() {
                self.inner.wake.notify_one();
            }
        }
    }
}
