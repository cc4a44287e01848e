//! `/api/auth/tokens`: long-lived API tokens. Each acts as its user wherever a login token does; it is
//! answered once at creation and stored only as a hash.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::openapi::shapes;
use super::{Json, Path};
use crate::app::AppState;
use crate::audit::Entry;
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::secrets;
use crate::store::tokens::{ApiTokenRow, TokenScope};

/// Every API token starts with this, so it is recognisable in a config file or a leak scan.
pub const API_TOKEN_PREFIX: &str = "berth_";
const MAX_DAYS: u32 = 3650;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    /// 1 to 3650; absent: the token does not expire.
    expires_in_days: Option<u32>,
    /// `user` (default): acts as the caller everywhere; `worker`: only for the caller's agent workers
    /// (`/v1/worker/*`, a worker's own work under `/v1/opencode`, `/mcp`), refused everywhere else.
    #[serde(default)]
    scope: Option<TokenScope>,
}

/// An API token, never its secret.
#[derive(Serialize, ToSchema)]
pub struct TokenView {
    id: String,
    name: String,
    owner: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    scope: TokenScope,
}

impl From<ApiTokenRow> for TokenView {
    fn from(t: ApiTokenRow) -> Self {
        Self {
            id: t.id,
            name: t.name,
            owner: t.owner,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            scope: t.scope,
        }
    }
}

#[utoipa::path(
    post, path = "/api/auth/tokens", tag = "tokens",
    summary = "Create an API token for the caller",
    description = "The secret (`berth_…`) is in this answer only; berth stores its hash.",
    request_body = CreateToken,
    responses(
        (status = 201, description = "the token, with its secret shown once", body = shapes::NewToken),
        (status = 400, description = "name is not 1 to 128 characters, or expires_in_days is not 1 to 3650"),
    ),
)]
pub async fn create_token(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Json(req): Json<CreateToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name must be 1 to 128 characters without control characters",
        ));
    }
    if req.expires_in_days.is_some_and(|d| d == 0 || d > MAX_DAYS) {
        return Err(ApiError::invalid(format!(
            "expires_in_days must be 1 to {MAX_DAYS} (or absent for no expiry)"
        )));
    }
    let now = Utc::now();
    let (_, user_version) = s
        .auth
        .user_version(&who.name)
        .ok_or_else(|| ApiError::Unauthorized("the user is gone".into()))?;
    let row = ApiTokenRow {
        id: format!("tok_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        owner: who.name.clone(),
        name: name.to_string(),
        created_at: now,
        expires_at: req
            .expires_in_days
            .map(|d| now + chrono::Duration::days(i64::from(d))),
        last_used_at: None,
        user_version,
        scope: req.scope.unwrap_or(TokenScope::User),
    };
    let token = format!("{API_TOKEN_PREFIX}{}", secrets::random_hex(24));
    s.store
        .insert_api_token(&row, &secrets::sha256_hex(token.as_bytes()))
        .await?;
    s.audit
        .record(
            Entry::ok(&who.name, "token.create", Some(&row.id))
                .detail(json!({ "name": row.name, "scope": row.scope })),
        )
        .await;
    let mut v = json!(TokenView::from(row));
    v["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(v)))
}

/// The caller's tokens (an admin's listing has everyone's, each with its owner); never the secret.
#[utoipa::path(
    get, path = "/api/auth/tokens", tag = "tokens",
    summary = "The caller's API tokens (an admin's: everyone's); never the secret",
    responses((status = 200, description = "the tokens", body = Vec<TokenView>)),
)]
pub async fn list_tokens(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let rows = s.store.list_api_tokens(who.listing_owner()).await?;
    Ok(Json(rows.into_iter().map(TokenView::from).collect()))
}

#[utoipa::path(
    delete, path = "/api/auth/tokens/{id}", tag = "tokens",
    summary = "Revoke an API token at once",
    params(("id" = String, Path, description = "the token's id (`tok_…`)")),
    responses(
        (status = 204, description = "revoked"),
        (status = 404, description = "no such token of the caller's"),
    ),
)]
pub async fn delete_token(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    match s.store.get_api_token(&id).await? {
        Some(t) if who.may_act_on(&t.owner) => {
            s.store.delete_api_token(&id).await?;
            s.audit
                .record(Entry::ok(&who.name, "token.revoke", Some(&id)))
                .await;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::not_found(format!("no token with id {id}"))),
    }
}
