//! The engine's event feed for this instance's containers: what happened to a workspace container that berth
//! did not do itself (it died, was OOM-killed, stopped or removed), so status follows at once.

use std::collections::HashMap;

use bollard::system::EventsOptions;
use futures::{Stream, StreamExt};

use super::{labels, Engine, EngineError, EngineResult};

/// What happened to one of this instance's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEventKind {
    /// Its main process ended (exit code as the engine reported it).
    Died {
        exit_code: Option<i64>,
    },
    /// The kernel killed a process in it for lack of memory; the container may still run.
    OutOfMemory,
    Started,
    Removed,
}

#[derive(Debug, Clone)]
pub struct ContainerEvent {
    pub kind: ContainerEventKind,
    pub container_id: String,
    pub workspace_id: String,
}

impl Engine {
    /// Container events of this instance from `since` (unix seconds) on, as long as the engine keeps the
    /// connection open. Events berth has no use for are left out.
    pub fn container_events(
        &self,
        since: i64,
    ) -> impl Stream<Item = EngineResult<ContainerEvent>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![
                    format!("{}=true", labels::MANAGED),
                    format!("{}={}", labels::INSTANCE, self.instance),
                ],
            ),
            (
                "event".to_string(),
                ["die", "oom", "start", "destroy"]
                    .map(String::from)
                    .to_vec(),
            ),
        ]);
        self.docker
            .events(Some(EventsOptions::<String> {
                since: Some(since.to_string()),
                until: None,
                filters,
            }))
            .filter_map(|item| async move {
                match item {
                    Err(e) => Some(Err(EngineError::from_bollard("follow engine events", e))),
                    Ok(msg) => {
                        let actor = msg.actor?;
                        let mut attrs = actor.attributes.unwrap_or_default();
                        let kind = match msg.action.as_deref()? {
                            "die" => ContainerEventKind::Died {
                                exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
                            },
                            "oom" => ContainerEventKind::OutOfMemory,
                            "start" => ContainerEventKind::Started,
                            "destroy" => ContainerEventKind::Removed,
                            _ => return None,
                        };
                        Some(Ok(ContainerEvent {
                            kind,
                            container_id: actor.id?,
                            workspace_id: attrs.remove(labels::WORKSPACE)?,
                        }))
                    }
                }
            })
    }

    /// Stops a container, giving its processes `grace_secs` to exit; a stopped or missing one is fine.
    pub async fn stop_container(&self, container: &str, grace_secs: i64) -> EngineResult<()> {
        let options = bollard::container::StopContainerOptions { t: grace_secs };
        match self.docker.stop_container(container, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(EngineError::from_bollard(
                format!("stop container {container}"),
                e,
            )),
        }
    }
}
