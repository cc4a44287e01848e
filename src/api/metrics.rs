//! `GET /metrics`: Prometheus text for an operator's scraper (with `BERTH_METRICS_TOKEN`) or an admin.
//! Counts that the store keeps are read now, so they are never stale.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::auth::{authenticate, bearer_of};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

#[utoipa::path(
    get, path = "/metrics", tag = "system",
    summary = "Prometheus metrics",
    description = "Prometheus text format (`berth_*`): requests by route, method and status with latency; builds, init runs and execs by outcome; engine errors; open event streams; and, read at each scrape, workspaces and tasks by status, running missions and agent servers. Send an admin's token, or the scraper token the operator set as `BERTH_METRICS_TOKEN`.",
    responses(
        (status = 200, description = "the metrics", content_type = "text/plain", body = String),
        (status = 403, description = "a user's token that is not an admin's"),
    ),
)]
pub async fn get_metrics(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let token = bearer_of(&headers)?;
    let scraper = s
        .workspaces
        .config()
        .metrics_token
        .as_deref()
        .is_some_and(|t| !t.is_empty() && crate::secrets::equal(t.as_bytes(), token.as_bytes()));
    if !scraper {
        let (who, cred) = authenticate(&s, token).await?;
        if cred.is_worker_scoped() {
            return Err(ApiError::Forbidden(
                "a worker token is only valid for workers, under /v1 and /mcp".into(),
            ));
        }
        who.require_admin("reading metrics (or send BERTH_METRICS_TOKEN)")?;
    }
    let m = crate::metrics::get();
    for (status, n) in s.workspaces.counts_for(None).await? {
        m.workspaces.with_label_values(&[status.as_str()]).set(n);
    }
    for status in crate::agents::TaskStatus::ALL {
        m.tasks.with_label_values(&[status.as_str()]).set(0);
    }
    for (status, n) in s.store.task_counts(None).await? {
        m.tasks.with_label_values(&[status.as_str()]).set(n);
    }
    m.missions_running
        .set(s.missions.running_turns().await as i64);
    m.agent_servers
        .set(s.missions.runtime().servers().len() as i64);
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        m.render(),
    )
        .into_response())
}
