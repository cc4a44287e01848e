//! Routing and Connect's server side: unary calls (`application/proto`), server streams and client
//! streams (`application/connect+proto`), errors in Connect's shapes.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use envd::connect::{self, Code, Codec, Deframer, Error, Msg};
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use crate::Agent;

pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;
pub type Reply = Response<Body>;

/// Largest unary request or streamed message accepted.
const MAX_MESSAGE: usize = 16 << 20;

pub async fn route(agent: Arc<Agent>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_string();
    let reply = match (req.method().as_str(), path.as_str()) {
        ("GET", "/health") => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header("x-berth-agent-version", crate::VERSION)
            .body(empty())
            .unwrap(),
        ("POST", "/berth/exec") => crate::exec::handle(req).await,
        (_, "/files") | (_, "/berth/files") => crate::files::handle(req).await,
        ("POST", p) if p.starts_with("/process.Process/") => {
            crate::process::handle(agent, &p["/process.Process/".len()..], req).await
        }
        ("POST", p) if p.starts_with("/filesystem.Filesystem/") => {
            crate::fs::handle(agent, &p["/filesystem.Filesystem/".len()..], req).await
        }
        _ => json_error(StatusCode::NOT_FOUND, format!("no route {path}")),
    };
    Ok(reply)
}

pub fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub fn json_error(status: StatusCode, message: impl Into<String>) -> Reply {
    let body = serde_json::json!({ "code": status.as_u16(), "message": message.into() });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .unwrap()
}

pub fn json_reply(status: StatusCode, value: &serde_json::Value) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(value.to_string()))
        .unwrap()
}

/// A Connect error as a unary answer.
pub fn connect_error(e: Error) -> Reply {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(&e).unwrap_or_default()))
        .unwrap()
}

/// Reads a unary request's message, in the codec its content type names.
pub async fn unary_request<M: Msg>(req: Request<Incoming>) -> Result<(M, Codec), Error> {
    let ctype = content_type(&req);
    let codec = Codec::of(&ctype, false).ok_or_else(|| {
        Error::new(
            Code::Unimplemented,
            format!(
                "content type {ctype:?}: this agent speaks application/proto and application/json"
            ),
        )
    })?;
    let body = read_body(req.into_body(), MAX_MESSAGE).await?;
    Ok((codec.decode(&body)?, codec))
}

/// A unary answer from a handler's result, in the request's codec.
pub fn unary_reply<M: Msg>(codec: Codec, result: Result<M, Error>) -> Reply {
    match result {
        Ok(m) => Response::builder()
            .header("content-type", codec.content_type(false))
            .body(full(codec.encode(&m)))
            .unwrap(),
        Err(e) => connect_error(e),
    }
}

/// Reads a server stream's single request message, and the codec its answer uses.
pub async fn stream_request<M: Msg>(req: Request<Incoming>) -> Result<(M, Codec), Error> {
    let ctype = content_type(&req);
    let codec = Codec::of(&ctype, true).ok_or_else(|| {
        Error::new(
            Code::Unimplemented,
            format!("content type {ctype:?}: this agent speaks application/connect+proto and application/connect+json"),
        )
    })?;
    let body = read_body(req.into_body(), MAX_MESSAGE + 5).await?;
    let mut d = Deframer::default();
    d.push(&body);
    match d.next(MAX_MESSAGE)? {
        Some(f) if f.flags & connect::COMPRESSED != 0 => Err(Error::new(
            Code::Unimplemented,
            "compressed messages are not supported",
        )),
        Some(f) => Ok((codec.decode(&f.payload)?, codec)),
        None => Err(Error::new(
            Code::InvalidArgument,
            "the request holds no message",
        )),
    }
}

/// The messages of a client stream, as they arrive.
pub fn client_stream<M: Msg>(req: Request<Incoming>) -> (Codec, mpsc::Receiver<Result<M, Error>>) {
    let codec = Codec::of(&content_type(&req), true).unwrap_or(Codec::Proto);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut body = req.into_body();
        let mut d = Deframer::default();
        loop {
            loop {
                match d.next(MAX_MESSAGE) {
                    Ok(Some(f)) if f.flags & connect::END_STREAM != 0 => return,
                    Ok(Some(f)) => {
                        if tx.send(codec.decode(&f.payload)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        d.push(data);
                    }
                }
                Some(Err(e)) => {
                    let _ = tx
                        .send(Err(Error::new(Code::Canceled, e.to_string())))
                        .await;
                    return;
                }
                None => return,
            }
        }
    });
    (codec, rx)
}

/// A streaming answer: frames sent on the returned sender, then the end-of-stream frame the sender's
/// owner sends (`connect::end_frame`). An error before the stream starts is still a 200 with an end frame,
/// as Connect's streaming protocol has it.
pub fn stream_reply(codec: Codec) -> (mpsc::Sender<Bytes>, Reply) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok(Frame::data(b)));
    let reply = Response::builder()
        .header("content-type", codec.content_type(true))
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap();
    (tx, reply)
}

/// A stream that ended at once with an error.
pub fn stream_error(codec: Codec, e: Error) -> Reply {
    Response::builder()
        .header("content-type", codec.content_type(true))
        .body(full(connect::end_frame(Some(e))))
        .unwrap()
}

pub fn content_type(req: &Request<Incoming>) -> String {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

pub async fn read_body(body: Incoming, max: usize) -> Result<Bytes, Error> {
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(Error::new(
            Code::ResourceExhausted,
            format!("read the request: {e}"),
        )),
    }
}

/// A query parameter, percent-decoded.
pub fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    q.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
