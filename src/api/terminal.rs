//! `GET /api/workspaces/{id}/pty`: a terminal over a WebSocket. berth starts the user's login shell on a
//! PTY through the workspace's resident agent and bridges it: binary (or plain text) messages in are
//! keystrokes; a text message `{"type":"resize","cols":C,"rows":R}` resizes; output goes out as binary
//! messages; when the shell ends, a text message `{"type":"exit","exit_code":N}` and the socket closes.
//! A client that goes away hangs the shell up.

use std::collections::BTreeMap;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use envd::process::{self as pb, SERVICE};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use super::processes::{resize_on, start_on, PtySize};
use super::{Path, Query};
use crate::audit::{Audit, Entry};
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::resident::AgentClient;
use crate::workspaces::Workspaces;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TerminalQuery {
    /// Columns (default 80).
    cols: Option<u32>,
    /// Rows (default 24).
    rows: Option<u32>,
    /// The API token, for browsers (which cannot set `Authorization` on a WebSocket).
    #[allow(dead_code)]
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    Resize { cols: u32, rows: u32 },
    Input { data: String },
}

#[utoipa::path(
    get, path = "/api/workspaces/{id}/pty", tag = "processes",
    summary = "A terminal (the user's login shell on a PTY) over a WebSocket",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"), TerminalQuery),
    responses(
        (status = 101, description = "switching to the WebSocket"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "not ready, or no resident agent"),
        (status = 503, description = "`agent_unavailable`"),
    ),
)]
pub async fn open_terminal(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<TerminalQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let (w, agent) = ws.agent(&who, &id).await?;
    let upgrade = upgrade
        .map_err(|e| ApiError::invalid(format!("a terminal is a WebSocket: {}", e.body_text())))?;
    let size = PtySize {
        cols: q.cols.unwrap_or(80).clamp(1, 1000),
        rows: q.rows.unwrap_or(24).clamp(1, 1000),
    };
    let mut env: BTreeMap<String, String> = w.env_vars.clone();
    env.insert("TERM".into(), "xterm-256color".into());
    let pid = start_on(
        &agent,
        pb::StartRequest {
            process: Some(pb::ProcessConfig {
                cmd: "/bin/sh".into(),
                args: vec![
                    "-c".into(),
                    "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"
                        .into(),
                ],
                envs: env.into_iter().collect(),
                cwd: Some("/workspace".into()),
            }),
            pty: Some(pb::Pty {
                size: Some(pb::PtySize {
                    cols: size.cols,
                    rows: size.rows,
                }),
            }),
            tag: Some("berth-terminal".into()),
            stdin: Some(true),
            berth_timeout_secs: 0,
        },
    )
    .await?;
    audit
        .record(
            Entry::ok(&who.name, "workspace.terminal", Some(&w.id))
                .detail(serde_json::json!({ "pid": pid })),
        )
        .await;
    let shutdown = ws.shutdown_token();
    Ok(upgrade.on_upgrade(move |socket| bridge(socket, agent, pid, shutdown)))
}

async fn bridge(
    socket: WebSocket,
    agent: AgentClient,
    pid: u32,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let (mut out, mut inp) = socket.split();
    let selector = || Some(pb::ProcessSelector::pid(pid));
    let output = agent
        .stream::<_, pb::StreamResponse>(
            SERVICE,
            "Connect",
            &pb::ConnectRequest {
                process: selector(),
                berth_after: Some(0),
            },
        )
        .await;
    let Ok(output) = output else {
        let _ = out.send(Message::Close(None)).await;
        return;
    };
    let mut output = Box::pin(output);
    let to_client = async {
        while let Some(Ok(r)) = output.next().await {
            let msg = match r.event.and_then(|e| e.event) {
                Some(pb::Event::Data(pb::DataEvent {
                    output: Some(pb::Output::Pty(b) | pb::Output::Stdout(b) | pb::Output::Stderr(b)),
                })) => Message::Binary(b.into()),
                Some(pb::Event::End(e)) => {
                    let exit = serde_json::json!({ "type": "exit", "exit_code": e.exit_code, "status": e.status });
                    let _ = out.send(Message::Text(exit.to_string().into())).await;
                    let _ = out.send(Message::Close(None)).await;
                    return;
                }
                _ => continue,
            };
            if out.send(msg).await.is_err() {
                return;
            }
        }
    };
    let from_client = async {
        while let Some(Ok(msg)) = inp.next().await {
            let bytes = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => match serde_json::from_str::<Control>(&t) {
                    Ok(Control::Resize { cols, rows }) => {
                        let _ = resize_on(&agent, pid, PtySize { cols, rows }).await;
                        continue;
                    }
                    Ok(Control::Input { data }) => data.into_bytes(),
                    Err(_) => t.as_bytes().to_vec(),
                },
                Message::Close(_) => return,
                _ => continue,
            };
            let sent: Result<pb::SendInputResponse, _> = agent
                .unary(
                    SERVICE,
                    "SendInput",
                    &pb::SendInputRequest {
                        process: selector(),
                        input: Some(pb::ProcessInput {
                            input: Some(pb::Input::Pty(bytes)),
                        }),
                    },
                )
                .await;
            if sent.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = to_client => {}
        _ = from_client => {}
        _ = shutdown.cancelled() => {}
    }
    // The client left (or the shell ended): hang the shell up, as a closed terminal does.
    let _: Result<pb::SendSignalResponse, _> = agent
        .unary(
            SERVICE,
            "SendSignal",
            &pb::SendSignalRequest {
                process: selector(),
                signal: nix::sys::signal::Signal::SIGHUP as i32,
            },
        )
        .await;
}
