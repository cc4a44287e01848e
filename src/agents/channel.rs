//! A worker's push channel and the claims made from it: opening it registers the worker (with what
//! it registered before it vouched), tasks are pushed as they are queued, the worker claims one by
//! id and releases it when done; while the channel is open the worker is `active` and its leases
//! renew, so a task that runs for hours is never taken from it.

use std::net::IpAddr;

use tokio::sync::broadcast;

use super::links::{ChannelGuard, Push, Tied};
use super::{shown, Agents, Caller, RegisterCodebase, RegisterWorker, TaskStatus};
use crate::error::{ApiError, ApiResult};
use crate::store::tasks::{TaskFilter, TaskRow};

/// An open channel: the guard that closes it, what it will be pushed, and what waits already.
pub struct OpenChannel {
    pub guard: ChannelGuard,
    pub rx: broadcast::Receiver<Push>,
    pub worker_id: String,
    pub codebases: Vec<String>,
    pub waiting: Vec<TaskRow>,
}

impl Agents {
    /// Opens the calling worker's channel from `addr`: registers the worker if it is new, adopts the
    /// registrations it made from this address before (those whose ids it lists), records the
    /// codebases it serves.
    pub async fn open_channel(
        &self,
        caller: &Caller,
        addr: IpAddr,
        name: Option<&str>,
        listed: &[String],
        token: &str,
    ) -> ApiResult<OpenChannel> {
        let Caller::Worker { id: key, owner } = caller else {
            return Err(ApiError::invalid("a push channel is a worker's: name it"));
        };
        let client = shown(key).to_string();
        let held = self.inner.links.take_held(addr, &client);
        let (held_worker, held_codebases) = match held {
            Some(h) => (h.worker, h.codebases),
            None => (None, Vec::new()),
        };
        let exists = self.inner.store.get_worker(key).await?.is_some();
        if let Some(req) = held_worker {
            self.register_worker(caller, req).await?;
        } else if !exists {
            let req = RegisterWorker {
                worker_id: Some(client.clone()),
                name: name.unwrap_or(&client).to_string(),
                capabilities: Vec::new(),
                hostname: None,
                codebases: Vec::new(),
            };
            self.register_worker(caller, req).await?;
        }
        for (id, req) in held_codebases {
            // Only what the worker itself got answered: a forged registration's id is not in its list.
            if listed.contains(&id) {
                if let Err(e) = self.register_codebase_as(caller, req, Some(id)).await {
                    tracing::warn!(worker.id = %key, error = %e, "a held codebase registration failed");
                }
            }
        }
        // What it lists that is not its own (a stale id, another's) is left out, not refused: the
        // worker re-registers its codebases and tells the channel again.
        let own = self.served_by(key).await?;
        let codebases: Vec<String> = listed
            .iter()
            .filter(|id| own.contains(id))
            .cloned()
            .collect();
        super::workers::check_list("codebases", &codebases)?;
        self.inner
            .store
            .set_worker_codebases(key, &serde_json::json!(codebases).to_string())
            .await?;
        let tied = Tied {
            key: key.clone(),
            owner: owner.clone(),
            token: token.to_string(),
        };
        let (guard, rx) = self.inner.links.open(addr, &client, &tied);
        self.inner.store.heartbeat(key, self.lease()).await?;
        let waiting = self.waiting_for(key).await?;
        tracing::info!(worker.id = %key, "worker push channel open");
        Ok(OpenChannel {
            guard,
            rx,
            worker_id: client,
            codebases,
            waiting,
        })
    }

    /// The pending tasks of the worker's codebases, in queue order.
    pub async fn waiting_for(&self, key: &str) -> ApiResult<Vec<TaskRow>> {
        let filter = TaskFilter {
            status: Some(TaskStatus::Pending),
            worker: Some(key),
            ..Default::default()
        };
        let rows = self.inner.store.list_tasks(filter, 1000).await?;
        Ok(rows)
    }

    /// While the channel is open: the worker stays `active` and the tasks it holds keep their lease.
    pub async fn channel_alive(&self, caller: &Caller) {
        let Caller::Worker { id: key, .. } = caller else {
            return;
        };
        match self.inner.store.heartbeat(key, self.lease()).await {
            Ok(true) => {}
            // Unregistered by another process of the same worker: one with an open channel is
            // registered, so what it holds keeps its lease.
            Ok(false) => {
                let req = RegisterWorker {
                    worker_id: Some(shown(key).to_string()),
                    name: shown(key).to_string(),
                    capabilities: Vec::new(),
                    hostname: None,
                    codebases: Vec::new(),
                };
                if let Err(e) = self.register_worker(caller, req).await {
                    tracing::warn!(worker.id = %key, error = %e, "registering a connected worker again failed");
                }
                let _ = self.inner.store.heartbeat(key, self.lease()).await;
            }
            Err(e) => {
                tracing::warn!(worker.id = %key, error = %e, "renewing a worker's leases failed")
            }
        }
    }

    /// Tells the worker serving the task's codebase, if its channel is open.
    pub(super) async fn push_task(&self, task: &TaskRow) {
        if let Ok(Some(c)) = self.inner.store.get_codebase(&task.codebase_id).await {
            if let Some(key) = &c.worker_id {
                self.inner
                    .links
                    .push(key, Push::Task(Box::new(task.clone())));
            }
        }
    }

    /// Tells the worker its task was cancelled.
    pub(super) async fn push_cancel(&self, task: &TaskRow) {
        if let Ok(Some(c)) = self.inner.store.get_codebase(&task.codebase_id).await {
            if let Some(key) = &c.worker_id {
                self.inner.links.push(key, Push::Cancelled(task.id.clone()));
            }
        }
    }

    /// The calling worker takes one task by id, atomically: the task must be pending and of a
    /// codebase it serves (409 otherwise, as when another worker was quicker).
    pub async fn claim_by_id(&self, caller: &Caller, task_id: &str) -> ApiResult<TaskRow> {
        let worker = self.acting_worker(caller, None).await?;
        self.check_worker(caller, shown(&worker)).await?;
        let task = self
            .inner
            .store
            .get_task(task_id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Task {task_id} not found")))?;
        let row = self.codebase(&task.codebase_id).await?;
        self.check_serves(Some(&worker), &row).await?;
        let claimed = self
            .inner
            .store
            .claim_task(
                &worker,
                &[row.id],
                &self.busy_codebases(),
                Some(task_id),
                self.lease(),
            )
            .await?;
        let Some(task) = claimed else {
            return Err(ApiError::conflict(format!(
                "task {task_id} is {}; it was claimed already or cannot be claimed",
                task.status
            )));
        };
        self.after_report(&task, &worker).await;
        Ok(task)
    }

    /// The calling worker is done with a task. One it still holds (it ended without a report) goes
    /// back to the queue, its attempt spent; one that ended already stays as it is. Whether it was
    /// queued again.
    pub async fn release(&self, caller: &Caller, task_id: &str) -> ApiResult<bool> {
        let worker = self.acting_worker(caller, None).await?;
        let task = self.task_for(caller, task_id).await?;
        if task.status != TaskStatus::Running {
            return Ok(false);
        }
        if task.worker_id.as_deref() != Some(worker.as_str()) {
            return Err(ApiError::conflict(format!(
                "task {task_id} is held by another worker"
            )));
        }
        if task.attempts >= task.max_attempts {
            // Out of attempts: queued again it would only wait for a worker that skips it.
            let error = format!("released without a result after {} attempts", task.attempts);
            let store = &self.inner.store;
            if store
                .finish_task(task_id, &worker, TaskStatus::Failed, None, Some(&error))
                .await?
            {
                if let Some(t) = store.get_task(task_id).await? {
                    self.after_report(&t, &worker).await;
                }
            }
            return Ok(false);
        }
        let requeued = self
            .inner
            .store
            .release_task(task_id, &worker, false)
            .await?;
        if requeued {
            if let Some(t) = self.inner.store.get_task(task_id).await? {
                self.after_report(&t, &worker).await;
                self.push_task(&t).await;
            }
        }
        Ok(requeued)
    }

    /// A registration from an address no worker has vouched for yet: held (in memory) until the
    /// worker's channel opens from there; the answer is what the worker will be once it does.
    pub fn hold_worker(&self, addr: IpAddr, req: RegisterWorker) -> ApiResult<()> {
        let id = req
            .worker_id
            .clone()
            .ok_or_else(|| ApiError::invalid("worker_id is required"))?;
        req.check()?;
        // Held in memory for anyone who asks: kept small.
        if req.capabilities.len() > 100 || req.codebases.len() > 100 {
            return Err(ApiError::invalid(
                "at most 100 capabilities and codebases before the worker vouches for itself",
            ));
        }
        self.inner.links.hold_worker(addr, &id, req);
        Ok(())
    }

    /// Holds a codebase registration of a worker that has not vouched yet; the codebase's id (the
    /// one it has, when the worker registered this path before).
    pub async fn hold_codebase(
        &self,
        addr: IpAddr,
        worker_id: &str,
        req: RegisterCodebase,
    ) -> ApiResult<String> {
        super::check_worker_id(worker_id)?;
        req.check_name_and_path()?;
        // Held in memory for anyone who asks: kept small.
        let config_len = req.agent_config.as_ref().map_or(0, |c| c.to_string().len());
        if req.description.as_ref().is_some_and(|d| d.len() > 4096) || config_len > 4096 {
            return Err(ApiError::invalid(
                "before the worker vouches for itself: a description and agent_config of at most 4 KiB each",
            ));
        }
        let path = super::codebases::normalize(&req.path)
            .to_string_lossy()
            .into_owned();
        let known: Vec<String> = self
            .inner
            .store
            .codebases_at_path(&path)
            .await?
            .into_iter()
            .filter(|c| c.worker_id.as_deref().map(shown) == Some(worker_id))
            .map(|c| c.id)
            .collect();
        let existing = (known.len() == 1).then(|| known[0].clone());
        self.inner
            .links
            .hold_codebase(addr, worker_id, req, || {
                existing.unwrap_or_else(super::codebases::new_codebase_id)
            })
            .ok_or_else(|| ApiError::RateLimited {
                message: "too many registrations wait for their workers".into(),
                retry_after_secs: 30,
            })
    }
}
