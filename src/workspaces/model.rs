//! The workspace record and its API view.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceType {
    Host,
    Container,
}

impl WorkspaceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Container => "container",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "host" => Some(Self::Host),
            "container" => Some(Self::Container),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = WorkspaceStatus)]
pub enum Status {
    Pending,
    Building,
    Ready,
    Error,
}

impl Status {
    pub const ALL: [Status; 4] = [Self::Pending, Self::Building, Self::Ready, Self::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Building => "building",
            Self::Ready => "ready",
            Self::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "building" => Some(Self::Building),
            "ready" => Some(Self::Ready),
            "error" => Some(Self::Error),
            _ => None,
        }
    }
}

/// What berth last knew of a workspace's container, beside its status: a stopped workspace is `pending`
/// (nothing is wrong, `start` resumes it), one whose container died or was removed is `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Running,
    /// Stopped by `POST /stop`; everything is kept.
    Stopped,
    /// Its main process ended without berth asking (killed, crashed, OOM-killed, stopped behind berth's back).
    Exited,
    /// Removed behind berth's back; only a build makes a new one.
    Removed,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Exited => "exited",
            Self::Removed => "removed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "stopped" => Some(Self::Stopped),
            "exited" => Some(Self::Exited),
            "removed" => Some(Self::Removed),
            _ => None,
        }
    }
}

/// What a `building` workspace is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOp {
    Build,
    RerunInit,
}

impl BuildOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Build => "build",
            Self::RerunInit => "rerun_init",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "build" => Some(Self::Build),
            "rerun_init" => Some(Self::RerunInit),
            _ => None,
        }
    }
}

/// A workspace as berth knows it, with env var values decrypted (in memory only).
#[derive(Debug, Clone)]
pub struct Workspace {
    pub id: String,
    /// The user it belongs to.
    pub owner: String,
    pub name: String,
    pub workspace_type: WorkspaceType,
    pub path: String,
    pub template: Option<String>,
    pub distro: Option<String>,
    pub packages: Vec<String>,
    pub skills: Vec<String>,
    pub tools: Vec<String>,
    pub env_vars: BTreeMap<String, String>,
    pub init_scripts: Vec<String>,
    pub init_script: Option<String>,
    /// Container network mode: `bridge`, `host` or `none`.
    pub network: String,
    /// A host directory bind-mounted at `/code` (a codebase's code); set only by the codebases API.
    pub code_mount: Option<String>,
    /// An image to run instead of the distro's (an E2B snapshot's); set only by the E2B API.
    pub base_image: Option<String>,
    pub limits: Limits,
    /// A change (distro, network, limits) waits for the next build to take effect.
    pub needs_rebuild: bool,
    pub status: Status,
    pub error_message: Option<String>,
    pub container_id: Option<String>,
    pub container_state: Option<ContainerState>,
    /// While `building`: a build or a rerun-init.
    pub building_op: Option<BuildOp>,
    pub image_id: Option<String>,
    pub init_exit_code: Option<i64>,
    pub init_finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Workspace {
    /// A container workspace that sets nothing and was never built, made `now`: what a create starts
    /// from (and what a pooled container is built as).
    pub fn unbuilt(id: String, now: DateTime<Utc>) -> Self {
        Self {
            id,
            owner: String::new(),
            name: String::new(),
            workspace_type: WorkspaceType::Container,
            path: "/workspace".into(),
            template: None,
            distro: None,
            packages: Vec::new(),
            skills: Vec::new(),
            tools: Vec::new(),
            env_vars: BTreeMap::new(),
            init_scripts: Vec::new(),
            init_script: None,
            network: "bridge".into(),
            code_mount: None,
            base_image: None,
            limits: Limits::default(),
            needs_rebuild: false,
            status: Status::Pending,
            error_message: None,
            container_id: None,
            container_state: None,
            building_op: None,
            image_id: None,
            init_exit_code: None,
            init_finished_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Why a workspace that is not ready cannot run anything, for a 409 answer.
    pub fn not_ready(&self) -> String {
        match (self.status, self.container_state) {
            (Status::Pending, Some(ContainerState::Stopped)) => format!(
                "workspace is stopped; POST /api/workspaces/{}/start resumes it",
                self.id
            ),
            (Status::Error, Some(ContainerState::Exited)) => format!(
                "workspace is error, not ready: {}",
                self.error_message
                    .as_deref()
                    .unwrap_or("its container exited")
            ),
            (status, _) => format!(
                "workspace is {}, not ready; exec needs a built workspace",
                status.as_str()
            ),
        }
    }
}

/// A workspace's own resource limits; `None` is the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    /// MiB of `/workspace` plus the container's own files; watched, not set on the container.
    pub disk_mb: Option<u64>,
}

/// What replaces an env var's value in every answer: values are secrets and never leave berth.
pub const REDACTED: &str = "********";

/// The seed's Workspace object, plus the fields a client needs to edit what it created.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceView {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub workspace_type: WorkspaceType,
    pub path: String,
    pub status: Status,
    pub error_message: Option<String>,
    /// The container's state as berth last saw it (`null` before the first build and for host workspaces).
    pub container_state: Option<ContainerState>,
    pub skills: Vec<String>,
    pub tools: Vec<String>,
    pub distro: Option<String>,
    pub template: Option<String>,
    pub packages: Vec<String>,
    /// Keys only; values are redacted.
    pub env_vars: BTreeMap<String, String>,
    pub init_scripts: Vec<String>,
    pub init_script: Option<String>,
    pub network: String,
    /// The host directory mounted at `/code`, for a codebase's workspace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_mount: Option<String>,
    /// `memory_mb`, `cpus`, `pids`: the limits it asked for; null ones are the server's defaults.
    #[serde(flatten)]
    pub limits: Limits,
    /// True when a change waits for `POST /build {"rebuild": true}` to take effect.
    pub needs_rebuild: bool,
    /// Open Agent's: always empty (berth has no plugins).
    pub plugins: Vec<String>,
    /// Open Agent's: whether the container shares the host's network (`network: host`).
    pub shared_network: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Workspace> for WorkspaceView {
    fn from(w: &Workspace) -> Self {
        Self {
            id: w.id.clone(),
            owner: w.owner.clone(),
            name: w.name.clone(),
            workspace_type: w.workspace_type,
            path: w.path.clone(),
            status: w.status,
            error_message: w.error_message.clone(),
            container_state: w.container_state,
            skills: w.skills.clone(),
            tools: w.tools.clone(),
            distro: w.distro.clone(),
            template: w.template.clone(),
            packages: w.packages.clone(),
            env_vars: w
                .env_vars
                .keys()
                .map(|k| (k.clone(), REDACTED.to_string()))
                .collect(),
            init_scripts: w.init_scripts.clone(),
            init_script: w.init_script.clone(),
            network: w.network.clone(),
            code_mount: w.code_mount.clone(),
            limits: w.limits,
            needs_rebuild: w.needs_rebuild,
            plugins: Vec::new(),
            shared_network: w.network == "host",
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}
