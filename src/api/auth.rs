//! `/api/auth`: login and token verification, and the middleware that guards every other `/api` route.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Json;
use crate::auth::{Auth, Claims};
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize)]
pub struct LoginRequest {
    username: Option<String>,
    password: String,
}

pub async fn login(
    State(auth): State<Auth>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<Value>> {
    if req.password.len() > 1024 || req.username.as_ref().is_some_and(|u| u.len() > 256) {
        return Err(ApiError::Unauthorized("invalid credentials".into()));
    }
    let account = auth.account(req.username.as_deref());
    let client = peer.ip();
    if let Err(wait) = auth.throttle().attempt(client, &account) {
        return Err(ApiError::RateLimited(format!(
            "too many failed logins; try again in {} s",
            wait.as_secs() + 1
        )));
    }
    // argon2 is deliberately slow: keep it off the async workers.
    let checker = auth.clone();
    let token =
        tokio::task::spawn_blocking(move || checker.login(req.username.as_deref(), &req.password))
            .await
            .map_err(|e| ApiError::Internal(e.into()))??;
    match token {
        Some(t) => {
            auth.throttle().succeeded(client, &account);
            Ok(Json(
                json!({ "token": t.token, "expires_at": t.expires_at }),
            ))
        }
        None => {
            tracing::info!("failed login");
            Err(ApiError::Unauthorized("invalid credentials".into()))
        }
    }
}

pub async fn verify(claims: axum::Extension<Claims>) -> Json<Value> {
    Json(json!({ "valid": true, "user": claims.sub, "expires_at": claims.exp }))
}

/// Requires `Authorization: Bearer <token>`; the claims go into the request for handlers that want them.
pub async fn require_token(
    State(auth): State<Auth>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| ApiError::Unauthorized("expected a Bearer token".into()))?;
    let claims = auth
        .verify(token.trim())
        .ok_or_else(|| ApiError::Unauthorized("invalid or expired token".into()))?;
    req.extensions_mut().insert(claims);
    Ok(next.run(req).await)
}
