//! The OpenCode runtime view and the monitor.

use axum::extract::State;
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::agents::{Agents, Caller};
use crate::api::openapi::shapes;
use crate::api::{limit_or, Json, Page, Path, Query};
use crate::error::ApiResult;

#[utoipa::path(
    get, path = "/v1/opencode/runtime/status", tag = "v1 runtime",
    summary = "The OpenCode servers berth runs for the caller, their projects and sessions",
    responses(
        (status = 200, description = "the runtime", body = shapes::RuntimeStatus),
        (status = 403, description = "a worker's token: this needs a user's"),
    ),
)]
pub async fn get_runtime_status(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_status(&c).await?))
}

#[utoipa::path(
    get, path = "/v1/opencode/runtime/projects", tag = "v1 runtime",
    summary = "OpenCode's projects on the caller's servers",
    responses(
        (status = 200, description = "the projects", body = shapes::RuntimeProjects),
        (status = 403, description = "a worker's token: this needs a user's"),
    ),
)]
pub async fn list_runtime_projects(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_projects(&c).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionFilter {
    /// Only this project's sessions.
    project_id: Option<String>,
    /// 1 to 10000 (default 50).
    limit: Option<i64>,
    /// Default 0.
    offset: Option<i64>,
}

#[utoipa::path(
    get, path = "/v1/opencode/runtime/sessions", tag = "v1 runtime",
    summary = "OpenCode sessions on the caller's servers (missions' and triggers'), newest first",
    params(SessionFilter),
    responses(
        (status = 200, description = "a page of sessions", body = shapes::RuntimeSessions),
        (status = 400, description = "limit or offset out of range"),
        (status = 403, description = "a worker's token: this needs a user's"),
    ),
)]
pub async fn list_runtime_sessions(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Query(f): Query<SessionFilter>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = Page {
        limit: f.limit,
        offset: f.offset,
    }
    .get(50)?;
    Ok(Json(
        a.runtime_sessions(&c, f.project_id.as_deref(), limit, offset)
            .await?,
    ))
}

#[utoipa::path(
    get, path = "/v1/opencode/runtime/sessions/{id}", tag = "v1 runtime",
    summary = "Read an OpenCode session",
    params(("id" = String, Path, description = "the OpenCode session's id")),
    responses(
        (status = 200, description = "the session", body = shapes::RuntimeSession),
        (status = 400, description = "not a session id"),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no session on the caller's OpenCode servers"),
    ),
)]
pub async fn get_runtime_session(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_session(&c, &id).await?))
}

#[utoipa::path(
    get, path = "/v1/opencode/runtime/sessions/{id}/messages", tag = "v1 runtime",
    summary = "An OpenCode session's messages",
    params(("id" = String, Path, description = "the OpenCode session's id"), Page),
    responses(
        (status = 200, description = "a page of messages", body = shapes::RuntimeMessages),
        (status = 400, description = "not a session id"),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no session on the caller's OpenCode servers"),
        (status = 502, description = "the OpenCode server did not answer"),
    ),
)]
pub async fn list_runtime_messages(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = p.get(100)?;
    Ok(Json(a.runtime_messages(&c, &id, limit, offset).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PartsQuery {
    /// Only this message's parts.
    message_id: Option<String>,
    /// 1 to 10000 (default 100).
    limit: Option<i64>,
}

#[utoipa::path(
    get, path = "/v1/opencode/runtime/sessions/{id}/parts", tag = "v1 runtime",
    summary = "An OpenCode session's message parts (text, tools, steps)",
    params(("id" = String, Path, description = "the OpenCode session's id"), PartsQuery),
    responses(
        (status = 200, description = "the parts", body = shapes::RuntimeParts),
        (status = 400, description = "not a session id"),
        (status = 403, description = "a worker's token: this needs a user's"),
        (status = 404, description = "no session on the caller's OpenCode servers"),
        (status = 502, description = "the OpenCode server did not answer"),
    ),
)]
pub async fn list_runtime_parts(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<PartsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = limit_or(q.limit, 100)?;
    Ok(Json(
        a.runtime_parts(&c, &id, q.message_id.as_deref(), limit)
            .await?,
    ))
}

#[utoipa::path(
    get, path = "/v1/monitor/agents", tag = "v1 monitor",
    summary = "One agent per codebase of the caller's, with its activity",
    responses(
        (status = 200, description = "the agents", body = Vec<shapes::MonitorAgent>),
        (status = 403, description = "a worker's token: this needs a user's"),
    ),
)]
pub async fn list_monitor_agents(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(a.monitor_agents(&c).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonitorQuery {
    /// 1 to 10000 (default 100).
    limit: Option<i64>,
    /// `agent`, `human`, `system`, `tool` or `error`.
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/monitor/messages", tag = "v1 monitor",
    summary = "berth's activity log: prompts, answers, tool calls, task and worker changes, errors; newest first",
    params(MonitorQuery),
    responses(
        (status = 200, description = "the entries", body = Vec<shapes::MonitorMessage>),
        (status = 400, description = "an unknown type, or limit out of range"),
        (status = 403, description = "a worker's token: this needs a user's"),
    ),
)]
pub async fn list_monitor_messages(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Query(q): Query<MonitorQuery>,
) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(
        a.monitor_messages(&c, q.kind.as_deref(), limit_or(q.limit, 100)?)
            .await?,
    ))
}

#[utoipa::path(
    get, path = "/v1/monitor/stats", tag = "v1 monitor",
    summary = "Totals of the activity log",
    responses(
        (status = 200, description = "the totals", body = shapes::MonitorStats),
        (status = 403, description = "a worker's token: this needs a user's"),
    ),
)]
pub async fn get_monitor_stats(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.monitor_stats(&c).await?))
}
