//! `GET /api/audit`: the audit log, for admins, newest first, with filters.

use axum::extract::State;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{limit_or, Json, Query};
use crate::audit::Audit;
use crate::error::ApiResult;
use crate::principal::Principal;
use crate::store::audit::AuditFilter;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    /// An action (`workspace.exec`) or a prefix ending in `.` (`workspace.`).
    action: Option<String>,
    target: Option<String>,
    since: Option<DateTime<Utc>>,
    /// Entries older than this id: the next page.
    before: Option<i64>,
    limit: Option<i64>,
}

/// One entry of the audit log.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    id: i64,
    at: DateTime<Utc>,
    /// The user (or `worker:<id>`) who acted; for a login, the account it named.
    actor: String,
    /// e.g. `login`, `token.create`, `workspace.exec`, `library.save`.
    action: String,
    /// What it acted on: a workspace, mission, codebase or token id, a library item.
    target: Option<String>,
    /// `ok`, `failed` or `denied`.
    outcome: String,
    /// The client's address, for logins.
    client: Option<String>,
    /// More about the action (an exec's command line; never a secret).
    #[schema(value_type = Object)]
    detail: Value,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    entries: Vec<AuditEntry>,
}

#[utoipa::path(
    get, path = "/api/audit", tag = "system",
    summary = "The audit log, newest first (admins)",
    description = "Logins and their failures, logouts, API tokens, workspace create, update, delete, build and exec, missions, codebases, library writes and syncs, provider keys. Page with `before` (the last id seen).",
    params(AuditQuery),
    responses(
        (status = 200, description = "the entries", body = AuditPage),
        (status = 403, description = "not an admin"),
    ),
)]
pub async fn list_audit(
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    who.require_admin("reading the audit log")?;
    let filter = AuditFilter {
        actor: q.actor.as_deref(),
        action: q.action.as_deref(),
        target: q.target.as_deref(),
        since: q.since,
        before_id: q.before,
    };
    let rows = audit
        .store()
        .list_audit(filter, limit_or(q.limit, 100)?)
        .await?;
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            detail: serde_json::from_str(&r.detail).unwrap_or_default(),
            id: r.id,
            at: r.at,
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            client: r.client,
        })
        .collect();
    Ok(Json(AuditPage { entries }))
}
