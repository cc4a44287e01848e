//! `/api/workspaces/:id/opencode/...`: an authenticated pass-through to the workspace's OpenCode server,
//! bodies streamed both ways (SSE included), so OpenCode's own clients can use it through berth.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Extension;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;

use super::auth::Lapse;
use super::Path;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;

/// Request headers that are berth's own (its credentials) or describe berth's side of the connection.
const NOT_FORWARDED: [&str; 4] = ["authorization", "cookie", "host", "x-worker-id"];

fn forwarded(name: &str) -> bool {
    !super::relay::HOP_BY_HOP.contains(&name) && !NOT_FORWARDED.contains(&name)
}

/// OpenCode's path and query exactly as the caller sent them (still percent-encoded: an id holding `%2F`
/// must reach the same route on OpenCode).
fn upstream_path(uri: &axum::http::Uri) -> ApiResult<String> {
    let raw = uri.path();
    let rest = raw
        .strip_prefix("/api/workspaces/")
        .and_then(|r| r.split_once('/'))
        .and_then(|(_, r)| r.strip_prefix("opencode"))
        .ok_or_else(|| ApiError::invalid("not a pass-through path"))?;
    let path = if rest.is_empty() { "/" } else { rest };
    Ok(match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    })
}

/// A WebSocket (OpenCode's `/pty/{id}/connect`) passed through with OpenCode's own credentials in
/// place of berth's.
async fn relay_websocket(
    client: &crate::opencode::client::Client,
    target: &str,
    req: Request,
) -> ApiResult<Response> {
    use base64::Engine as _;
    let authority = client
        .base()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        crate::opencode::client::USER,
        client.password()
    ));
    let auth = format!("Basic {basic}")
        .parse()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("an OpenCode password as a header")))?;
    super::relay::websocket(
        &authority,
        target,
        req,
        |name| !NOT_FORWARDED.contains(&name),
        vec![(axum::http::header::AUTHORIZATION, auth)],
    )
    .await
    .map_err(|e| ApiError::Engine(format!("the workspace's OpenCode server: {e}")))
}

#[utoipa::path(
    method(get, post, put, patch, delete), path = "/api/workspaces/{id}/opencode/{path}",
    tag = "opencode",
    summary = "Authenticated pass-through (HTTP and SSE) to the workspace's OpenCode server",
    description = "Any method; the path exactly as sent (still percent-encoded), the query, the body (at most 4 MiB, declared or not) and the headers (but hop-by-hop ones and berth's own credentials) go to OpenCode's `/{path}`, and its status, headers (but hop-by-hop ones) and body come back as they are. Streams end when the caller's token becomes void.",
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
    Path((id, _path)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    let ws = s.workspaces.owned(&who, &id).await?;
    let client = s.missions.agent_client(&ws).await?;
    let target = upstream_path(req.uri())?;
    if super::relay::is_websocket(&req) {
        return relay_websocket(&client, &target, req).await;
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::invalid("unsupported method"))?;
    let mut upstream = client.request(method, &target);
    for (name, value) in req.headers() {
        if forwarded(name.as_str()) {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    // One limit for every body, whether it declares its length or not (a declared one over it was
    // refused before this handler). What comes past it is read and dropped (up to a bound) and the
    // body then fails, so OpenCode never gets a cut body and the client, done sending, gets the 413.
    let over = Arc::new(AtomicBool::new(false));
    let (flag, at_end) = (over.clone(), over.clone());
    let mut seen = 0usize;
    let too_large = || std::io::Error::other("request body over the limit");
    let body = req
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other)
        .try_filter_map(move |chunk| {
            seen += chunk.len();
            let result = if seen <= crate::router::BODY_LIMIT {
                Ok(Some(chunk))
            } else {
                flag.store(true, Ordering::SeqCst);
                if seen > crate::router::BODY_LIMIT + crate::router::DRAIN_BEFORE_REFUSING {
                    Err(too_large())
                } else {
                    Ok(None)
                }
            };
            futures::future::ready(result)
        });
    let failed_if_over = futures::StreamExt::filter_map(
        futures::stream::once(futures::future::ready(())),
        move |()| futures::future::ready(at_end.load(Ordering::SeqCst).then(|| Err(too_large()))),
    );
    let body = futures::StreamExt::chain(body, failed_if_over);
    let resp = match upstream.body(reqwest::Body::wrap_stream(body)).send().await {
        Ok(r) => r,
        Err(_) if over.load(Ordering::SeqCst) => {
            return Err(ApiError::PayloadTooLarge(format!(
                "request body over {} MiB",
                crate::router::BODY_LIMIT >> 20
            )))
        }
        Err(e) => {
            return Err(ApiError::Engine(format!(
                "opencode server of workspace {id}: {e}"
            )))
        }
    };
    s.missions.runtime().answered(&ws.id);
    let out = super::relay::response_head(&resp, &[]);
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
