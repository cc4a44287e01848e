//! What the pass-throughs and the LLM gateway share as relays: which headers concern only one
//! connection, the head of a response that passes an upstream's answer on, and WebSockets joined through.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

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

pub fn is_websocket(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// A WebSocket passed through to `authority` (plain TCP): the upgrade request goes as `target` with the
/// request's headers that `forward` lets pass (the upgrade's own hop-by-hop ones are what this is for)
/// and `extra`, and once the upstream switches protocols the two connections are joined byte for byte.
/// Any other answer comes back as it is. Err: the upstream could not be reached.
pub async fn websocket(
    authority: &str,
    target: &str,
    mut req: Request,
    forward: impl Fn(&str) -> bool,
    extra: Vec<(HeaderName, HeaderValue)>,
) -> Result<Response, String> {
    let tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut upstream = hyper::Request::builder()
        .method(req.method().clone())
        .uri(target)
        .header("host", authority);
    for (name, value) in req.headers() {
        if forward(name.as_str()) {
            upstream = upstream.header(name, value);
        }
    }
    for (name, value) in extra {
        upstream = upstream.header(name, value);
    }
    let upstream = upstream
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("the upgrade request: {e}"))?;
    let resp = sender
        .send_request(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        out = out.header(name, value);
    }
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Ok(out.body(Body::from(body)).expect("a response"));
    }
    let from_client = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (Ok(upstream), Ok(client)) = (hyper::upgrade::on(resp).await, from_client.await) else {
            return;
        };
        let _ = tokio::io::copy_bidirectional(
            &mut hyper_util::rt::TokioIo::new(upstream),
            &mut hyper_util::rt::TokioIo::new(client),
        )
        .await;
    });
    Ok(out.body(Body::empty()).expect("a response"))
}
