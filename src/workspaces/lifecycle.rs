//! A built workspace's container between builds: `stop` (everything kept) and `start` (resumes, no init),
//! and the engine's own events, so a container that dies, is OOM-killed or removed behind berth's back
//! shows in the workspace's status at once instead of at the next restart.

use std::time::Duration;

use futures::StreamExt;

use super::model::{ContainerState, Status, Workspace, WorkspaceType};
use super::Workspaces;
use crate::engine::{ContainerEvent, ContainerEventKind};
use crate::error::{ApiError, ApiResult};

/// How long a stopped container's processes get to exit before they are killed.
const STOP_GRACE_SECS: i64 = 5;

impl Workspaces {
    /// Stops the container of a ready (or exited) workspace; it becomes `pending` with container state
    /// `stopped`, and nothing else changes (volume, image, container, init result).
    pub async fn stop(&self, ws: &Workspace) -> ApiResult<Workspace> {
        let container_id = self.container_of(ws)?;
        let state = ws.container_state;
        let stoppable = ws.status == Status::Ready
            || (ws.status == Status::Error && state == Some(ContainerState::Exited));
        if ws.status == Status::Pending && state == Some(ContainerState::Stopped) {
            return self.get(&ws.id).await;
        }
        if !stoppable {
            return Err(ApiError::conflict(format!(
                "the workspace is {}{}; only a ready workspace can be stopped",
                ws.status.as_str(),
                state
                    .map(|s| format!(" (container {})", s.as_str()))
                    .unwrap_or_default()
            )));
        }
        // Recorded first, so the engine's `die` event finds a stop berth asked for.
        let moved = self
            .inner
            .store
            .settle_container(
                &ws.id,
                container_id,
                &[Status::Ready, Status::Error],
                Status::Pending,
                None,
                ContainerState::Stopped,
            )
            .await?;
        if !moved {
            return Err(ApiError::conflict(
                "the workspace changed meanwhile; try again",
            ));
        }
        match self
            .inner
            .engine
            .stop_container(container_id, STOP_GRACE_SECS)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {
                self.record_removed(&ws.id, container_id).await?;
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(workspace.id = %ws.id, "workspace stopped");
        self.get(&ws.id).await
    }

    /// Starts the container of a stopped or exited workspace again, as it was: no build, no init.
    pub async fn start(&self, ws: &Workspace) -> ApiResult<Workspace> {
        let container_id = self.container_of(ws)?;
        let state = ws.container_state;
        if ws.status == Status::Ready {
            return Ok(ws.clone());
        }
        let startable = matches!(
            (ws.status, state),
            (Status::Pending, Some(ContainerState::Stopped))
                | (Status::Error, Some(ContainerState::Exited))
        );
        if !startable {
            let how = if state == Some(ContainerState::Removed) {
                "its container was removed; POST /build makes a new one"
            } else {
                "only a stopped or exited workspace can be started; POST /build builds it"
            };
            return Err(ApiError::conflict(format!(
                "the workspace is {}: {how}",
                ws.status.as_str()
            )));
        }
        match self.inner.engine.start_container(container_id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {
                self.record_removed(&ws.id, container_id).await?;
                return Err(ApiError::conflict(
                    "its container was removed; POST /build makes a new one",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.inner
            .store
            .settle_container(
                &ws.id,
                container_id,
                &[Status::Pending, Status::Error],
                Status::Ready,
                None,
                ContainerState::Running,
            )
            .await?;
        tracing::info!(workspace.id = %ws.id, "workspace started");
        self.get(&ws.id).await
    }

    fn container_of<'a>(&self, ws: &'a Workspace) -> ApiResult<&'a str> {
        if ws.workspace_type != WorkspaceType::Container {
            return Err(ApiError::invalid("host workspaces have no container"));
        }
        ws.container_id
            .as_deref()
            .ok_or_else(|| ApiError::conflict("the workspace has no container yet; POST /build"))
    }

    async fn record_removed(&self, id: &str, container_id: &str) -> ApiResult<()> {
        self.inner
            .store
            .settle_container(
                id,
                container_id,
                &[Status::Ready, Status::Pending, Status::Error],
                Status::Error,
                Some("its container was removed outside berth; POST /build makes a new one"),
                ContainerState::Removed,
            )
            .await?;
        Ok(())
    }

    /// Follows the engine's events for this instance's containers until berth stops. A lost connection
    /// (the engine restarting) is followed again from where it broke off.
    pub async fn follow_engine(&self, mut since: i64) {
        let shutdown = self.inner.shutdown.clone();
        loop {
            let mut events = Box::pin(self.inner.engine.container_events(since));
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = events.next() => next,
                };
                match next {
                    Some(Ok(event)) => {
                        since = chrono::Utc::now().timestamp() - 1;
                        if let Err(e) = self.on_engine_event(&event).await {
                            tracing::warn!(workspace.id = %event.workspace_id, error = %e, "recording an engine event failed");
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "engine event feed broke off");
                        break;
                    }
                    None => break,
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn on_engine_event(&self, event: &ContainerEvent) -> anyhow::Result<()> {
        let id = event.workspace_id.as_str();
        // A delete in progress removes the container itself.
        if self
            .inner
            .removing
            .lock()
            .expect("removing lock")
            .contains_key(id)
        {
            return Ok(());
        }
        let store = &self.inner.store;
        let Some(ws) = store.get_workspace(id, &self.inner.secrets).await? else {
            return Ok(());
        };
        let container = event.container_id.as_str();
        let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
        match event.kind {
            ContainerEventKind::Died { exit_code } => {
                let oom = self
                    .inner
                    .engine
                    .inspect_container(container)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.state?.oom_killed)
                    .unwrap_or(false);
                let code = exit_code.map_or("?".to_string(), |c| c.to_string());
                // The engine's flag says the container ran out of memory at some point, not that
                // this is what ended it: both facts are told as they are.
                let why = if oom {
                    format!(
                        "exited with code {code} after running out of memory (limit {} MB)",
                        self.memory_mb(&ws)
                    )
                } else {
                    format!("exited with code {code}")
                };
                let msg = format!(
                    "its container {why} at {now}, outside berth; POST /api/workspaces/{id}/start starts it again"
                );
                if store
                    .settle_container(
                        id,
                        container,
                        &[Status::Ready],
                        Status::Error,
                        Some(&msg),
                        ContainerState::Exited,
                    )
                    .await?
                {
                    tracing::warn!(workspace.id = %id, exit_code = ?exit_code, oom, "workspace container died");
                }
            }
            ContainerEventKind::OutOfMemory => {
                store.record_oom_kill(id).await?;
                let msg = format!(
                    "a process in the container was killed for lack of memory (limit {} MB) at {now}",
                    self.memory_mb(&ws)
                );
                // The container may well run on: the workspace stays ready, with the reason shown.
                store
                    .settle_container(
                        id,
                        container,
                        &[Status::Ready],
                        Status::Ready,
                        Some(&msg),
                        ContainerState::Running,
                    )
                    .await?;
                tracing::warn!(workspace.id = %id, "out of memory in a workspace container");
            }
            ContainerEventKind::Started => {
                // Started again behind berth's back (or by the engine's restart policy) after it
                // died; a failed build's container is no more ready for running again.
                if ws.container_state != Some(ContainerState::Exited) {
                    return Ok(());
                }
                if store
                    .settle_container(
                        id,
                        container,
                        &[Status::Error],
                        Status::Ready,
                        None,
                        ContainerState::Running,
                    )
                    .await?
                {
                    tracing::info!(workspace.id = %id, "workspace container running again");
                }
            }
            ContainerEventKind::Removed => {
                // A build replacing its container is not a removal behind berth's back.
                let had = ws
                    .container_state
                    .is_some_and(|s| s != ContainerState::Removed);
                if ws.status != Status::Building && had {
                    self.record_removed(id, container).await?;
                    tracing::warn!(workspace.id = %id, "workspace container removed outside berth");
                }
            }
        }
        Ok(())
    }
}
