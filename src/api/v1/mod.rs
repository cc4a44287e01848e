//! `/v1/opencode`, `/v1/monitor` and `/health`: the seed's CodeTether API. Errors here are `{"detail"}`
//! (see `detail_errors`); everything but `/health` needs a user's token or a worker's own token.

mod codebases;
mod runtime;
mod tasks;

pub use codebases::*;
pub use runtime::*;
pub use tasks::*;

use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::openapi::shapes;
use super::Json;
use crate::agents::{Agents, Caller};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

/// Accepts a user's token (login or API token) or a worker's; the caller goes into the request.
pub async fn require_caller(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = super::auth::bearer(&req)
        .map_err(|_| {
            ApiError::Unauthorized("Not authenticated: send Authorization: Bearer <token>".into())
        })?
        .to_string();
    let caller = match super::auth::worker_caller(&s, &token).await? {
        Some((id, owner)) => Caller::Worker { id, owner },
        None => Caller::User(super::auth::authenticate(&s, &token).await?.0),
    };
    let actor = super::observe::Actor(caller.name());
    req.extensions_mut().insert(caller);
    req.extensions_mut()
        .insert(super::auth::Lapse::new(s, token));
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(actor);
    Ok(resp)
}

/// The seed's error body: `{"detail": "..."}` for every error under `/v1` and `/health`, whoever made
/// it (handlers, extractors, auth, the body limit, the fallback).
pub async fn detail_errors(req: Request, next: Next) -> Response {
    let seed_path = req.uri().path().starts_with("/v1/") || req.uri().path() == "/health";
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !seed_path || resp.status().as_u16() < 400 || !is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, axum::Json(json!({ "detail": "error" }))).into_response();
    };
    let detail = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    let mut out = (parts.status, axum::Json(json!({ "detail": detail }))).into_response();
    // The request log reads who asked and which route from the extensions.
    *out.extensions_mut() = parts.extensions;
    for (k, v) in parts.headers.iter() {
        if k != CONTENT_TYPE && k != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

#[utoipa::path(
    get, path = "/health", tag = "v1 opencode",
    summary = "The seed's liveness check (public)",
    responses((status = 200, description = "berth answers", body = shapes::SeedHealth)),
)]
pub async fn get_health() -> Json<Value> {
    Json(json!({ "status": "healthy", "service": "berth", "version": env!("CARGO_PKG_VERSION") }))
}

#[utoipa::path(
    get, path = "/v1/opencode/status", tag = "v1 opencode",
    summary = "Whether the OpenCode integration is ready, with the caller's codebase count and runtime",
    responses((status = 200, description = "the status", body = shapes::OpencodeStatus)),
)]
pub async fn get_opencode_status(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    Ok(Json(a.status(&c).await?))
}

#[utoipa::path(
    get, path = "/v1/opencode/models", tag = "v1 opencode",
    summary = "Models of the configured providers and of what running servers report",
    responses((status = 200, description = "the models", body = Vec<shapes::Model>)),
)]
pub async fn list_models(
    State(a): State<Agents>,
    Extension(c): Extension<Caller>,
) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(a.models(&c).await?))
}
