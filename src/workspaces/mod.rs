//! Workspaces: creating, editing and deleting them, and the lifecycle operations on their containers
//! (build, init, exec, debug, reconcile), each in its own submodule. No HTTP types here.

mod build;
mod debug;
mod exec;
mod host;
mod init;
pub mod model;
mod reconcile;
mod skills;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{ApiError, ApiResult};
use crate::library::{ItemType, Library};
use crate::principal::Principal;
use crate::secrets::SecretBox;
use crate::store::workspaces::Inserted;
use crate::store::Store;
pub use exec::{ExecResult, ExecSpec};
pub use init::{InitLog, LogWindow, RerunInitResult};
use model::{Limits, Status, Workspace, WorkspaceType, REDACTED};
pub use skills::SyncReport;

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
    library: Library,
    config: Config,
    /// Owns every background build so shutdown can wait for them.
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancellation handles of running builds, by workspace id: only handles, the state is in the store.
    builds: Mutex<HashMap<String, CancellationToken>>,
}

/// What workspace operations are built from, once, at start-up.
pub struct Deps {
    pub store: Store,
    pub engine: Engine,
    pub secrets: SecretBox,
    pub catalog: Catalog,
    pub library: Library,
    pub config: Config,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

/// A create request; unknown fields are refused, so a misspelt or unsupported one never passes
/// silently.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    pub network: Option<String>,
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    /// Not settable over `/api/workspaces`: only the codebases API mounts host directories.
    #[serde(skip)]
    pub code_mount: Option<String>,
}

/// An edit; fields that only take effect in a new container (distro, network, packages, limits) mark
/// the workspace `needs_rebuild`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    pub network: Option<String>,
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
}

/// Fields that mean something only for a container workspace, by name, when a request sets them.
fn container_fields(
    req_template: bool,
    distro: bool,
    packages: bool,
    init: bool,
    network: bool,
    limits: bool,
) -> Vec<&'static str> {
    [
        ("template", req_template),
        ("distro", distro),
        ("packages", packages),
        ("init_script/init_scripts", init),
        ("network", network),
        ("memory_mb/cpus/pids", limits),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

impl Workspaces {
    pub fn new(deps: Deps) -> Self {
        let Deps {
            store,
            engine,
            secrets,
            catalog,
            library,
            config,
            tracker,
            shutdown,
        } = deps;
        Self {
            inner: Arc::new(Inner {
                store,
                engine,
                secrets,
                catalog,
                library,
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

    pub fn library(&self) -> &Library {
        &self.inner.library
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Runs `work` under the supervisor, to its end whether or not the caller still waits for it.
    pub async fn detach<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = ApiResult<T>> + Send + 'static,
    ) -> ApiResult<T> {
        self.inner
            .tracker
            .spawn(work)
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
    }

    /// Every workspace (for berth's own bookkeeping; requests go through `list_for`).
    pub async fn list(&self) -> ApiResult<Vec<Workspace>> {
        Ok(self
            .inner
            .store
            .list_workspaces(None, &self.inner.secrets)
            .await?)
    }

    /// The workspaces `who` may see: their own, or all for an admin.
    pub async fn list_for(&self, who: &Principal) -> ApiResult<Vec<Workspace>> {
        Ok(self
            .inner
            .store
            .list_workspaces(who.listing_owner(), &self.inner.secrets)
            .await?)
    }

    /// The workspace, by id or by name, if `who` may act on it; 404 otherwise, as if it did not
    /// exist. A name is always the caller's own workspace of that name (admins reach other users'
    /// by id), so a name never lands on someone else's workspace.
    pub async fn owned(&self, who: &Principal, id_or_name: &str) -> ApiResult<Workspace> {
        let missing = || ApiError::not_found(format!("no workspace {id_or_name:?}"));
        if uuid::Uuid::parse_str(id_or_name).is_ok() {
            let ws = self.get(id_or_name).await?;
            return if who.may_act_on(&ws.owner) {
                Ok(ws)
            } else {
                Err(missing())
            };
        }
        self.owned_named(&who.name, id_or_name)
            .await?
            .ok_or_else(missing)
    }

    /// `owned`, for running something in it: a host workspace only while the operator allows them and
    /// for an admin (a row from before, or a demoted admin, gets nothing from the host).
    pub async fn usable(&self, who: &Principal, id: &str) -> ApiResult<Workspace> {
        let ws = self.owned(who, id).await?;
        if ws.workspace_type == WorkspaceType::Host {
            self.check_host_allowed(who)?;
        }
        Ok(ws)
    }

    /// `owner`'s workspace named `name`.
    pub async fn owned_named(&self, owner: &str, name: &str) -> ApiResult<Option<Workspace>> {
        Ok(self
            .inner
            .store
            .workspace_by_name(owner, name, &self.inner.secrets)
            .await?)
    }

    /// Whether `who` may act on the workspace, without loading it: for listings that name workspaces.
    pub async fn visible_to(&self, who: &Principal, id: &str) -> bool {
        if who.is_admin() {
            return true;
        }
        matches!(self.inner.store.workspace_owner(id).await, Ok(Some(o)) if o == who.name)
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

    pub async fn create(&self, who: &Principal, req: CreateWorkspace) -> ApiResult<Workspace> {
        let name = validate::workspace_name(&req.name)?;
        let workspace_type = match req.workspace_type.as_deref() {
            // The seed's default is a host workspace; berth gives one only to an admin on a server
            // that allows them, and a container to everyone else.
            None if self.inner.config.host_workspaces
                && who.is_admin()
                && req.template.is_none() =>
            {
                WorkspaceType::Host
            }
            None => WorkspaceType::Container,
            Some(t) => WorkspaceType::parse(t).ok_or_else(|| {
                ApiError::invalid(format!(
                    "invalid workspace_type {t:?}: use host or container"
                ))
            })?,
        };
        if workspace_type == WorkspaceType::Host {
            self.check_host_allowed(who)?;
            let refused = container_fields(
                req.template.is_some(),
                req.distro.is_some(),
                req.packages.as_ref().is_some_and(|p| !p.is_empty()),
                req.init_script.is_some()
                    || req.init_scripts.as_ref().is_some_and(|i| !i.is_empty()),
                req.network.is_some(),
                req.memory_mb.is_some() || req.cpus.is_some() || req.pids.is_some(),
            );
            if !refused.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{} only apply to container workspaces",
                    refused.join(", ")
                )));
            }
        }
        if workspace_type == WorkspaceType::Container && req.path.is_some() {
            return Err(ApiError::invalid(
                "path only applies to host workspaces; a container workspace lives in /workspace",
            ));
        }
        let template = match &req.template {
            Some(t) => Some(self.template(t).await?),
            None => None,
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
        let network = validate::network(req.network.as_deref().or(tpl.network.as_deref()))?;
        if network == "host" && workspace_type == WorkspaceType::Container {
            who.require_admin("network \"host\" (it exposes the host's loopback services)")?;
        }
        let limits = self.check_limits(Limits {
            memory_mb: req.memory_mb,
            cpus: req.cpus,
            pids: req.pids,
        })?;

        let id = uuid::Uuid::new_v4().to_string();
        let path = match workspace_type {
            WorkspaceType::Container => "/workspace".to_string(),
            WorkspaceType::Host => self.host_path(&name, req.path.as_deref())?,
        };
        let now = Utc::now();
        let ws = Workspace {
            id,
            owner: who.name.clone(),
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
            skills: self.check_items(ItemType::Skill, &skills).await?,
            tools: self.check_items(ItemType::Tool, &tools).await?,
            env_vars,
            init_scripts: self.check_fragments(&init_scripts).await?,
            init_script: init_script.filter(|s| !s.trim().is_empty()),
            network,
            code_mount: req.code_mount.clone(),
            limits,
            needs_rebuild: false,
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
        let written = self
            .inner
            .store
            .insert_workspace(&ws, &self.inner.secrets)
            .await?;
        name_free(written, &ws.name)?;
        tracing::info!(workspace.id = %ws.id, workspace.name = %ws.name, r#type = ws.workspace_type.as_str(), "workspace created");
        if template.is_some() {
            return self.start_build(&ws.id, None, false).await;
        }
        if ws.workspace_type == WorkspaceType::Host
            && !(ws.skills.is_empty() && ws.tools.is_empty())
        {
            self.sync_if_running(&ws).await;
        }
        Ok(ws)
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        req: UpdateWorkspace,
    ) -> ApiResult<Workspace> {
        let mut ws = self.owned(who, id).await?;
        if let Some(t) = &req.workspace_type {
            if WorkspaceType::parse(t) != Some(ws.workspace_type) {
                return Err(ApiError::invalid(
                    "workspace_type cannot change; create a new workspace instead",
                ));
            }
        }
        let limits_asked = req.memory_mb.is_some() || req.cpus.is_some() || req.pids.is_some();
        if ws.workspace_type == WorkspaceType::Host {
            let refused = container_fields(
                false,
                req.distro.is_some(),
                req.packages.is_some(),
                req.init_script.is_some() || req.init_scripts.is_some(),
                req.network.is_some(),
                limits_asked,
            );
            if !refused.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{} only apply to container workspaces",
                    refused.join(", ")
                )));
            }
        }
        if let Some(name) = &req.name {
            ws.name = validate::workspace_name(name)?;
        }
        // What only a new container can carry is recorded now and marks the workspace for a rebuild.
        let before = (
            ws.distro.clone(),
            ws.network.clone(),
            ws.packages.clone(),
            ws.limits,
        );
        if let Some(d) = &req.distro {
            ws.distro = Some(self.resolve_distro(d)?);
        }
        if let Some(n) = &req.network {
            ws.network = validate::network(Some(n))?;
            if ws.network == "host" && before.1 != "host" {
                who.require_admin("network \"host\" (it exposes the host's loopback services)")?;
            }
        }
        if let Some(p) = &req.packages {
            ws.packages = validate::packages(p)?;
        }
        if limits_asked {
            ws.limits = self.check_limits(Limits {
                memory_mb: req.memory_mb.or(ws.limits.memory_mb),
                cpus: req.cpus.or(ws.limits.cpus),
                pids: req.pids.or(ws.limits.pids),
            })?;
        }
        let built = ws.container_id.is_some() || ws.status != Status::Pending;
        if built
            && before
                != (
                    ws.distro.clone(),
                    ws.network.clone(),
                    ws.packages.clone(),
                    ws.limits,
                )
        {
            ws.needs_rebuild = true;
        }
        let before = (ws.skills.clone(), ws.tools.clone());
        if let Some(s) = &req.skills {
            ws.skills = self.check_items(ItemType::Skill, s).await?;
        }
        if let Some(t) = &req.tools {
            ws.tools = self.check_items(ItemType::Tool, t).await?;
        }
        if let Some(f) = &req.init_scripts {
            ws.init_scripts = self.check_fragments(f).await?;
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
        let written = self
            .inner
            .store
            .update_workspace_spec(&ws, &self.inner.secrets)
            .await?;
        name_free(written, &ws.name)?;
        if before != (ws.skills.clone(), ws.tools.clone()) {
            self.sync_if_running(&ws).await;
        }
        self.get(id).await
    }

    /// Removes the workspace: its build is cancelled, its container and image removed, and its volume too
    /// unless `keep_volume`. The row goes last, so a failure leaves something that can be deleted again.
    pub async fn delete(&self, id: &str, keep_volume: bool) -> ApiResult<()> {
        let ws = self.get(id).await?;
        self.remove(&ws, keep_volume).await
    }

    /// `delete` for a request: only what `who` may act on.
    pub async fn delete_for(&self, who: &Principal, id: &str, keep_volume: bool) -> ApiResult<()> {
        let ws = self.owned(who, id).await?;
        self.remove(&ws, keep_volume).await
    }

    async fn remove(&self, ws: &Workspace, keep_volume: bool) -> ApiResult<()> {
        let id = ws.id.as_str();
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

    /// Host workspaces: only when the operator enabled them, and only for admins.
    fn check_host_allowed(&self, who: &Principal) -> ApiResult<()> {
        if !self.inner.config.host_workspaces {
            return Err(ApiError::ForbiddenCode {
                code: "host_workspaces_disabled",
                message: "host workspaces are disabled on this server (they run commands as berth's own user on the host); an operator can enable them for admins with BERTH_HOST_WORKSPACES=true".into(),
            });
        }
        who.require_admin("a host workspace (it runs commands as berth's user on the host)")
    }

    /// Per-workspace limits within the operator's maxima.
    fn check_limits(&self, l: Limits) -> ApiResult<Limits> {
        let c = &self.inner.config;
        if let Some(m) = l.memory_mb {
            if !(64..=c.max_memory_mb).contains(&m) {
                return Err(ApiError::invalid(format!(
                    "memory_mb must be 64 to {}",
                    c.max_memory_mb
                )));
            }
        }
        if let Some(cpus) = l.cpus {
            if !(cpus.is_finite() && cpus >= 0.01 && cpus <= c.max_cpus()) {
                return Err(ApiError::invalid(format!(
                    "cpus must be 0.01 to {}",
                    c.max_cpus()
                )));
            }
        }
        if let Some(p) = l.pids {
            if !(16..=c.max_pids).contains(&p) {
                return Err(ApiError::invalid(format!(
                    "pids must be 16 to {}",
                    c.max_pids
                )));
            }
        }
        Ok(l)
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

    /// A template by name: the library's first (so a library can override a built-in one), then the
    /// built-in ones.
    async fn template(&self, name: &str) -> ApiResult<crate::catalog::Template> {
        if let Some(t) = self.inner.library.template(name).await? {
            return Ok(t);
        }
        self.inner.catalog.template(name).cloned().ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown template {name:?}; built-in: {} (or a workspace-template in the library)",
                self.inner.catalog.template_names().join(", ")
            ))
        })
    }

    /// An init-script fragment's body: the library's first, then the built-in ones.
    async fn fragment(&self, name: &str) -> Option<String> {
        match self.inner.library.init_script(name).await {
            Some(body) => Some(body),
            None => self.inner.catalog.init_script(name).map(str::to_string),
        }
    }

    async fn check_fragments(&self, names: &[String]) -> ApiResult<Vec<String>> {
        let names = validate::item_names("init script", names)?;
        for n in &names {
            if self.fragment(n).await.is_none() {
                return Err(ApiError::invalid(format!(
                    "unknown init script fragment {n:?}"
                )));
            }
        }
        Ok(names)
    }

    /// Skills and tools a workspace lists must exist in the library.
    async fn check_items(&self, t: ItemType, names: &[String]) -> ApiResult<Vec<String>> {
        let names = validate::item_names(t.dir(), names)?;
        let mut missing = Vec::new();
        for n in &names {
            if !self.inner.library.exists(t, n).await {
                missing.push(n.as_str());
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::invalid(format!(
                "no {} named {} in the library",
                t.dir(),
                missing.join(", ")
            )));
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

fn name_free(written: Inserted, name: &str) -> ApiResult<()> {
    match written {
        Inserted::Ok => Ok(()),
        Inserted::NameTaken => Err(ApiError::conflict(format!(
            "a workspace named {name:?} already exists"
        ))),
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
