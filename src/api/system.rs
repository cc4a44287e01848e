//! `/api/health` and `/api/stats`.

use axum::extract::State;
use axum::Extension;
use serde_json::{json, Value};

use super::openapi::shapes;
use super::Json;
use crate::agents::TaskStatus;
use crate::app::AppState;
use crate::error::ApiResult;
use crate::principal::Principal;

#[utoipa::path(
    get, path = "/api/health", tag = "system",
    summary = "Liveness, and whether the Docker engine answers",
    responses((status = 200, description = "berth answers; `docker` says whether the engine does; `auth_required` and `auth_mode` (`single_tenant`: one password; `multi_user`: a username too) tell a client how to log in", body = shapes::Health)),
)]
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let engine = state.workspaces.engine().ping().await;
    let data_dir = crate::storage::space(&state.workspaces.config().data_dir)
        .map(|space| json!(space))
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        // Every route but a few public ones needs a token; clients show their login from these.
        "auth_required": true,
        "auth_mode": state.auth.mode_name(),
        "docker": match engine {
            Ok(api) => json!({ "reachable": true, "api_version": api }),
            Err(e) => json!({ "reachable": false, "error": e.to_string() }),
        },
        // `full: true` when berth can no longer record state safely (writes answer 507).
        "data_dir": data_dir,
        // Whether bridge workspaces are fenced in by berth's host firewall rules.
        "network_isolation": state.fenced,
    }))
}

/// Host usage, and berth's counts of what the caller may see (everything, for an admin).
#[utoipa::path(
    get, path = "/api/stats", tag = "system",
    summary = "Host CPU, memory, disk and network; berth's counts of workspaces, codebases, workers, tasks and agent servers",
    responses((status = 200, description = "the sample, counting what the caller may see (all, for an admin)", body = shapes::Stats)),
)]
pub async fn stats(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let stats = state.stats.clone();
    let mut host = tokio::task::spawn_blocking(move || stats.lock().expect("stats lock").sample())
        .await
        .map_err(|e| anyhow::anyhow!("stats sampler: {e}"))?;
    let counts = state.workspaces.counts_for(who.listing_owner()).await?;
    let mut workspaces = serde_json::Map::new();
    workspaces.insert(
        "total".into(),
        json!(counts.iter().map(|(_, n)| n).sum::<i64>()),
    );
    for (status, n) in counts {
        workspaces.insert(status.as_str().into(), json!(n));
    }
    // Open Agent's overview cards: its tasks are berth's tasks (agent runs), which cost nothing berth
    // can count.
    let tasks = state.store.task_counts(who.listing_owner()).await?;
    let count = |s: TaskStatus| tasks.iter().find(|(t, _)| *t == s).map_or(0, |(_, n)| *n);
    let total: i64 = tasks.iter().map(|(_, n)| n).sum();
    let (done, failed) = (count(TaskStatus::Completed), count(TaskStatus::Failed));
    host["total_tasks"] = json!(total);
    host["active_tasks"] = json!(count(TaskStatus::Running) + count(TaskStatus::Pending));
    host["completed_tasks"] = json!(done);
    host["failed_tasks"] = json!(failed);
    host["success_rate"] = json!(if done + failed > 0 {
        done as f64 / (done + failed) as f64
    } else {
        1.0
    });
    host["total_cost_cents"] = json!(0);
    // What the LLM gateway counted, per workspace and per user.
    let mut by_workspace = serde_json::Map::new();
    let mut by_user = serde_json::Map::new();
    for u in state.store.llm_usage(who.listing_owner()).await? {
        let user = by_user
            .entry(u.owner.clone())
            .or_insert_with(|| json!({ "requests": 0, "input_tokens": 0, "output_tokens": 0 }));
        for (field, n) in [
            ("requests", u.requests),
            ("input_tokens", u.input_tokens),
            ("output_tokens", u.output_tokens),
        ] {
            user[field] = json!(user[field].as_i64().unwrap_or(0) + n);
        }
        by_workspace.insert(
            u.workspace_id.clone(),
            json!({ "owner": u.owner, "requests": u.requests, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens }),
        );
    }
    host["llm"] = json!({ "workspaces": by_workspace, "users": by_user });
    host["berth"] = json!({
        "uptime_secs": state.started.elapsed().as_secs(),
        "workspaces": workspaces,
        "agents": state.agents.counts(who.listing_owner()).await?,
    });
    Ok(Json(host))
}
