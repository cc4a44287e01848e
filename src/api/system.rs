//! `/api/health` and `/api/stats`.

use axum::extract::State;
use serde_json::{json, Value};

use super::Json;
use crate::app::AppState;
use crate::error::ApiResult;
use crate::workspaces::model::Status;

pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let engine = state.workspaces.engine().ping().await;
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "docker": match engine {
            Ok(api) => json!({ "reachable": true, "api_version": api }),
            Err(e) => json!({ "reachable": false, "error": e.to_string() }),
        },
    }))
}

pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let stats = state.stats.clone();
    let mut host = tokio::task::spawn_blocking(move || stats.lock().expect("stats lock").sample())
        .await
        .map_err(|e| anyhow::anyhow!("stats sampler: {e}"))?;
    let workspaces = state.workspaces.list().await?;
    let count = |s: Status| workspaces.iter().filter(|w| w.status == s).count();
    host["berth"] = json!({
        "uptime_secs": state.started.elapsed().as_secs(),
        "workspaces": {
            "total": workspaces.len(),
            "pending": count(Status::Pending),
            "building": count(Status::Building),
            "ready": count(Status::Ready),
            "error": count(Status::Error),
        },
        "agents": state.agents.counts().await?,
    });
    Ok(Json(host))
}
