//! `/api/auth`: login, logout and token verification, and the middleware that guards every other `/api`
//! route with a login token or an API token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::observe::Actor;
use super::openapi::shapes;
use super::tokens::API_TOKEN_PREFIX;
use super::Json;
use crate::agents::TOKEN_PREFIX as WORKER_TOKEN_PREFIX;
use crate::app::AppState;
use crate::audit::{Audit, Entry, Outcome};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::secrets;
use crate::store::tokens::TokenScope;

/// `username` only in multi-user mode.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    username: Option<String>,
    password: String,
}

#[utoipa::path(
    post, path = "/api/auth/login", tag = "auth",
    summary = "Log in with a password (and a username in multi-user mode) for a login token",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "a login token", body = shapes::LoginResponse),
        (status = 401, description = "invalid credentials"),
        (status = 429, description = "after ten failed logins from one address, or five against one account, each attempt waits a doubling delay (up to a minute) without any password being checked"),
    ),
)]

pub async fn login(
    State(auth): State<Auth>,
    State(audit): State<Audit>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Json<Value>> {
    if req.password.len() > 1024 || req.username.as_ref().is_some_and(|u| u.len() > 256) {
        return Err(ApiError::Unauthorized("invalid credentials".into()));
    }
    let account = auth.account(req.username.as_deref());
    let client = peer.ip();
    let attempt = |outcome| Entry {
        actor: "",
        action: "login",
        target: None,
        outcome,
        client: Some(client),
        detail: json!({}),
    };
    // A throttled attempt costs nothing and is not recorded (the request log has it): a flood of them
    // must not fill the audit log. Failures that were checked are.
    if let Err(wait) = auth.throttle().attempt(client, &account) {
        let secs = wait.as_secs() + 1;
        return Err(ApiError::RateLimited {
            message: format!("too many failed logins; try again in {secs} s"),
            retry_after_secs: secs,
        });
    }
    // argon2 is deliberately slow: keep it off the async workers, and only a few at a time.
    let permit = auth.hashing_permit().await;
    let checker = auth.clone();
    let token = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        checker.login(req.username.as_deref(), &req.password)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))??;
    match token {
        Some(t) => {
            auth.throttle().succeeded(client, &account);
            audit
                .record(Entry {
                    actor: &account,
                    ..attempt(Outcome::Ok)
                })
                .await;
            Ok(Json(json!({
                "token": t.token,
                "expires_at": t.expires_at,
                // Unix seconds, for clients that keep the token until then.
                "exp": t.expires_at.timestamp(),
            })))
        }
        None => {
            audit
                .record(Entry {
                    actor: &account,
                    ..attempt(Outcome::Failed)
                })
                .await;
            Err(ApiError::Unauthorized("invalid credentials".into()))
        }
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    Login { jti: String, exp: DateTime<Utc> },
    ApiToken { id: String, scope: TokenScope },
}

impl Credential {
    /// A worker token: only for the user's workers, never for the user's own actions.
    pub fn is_worker_scoped(&self) -> bool {
        matches!(
            self,
            Self::ApiToken {
                scope: TokenScope::Worker,
                ..
            }
        )
    }
}

#[utoipa::path(
    get, path = "/api/auth/verify", tag = "auth",
    summary = "Check the token: its user and role",
    responses((status = 200, description = "the token holds", body = shapes::VerifyResponse)),
)]
pub async fn verify(
    Extension(who): Extension<Principal>,
    Extension(cred): Extension<Credential>,
) -> Json<Value> {
    let expires_at = match cred {
        Credential::Login { exp, .. } => json!(exp.timestamp()),
        Credential::ApiToken { .. } => Value::Null,
    };
    Json(json!({
        "valid": true,
        "user": who.name,
        "role": who.role,
        "expires_at": expires_at,
    }))
}

/// Voids the token it is called with: a login token at once (until it would have expired), an API
/// token for good.
#[utoipa::path(
    post, path = "/api/auth/logout", tag = "auth",
    summary = "Void the token this request carries",
    description = "A login token is void until it would have expired; an API token for good.",
    responses(
        (status = 200, description = "the token is void", body = shapes::Success),
        (status = 409, description = "a login token from before logout support; it expires on its own"),
    ),
)]
pub async fn logout(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Extension(cred): Extension<Credential>,
) -> ApiResult<Json<Value>> {
    s.audit.record(Entry::ok(&who.name, "logout", None)).await;
    match cred {
        Credential::Login { jti, exp } => {
            if jti.is_empty() {
                return Err(ApiError::conflict(
                    "this token predates logout support; it expires on its own",
                ));
            }
            s.store.revoke_login(&jti, exp).await?;
        }
        Credential::ApiToken { id, .. } => {
            s.store.delete_api_token(&id).await?;
        }
    }
    Ok(Json(json!({ "success": true })))
}

/// The bearer token of a request.
pub fn bearer(req: &Request) -> Result<&str, ApiError> {
    bearer_of(req.headers())
}

pub fn bearer_of(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("expected a Bearer token".into()))
}

/// The `token` query parameter of a WebSocket upgrade request.
fn websocket_query_token(req: &Request) -> Option<String> {
    let upgrade = req
        .headers()
        .get(axum::http::header::UPGRADE)?
        .to_str()
        .ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token" && !v.is_empty()).then(|| v.to_string())
    })
}

/// The user behind a login token or an API token; 401 for anything else (unknown, expired, revoked,
/// or its user gone).
pub async fn authenticate(s: &AppState, token: &str) -> ApiResult<(Principal, Credential)> {
    let void = || ApiError::Unauthorized("invalid or expired token".into());
    if token.starts_with(API_TOKEN_PREFIX) {
        let row = s
            .store
            .use_api_token(&secrets::sha256_hex(token.as_bytes()), Utc::now())
            .await?
            .ok_or_else(void)?;
        let (who, version) = s.auth.user_version(&row.owner).ok_or_else(void)?;
        if version != row.user_version {
            return Err(void());
        }
        let cred = Credential::ApiToken {
            id: row.id,
            scope: row.scope,
        };
        return Ok((who, cred));
    }
    let (claims, who) = s.auth.verify(token).ok_or_else(void)?;
    if !claims.jti.is_empty() && s.store.login_revoked(&claims.jti).await? {
        return Err(void());
    }
    let exp = DateTime::from_timestamp(claims.exp, 0).unwrap_or_default();
    Ok((
        who,
        Credential::Login {
            jti: claims.jti,
            exp,
        },
    ))
}

/// How often a long-lived answer (an event stream, a proxied stream) checks that its token still holds.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The token a request came with, for answers that outlive the request: they end once it no longer
/// authenticates (a logout, its expiry, a removed user or worker).
#[derive(Clone)]
pub struct Lapse {
    state: AppState,
    token: String,
}

impl Lapse {
    pub fn new(state: AppState, token: String) -> Self {
        Self { state, token }
    }

    /// Resolves once the token no longer authenticates.
    pub async fn wait(self) {
        loop {
            tokio::time::sleep(RECHECK).await;
            if !self.holds().await {
                return;
            }
        }
    }

    async fn holds(&self) -> bool {
        still_holds(&self.state, &self.token).await
    }
}

/// Whether a token still authenticates (a store that fails for a moment is not a logout).
pub async fn still_holds(s: &AppState, token: &str) -> bool {
    match worker_caller(s, token).await {
        Ok(Some(_)) => true,
        Ok(None) => match authenticate(s, token).await {
            Ok(_) => true,
            Err(ApiError::Unauthorized(_)) => false,
            Err(_) => true,
        },
        Err(ApiError::Unauthorized(_)) => false,
        Err(_) => true,
    }
}

/// `(worker id, owner)` when the token is a worker's whose owner is still a user; 401 for a worker
/// token whose owner is gone; `None` for any other token.
pub async fn worker_caller(s: &AppState, token: &str) -> ApiResult<Option<(String, String)>> {
    if !token.starts_with(WORKER_TOKEN_PREFIX) {
        return Ok(None);
    }
    match s.agents.worker_for_token(token).await? {
        Some((id, owner)) if s.auth.user(&owner).is_some() => Ok(Some((id, owner))),
        Some(_) => Err(ApiError::Unauthorized(
            "the user this worker belongs to is gone".into(),
        )),
        None => Ok(None),
    }
}

/// Requires `Authorization: Bearer <token>` of a user; the principal and credential go into the
/// request. A worker's token is refused here (403): it is for `/v1` alone.
pub async fn require_token(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = match bearer(&req) {
        Ok(t) => t.to_string(),
        // Browsers cannot set headers on a WebSocket: a `token` query parameter there.
        Err(e) => websocket_query_token(&req).ok_or(e)?,
    };
    if worker_caller(&s, &token).await?.is_some() {
        return Err(ApiError::Forbidden(
            "a worker's token is only valid under /v1".into(),
        ));
    }
    let (who, cred) = authenticate(&s, &token).await?;
    if cred.is_worker_scoped() {
        return Err(ApiError::Forbidden(
            "a worker token is only valid for workers, under /v1 and /mcp".into(),
        ));
    }
    let actor = Actor(who.name.clone());
    req.extensions_mut().insert(who);
    req.extensions_mut().insert(cred);
    req.extensions_mut().insert(Lapse::new(s, token));
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(actor);
    Ok(resp)
}
