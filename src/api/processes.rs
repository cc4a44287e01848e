//! `/api/workspaces/{id}/processes`: long-running processes on the workspace's resident agent — start
//! (with stdin, a PTY, a timeout that kills the tree, a tag), list, live output as SSE that resumes with
//! `Last-Event-ID` (the agent buffers it, so a client or berth after a restart reattaches), stdin,
//! signals and PTY resizing.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Extension;
use base64::Engine as _;
use envd::process::{self as pb, SERVICE};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{Json, Path, Query};
use crate::audit::{Audit, Entry};
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::resident::AgentClient;
use crate::workspaces::Workspaces;

/// Longest a process may be given to run before its tree is killed.
const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Deserialize, ToSchema)]
pub struct StartProcess {
    /// A shell command line (run by bash where the image has it, else sh).
    pub command: String,
    /// Relative to `/workspace`; default `/workspace`.
    pub cwd: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Kill the process and everything it started after this long (default: never).
    pub timeout_secs: Option<u64>,
    /// Keep its stdin open for `POST .../stdin` (default false: stdin is empty).
    #[serde(default)]
    pub stdin: bool,
    /// Run it on a terminal of this size (stdout and stderr then arrive as one `pty` stream).
    pub pty: Option<PtySize>,
    /// A name to find it by.
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct PtySize {
    pub cols: u32,
    pub rows: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessView {
    /// The process's id (its pid in the container).
    pub id: u32,
    pub cmd: String,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    pub tag: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProcessList {
    pub processes: Vec<ProcessView>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StdinInput {
    /// Text to write.
    pub data: Option<String>,
    /// Or bytes, base64.
    pub data_b64: Option<String>,
    /// Close stdin after writing (end of input).
    #[serde(default)]
    pub close: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignalInput {
    /// A signal name (`SIGTERM`, `TERM`, `INT`, `KILL`, ...) or number. `KILL` kills the whole tree.
    pub signal: serde_json::Value,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// Resume after this event id (as `Last-Event-ID` does); default: from the start of what is buffered.
    after: Option<u64>,
}

/// The shell a command line runs in: bash where the image has it, else sh.
pub(crate) fn shell_config(
    command: &str,
    cwd: Option<String>,
    env: BTreeMap<String, String>,
) -> pb::ProcessConfig {
    pb::ProcessConfig {
        cmd: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            "if command -v bash >/dev/null 2>&1; then exec bash -c \"$1\"; else exec sh -c \"$1\"; fi"
                .into(),
            "berth".into(),
            command.into(),
        ],
        envs: env.into_iter().collect(),
        cwd,
    }
}

pub(crate) fn container_cwd(cwd: Option<&str>) -> String {
    match cwd {
        None | Some("") => "/workspace".into(),
        Some(c) if c.starts_with('/') => c.into(),
        Some(c) => format!("/workspace/{c}"),
    }
}

/// Starts a process on the agent and answers its pid once it runs (the agent keeps it going when the
/// start stream is dropped).
pub(crate) async fn start_on(agent: &AgentClient, request: pb::StartRequest) -> ApiResult<u32> {
    let stream = agent
        .stream::<_, pb::StreamResponse>(SERVICE, "Start", &request)
        .await?;
    let mut stream = Box::pin(stream);
    match stream.next().await {
        Some(Ok(pb::StreamResponse {
            event:
                Some(pb::ProcessEvent {
                    event: Some(pb::Event::Start(s)),
                }),
            ..
        })) => Ok(s.pid),
        Some(Err(e)) => Err(e.into()),
        _ => Err(ApiError::Engine(
            "the workspace's agent started no process".into(),
        )),
    }
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/processes", tag = "processes",
    summary = "Start a process on the workspace's resident agent",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    request_body = StartProcess,
    responses(
        (status = 201, description = "running", body = ProcessView),
        (status = 400, description = "an empty command, a missing cwd, bad env names"),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "the workspace is not ready, or was built without the resident agent (`no_agent`)"),
        (status = 429, description = "too many processes run at once in the workspace"),
        (status = 503, description = "`agent_unavailable`: the agent is restarting"),
    ),
)]
pub async fn start_process(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Json(spec): Json<StartProcess>,
) -> ApiResult<(StatusCode, Json<ProcessView>)> {
    if spec.command.trim().is_empty() {
        return Err(ApiError::invalid("command must not be empty"));
    }
    if spec.command.contains('\0') || spec.cwd.as_deref().is_some_and(|c| c.contains('\0')) {
        return Err(ApiError::invalid(
            "command and cwd must not contain NUL bytes",
        ));
    }
    if spec
        .timeout_secs
        .is_some_and(|t| t == 0 || t > MAX_TIMEOUT_SECS)
    {
        return Err(ApiError::invalid(format!(
            "timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
        )));
    }
    crate::workspaces::validate::env_vars(&spec.env)?;
    let (w, agent) = ws.agent(&who, &id).await?;
    let mut env = w.env_vars.clone();
    env.extend(spec.env);
    let cwd = container_cwd(spec.cwd.as_deref());
    let config = shell_config(&spec.command, Some(cwd.clone()), env);
    let pid = start_on(
        &agent,
        pb::StartRequest {
            process: Some(config.clone()),
            pty: spec.pty.map(|p| pb::Pty {
                size: Some(pb::PtySize {
                    cols: p.cols,
                    rows: p.rows,
                }),
            }),
            tag: spec.tag.clone(),
            stdin: Some(spec.stdin),
            berth_timeout_secs: spec.timeout_secs.unwrap_or(0),
        },
    )
    .await?;
    audit
        .record(
            Entry::ok(&who.name, "workspace.process.start", Some(&w.id))
                .detail(serde_json::json!({ "command": spec.command, "pid": pid })),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(ProcessView {
            id: pid,
            cmd: config.cmd,
            args: config.args,
            cwd: Some(cwd),
            tag: spec.tag,
        }),
    ))
}

#[utoipa::path(
    get, path = "/api/workspaces/{id}/processes", tag = "processes",
    summary = "The processes running on the workspace's resident agent",
    params(("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own")),
    responses(
        (status = 200, description = "running processes", body = ProcessList),
        (status = 404, description = "no workspace the caller may act on"),
        (status = 409, description = "not ready, or no resident agent"),
        (status = 503, description = "`agent_unavailable`"),
    ),
)]
pub async fn list_processes(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<Json<ProcessList>> {
    let (_, agent) = ws.agent(&who, &id).await?;
    let list: pb::ListResponse = agent.unary(SERVICE, "List", &pb::ListRequest {}).await?;
    Ok(Json(ProcessList {
        processes: list
            .processes
            .into_iter()
            .map(|p| {
                let c = p.config.unwrap_or_default();
                ProcessView {
                    id: p.pid,
                    cmd: c.cmd,
                    args: c.args,
                    cwd: c.cwd,
                    tag: p.tag,
                }
            })
            .collect(),
    }))
}

/// An output event as SSE: `stdout`, `stderr` or `pty` with the text and its bytes, `exit` at the end.
fn sse_event(r: pb::StreamResponse) -> Option<SseEvent> {
    let event = r.event?.event?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (name, data) = match event {
        pb::Event::Data(d) => {
            let (name, bytes) = match d.output? {
                pb::Output::Stdout(b) => ("stdout", b),
                pb::Output::Stderr(b) => ("stderr", b),
                pb::Output::Pty(b) => ("pty", b),
            };
            (
                name,
                serde_json::json!({
                    "data": String::from_utf8_lossy(&bytes),
                    "data_b64": b64.encode(&bytes),
                }),
            )
        }
        pb::Event::End(e) => (
            "exit",
            serde_json::json!({
                "exit_code": e.exit_code,
                "exited": e.exited,
                "status": e.status,
                "error": e.error,
            }),
        ),
        pb::Event::Start(s) => ("start", serde_json::json!({ "pid": s.pid })),
        pb::Event::Keepalive(_) => return None,
    };
    Some(
        SseEvent::default()
            .id(r.berth_seq.to_string())
            .event(name)
            .data(data.to_string()),
    )
}

#[utoipa::path(
    get, path = "/api/workspaces/{id}/processes/{pid}/output", tag = "processes",
    summary = "A process's output as SSE (`start`, `stdout`, `stderr`, `pty`, `exit`), live; `Last-Event-ID` resumes after an event",
    params(
        ("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"),
        ("pid" = u32, Path, description = "the process's id"),
        OutputQuery,
    ),
    responses(
        (status = 200, description = "the event stream; it ends after `exit`", content_type = "text/event-stream"),
        (status = 404, description = "no such workspace or process (ended ones are kept for a while)"),
        (status = 409, description = "not ready, or no resident agent"),
        (status = 503, description = "`agent_unavailable`"),
    ),
)]
pub async fn process_output(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path((id, pid)): Path<(String, u32)>,
    Query(q): Query<OutputQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let (_, agent) = ws.agent(&who, &id).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(q.after)
        .unwrap_or(0);
    let stream = agent
        .stream::<_, pb::StreamResponse>(
            SERVICE,
            "Connect",
            &pb::ConnectRequest {
                process: Some(pb::ProcessSelector::pid(pid)),
                berth_after: Some(after),
            },
        )
        .await?;
    let mut stream = Box::pin(stream);
    // The agent says first whether the process exists (its start event), so a 404 is a 404.
    match stream.next().await {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Err(e.into()),
        None => return Err(ApiError::not_found(format!("no process {pid}"))),
    }
    let events = stream
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| futures::future::ready(r.ok().and_then(sse_event)))
        .map(Ok);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn input_bytes(input: &StdinInput) -> ApiResult<Vec<u8>> {
    match (&input.data, &input.data_b64) {
        (Some(_), Some(_)) => Err(ApiError::invalid("give data or data_b64, not both")),
        (Some(t), None) => Ok(t.as_bytes().to_vec()),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| ApiError::invalid(format!("data_b64: {e}"))),
        (None, None) => Ok(Vec::new()),
    }
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/processes/{pid}/stdin", tag = "processes",
    summary = "Write to a process's stdin (or its terminal), and optionally close it",
    params(
        ("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"),
        ("pid" = u32, Path, description = "the process's id"),
    ),
    request_body = StdinInput,
    responses(
        (status = 204, description = "written"),
        (status = 400, description = "bad base64"),
        (status = 404, description = "no such workspace or process"),
        (status = 409, description = "the process was started without stdin, closed it, or has ended"),
        (status = 503, description = "`agent_unavailable`"),
    ),
)]
pub async fn process_stdin(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path((id, pid)): Path<(String, u32)>,
    Json(input): Json<StdinInput>,
) -> ApiResult<StatusCode> {
    let bytes = input_bytes(&input)?;
    let (_, agent) = ws.agent(&who, &id).await?;
    let process = Some(pb::ProcessSelector::pid(pid));
    if !bytes.is_empty() || !input.close {
        let _: pb::SendInputResponse = agent
            .unary(
                SERVICE,
                "SendInput",
                &pb::SendInputRequest {
                    process: process.clone(),
                    input: Some(pb::ProcessInput {
                        input: Some(pb::Input::Stdin(bytes)),
                    }),
                },
            )
            .await?;
    }
    if input.close {
        let _: pb::CloseStdinResponse = agent
            .unary(SERVICE, "CloseStdin", &pb::CloseStdinRequest { process })
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A signal's number from its name (`SIGTERM`, `TERM`, any case) or number.
fn signal_number(v: &serde_json::Value) -> ApiResult<i32> {
    let bad = || {
        ApiError::invalid(format!(
            "{v} is not a signal; give a name like SIGTERM, TERM, INT, KILL, HUP, USR1 or a number from 1 to 64"
        ))
    };
    if let Some(n) = v.as_i64() {
        return (1..=64).contains(&n).then_some(n as i32).ok_or_else(bad);
    }
    let name = v.as_str().ok_or_else(bad)?.trim().to_ascii_uppercase();
    let full = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/processes/{pid}/signal", tag = "processes",
    summary = "Send a signal to a process's group; KILL kills its whole tree",
    params(
        ("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"),
        ("pid" = u32, Path, description = "the process's id"),
    ),
    request_body = SignalInput,
    responses(
        (status = 204, description = "sent"),
        (status = 400, description = "not a signal"),
        (status = 404, description = "no such workspace or process, or it has ended"),
        (status = 503, description = "`agent_unavailable`"),
    ),
)]
pub async fn process_signal(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path((id, pid)): Path<(String, u32)>,
    Json(input): Json<SignalInput>,
) -> ApiResult<StatusCode> {
    let signal = signal_number(&input.signal)?;
    let (_, agent) = ws.agent(&who, &id).await?;
    let _: pb::SendSignalResponse = agent
        .unary(
            SERVICE,
            "SendSignal",
            &pb::SendSignalRequest {
                process: Some(pb::ProcessSelector::pid(pid)),
                signal,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/api/workspaces/{id}/processes/{pid}/resize", tag = "processes",
    summary = "Resize a process's terminal",
    params(
        ("id" = String, Path, description = "the workspace's id, or the name of one of the caller's own"),
        ("pid" = u32, Path, description = "the process's id"),
    ),
    request_body = PtySize,
    responses(
        (status = 204, description = "resized"),
        (status = 404, description = "no such workspace or process"),
        (status = 409, description = "the process has no terminal"),
    ),
)]
pub async fn process_resize(
    State(ws): State<Workspaces>,
    Extension(who): Extension<Principal>,
    Path((id, pid)): Path<(String, u32)>,
    Json(size): Json<PtySize>,
) -> ApiResult<StatusCode> {
    let (_, agent) = ws.agent(&who, &id).await?;
    resize_on(&agent, pid, size).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn resize_on(agent: &AgentClient, pid: u32, size: PtySize) -> ApiResult<()> {
    let _: pb::UpdateResponse = agent
        .unary(
            SERVICE,
            "Update",
            &pb::UpdateRequest {
                process: Some(pb::ProcessSelector::pid(pid)),
                pty: Some(pb::Pty {
                    size: Some(pb::PtySize {
                        cols: size.cols,
                        rows: size.rows,
                    }),
                }),
            },
        )
        .await?;
    Ok(())
}
