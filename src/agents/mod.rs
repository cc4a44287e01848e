//! The `/v1` agent API behind the seed's CodeTether shapes: codebases an agent works on, agent runs on
//! them (backed by the same missions and OpenCode servers as `/api/control`), a task queue that berth
//! works through itself and that external workers can claim from with leases, the OpenCode runtime
//! view, and the monitor's activity log.

mod channel;
mod codebases;
mod discovery;
pub mod events;
pub mod links;
pub mod model;
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
use crate::principal::{Principal, Role};
use crate::store::agents::MonitorEntry;
use crate::store::Store;
use crate::workspaces::Workspaces;

pub use channel::OpenChannel;
pub use codebases::{Codebase, RegisterCodebase};
pub use discovery::{AgentCard, Discovery};
pub use links::{Links, Push, Tied};
pub use model::{CodebaseStatus, TaskStatus};
pub use runs::{MessageRequest, Start, TriggerRequest, Triggered};
pub use tasks::{CreateTask, StatusUpdate};
pub use workers::{
    check_worker_id, shown, worker_key, RegisterWorker, Registered, Worker, TOKEN_PREFIX,
};

/// Who is calling: a user (a login or API token) or a worker with the token issued at its
/// registration. A worker acts for the user who registered it, and only on its own work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(Principal),
    Worker { id: String, owner: String },
}

impl Caller {
    /// Actions on behalf of people (triggering agents, deleting codebases, queueing and cancelling
    /// work) need a user's token; a worker's token is for reporting on its own work.
    pub fn require_user(&self) -> crate::error::ApiResult<&Principal> {
        match self {
            Self::User(p) => Ok(p),
            Self::Worker { id, .. } => Err(crate::error::ApiError::Forbidden(format!(
                "worker {}'s token is for its own work; this needs a user's token",
                shown(id)
            ))),
        }
    }

    /// The user whose objects this caller works with.
    pub fn owner(&self) -> &str {
        match self {
            Self::User(p) => &p.name,
            Self::Worker { owner, .. } => owner,
        }
    }

    /// Listings: the owner to filter by, `None` for an admin.
    pub fn listing_owner(&self) -> Option<&str> {
        match self {
            Self::User(p) => p.listing_owner(),
            Self::Worker { owner, .. } => Some(owner),
        }
    }

    /// Whether a user may act on an object of `owner` (a worker's own work is checked apart).
    pub fn may_act_on(&self, owner: &str) -> bool {
        match self {
            Self::User(p) => p.may_act_on(owner),
            Self::Worker { owner: mine, .. } => mine == owner,
        }
    }

    /// How logs and the audit log name the caller: a user, or `worker:<id>`.
    pub fn name(&self) -> String {
        match self {
            Self::User(p) => p.name.clone(),
            Self::Worker { id, .. } => format!("worker:{id}"),
        }
    }

    /// The worker id when a worker calls.
    pub fn worker(&self) -> Option<&str> {
        match self {
            Self::Worker { id, .. } => Some(id),
            Self::User(_) => None,
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
    /// Workers' push channels and what vouches for their token-less calls.
    links: Links,
    /// Agents registered for discovery over MCP.
    discovery: Discovery,
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

/// Who acts on a codebase's missions: berth itself, as their owner, with the reach to use the
/// codebase's workspace (whose owner is the codebase's user). Never a request's principal; never used
/// for listings, which would then span every user.
fn runs_principal(codebase_id: &str) -> Principal {
    Principal::new(owner_of(codebase_id), Role::Admin)
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
                links: Links::default(),
                discovery: Discovery::default(),
            }),
        }
    }

    pub fn missions(&self) -> &Missions {
        &self.inner.missions
    }

    pub fn links(&self) -> &Links {
        &self.inner.links
    }

    pub fn discovery(&self) -> &Discovery {
        &self.inner.discovery
    }

    /// Cancelled when berth stops: long-lived answers end with it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
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

    /// Whose work a monitor entry is about, from the codebase, task or worker it names.
    async fn owner_of_entry(&self, metadata: &Value) -> Option<String> {
        let store = &self.inner.store;
        if let Some(owner) = metadata["owner"].as_str() {
            return Some(owner.to_string());
        }
        if let Some(id) = metadata["codebase_id"].as_str() {
            if let Ok(Some(c)) = store.get_codebase(id).await {
                return Some(c.owner);
            }
        }
        if let Some(id) = metadata["task_id"].as_str() {
            if let Ok(Some(t)) = store.get_task(id).await {
                return Some(t.owner);
            }
        }
        None
    }

    async fn monitor_entry(&self, e: MonitorEntry<'_>) {
        let owner = self.owner_of_entry(&e.metadata).await;
        if let Err(err) = self.inner.store.log_monitor(e, owner.as_deref()).await {
            tracing::warn!(error = %err, "writing the monitor log failed");
        }
    }
}
