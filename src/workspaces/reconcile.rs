//! Start-up reconciliation of the store with the engine: nothing stays `building` after a crash, ready
//! workspaces get their containers back (or are flagged), and containers this instance labelled but no
//! workspace owns are removed. Objects without this instance's labels are never touched.

use std::collections::HashSet;

use super::model::{BuildOp, ContainerState, Status, WorkspaceType};
use super::Workspaces;
use crate::engine;

/// The error of a build a berth restart cut off (owners that rebuild on their own look for it).
pub const INTERRUPTED_BUILD: &str = "the build was interrupted by a berth restart; build again";
/// The error of a rerun-init a berth restart cut off (its init was killed).
pub const INTERRUPTED_RERUN_INIT: &str =
    "rerun-init was interrupted by a berth restart (its init was killed); run rerun-init again";

impl Workspaces {
    /// Execs and inits a crash cut off keep running in their containers with nobody to enforce their
    /// timeouts: inits and those past their deadline are killed now (their whole trees), the others when
    /// it comes.
    async fn settle_orphaned_execs(&self, container: &str) {
        let engine = &self.inner.engine;
        let orphans = match engine.orphaned_execs(container).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(container.id = %container, error = %e, "cannot look for execs a crash cut off");
                return;
            }
        };
        for orphan in orphans {
            // An init goes at once: the build or rerun-init it belonged to ended with the crash, and
            // a new init must not run beside it.
            let wait = if orphan.init {
                0
            } else {
                orphan.deadline - chrono::Utc::now().timestamp()
            };
            tracing::warn!(container.id = %container, init = orphan.init, seconds_left = wait.max(0), "a process a restart cut off is killed at its deadline");
            if wait <= 0 {
                engine.kill_tree(container, &orphan.marker).await;
                continue;
            }
            let (engine, container) = (engine.clone(), container.to_string());
            let shutdown = self.inner.shutdown.clone();
            self.inner.tracker.spawn(async move {
                let until = std::time::Duration::from_secs(wait as u64);
                tokio::select! {
                    _ = tokio::time::sleep(until) => {}
                    // The next start finds it again.
                    _ = shutdown.cancelled() => return,
                }
                engine.kill_tree(&container, &orphan.marker).await;
            });
        }
    }

    /// Shared images are a cache while berth runs (a create of the same distro and packages finds its
    /// image built); those no container uses go when berth stops or starts.
    pub async fn remove_unused_images(&self) -> anyhow::Result<()> {
        let engine = &self.inner.engine;
        for image in engine.list_shared_images().await? {
            match engine.remove_image_if_unused(&image).await {
                Ok(true) => tracing::info!(image.id = %image, "removed an image no container uses"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(image.id = %image, error = %e, "an unused berth image stays")
                }
            }
        }
        Ok(())
    }

    pub async fn reconcile(&self) -> anyhow::Result<()> {
        let store = &self.inner.store;
        let engine = &self.inner.engine;
        let workspaces = store.list_workspaces(None, &self.inner.secrets).await?;
        let known: HashSet<&str> = workspaces.iter().map(|w| w.id.as_str()).collect();

        for ws in &workspaces {
            if ws.workspace_type != WorkspaceType::Container {
                continue;
            }
            match ws.status {
                Status::Building => {
                    let msg = match ws.building_op {
                        Some(BuildOp::RerunInit) => INTERRUPTED_RERUN_INIT,
                        _ => INTERRUPTED_BUILD,
                    };
                    store
                        .transition_workspace(&ws.id, &[Status::Building], Status::Error, Some(msg))
                        .await?;
                    tracing::warn!(workspace.id = %ws.id, "interrupted build marked as error");
                }
                Status::Ready => {
                    let name = engine::container_name(&ws.id);
                    let state = engine.inspect_container(&name).await?;
                    let gone = state.is_none();
                    let problem = match state {
                        None => Some("its container is gone; rebuild the workspace".to_string()),
                        Some(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => None,
                        Some(_) => match engine.start_container(&name).await {
                            Ok(()) => {
                                tracing::info!(workspace.id = %ws.id, "restarted a stopped workspace container");
                                None
                            }
                            Err(e) => Some(format!("its container would not start: {e}")),
                        },
                    };
                    let state = if problem.is_none() {
                        ContainerState::Running
                    } else if gone {
                        ContainerState::Removed
                    } else {
                        ContainerState::Exited
                    };
                    store.set_container_state(&ws.id, Some(state)).await?;
                    if let Some(msg) = problem {
                        tracing::warn!(workspace.id = %ws.id, error = %msg, "ready workspace flagged");
                        store
                            .transition_workspace(
                                &ws.id,
                                &[Status::Ready],
                                Status::Error,
                                Some(&msg),
                            )
                            .await?;
                    }
                }
                Status::Pending | Status::Error => {}
            }
        }

        for c in engine.list_managed_containers().await? {
            let owned = c
                .workspace_id
                .as_deref()
                .is_some_and(|id| known.contains(id));
            if !owned {
                tracing::info!(container.id = %c.id, "removing a berth container no workspace owns");
                engine.remove_container(&c.id).await?;
            } else if c.running {
                self.settle_orphaned_execs(&c.id).await;
            }
        }
        // Volumes of workspaces that are gone (a crash between a delete's steps), except those a delete
        // kept on purpose.
        let kept: HashSet<String> = store.kept_volumes().await?.into_iter().collect();
        let owned: HashSet<String> = known.iter().map(|id| engine::volume_name(id)).collect();
        for volume in engine.list_managed_volumes().await? {
            if owned.contains(&volume) || kept.contains(&volume) {
                continue;
            }
            match engine.remove_volume_named(&volume).await {
                Ok(()) => tracing::info!(volume = %volume, "removed a volume no workspace owns"),
                Err(e) => {
                    tracing::warn!(volume = %volume, error = %e, "a volume no workspace owns stays")
                }
            }
        }
        // Networks of workspaces that are gone.
        let nets: HashSet<String> = known.iter().map(|id| engine::network_name(id)).collect();
        for net in engine.list_managed_networks().await? {
            if !nets.contains(&net) {
                if let Err(e) = engine.remove_network(&net).await {
                    tracing::warn!(network = %net, error = %e, "a network no workspace owns stays");
                }
            }
        }
        // Images replaced by rebuilds, or built after a crash cut berth off: nothing uses them.
        for image in engine.list_dangling_images().await? {
            match engine.remove_image(&image).await {
                Ok(()) => tracing::info!(image.id = %image, "removed a dangling berth image"),
                Err(e) => {
                    tracing::warn!(image.id = %image, error = %e, "a dangling berth image stays")
                }
            }
        }
        // What a crash kept from the sweep at the last stop.
        self.remove_unused_images().await?;
        Ok(())
    }
}
