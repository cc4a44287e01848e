//! Every request, observed once: counted and timed in the metrics by its route (the router's pattern,
//! never the raw path, so ids do not explode the label set), and logged with method, route, status,
//! duration and user. Never a token, a body or a query string.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Who made a request, for the request log: the auth middlewares put it on the response.
#[derive(Clone)]
pub struct Actor(pub String);

/// The route pattern a request matched, carried out to `observe` on the response.
#[derive(Clone)]
struct Route(String);

/// Inside the router (a route layer), where the matched pattern is known.
pub async fn tag_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let mut resp = next.run(req).await;
    if let Some(r) = route {
        resp.extensions_mut().insert(Route(r));
    }
    resp
}

/// Outermost: times the whole request, including body limits and the fallback.
pub async fn observe(req: Request, next: Next) -> Response {
    // Any token can be a method: only the standard ones become labels, so requests cannot grow the
    // set of series without bound.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let took = started.elapsed();
    let route = resp
        .extensions()
        .get::<Route>()
        .map_or("unmatched", |r| r.0.as_str());
    let status = resp.status().as_u16();
    let m = crate::metrics::get();
    m.http_requests
        .with_label_values(&[route, &method, &status.to_string()])
        .inc();
    m.http_seconds
        .with_label_values(&[route, &method])
        .observe(took.as_secs_f64());
    let user = resp
        .extensions()
        .get::<Actor>()
        .map_or("-", |a| a.0.as_str());
    tracing::info!(
        target: "berth::request",
        method = %method,
        route,
        status,
        duration_ms = took.as_secs_f64() * 1e3,
        user,
        "request"
    );
    resp
}
