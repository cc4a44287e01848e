//! Browser clients on other origins (a dashboard served from its own port): `BERTH_CORS_ORIGINS` lists
//! the origins allowed, `*` for any. An allowed origin gets its preflight answered and
//! `Access-Control-Allow-Origin` on every answer; any other origin gets no CORS header at all (its
//! preflight is refused with 403), so the browser keeps its pages out. Tokens travel in
//! `Authorization`, never in cookies, so credentials are not allowed.

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The allowed origins, as configured.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    any: bool,
    list: Vec<String>,
}

impl Origins {
    pub fn new(configured: &[String]) -> Self {
        let list: Vec<String> = configured
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        Self {
            any: list.iter().any(|o| o == "*"),
            list,
        }
    }

    fn allows(&self, origin: &str) -> bool {
        self.any || self.list.iter().any(|o| o == origin)
    }
}

const METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const DEFAULT_HEADERS: &str = "authorization, content-type, last-event-id";
const EXPOSED: &str = "retry-after, content-disposition";

pub async fn cors(State(origins): State<Origins>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let allowed = origins.allows(&origin);
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !allowed {
            return ApiError::Forbidden(format!(
                "origin {origin} may not call this API from a browser (BERTH_CORS_ORIGINS)"
            ))
            .into_response();
        }
        let headers = req
            .headers()
            .get(ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_HEADERS));
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, headers);
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("3600"));
        allow(&mut resp, &origin);
        return resp;
    }
    let mut resp = next.run(req).await;
    if allowed {
        allow(&mut resp, &origin);
        resp.headers_mut().insert(
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
    }
    resp
}

fn allow(resp: &mut Response, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        let h = resp.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.append(VARY, HeaderValue::from_static("origin"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_are_allowed() {
        let o = Origins::new(&[
            "http://localhost:3001/".into(),
            " https://dash.example ".into(),
        ]);
        assert!(o.allows("http://localhost:3001"));
        assert!(o.allows("https://dash.example"));
        assert!(!o.allows("http://evil.example"));
        assert!(!Origins::new(&[]).allows("http://localhost:3001"));
        assert!(Origins::new(&["*".into()]).allows("http://anything"));
    }
}
