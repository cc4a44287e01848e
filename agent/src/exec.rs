//! berth's buffered exec: one request, one answer with capped output. It keeps the engine path's
//! contract (a missing cwd refused, timeouts and cancellation kill the whole tree, what the command left
//! running killed when it ends unless kept) at a fraction of the cost.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::rpc::{self, Reply};
use crate::tree;

#[derive(Deserialize)]
pub struct ExecRequest {
    pub command: String,
    pub cwd: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub timeout_ms: u64,
    pub max_output: usize,
    #[serde(default)]
    pub background: bool,
}

#[derive(Serialize, Default)]
pub struct ExecResponse {
    pub exit_code: i64,
    /// Base64: output need not be text.
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timed_out: bool,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// Kills the tree if the request goes away before the command ends (berth cut it off).
struct TreeGuard {
    marker: Option<String>,
    leader: u32,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if let Some(marker) = self.marker.take() {
            let leader = self.leader;
            tokio::spawn(async move { tree::kill(&marker, Some(leader)).await });
        }
    }
}

pub async fn handle(req: Request<Incoming>) -> Reply {
    let body = match rpc::read_body(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(e) => return rpc::json_error(StatusCode::PAYLOAD_TOO_LARGE, e.message),
    };
    let spec: ExecRequest = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return rpc::json_error(StatusCode::BAD_REQUEST, format!("the exec request: {e}"))
        }
    };
    if !std::path::Path::new(&spec.cwd).is_dir() {
        return rpc::json_reply(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "code": "cwd_missing", "message": format!("no such directory: {}", spec.cwd) }),
        );
    }
    match run(spec).await {
        Ok(r) => rpc::json_reply(StatusCode::OK, &serde_json::to_value(r).unwrap_or_default()),
        Err(e) => rpc::json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("start the command: {e}"),
        ),
    }
}

/// The shell commands run in: bash where the image has it, else sh.
pub fn shell() -> &'static str {
    static SHELL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    SHELL.get_or_init(|| {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        if path
            .split(':')
            .any(|d| std::path::Path::new(d).join("bash").is_file())
        {
            "bash"
        } else {
            "sh"
        }
    })
}

pub fn marker(kind: &str) -> String {
    format!(
        "agent-{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A command in its own session, with the marker, so its tree can be found and killed.
pub fn command(
    program: &str,
    args: &[String],
    cwd: &str,
    env: impl IntoIterator<Item = (String, String)>,
    marker: &str,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .envs(env)
        .env(tree::MARKER_VAR, marker)
        .kill_on_drop(false);
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            // The agent ignores nothing, but be explicit: children start with default dispositions.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}

async fn run(spec: ExecRequest) -> std::io::Result<ExecResponse> {
    let marker = marker("exec");
    let mut child = command(
        shell(),
        &["-c".to_string(), spec.command.clone()],
        &spec.cwd,
        spec.env.clone(),
        &marker,
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()?;
    let leader = child.id().unwrap_or(0);
    let mut guard = TreeGuard {
        marker: Some(marker.clone()),
        leader,
    };
    let out = capped(child.stdout.take(), spec.max_output);
    let err = capped(child.stderr.take(), spec.max_output);
    let mut resp = ExecResponse::default();
    let timeout = Duration::from_millis(spec.timeout_ms.max(1));
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => {
            let status = status?;
            resp.exit_code = exit_code(status);
            if !spec.background {
                tree::kill(&marker, Some(leader)).await;
            }
        }
        Err(_) => {
            resp.timed_out = true;
            tree::kill(&marker, Some(leader)).await;
            let _ = child.wait().await;
            resp.exit_code = -1;
        }
    }
    guard.marker = None;
    // Kept processes may hold the pipes open: what they print later is theirs, not the answer's.
    let grace = Duration::from_millis(if spec.background { 100 } else { 2000 });
    let (stdout, stdout_truncated) = finish(out, grace).await;
    let (stderr, stderr_truncated) = finish(err, grace).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    resp.stdout = b64.encode(stdout);
    resp.stderr = b64.encode(stderr);
    resp.stdout_truncated = stdout_truncated;
    resp.stderr_truncated = stderr_truncated;
    Ok(resp)
}

type Captured = std::sync::Arc<std::sync::Mutex<(Vec<u8>, bool)>>;

fn capped<R: AsyncRead + Unpin + Send + 'static>(
    pipe: Option<R>,
    max: usize,
) -> (Captured, tokio::task::JoinHandle<()>) {
    let buf: Captured = Default::default();
    let b = buf.clone();
    let task = tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut g = b.lock().unwrap();
                    let room = max.saturating_sub(g.0.len());
                    if n > room {
                        g.1 = true;
                    }
                    g.0.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
    });
    (buf, task)
}

async fn finish(
    capture: (Captured, tokio::task::JoinHandle<()>),
    grace: Duration,
) -> (Vec<u8>, bool) {
    let (buf, mut task) = capture;
    if tokio::time::timeout(grace, &mut task).await.is_err() {
        task.abort();
    }
    let g = buf.lock().unwrap();
    (g.0.clone(), g.1)
}

/// The exit code, or 128 + the signal that killed it (as a shell reports it).
pub fn exit_code(status: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c as i64,
        (None, Some(sig)) => 128 + sig as i64,
        _ => -1,
    }
}
