//! AppState: everything handlers share, built once at start-up.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::FromRef;

use crate::agents::Agents;
use crate::api::cors::Origins;
use crate::audit::Audit;
use crate::auth::Auth;
use crate::missions::Missions;
use crate::secrets::SecretBox;
use crate::stats::HostStats;
use crate::store::Store;
use crate::workspaces::Workspaces;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub secrets: SecretBox,
    pub missions: Missions,
    pub agents: Agents,
    pub auth: Auth,
    pub audit: Audit,
    pub workspaces: Workspaces,
    /// E2B sandboxes (workspaces with E2B's lifecycle).
    pub sandboxes: crate::e2b::Sandboxes,
    pub stats: Arc<Mutex<HostStats>>,
    pub started: Instant,
    /// Browser origins allowed to call the API.
    pub cors: Origins,
    /// Whether berth's host firewall rules are in place (bridge workspaces fenced in).
    pub fenced: bool,
    /// The LLM gateway's client to the providers (no overall timeout: answers stream).
    pub gateway_client: reqwest::Client,
}

impl FromRef<AppState> for Origins {
    fn from_ref(s: &AppState) -> Self {
        s.cors.clone()
    }
}

impl FromRef<AppState> for Auth {
    fn from_ref(s: &AppState) -> Self {
        s.auth.clone()
    }
}

impl FromRef<AppState> for Audit {
    fn from_ref(s: &AppState) -> Self {
        s.audit.clone()
    }
}

impl FromRef<AppState> for Workspaces {
    fn from_ref(s: &AppState) -> Self {
        s.workspaces.clone()
    }
}

impl FromRef<AppState> for Agents {
    fn from_ref(s: &AppState) -> Self {
        s.agents.clone()
    }
}

impl FromRef<AppState> for Missions {
    fn from_ref(s: &AppState) -> Self {
        s.missions.clone()
    }
}
