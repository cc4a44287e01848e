//! Building a container workspace: base image (local, pulled, or a clear error naming `berth images
//! bootstrap`), the workspace image from a generated context, the volume and the container, then init.
//! Runs in the background under the supervisor; the store's status is the only truth clients poll.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::model::{BuildOp, ContainerState, Status, Workspace};
use super::Workspaces;
use crate::catalog::Distro;
use crate::engine::{self, labels, BuildContext, ContainerSpec, EngineError, OutputSink};
use crate::error::{ApiError, ApiResult};

/// Why a build stopped: a message for `error_message`, or cancellation (the workspace is being deleted or
/// berth is shutting down), which writes nothing.
pub(super) enum BuildFailure {
    Failed(String),
    Cancelled,
}

/// What `provision` made or found.
pub(super) struct Provisioned {
    pub container_id: String,
    pub image_id: String,
    /// A container was created (not an existing one started).
    pub new_container: bool,
    /// The image the shared tag named before a rebuild replaced it.
    pub replaced_image: Option<String>,
}

/// How often a build's end that could not be recorded is tried again.
const RECORD_RETRY: Duration = Duration::from_secs(2);

impl From<EngineError> for BuildFailure {
    fn from(e: EngineError) -> Self {
        Self::Failed(e.to_string())
    }
}

impl Workspaces {
    /// Marks the workspace `building` (409 if it already is) and starts the build in the background.
    pub async fn start_build(
        &self,
        id: &str,
        distro: Option<&str>,
        rebuild: bool,
    ) -> ApiResult<Workspace> {
        let ws = self.get(id).await?;
        if ws.workspace_type != super::WorkspaceType::Container {
            return Err(ApiError::invalid("host workspaces have nothing to build"));
        }
        if ws.status == Status::Building {
            return Err(ApiError::conflict("the workspace is already building"));
        }
        let target = match distro {
            Some(d) => self.resolve_distro(d)?,
            None => ws
                .distro
                .clone()
                .unwrap_or_else(|| self.inner.config.default_distro.clone()),
        };
        // Pre-flight before anything changes: for a workspace that has a container, a base image
        // that cannot be had leaves it (and its running container) as it is. A first build records
        // the failure as its `error` instead.
        if ws.container_id.is_some() {
            self.check_base_image(&target).await?;
        }
        if ws.distro.as_deref() != Some(target.as_str()) {
            self.inner.store.set_workspace_distro(id, &target).await?;
        }
        let moved = self
            .inner
            .store
            .begin_building(
                id,
                &[Status::Pending, Status::Ready, Status::Error],
                BuildOp::Build,
            )
            .await?;
        if !moved {
            return Err(ApiError::conflict("the workspace is already building"));
        }
        let ws = self.get(id).await?;
        // The log starts afresh before the answer, so a client reading it from the start after this
        // call sees this build's log and nothing of the last one.
        let log_path = self.init_log_path(id);
        if let Err(e) = OutputSink::append_to(&log_path, true).await {
            tracing::warn!(workspace.id = %id, error = %e, "cannot start the init log");
        }
        let token = self.inner.shutdown.child_token();
        self.inner
            .builds
            .lock()
            .expect("builds lock")
            .insert(id.to_string(), token.clone());
        let this = self.clone();
        let job = ws.clone();
        // A change that waits for a rebuild (distro, network, limits) makes this one.
        let rebuild = rebuild || ws.needs_rebuild;
        self.inner.tracker.spawn(async move {
            this.run_build(job, rebuild, token).await;
        });
        Ok(ws)
    }

    /// 409 when the distro's base image is neither local nor to be pulled.
    async fn check_base_image(&self, distro: &str) -> ApiResult<()> {
        let Some(d) = self.inner.catalog.distro(distro) else {
            return Err(ApiError::invalid(format!("unknown distro {distro}")));
        };
        if self.inner.config.pull_base_images {
            return Ok(());
        }
        let present = self.inner.engine.image_id(&d.image).await?;
        if present.is_none() {
            return Err(ApiError::conflict(format!(
                "base image {} is not available locally and pulling is disabled; build it on this host with `berth images bootstrap {}` (nothing was changed)",
                d.image, d.name
            )));
        }
        Ok(())
    }

    async fn run_build(&self, ws: Workspace, rebuild: bool, cancel: CancellationToken) {
        let started = std::time::Instant::now();
        let log_path = self.init_log_path(&ws.id);
        let mut log = match OutputSink::append_to(&log_path, false).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(workspace.id = %ws.id, error = %e, "cannot open the init log");
                OutputSink::none()
            }
        };
        log.write(
            format!(
                "== berth: {} workspace {} ({}) at {}\n",
                if rebuild { "rebuilding" } else { "building" },
                ws.name,
                ws.distro.as_deref().unwrap_or("?"),
                chrono::Utc::now().to_rfc3339()
            )
            .as_bytes(),
        )
        .await;
        let outcome = tokio::select! {
            r = self.build_steps(&ws, rebuild, &mut log, &cancel) => r,
            _ = cancel.cancelled() => Err(BuildFailure::Cancelled),
        };
        self.inner
            .builds
            .lock()
            .expect("builds lock")
            .remove(&ws.id);
        let label = match &outcome {
            Ok(()) => "ready",
            Err(BuildFailure::Failed(_)) => "failed",
            Err(BuildFailure::Cancelled) => "cancelled",
        };
        crate::metrics::get()
            .builds
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => {
                log.write(b"== berth: workspace ready\n").await;
                tracing::info!(workspace.id = %ws.id, duration_ms = started.elapsed().as_millis() as u64, "workspace ready");
                self.record_end(&ws.id, Status::Ready, None).await;
            }
            Err(BuildFailure::Failed(msg)) => {
                log.write(format!("== berth: build failed: {msg}\n").as_bytes())
                    .await;
                tracing::warn!(workspace.id = %ws.id, error = %msg, "workspace build failed");
                self.record_end(&ws.id, Status::Error, Some(msg)).await;
            }
            Err(BuildFailure::Cancelled) => {
                // Deleted: nothing to record. Shutdown: reconcile at the next start settles it.
                tracing::info!(workspace.id = %ws.id, "workspace build cancelled");
            }
        }
    }

    /// Records how a build or a rerun-init ended. A store that cannot take it now (a full disk) gets it
    /// again every few seconds in the background until it can, so the workspace never stays `building`.
    pub(super) async fn record_end(&self, id: &str, to: Status, message: Option<String>) {
        let store = &self.inner.store;
        let first = store
            .transition_workspace(id, &[Status::Building], to, message.as_deref())
            .await;
        let Err(e) = first else { return };
        tracing::error!(workspace.id = %id, error = %e, "recording the end of a build failed; retrying in the background");
        let (store, id) = (store.clone(), id.to_string());
        let shutdown = self.inner.shutdown.clone();
        self.inner.tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RECORD_RETRY) => {}
                    // The next start's reconcile settles it.
                    _ = shutdown.cancelled() => return,
                }
                match store
                    .transition_workspace(&id, &[Status::Building], to, message.as_deref())
                    .await
                {
                    Ok(_) => {
                        tracing::info!(workspace.id = %id, status = to.as_str(), "the end of a build is recorded");
                        return;
                    }
                    Err(e) => tracing::debug!(workspace.id = %id, error = %e, "still cannot record the end of a build"),
                }
            }
        });
    }

    async fn build_steps(
        &self,
        ws: &Workspace,
        rebuild: bool,
        log: &mut OutputSink,
        cancel: &CancellationToken,
    ) -> Result<(), BuildFailure> {
        let inner = &self.inner;
        let made = self.provision(ws, rebuild, log).await?;
        if made.new_container {
            // The new container has what waited for it.
            inner
                .store
                .set_needs_rebuild(&ws.id, false)
                .await
                .map_err(|e| BuildFailure::Failed(format!("store: {e}")))?;
        }
        // The image this workspace used before goes once no container uses it (shared images stay
        // while another workspace's container does).
        let previous = ws.image_id.clone().into_iter().chain(made.replaced_image);
        for old in previous.filter(|old| *old != made.image_id) {
            if let Err(e) = inner.engine.remove_image_if_unused(&old).await {
                tracing::warn!(workspace.id = %ws.id, error = %e, "removing the previous image failed");
            }
        }
        let container_id = made.container_id;
        inner
            .store
            .set_workspace_engine_ids(&ws.id, Some(&container_id), Some(&made.image_id))
            .await
            .map_err(|e| BuildFailure::Failed(format!("store: {e}")))?;
        inner
            .store
            .set_container_state(&ws.id, Some(ContainerState::Running))
            .await
            .map_err(|e| BuildFailure::Failed(format!("store: {e}")))?;

        // Skills go in before init, so setup commands and scripts can use their files.
        let report = self
            .sync_into(ws)
            .await
            .map_err(|e| BuildFailure::Failed(format!("sync skills: {e}")))?;
        log.write(
            format!(
                "== berth: synced skills [{}] and tools [{}]\n",
                report.skills.join(", "),
                report.tools.join(", ")
            )
            .as_bytes(),
        )
        .await;

        let timeout = Duration::from_secs(inner.config.init_timeout_secs);
        let run = self
            .run_init(ws, &container_id, timeout, log, Some(cancel.clone()))
            .await
            .map_err(BuildFailure::Failed)?;
        if let Some(out) = run {
            if out.cancelled {
                return Err(BuildFailure::Cancelled);
            }
            if out.timed_out {
                return Err(BuildFailure::Failed(format!(
                    "init script timed out after {}s; see the init log",
                    timeout.as_secs()
                )));
            }
            if out.exit_code != 0 {
                return Err(BuildFailure::Failed(format!(
                    "init script failed with exit code {}; see the init log",
                    out.exit_code
                )));
            }
        }
        Ok(())
    }

    /// The engine's part of a build: base and shared image, volume, network, and a started container
    /// (the one there is when it runs the same image, unless `rebuild`). Touches no store row, so the
    /// warm pool provisions with it too.
    pub(super) async fn provision(
        &self,
        ws: &Workspace,
        rebuild: bool,
        log: &mut OutputSink,
    ) -> Result<Provisioned, BuildFailure> {
        let inner = &self.inner;
        let engine = &inner.engine;
        let distro_name = ws
            .distro
            .clone()
            .unwrap_or_else(|| inner.config.default_distro.clone());
        let distro = inner
            .catalog
            .distro(&distro_name)
            .ok_or_else(|| BuildFailure::Failed(format!("unknown distro {distro_name}")))?
            .clone();

        let container_name = engine::container_name(&ws.id);
        let (tag, image_id, existing_image) = match &ws.base_image {
            // A snapshot's image: run as it is.
            Some(image) => {
                let id = engine.image_id(image).await?.ok_or_else(|| {
                    BuildFailure::Failed(format!(
                        "its image {image} is gone (the snapshot it came from was deleted)"
                    ))
                })?;
                log.write(format!("== berth: starting from image {image}\n").as_bytes())
                    .await;
                (image.clone(), id.clone(), Some(id))
            }
            None => {
                self.ensure_base_image(&distro, log).await?;
                // One image per distro and package set, shared by every workspace built from them: a
                // build that finds it ready is a lookup, not an engine build (the workspace's labels go
                // on its container instead).
                let (context, digest) = build_context(&distro, &ws.packages, engine.instance());
                let tag = engine::shared_image_tag(engine.instance(), &digest);
                let existing_image = engine.image_id(&tag).await?;
                let image_id = match existing_image.clone() {
                    Some(id) if !rebuild => {
                        log.write(format!("== berth: reusing image {tag}\n").as_bytes())
                            .await;
                        id
                    }
                    _ => {
                        log.write(
                            format!("== berth: building image {tag} from {}\n", distro.image)
                                .as_bytes(),
                        )
                        .await;
                        engine.build_image(context, &tag, rebuild, log).await?
                    }
                };
                (tag, image_id, existing_image)
            }
        };

        engine.ensure_volume(&ws.id).await?;
        // A bridge workspace gets a network of its own: no neighbours, and the host's firewall rules.
        let own_network = if ws.network == "bridge" {
            Some(engine.ensure_network(&ws.id).await?)
        } else {
            None
        };
        let current = engine.inspect_container(&container_name).await?;
        let reuse = current
            .as_ref()
            .is_some_and(|c| c.image.as_deref() == Some(image_id.as_str()));
        let new_container = !reuse || rebuild;
        let container_id = if !new_container {
            let c = current.expect("checked above");
            engine.start_container(&container_name).await?;
            c.id.unwrap_or(container_name.clone())
        } else {
            if current.is_some() {
                log.write(b"== berth: replacing the container (the /workspace volume is kept)\n")
                    .await;
                engine.remove_container(&container_name).await?;
            }
            let config = &inner.config;
            let agent = crate::opencode::binary::mount(&config.opencode_dir());
            // A host path that is not UTF-8 cannot be named to the engine: no mount, and the binary
            // is copied in instead when an agent starts.
            let agent_mount = agent
                .as_ref()
                .and_then(|(host, target)| Some((host.to_str()?, target.as_str())));
            let memory_mb = self.memory_mb(ws);
            let resident = inner.resident.container_parts(&ws.id);
            let cpus = ws.limits.cpus.unwrap_or_else(|| config.default_cpus());
            let id = engine
                .create_container(&ContainerSpec {
                    workspace_id: &ws.id,
                    hostname: &ws.name,
                    image: &tag,
                    memory_bytes: (memory_mb * 1024 * 1024) as i64,
                    nano_cpus: (cpus * 1e9) as i64,
                    pids_limit: ws.limits.pids.unwrap_or(config.pids_limit),
                    network: &ws.network,
                    own_network: own_network.as_deref(),
                    code_mount: ws.code_mount.as_deref(),
                    agent_mount,
                    resident: resident.as_ref(),
                })
                .await?;
            engine.start_container(&id).await?;
            id
        };
        Ok(Provisioned {
            container_id,
            image_id,
            new_container,
            replaced_image: existing_image,
        })
    }

    /// The distro's base image must be local; otherwise try a pull, and fail with the command that makes
    /// it on hosts without a registry.
    async fn ensure_base_image(
        &self,
        distro: &Distro,
        log: &mut OutputSink,
    ) -> Result<(), BuildFailure> {
        let engine = &self.inner.engine;
        if engine.image_id(&distro.image).await?.is_some() {
            return Ok(());
        }
        let hint = format!(
            "build it on this host with `berth images bootstrap {}`",
            distro.name
        );
        if !self.inner.config.pull_base_images {
            return Err(BuildFailure::Failed(format!(
                "base image {} is not available locally and pulling is disabled; {hint}",
                distro.image
            )));
        }
        log.write(
            format!(
                "== berth: base image {} is not local; pulling\n",
                distro.image
            )
            .as_bytes(),
        )
        .await;
        let timeout = Duration::from_secs(self.inner.config.pull_timeout_secs);
        match engine.pull(&distro.image, timeout).await {
            Ok(()) => Ok(()),
            Err(e) => Err(BuildFailure::Failed(format!(
                "base image {} is not available locally and could not be pulled ({e}); {hint}",
                distro.image
            ))),
        }
    }
}

/// Dockerfile plus a script that installs only the packages the base lacks, so an image built from a
/// bootstrapped base needs no network when nothing is missing.
/// The image's build context, and a digest of what it is built from (its shared tag).
fn build_context(distro: &Distro, extra: &[String], instance: &str) -> (BuildContext, String) {
    let mut packages = distro.packages.clone();
    for p in extra {
        if !packages.contains(p) {
            packages.push(p.clone());
        }
    }
    let installed = distro.installed.replace("{package}", "\"$p\"");
    let install = distro.install.replace("{packages}", "$missing");
    let script = format!(
        "#!/bin/sh\nset -e\nmissing=\"\"\nfor p in {}; do\n  if ! ( {installed} ); then missing=\"$missing $p\"; fi\ndone\nif [ -n \"$missing\" ]; then\n  echo \"installing:$missing\"\n  {install}\nelse\n  echo \"all packages present\"\nfi\n",
        packages.join(" ")
    );
    // The instance's labels in one step the builder caches: this instance's, and no workspace's.
    let mut labels: Vec<String> = labels::for_instance(instance)
        .into_iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    labels.sort();
    let dockerfile = format!(
        "FROM {}\nCOPY berth-packages.sh /tmp/berth-packages.sh\nRUN sh /tmp/berth-packages.sh && rm -f /tmp/berth-packages.sh && mkdir -p /workspace\nWORKDIR /workspace\nLABEL {}\n",
        distro.image,
        labels.join(" ")
    );
    let digest = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(dockerfile.as_bytes());
        h.update([0]);
        h.update(script.as_bytes());
        let full = format!("{:x}", h.finalize());
        full[..16].to_string()
    };
    let mut ctx = BuildContext::new(&dockerfile);
    ctx.add("berth-packages.sh", script.as_bytes(), 0o755);
    (ctx, digest)
}
