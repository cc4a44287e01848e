//! What the pass-through and the LLM gateway share as relays: which headers concern only one connection,
//! and the head of a response that passes an upstream's answer on.

use axum::http::{HeaderName, StatusCode};

/// Hop-by-hop headers (RFC 9110 §7.6.1), which concern one connection and never cross a relay.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A response head with the upstream's status and headers, but hop-by-hop ones and `skip`.
pub fn response_head(resp: &reqwest::Response, skip: &[&str]) -> axum::http::response::Builder {
    let mut out = axum::http::Response::builder()
        .status(StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in resp.headers() {
        let name = name.as_str();
        if HOP_BY_HOP.contains(&name) || skip.contains(&name) {
            continue;
        }
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            out = out.header(n, value.as_bytes());
        }
    }
    out
}
