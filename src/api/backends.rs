//! `/api/backends`: the agent backends a mission can run on, as Open Agent's dashboard asks for them.
//! berth runs OpenCode, so there is one.

use axum::extract::State;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{Json, Path};
use crate::error::{ApiError, ApiResult};
use crate::missions::Missions;

const OPENCODE: &str = "opencode";

#[derive(Serialize, ToSchema)]
pub struct Backend {
    id: &'static str,
    name: &'static str,
}

#[utoipa::path(
    get, path = "/api/backends", tag = "missions",
    summary = "The agent backends missions run on: OpenCode",
    responses((status = 200, description = "the backends", body = Vec<Backend>)),
)]
pub async fn list_backends() -> Json<Vec<Backend>> {
    Json(vec![Backend {
        id: OPENCODE,
        name: "OpenCode",
    }])
}

fn known(id: &str) -> ApiResult<()> {
    if id != OPENCODE {
        return Err(ApiError::not_found(format!(
            "no backend {id:?}: berth runs OpenCode ({OPENCODE})"
        )));
    }
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct BackendConfig {
    id: &'static str,
    name: &'static str,
    enabled: bool,
    #[schema(value_type = Object)]
    settings: Value,
    cli_available: bool,
}

#[utoipa::path(
    get, path = "/api/backends/{id}/config", tag = "missions",
    summary = "A backend's settings (OpenCode's are the server's)",
    params(("id" = String, Path, description = "`opencode`")),
    responses(
        (status = 200, description = "the backend", body = BackendConfig),
        (status = 404, description = "any other backend"),
    ),
)]
pub async fn backend_config(Path(id): Path<String>) -> ApiResult<Json<BackendConfig>> {
    known(&id)?;
    Ok(Json(BackendConfig {
        id: OPENCODE,
        name: "OpenCode",
        enabled: true,
        settings: json!({}),
        cli_available: true,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct BackendAgent {
    id: String,
    name: String,
}

#[utoipa::path(
    get, path = "/api/backends/{id}/agents", tag = "missions",
    summary = "The agents a mission on the backend may name: OpenCode's own, then the library's",
    params(("id" = String, Path, description = "`opencode`")),
    responses(
        (status = 200, description = "the agents", body = Vec<BackendAgent>),
        (status = 404, description = "any other backend"),
    ),
)]
pub async fn backend_agents(
    State(m): State<Missions>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<BackendAgent>>> {
    known(&id)?;
    let agents = m.agent_names().await?;
    Ok(Json(
        agents
            .into_iter()
            .map(|a| BackendAgent {
                id: a.clone(),
                name: a,
            })
            .collect(),
    ))
}
