//! `/v1/opencode`, `/v1/monitor` and `/health`: the seed's CodeTether API. Errors here are `{"detail"}`
//! (see `detail_errors`); everything but `/health` needs a user's token or a worker's own token.

mod codebases;
mod runtime;
pub mod stock;
mod tasks;
mod workers;

pub use codebases::*;
pub use runtime::*;
pub use tasks::*;
pub use workers::*;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::openapi::shapes;
use super::Json;
use crate::agents::{check_worker_id, shown, worker_key, Agents, Caller, Tied};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

/// Accepts a user's token (login or API token), a worker's, or a user's worker token; the caller goes
/// into the request. A worker token, and a user's token on `/v1/worker/*`, act as the worker the
/// request names. Calls without a token are CodeTether's stock worker's (see `stock`).
pub async fn require_caller(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Ok(token) = super::auth::bearer(&req).map(str::to_string) else {
        let req = stock::tokenless(&s, peer.ip(), req).await?;
        let actor = req
            .extensions()
            .get::<Caller>()
            .map_or_else(|| "worker:unvouched".to_string(), Caller::name);
        let mut resp = next.run(req).await;
        resp.extensions_mut().insert(super::observe::Actor(actor));
        return Ok(resp);
    };
    let (mut req, caller) = match super::auth::worker_caller(&s, &token).await? {
        Some((id, owner)) => (req, Caller::Worker { id, owner }),
        None => {
            let (who, cred) = super::auth::authenticate(&s, &token).await?;
            let for_worker =
                cred.is_worker_scoped() || stock::route_of(&req).starts_with("/v1/worker/");
            if for_worker {
                let (req, named) = stock::worker_id_of(req).await?;
                let named = named.ok_or_else(|| {
                    ApiError::invalid(
                        "a worker token acts as a worker: name it (worker_id, X-Worker-ID)",
                    )
                })?;
                check_worker_id(&named)?;
                let id = worker_key(&who.name, &named);
                (
                    req,
                    Caller::Worker {
                        id,
                        owner: who.name,
                    },
                )
            } else {
                (req, Caller::User(who))
            }
        }
    };
    if let Caller::Worker { id, owner } = &caller {
        // A token-authenticated call of a worker vouches for its token-less ones from this address.
        let tied = Tied {
            key: id.clone(),
            owner: owner.clone(),
            token: token.clone(),
        };
        s.agents.links().vouch(peer.ip(), shown(id), &tied);
        req.extensions_mut().insert(tied);
    }
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
