//! `/api/workspaces/:id/opencode/...`: an authenticated pass-through to the workspace's OpenCode server,
//! bodies streamed both ways (SSE included), so OpenCode's own clients can use it through berth.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use axum::Extension;
use futures::TryStreamExt;

use super::auth::Lapse;
use super::Path;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;

/// Request headers worth forwarding; berth's own Authorization is not one of them.
const FORWARD: [&str; 4] = [
    "content-type",
    "accept",
    "x-opencode-directory",
    "last-event-id",
];

#[utoipa::path(
    method(get, post, put, patch, delete), path = "/api/workspaces/{id}/opencode/{path}",
    tag = "opencode",
    summary = "Authenticated pass-through (HTTP and SSE) to the workspace's OpenCode server",
    description = "Any method; the query, the body and the `Content-Type`, `Accept`, `x-opencode-directory` and `Last-Event-ID` headers go to OpenCode's `/{path}`, and its status, body and `Content-Type` come back as they are. Streams end when the caller's token becomes void.",
    params(
        ("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"),
        ("path" = String, Path, description = "OpenCode's path, e.g. `session` or `event`; may contain `/`"),
    ),
    responses(
        (status = 200, description = "OpenCode's answer, whatever its status and body"),
        (status = 400, description = "a host workspace: agents run in container workspaces"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "the workspace is not ready"),
        (status = 502, description = "the workspace's OpenCode server did not answer"),
        (status = 503, description = "the workspace's OpenCode server cannot be started"),
    ),
)]
pub async fn proxy_to_opencode(
    State(s): State<AppState>,
    Extension(who): Extension<Principal>,
    Extension(lapse): Extension<Lapse>,
    Path((id, path)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    let ws = s.workspaces.owned(&who, &id).await?;
    let client = s.missions.agent_client(&ws).await?;
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::invalid("unsupported method"))?;
    let mut upstream = client.request(method, &format!("/{path}{query}"));
    for name in FORWARD {
        if let Some(v) = req.headers().get(name) {
            upstream = upstream.header(name, v.as_bytes());
        }
    }
    let body = req
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let resp = upstream
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| ApiError::Engine(format!("opencode server of workspace {id}: {e}")))?;
    let mut out = Response::builder()
        .status(StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in resp.headers() {
        if ["content-type", "cache-control", "x-accel-buffering"].contains(&name.as_str()) {
            if let Ok(n) = HeaderName::from_bytes(name.as_str().as_bytes()) {
                out = out.header(n, value.as_bytes());
            }
        }
    }
    // An event stream ends with berth, so shutdown is not held up by it, and with the caller's token.
    let shutdown = s.missions.shutdown().clone().cancelled_owned();
    let end = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = lapse.wait() => {}
        }
    };
    let body = futures::StreamExt::take_until(resp.bytes_stream(), end);
    out.body(Body::from_stream(body))
        .map_err(|e| ApiError::Internal(e.into()))
}
