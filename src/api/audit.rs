//! `GET /api/audit`: the audit log, for admins, newest first, with filters.

use axum::extract::State;
use axum::Extension;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{limit_or, Json, Query};
use crate::audit::Audit;
use crate::error::ApiResult;
use crate::principal::Principal;
use crate::store::audit::AuditFilter;

#[derive(Deserialize)]
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

pub async fn list_audit(
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
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
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "outcome": r.outcome,
                "client": r.client,
                "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}
