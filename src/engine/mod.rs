//! The Docker engine, through bollard: connection and API version negotiation, berth's labels, and the one
//! place where engine errors get their meaning (404 → not found, 409 → conflict). Submodules own images,
//! containers and volumes, and exec.

mod containers;
mod events;
mod exec;
mod images;
pub mod labels;
mod networks;
mod output_log;
mod seccomp;

use std::time::Duration;

use bollard::Docker;

pub use containers::{ContainerSpec, ManagedContainer, Usage, AGENT_PORT, CODE_DIR};
pub use events::{ContainerEvent, ContainerEventKind};
pub use exec::{ExecOutput, ExecRequest, OrphanedExec};
pub use images::{tar_of, BuildContext};
pub use networks::{network_name, BRIDGE_PREFIX};
pub use output_log::OutputSink;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{op}: not found: {msg}")]
    NotFound { op: String, msg: String },
    #[error("{op}: conflict: {msg}")]
    Conflict { op: String, msg: String },
    #[error("{op}: {msg}")]
    Other { op: String, msg: String },
}

impl EngineError {
    /// Names the operation that failed, so a log line or error says what berth was doing.
    pub fn from_bollard(op: impl Into<String>, e: bollard::errors::Error) -> Self {
        let op = op.into();
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => match status_code {
                404 => Self::NotFound { op, msg: message },
                409 => Self::Conflict { op, msg: message },
                _ => Self::Other { op, msg: message },
            },
            other => Self::Other {
                op,
                msg: other.to_string(),
            },
        }
    }
    pub fn other(op: impl Into<String>, msg: impl Into<String>) -> Self {
        Self::Other {
            op: op.into(),
            msg: msg.into(),
        }
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// A connection to the engine plus the identity of this berth instance: every object berth creates carries
/// `berth.managed=true` and `berth.instance=<instance>`, and berth only ever removes objects with both.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    instance: String,
}

impl Engine {
    /// Connects through `DOCKER_HOST` (or the local socket) and settles on the highest API version both
    /// sides speak, so an older engine (20.10 speaks 1.41) works.
    pub async fn connect(instance: String) -> EngineResult<Self> {
        let docker = Docker::connect_with_defaults()
            .map_err(|e| EngineError::from_bollard("connect to the Docker engine", e))?
            // Long exec streams and image builds are bounded by berth's own timeouts, not the client's.
            .with_timeout(Duration::from_secs(6 * 3600));
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| EngineError::from_bollard("negotiate the Docker API version", e))?;
        Ok(Self { docker, instance })
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub async fn ping(&self) -> EngineResult<String> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| EngineError::from_bollard("engine version", e))?;
        Ok(v.api_version.unwrap_or_default())
    }
}

/// Engine object names derived from a workspace id.
pub fn container_name(workspace_id: &str) -> String {
    format!("berth-ws-{workspace_id}")
}
pub fn volume_name(workspace_id: &str) -> String {
    format!("berth-ws-{workspace_id}")
}
/// A workspace's own image, as berth built them before images were shared (still removed with it).
pub fn image_tag(workspace_id: &str) -> String {
    format!("berth-ws-{workspace_id}:latest")
}
/// An E2B snapshot's image.
pub fn snapshot_tag(instance: &str, snapshot_id: &str) -> String {
    instance_tag("berth-snap", instance, snapshot_id)
}
/// The image every workspace of one distro and package set shares, named by what it is built from.
pub fn shared_image_tag(instance: &str, digest: &str) -> String {
    instance_tag("berth-img", instance, digest)
}
/// `{kind}-{instance}-{name}:latest`, the instance cut to what a repository name may hold.
fn instance_tag(kind: &str, instance: &str, name: &str) -> String {
    let short: String = instance
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("{kind}-{}-{name}:latest", short.to_ascii_lowercase())
}
