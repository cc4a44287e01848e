//! `/api/providers`: configured providers and API keys. Keys are sealed at rest and never answered.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Json, Path};
use crate::app::AppState;
use crate::audit::Entry;
use crate::error::{ApiError, ApiResult};
use crate::missions::providers::{self, ProviderView};
use crate::principal::Principal;

#[utoipa::path(
    get, path = "/api/providers", tag = "providers",
    summary = "Providers from the OpenCode config and the API, with whether a key is set and their models",
    description = "Never the key itself.",
    responses((status = 200, description = "the providers", body = Vec<ProviderView>)),
)]
pub async fn list_providers(State(s): State<AppState>) -> ApiResult<Json<Vec<ProviderView>>> {
    Ok(Json(
        providers::list(s.missions.fragment(), &s.store).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct AuthRequest {
    api_key: Option<String>,
    /// `api` (the default) or `oauth`.
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Provider keys are the server's: admins set and remove them, every user's agents use them.
#[utoipa::path(
    post, path = "/api/providers/{id}/auth", tag = "providers",
    summary = "Set a provider's API key (admins; encrypted at rest)",
    params(("id" = String, Path, description = "the provider's id, e.g. `openai`")),
    request_body = AuthRequest,
    responses(
        (status = 204, description = "the key is set"),
        (status = 400, description = "an invalid provider id, no `api_key`, a key over 8 KiB or of several lines, or `type: oauth` (no OAuth flow can complete here)"),
        (status = 403, description = "the caller is not an admin"),
    ),
)]
pub async fn set_provider_auth(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(req): Json<AuthRequest>,
) -> ApiResult<StatusCode> {
    who.require_admin("setting a provider key")?;
    providers::check_provider_id(&id)?;
    if req.kind.as_deref() == Some("oauth") {
        return Err(ApiError::invalid(format!(
            "provider {id} has no OAuth flow that can complete on this server; set an API key with {{\"api_key\": \"...\"}}"
        )));
    }
    let key = req
        .api_key
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("api_key is required"))?;
    if key.len() > 8192 || key.contains(['\0', '\n']) {
        return Err(ApiError::invalid("api_key must be one line under 8 KiB"));
    }
    s.store
        .set_provider_key(&id, &s.secrets.seal(key.trim()))
        .await?;
    s.audit
        .record(Entry::ok(&who.name, "provider_key.set", Some(&id)))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete, path = "/api/providers/{id}/auth", tag = "providers",
    summary = "Remove a provider's API key (admins)",
    params(("id" = String, Path, description = "the provider's id")),
    responses(
        (status = 204, description = "removed"),
        (status = 400, description = "an invalid provider id"),
        (status = 403, description = "the caller is not an admin"),
        (status = 404, description = "the provider has no key set"),
    ),
)]
pub async fn delete_provider_auth(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require_admin("removing a provider key")?;
    providers::check_provider_id(&id)?;
    if !s.store.delete_provider_key(&id).await? {
        return Err(ApiError::not_found(format!("provider {id} has no key set")));
    }
    s.audit
        .record(Entry::ok(&who.name, "provider_key.delete", Some(&id)))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
