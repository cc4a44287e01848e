//! The OpenCode runtime view and the monitor.

use axum::extract::State;
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;

use crate::agents::{Agents, Caller};
use crate::api::{limit_or, Json, Page, Path, Query};
use crate::error::ApiResult;

pub async fn get_runtime_status(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_status(&c).await?))
}

pub async fn list_runtime_projects(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_projects(&c).await?))
}

#[derive(Deserialize)]
pub struct SessionFilter {
    project_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

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

pub async fn get_runtime_session(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.runtime_session(&c, &id).await?))
}

pub async fn list_runtime_messages(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> ApiResult<Json<Value>> {
    let (limit, offset) = p.get(100)?;
    Ok(Json(a.runtime_messages(&c, &id, limit, offset).await?))
}

#[derive(Deserialize)]
pub struct PartsQuery {
    message_id: Option<String>,
    limit: Option<i64>,
}

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

pub async fn list_monitor_agents(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(a.monitor_agents(&c).await?))
}

#[derive(Deserialize)]
pub struct MonitorQuery {
    limit: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

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

pub async fn get_monitor_stats(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.monitor_stats(&c).await?))
}
