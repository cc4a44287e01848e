//! Exec for host workspaces: the command runs on the host in its own process group, which a timeout kills
//! whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::engine::ExecOutput;
use crate::error::{ApiError, ApiResult};

/// A relative cwd is relative to the workspace path; it must exist.
pub fn resolve_cwd(base: &str, cwd: Option<&str>) -> ApiResult<PathBuf> {
    let path = match cwd {
        None | Some("") => PathBuf::from(base),
        Some(c) if Path::new(c).is_absolute() => PathBuf::from(c),
        Some(c) => Path::new(base).join(c),
    };
    if !path.is_dir() {
        return Err(ApiError::invalid(format!(
            "cwd {} does not exist",
            path.display()
        )));
    }
    Ok(path)
}

/// Reads a pipe to the end, keeping at most `max` bytes.
async fn read_capped(mut r: impl AsyncRead + Unpin, max: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

pub async fn run(
    command: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    timeout: Duration,
    max_output: usize,
    keep_processes: bool,
) -> ApiResult<ExecOutput> {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("spawn host command: {e}")))?;
    let pgid = child.id().map(|p| Pid::from_raw(p as i32));
    let stdout = tokio::spawn(read_capped(child.stdout.take().expect("piped"), max_output));
    let stderr = tokio::spawn(read_capped(child.stderr.take().expect("piped"), max_output));
    // Like an engine exec, the command is done when the shell has exited and its output pipes have
    // closed; what it left in its process group goes with it unless kept.
    let finished = tokio::time::timeout(timeout, async {
        let status = child.wait().await;
        if let (false, Some(pgid)) = (keep_processes, pgid) {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let out = stdout.await.unwrap_or_default();
        let err = stderr.await.unwrap_or_default();
        (status, out, err)
    })
    .await;
    let ((stdout, stdout_truncated), (stderr, stderr_truncated), exit_code, timed_out) =
        match finished {
            Ok((status, out, err)) => {
                let code = status.map(|s| s.code().unwrap_or(-1) as i64).unwrap_or(-1);
                (out, err, code, false)
            }
            Err(_) => {
                if let Some(pgid) = pgid {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                let _ = child.wait().await;
                ((Vec::new(), false), (Vec::new(), false), -1, true)
            }
        };
    Ok(ExecOutput {
        exit_code,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        timed_out,
        cancelled: false,
    })
}
