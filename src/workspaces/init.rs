//! Init scripts: assembling a workspace's fragments and own script, running them inside its container
//! with its env vars and a timeout, and the init log kept on the host (readable during a build and after
//! a restart).

use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{BuildOp, Status, Workspace, WorkspaceType};
use super::Workspaces;
use crate::engine::{self, ExecOutput, ExecRequest, OutputSink};
use crate::error::{ApiError, ApiResult};

/// Where the parts of one init run are unpacked; each run gets its own directory.
const INIT_DIR: &str = "/var/lib/berth/init";

/// Runs each part in order with bash (sh without it); the first failing part stops init with its code.
/// Parts a crash left behind (their runner killed at the restart) go first.
const RUNNER: &str = r#"dir="$1"; rc=0
for old in /var/lib/berth/init/*; do [ "$old" = "$dir" ] || rm -rf "$old"; done
for f in "$dir"/*.sh; do
  [ -e "$f" ] || continue
  echo "== berth: running $(basename "$f")"
  if command -v bash >/dev/null 2>&1; then bash "$f"; else sh "$f"; fi
  rc=$?
  if [ "$rc" -ne 0 ]; then echo "== berth: $(basename "$f") failed with exit code $rc"; break; fi
done
rm -rf "$dir"
exit "$rc""#;

#[derive(Debug, Serialize, ToSchema)]
pub struct InitLog {
    pub exists: bool,
    /// The last `lines` lines; or, with `from_byte`, the complete lines written since that offset.
    pub content: String,
    pub total_lines: usize,
    pub log_path: String,
    /// Where the next `from_byte` read starts: just after the last complete line in `content`.
    pub next_byte: u64,
    /// With `from_byte`: the log was started afresh (a new build) and `content` is from its start.
    pub restarted: bool,
}

/// How much of the log to answer.
#[derive(Debug, Clone, Copy)]
pub enum LogWindow {
    /// The last N lines.
    Last(usize),
    /// The complete lines from this byte offset on (a follower's cursor).
    From(u64),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RerunInitResult {
    pub success: bool,
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    pub duration_secs: f64,
    pub timed_out: bool,
}

impl Workspaces {
    /// The parts of a workspace's init, in order: its fragments, its skills' `setup_commands`, then its
    /// own script.
    async fn init_parts(&self, ws: &Workspace) -> Vec<(String, String)> {
        let mut parts = Vec::new();
        for name in &ws.init_scripts {
            if let Some(body) = self.fragment(name).await {
                parts.push((format!("{:02}-{name}.sh", parts.len() + 1), body));
            }
        }
        for skill in &ws.skills {
            let commands = self.inner.library.skill_setup_commands(skill).await;
            if !commands.is_empty() {
                let body = format!(
                    "# setup_commands of skill {skill}\nset -e\n{}\n",
                    commands.join("\n")
                );
                parts.push((format!("{:02}-skill-{skill}.sh", parts.len() + 1), body));
            }
        }
        if let Some(script) = &ws.init_script {
            parts.push((
                format!("{:02}-workspace.sh", parts.len() + 1),
                script.clone(),
            ));
        }
        parts
    }

    /// Runs the init parts in the container, streaming into `log`. `Ok(None)` when there is nothing to run.
    pub(super) async fn run_init(
        &self,
        ws: &Workspace,
        container: &str,
        timeout: Duration,
        log: &mut OutputSink,
        cancel: Option<tokio_util::sync::CancellationToken>,
    ) -> Result<Option<ExecOutput>, String> {
        let started = std::time::Instant::now();
        let result = self
            .run_init_parts(ws, container, timeout, log, cancel)
            .await;
        let outcome = match &result {
            Ok(None) => return result,
            Ok(Some(out)) if out.timed_out => "timed_out",
            Ok(Some(out)) if out.exit_code == 0 => "ok",
            _ => "failed",
        };
        crate::metrics::get()
            .inits
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn run_init_parts(
        &self,
        ws: &Workspace,
        container: &str,
        timeout: Duration,
        log: &mut OutputSink,
        cancel: Option<tokio_util::sync::CancellationToken>,
    ) -> Result<Option<ExecOutput>, String> {
        let parts = self.init_parts(ws).await;
        if parts.is_empty() {
            log.write(b"== berth: no init script\n").await;
            return Ok(None);
        }
        let run_dir = format!("{INIT_DIR}/{}", uuid::Uuid::new_v4().simple());
        let files: Vec<(String, &[u8])> = parts
            .iter()
            .map(|(n, body)| (format!("{}/{n}", &run_dir[1..]), body.as_bytes()))
            .collect();
        let tar = engine::tar_of(files.iter().map(|(p, b)| (p.as_str(), *b, 0o755)))
            .map_err(|e| format!("pack init script: {e}"))?;
        let engine = &self.inner.engine;
        engine
            .upload_tar(container, "/", tar)
            .await
            .map_err(|e| e.to_string())?;
        log.write(
            format!(
                "== berth: running init ({} parts, timeout {}s)\n",
                parts.len(),
                timeout.as_secs()
            )
            .as_bytes(),
        )
        .await;
        let command = format!("set -- {run_dir}\n{RUNNER}");
        let out = engine
            .exec(
                ExecRequest {
                    container,
                    command: &command,
                    cwd: "/workspace",
                    env: ws
                        .env_vars
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        // A restart tells a cut-off init from a user's exec by it.
                        .chain(std::iter::once("BERTH_INIT=1".to_string()))
                        .collect(),
                    timeout,
                    max_output: self.inner.config.exec_max_output,
                    cancel,
                    // Services an init starts are what it is for.
                    keep_processes: true,
                },
                log,
            )
            .await
            .map_err(|e| e.to_string())?;
        let code = if out.timed_out || out.cancelled {
            None
        } else {
            Some(out.exit_code)
        };
        if let Err(e) = self.inner.store.record_init_result(&ws.id, code).await {
            tracing::warn!(workspace.id = %ws.id, error = %e, "recording the init result failed");
        }
        log.write(
            format!(
                "== berth: init {}\n",
                match code {
                    Some(c) => format!("exited with code {c}"),
                    None if out.timed_out => "timed out".to_string(),
                    None => "cancelled".to_string(),
                }
            )
            .as_bytes(),
        )
        .await;
        Ok(Some(out))
    }

    /// Re-runs init in the existing container without rebuilding. Allowed from `ready`, and from `error`
    /// when the container exists (the usual case: fix the script, run it again).
    pub async fn rerun_init(
        &self,
        id: &str,
        timeout_secs: Option<u64>,
    ) -> ApiResult<RerunInitResult> {
        let ws = self.get(id).await?;
        if ws.workspace_type != WorkspaceType::Container {
            return Err(ApiError::invalid(
                "rerun-init applies to container workspaces",
            ));
        }
        let limit = self.inner.config.init_timeout_secs;
        let timeout = self.checked_timeout(timeout_secs, limit, limit)?;
        let container = engine::container_name(id);
        let running = self
            .inner
            .engine
            .inspect_container(&container)
            .await?
            .and_then(|c| c.state.and_then(|s| s.running))
            .unwrap_or(false);
        if !matches!(ws.status, Status::Ready | Status::Error) || !running {
            return Err(ApiError::conflict(format!(
                "workspace is {} {}; build it first",
                ws.status.as_str(),
                if running {
                    ""
                } else {
                    "and has no running container"
                }
            )));
        }
        let moved = self
            .inner
            .store
            .begin_building(id, &[Status::Ready, Status::Error], BuildOp::RerunInit)
            .await?;
        if !moved {
            return Err(ApiError::conflict("the workspace is building"));
        }
        // The run is owned by the supervisor, not the request: a client that hangs up must not leave the
        // workspace `building`.
        let this = self.clone();
        let handle = self.inner.tracker.spawn(async move {
            let started = Instant::now();
            let mut log = OutputSink::append_to(&this.init_log_path(&ws.id), false)
                .await
                .unwrap_or_else(|_| OutputSink::none());
            log.write(
                format!(
                    "== berth: re-running init at {}\n",
                    chrono::Utc::now().to_rfc3339()
                )
                .as_bytes(),
            )
            .await;
            let result = this
                .run_init(&ws, &container, timeout, &mut log, None)
                .await;
            let (status, message, out) = match result {
                Ok(None) => (Status::Ready, None, ExecOutput::default()),
                Ok(Some(out)) if out.exit_code == 0 && !out.timed_out => (Status::Ready, None, out),
                Ok(Some(out)) => {
                    let msg = if out.timed_out {
                        format!(
                            "init script timed out after {}s; see the init log",
                            timeout.as_secs()
                        )
                    } else {
                        format!(
                            "init script failed with exit code {}; see the init log",
                            out.exit_code
                        )
                    };
                    (Status::Error, Some(msg), out)
                }
                Err(e) => (
                    Status::Error,
                    Some(e),
                    ExecOutput {
                        exit_code: -1,
                        ..Default::default()
                    },
                ),
            };
            this.record_end(&ws.id, status, message).await;
            Ok::<_, anyhow::Error>(RerunInitResult {
                success: status == Status::Ready,
                exit_code: out.exit_code,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                duration_secs: started.elapsed().as_secs_f64(),
                timed_out: out.timed_out,
            })
        });
        handle
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("rerun-init task: {e}")))?
            .map_err(ApiError::Internal)
    }

    /// The last `lines` lines of the init log.
    pub async fn init_log(&self, id: &str, window: LogWindow) -> ApiResult<InitLog> {
        let ws = self.get(id).await?;
        let path = self.init_log_path(&ws.id);
        let log_path = path.to_string_lossy().into_owned();
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(InitLog {
                    exists: false,
                    content: String::new(),
                    total_lines: 0,
                    log_path,
                    next_byte: 0,
                    restarted: false,
                })
            }
            Err(e) => return Err(ApiError::Internal(e.into())),
        };
        let total_lines = bytes.iter().filter(|b| **b == b'\n').count()
            + usize::from(bytes.last().is_some_and(|b| *b != b'\n'));
        let (content, next_byte, restarted) = match window {
            LogWindow::Last(lines) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                let start = all.len().saturating_sub(lines);
                (all[start..].join("\n"), complete_end(&bytes, 0), false)
            }
            LogWindow::From(offset) => {
                // A log shorter than the cursor was started afresh by a new build.
                let restarted = offset as usize > bytes.len();
                let from = if restarted { 0 } else { offset as usize };
                let end = complete_end(&bytes, from);
                let text = String::from_utf8_lossy(&bytes[from..end as usize]).into_owned();
                (text, end, restarted)
            }
        };
        Ok(InitLog {
            exists: true,
            content,
            total_lines,
            log_path,
            next_byte,
            restarted,
        })
    }

    /// Validates a client's timeout against the configured maximum.
    pub(super) fn checked_timeout(
        &self,
        requested: Option<u64>,
        default: u64,
        max: u64,
    ) -> ApiResult<Duration> {
        match requested {
            None => Ok(Duration::from_secs(default)),
            Some(0) => Err(ApiError::invalid("timeout_secs must be at least 1")),
            Some(s) if s > max => Err(ApiError::invalid(format!(
                "timeout_secs must be at most {max}"
            ))),
            Some(s) => Ok(Duration::from_secs(s)),
        }
    }
}

/// The offset just after the last complete line at or after `from`: a line still being written is
/// left for the next read.
fn complete_end(bytes: &[u8], from: usize) -> u64 {
    match bytes[from..].iter().rposition(|b| *b == b'\n') {
        Some(i) => (from + i + 1) as u64,
        None => from as u64,
    }
}
