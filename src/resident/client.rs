//! A client of one workspace's resident agent over its unix socket: Connect calls (unary and
//! server-streaming, protobuf), berth's JSON exec, and raw requests passed through (file contents).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use envd::connect::{self, Code, Deframer};
use futures::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// How long a request waits for an agent that is restarting (its container restarts it within a second).
const RECONNECT_FOR: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent does not answer (restarting, or its container is not running).
    #[error("the workspace's agent is unavailable: {0}")]
    Unavailable(String),
    /// The agent answered with a Connect error.
    #[error("{}", .0.message)]
    Rpc(connect::Error),
    /// The agent answered with something else than it should have.
    #[error("the workspace's agent: {0}")]
    Protocol(String),
}

pub type AgentResult<T> = Result<T, AgentError>;

#[derive(Clone)]
pub struct AgentClient {
    socket: PathBuf,
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed_unsync()
}

impl AgentClient {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    /// Sends a request on a fresh connection (a unix socket connects in microseconds), waiting a
    /// little for an agent that is restarting.
    pub async fn send(&self, req: Request<Body>) -> AgentResult<Response<Incoming>> {
        let started = std::time::Instant::now();
        let stream = loop {
            match tokio::net::UnixStream::connect(&self.socket).await {
                Ok(s) => break s,
                Err(e) if started.elapsed() < RECONNECT_FOR => {
                    tracing::debug!(socket = %self.socket.display(), error = %e, "agent not answering yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(AgentError::Unavailable(e.to_string())),
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| AgentError::Unavailable(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| AgentError::Unavailable(e.to_string()))
    }

    pub async fn healthy(&self) -> bool {
        let req = Request::get("/health")
            .header("host", "agent")
            .body(full(Bytes::new()))
            .expect("a request");
        matches!(self.send(req).await, Ok(r) if r.status().is_success())
    }

    /// A unary Connect call.
    pub async fn unary<Q: prost::Message, A: prost::Message + Default>(
        &self,
        service: &str,
        method: &str,
        request: &Q,
    ) -> AgentResult<A> {
        let req = Request::post(format!("/{service}/{method}"))
            .header("host", "agent")
            .header("content-type", connect::UNARY_PROTO)
            .header("connect-protocol-version", "1")
            .body(full(request.encode_to_vec()))
            .expect("a request");
        let resp = self.send(req).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| AgentError::Unavailable(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(rpc_error(&body, status.as_u16()));
        }
        A::decode(body).map_err(|e| AgentError::Protocol(format!("decode {method}: {e}")))
    }

    /// A server-streaming Connect call: the messages as they come, ending with the stream.
    pub async fn stream<Q: prost::Message, A: prost::Message + Default + 'static>(
        &self,
        service: &str,
        method: &str,
        request: &Q,
    ) -> AgentResult<impl Stream<Item = AgentResult<A>> + Send + 'static> {
        let req = Request::post(format!("/{service}/{method}"))
            .header("host", "agent")
            .header("content-type", connect::STREAM_PROTO)
            .header("connect-protocol-version", "1")
            .body(full(connect::frame(request)))
            .expect("a request");
        let resp = self.send(req).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            return Err(rpc_error(&body, status.as_u16()));
        }
        let body = resp.into_body();
        Ok(futures::stream::unfold(
            (body, Deframer::default(), false),
            |(mut body, mut d, done)| async move {
                if done {
                    return None;
                }
                loop {
                    match d.next(64 << 20) {
                        Ok(Some(f)) if f.flags & connect::END_STREAM != 0 => {
                            let end: connect::EndOfStream =
                                serde_json::from_slice(&f.payload).unwrap_or_default();
                            return end
                                .error
                                .map(|e| (Err(AgentError::Rpc(e)), (body, d, true)));
                        }
                        Ok(Some(f)) => {
                            let m = A::decode(f.payload).map_err(|e| {
                                AgentError::Protocol(format!("decode a message: {e}"))
                            });
                            return Some((m, (body, d, false)));
                        }
                        Ok(None) => {}
                        Err(e) => return Some((Err(AgentError::Rpc(e)), (body, d, true))),
                    }
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            if let Some(data) = frame.data_ref() {
                                d.push(data);
                            }
                        }
                        Some(Err(e)) => {
                            return Some((
                                Err(AgentError::Unavailable(format!("the stream broke: {e}"))),
                                (body, d, true),
                            ))
                        }
                        None => {
                            return Some((
                                Err(AgentError::Unavailable("the stream ended early".into())),
                                (body, d, true),
                            ))
                        }
                    }
                }
            },
        ))
    }

    /// A JSON call to one of berth's own routes on the agent; the status and the body.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> AgentResult<(u16, serde_json::Value)> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "agent")
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .expect("a request");
        let resp = self.send(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| AgentError::Unavailable(e.to_string()))?
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| AgentError::Protocol(format!("{path} answered with no JSON: {e}")))?;
        Ok((status, value))
    }
}

fn rpc_error(body: &[u8], status: u16) -> AgentError {
    match serde_json::from_slice::<connect::Error>(body) {
        Ok(e) => AgentError::Rpc(e),
        Err(_) => AgentError::Rpc(connect::Error::new(
            if status == 404 {
                Code::Unimplemented
            } else {
                Code::Unknown
            },
            format!("HTTP {status}: {}", String::from_utf8_lossy(body)),
        )),
    }
}
