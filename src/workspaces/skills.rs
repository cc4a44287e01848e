//! Skill and tool sync: the workspace's skills go to `.opencode/skill/<name>/` and its tools to
//! `.opencode/tool/<name>.ts` under `/workspace` (uploaded into the container as a tar through the Docker
//! API) or under a host workspace's path. What the workspace no longer lists is removed.

use std::path::Path;

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{Status, Workspace, WorkspaceType};
use super::Workspaces;
use crate::engine;
use crate::error::{ApiError, ApiResult};
use crate::library::ItemType;

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct SyncReport {
    pub skills: Vec<String>,
    pub tools: Vec<String>,
    /// Listed by the workspace but absent from the library (e.g. deleted since).
    pub missing: Vec<String>,
}

/// Clears what berth manages under `.opencode/`, so removed skills and files go away.
const CLEAR: &str = "rm -rf /workspace/.opencode/skill /workspace/.opencode/tool && mkdir -p /workspace/.opencode/skill /workspace/.opencode/tool";

impl Workspaces {
    /// `POST /sync`: the workspace must be able to take files (a ready container, or any host workspace).
    pub async fn sync_skills(&self, id: &str) -> ApiResult<SyncReport> {
        let ws = self.get(id).await?;
        if ws.workspace_type == WorkspaceType::Container && ws.status != Status::Ready {
            return Err(ApiError::conflict(format!(
                "workspace is {}; skills sync into a ready workspace (a build syncs them itself)",
                ws.status.as_str()
            )));
        }
        self.sync_into(&ws).await
    }

    /// Syncs when the workspace can take files now; otherwise its next build will. Failures are logged:
    /// the caller's change already happened and `POST /sync` can retry.
    pub(super) async fn sync_if_running(&self, ws: &Workspace) {
        if ws.workspace_type == WorkspaceType::Container && ws.status != Status::Ready {
            return;
        }
        if let Err(e) = self.sync_into(ws).await {
            tracing::warn!(workspace.id = %ws.id, error = %e, "skill sync failed");
        }
    }

    /// Re-syncs every workspace that lists one of `items`; returns the ids it synced.
    pub async fn resync_users_of(&self, items: &[(ItemType, String)]) -> ApiResult<Vec<String>> {
        let mut synced = Vec::new();
        for ws in self.list().await? {
            let uses = items.iter().any(|(t, name)| match t {
                ItemType::Skill => ws.skills.contains(name),
                ItemType::Tool => ws.tools.contains(name),
                _ => false,
            });
            let can = ws.workspace_type == WorkspaceType::Host || ws.status == Status::Ready;
            if uses && can {
                match self.sync_into(&ws).await {
                    Ok(_) => synced.push(ws.id.clone()),
                    Err(e) => {
                        tracing::warn!(workspace.id = %ws.id, error = %e, "skill re-sync failed")
                    }
                }
            }
        }
        Ok(synced)
    }

    pub(super) async fn sync_into(&self, ws: &Workspace) -> ApiResult<SyncReport> {
        let library = &self.inner.library;
        let mut report = SyncReport::default();
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        for skill in &ws.skills {
            let skill_files = library.skill_files(skill)?;
            if !skill_files.iter().any(|(p, _)| p == "SKILL.md") {
                report.missing.push(format!("skill/{skill}"));
                continue;
            }
            for (rel, bytes) in skill_files {
                files.push((format!(".opencode/skill/{skill}/{rel}"), bytes));
            }
            report.skills.push(skill.clone());
        }
        for tool in &ws.tools {
            match library.get(ItemType::Tool, tool).await {
                Ok(item) => {
                    files.push((
                        format!(".opencode/tool/{tool}.ts"),
                        item.content.into_bytes(),
                    ));
                    report.tools.push(tool.clone());
                }
                Err(ApiError::NotFound(_)) => report.missing.push(format!("tool/{tool}")),
                Err(e) => return Err(e),
            }
        }
        match ws.workspace_type {
            WorkspaceType::Container => self.sync_container(ws, files).await?,
            WorkspaceType::Host => sync_host(Path::new(&ws.path), files)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("sync into {}: {e}", ws.path)))?,
        }
        tracing::info!(workspace.id = %ws.id, skills = report.skills.len(), tools = report.tools.len(), "skills synced");
        Ok(report)
    }

    async fn sync_container(&self, ws: &Workspace, files: Vec<(String, Vec<u8>)>) -> ApiResult<()> {
        let engine = &self.inner.engine;
        let container = engine::container_name(&ws.id);
        // Right after a build the agent may be a few milliseconds from listening: worth the wait, as
        // it spares an engine exec.
        let wait = std::time::Duration::from_secs(2);
        if let Some(agent) = self.inner.resident.client_within(&ws.id, wait).await {
            // Cleared through the resident agent: two calls on a unix socket, no engine exec.
            clear_through(&agent).await?;
        } else {
            self.clear_through_engine(ws, &container).await?;
        }
        if files.is_empty() {
            return Ok(());
        }
        let tar = engine::tar_of(files.iter().map(|(p, b)| (p.as_str(), b.as_slice(), 0o644)))
            .map_err(|e| ApiError::Internal(e.into()))?;
        engine
            .upload_tar(&container, "/workspace", tar)
            .await
            .map_err(ApiError::from)
    }

    async fn clear_through_engine(&self, ws: &Workspace, container: &str) -> ApiResult<()> {
        let out = self.inner.engine.run_quiet(container, CLEAR).await?;
        if out.exit_code != 0 {
            return Err(ApiError::Engine(format!(
                "clearing .opencode in workspace {} failed: {}",
                ws.id,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

/// What `CLEAR` does, as the agent's filesystem calls.
async fn clear_through(agent: &crate::resident::AgentClient) -> ApiResult<()> {
    use envd::filesystem as fs;
    for dir in ["/workspace/.opencode/skill", "/workspace/.opencode/tool"] {
        let path = fs::PathRequest { path: dir.into() };
        let removed: Result<fs::RemoveResponse, _> =
            agent.unary(fs::SERVICE, "Remove", &path).await;
        match removed {
            Ok(_) => {}
            Err(crate::resident::AgentError::Rpc(e)) if e.code == envd::connect::Code::NotFound => {
            }
            Err(e) => return Err(e.into()),
        }
        let _: fs::EntryResponse = agent.unary(fs::SERVICE, "MakeDir", &path).await?;
    }
    Ok(())
}

fn sync_host(base: &Path, files: Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    for dir in [".opencode/skill", ".opencode/tool"] {
        match std::fs::remove_dir_all(base.join(dir)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(base.join(dir))?;
    }
    for (rel, bytes) in files {
        let path = base.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(())
}
