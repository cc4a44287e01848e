//! The `/v1` agent API behind the seed's CodeTether shapes: codebases an agent works on, agent runs on
//! them (backed by the same missions and OpenCode servers as `/api/control`), a task queue that berth
//! works through itself and that external workers can claim from with leases, the OpenCode runtime
//! view, and the monitor's activity log.

mod codebases;
pub mod events;
mod monitor;
mod queue;
mod runs;
mod runtime_view;
mod sessions;
mod tasks;
mod watch;
mod workers;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::missions::Missions;
use crate::store::agents::MonitorEntry;
use crate::store::Store;
use crate::workspaces::Workspaces;

pub use codebases::{CodebaseView, RegisterCodebase};
pub use runs::{MessageRequest, TriggerRequest};
pub use tasks::{CreateTask, StatusUpdate, TaskView};
pub use workers::{RegisterWorker, WorkerView};

/// Who is calling: a user (any `/api` token) or a worker with the token issued at its registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(String),
    Worker(String),
}

impl Caller {
    /// Actions on behalf of people (triggering agents, deleting codebases, queueing and cancelling
    /// work) need a user's token; a worker's token is for reporting on its own work.
    pub fn require_user(&self) -> crate::error::ApiResult<()> {
        match self {
            Self::User(_) => Ok(()),
            Self::Worker(w) => Err(crate::error::ApiError::Forbidden(format!(
                "worker {w}'s token is for its own work; this needs a user's token"
            ))),
        }
    }

    /// From a token's subject: worker tokens carry `worker:<id>`.
    pub fn from_subject(sub: &str) -> Self {
        match sub.strip_prefix("worker:") {
            Some(id) => Self::Worker(id.to_string()),
            None => Self::User(sub.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct Agents {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    workspaces: Workspaces,
    missions: Missions,
    config: Config,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Wakes berth's own task runner when a task is queued or a run ends.
    wake: Notify,
    /// Local codebases with a run of berth's own going (one agent run per codebase at a time).
    active: Mutex<HashSet<String>>,
}

pub struct Deps {
    pub store: Store,
    pub workspaces: Workspaces,
    pub missions: Missions,
    pub config: Config,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

/// The owner of a codebase's missions and events (never a user name: those have no colon).
fn owner_of(codebase_id: &str) -> String {
    format!("codebase:{codebase_id}")
}

/// One page of a listing.
fn page(items: Vec<Value>, limit: i64, offset: i64) -> Vec<Value> {
    items
        .into_iter()
        .skip(offset.max(0) as usize)
        .take(limit.max(0) as usize)
        .collect()
}

impl Agents {
    pub fn new(d: Deps) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: d.store,
                workspaces: d.workspaces,
                missions: d.missions,
                config: d.config,
                tracker: d.tracker,
                shutdown: d.shutdown,
                wake: Notify::new(),
                active: Mutex::new(HashSet::new()),
            }),
        }
    }

    pub fn missions(&self) -> &Missions {
        &self.inner.missions
    }

    /// At start-up: berth's own runs died with the last process, so their tasks go back to the queue;
    /// then the task runner and the lease sweeper start.
    pub async fn start(&self) -> anyhow::Result<()> {
        if let Err(e) = self.repair_codebases().await {
            tracing::error!(error = %e, "repairing codebases failed");
        }
        let n = self.inner.store.requeue_local_tasks().await?;
        if n > 0 {
            tracing::warn!(tasks = n, "tasks interrupted by a restart are queued again");
        }
        let this = self.clone();
        self.inner
            .tracker
            .spawn(async move { this.run_queue().await });
        let this = self.clone();
        self.inner
            .tracker
            .spawn(async move { this.sweep_leases().await });
        Ok(())
    }

    /// Adds to the monitor log; a failure is logged, never the caller's problem.
    async fn monitor(&self, kind: &str, agent: &str, content: &str, metadata: Value) {
        self.monitor_entry(MonitorEntry {
            kind,
            agent_name: agent,
            content,
            metadata,
            response_time: None,
            error: None,
        })
        .await;
    }

    async fn monitor_entry(&self, e: MonitorEntry<'_>) {
        if let Err(err) = self.inner.store.log_monitor(e).await {
            tracing::warn!(error = %err, "writing the monitor log failed");
        }
    }
}
