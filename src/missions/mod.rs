//! Missions: agent conversations bound to a workspace. Messages queue and run in order, one turn at a
//! time per mission, through the workspace's OpenCode server; every event is stored before it is
//! announced. State that must survive a restart is in the store; the maps here only hold handles.

mod control;
pub mod hub;
pub mod providers;
mod queue;
mod recovery;
mod status;
mod turn;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;

use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::library::ItemType;
use crate::opencode::{AgentConfig, Client, Runtime};
use crate::principal::Principal;
use crate::secrets::SecretBox;
use crate::store::missions::MissionRow;
use crate::store::Store;
use crate::workspaces::model::{Status as WsStatus, WorkspaceType};
use crate::workspaces::{CreateWorkspace, Workspaces};
pub use hub::{Event, Hub};
pub use status::MissionStatus;

const EFFORTS: [&str; 3] = ["low", "medium", "high"];
/// OpenCode's own primary and sub agents; library agents add to these.
const BUILTIN_AGENTS: [&str; 4] = ["build", "plan", "general", "explore"];
const MAX_MESSAGE: usize = 1 << 20;

#[derive(Clone)]
pub struct Missions {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    secrets: SecretBox,
    workspaces: Workspaces,
    runtime: Runtime,
    /// Where workspaces reach the LLM gateway.
    gateway: crate::gateway::Listeners,
    hub: Hub,
    fragment: Value,
    config: Config,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Missions with a runner, and the cancel handle of the turn it is running.
    runners: tokio::sync::Mutex<HashMap<String, Option<CancellationToken>>>,
    /// The agent servers' configuration and what it was made from.
    config_cache: tokio::sync::Mutex<Option<CachedConfig>>,
    /// Each workspace's configuration routed through the gateway, by workspace id.
    routes: std::sync::Mutex<HashMap<String, Route>>,
}

/// The seed's Mission object.
#[derive(Debug, Serialize, ToSchema)]
pub struct MissionView {
    pub id: String,
    /// Whose mission it is (admins list everyone's).
    pub owner: String,
    pub status: MissionStatus,
    pub title: Option<String>,
    pub workspace_id: String,
    pub workspace_name: Option<String>,
    pub agent: Option<String>,
    pub model_override: Option<String>,
    pub model_effort: Option<String>,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
    /// The conversation so far: each user message and answer, in order.
    pub history: Vec<HistoryEntry>,
    /// Whether `resume` goes on from here (an interrupted mission).
    pub resumable: bool,
}

/// One turn of a mission's conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateMission {
    pub title: Option<String>,
    /// Absent (or Open Agent's nil UUID, its default workspace): the caller's default workspace.
    pub workspace_id: Option<String>,
    pub agent: Option<String>,
    pub model_override: Option<String>,
    pub model_effort: Option<String>,
    /// The agent backend: berth runs OpenCode (`opencode`); any other is refused.
    pub backend: Option<String>,
    /// A configuration profile: berth has only the server's (`default`).
    pub config_profile: Option<String>,
}

/// The agent configuration as last computed, keyed by the library's version and the sealed keys.
struct CachedConfig {
    library_version: u64,
    keys: Vec<(String, String)>,
    /// With the providers' keys: it never leaves berth.
    config: Arc<Value>,
}

/// A workspace's agent configuration, and what it was made from.
struct Route {
    from: Arc<Value>,
    container: Option<String>,
    config: Arc<AgentConfig>,
}

/// Open Agent's id of its default (host) workspace, which its dashboard preselects.
const NIL_WORKSPACE: &str = "00000000-0000-0000-0000-000000000000";

pub struct Deps {
    pub store: Store,
    pub secrets: SecretBox,
    pub workspaces: Workspaces,
    pub runtime: Runtime,
    pub hub: Hub,
    pub config: Config,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    pub gateway: crate::gateway::Listeners,
}

impl Missions {
    pub fn new(d: Deps) -> anyhow::Result<Self> {
        let fragment = providers::load_fragment(d.config.opencode_config.as_deref())?;
        Ok(Self {
            inner: Arc::new(Inner {
                store: d.store,
                secrets: d.secrets,
                workspaces: d.workspaces,
                runtime: d.runtime,
                gateway: d.gateway,
                hub: d.hub,
                fragment,
                config: d.config,
                tracker: d.tracker,
                shutdown: d.shutdown,
                runners: tokio::sync::Mutex::new(HashMap::new()),
                config_cache: tokio::sync::Mutex::new(None),
                routes: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Cancelled when berth shuts down; long-lived streams end with it.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub fn fragment(&self) -> &Value {
        &self.inner.fragment
    }

    async fn view(&self, m: MissionRow) -> MissionView {
        let workspace_name = self
            .inner
            .workspaces
            .get(&m.workspace_id)
            .await
            .ok()
            .map(|w| w.name);
        let history = self
            .history(&m.id)
            .await
            .into_iter()
            .map(|(role, content)| HistoryEntry { role, content })
            .collect();
        MissionView {
            history,
            resumable: m.status == MissionStatus::Interrupted,
            id: m.id,
            owner: m.owner,
            status: m.status,
            title: m.title,
            workspace_id: m.workspace_id,
            workspace_name,
            agent: m.agent,
            model_override: m.model_override,
            model_effort: m.model_effort,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }

    /// The user's mission (any, for an admin), or 404: another user's missions do not exist for them.
    async fn owned(&self, who: &Principal, id: &str) -> ApiResult<MissionRow> {
        match self.inner.store.get_mission(id).await? {
            Some(m) if who.may_act_on(&m.owner) => Ok(m),
            _ => Err(ApiError::not_found(format!("no mission with id {id}"))),
        }
    }

    pub async fn create(&self, who: &Principal, mut req: CreateMission) -> ApiResult<MissionView> {
        if let Some(b) = req.backend.as_deref().filter(|b| *b != "opencode") {
            return Err(ApiError::invalid(format!(
                "berth runs OpenCode: backend {b:?} is not available (use \"opencode\")"
            )));
        }
        if let Some(p) = req.config_profile.as_deref().filter(|p| *p != "default") {
            return Err(ApiError::invalid(format!(
                "no config profile {p:?}: berth has only the server's settings (\"default\")"
            )));
        }
        if req.workspace_id.as_deref() == Some(NIL_WORKSPACE) {
            req.workspace_id = None;
        }
        if let Some(e) = &req.model_effort {
            if !EFFORTS.contains(&e.as_str()) {
                return Err(ApiError::invalid(format!(
                    "invalid model_effort {e:?}: use low, medium or high"
                )));
            }
        }
        if let Some(m) = &req.model_override {
            self.check_model(m)?;
        }
        if let Some(a) = &req.agent {
            self.check_agent_name(a).await?;
        }
        if req.title.as_ref().is_some_and(|t| t.len() > 1000) {
            return Err(ApiError::invalid("title is over 1000 characters"));
        }
        let ws = match &req.workspace_id {
            Some(id) => match self.inner.workspaces.owned(who, id).await {
                Ok(ws) => ws,
                Err(ApiError::NotFound(m)) => return Err(ApiError::invalid(m)),
                Err(e) => return Err(e),
            },
            None => {
                let id = self.default_workspace(who).await?;
                self.inner.workspaces.get(&id).await?
            }
        };
        refuse_host(&ws)?;
        let workspace_id = ws.id;
        let now = Utc::now();
        let row = MissionRow {
            id: uuid::Uuid::new_v4().to_string(),
            owner: who.name.clone(),
            title: req.title,
            status: MissionStatus::Pending,
            workspace_id,
            agent: req.agent,
            model_override: req.model_override,
            model_effort: req.model_effort,
            opencode_session_id: None,
            created_at: now,
            updated_at: now,
        };
        self.inner.store.insert_mission(&row).await?;
        self.inner
            .hub
            .emit(
                &row.id,
                &row.owner,
                "status",
                json!({ "status": "pending" }),
            )
            .await;
        Ok(self.view(row).await)
    }

    /// The caller's own workspace of that name.
    async fn workspace_named(&self, who: &Principal, name: &str) -> ApiResult<Option<String>> {
        Ok(self
            .inner
            .workspaces
            .owned_named(&who.name, name)
            .await?
            .map(|w| w.id))
    }

    /// The caller's own default workspace (never one shared by users), created (and built from the
    /// `debian` template) when missing.
    async fn default_workspace(&self, who: &Principal) -> ApiResult<String> {
        let name = &self.inner.config.default_workspace;
        if let Some(id) = self.workspace_named(who, name).await? {
            return Ok(id);
        }
        let created = self
            .inner
            .workspaces
            .create(
                who,
                CreateWorkspace {
                    name: name.clone(),
                    template: Some("debian".into()),
                    ..Default::default()
                },
            )
            .await;
        match created {
            Ok(ws) => Ok(ws.id),
            // Another request created it first.
            Err(ApiError::Conflict(_)) => self.workspace_named(who, name).await?.ok_or_else(|| {
                ApiError::conflict("the default workspace is being replaced; retry")
            }),
            Err(e) => Err(e),
        }
    }

    fn check_model(&self, model: &str) -> ApiResult<()> {
        let Some((provider, model_id)) = model.split_once('/') else {
            return Err(ApiError::invalid(format!(
                "invalid model {model:?}: use provider/model"
            )));
        };
        if let Some(providers) = self.inner.fragment["provider"].as_object() {
            let Some(p) = providers.get(provider) else {
                return Err(ApiError::invalid(format!(
                    "unknown model {model:?}: no provider {provider:?} is configured (known: {})",
                    providers.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            if let Some(models) = p["models"].as_object() {
                if !models.contains_key(model_id) {
                    return Err(ApiError::invalid(format!(
                        "unknown model {model:?}; provider {provider} has: {}",
                        models.keys().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// An agent OpenCode knows: a built-in one or one of the library's; 400 otherwise.
    /// The agents a mission may name: OpenCode's own, then the library's.
    pub async fn agent_names(&self) -> ApiResult<Vec<String>> {
        let mut out: Vec<String> = BUILTIN_AGENTS.iter().map(|a| a.to_string()).collect();
        for a in self
            .inner
            .workspaces
            .library()
            .list(ItemType::Agent)
            .await?
        {
            if !out.contains(&a.name) {
                out.push(a.name);
            }
        }
        Ok(out)
    }

    pub async fn check_agent_name(&self, agent: &str) -> ApiResult<()> {
        if BUILTIN_AGENTS.contains(&agent)
            || self
                .inner
                .workspaces
                .library()
                .exists(ItemType::Agent, agent)
                .await
        {
            return Ok(());
        }
        Err(ApiError::invalid(format!(
            "unknown agent {agent:?}; built-in: {} (or an agent in the library)",
            BUILTIN_AGENTS.join(", ")
        )))
    }

    /// The caller's missions; an admin's listing has every user's.
    pub async fn list(&self, who: &Principal) -> ApiResult<Vec<MissionView>> {
        let mut out = Vec::new();
        for m in self.inner.store.list_missions(who.listing_owner()).await? {
            out.push(self.view(m).await);
        }
        Ok(out)
    }

    pub async fn get(&self, who: &Principal, id: &str) -> ApiResult<MissionView> {
        let m = self.owned(who, id).await?;
        Ok(self.view(m).await)
    }

    pub async fn delete(&self, who: &Principal, id: &str) -> ApiResult<()> {
        self.owned(who, id).await?;
        let _ = self.cancel(who, Some(id)).await;
        self.inner.store.delete_mission(id).await?;
        Ok(())
    }

    pub async fn load(&self, who: &Principal, id: &str) -> ApiResult<MissionView> {
        let m = self.owned(who, id).await?;
        self.inner.store.load_mission(&who.name, id).await?;
        Ok(self.view(m).await)
    }

    pub async fn set_status(
        &self,
        who: &Principal,
        id: &str,
        status: MissionStatus,
    ) -> ApiResult<MissionView> {
        let m = self.owned(who, id).await?;
        self.inner
            .store
            .transition_mission(&m.id, &[], status)
            .await?;
        self.inner
            .hub
            .emit(&m.id, &m.owner, "status", json!({ "status": status }))
            .await;
        self.get(who, id).await
    }

    pub async fn events(
        &self,
        who: &Principal,
        id: &str,
        types: &[String],
        limit: i64,
        offset: i64,
    ) -> ApiResult<Vec<Event>> {
        self.owned(who, id).await?;
        let rows = self
            .inner
            .store
            .mission_events(id, types, limit, offset)
            .await?;
        Ok(rows.into_iter().map(Event::from).collect())
    }

    /// The user's events after the global id `after`, oldest first, a page at a time.
    pub async fn events_since(&self, owner: &str, after: i64) -> ApiResult<Vec<Event>> {
        let rows = self.inner.store.events_after(owner, after, 500).await?;
        Ok(rows.into_iter().map(Event::from).collect())
    }

    /// A healthy OpenCode server for the workspace, with the current configuration.
    pub async fn agent_client(
        &self,
        ws: &crate::workspaces::model::Workspace,
    ) -> ApiResult<Client> {
        refuse_host(ws)?;
        if ws.status != WsStatus::Ready {
            return Err(ApiError::conflict(format!(
                "workspace {} is {}, not ready",
                ws.name,
                ws.status.as_str()
            )));
        }
        let config = self.workspace_agent_config(ws).await?;
        self.inner.runtime.ensure(ws, &config).await.map_err(|e| {
            ApiError::Unavailable(format!("the agent server of workspace {}: {e}", ws.name))
        })
    }

    /// The agent servers' configuration, computed again only when what it is made of changed (the
    /// library, or the stored provider keys), not for every request through the pass-through.
    async fn agent_config(&self) -> ApiResult<Arc<Value>> {
        let library = self.inner.workspaces.library();
        // Read before the inputs, so a change made meanwhile is seen by the next call.
        let version = library.version();
        let keys = self.inner.store.provider_keys().await?;
        let mut cache = self.inner.config_cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if c.library_version == version && c.keys == keys {
                return Ok(c.config.clone());
            }
        }
        let value = providers::opencode_config(
            &self.inner.fragment,
            library,
            &self.inner.store,
            &self.inner.secrets,
        )
        .await?;
        let config = Arc::new(value);
        *cache = Some(CachedConfig {
            library_version: version,
            keys,
            config: config.clone(),
        });
        Ok(config)
    }

    /// What a workspace's agent server runs with: the configuration with every provider it can reach
    /// routed through the LLM gateway under the workspace's token, so no key enters the workspace.
    async fn workspace_agent_config(
        &self,
        ws: &crate::workspaces::model::Workspace,
    ) -> ApiResult<Arc<AgentConfig>> {
        let config = self.agent_config().await?;
        // Asked for every request through the pass-through: made again only when the configuration
        // or the workspace's container changed, not with an engine call and a token read each time.
        if let Some(route) = self.inner.routes.lock().expect("routes lock").get(&ws.id) {
            if Arc::ptr_eq(&route.from, &config) && route.container == ws.container_id {
                return Ok(route.config.clone());
            }
        }
        let gateway = match ws.network.as_str() {
            "host" => self.inner.gateway.on_loopback().await,
            _ => match self
                .inner
                .workspaces
                .engine()
                .network_gateway(&ws.id)
                .await?
            {
                Some(ip) => self.inner.gateway.on(ip).await,
                None => Err("the workspace's network has no gateway address".to_string()),
            },
        }
        .map_err(|e| {
            ApiError::Unavailable(format!("the LLM gateway of workspace {}: {e}", ws.name))
        })?;
        let token =
            crate::gateway::token_for(&self.inner.store, &self.inner.secrets, &ws.id, &ws.owner)
                .await?;
        let routed = Arc::new(AgentConfig::new(&crate::gateway::route_through(
            &config, &gateway, &token,
        )));
        self.inner.routes.lock().expect("routes lock").insert(
            ws.id.clone(),
            Route {
                from: config,
                container: ws.container_id.clone(),
                config: routed.clone(),
            },
        );
        Ok(routed)
    }

    /// Where the gateway sends a call for `provider`, with the key it adds.
    pub async fn provider_upstream(
        &self,
        provider: &str,
    ) -> ApiResult<Option<crate::gateway::Upstream>> {
        let config = self.agent_config().await?;
        Ok(crate::gateway::upstream(&config, provider))
    }

    /// Starts the mission's OpenCode session now (rather than at its first turn), so callers can name it
    /// at once; the session id.
    pub async fn open_session(&self, who: &Principal, id: &str) -> ApiResult<String> {
        let m = self.owned(who, id).await?;
        let ws = self.inner.workspaces.get(&m.workspace_id).await?;
        let client = self.agent_client(&ws).await?;
        self.session(&m, &client).await.map_err(ApiError::Engine)
    }

    /// Waits (at most `within`) until no turn runs: at shutdown, until the cut-off ones have recorded it.
    pub async fn turns_settled(&self, within: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.running_turns().await > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// How many missions have a turn running now.
    pub async fn running_turns(&self) -> usize {
        self.inner
            .runners
            .lock()
            .await
            .values()
            .filter(|t| t.is_some())
            .count()
    }

    /// The live agent tree: the user's missions that are active, each with its running turn and queue.
    pub async fn tree(&self, who: &Principal) -> ApiResult<Value> {
        let runners = self.inner.runners.lock().await.clone();
        let mut nodes = Vec::new();
        for m in self.inner.store.list_missions(Some(&who.name)).await? {
            if m.status != MissionStatus::Active && !runners.contains_key(&m.id) {
                continue;
            }
            let pending = self.inner.store.pending_messages(&m.id, "").await?;
            let running = runners.get(&m.id).is_some_and(|t| t.is_some());
            nodes.push(json!({
                "id": m.id,
                "title": m.title,
                "status": m.status,
                "agent": m.agent.clone().unwrap_or_else(|| "build".into()),
                "workspace_id": m.workspace_id,
                "running": running,
                "queued_messages": pending - i64::from(running),
                "children": [],
            }));
        }
        Ok(json!({ "missions": nodes }))
    }
}

/// The agent runs in container workspaces: a host workspace is refused up front, with the reason.
fn refuse_host(ws: &crate::workspaces::model::Workspace) -> ApiResult<()> {
    if ws.workspace_type == WorkspaceType::Host {
        return Err(ApiError::invalid(format!(
            "workspace {} is a host workspace; the agent runs in container workspaces",
            ws.name
        )));
    }
    Ok(())
}
