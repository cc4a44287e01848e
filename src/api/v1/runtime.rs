//! The OpenCode runtime view and the monitor.

use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;

use crate::agents::Agents;
use crate::api::{limit_or, Json, Page, Path, Query};
use crate::error::ApiResult;

pub async fn get_runtime_status(State(a): State<Agents>) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_status().await?))
}

pub async fn list_runtime_projects(State(a): State<Agents>) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_projects().await?))
}

#[derive(Deserialize)]
pub struct SessionFilter {
    project_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list_runtime_sessions(
    State(a): State<Agents>,
    Query(f): Query<SessionFilter>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = Page {
        limit: f.limit,
        offset: f.offset,
    }
    .get(50)?;
    Ok(Json(
        a.runtime_sessions(f.project_id.as_deref(), limit, offset)
            .await?,
    ))
}

pub async fn get_runtime_session(
    State(a): State<Agents>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_session(&id).await?))
}

pub async fn list_runtime_messages(
    State(a): State<Agents>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = p.get(100)?;
    Ok(Json(a.runtime_messages(&id, limit, offset).await?))
}

#[derive(Deserialize)]
pub struct PartsQuery {
    message_id: Option<String>,
    limit: Option<i64>,
}

pub async fn list_runtime_parts(
    State(a): State<Agents>,
    Path(id): Path<String>,
    Query(q): Query<PartsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = limit_or(q.limit, 100)?;
    Ok(Json(
        a.runtime_parts(&id, q.message_id.as_deref(), limit).await?,
    ))
}

pub async fn list_monitor_agents(State(a): State<Agents>) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(a.monitor_agents().await?))
}

#[derive(Deserialize)]
pub struct MonitorQuery {
    limit: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub async fn list_monitor_messages(
    State(a): State<Agents>,
    Query(q): Query<MonitorQuery>,
) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(
        a.monitor_messages(q.kind.as_deref(), limit_or(q.limit, 100)?)
            .await?,
    ))
}

pub async fn get_monitor_stats(State(a): State<Agents>) -> ApiResult<Json<Value>> {
    Ok(Json(a.monitor_stats().await?))
}
