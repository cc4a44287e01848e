//! Who a `/v1` call is from when it names a worker: the worker id it carries (path, `X-Worker-ID`,
//! `worker_id` in the query or the JSON body), and the token-less calls of CodeTether's stock worker,
//! which berth takes only when a worker vouched for them (see `agents::links`).

use std::net::IpAddr;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use serde_json::Value;

use crate::agents::{Caller, Tied};
use crate::api::auth::still_holds;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

/// The largest body read to find a worker id in it (the body limit is the router's).
const BODY_MAX: usize = 4 << 20;

/// A token-less registration no worker has vouched for yet: held until its channel opens.
#[derive(Debug, Clone)]
pub struct Unvouched {
    pub addr: IpAddr,
    pub worker_id: String,
}

/// A token-less poll of the queue (`GET /v1/opencode/tasks`, no worker id): the workers vouched for
/// from the caller's address, all of one user.
#[derive(Debug, Clone)]
pub struct StockPoll {
    pub workers: Vec<Tied>,
}

/// The token-less calls the stock worker makes, by route and method; every other route needs a token.
fn tokenless_allowed(method: &Method, route: &str) -> bool {
    const CB: &str = "/v1/opencode/codebases/{id}";
    let post = [
        "/v1/opencode/workers/register",
        "/v1/opencode/codebases",
        "/v1/opencode/workers/{id}/heartbeat",
        "/v1/opencode/workers/{id}/unregister",
        "/v1/opencode/tasks/{id}/output",
    ];
    match *method {
        Method::POST => {
            post.contains(&route)
                || route == format!("{CB}/sessions/sync")
                || route == format!("{CB}/sessions/{{sid}}/messages/sync")
        }
        Method::PUT => route == "/v1/opencode/tasks/{id}/status",
        Method::GET => route == "/v1/opencode/tasks",
        _ => false,
    }
}

/// The route template a request matched.
pub fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default()
}

/// The worker id a request names outside its body: the path of `/v1/opencode/workers/{id}/...`,
/// `X-Worker-ID`, or `worker_id` in the query.
pub fn worker_id_outside_body(req: &Request) -> Option<String> {
    let route = route_of(req);
    if route.starts_with("/v1/opencode/workers/{id}") {
        let id = req.uri().path().split('/').nth(4)?;
        return Some(id.to_string());
    }
    if let Some(v) = req
        .headers()
        .get("x-worker-id")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.to_string());
    }
    // Worker ids are letters, digits, `.`, `_` and `-`: nothing to percent-decode.
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("worker_id="))
        .map(str::to_string)
}

/// The worker id a request names, looking into a JSON body last; the request comes back whole.
pub async fn worker_id_of(req: Request) -> ApiResult<(Request, Option<String>)> {
    if let Some(id) = worker_id_outside_body(&req) {
        return Ok((req, Some(id)));
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, BODY_MAX)
        .await
        .map_err(|_| ApiError::PayloadTooLarge("request body too large".into()))?;
    let id = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["worker_id"].as_str().map(str::to_string));
    Ok((Request::from_parts(parts, Body::from(bytes)), id))
}

/// A call without a token: accepted only on the stock worker's routes, and only as a worker that
/// vouched for itself from this address (registrations before that are held).
pub async fn tokenless(s: &AppState, addr: IpAddr, req: Request) -> ApiResult<Request> {
    let refused = || {
        ApiError::Unauthorized(
            "Not authenticated: send Authorization: Bearer <token> (a worker's token-less calls are \
             taken only while its push channel, GET /v1/worker/tasks/stream, vouches for it from \
             the same address)"
                .into(),
        )
    };
    let route = route_of(&req);
    if !tokenless_allowed(req.method(), &route) {
        return Err(refused());
    }
    let (mut req, worker_id) = worker_id_of(req).await?;
    let links = s.agents.links();
    let Some(worker_id) = worker_id else {
        if route != "/v1/opencode/tasks" {
            return Err(refused());
        }
        let mut workers = Vec::new();
        for t in links.tied_at(addr) {
            if still_holds(s, &t.token).await {
                workers.push(t);
            }
        }
        let one_owner = workers.windows(2).all(|w| w[0].owner == w[1].owner);
        if workers.is_empty() || !one_owner {
            return Err(refused());
        }
        req.extensions_mut().insert(StockPoll { workers });
        return Ok(req);
    };
    // Only while the token that vouched still holds: a revoked token vouches for nothing.
    let tied = match links.tied(addr, &worker_id) {
        Some(t) if still_holds(s, &t.token).await => Some(t),
        _ => None,
    };
    if let Some(t) = tied {
        req.extensions_mut().insert(Caller::Worker {
            id: t.key,
            owner: t.owner,
        });
        return Ok(req);
    }
    let registers = route == "/v1/opencode/workers/register" || route == "/v1/opencode/codebases";
    if !registers {
        return Err(refused());
    }
    req.extensions_mut().insert(Unvouched { addr, worker_id });
    Ok(req)
}
