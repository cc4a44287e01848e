//! Disk limits. The engine's storage here (overlay2 on ext4) cannot set quotas, so berth measures: every
//! `BERTH_DISK_CHECK_SECS` it asks the engine what each workspace uses (its `/workspace` volume plus its
//! container's writable layer) and stops a workspace past its limit, with a status that says so. The
//! host keeps what berth measured between two checks as slack; other workspaces are not touched.

use std::time::Duration;

use super::model::{ContainerState, Status, WorkspaceType};
use super::Workspaces;

impl Workspaces {
    /// Measures and enforces until berth stops.
    pub async fn watch_disks(&self) {
        let every = Duration::from_secs(self.inner.config.disk_check_secs.max(1));
        let shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.enforce_disk_limits().await {
                tracing::warn!(error = %e, "measuring workspaces' disk use failed");
            }
        }
    }

    async fn enforce_disk_limits(&self) -> anyhow::Result<()> {
        let used = self.inner.engine.disk_usage().await?;
        for ws in self.list().await.map_err(|e| anyhow::anyhow!("{e}"))? {
            if ws.workspace_type != WorkspaceType::Container || ws.status != Status::Ready {
                continue;
            }
            let (Some(container), Some(bytes)) = (ws.container_id.as_deref(), used.get(&ws.id))
            else {
                continue;
            };
            let limit_mb = ws.limits.disk_mb.unwrap_or(self.inner.config.disk_mb);
            let used_mb = bytes >> 20;
            if used_mb <= limit_mb {
                continue;
            }
            let msg = format!(
                "the workspace used {used_mb} MiB of its {limit_mb} MiB disk limit (/workspace and its \
                 container's files) and was stopped; POST /api/workspaces/{}/start and free space (or raise \
                 disk_mb)",
                ws.id
            );
            // Recorded first, so the engine's `die` event finds a stop berth made.
            let moved = self
                .inner
                .store
                .settle_container(
                    &ws.id,
                    container,
                    &[Status::Ready],
                    Status::Error,
                    Some(&msg),
                    ContainerState::Exited,
                )
                .await?;
            if moved {
                tracing::warn!(workspace.id = %ws.id, used_mb, limit_mb, "workspace over its disk limit stopped");
                self.inner.engine.stop_container(container, 2).await?;
            }
        }
        Ok(())
    }
}
