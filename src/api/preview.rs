//! `POST /api/workspaces/{id}/preview`: a URL that opens one port of a workspace in a browser, through
//! berth's host routing (`{port}-{id}.{BERTH_E2B_DOMAIN}`), with an expiring grant in place of a token.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Json, Path};
use crate::audit::{Audit, Entry};
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::workspaces::preview::DEFAULT_TTL;
use crate::workspaces::Workspaces;

/// The query parameter (and then the cookie) that carries a preview grant.
pub const GRANT: &str = "berth_preview";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The port in the workspace, 1 to 65535.
    pub port: u16,
    /// How long the URL works, in seconds (default 3600, at most a week).
    pub ttl_secs: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct Preview {
    /// Opens the port; its first request sets a cookie for that host, so the page's own requests
    /// need nothing more. Anyone holding it reaches the port until it expires.
    pub url: String,
    pub port: u16,
    pub expires_at: DateTime<Utc>,
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/preview", tag = "workspaces",
    summary = "A preview URL for one of the workspace's ports (needs BERTH_E2B_DOMAIN and wildcard DNS)",
    description = "The URL names `{port}-{id}.{domain}` (berth's port and scheme as this request reached it) and carries an expiring grant sealed by berth: a browser opens it with no token. Requests to that host with a token of a user who may act on the workspace need no grant.",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    request_body = PreviewRequest,
    responses(
        (status = 201, description = "the URL", body = Preview),
        (status = 400, description = "a port of 0, a ttl out of range, or a host workspace"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "no BERTH_E2B_DOMAIN is configured, or the workspace has no network"),
    ),
)]
pub async fn create_preview(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(req): Json<PreviewRequest>,
) -> ApiResult<(StatusCode, Json<Preview>)> {
    let w = ws.owned(&who, &id).await?;
    if w.workspace_type != crate::workspaces::model::WorkspaceType::Container {
        return Err(ApiError::invalid(
            "a host workspace's ports are the host's: berth previews container workspaces",
        ));
    }
    if w.network == "none" {
        return Err(ApiError::conflict(
            "the workspace has no network (network: none), so no port to reach",
        ));
    }
    let Some(domain) = ws.config().e2b_domain.clone() else {
        return Err(ApiError::conflict(
            "previews need a domain: set BERTH_E2B_DOMAIN (with wildcard DNS for it pointing at berth)",
        ));
    };
    let ttl = req.ttl_secs.map_or(DEFAULT_TTL, Duration::from_secs);
    let (grant, expires_at) = ws.preview_grant(&w.id, req.port, ttl)?;
    // berth's own port and scheme, as this request reached it (a proxy in front says its scheme).
    let listen_port = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .map(|(_, p)| p)
        .filter(|p| p.parse::<u16>().is_ok())
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    let query = serde_urlencoded::to_string([(GRANT, grant.as_str())])
        .map_err(|e| ApiError::Internal(e.into()))?;
    let url = format!(
        "{scheme}://{}-{}.{domain}{listen_port}/?{query}",
        req.port, w.id
    );
    audit
        .record(Entry::ok(&who.name, "workspace.preview", Some(&w.id)))
        .await;
    Ok((
        StatusCode::CREATED,
        Json(Preview {
            url,
            port: req.port,
            expires_at,
        }),
    ))
}
