//! Schemas of answers the handlers build with `serde_json::json!` rather than a typed struct: only the
//! document uses these, so each mirrors its handler's `json!` by hand (the handler named above it).
//! Inner values that are OpenCode's own (sessions, parts, projects) stay free-form objects.

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::api::tokens::TokenView;

// Mirrors `auth::login`.
#[derive(ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    token: String,
    expires_at: DateTime<Utc>,
    /// `expires_at` in unix seconds.
    exp: i64,
}

// Mirrors `auth::verify`.
#[derive(ToSchema)]
pub struct VerifyResponse {
    valid: bool,
    user: String,
    /// `user` or `admin`.
    role: String,
    /// Unix seconds; null for an API token (it has its own `expires_at`).
    expires_at: Option<i64>,
}

/// A plain acknowledgement.
#[derive(ToSchema)]
pub struct Success {
    success: bool,
}

/// An acknowledgement with a message for people.
#[derive(Serialize, ToSchema)]
pub struct SuccessMessage {
    success: bool,
    message: String,
}

impl SuccessMessage {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            success: true,
            message: message.into(),
        }
    }
}

// Mirrors `tokens::create_token`.
/// The token's view and the secret, shown this once.
#[derive(ToSchema)]
pub struct NewToken {
    #[schema(inline)]
    #[serde(flatten)]
    view: TokenView,
    /// `berth_…`; stored only as a hash.
    token: String,
}

// Mirrors `system::health`.
#[derive(ToSchema)]
pub struct Health {
    /// Always `ok`: berth answers.
    status: String,
    version: String,
    /// Always true: berth needs a token on every route but a few public ones.
    auth_required: bool,
    /// `single_tenant` (one password) or `multi_user` (a username and a password).
    auth_mode: String,
    docker: DockerHealth,
    /// The data dir's disk; `full: true` when berth can no longer record state safely (writes answer
    /// 507 `insufficient_storage`).
    data_dir: crate::storage::Space,
    /// Whether berth's host firewall rules fence bridge workspaces in (they need root and `iptables`).
    network_isolation: bool,
}

#[derive(ToSchema)]
pub struct DockerHealth {
    reachable: bool,
    /// The negotiated Docker API version, when reachable.
    api_version: Option<String>,
    /// Why not, when unreachable.
    error: Option<String>,
}

// Mirrors `system::stats`.
/// `cpu` (`usage_percent`, `cores`, `load_average`), `memory` (`total_bytes`,
/// `used_bytes`, `usage_percent`), `disk` of the data dir (`mount_point`, `total_bytes`, `used_bytes`,
/// `available_bytes`, `usage_percent`; null when unknown), `network` (`rx_bytes`, `tx_bytes`), and
/// `berth` (`uptime_secs`, `workspaces` by status, `agents`: codebases, workers, tasks by status,
/// agent servers), counting what the caller may see.
#[derive(ToSchema)]
pub struct Stats {
    cpu: Value,
    memory: Value,
    disk: Option<Value>,
    network: Value,
    berth: Value,
    /// Tasks (agent runs) the caller may see, for Open Agent's overview cards.
    total_tasks: i64,
    /// Pending or running.
    active_tasks: i64,
    completed_tasks: i64,
    failed_tasks: i64,
    /// Completed over completed and failed, 0 to 1 (1 before any has ended).
    success_rate: f64,
    /// Always 0: berth does not count what runs cost.
    total_cost_cents: i64,
    /// What the LLM gateway counted: `{"workspaces": {id: {owner, requests, input_tokens,
    /// output_tokens}}, "users": {name: {requests, input_tokens, output_tokens}}}`.
    llm: Value,
}

// Mirrors `library::get_skill_file`.
#[derive(ToSchema)]
pub struct SkillFile {
    skill: String,
    /// Relative to the skill's directory.
    path: String,
    content: String,
}

// Mirrors `missions::send_message`.
#[derive(ToSchema)]
pub struct MessageQueued {
    /// The message's id.
    id: String,
    /// True when a turn was running, so the message waits its turn.
    queued: bool,
}

// Mirrors `missions::cancel_current`, `missions::cancel_mission`.
#[derive(ToSchema)]
pub struct Cancelled {
    cancelled: bool,
    /// Whether a turn was running (and was aborted).
    running_turn: bool,
    /// Queued messages dropped.
    dropped_messages: i64,
}

// Mirrors `missions::mission_tree`.
#[derive(ToSchema)]
pub struct MissionTree {
    missions: Vec<MissionNode>,
}

#[derive(ToSchema)]
pub struct MissionNode {
    id: String,
    title: Option<String>,
    status: String,
    agent: String,
    workspace_id: String,
    running: bool,
    queued_messages: i64,
    /// Always empty: missions have no sub-missions here.
    children: Vec<Value>,
}

// Mirrors `v1::get_health`.
#[derive(ToSchema)]
pub struct SeedHealth {
    /// `healthy`
    status: String,
    /// `berth`
    service: String,
    version: String,
}

// Mirrors `v1::get_opencode_status`.
#[derive(ToSchema)]
pub struct OpencodeStatus {
    available: bool,
    message: String,
    /// Where the pinned opencode binary is (or will be) provisioned.
    opencode_binary: String,
    registered_codebases: i64,
    auto_start: bool,
    /// `runtime/status` for a user's token; null for a worker's.
    runtime: Option<Value>,
}

// Mirrors `v1::list_models`.
#[derive(ToSchema)]
pub struct Model {
    /// `provider/model`
    id: String,
    name: String,
    provider: String,
}

// Mirrors `v1::list_sessions`.
/// `sessions` are `{id, codebase_id, started_at, ended_at, status, model,
/// prompt, messages_count}`.
#[derive(ToSchema)]
pub struct SessionPage {
    sessions: Vec<Value>,
    total: i64,
    limit: i64,
    offset: i64,
}

// Mirrors `v1::list_session_messages`.
/// `messages` are `{id, role, content, timestamp, agent, model}`.
#[derive(ToSchema)]
pub struct SessionMessages {
    messages: Vec<Value>,
    session_id: String,
}

// Mirrors `v1::get_runtime_status`.
#[derive(ToSchema)]
pub struct RuntimeStatus {
    available: bool,
    message: String,
    storage_path: String,
    /// OpenCode servers running for the caller.
    servers: i64,
    /// As `runtime/projects`.
    projects: Vec<Value>,
    /// As `runtime/sessions`.
    sessions: Vec<Value>,
}

// Mirrors `v1::list_runtime_projects`.
/// `projects` are `{id, worktree, vcs, vcs_dir, created_at, updated_at,
/// session_count, workspace_id}`.
#[derive(ToSchema)]
pub struct RuntimeProjects {
    projects: Vec<Value>,
}

// Mirrors `v1::list_runtime_sessions`.
/// `sessions` are `{id, project_id, directory, title, version, created_at,
/// updated_at, summary, workspace_id}`.
#[derive(ToSchema)]
pub struct RuntimeSessions {
    sessions: Vec<Value>,
    total: i64,
    limit: i64,
    offset: i64,
}

// Mirrors `v1::get_runtime_session`.
#[derive(ToSchema)]
pub struct RuntimeSession {
    session: Value,
}

// Mirrors `v1::list_runtime_messages`.
/// `messages` are `{id, session_id, role, created_at, model, cost, tokens,
/// tool_calls}`.
#[derive(ToSchema)]
pub struct RuntimeMessages {
    messages: Vec<Value>,
    total: i64,
    limit: i64,
    offset: i64,
    session_id: String,
}

// Mirrors `v1::list_runtime_parts`.
/// OpenCode's message parts, each with its `message_id`.
#[derive(ToSchema)]
pub struct RuntimeParts {
    parts: Vec<Value>,
    session_id: String,
    message_id: Option<String>,
}

// Mirrors `v1::list_monitor_agents`.
/// A codebase's agent.
#[derive(ToSchema)]
pub struct MonitorAgent {
    /// The codebase's id.
    id: String,
    name: String,
    status: String,
    messages_count: i64,
    last_seen: Option<DateTime<Utc>>,
}

// Mirrors `v1::list_monitor_messages`.
/// An entry of berth's activity log.
#[derive(ToSchema)]
pub struct MonitorMessage {
    id: String,
    timestamp: DateTime<Utc>,
    /// `agent`, `human`, `system`, `tool` or `error`.
    #[serde(rename = "type")]
    kind: String,
    agent_name: String,
    content: String,
    metadata: Value,
    response_time: Option<f64>,
    tokens: Option<i64>,
    error: Option<String>,
}

// Mirrors `v1::get_monitor_stats`.
#[derive(ToSchema)]
pub struct MonitorStats {
    total_messages: i64,
    tool_calls: i64,
    errors: i64,
    tokens: i64,
    avg_response_time: f64,
    active_agents: i64,
    interventions: i64,
}
