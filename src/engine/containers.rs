//! Containers and volumes: the long-lived workspace container with its limits and hardening, the volume
//! at `/workspace` that outlives it, inspection for debug and reconcile, file uploads, removal.

use std::collections::HashMap;

use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
    UploadToContainerOptions,
};
use bollard::models::{
    ContainerInspectResponse, HostConfig, Mount, MountTypeEnum, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::volume::{CreateVolumeOptions, ListVolumesOptions, RemoveVolumeOptions};
use bytes::Bytes;

use super::{labels, Engine, EngineError, EngineResult};

/// Capabilities a workspace keeps: enough for package managers and ordinary development (file ownership,
/// switching users, binding low ports), none for raw sockets, device nodes or auditing.
const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
];

pub struct ContainerSpec<'a> {
    pub workspace_id: &'a str,
    pub hostname: &'a str,
    pub image: &'a str,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    /// `bridge` publishes the agent port on 127.0.0.1 only; `host` shares the host's network; `none` has
    /// no network.
    pub network: &'a str,
    /// For `bridge`: the workspace's own network to attach to instead of the engine's default bridge.
    pub own_network: Option<&'a str>,
    /// A host directory to bind-mount at `/code`.
    pub code_mount: Option<&'a str>,
    /// The agent binary (a host file or directory) and where it appears, mounted read-only.
    pub agent_mount: Option<(&'a str, &'a str)>,
    /// The resident agent: its binary's directory, its socket's directory and the container's command
    /// that keeps it running (`sleep infinity` without one).
    pub resident: Option<&'a crate::resident::ContainerParts>,
}

/// Where a codebase's host directory appears inside its workspace container.
pub const CODE_DIR: &str = "/code";

/// The port the workspace's agent server listens on inside a bridge-networked container.
pub const AGENT_PORT: &str = "4096/tcp";

/// A container this instance owns, as listed by the engine.
pub struct ManagedContainer {
    pub id: String,
    pub workspace_id: Option<String>,
    pub running: bool,
}

impl Engine {
    /// Creates the workspace volume unless it exists already (it survives rebuilds).
    pub async fn ensure_volume(&self, workspace_id: &str) -> EngineResult<String> {
        let name = super::volume_name(workspace_id);
        self.docker
            .create_volume(CreateVolumeOptions {
                name: name.clone(),
                labels: labels::for_workspace(&self.instance, workspace_id),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                EngineError::from_bollard(format!("create volume for workspace {workspace_id}"), e)
            })?;
        Ok(name)
    }

    pub async fn remove_volume(&self, workspace_id: &str) -> EngineResult<()> {
        self.remove_volume_named(&super::volume_name(workspace_id))
            .await
    }

    /// Removes a volume by name; a missing one is not an error.
    pub async fn remove_volume_named(&self, name: &str) -> EngineResult<()> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match EngineError::from_bollard(format!("remove volume {name}"), e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Creates (not starts) the workspace container. Secrets are not in its config: env vars are passed
    /// to each exec instead, so `docker inspect` never shows them.
    pub async fn create_container(&self, spec: &ContainerSpec<'_>) -> EngineResult<String> {
        let id = spec.workspace_id;
        let host_config = HostConfig {
            mounts: Some(
                std::iter::once(Mount {
                    target: Some("/workspace".into()),
                    source: Some(super::volume_name(id)),
                    typ: Some(MountTypeEnum::VOLUME),
                    ..Default::default()
                })
                .chain(spec.code_mount.map(|path| Mount {
                    target: Some(CODE_DIR.into()),
                    source: Some(path.to_string()),
                    typ: Some(MountTypeEnum::BIND),
                    ..Default::default()
                }))
                .chain(spec.agent_mount.map(|(host, target)| Mount {
                    target: Some(target.into()),
                    source: Some(host.to_string()),
                    typ: Some(MountTypeEnum::BIND),
                    read_only: Some(true),
                    ..Default::default()
                }))
                .chain(spec.resident.into_iter().flat_map(|r| {
                    [
                        Mount {
                            target: Some(crate::resident::BIN_TARGET.into()),
                            source: Some(r.bin_dir.clone()),
                            typ: Some(MountTypeEnum::BIND),
                            read_only: Some(true),
                            ..Default::default()
                        },
                        Mount {
                            target: Some(crate::resident::RUN_TARGET.into()),
                            source: Some(r.run_dir.clone()),
                            typ: Some(MountTypeEnum::BIND),
                            ..Default::default()
                        },
                    ]
                }))
                .collect(),
            ),
            memory: Some(spec.memory_bytes),
            memory_swap: Some(spec.memory_bytes),
            nano_cpus: Some(spec.nano_cpus),
            pids_limit: Some(spec.pids_limit),
            security_opt: Some(vec![
                "no-new-privileges:true".into(),
                format!("seccomp={}", super::seccomp::profile()),
            ]),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            // A real init as PID 1 reaps the zombies that exec'd process trees leave behind.
            init: Some(true),
            network_mode: Some(spec.own_network.unwrap_or(spec.network).to_string()),
            port_bindings: (spec.network == "bridge").then(|| {
                HashMap::from([(
                    AGENT_PORT.to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )])
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        let config = Config {
            image: Some(spec.image.to_string()),
            // A host-networked container shares the host's name.
            hostname: (spec.network != "host").then(|| spec.hostname.to_string()),
            exposed_ports: (spec.network == "bridge")
                .then(|| HashMap::from([(AGENT_PORT.to_string(), HashMap::new())])),
            cmd: Some(match spec.resident {
                Some(r) => r.command.clone(),
                None => vec!["sleep".into(), "infinity".into()],
            }),
            working_dir: Some("/workspace".into()),
            labels: Some(labels::for_workspace(&self.instance, id)),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: super::container_name(id),
                    platform: None,
                }),
                config,
            )
            .await
            .map_err(|e| {
                EngineError::from_bollard(format!("create container for workspace {id}"), e)
            })?;
        Ok(created.id)
    }

    pub async fn start_container(&self, container: &str) -> EngineResult<()> {
        match self.docker.start_container::<String>(container, None).await {
            Ok(()) => Ok(()),
            // 304: already running.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(EngineError::from_bollard(
                format!("start container {container}"),
                e,
            )),
        }
    }

    pub async fn inspect_container(
        &self,
        container: &str,
    ) -> EngineResult<Option<ContainerInspectResponse>> {
        match self.docker.inspect_container(container, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                match EngineError::from_bollard(format!("inspect container {container}"), e) {
                    e if e.is_not_found() => Ok(None),
                    e => Err(e),
                }
            }
        }
    }

    /// The 127.0.0.1 port the engine published for `port` (e.g. `4096/tcp`) of a running container.
    pub async fn published_port(&self, container: &str, port: &str) -> EngineResult<Option<u16>> {
        let Some(c) = self.inspect_container(container).await? else {
            return Ok(None);
        };
        Ok(c.network_settings
            .and_then(|n| n.ports)
            .and_then(|mut p| p.remove(port))
            .flatten()
            .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port?.parse().ok())))
    }

    /// Force-removes a container; a missing one is not an error.
    pub async fn remove_container(&self, container: &str) -> EngineResult<()> {
        match self
            .docker
            .remove_container(
                container,
                Some(RemoveContainerOptions {
                    force: true,
                    v: false,
                    link: false,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => match EngineError::from_bollard(format!("remove container {container}"), e) {
                e if e.is_not_found() => Ok(()),
                // 409: removal already in progress.
                EngineError::Conflict { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Every container (running or not) that carries this instance's labels.
    pub async fn list_managed_containers(&self) -> EngineResult<Vec<ManagedContainer>> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: labels::instance_filter(&self.instance),
                ..Default::default()
            }))
            .await
            .map_err(|e| EngineError::from_bollard("list berth containers", e))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                Some(ManagedContainer {
                    running: c.state.as_deref() == Some("running"),
                    id: c.id?,
                    workspace_id: c.labels.and_then(|mut l| l.remove(labels::WORKSPACE)),
                })
            })
            .collect())
    }

    /// Names of the volumes this instance owns.
    pub async fn list_managed_volumes(&self) -> EngineResult<Vec<String>> {
        let list = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: labels::instance_filter(&self.instance),
            }))
            .await
            .map_err(|e| EngineError::from_bollard("list berth volumes", e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }

    /// Unpacks a tar archive into the container at `dir`.
    pub async fn upload_tar(&self, container: &str, dir: &str, tar: Vec<u8>) -> EngineResult<()> {
        self.docker
            .upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: dir.to_string(),
                    no_overwrite_dir_non_dir: String::new(),
                }),
                Bytes::from(tar),
            )
            .await
            .map_err(|e| {
                EngineError::from_bollard(format!("upload files into container {container}"), e)
            })
    }
}

impl Engine {
    /// Unpacks a tar archive file into the container at `dir`, streamed: it may be as large as a
    /// workspace. A read that fails ends the stream, and the engine refuses the cut archive.
    pub async fn upload_tar_file(
        &self,
        container: &str,
        dir: &str,
        file: &std::path::Path,
    ) -> EngineResult<()> {
        use futures::StreamExt;
        let op = format!("upload files into container {container}");
        let file = tokio::fs::File::open(file)
            .await
            .map_err(|e| EngineError::other(&op, e.to_string()))?;
        let chunks = tokio_util::io::ReaderStream::new(file)
            .take_while(|r| futures::future::ready(r.is_ok()))
            .filter_map(|r| futures::future::ready(r.ok()));
        self.docker
            .upload_to_container_streaming(
                container,
                Some(UploadToContainerOptions {
                    path: dir.to_string(),
                    no_overwrite_dir_non_dir: String::new(),
                }),
                chunks,
            )
            .await
            .map_err(|e| EngineError::from_bollard(&op, e))
    }

    /// Bytes each of this instance's workspaces uses on the host's disk: its volume plus its container's
    /// writable layer, as the engine measures them (`/system/df`), by workspace id.
    pub async fn disk_usage(&self) -> EngineResult<HashMap<String, u64>> {
        let df = self
            .docker
            .df()
            .await
            .map_err(|e| EngineError::from_bollard("measure disk use", e))?;
        let mine = |labels: &Option<HashMap<String, String>>| -> Option<String> {
            let l = labels.as_ref()?;
            (l.get(labels::INSTANCE) == Some(&self.instance))
                .then(|| l.get(labels::WORKSPACE).cloned())
                .flatten()
        };
        let mut used: HashMap<String, u64> = HashMap::new();
        for c in df.containers.unwrap_or_default() {
            if let Some(ws) = mine(&c.labels) {
                *used.entry(ws).or_default() += c.size_rw.unwrap_or(0).max(0) as u64;
            }
        }
        for v in df.volumes.unwrap_or_default() {
            let labels = Some(v.labels.clone());
            if let Some(ws) = mine(&labels) {
                let size = v.usage_data.map_or(0, |u| u.size.max(0));
                *used.entry(ws).or_default() += size as u64;
            }
        }
        Ok(used)
    }
}

/// A running container's resource use now, as the engine measures it.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Percent of one CPU it used over the engine's last second (200 = two busy CPUs).
    pub cpu_pct: f64,
    pub mem_used: u64,
    pub mem_cache: u64,
    pub mem_limit: u64,
}

impl Engine {
    /// One sample of a container's use (the engine measures CPU over a second, so this takes about
    /// one); `None` when it is not running.
    pub async fn usage(&self, container: &str) -> EngineResult<Option<Usage>> {
        use bollard::container::{MemoryStatsStats, StatsOptions};
        use futures::StreamExt;
        let mut stream = self.docker.stats(
            container,
            Some(StatsOptions {
                stream: false,
                one_shot: false,
            }),
        );
        let stats = match stream.next().await {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                return match EngineError::from_bollard(format!("stats of {container}"), e) {
                    e if e.is_not_found() => Ok(None),
                    e => Err(e),
                }
            }
            None => return Ok(None),
        };
        // A stopped container answers zeros and no CPU count.
        let Some(cpus) = stats.cpu_stats.online_cpus.filter(|n| *n > 0) else {
            return Ok(None);
        };
        let cpu = stats
            .cpu_stats
            .cpu_usage
            .total_usage
            .saturating_sub(stats.precpu_stats.cpu_usage.total_usage) as f64;
        let system = stats
            .cpu_stats
            .system_cpu_usage
            .unwrap_or(0)
            .saturating_sub(stats.precpu_stats.system_cpu_usage.unwrap_or(0))
            as f64;
        let cpu_pct = if system > 0.0 {
            cpu / system * cpus as f64 * 100.0
        } else {
            0.0
        };
        let mem = &stats.memory_stats;
        let mem_cache = match mem.stats {
            Some(MemoryStatsStats::V1(v1)) => v1.cache,
            Some(MemoryStatsStats::V2(v2)) => v2.file,
            None => 0,
        };
        Ok(Some(Usage {
            cpu_pct,
            mem_used: mem.usage.unwrap_or(0).saturating_sub(mem_cache),
            mem_cache,
            mem_limit: mem.limit.unwrap_or(0),
        }))
    }
}

impl Engine {
    /// A directory of a container (its volumes' files included) as a tar, written to `file`.
    pub async fn download_to(
        &self,
        container: &str,
        dir: &str,
        file: &std::path::Path,
    ) -> EngineResult<()> {
        use bollard::container::DownloadFromContainerOptions;
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let op = format!("copy {dir} out of {container}");
        let mut out = tokio::fs::File::create(file)
            .await
            .map_err(|e| EngineError::other(&op, e.to_string()))?;
        let mut stream = self.docker.download_from_container(
            container,
            Some(DownloadFromContainerOptions {
                path: dir.to_string(),
            }),
        );
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| EngineError::from_bollard(&op, e))?;
            out.write_all(&chunk)
                .await
                .map_err(|e| EngineError::other(&op, e.to_string()))?;
        }
        out.flush()
            .await
            .map_err(|e| EngineError::other(&op, e.to_string()))
    }
}
