//! What clients ask of a workspace: the create and update requests (strict: unknown fields are refused,
//! container-only fields on a host workspace too), checked and turned into the stored workspace.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::Deserialize;
use utoipa::ToSchema;

use super::model::{Limits, Status, Workspace, WorkspaceType, REDACTED};
use super::{name_free, validate, Workspaces};
use crate::error::{ApiError, ApiResult};
use crate::library::ItemType;
use crate::principal::Principal;

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
    pub disk_mb: Option<u64>,
    /// Open Agent's fields (see `OpenAgentFields::check`).
    #[serde(default)]
    pub plugins: Option<Vec<String>>,
    #[serde(default)]
    pub shared_network: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub tailscale_mode: Option<serde_json::Value>,
    #[serde(default)]
    pub config_profile: Option<String>,
    /// Not settable over `/api/workspaces`: only the codebases API mounts host directories.
    #[serde(skip)]
    pub code_mount: Option<String>,
    /// Build right away even without a template (E2B's sandboxes are ready when created). Not settable
    /// over `/api/workspaces`, whose template-less workspaces wait for `POST /build`.
    #[serde(skip)]
    pub build_now: bool,
    /// An image to run instead of the distro's (an E2B snapshot's). Not settable over `/api/workspaces`.
    #[serde(skip)]
    pub base_image: Option<String>,
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
    pub disk_mb: Option<u64>,
    /// Open Agent's fields (see `OpenAgentFields::check`).
    #[serde(default)]
    pub plugins: Option<Vec<String>>,
    #[serde(default)]
    pub shared_network: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub tailscale_mode: Option<serde_json::Value>,
    #[serde(default)]
    pub config_profile: Option<String>,
}

/// Open Agent's workspace fields, which its dashboard sends: berth refuses what it has no
/// counterpart for (plugins, Tailscale, config profiles other than `default`); `shared_network: true`
/// is `network: host`. The network it asks for, if any.
fn open_agent_fields(
    plugins: &Option<Vec<String>>,
    shared_network: Option<bool>,
    tailscale_mode: &Option<serde_json::Value>,
    config_profile: &Option<String>,
) -> ApiResult<Option<String>> {
    if plugins.as_ref().is_some_and(|p| !p.is_empty()) {
        return Err(ApiError::invalid(
            "plugins: berth has none (send [] or nothing)",
        ));
    }
    if tailscale_mode.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(ApiError::invalid(
            "tailscale_mode: berth has no Tailscale (send null)",
        ));
    }
    if let Some(p) = config_profile.as_deref().filter(|p| *p != "default") {
        return Err(ApiError::invalid(format!(
            "no config profile {p:?}: berth has only the server's settings (\"default\")"
        )));
    }
    Ok(shared_network.filter(|s| *s).map(|_| "host".to_string()))
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
        ("memory_mb/cpus/pids/disk_mb", limits),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

impl Workspaces {
    pub async fn create(&self, who: &Principal, mut req: CreateWorkspace) -> ApiResult<Workspace> {
        if let Some(n) = open_agent_fields(
            &req.plugins,
            req.shared_network,
            &req.tailscale_mode,
            &req.config_profile,
        )? {
            req.network.get_or_insert(n);
        }
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
                req.memory_mb.is_some()
                    || req.cpus.is_some()
                    || req.pids.is_some()
                    || req.disk_mb.is_some(),
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
            disk_mb: req.disk_mb,
        })?;

        let id = uuid::Uuid::new_v4().to_string();
        let path = match workspace_type {
            WorkspaceType::Container => "/workspace".to_string(),
            WorkspaceType::Host => self.host_path(&name, req.path.as_deref())?,
        };
        let now = Utc::now();
        let mut ws = Workspace {
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
            base_image: req.base_image.clone(),
            limits,
            status: match workspace_type {
                WorkspaceType::Host => Status::Ready,
                WorkspaceType::Container => Status::Pending,
            },
            ..Workspace::unbuilt(id, now)
        };
        validate::env_vars(&ws.env_vars)?;
        if let Some(s) = &ws.init_script {
            validate::init_script(s)?;
        }
        if ws.workspace_type == WorkspaceType::Host {
            std::fs::create_dir_all(&ws.path)
                .map_err(|e| ApiError::invalid(format!("cannot create path {}: {e}", ws.path)))?;
        }
        let build_now = template.is_some() || req.build_now;
        // A workspace built right away takes a pooled container when it fits one: its id is the
        // pooled one's, and the build finds the container started.
        let pooled = if build_now && self.fits_pool(&ws) {
            self.claim_pooled()
        } else {
            None
        };
        if let Some(id) = &pooled {
            ws.id = id.clone();
        }
        let written = self
            .inner
            .store
            .insert_workspace(&ws, &self.inner.secrets)
            .await;
        if let Err(e) = written
            .map_err(ApiError::from)
            .and_then(|w| name_free(w, &ws.name))
        {
            // Unused: the next create takes it.
            if let Some(id) = pooled {
                self.unclaim(id);
            }
            return Err(e);
        }
        tracing::info!(workspace.id = %ws.id, workspace.name = %ws.name, r#type = ws.workspace_type.as_str(), pooled = pooled.is_some(), "workspace created");
        if build_now {
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
        mut req: UpdateWorkspace,
    ) -> ApiResult<Workspace> {
        if let Some(n) = open_agent_fields(
            &req.plugins,
            req.shared_network,
            &req.tailscale_mode,
            &req.config_profile,
        )? {
            req.network.get_or_insert(n);
        }
        let mut ws = self.owned(who, id).await?;
        if let Some(t) = &req.workspace_type {
            if WorkspaceType::parse(t) != Some(ws.workspace_type) {
                return Err(ApiError::invalid(
                    "workspace_type cannot change; create a new workspace instead",
                ));
            }
        }
        let limits_asked = req.memory_mb.is_some()
            || req.cpus.is_some()
            || req.pids.is_some()
            || req.disk_mb.is_some();
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
            // The disk limit is watched, not set on the container: it needs no rebuild.
            Limits {
                disk_mb: None,
                ..ws.limits
            },
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
                disk_mb: req.disk_mb.or(ws.limits.disk_mb),
            })?;
        }
        let built = ws.container_id.is_some() || ws.status != Status::Pending;
        if built
            && before
                != (
                    ws.distro.clone(),
                    ws.network.clone(),
                    ws.packages.clone(),
                    Limits {
                        disk_mb: None,
                        ..ws.limits
                    },
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
}
