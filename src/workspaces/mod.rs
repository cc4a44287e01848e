//! Workspaces: creating, editing and deleting them, and the lifecycle operations on their containers
//! (build, init, exec, debug, reconcile), each in its own submodule. No HTTP types here.

mod access;
mod build;
mod debug;
mod disk;
mod exec;
mod host;
mod init;
mod lifecycle;
pub mod model;
mod pool;
pub mod preview;
mod reconcile;
pub use reconcile::INTERRUPTED_BUILD;
mod skills;
mod spec;
pub mod validate;

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
use model::{Workspace, WorkspaceType};
pub use skills::SyncReport;
pub use spec::{CreateWorkspace, UpdateWorkspace};

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
    /// The LLM gateway's listeners on workspace networks, closed with their networks.
    gateway: crate::gateway::Listeners,
    /// The resident agent every new container runs, and the way to each one.
    resident: crate::resident::Resident,
    /// Cancellation handles of running builds, by workspace id: only handles, the state is in the store.
    builds: Mutex<HashMap<String, CancellationToken>>,
    /// Workspaces being removed: a second delete waits for the first, then finds nothing (404).
    removing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Started containers waiting for a create to claim them.
    pool: pool::Pool,
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
    pub gateway: crate::gateway::Listeners,
    pub resident: crate::resident::Resident,
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
            gateway,
            resident,
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
                gateway,
                resident,
                builds: Mutex::new(HashMap::new()),
                removing: Mutex::new(HashMap::new()),
                pool: pool::Pool::default(),
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

    /// Cancelled when berth stops: long-lived connections (terminals) end with it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// The templates a workspace may name.
    pub fn template_names(&self) -> Vec<String> {
        self.inner
            .catalog
            .template_names()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    pub fn resident(&self) -> &crate::resident::Resident {
        &self.inner.resident
    }

    /// Runs `work` under the supervisor, to its end whether or not the caller still waits for it; the
    /// caller has its answer as soon as `work` sends it, while `work` goes on (to record what happened,
    /// off the caller's time).
    pub async fn detach_answering<T, Fut>(
        &self,
        work: impl FnOnce(tokio::sync::oneshot::Sender<ApiResult<T>>) -> Fut,
    ) -> ApiResult<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.inner.tracker.spawn(work(answer));
        answered
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("the work ended without an answer")))?
    }

    /// Every workspace (for berth's own bookkeeping; requests go through `list_for`).
    pub async fn list(&self) -> ApiResult<Vec<Workspace>> {
        Ok(self
            .inner
            .store
            .list_workspaces(None, &self.inner.secrets)
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
        // One removal of a workspace at a time: parallel deletes would race the engine for the same
        // container, image and volume. The others find it gone.
        let gate = self
            .inner
            .removing
            .lock()
            .expect("removing lock")
            .entry(id.to_string())
            .or_default()
            .clone();
        let result = {
            let _turn = gate.lock().await;
            match self
                .inner
                .store
                .get_workspace(id, &self.inner.secrets)
                .await
            {
                Ok(Some(_)) => self.remove_now(ws, keep_volume).await,
                Ok(None) => Err(ApiError::not_found(format!("no workspace with id {id}"))),
                Err(e) => Err(e.into()),
            }
        };
        drop(gate);
        // Gates nobody waits on any longer go.
        self.inner
            .removing
            .lock()
            .expect("removing lock")
            .retain(|_, g| Arc::strong_count(g) > 1);
        result
    }

    async fn remove_now(&self, ws: &Workspace, keep_volume: bool) -> ApiResult<()> {
        let id = ws.id.as_str();
        if let Some(token) = self.inner.builds.lock().expect("builds lock").remove(id) {
            token.cancel();
        }
        if ws.workspace_type == WorkspaceType::Container {
            let engine = &self.inner.engine;
            engine
                .remove_container(&crate::engine::container_name(id))
                .await?;
            self.inner.resident.remove(id);
            // Its own image from before images were shared. A shared image stays while berth runs,
            // for the next create of its distro and packages (`remove_unused_images`).
            engine.remove_image(&crate::engine::image_tag(id)).await?;
            // A snapshot's image goes with the last workspace that ran it, once the snapshot is gone.
            if let (Some(base), Some(image)) = (&ws.base_image, &ws.image_id) {
                if matches!(engine.image_id(base).await, Ok(None)) {
                    if let Err(e) = engine.remove_image_if_unused(image).await {
                        tracing::warn!(workspace.id = %id, error = %e, "removing a snapshot's image failed");
                    }
                }
            }
            if let Ok(Some(ip)) = engine.network_gateway(id).await {
                self.inner.gateway.release(ip);
            }
            engine
                .remove_network(&crate::engine::network_name(id))
                .await?;
            if keep_volume {
                // Kept on purpose: the reconcile leaves it alone.
                let name = crate::engine::volume_name(id);
                self.inner.store.keep_volume(&name, id, &ws.owner).await?;
            } else {
                engine.remove_volume(id).await?;
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

    /// The workspace's memory limit (MiB): its own, or the server's default.
    fn memory_mb(&self, ws: &Workspace) -> u64 {
        ws.limits.memory_mb.unwrap_or(self.inner.config.memory_mb)
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
