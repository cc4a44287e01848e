//! Exec inside a workspace container: the command runs under a small wrapper that checks its cwd, stdout
//! and stderr are read concurrently as the engine multiplexes them and capped, and a timeout or
//! cancellation kills the whole process tree (every process carrying the exec's marker variable) before
//! returning.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, EngineResult, OutputSink};

/// Exit code (plus a stderr line) the wrapper uses when the cwd is missing, before the user's command runs.
pub const CWD_MISSING_EXIT: i64 = 213;
const CWD_MISSING_MSG: &str = "berth: no such directory: ";

/// `$1` is the cwd, `$2` the command, `$3` `keep` to leave what the command started running. bash when
/// the image has it, else sh. Unless kept, whatever the command left behind (background jobs, daemons,
/// a fork bomb's children: every process with the exec's marker) is killed before the exec ends, so
/// it owns its processes and its output stream closes when the command ends.
const WRAPPER: &str = r#"cd -- "$1" 2>/dev/null || { printf '%s%s\n' 'berth: no such directory: ' "$1" >&2; exit 213; }
if command -v bash >/dev/null 2>&1; then bash -c "$2"; else sh -c "$2"; fi
rc=$?
[ "$3" = keep ] && exit "$rc"
if command -v bash >/dev/null 2>&1; then
  # Environments are read by bash itself: no process per candidate.
  bash -c 'pass=0; while [ "$pass" -lt 5 ]; do found=""
    for d in /proc/[0-9]*; do p=${d#/proc/}
      [ "$p" = "$1" ] || [ "$p" = "$$" ] && continue
      while IFS= read -r -d "" kv; do
        if [ "$kv" = "BERTH_EXEC_ID=$BERTH_EXEC_ID" ]; then kill -9 "$p" 2>/dev/null && found=1; break; fi
      done 2>/dev/null < "$d/environ"
    done
    [ -z "$found" ] && break; pass=$((pass + 1)); done' berth-reap "$$"
else
  for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$$" ] && continue
    tr '\0' '\n' 2>/dev/null < "$d/environ" | grep -qx "BERTH_EXEC_ID=$BERTH_EXEC_ID" && kill -9 "$p" 2>/dev/null
  done
fi
exit "$rc""#;

/// Kills every process whose environment holds `BERTH_EXEC_ID=$1`, over a few passes to catch processes
/// forked while the previous pass ran. Children inherit the marker, so a whole tree goes, even the parts
/// that called setsid or were reparented to init. So does every process of a session a marked process
/// leads: the agent server's environment cannot be read (see `opencode::runtime`), so it runs under a
/// marked session leader instead (every exec's main process leads its own session).
const KILL_TREE: &str = r#"id="$1"; pass=0
while [ "$pass" -lt 5 ]; do
  found=""; leaders=" "
  for d in /proc/[0-9]*; do
    p="${d#/proc/}"
    [ "$p" = "$$" ] && continue
    if tr '\0' '\n' 2>/dev/null < "$d/environ" | grep -qx "BERTH_EXEC_ID=$id"; then
      read -r _ _ _ _ _ sid _ 2>/dev/null < "$d/stat" && [ "$sid" = "$p" ] && leaders="$leaders$p "
      kill -9 "$p" 2>/dev/null && found=1
    fi
  done
  if [ "$leaders" != " " ]; then
    for d in /proc/[0-9]*; do
      p="${d#/proc/}"
      read -r _ _ _ _ _ sid _ 2>/dev/null < "$d/stat" || continue
      case "$leaders" in *" $sid "*) kill -9 "$p" 2>/dev/null && found=1 ;; esac
    done
  fi
  [ -z "$found" ] && break
  pass=$((pass + 1))
  sleep 0.1
done"#;

/// Lists the execs still running on their own (their main process has no parent in the container, as
/// every exec's has, and carries a deadline): `MARKER DEADLINE init|exec` lines. berth waits on each exec it
/// starts, so after a restart these are the ones a crash cut off from berth.
const ORPHANED_EXECS: &str = r#"for d in /proc/[0-9]*; do
  p="${d#/proc/}"
  [ "$p" = "$$" ] && continue
  read -r _ _ _ ppid _ < "$d/stat" 2>/dev/null || continue
  [ "$ppid" = 0 ] || continue
  env=$(tr '\0' '\n' 2>/dev/null < "$d/environ") || continue
  id=$(printf '%s\n' "$env" | sed -n 's/^BERTH_EXEC_ID=//p')
  deadline=$(printf '%s\n' "$env" | sed -n 's/^BERTH_EXEC_DEADLINE=//p')
  init=$(printf '%s\n' "$env" | grep -qx 'BERTH_INIT=1' && echo init || echo exec)
  [ -n "$id" ] && [ -n "$deadline" ] && echo "$id $deadline $init"
done
exit 0"#;

/// An exec whose waiter is gone (berth crashed while it ran).
#[derive(Debug, Clone)]
pub struct OrphanedExec {
    pub marker: String,
    /// When its timeout runs out (unix seconds).
    pub deadline: i64,
    /// A workspace's init (its build or rerun-init was cut off with it), not a user's exec.
    pub init: bool,
}

pub struct ExecRequest<'a> {
    pub container: &'a str,
    pub command: &'a str,
    pub cwd: &'a str,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub timeout: Duration,
    pub max_output: usize,
    /// Cancels the exec like a timeout does (e.g. the workspace is being deleted).
    pub cancel: Option<CancellationToken>,
    /// Leave what the command started running after it ends (an init starting services, or a
    /// client's `background: true`); otherwise it is killed when the command ends.
    pub keep_processes: bool,
}

#[derive(Debug, Default)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub timed_out: bool,
    pub cancelled: bool,
}

impl ExecOutput {
    /// True when the wrapper refused to start because the cwd does not exist.
    pub fn cwd_missing(&self) -> bool {
        self.exit_code == CWD_MISSING_EXIT && self.stderr.starts_with(CWD_MISSING_MSG.as_bytes())
    }
}

struct Capture<'s> {
    out: ExecOutput,
    max: usize,
    sink: &'s mut OutputSink,
}

impl Capture<'_> {
    async fn push(&mut self, chunk: LogOutput) {
        let (buf, truncated, bytes) = match &chunk {
            LogOutput::StdOut { message } => (
                &mut self.out.stdout,
                &mut self.out.stdout_truncated,
                message,
            ),
            LogOutput::StdErr { message } => (
                &mut self.out.stderr,
                &mut self.out.stderr_truncated,
                message,
            ),
            LogOutput::Console { message } => (
                &mut self.out.stdout,
                &mut self.out.stdout_truncated,
                message,
            ),
            LogOutput::StdIn { .. } => return,
        };
        let room = self.max.saturating_sub(buf.len());
        if bytes.len() > room {
            *truncated = true;
        }
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.sink.write(bytes).await;
    }
}

type OutputStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

async fn pump(
    output: &mut OutputStream,
    capture: &mut Capture<'_>,
) -> Result<(), bollard::errors::Error> {
    while let Some(chunk) = output.next().await {
        capture.push(chunk?).await;
    }
    Ok(())
}

impl Engine {
    /// A short housekeeping command of berth's own (clearing a directory, probing for a file): as root
    /// from `/`, bounded to a minute, output kept small.
    pub async fn run_quiet(&self, container: &str, command: &str) -> EngineResult<ExecOutput> {
        self.exec(
            ExecRequest {
                container,
                command,
                cwd: "/",
                env: Vec::new(),
                timeout: Duration::from_secs(60),
                max_output: 64 * 1024,
                cancel: None,
                keep_processes: false,
            },
            &mut OutputSink::none(),
        )
        .await
    }

    pub async fn exec(
        &self,
        req: ExecRequest<'_>,
        sink: &mut OutputSink,
    ) -> EngineResult<ExecOutput> {
        let op = format!("exec in container {}", req.container);
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let mut env = req.env.clone();
        env.push(format!("BERTH_EXEC_ID={marker}"));
        // So a berth that restarts after a crash can still enforce the timeout.
        let deadline = chrono::Utc::now().timestamp() + req.timeout.as_secs() as i64;
        env.push(format!("BERTH_EXEC_DEADLINE={deadline}"));
        let keep = if req.keep_processes { "keep" } else { "reap" };
        let cmd = vec![
            "/bin/sh",
            "-c",
            WRAPPER,
            "berth-exec",
            req.cwd,
            req.command,
            keep,
        ];
        let created = self
            .docker
            .create_exec(
                req.container,
                CreateExecOptions {
                    cmd: Some(cmd),
                    env: Some(env.iter().map(String::as_str).collect()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| EngineError::from_bollard(&op, e))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: Some(64 * 1024),
                }),
            )
            .await
            .map_err(|e| EngineError::from_bollard(&op, e))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(EngineError::other(
                &op,
                "the engine detached an attached exec",
            ));
        };
        let mut capture = Capture {
            out: ExecOutput::default(),
            max: req.max_output,
            sink,
        };
        let cancel = req.cancel.clone().unwrap_or_default();
        let finished = tokio::select! {
            r = tokio::time::timeout(req.timeout, pump(&mut output, &mut capture)) => match r {
                Ok(r) => { r.map_err(|e| EngineError::from_bollard(&op, e))?; true }
                Err(_) => { capture.out.timed_out = true; false }
            },
            _ = cancel.cancelled() => { capture.out.cancelled = true; false }
        };
        if !finished {
            self.kill_tree(req.container, &marker).await;
            // The stream ends once the killed process's pipes close; keep what it still says.
            let _ =
                tokio::time::timeout(Duration::from_secs(5), pump(&mut output, &mut capture)).await;
        }
        let inspect = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| EngineError::from_bollard(&op, e))?;
        capture.out.exit_code = match (finished, inspect.running, inspect.exit_code) {
            (true, _, Some(code)) => code,
            (false, Some(false), Some(code)) => code,
            _ => -1,
        };
        Ok(capture.out)
    }

    /// Starts a long-running process in the container without waiting for it; the engine's exec id. `marker` goes into its
    /// environment as `BERTH_EXEC_ID`, so `kill_tree` can stop it and everything it started. `stdin`, when
    /// given, is written to its standard input, which is then closed: a way to hand it a secret that its
    /// environment (readable by other processes of the container) must not hold.
    pub async fn exec_detached(
        &self,
        container: &str,
        command: &str,
        env: Vec<String>,
        marker: &str,
        stdin: Option<&[u8]>,
    ) -> EngineResult<String> {
        let op = format!("start a process in container {container}");
        let mut env = env;
        env.push(format!("BERTH_EXEC_ID={marker}"));
        let created = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(vec!["/bin/sh", "-c", command]),
                    env: Some(env.iter().map(String::as_str).collect()),
                    working_dir: Some("/workspace"),
                    attach_stdin: Some(stdin.is_some()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| EngineError::from_bollard(&op, e))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: stdin.is_none(),
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| EngineError::from_bollard(&op, e))?;
        if let (Some(bytes), StartExecResults::Attached { mut input, .. }) = (stdin, started) {
            use tokio::io::AsyncWriteExt;
            // The process goes on once the attachment closes; it has read what it needs by then.
            input
                .write_all(bytes)
                .await
                .map_err(|e| EngineError::other(&op, format!("write its input: {e}")))?;
            let _ = input.shutdown().await;
        }
        Ok(created.id)
    }

    /// The exit code of a process `exec_detached` started, once it has ended; `None` while it runs.
    pub async fn detached_exit(&self, exec_id: &str) -> EngineResult<Option<i64>> {
        let inspect = self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| EngineError::from_bollard(format!("inspect exec {exec_id}"), e))?;
        Ok(match inspect.running {
            Some(false) => Some(inspect.exit_code.unwrap_or(-1)),
            _ => None,
        })
    }

    /// The execs in the container that nobody waits for any longer (see `ORPHANED_EXECS`).
    pub async fn orphaned_execs(&self, container: &str) -> EngineResult<Vec<OrphanedExec>> {
        let out = self.run_quiet(container, ORPHANED_EXECS).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut found: Vec<OrphanedExec> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some(OrphanedExec {
                    marker: fields.next()?.to_string(),
                    deadline: fields.next()?.parse().ok()?,
                    init: fields.next()? == "init",
                })
            })
            .collect();
        found.sort_by(|a, b| a.marker.cmp(&b.marker));
        found.dedup_by(|a, b| a.marker == b.marker);
        Ok(found)
    }

    /// Kills every process in the container carrying `BERTH_EXEC_ID=<marker>`. Best effort: a failure is
    /// logged, the caller has already given up on the process.
    pub async fn kill_tree(&self, container: &str, marker: &str) {
        let run = async {
            let created = self
                .docker
                .create_exec(
                    container,
                    CreateExecOptions {
                        cmd: Some(vec!["/bin/sh", "-c", KILL_TREE, "berth-kill", marker]),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await?;
            if let StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&created.id, None).await?
            {
                while output.next().await.is_some() {}
            }
            Ok::<_, bollard::errors::Error>(())
        };
        match tokio::time::timeout(Duration::from_secs(15), run).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(container, error = %e, "killing a timed-out exec failed"),
            Err(_) => tracing::warn!(container, "killing a timed-out exec timed out"),
        }
    }
}
