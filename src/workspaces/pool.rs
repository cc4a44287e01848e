//! The warm pool: started generic workspace containers waiting for a create to claim them.
//!
//! A pooled container is a workspace without its row. Its id is drawn beforehand and names its container,
//! volume, network and agent socket, so a claim is the row's insert under that id, and the build that
//! follows finds everything made: it starts nothing, it only binds what is the workspace's own (owner and
//! name in the row, env vars at each exec, skills, init). Nothing else differs between workspaces that fit
//! the pool, so one pool serves every user and every env.
//!
//! The pool is not persisted: what a crash leaves, no row owns, and the start-up reconcile removes it
//! before the pool fills again. A graceful stop removes the pool's containers.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;

use super::model::{Limits, Workspace, WorkspaceType};
use super::Workspaces;
use crate::engine::{self, OutputSink};

/// Started containers, by workspace id, oldest first; and a wake-up for the filler when one is taken.
#[derive(Default)]
pub(super) struct Pool {
    ready: Mutex<VecDeque<String>>,
    taken: Notify,
}

/// How long a new pooled container's agent may take to answer before the container counts as ready
/// anyway (a claim's first command then waits for it, or goes through the engine).
const AGENT_WAIT: Duration = Duration::from_secs(5);
/// The longest pause between failed fills (the engine down, the base image missing).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Pool {
    fn take(&self) -> Option<String> {
        let id = self.ready.lock().expect("pool lock").pop_front();
        if id.is_some() {
            self.taken.notify_one();
        }
        id
    }

    fn len(&self) -> usize {
        self.ready.lock().expect("pool lock").len()
    }
}

impl Workspaces {
    /// Whether a workspace can be the one a pooled container was made for: the same container spec in
    /// everything set at creation (distro, packages, limits, network, mounts).
    pub(super) fn fits_pool(&self, ws: &Workspace) -> bool {
        let config = &self.inner.config;
        let Limits {
            memory_mb,
            cpus,
            pids,
            disk_mb: _,
        } = ws.limits;
        config.pool_size > 0
            && ws.workspace_type == WorkspaceType::Container
            && ws.distro.is_some()
            && ws.distro == self.resolve_distro(&config.default_distro).ok()
            && ws.packages.is_empty()
            && ws.network == "bridge"
            && memory_mb.is_none()
            && cpus.is_none()
            && pids.is_none()
            && ws.code_mount.is_none()
            && ws.base_image.is_none()
    }

    /// A pooled workspace id for a create, when one is ready.
    pub(super) fn claim_pooled(&self) -> Option<String> {
        let id = self.inner.pool.take();
        let outcome = if id.is_some() { "hit" } else { "miss" };
        crate::metrics::get()
            .pool_claims
            .with_label_values(&[outcome])
            .inc();
        crate::metrics::get()
            .pool_ready
            .set(self.inner.pool.len() as i64);
        id
    }

    /// Gives back an id whose create failed before its row was written (a name taken): still unused.
    pub(super) fn unclaim(&self, id: String) {
        self.inner
            .pool
            .ready
            .lock()
            .expect("pool lock")
            .push_front(id);
        crate::metrics::get()
            .pool_ready
            .set(self.inner.pool.len() as i64);
    }

    /// Keeps `BERTH_POOL_SIZE` containers ready until berth stops, then removes them. Runs under the
    /// supervisor, after the start-up reconcile (which would take pooled containers for leftovers).
    pub async fn keep_pool(&self) {
        let size = self.inner.config.pool_size;
        if size == 0 {
            return;
        }
        let shutdown = self.inner.shutdown.clone();
        let mut backoff = Duration::from_secs(1);
        loop {
            if self.inner.pool.len() >= size {
                tokio::select! {
                    _ = self.inner.pool.taken.notified() => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
            let id = uuid::Uuid::new_v4().to_string();
            let made = tokio::select! {
                r = self.fill(&id) => r,
                _ = shutdown.cancelled() => {
                    self.discard(&id).await;
                    break;
                }
            };
            match made {
                Ok(()) => {
                    self.inner
                        .pool
                        .ready
                        .lock()
                        .expect("pool lock")
                        .push_back(id);
                    crate::metrics::get()
                        .pool_ready
                        .set(self.inner.pool.len() as i64);
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_secs = backoff.as_secs(), "filling the warm pool failed");
                    self.discard(&id).await;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let left: Vec<String> = self
            .inner
            .pool
            .ready
            .lock()
            .expect("pool lock")
            .drain(..)
            .collect();
        futures::future::join_all(left.iter().map(|id| self.discard(id))).await;
        crate::metrics::get().pool_ready.set(0);
    }

    /// Makes one pooled container, started, with its agent answering.
    async fn fill(&self, id: &str) -> Result<(), String> {
        let ws = self.pooled_workspace(id);
        self.provision(&ws, false, &mut OutputSink::none())
            .await
            .map_err(|e| match e {
                super::build::BuildFailure::Failed(m) => m,
                super::build::BuildFailure::Cancelled => "cancelled".into(),
            })?;
        if self
            .inner
            .resident
            .client_within(id, AGENT_WAIT)
            .await
            .is_none()
        {
            tracing::debug!(workspace.id = %id, "a pooled container's agent is not answering yet");
        }
        tracing::debug!(workspace.id = %id, "a pooled container is ready");
        Ok(())
    }

    /// Removes what a pooled id names (each part may be missing).
    async fn discard(&self, id: &str) {
        let engine = &self.inner.engine;
        if let Err(e) = engine.remove_container(&engine::container_name(id)).await {
            tracing::warn!(workspace.id = %id, error = %e, "removing a pooled container failed");
        }
        self.inner.resident.remove(id);
        if let Err(e) = engine.remove_network(&engine::network_name(id)).await {
            tracing::warn!(workspace.id = %id, error = %e, "removing a pooled network failed");
        }
        if let Err(e) = engine.remove_volume(id).await {
            tracing::warn!(workspace.id = %id, error = %e, "removing a pooled volume failed");
        }
    }

    /// What a pooled container is built as: a workspace that sets nothing. Its hostname is its id's
    /// first twelve characters (Docker's own default), since its name is not known yet.
    fn pooled_workspace(&self, id: &str) -> Workspace {
        Workspace {
            name: id.chars().take(12).collect(),
            distro: self.resolve_distro(&self.inner.config.default_distro).ok(),
            ..Workspace::unbuilt(id.to_string(), Utc::now())
        }
    }
}
