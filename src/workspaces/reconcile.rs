//! Start-up reconciliation of the store with the engine: nothing stays `building` after a crash, ready
//! workspaces get their containers back (or are flagged), and containers this instance labelled but no
//! workspace owns are removed. Objects without this instance's labels are never touched.

use std::collections::HashSet;

use super::model::{Status, WorkspaceType};
use super::Workspaces;
use crate::engine;

/// The error of a build a berth restart cut off (owners that rebuild on their own look for it).
pub const INTERRUPTED_BUILD: &str = "the build was interrupted by a berth restart; build again";

impl Workspaces {
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
                    let msg = INTERRUPTED_BUILD;
                    store
                        .transition_workspace(&ws.id, &[Status::Building], Status::Error, Some(msg))
                        .await?;
                    tracing::warn!(workspace.id = %ws.id, "interrupted build marked as error");
                }
                Status::Ready => {
                    let name = engine::container_name(&ws.id);
                    let state = engine.inspect_container(&name).await?;
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
        Ok(())
    }
}
