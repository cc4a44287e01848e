//! The git CLI, run against the library repository. Real git, so the library is an ordinary repository a
//! user can clone, inspect and push to by hand.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

#[derive(Debug, Clone)]
pub struct Git {
    dir: PathBuf,
    ssh_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("git {args}: {message}")]
pub struct GitError {
    pub args: String,
    pub message: String,
}

/// Network operations give up after this long instead of hanging a request.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(120);

impl Git {
    pub fn new(dir: &Path, ssh_key: Option<PathBuf>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ssh_key,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(&self.dir)
            // berth commits as itself; the author is the user who made the change.
            .args(["-c", "user.name=berth", "-c", "user.email=berth@localhost"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(key) = &self.ssh_key {
            cmd.env(
                "GIT_SSH_COMMAND",
                format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
                    key.display()
                ),
            );
        } else {
            cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        cmd
    }

    /// Runs git and returns its stdout; a non-zero exit is an error carrying stderr.
    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let err = |message: String| GitError {
            args: args.first().copied().unwrap_or_default().to_string(),
            message,
        };
        let out = tokio::time::timeout(NETWORK_TIMEOUT, self.command(args).output())
            .await
            .map_err(|_| err(format!("timed out after {}s", NETWORK_TIMEOUT.as_secs())))?
            .map_err(|e| err(format!("cannot run git: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(err(stderr.trim().to_string()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether git exits 0 (for `diff --quiet`, `rev-parse --verify` and the like).
    pub async fn succeeds(&self, args: &[&str]) -> bool {
        matches!(self.command(args).stdout(Stdio::null()).stderr(Stdio::null()).status().await, Ok(s) if s.success())
    }
}
