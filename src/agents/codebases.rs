//! Codebases: a directory agents work on. A local one (no worker) is a host directory under an allowed
//! root, bind-mounted at `/code` into a container workspace berth creates for it; a remote one lives on
//! a registered worker's machine, whose registration vouches for the path.

use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{owner_of, runs_principal, shown, worker_key, Agents, Caller, CodebaseStatus};
use crate::error::{ApiError, ApiResult};
use crate::principal::{Principal, Role};
use crate::store::agents::CodebaseRow;
use crate::workspaces::model::{ContainerState, Status as WsStatus};
use crate::workspaces::CreateWorkspace;

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RegisterCodebase {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub agent_config: Option<Value>,
    #[serde(default)]
    pub worker_id: Option<String>,
}

/// A codebase with what berth knows of its agent now.
#[derive(Debug, Clone)]
pub struct Codebase {
    pub row: CodebaseRow,
    pub status: CodebaseStatus,
    /// The session of its current run, if it has had one.
    pub session_id: Option<String>,
}

impl Codebase {
    pub fn agent_config(&self) -> Value {
        serde_json::from_str(&self.row.agent_config).unwrap_or_else(|_| json!({}))
    }
}

impl RegisterCodebase {
    /// A name, and an absolute path (on berth's host or a worker's) within bounds.
    pub(super) fn check_name_and_path(&self) -> ApiResult<()> {
        check_text("name", &self.name, 128)?;
        if !self.path.starts_with('/') || self.path.len() > 4096 || self.path.contains('\0') {
            return Err(ApiError::invalid("path must be an absolute path"));
        }
        Ok(())
    }
}

/// `agent_config` keys berth acts on, with the JSON type each must have.
const CONFIG_KEYS: [&str; 5] = ["default_model", "agent", "template", "distro", "network"];

fn check_config(v: &Value) -> ApiResult<()> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::invalid("agent_config must be a JSON object"))?;
    for key in CONFIG_KEYS {
        if let Some(x) = obj.get(key) {
            if !x.is_string() {
                return Err(ApiError::invalid(format!(
                    "agent_config.{key} must be a string"
                )));
            }
        }
    }
    if let Some(m) = obj.get("default_model").and_then(Value::as_str) {
        if !m.contains('/') {
            return Err(ApiError::invalid(
                "agent_config.default_model must be provider/model",
            ));
        }
    }
    Ok(())
}

/// Non-empty text within `max` bytes; control characters other than line breaks and tabs are refused.
pub(super) fn check_text(field: &str, v: &str, max: usize) -> ApiResult<()> {
    let bad_char = |c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t');
    if v.trim().is_empty() || v.len() > max || v.chars().any(bad_char) {
        return Err(ApiError::invalid(format!(
            "{field} must be non-empty text of at most {max} bytes"
        )));
    }
    Ok(())
}

impl Agents {
    pub async fn register_codebase(
        &self,
        caller: &Caller,
        req: RegisterCodebase,
    ) -> ApiResult<Codebase> {
        self.register_codebase_as(caller, req, None).await
    }

    /// Registers a codebase under `id` when one was answered already (a held registration).
    pub(super) async fn register_codebase_as(
        &self,
        caller: &Caller,
        req: RegisterCodebase,
        id: Option<String>,
    ) -> ApiResult<Codebase> {
        req.check_name_and_path()?;
        let agent_config = req.agent_config.clone().unwrap_or_else(|| json!({}));
        check_config(&agent_config)?;
        // The codebase is the caller's; a worker's codebase is its owner's, even when an admin
        // assigns it to one of that user's workers.
        let (worker_id, owner) = match (caller, req.worker_id.as_deref()) {
            (Caller::Worker { id: me, owner }, Some(w)) if worker_key(owner, w) != *me => {
                return Err(ApiError::Forbidden(format!(
                    "a worker registers codebases for itself, not for {w}"
                )))
            }
            (Caller::Worker { id, owner }, _) => (Some(id.clone()), owner.clone()),
            // A user assigns a codebase to one of their own workers (404 for anyone else's).
            (Caller::User(_), Some(w)) => {
                let worker = self.check_worker(caller, w).await?;
                (Some(worker.id), worker.owner)
            }
            (Caller::User(p), None) => (None, p.name.clone()),
        };

        let path = match &worker_id {
            // The worker vouches for a path on its own machine.
            Some(_) => normalize(&req.path),
            None => self.allowed_local_path(&req.path)?,
        };
        let path_text = path.to_string_lossy().into_owned();
        if worker_id.is_none() {
            self.check_not_anothers(&owner, &path).await?;
        }
        let store = &self.inner.store;
        // Registering the same directory again (workers do, periodically) updates it in place.
        if let Some(mut existing) = store
            .codebase_by_path(&path_text, worker_id.as_deref())
            .await?
        {
            if existing.owner != owner {
                return Err(taken(&path_text));
            }
            existing.name = req.name.clone();
            existing.description = req.description.clone().unwrap_or_default();
            // What shaped the workspace was checked against the owner's rights when it was made, and
            // applies only then: a later registration cannot change it.
            let mut config = agent_config.clone();
            let before: Value = serde_json::from_str(&existing.agent_config).unwrap_or_default();
            for key in WORKSPACE_KEYS {
                match before.get(key) {
                    Some(v) => config[key] = v.clone(),
                    None => {
                        config.as_object_mut().map(|o| o.remove(key));
                    }
                }
            }
            existing.agent_config = config.to_string();
            store.update_codebase_info(&existing).await?;
            // Registering again is how a user asks for a working codebase: a failed workspace builds
            // again.
            if existing.worker_id.is_none() {
                self.rebuild_if_stuck(&existing, true).await?;
            }
            return Ok(self.codebase_state(existing).await);
        }
        let id = id.unwrap_or_else(new_codebase_id);
        let mut row = CodebaseRow {
            id: id.clone(),
            owner: owner.clone(),
            name: req.name.clone(),
            path: path_text.clone(),
            description: req.description.clone().unwrap_or_default(),
            agent_config: agent_config.to_string(),
            worker_id: worker_id.clone(),
            workspace_id: None,
            mission_id: None,
            created_at: Utc::now(),
            last_activity: None,
        };
        // The row first: of two registrations of one directory at once, one inserts and the other
        // answers what it inserted, and only the winner makes a workspace.
        if !store.insert_codebase(&row).await? {
            let existing = store
                .codebase_by_path(&path_text, worker_id.as_deref())
                .await?
                .filter(|c| c.owner == owner)
                .ok_or_else(|| taken(&path_text))?;
            return Ok(self.codebase_state(existing).await);
        }
        if worker_id.is_none() {
            // A local codebase is registered by a user (a worker's is always its own): its workspace
            // is made with that user's rights, so neither its configuration nor a template it names
            // can ask for more than they may (host networking, say).
            let acting = caller.require_user()?;
            match self
                .create_workspace(acting, &id, &path_text, &agent_config)
                .await
            {
                Ok(ws) => {
                    store.set_codebase_workspace(&id, &ws).await?;
                    row.workspace_id = Some(ws);
                }
                Err(e) => {
                    store.delete_codebase(&id).await?;
                    return Err(e);
                }
            }
        }
        self.monitor(
            "system",
            &row.name,
            &format!("codebase {} registered at {}", row.id, row.path),
            json!({ "codebase_id": row.id, "worker_id": row.worker_id.as_deref().map(shown) }),
        )
        .await;
        Ok(self.codebase_state(row).await)
    }

    /// A local directory may not hold, or lie inside, another user's codebase: its workspace would
    /// mount their files.
    async fn check_not_anothers(&self, owner: &str, path: &Path) -> ApiResult<()> {
        for c in self.inner.store.list_codebases().await? {
            let other = Path::new(&c.path);
            if c.worker_id.is_none()
                && c.owner != owner
                && (other.starts_with(path) || path.starts_with(other))
            {
                return Err(taken(&path.to_string_lossy()));
            }
        }
        Ok(())
    }

    /// A local codebase's directory: it exists, is a directory, and resolves (symlinks followed) under
    /// one of the configured roots.
    fn allowed_local_path(&self, raw: &str) -> ApiResult<PathBuf> {
        let path = std::fs::canonicalize(raw)
            .map_err(|e| ApiError::invalid(format!("path {raw} is not usable: {e}")))?;
        if !path.is_dir() {
            return Err(ApiError::invalid(format!("path {raw} is not a directory")));
        }
        let roots: Vec<PathBuf> = self
            .inner
            .config
            .codebase_roots()
            .iter()
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        if !roots.iter().any(|r| path.starts_with(r)) {
            return Err(ApiError::invalid(format!(
                "path {raw} is outside the directories codebases may live in ({}); set BERTH_CODEBASE_ROOTS",
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(path)
    }

    /// A local codebase's workspace that is not built and not building (a build cut off by a restart,
    /// one that failed, one never started) builds again; whether a build started.
    pub(super) async fn rebuild_if_stuck(
        &self,
        row: &CodebaseRow,
        any_error: bool,
    ) -> ApiResult<bool> {
        let Some(id) = &row.workspace_id else {
            return Ok(false);
        };
        let ws = self.inner.workspaces.get(id).await?;
        // A container stopped by its owner or one that died is started as it was, on request only.
        let resumable = matches!(
            (ws.status, ws.container_state),
            (WsStatus::Pending, Some(ContainerState::Stopped))
                | (WsStatus::Error, Some(ContainerState::Exited))
        );
        if resumable {
            if any_error {
                self.inner.workspaces.start(&ws).await?;
            }
            return Ok(false);
        }
        let stuck = match ws.status {
            WsStatus::Pending => true,
            WsStatus::Error => {
                any_error
                    || ws.error_message.as_deref() == Some(crate::workspaces::INTERRUPTED_BUILD)
            }
            WsStatus::Building | WsStatus::Ready => false,
        };
        if !stuck {
            return Ok(false);
        }
        self.inner
            .workspaces
            .start_build(id, None, ws.status == WsStatus::Error)
            .await?;
        tracing::warn!(codebase.id = %row.id, workspace.id = %id, "codebase workspace building again");
        Ok(true)
    }

    /// At start-up: a local codebase whose registration was cut off before its workspace existed gets
    /// it now, and one whose workspace build a restart cut off builds again.
    pub(super) async fn repair_codebases(&self) -> ApiResult<()> {
        for row in self.inner.store.list_codebases().await? {
            if row.worker_id.is_none() {
                if let Err(e) = self.rebuild_if_stuck(&row, false).await {
                    tracing::warn!(codebase.id = %row.id, error = %e, "rebuilding a codebase workspace failed");
                }
            }
            if row.worker_id.is_none() && row.workspace_id.is_none() {
                let config: Value = serde_json::from_str(&row.agent_config).unwrap_or_default();
                // The cut may have come after the workspace was made: adopt it then.
                let name = workspace_name(&row.id);
                let existing = self.inner.workspaces.owned_named(&row.owner, &name).await?;
                let ws = match existing {
                    Some(w) => w.id,
                    None => {
                        // Checked against the owner's rights when it was registered.
                        let acting = Principal::new(&row.owner, Role::Admin);
                        self.create_workspace(&acting, &row.id, &row.path, &config)
                            .await?
                    }
                };
                self.inner
                    .store
                    .set_codebase_workspace(&row.id, &ws)
                    .await?;
                tracing::warn!(codebase.id = %row.id, "codebase workspace created after a restart");
            }
        }
        Ok(())
    }

    /// The container workspace a local codebase's agent runs in, its directory mounted at `/code`;
    /// it belongs to `acting`, the codebase's owner.
    async fn create_workspace(
        &self,
        acting: &Principal,
        id: &str,
        path: &str,
        config: &Value,
    ) -> ApiResult<String> {
        let s = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_string);
        let ws = self
            .inner
            .workspaces
            .create(
                acting,
                CreateWorkspace {
                    name: workspace_name(id),
                    workspace_type: Some("container".into()),
                    template: Some(s("template").unwrap_or_else(|| "debian".into())),
                    distro: s("distro"),
                    network: s("network"),
                    code_mount: Some(path.to_string()),
                    ..Default::default()
                },
            )
            .await?;
        Ok(ws.id)
    }

    /// The caller's codebases (everyone's for an admin; a worker's own for a worker).
    pub async fn list_codebases(&self, caller: &Caller) -> ApiResult<Vec<Codebase>> {
        let rows = match caller.worker() {
            Some(me) => self.inner.store.codebases_of_worker(me).await?,
            None => {
                self.inner
                    .store
                    .codebases_of(caller.listing_owner())
                    .await?
            }
        };
        let mut out = Vec::new();
        for row in rows {
            out.push(self.codebase_state(row).await);
        }
        Ok(out)
    }

    /// A codebase the caller may act on, or 404 as if it did not exist: a user's own (any for an
    /// admin); for a worker, one registered with its id.
    pub async fn codebase_for(&self, caller: &Caller, id: &str) -> ApiResult<CodebaseRow> {
        let row = self.codebase(id).await?;
        let visible = match caller {
            Caller::User(p) => p.may_act_on(&row.owner),
            Caller::Worker { id: me, .. } => row.worker_id.as_deref() == Some(me.as_str()),
        };
        if !visible {
            return Err(ApiError::not_found(format!("Codebase {id} not found")));
        }
        Ok(row)
    }

    pub(super) async fn codebase(&self, id: &str) -> ApiResult<CodebaseRow> {
        self.inner
            .store
            .get_codebase(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Codebase {id} not found")))
    }

    pub async fn get_codebase(&self, caller: &Caller, id: &str) -> ApiResult<Codebase> {
        let row = self.codebase_for(caller, id).await?;
        Ok(self.codebase_state(row).await)
    }

    /// Stops what runs on the codebase, cancels its queued tasks, removes its workspace (the directory
    /// itself is the user's and stays).
    pub async fn delete_codebase(&self, id: &str) -> ApiResult<()> {
        let row = self.codebase(id).await?;
        self.halt(&row, "codebase deleted").await;
        // A cancelled turn still records its end: let it, so no event outlives its mission.
        if let Some(m) = &row.mission_id {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while self.missions().is_busy(m).await && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        // Its runs' missions and events go with it (its tasks stay, as history). The row goes last,
        // so a failure here leaves something a retry can find.
        let owner = owner_of(id);
        for m in self.inner.store.list_missions(Some(&owner)).await? {
            self.missions().delete(&runs_principal(id), &m.id).await?;
        }
        self.inner.store.delete_events_of(&owner).await?;
        if let Some(ws) = &row.workspace_id {
            match self.inner.workspaces.delete(ws, false).await {
                Ok(()) | Err(ApiError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.inner.store.delete_codebase(id).await?;
        self.monitor(
            "system",
            &row.name,
            &format!("codebase {id} deleted"),
            json!({ "codebase_id": id }),
        )
        .await;
        Ok(())
    }

    pub(super) async fn codebase_state(&self, row: CodebaseRow) -> Codebase {
        let status = self.status_of(&row).await;
        let session_id = match &row.mission_id {
            Some(m) => self
                .inner
                .store
                .get_mission(m)
                .await
                .ok()
                .flatten()
                .and_then(|m| m.opencode_session_id),
            None => None,
        };
        Codebase {
            row,
            status,
            session_id,
        }
    }

    pub(super) async fn status_of(&self, row: &CodebaseRow) -> CodebaseStatus {
        if self.running_task(&row.id).await.is_some() {
            return CodebaseStatus::Running;
        }
        if let Some(m) = &row.mission_id {
            if self.inner.missions.is_busy(m).await {
                return CodebaseStatus::Running;
            }
        }
        let Some(ws) = &row.workspace_id else {
            // A remote codebase has no workspace; a local one without one is still being set up.
            return if row.worker_id.is_some() {
                CodebaseStatus::Idle
            } else {
                CodebaseStatus::Building
            };
        };
        match self.inner.workspaces.get(ws).await {
            Ok(w) => match w.status {
                WsStatus::Ready => CodebaseStatus::Idle,
                WsStatus::Pending if w.container_state == Some(ContainerState::Stopped) => {
                    CodebaseStatus::Stopped
                }
                WsStatus::Pending | WsStatus::Building => CodebaseStatus::Building,
                WsStatus::Error => CodebaseStatus::Error,
            },
            Err(_) => CodebaseStatus::Error,
        }
    }

    /// The owner string of the codebase's missions (for the event stream).
    pub fn events_owner(&self, codebase_id: &str) -> String {
        owner_of(codebase_id)
    }
}

/// The one answer for a directory berth will not give this caller, whoever has it.
fn taken(path: &str) -> ApiError {
    ApiError::conflict(format!(
        "{path} is being registered or overlaps another codebase; choose another directory"
    ))
}

/// `agent_config` keys that shape a local codebase's workspace.
const WORKSPACE_KEYS: [&str; 3] = ["template", "distro", "network"];

pub(super) fn new_codebase_id() -> String {
    format!("cb_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn workspace_name(codebase_id: &str) -> String {
    format!("codebase-{codebase_id}")
}

/// `a//b/./c/` → `a/b/c`, without touching the file system (the path is on another machine).
pub(super) fn normalize(raw: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in Path::new(raw).components() {
        match part {
            std::path::Component::Normal(p) => out.push(p),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_are_normalized() {
        assert_eq!(normalize("/a//b/./c/"), PathBuf::from("/a/b/c"));
        assert_eq!(normalize("/a/../../b"), PathBuf::from("/b"));
    }

    #[test]
    fn agent_config_is_checked() {
        assert!(check_config(
            &json!({ "default_model": "fake/fake-model", "auto_approve": false })
        )
        .is_ok());
        assert!(check_config(&json!({ "default_model": "nomodel" })).is_err());
        assert!(check_config(&json!({ "network": 3 })).is_err());
        assert!(check_config(&json!([])).is_err());
    }
}
