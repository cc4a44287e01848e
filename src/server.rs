//! `berth serve`: builds the state, reconciles with the engine, serves until SIGINT/SIGTERM, then shuts
//! down gracefully (stop accepting, cancel background work, wait for it with a deadline).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::serve::{ListenerExt, TapIo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agents::{Agents, Deps as AgentDeps};
use crate::app::AppState;
use crate::auth::Auth;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::engine::Engine;
use crate::library::Library;
use crate::missions::{Deps as MissionDeps, Hub, Missions};
use crate::opencode::Runtime;
use crate::secrets::{self, SecretBox};
use crate::stats::HostStats;
use crate::store::Store;
use crate::workspaces::{Deps, Workspaces};

pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    // Everything berth writes (the store, logs, keys, host workspaces) is its own: 0600 files in 0700
    // directories, whatever the caller's umask.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    secrets::make_private(&config.data_dir)
        .with_context(|| format!("restrict data dir {}", config.data_dir.display()))?;
    // Paths reach the engine as bind-mount sources, which must be absolute.
    config.data_dir = config.data_dir.canonicalize()?;
    // Before anything else reads or repairs the data dir: another berth may be using it.
    let _data_dir = crate::data_dir_lock::lock(&config.data_dir)?;
    for path in [&mut config.opencode_bin, &mut config.opencode_cache]
        .into_iter()
        .flatten()
    {
        *path = std::path::absolute(&*path)?;
    }
    let catalog = Catalog::load(&config.catalog_dir()).context("load the catalog")?;
    if catalog.distro(&config.default_distro).is_none() {
        anyhow::bail!(
            "BERTH_DEFAULT_DISTRO {:?} is not a known distro ({})",
            config.default_distro,
            catalog.distro_names().join(", ")
        );
    }
    let store = Store::open(&config.db_path()).await?;
    // Data dirs made before berth restricted them: the store, its journal and the logs. A `.tmp` file is
    // an atomic write a crash cut off before its rename: the file it was for is whole, so it goes.
    for entry in std::fs::read_dir(&config.data_dir)?.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".tmp") && entry.path().is_file() {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        if name.to_string_lossy().starts_with("berth.db") {
            secrets::make_private(&entry.path())?;
        } else if name == "logs" {
            secrets::make_private_tree(&entry.path())?;
        }
    }
    let secrets_box = SecretBox::open(&config.data_dir)?;
    let (auth, generated_password) = Auth::init(&config)?;
    // Each data dir is one berth instance; its id labels every engine object, so two berth servers on one
    // engine never remove each other's containers.
    let instance = secrets::load_or_create(&config.data_dir.join("instance-id"), || {
        secrets::random_hex(8)
    })?;
    let engine = Engine::connect(instance)
        .await
        .context("connect to the Docker engine (is dockerd running? DOCKER_HOST is honoured)")?;

    let library = Library::open(
        &config.library_path(),
        config.library_remote.clone().filter(|r| !r.is_empty()),
        config.library_ssh_key.clone(),
        catalog.clone(),
    )
    .await
    .context("open the library")?;

    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let gateway =
        crate::gateway::Listeners::new(config.gateway_port, tracker.clone(), shutdown.clone());
    let workspaces = Workspaces::new(Deps {
        store: store.clone(),
        engine: engine.clone(),
        secrets: secrets_box.clone(),
        catalog,
        library,
        config: config.clone(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
        gateway: gateway.clone(),
        resident: crate::resident::Resident::install(&config),
    });
    // Bridge workspaces reach neither the host's services nor each other.
    let fenced = match crate::firewall::install(config.gateway_port) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "the host firewall rules could not be installed: bridge workspaces can reach the host's services");
            false
        }
    };
    // Events from the reconcile on are followed, so nothing between the two is missed.
    let events_since = chrono::Utc::now().timestamp();
    workspaces
        .reconcile()
        .await
        .context("reconcile the store with the engine")?;
    {
        let workspaces = workspaces.clone();
        tracker.spawn(async move { workspaces.follow_engine(events_since).await });
    }
    {
        let workspaces = workspaces.clone();
        tracker.spawn(async move { workspaces.watch_disks().await });
    }
    {
        let workspaces = workspaces.clone();
        tracker.spawn(async move { workspaces.keep_pool().await });
    }
    let missions = Missions::new(MissionDeps {
        gateway: gateway.clone(),
        store: store.clone(),
        secrets: secrets_box.clone(),
        workspaces: workspaces.clone(),
        runtime: Runtime::new(
            engine.clone(),
            config.clone(),
            store.clone(),
            secrets_box.clone(),
            workspaces.resident().clone(),
        ),
        hub: Hub::new(store.clone()).await?,
        config: config.clone(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    })?;
    missions.recover().await.context("recover missions")?;
    let default_root = config.data_dir.join("codebases");
    std::fs::create_dir_all(&default_root)
        .with_context(|| format!("create {}", default_root.display()))?;
    let agents = Agents::new(AgentDeps {
        store: store.clone(),
        workspaces: workspaces.clone(),
        missions: missions.clone(),
        config: config.clone(),
        tracker: tracker.clone(),
        shutdown: shutdown.clone(),
    });
    agents.start().await.context("start the task queue")?;

    let audit = crate::audit::Audit::new(store.clone());
    {
        let (audit, shutdown) = (audit.clone(), shutdown.clone());
        let days = config.audit_retention_days;
        tracker.spawn(async move { audit.keep_for(days, shutdown).await });
    }
    let sandboxes =
        crate::e2b::Sandboxes::new(store.clone(), secrets_box.clone(), workspaces.clone());
    {
        let (sandboxes, shutdown) = (sandboxes.clone(), shutdown.clone());
        tracker.spawn(async move { sandboxes.enforce_timeouts(shutdown).await });
    }
    let state = AppState {
        audit,
        store,
        secrets: secrets_box,
        missions: missions.clone(),
        agents,
        auth,
        workspaces: workspaces.clone(),
        sandboxes,
        stats: Arc::new(Mutex::new(HostStats::new(&config.data_dir))),
        started: Instant::now(),
        cors: crate::api::cors::Origins::new(&config.cors_origins),
        fenced,
        gateway_client: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // stdout, not the log: scripts and tests read this line to find the port.
    println!("berth listening on http://{addr}");
    if let Some(pw) = generated_password {
        println!("generated admin password (shown once, only its hash is stored): {pw}");
    }
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "berth started");

    gateway.ready(crate::router::gateway_only(state.clone()), addr);
    // The peer address feeds the login throttle.
    let app =
        crate::router::build(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let listener = without_delay(listener);
    let server = axum::serve(listener, app).with_graceful_shutdown(signal(shutdown.clone()));
    // A stop is prompt: requests in flight (execs are cancelled with berth, streams end) get a few
    // seconds to answer, then their connections are cut.
    let cut_off = async {
        shutdown.cancelled().await;
        tokio::time::sleep(REQUEST_GRACE).await;
    };
    tokio::select! {
        r = server => r?,
        _ = cut_off => tracing::warn!("requests still running were cut off at shutdown"),
    }

    tracker.close();
    // Turns end as `interrupted` when cancelled by shutdown; wait (briefly) for them to record it.
    if tokio::time::timeout(BACKGROUND_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background work did not stop in time; what it did not record is repaired at the next start");
    }
    // After the pool's containers are gone, so their image goes too when nothing else uses it.
    match tokio::time::timeout(BACKGROUND_GRACE, workspaces.remove_unused_images()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "removing unused images failed"),
        Err(_) => {
            tracing::warn!("removing unused images did not finish in time; the next start does")
        }
    }
    tracing::info!("berth stopped");
    Ok(())
}

/// A listener whose connections send small writes at once: a stream's events (an exec's output, then
/// its end) would otherwise each wait for the client's delayed ACK of the one before, ~40 ms.
pub fn without_delay(
    listener: tokio::net::TcpListener,
) -> TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    listener.tap_io(set_nodelay)
}

fn set_nodelay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// How long requests in flight may take to answer once berth stops.
const REQUEST_GRACE: Duration = Duration::from_secs(4);
/// How long background work (builds, turns, runners) may take to record how it ended.
const BACKGROUND_GRACE: Duration = Duration::from_secs(4);

async fn signal(shutdown: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
