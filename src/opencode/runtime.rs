//! One `opencode serve` per workspace, started on demand inside the workspace's container, reached only
//! through its port published on 127.0.0.1 (or on the host's loopback with host networking), guarded by a
//! per-server password, health-polled with short timeouts, and restarted when it dies or its
//! configuration changes. Its state lives on the workspace volume, so sessions outlive the container.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::binary;
use super::client::Client;
use crate::config::Config;
use crate::engine::{self, Engine};
use crate::secrets::{self, SecretBox};
use crate::store::agent_servers::AgentServerRow;
use crate::store::Store;
use crate::workspaces::model::Workspace;

/// Where berth puts the binary inside containers, versioned so an upgrade re-uploads it.
fn container_binary() -> String {
    format!("/opt/berth/opencode-{}", binary::VERSION)
}
/// OpenCode's home and state, on the workspace volume.
const STATE_DIR: &str = "/workspace/.berth/opencode";
const BRIDGE_PORT: u16 = 4096;

struct Server {
    client: Client,
    config_hash: String,
    /// The container it runs in: a rebuild replaces the container, and the server with it.
    container: Option<String>,
    /// When it last answered: a server that did within `TRUSTED_FOR` is used without another probe.
    last_ok: Mutex<Instant>,
}

/// How long a server that answered is trusted to be up without a health probe.
const TRUSTED_FOR: Duration = Duration::from_secs(5);

/// An agent server's configuration, serialized and hashed once per change.
pub struct AgentConfig {
    text: String,
    hash: String,
}

impl AgentConfig {
    pub fn new(config: &Value) -> Self {
        let text = config.to_string();
        let hash = secrets::sha256_hex(text.as_bytes());
        Self { text, hash }
    }
}

impl Server {
    fn new(client: Client, config_hash: String, container: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            client,
            config_hash,
            container,
            last_ok: Mutex::new(Instant::now()),
        })
    }

    /// Whether it answers: at once if it did lately, else by a probe.
    async fn up(&self) -> bool {
        let recent = self.last_ok.lock().expect("last_ok lock").elapsed() < TRUSTED_FOR;
        if recent || self.client.healthy().await {
            *self.last_ok.lock().expect("last_ok lock") = Instant::now();
            return true;
        }
        false
    }
}

#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: Config,
    /// Where each server is recorded (password sealed), so a restart reattaches to it.
    store: Store,
    secrets: SecretBox,
    /// The workspaces' resident agents: a file check through one costs no engine exec.
    resident: crate::resident::Resident,
    servers: Mutex<HashMap<String, Arc<Server>>>,
    /// The given binary's copy in the cache dir, once taken in (it is hashed once per process).
    adopted: Mutex<Option<PathBuf>>,
    /// Serializes starts per workspace, so concurrent missions never start two servers.
    starting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Runtime {
    pub fn new(
        engine: Engine,
        config: Config,
        store: Store,
        secrets: SecretBox,
        resident: crate::resident::Resident,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                config,
                store,
                secrets,
                resident,
                servers: Mutex::new(HashMap::new()),
                adopted: Mutex::new(None),
                starting: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The running server's client, if berth started one and it answers.
    pub async fn running(&self, workspace_id: &str) -> Option<Client> {
        let server = self
            .inner
            .servers
            .lock()
            .expect("servers lock")
            .get(workspace_id)
            .cloned()?;
        server.client.healthy().await.then(|| server.client.clone())
    }

    /// A healthy server for the workspace with this configuration, starting (or restarting) it if needed.
    pub async fn ensure(&self, ws: &Workspace, config: &AgentConfig) -> Result<Client, String> {
        let (config_text, hash) = (&config.text, &config.hash);
        let lock = self
            .inner
            .starting
            .lock()
            .expect("starting lock")
            .entry(ws.id.clone())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let existing = self
            .inner
            .servers
            .lock()
            .expect("servers lock")
            .get(&ws.id)
            .cloned();
        if let Some(s) = existing {
            if s.config_hash == *hash && s.container == ws.container_id && s.up().await {
                return Ok(s.client.clone());
            }
        } else if let Some(client) = self.reattach(ws, hash).await {
            return Ok(client);
        }
        let client = self.start(ws, config_text).await?;
        let record = AgentServerRow {
            url: client.base().to_string(),
            password: self.inner.secrets.seal(client.password()),
            config_hash: hash.to_string(),
        };
        if let Err(e) = self.inner.store.save_agent_server(&ws.id, &record).await {
            // Only a restart's reattach is lost: that server is replaced then.
            tracing::warn!(workspace.id = %ws.id, error = %e, "recording the agent server failed");
        }
        self.inner.servers.lock().expect("servers lock").insert(
            ws.id.clone(),
            Server::new(client.clone(), hash.clone(), ws.container_id.clone()),
        );
        Ok(client)
    }

    /// The server an earlier berth process started in the workspace, if it still runs with this
    /// configuration: adopted as it is, so a turn it is working on goes on.
    async fn reattach(&self, ws: &Workspace, hash: &str) -> Option<Client> {
        let workspace_id = ws.id.as_str();
        let row = self.inner.store.agent_server(workspace_id).await.ok()??;
        if row.config_hash != hash {
            return None;
        }
        let password = self.inner.secrets.unseal(&row.password).ok()?;
        let client = Client::new(row.url, password);
        if !client.healthy().await {
            return None;
        }
        tracing::info!(workspace.id = %workspace_id, "reattached to a running agent server");
        self.inner.servers.lock().expect("servers lock").insert(
            workspace_id.to_string(),
            Server::new(client.clone(), hash.to_string(), ws.container_id.clone()),
        );
        Some(client)
    }

    /// Every server berth started, by workspace id (some may have died since).
    pub fn servers(&self) -> Vec<(String, Client)> {
        self.inner
            .servers
            .lock()
            .expect("servers lock")
            .iter()
            .map(|(id, s)| (id.clone(), s.client.clone()))
            .collect()
    }

    /// The binary berth runs in workspaces: the one given, or where the pinned one is (or will be)
    /// provisioned.
    pub fn binary_path_hint(&self) -> PathBuf {
        match &self.inner.config.opencode_bin {
            Some(p) => p.clone(),
            None => binary::cached_path(&self.inner.config.opencode_dir()),
        }
    }

    /// The binary, if it is on disk already.
    pub fn binary_on_disk(&self) -> Option<PathBuf> {
        Some(self.binary_path_hint()).filter(|p| p.is_file())
    }

    /// The workspace's server just answered a request: it needs no probe for a while.
    pub fn answered(&self, workspace_id: &str) {
        if let Some(s) = self
            .inner
            .servers
            .lock()
            .expect("servers lock")
            .get(workspace_id)
        {
            *s.last_ok.lock().expect("last_ok lock") = Instant::now();
        }
    }

    /// Forgets a server that died, so the next `ensure` starts a new one.
    pub fn forget(&self, workspace_id: &str) {
        self.inner
            .servers
            .lock()
            .expect("servers lock")
            .remove(workspace_id);
    }

    /// Stops the workspace's server (e.g. in tests of a dying agent, or before a rebuild).
    pub async fn kill(&self, ws: &Workspace) {
        self.forget(&ws.id);
        if let Err(e) = self.inner.store.forget_agent_server(&ws.id).await {
            tracing::warn!(workspace.id = %ws.id, error = %e, "forgetting the agent server failed");
        }
        self.inner
            .engine
            .kill_tree(&engine::container_name(&ws.id), &marker(&ws.id))
            .await;
    }

    async fn binary_path(&self) -> Result<PathBuf, String> {
        match &self.inner.config.opencode_bin {
            Some(p) if p.is_file() => {
                if let Some(done) = self.inner.adopted.lock().expect("adopted lock").clone() {
                    return Ok(done);
                }
                let (dir, given) = (self.inner.config.opencode_dir(), p.clone());
                let bin = tokio::task::spawn_blocking(move || binary::adopt(&dir, &given))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("take in BERTH_OPENCODE_BIN {}: {e:#}", p.display()))?;
                *self.inner.adopted.lock().expect("adopted lock") = Some(bin.clone());
                Ok(bin)
            }
            Some(p) => Err(format!("BERTH_OPENCODE_BIN {} does not exist", p.display())),
            None => binary::ensure(
                &self.inner.config.opencode_dir(),
                &self.inner.config.npm_registry,
            )
            .await
            .map_err(|e| format!("provision opencode {}: {e:#}", binary::VERSION)),
        }
    }

    async fn sh(&self, container: &str, command: &str) -> Result<engine::ExecOutput, String> {
        self.inner
            .engine
            .run_quiet(container, command)
            .await
            .map_err(|e| e.to_string())
    }

    async fn is_executable(
        &self,
        ws: &Workspace,
        container: &str,
        path: &str,
    ) -> Result<bool, String> {
        if let Some(agent) = self.inner.resident.client(&ws.id) {
            use envd::filesystem as fs;
            let stat: Result<fs::EntryResponse, _> = agent
                .unary(
                    fs::SERVICE,
                    "Stat",
                    &fs::PathRequest {
                        path: path.to_string(),
                    },
                )
                .await;
            match stat {
                Ok(r) => {
                    return Ok(r.entry.is_some_and(|e| {
                        e.r#type != fs::FileType::Directory as i32 && e.mode & 0o111 != 0
                    }))
                }
                Err(crate::resident::AgentError::Rpc(e))
                    if e.code == envd::connect::Code::NotFound =>
                {
                    return Ok(false)
                }
                // An agent not answering: the engine can still tell.
                Err(_) => {}
            }
        }
        Ok(self
            .sh(container, &format!("test -x {path}"))
            .await?
            .exit_code
            == 0)
    }

    async fn upload_binary(
        &self,
        ws: &Workspace,
        container: &str,
        bin: &std::path::Path,
        target: &str,
    ) -> Result<(), String> {
        let bytes = tokio::fs::read(bin)
            .await
            .map_err(|e| format!("read {}: {e}", bin.display()))?;
        let tar = engine::tar_of(std::iter::once((&target[1..], bytes.as_slice(), 0o755)))
            .map_err(|e| e.to_string())?;
        self.inner
            .engine
            .upload_tar(container, "/", tar)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(workspace.id = %ws.id, "opencode uploaded into the workspace");
        Ok(())
    }

    async fn start(&self, ws: &Workspace, config_text: &str) -> Result<Client, String> {
        let engine = &self.inner.engine;
        let container = engine::container_name(&ws.id);
        // The binary is on the host first; containers see it through their read-only mount.
        let bin = self.binary_path().await?;
        let mounted = binary::mounted_path(&self.inner.config.opencode_dir(), &bin);
        let target = match mounted {
            Some(m) if self.is_executable(ws, &container, &m).await? => m,
            // A container whose mount lacks this binary (built under other settings) gets a copy
            // through the Docker API instead; it needs no network either way.
            _ => {
                let copy = container_binary();
                if !self.is_executable(ws, &container, &copy).await? {
                    self.upload_binary(ws, &container, &bin, &copy).await?;
                }
                copy
            }
        };
        engine.kill_tree(&container, &marker(&ws.id)).await;

        let (bind, port) = match ws.network.as_str() {
            "bridge" => {
                let port = engine
                    .published_port(&container, engine::AGENT_PORT)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("the workspace container publishes no agent port; rebuild it (POST /build with rebuild: true)")?;
                (("0.0.0.0", BRIDGE_PORT), port)
            }
            "host" => {
                let port = free_loopback_port().map_err(|e| format!("pick a port: {e}"))?;
                (("127.0.0.1", port), port)
            }
            _ => {
                return Err(
                    "the workspace has no network (network: none); agents need bridge or host"
                        .into(),
                )
            }
        };
        let password = secrets::random_hex(16);
        let mut env: Vec<String> = ws
            .env_vars
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.extend([
            format!("HOME={STATE_DIR}/home"),
            format!("XDG_CONFIG_HOME={STATE_DIR}/home/.config"),
            format!("XDG_DATA_HOME={STATE_DIR}/data"),
            format!("XDG_CACHE_HOME={STATE_DIR}/cache"),
            format!("XDG_STATE_HOME={STATE_DIR}/state"),
            format!("OPENCODE_CONFIG_CONTENT={config_text}"),
            "OPENCODE_DISABLE_MODELS_FETCH=1".into(),
            "OPENCODE_DISABLE_AUTOUPDATE=1".into(),
            "OPENCODE_DISABLE_LSP_DOWNLOAD=1".into(),
            "OPENCODE_DISABLE_DEFAULT_PLUGINS=1".into(),
            "OPENCODE_DISABLE_SHARE=1".into(),
            // No background npm install from inside the workspace.
            "npm_config_offline=true".into(),
        ]);
        // OpenCode's default project is its working directory: a codebase's code when it has one.
        let workdir = if ws.code_mount.is_some() {
            engine::CODE_DIR
        } else {
            "/workspace"
        };
        let serve = format!(
            "{target} serve --hostname {} --port {} --print-logs",
            bind.0, bind.1
        );
        let command = format!(
            "mkdir -p {STATE_DIR}/home/.config {STATE_DIR}/data {STATE_DIR}/cache {STATE_DIR}/state && cd {workdir} && {}",
            sealed_launch(&serve, &format!("{STATE_DIR}/server.log"))
        );
        let exec_id = engine
            .exec_detached(
                &container,
                &command,
                env,
                &marker(&ws.id),
                Some(format!("{password}\n").as_bytes()),
            )
            .await
            .map_err(|e| e.to_string())?;

        let client = Client::new(format!("http://127.0.0.1:{port}"), password);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(90) {
            if client.healthy().await {
                tracing::info!(workspace.id = %ws.id, port, ms = started.elapsed().as_millis() as u64, "opencode server ready");
                return Ok(client);
            }
            // A server that died is told at once, not after the whole wait.
            if let Ok(Some(code)) = engine.detached_exit(&exec_id).await {
                let log = self.server_log_tail(&container).await;
                return Err(format!(
                    "the opencode server exited with code {code} while starting; its log ends:\n{log}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let log = self.server_log_tail(&container).await;
        engine.kill_tree(&container, &marker(&ws.id)).await;
        Err(format!(
            "the opencode server did not become healthy within 90s; its log ends:\n{log}"
        ))
    }

    /// The end of this start's server log (each start writes it afresh).
    async fn server_log_tail(&self, container: &str) -> String {
        self.sh(container, &format!("tail -n 20 {STATE_DIR}/server.log"))
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// The real group id the agent server runs with (its effective ids stay root's, so it works as before).
pub const AGENT_REAL_GID: u32 = 7787;

/// Starts the agent server so that no exec can read its environment, which holds its password: with a
/// real group id that differs from its effective one, the kernel makes the process non-dumpable at
/// `execve`, and reading another process's `/proc/<pid>/environ` (or `mem`, or tracing it) then needs
/// `CAP_SYS_PTRACE`, which no workspace process has. The effective ids stay root's, so the agent installs
/// packages and owns files as before. A container without `setpriv` (util-linux) starts it plainly.
/// Since not even berth's clean-up can read it then, the exec's shell (which leads the exec's session,
/// as every exec's main process does, and carries the marker) stays and waits for it: `kill_tree` kills
/// the sessions marked processes lead.
/// The password arrives on standard input, so that only the server's own environment holds it.
fn sealed_launch(serve: &str, log: &str) -> String {
    format!(
        "IFS= read -r OPENCODE_SERVER_PASSWORD; export OPENCODE_SERVER_PASSWORD; exec </dev/null; if command -v setpriv >/dev/null 2>&1; then setpriv --rgid {AGENT_REAL_GID} --keep-groups {serve} > {log} 2>&1; else {serve} > {log} 2>&1; fi; exit $?"
    )
}

fn marker(workspace_id: &str) -> String {
    format!("opencode-{workspace_id}")
}

/// A port free on 127.0.0.1 now, for a server in the host's network namespace.
fn free_loopback_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
