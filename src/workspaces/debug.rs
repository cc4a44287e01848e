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
                    "oom_killed": state.oom_killed,
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
                        "security_opt": host.security_opt,
                        "cap_drop": host.cap_drop,
                        "cap_add": host.cap_add,
                        "privileged": host.privileged,
                    },
                })
            }
        };
        out["image"] = json!({
            "tag": engine::image_tag(id),
            "id": engine.image_id(&engine::image_tag(id)).await?,
        });
        Ok(out)
    }
}
