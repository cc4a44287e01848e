//! The resident agent (`berth-agent`, the `agent/` crate): berth installs its binary into the data dir,
//! every container it creates mounts that read-only and runs it under a loop that restarts it (the
//! container's init stays PID 1), and berth reaches it through a unix socket in a per-workspace host
//! directory mounted into the container — on every network mode. The agent accepts only peers outside
//! the container's pid namespace (see the agent's `peer_allowed`), so nothing inside can drive it.
//! A container without that socket (built before the agent, or without a binary) is reached through the
//! engine as before.

pub mod client;

use std::path::{Path, PathBuf};

pub use client::{AgentClient, AgentError, AgentResult};

use crate::config::Config;

/// Where containers see the binary's directory, and the socket's.
pub const BIN_TARGET: &str = "/opt/berth/bin";
pub const RUN_TARGET: &str = "/run/berth";
const BINARY: &str = "berth-agent";
/// A unix socket's path must fit in `sun_path`.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Clone)]
pub struct Resident {
    bin_dir: PathBuf,
    run_root: PathBuf,
    available: bool,
}

impl Resident {
    /// Installs the configured binary (when it changed) and says whether workspaces get an agent.
    pub fn install(config: &Config) -> Self {
        let bin_dir = config.agent_dir();
        let run_root = config.agent_run_dir();
        let source = config.agent_bin.clone().or_else(|| {
            std::env::current_exe()
                .ok()
                .map(|exe| exe.with_file_name(BINARY))
        });
        let available = match source.filter(|s| s.is_file()) {
            Some(source) => match copy_if_changed(&source, &bin_dir.join(BINARY)) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(source = %source.display(), error = %e, "installing the resident agent failed; workspaces are reached through the engine");
                    false
                }
            },
            None => {
                tracing::warn!("no berth-agent binary (BERTH_AGENT_BIN); workspaces are reached through the engine");
                false
            }
        };
        if available {
            let probe = run_root
                .join("00000000-0000-0000-0000-000000000000")
                .join("agent.sock");
            if probe.as_os_str().len() > MAX_SOCKET_PATH {
                tracing::warn!(data_dir = %config.data_dir.display(), "the data dir's path is too long for the agent's socket; workspaces are reached through the engine");
                return Self {
                    bin_dir,
                    run_root,
                    available: false,
                };
            }
        }
        Self {
            bin_dir,
            run_root,
            available,
        }
    }

    pub fn available(&self) -> bool {
        self.available
    }

    /// The mounts and command a new container gets: the binary's directory (read-only), the socket's
    /// directory, and a loop that keeps the agent running.
    pub fn container_parts(&self, workspace_id: &str) -> Option<ContainerParts> {
        if !self.available {
            return None;
        }
        let run_dir = self.run_root.join(workspace_id);
        if let Err(e) = create_private_dir(&run_dir) {
            tracing::warn!(workspace.id = workspace_id, error = %e, "creating the agent's socket directory failed");
            return None;
        }
        Some(ContainerParts {
            bin_dir: self.bin_dir.to_str()?.to_string(),
            run_dir: run_dir.to_str()?.to_string(),
            command: vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "while :; do {BIN_TARGET}/{BINARY} --socket {RUN_TARGET}/agent.sock > {RUN_TARGET}/agent.log 2>&1; sleep 0.5; done"
                ),
            ],
        })
    }

    /// The agent of a workspace whose container has one.
    pub fn client(&self, workspace_id: &str) -> Option<AgentClient> {
        let socket = self.run_root.join(workspace_id).join("agent.sock");
        socket.exists().then(|| AgentClient::new(socket))
    }

    /// The agent of a workspace whose container was just started: its socket appears within moments.
    pub async fn client_within(
        &self,
        workspace_id: &str,
        wait: std::time::Duration,
    ) -> Option<AgentClient> {
        // Only a container made with the agent (its socket directory exists) is worth waiting for.
        if !self.available || !self.run_root.join(workspace_id).is_dir() {
            return self.client(workspace_id);
        }
        let started = std::time::Instant::now();
        loop {
            if let Some(c) = self.client(workspace_id) {
                return Some(c);
            }
            if started.elapsed() > wait {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Forgets a workspace's socket directory (its container is gone).
    pub fn remove(&self, workspace_id: &str) {
        let _ = std::fs::remove_dir_all(self.run_root.join(workspace_id));
    }
}

pub struct ContainerParts {
    pub bin_dir: String,
    pub run_dir: String,
    pub command: Vec<String>,
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Copies the binary in through a temporary file and a rename, so running agents keep theirs.
fn copy_if_changed(source: &Path, target: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let new = std::fs::read(source)?;
    if std::fs::read(target).ok().as_deref() == Some(new.as_slice()) {
        return Ok(());
    }
    let dir = target.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{BINARY}.tmp"));
    std::fs::write(&tmp, &new)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, target)
}
