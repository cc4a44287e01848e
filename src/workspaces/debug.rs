//! `GET /debug`: the workspace's real state, read from the engine rather than from what berth believes.

use serde_json::{json, Value};

use super::model::WorkspaceType;
use super::Workspaces;
use crate::engine;
use crate::error::ApiResult;

impl Workspaces {
    pub async fn debug(&self, id: &str) -> ApiResult<Value> {
        let ws = self.get(id).await?;
        let log_path = self.init_log_path(id);
        let init = json!({
            "fragments": ws.init_scripts,
            "has_script": ws.init_script.is_some(),
            "last_exit_code": ws.init_exit_code,
            "last_finished_at": ws.init_finished_at,
            "log_path": log_path.to_string_lossy(),
            "log_exists": log_path.exists(),
        });
        let mut out = json!({
            "id": ws.id,
            "name": ws.name,
            "workspace_type": ws.workspace_type,
            "status": ws.status,
            "distro": ws.distro,
            "path": ws.path,
            "last_error": ws.error_message,
            "init": init,
        });
        if ws.workspace_type == WorkspaceType::Host {
            out["path_exists"] = json!(std::path::Path::new(&ws.path).is_dir());
            return Ok(out);
        }
        let engine = self.engine();
        let name = engine::container_name(id);
        // The engine's `oom_killed` says only whether the container itself ended that way; berth
        // counts every process the kernel killed for lack of memory from the engine's events.
        let (oom_kills, last_oom_at) = self.inner.store.oom_kills(id).await?;
        let inspect = engine.inspect_container(&name).await?;
        out["container"] = match inspect {
            None => json!(null),
            Some(c) => {
                let state = c.state.unwrap_or_default();
                let host = c.host_config.unwrap_or_default();
                json!({
                    "id": c.id,
                    "name": name,
                    "image": c.config.as_ref().and_then(|cfg| cfg.image.clone()),
                    "image_id": c.image,
                    "status": state.status.map(|s| s.to_string()),
                    "running": state.running,
                    "exit_code": state.exit_code,
                    "oom_killed": state.oom_killed.unwrap_or(false) || oom_kills > 0,
                    "oom_kills": oom_kills,
                    "last_oom_at": last_oom_at,
                    "error": state.error.filter(|e| !e.is_empty()),
                    "started_at": state.started_at,
                    "finished_at": state.finished_at,
                    "restart_count": c.restart_count,
                    "mounts": c.mounts.unwrap_or_default().into_iter().map(|m| json!({
                        "type": m.typ.map(|t| t.to_string()),
                        "name": m.name,
                        "source": m.source,
                        "destination": m.destination,
                        "rw": m.rw,
                    })).collect::<Vec<_>>(),
                    "limits": {
                        "memory_bytes": host.memory,
                        "nano_cpus": host.nano_cpus,
                        "pids_limit": host.pids_limit,
                    },
                    "security": {
                        // The seccomp profile by name, not its whole text.
                        "security_opt": host.security_opt.unwrap_or_default().into_iter().map(|o| {
                            if o.starts_with("seccomp=") { "seccomp=berth".to_string() } else { o }
                        }).collect::<Vec<_>>(),
                        "cap_drop": host.cap_drop,
                        "cap_add": host.cap_add,
                        "privileged": host.privileged,
                    },
                })
            }
        };
        // Shared by every workspace of the same distro and packages.
        out["image"] = json!({ "id": ws.image_id });
        Ok(out)
    }
}
