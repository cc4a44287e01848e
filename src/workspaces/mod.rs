//! Workspaces: creating, editing and deleting them, and the lifecycle operations on their containers
//! (build, init, exec, debug, reconcile), each in its own submodule. No HTTP types here.

mod build;
mod debug;
mod exec;
mod host;
mod init;
pub mod model;
mod reconcile;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{ApiError, ApiResult};
use crate::secrets::SecretBox;
use crate::store::workspaces::Inserted;
use crate::store::Store;
pub use exec::{ExecResult, ExecSpec};
pub use init::{InitLog, RerunInitResult};
use model::{Status, Workspace, WorkspaceType, REDACTED};

/// Everything workspace operations need; cheap to clone.
#[derive(Clone)]
pub struct Workspaces {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    engine: Engine,
    secrets: SecretBox,
    catalog: Catalog,
    config: Config,
    /// Owns every background build so shutdown can wait for them.
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancellation handles of running builds, by workspace id: only handles, the state is in the store.
    builds: Mutex<HashMap<String, CancellationToken>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CreateWorkspace {
    pub name: String,
    pub workspace_type: Option<String>,
    pub path: Option<String>,
    pub template: Option<String>,
    pub distro: Option<String>,
    pub packages: Option<Vec<String>>,
    pub skills: Option<Vec<String>>,
    pub tools: Option<Vec<String>>,
    pub env_vars: Option<BTreeMap<String, String>>,
    pub init_scripts: Option<Vec<String>>,
    pub init_script: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UpdateWorkspace {
    pub name: Option<String>,
    pub workspace_type: Option<String>,
    pub distro: Option<String>,
    pub packages: Option<Vec<String>>,
    pub skills: Option<Vec<String>>,
    pub tools: Option<Vec<String>>,
    /// Replaces the whole set; a value equal to the redaction marker keeps the stored value, so a client
    /// can send back what it read.
    pub env_vars: Option<BTreeMap<String, String>>,
    pub init_scripts: Option<Vec<String>>,
    /// An empty string removes the script.
    pub init_script: Option<String>,
}

impl Workspaces {
    pub fn new(
        store: Store,
        engine: Engine,
        secrets: SecretBox,
        catalog: Catalog,
        config: Config,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                engine,
                secrets,
                catalog,
                config,
                tracker,
                shutdown,
                builds: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub async fn list(&self) -> ApiResult<Vec<Workspace>> {
        Ok(self
            .inner
            .store
            .list_workspaces(&self.inner.secrets)
            .await?)
    }

    pub async fn get(&self, id: &str) -> ApiResult<Workspace> {
        // Ids are UUIDs; anything else cannot name a workspace.
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(ApiError::not_found(format!("no workspace with id {id:?}")));
        }
        self.inner
            .store
            .get_workspace(id, &self.inner.secrets)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no workspace with id {id}")))
    }

    pub async fn create(&self, req: CreateWorkspace) -> ApiResult<Workspace> {
        let name = validate::workspace_name(&req.name)?;
        let template = match &req.template {
            Some(t) => Some(self.inner.catalog.template(t).cloned().ok_or_else(|| {
                ApiError::invalid(format!(
                    "unknown template {t:?}; available: {}",
                    self.inner.catalog.template_names().join(", ")
                ))
            })?),
            None => None,
        };
        let requested_type = match req.workspace_type.as_deref() {
            None => WorkspaceType::Host,
            Some(t) => WorkspaceType::parse(t).ok_or_else(|| {
                ApiError::invalid(format!(
                    "invalid workspace_type {t:?}: use host or container"
                ))
            })?,
        };
        // A template describes a container, so it forces one.
        let workspace_type = if template.is_some() {
            WorkspaceType::Container
        } else {
            requested_type
        };
        let tpl = template.clone().unwrap_or_default();

        let distro_name = req.distro.clone().or(tpl.distro.clone());
        let distro = match &distro_name {
            Some(d) => Some(self.resolve_distro(d)?),
            None if workspace_type == WorkspaceType::Container => {
                Some(self.resolve_distro(&self.inner.config.default_distro)?)
            }
            None => None,
        };

        let mut skills = tpl.skills.clone();
        skills.extend(req.skills.clone().unwrap_or_default());
        let mut tools = tpl.tools.clone();
        tools.extend(req.tools.clone().unwrap_or_default());
        let mut packages = tpl.packages.clone();
        packages.extend(req.packages.clone().unwrap_or_default());
        let mut init_scripts = tpl.init_scripts.clone();
        init_scripts.extend(req.init_scripts.clone().unwrap_or_default());
        let mut env_vars = tpl.env_vars.clone();
        env_vars.extend(req.env_vars.clone().unwrap_or_default());
        let init_script = req.init_script.clone().or(tpl.init_script.clone());

        let id = uuid::Uuid::new_v4().to_string();
        let path = match workspace_type {
            WorkspaceType::Container => "/workspace".to_string(),
            WorkspaceType::Host => self.host_path(&name, req.path.as_deref())?,
        };
        let now = Utc::now();
        let ws = Workspace {
            id,
            name,
            workspace_type,
            path,
            template: req.template.clone(),
            distro: if workspace_type == WorkspaceType::Container {
                distro
            } else {
                None
            },
            packages: validate::packages(&packages)?,
            skills: validate::item_names("skill", &skills)?,
            tools: validate::item_names("tool", &tools)?,
            env_vars,
            init_scripts: self.check_fragments(&init_scripts)?,
            init_script: init_script.filter(|s| !s.trim().is_empty()),
            status: match workspace_type {
                WorkspaceType::Host => Status::Ready,
                WorkspaceType::Container => Status::Pending,
            },
            error_message: None,
            container_id: None,
            image_id: None,
            init_exit_code: None,
            init_finished_at: None,
            created_at: now,
            updated_at: now,
        };
        validate::env_vars(&ws.env_vars)?;
        if let Some(s) = &ws.init_script {
            validate::init_script(s)?;
        }
        if ws.workspace_type == WorkspaceType::Host {
            std::fs::create_dir_all(&ws.path)
                .map_err(|e| ApiError::invalid(format!("cannot create path {}: {e}", ws.path)))?;
        }
        match self
            .inner
            .store
            .insert_workspace(&ws, &self.inner.secrets)
            .await?
        {
            Inserted::Ok => {}
            Inserted::NameTaken => {
                return Err(ApiError::conflict(format!(
                    "a workspace named {:?} already exists",
                    ws.name
                )))
            }
        }
        tracing::info!(workspace.id = %ws.id, workspace.name = %ws.name, r#type = ws.workspace_type.as_str(), "workspace created");
        if template.is_some() {
            return self.start_build(&ws.id, None, false).await;
        }
        Ok(ws)
    }

    pub async fn update(&self, id: &str, req: UpdateWorkspace) -> ApiResult<Workspace> {
        let mut ws = self.get(id).await?;
        if let Some(t) = &req.workspace_type {
            if WorkspaceType::parse(t) != Some(ws.workspace_type) {
                return Err(ApiError::invalid(
                    "workspace_type cannot change; create a new workspace instead",
                ));
            }
        }
        if let Some(name) = &req.name {
            ws.name = validate::workspace_name(name)?;
        }
        if let Some(d) = &req.distro {
            if ws.workspace_type == WorkspaceType::Container {
                ws.distro = Some(self.resolve_distro(d)?);
            }
        }
        if let Some(p) = &req.packages {
            ws.packages = validate::packages(p)?;
        }
        if let Some(s) = &req.skills {
            ws.skills = validate::item_names("skill", s)?;
        }
        if let Some(t) = &req.tools {
            ws.tools = validate::item_names("tool", t)?;
        }
        if let Some(f) = &req.init_scripts {
            ws.init_scripts = self.check_fragments(f)?;
        }
        if let Some(s) = &req.init_script {
            validate::init_script(s)?;
            ws.init_script = Some(s.clone()).filter(|s| !s.trim().is_empty());
        }
        if let Some(env) = req.env_vars {
            validate::env_vars(&env)?;
            ws.env_vars = env
                .into_iter()
                .filter_map(|(k, v)| {
                    if v == REDACTED {
                        ws.env_vars.get(&k).map(|old| (k, old.clone()))
                    } else {
                        Some((k, v))
                    }
                })
                .collect();
        }
        match self
            .inner
            .store
            .update_workspace_spec(&ws, &self.inner.secrets)
            .await?
        {
            Inserted::Ok => {}
            Inserted::NameTaken => {
                return Err(ApiError::conflict(format!(
                    "a workspace named {:?} already exists",
                    ws.name
                )))
            }
        }
        self.get(id).await
    }

    /// Removes the workspace: its build is cancelled, its container and image removed, and its volume too
    /// unless `keep_volume`. The row goes last, so a failure leaves something that can be deleted again.
    pub async fn delete(&self, id: &str, keep_volume: bool) -> ApiResult<()> {
        let ws = self.get(id).await?;
        if let Some(token) = self.inner.builds.lock().expect("builds lock").remove(id) {
            token.cancel();
        }
        if ws.workspace_type == WorkspaceType::Container {
            let engine = &self.inner.engine;
            let err = |e: crate::engine::EngineError| ApiError::Engine(e.to_string());
            engine
                .remove_container(&crate::engine::container_name(id))
                .await
                .map_err(err)?;
            engine
                .remove_image(&crate::engine::image_tag(id))
                .await
                .map_err(err)?;
            if !keep_volume {
                engine.remove_volume(id).await.map_err(err)?;
            }
        }
        self.inner.store.delete_workspace(id).await?;
        let _ = tokio::fs::remove_dir_all(self.log_dir(id)).await;
        tracing::info!(workspace.id = %id, keep_volume, "workspace deleted");
        Ok(())
    }

    fn resolve_distro(&self, name: &str) -> ApiResult<String> {
        self.inner
            .catalog
            .distro(name)
            .map(|d| d.name.clone())
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "unknown distro {name:?}; valid distros: {} (aliases: noble, jammy, bookworm, arch, archlinux)",
                    self.inner.catalog.distro_names().join(", ")
                ))
            })
    }

    fn check_fragments(&self, names: &[String]) -> ApiResult<Vec<String>> {
        let names = validate::item_names("init script", names)?;
        for n in &names {
            if self.inner.catalog.init_script(n).is_none() {
                return Err(ApiError::invalid(format!(
                    "unknown init script fragment {n:?}"
                )));
            }
        }
        Ok(names)
    }

    /// A host workspace lives in a directory under the host root: `path` may be relative to the root or
    /// absolute inside it, never outside (no `..`, no symlink out).
    fn host_path(&self, name: &str, path: Option<&str>) -> ApiResult<String> {
        let root = self.inner.config.host_root();
        std::fs::create_dir_all(&root).map_err(|e| {
            ApiError::Internal(anyhow::anyhow!("create host root {}: {e}", root.display()))
        })?;
        let root = root
            .canonicalize()
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("host root: {e}")))?;
        let wanted = match path {
            None => root.join(name),
            Some(p) => {
                let p = Path::new(p);
                if p.components().any(|c| matches!(c, Component::ParentDir))
                    || p.as_os_str().is_empty()
                {
                    return Err(ApiError::invalid(format!(
                        "invalid path {}: no '..' allowed",
                        p.display()
                    )));
                }
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    root.join(p)
                }
            }
        };
        let resolved = resolve_existing_prefix(&wanted);
        if !resolved.starts_with(&root) {
            return Err(ApiError::invalid(format!(
                "path {} is outside the host workspace root {}",
                wanted.display(),
                root.display()
            )));
        }
        Ok(resolved.to_string_lossy().into_owned())
    }

    fn log_dir(&self, id: &str) -> PathBuf {
        self.inner.config.logs_dir().join(id)
    }

    pub fn init_log_path(&self, id: &str) -> PathBuf {
        self.log_dir(id).join("init.log")
    }
}

/// Canonicalizes the longest existing prefix of `p` and appends the rest, so symlinks in the existing part
/// are resolved before the containment check.
fn resolve_existing_prefix(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for part in rest.into_iter().rev() {
        out.push(part);
    }
    out
}
