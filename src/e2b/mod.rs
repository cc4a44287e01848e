//! E2B sandboxes on berth: each is a berth workspace owned by the API key's user (visible in
//! `/api/workspaces`), with E2B's lifecycle on top — a timeout after which it is killed (or paused, when
//! asked), pause and resume (the container stopped and started, files kept), metadata, and the envd
//! access token a secure sandbox's traffic must carry. berth's own workspaces keep their own lifecycle.

mod snapshots;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::secrets::SecretBox;
use crate::store::e2b::SandboxRow;
use crate::store::Store;
use crate::workspaces::model::{ContainerState, Status, Workspace};
use crate::workspaces::CreateWorkspace;
use crate::workspaces::Workspaces;

/// envd listens here inside an E2B sandbox; berth's agent answers for it.
pub const ENVD_PORT: u16 = 49983;
/// The envd version berth's agent stands for (the SDK enables features by it).
pub const ENVD_VERSION: &str = "0.5.7";
/// The home of E2B's default user: made in every sandbox, and where its commands start by default.
pub const USER_HOME: &str = "/home/user";
/// E2B's default sandbox timeout, and the most berth grants.
const DEFAULT_TIMEOUT_SECS: u64 = 300;
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;
/// How long a create waits for its workspace to be ready.
const CREATE_WAIT: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct Sandboxes {
    store: Store,
    secrets: SecretBox,
    workspaces: Workspaces,
}

pub struct NewSandbox {
    pub template_id: String,
    pub timeout_secs: Option<u64>,
    pub metadata: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    pub secure: bool,
    pub auto_pause: bool,
}

/// What a running sandbox uses now (E2B's `SandboxMetric`).
pub struct Metrics {
    pub at: DateTime<Utc>,
    pub cpu_count: u32,
    /// Percent of its CPUs.
    pub cpu_used_pct: f64,
    pub mem_used: u64,
    pub mem_cache: u64,
    pub mem_total: u64,
    pub disk_used: u64,
    pub disk_total: u64,
}

/// A sandbox: its record and its workspace.
pub struct Sandbox {
    pub row: SandboxRow,
    pub workspace: Workspace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
}

impl Sandbox {
    pub fn state(&self) -> State {
        match self.workspace.container_state {
            Some(ContainerState::Stopped) => State::Paused,
            _ => State::Running,
        }
    }

    pub fn metadata(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.row.metadata).unwrap_or_default()
    }
}

impl Sandboxes {
    pub fn new(store: Store, secrets: SecretBox, workspaces: Workspaces) -> Self {
        Self {
            store,
            secrets,
            workspaces,
        }
    }

    /// E2B's template names for berth's: `base` is berth's default template; berth's template and distro
    /// names are taken as they are.
    fn template(&self, id: &str) -> ApiResult<Option<String>> {
        match id {
            "" | "base" => Ok(None),
            t if self.workspaces.template_names().iter().any(|n| n == t) => Ok(Some(t.into())),
            t => Err(ApiError::invalid(format!(
                "unknown template {t:?}; berth's templates are: base, {}",
                self.workspaces.template_names().join(", ")
            ))),
        }
    }

    fn timeout(secs: Option<u64>) -> ApiResult<chrono::Duration> {
        let secs = secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if secs == 0 || secs > MAX_TIMEOUT_SECS {
            return Err(ApiError::invalid(format!(
                "timeout must be between 1 and {MAX_TIMEOUT_SECS} seconds"
            )));
        }
        Ok(chrono::Duration::seconds(secs as i64))
    }

    /// Creates the workspace, waits until it is ready, and records the sandbox.
    pub async fn create(&self, who: &Principal, new: NewSandbox) -> ApiResult<Sandbox> {
        // A snapshot of the caller's, or one of berth's templates.
        let snapshot = self.owned_snapshot(who, &new.template_id).await?;
        let template = match &snapshot {
            Some(_) => None,
            None => self.template(&new.template_id)?,
        };
        let timeout = Self::timeout(new.timeout_secs)?;
        crate::workspaces::validate::env_vars(&new.env_vars)?;
        let short = crate::secrets::random_hex(6);
        let engine = self.workspaces.engine();
        let req = CreateWorkspace {
            name: format!("e2b-{short}"),
            template,
            env_vars: Some(new.env_vars),
            // A sandbox is built on creation, with or without a template.
            build_now: true,
            base_image: snapshot
                .as_ref()
                .map(|s| crate::engine::snapshot_tag(engine.instance(), &s.id)),
            ..Default::default()
        };
        let ws = self.workspaces.create(who, req).await?;
        let ready = self.wait_ready(&ws.id).await;
        let restored = match (&ready, &snapshot) {
            (Ok(_), Some(s)) => self.restore_workspace(&s.id, &ws.id).await,
            _ => Ok(()),
        };
        let ws = match ready.and_then(|ws| restored.map(|()| ws)) {
            Ok(ws) => ws,
            Err(e) => {
                let _ = self.workspaces.delete(&ws.id, false).await;
                return Err(e);
            }
        };
        self.make_home(&ws).await;
        let token = new.secure.then(|| crate::secrets::random_hex(24));
        let now = Utc::now();
        let row = SandboxRow {
            workspace_id: ws.id.clone(),
            owner: who.name.clone(),
            template_id: if new.template_id.is_empty() {
                "base".into()
            } else {
                new.template_id
            },
            metadata: serde_json::to_string(&new.metadata).unwrap_or_else(|_| "{}".into()),
            started_at: now,
            expires_at: now + timeout,
            auto_pause: new.auto_pause,
            token_sealed: token.as_deref().map(|t| self.secrets.seal(t)),
        };
        self.store.insert_sandbox(&row).await?;
        Ok(Sandbox { row, workspace: ws })
    }

    /// Makes E2B's user's home, which E2B's templates have and its users expect.
    async fn make_home(&self, ws: &Workspace) {
        use envd::filesystem as fs;
        let wait = Duration::from_secs(3);
        let Some(agent) = self.workspaces.resident().client_within(&ws.id, wait).await else {
            return;
        };
        let made: Result<fs::EntryResponse, _> = agent
            .unary(
                fs::SERVICE,
                "MakeDir",
                &fs::PathRequest {
                    path: USER_HOME.into(),
                },
            )
            .await;
        if let Err(e) = made {
            tracing::debug!(sandbox = %ws.id, error = %e, "making the user's home");
        }
    }

    async fn wait_ready(&self, id: &str) -> ApiResult<Workspace> {
        let started = std::time::Instant::now();
        loop {
            let ws = self.workspaces.get(id).await?;
            match ws.status {
                Status::Ready => return Ok(ws),
                Status::Error => {
                    return Err(ApiError::Engine(format!(
                        "the sandbox's workspace failed to build: {}",
                        ws.error_message.unwrap_or_default()
                    )))
                }
                _ if started.elapsed() > CREATE_WAIT => {
                    return Err(ApiError::Engine(
                        "the sandbox's workspace did not become ready in time".into(),
                    ))
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// A sandbox `who` may act on (another user's is 404, as if it did not exist).
    pub async fn get(&self, who: &Principal, id: &str) -> ApiResult<Sandbox> {
        let missing = || ApiError::not_found(format!("sandbox {id} not found"));
        let row = self.store.sandbox(id).await?.ok_or_else(missing)?;
        if !who.is_admin() && row.owner != who.name {
            return Err(missing());
        }
        let workspace = self.workspaces.get(id).await?;
        Ok(Sandbox { row, workspace })
    }

    /// A sandbox by its id alone, for its traffic (authorized by its access token, not a user).
    pub async fn for_traffic(&self, id: &str) -> ApiResult<(Sandbox, Option<String>)> {
        let missing = || ApiError::not_found(format!("sandbox {id} not found"));
        let row = self.store.sandbox(id).await?.ok_or_else(missing)?;
        let token = match &row.token_sealed {
            Some(s) => Some(
                self.secrets
                    .unseal(s)
                    .map_err(|e| ApiError::Internal(e.context("unseal a sandbox token")))?,
            ),
            None => None,
        };
        let workspace = self.workspaces.get(id).await?;
        Ok((Sandbox { row, workspace }, token))
    }

    pub fn access_token(&self, s: &Sandbox) -> Option<String> {
        s.row
            .token_sealed
            .as_deref()
            .and_then(|t| self.secrets.unseal(t).ok())
    }

    pub async fn list(&self, who: &Principal) -> ApiResult<Vec<Sandbox>> {
        let owner = (!who.is_admin()).then_some(who.name.as_str());
        let mut out = Vec::new();
        for row in self.store.sandboxes(owner).await? {
            if let Ok(workspace) = self.workspaces.get(&row.workspace_id).await {
                out.push(Sandbox { row, workspace });
            }
        }
        Ok(out)
    }

    pub async fn kill(&self, who: &Principal, id: &str) -> ApiResult<()> {
        let s = self.get(who, id).await?;
        self.remove(&s.row.workspace_id).await
    }

    async fn remove(&self, id: &str) -> ApiResult<()> {
        self.workspaces.delete(id, false).await?;
        self.store.delete_sandbox(id).await?;
        Ok(())
    }

    /// The timeout counts from now.
    pub async fn set_timeout(&self, who: &Principal, id: &str, secs: u64) -> ApiResult<()> {
        let s = self.get(who, id).await?;
        let timeout = Self::timeout(Some(secs))?;
        self.store
            .set_sandbox_expiry(&s.row.workspace_id, Utc::now() + timeout)
            .await?;
        Ok(())
    }

    /// Extends the timeout to at least `secs` from now.
    pub async fn refresh(&self, who: &Principal, id: &str, secs: Option<u64>) -> ApiResult<()> {
        let s = self.get(who, id).await?;
        let until = Utc::now() + Self::timeout(Some(secs.unwrap_or(DEFAULT_TIMEOUT_SECS)))?;
        if until > s.row.expires_at {
            self.store
                .set_sandbox_expiry(&s.row.workspace_id, until)
                .await?;
        }
        Ok(())
    }

    /// One sample of what the sandbox uses now; none while it is paused.
    pub async fn metrics(&self, who: &Principal, id: &str) -> ApiResult<Option<Metrics>> {
        let s = self.get(who, id).await?;
        if s.state() == State::Paused {
            return Ok(None);
        }
        let engine = self.workspaces.engine();
        let container = crate::engine::container_name(id);
        let (usage, disk) = tokio::join!(engine.usage(&container), engine.disk_usage());
        let Some(usage) = usage? else {
            return Ok(None);
        };
        let config = self.workspaces.config();
        let cpus = s
            .workspace
            .limits
            .cpus
            .unwrap_or_else(|| config.default_cpus());
        let disk_mb = s.workspace.limits.disk_mb.unwrap_or(config.disk_mb);
        Ok(Some(Metrics {
            at: Utc::now(),
            cpu_count: cpus.ceil().max(1.0) as u32,
            cpu_used_pct: (usage.cpu_pct / cpus.max(0.01)).clamp(0.0, 100.0),
            mem_used: usage.mem_used,
            mem_cache: usage.mem_cache,
            mem_total: usage.mem_limit,
            disk_used: disk?.get(id).copied().unwrap_or(0),
            disk_total: disk_mb << 20,
        }))
    }

    /// Stops the container, keeping its files; a paused sandbox does not time out.
    pub async fn pause(&self, who: &Principal, id: &str) -> ApiResult<()> {
        let s = self.get(who, id).await?;
        if s.state() == State::Paused {
            return Err(ApiError::conflict(format!(
                "sandbox {id} is already paused"
            )));
        }
        self.workspaces.stop(&s.workspace).await?;
        self.store.set_sandbox_expiry(id, far_future()).await?;
        Ok(())
    }

    /// Starts a paused sandbox again (as it was) with a fresh timeout; a running one just gets the
    /// timeout (`connect`'s meaning). `strict`: resuming a running sandbox is a conflict. Also answers
    /// whether it was paused.
    pub async fn resume(
        &self,
        who: &Principal,
        id: &str,
        timeout_secs: Option<u64>,
        strict: bool,
    ) -> ApiResult<(Sandbox, bool)> {
        let s = self.get(who, id).await?;
        let timeout = Self::timeout(timeout_secs)?;
        let paused = s.state() == State::Paused;
        if paused {
            self.workspaces.start(&s.workspace).await?;
            self.store
                .set_sandbox_expiry(id, Utc::now() + timeout)
                .await?;
        } else if strict {
            return Err(ApiError::conflict(format!("sandbox {id} is not paused")));
        } else if Utc::now() + timeout > s.row.expires_at {
            self.store
                .set_sandbox_expiry(id, Utc::now() + timeout)
                .await?;
        }
        Ok((self.get(who, id).await?, paused))
    }

    /// Kills (or pauses) sandboxes whose timeout passed, every second until berth stops.
    pub async fn enforce_timeouts(&self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let expired = match self.store.expired_sandboxes(Utc::now()).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "listing expired sandboxes failed");
                    continue;
                }
            };
            for row in expired {
                let id = row.workspace_id.clone();
                let outcome = if row.auto_pause {
                    match self.workspaces.get(&id).await {
                        Ok(ws) => match self.workspaces.stop(&ws).await {
                            Ok(_) => self
                                .store
                                .set_sandbox_expiry(&id, far_future())
                                .await
                                .map_err(ApiError::from),
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                } else {
                    self.remove(&id).await
                };
                match outcome {
                    Ok(()) => {
                        tracing::info!(sandbox = %id, paused = row.auto_pause, "sandbox timed out")
                    }
                    Err(e) => {
                        tracing::warn!(sandbox = %id, error = %e, "ending a timed-out sandbox failed")
                    }
                }
            }
        }
    }
}

/// When a paused sandbox "expires": never, in practice.
fn far_future() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(365 * 100)
}
