//! Server configuration: command-line flags, each with a `BERTH_*` environment variable, and the paths derived
//! from the data dir.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args, serde::Serialize)]
pub struct Config {
    /// A settings file (`berth.toml`, same keys as these variables); `<data-dir>/berth.toml` is read
    /// when it exists and none is named. The environment and flags override it.
    #[arg(long = "config", env = "BERTH_CONFIG")]
    pub config_file: Option<PathBuf>,

    /// Address the HTTP API listens on.
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,

    /// Where berth keeps its SQLite store, secrets, logs and host workspaces.
    #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
    pub data_dir: PathBuf,

    /// Single-password mode: the password to log in with. Without it (and without a users file) berth
    /// generates an admin password on first start and stores only its hash.
    #[arg(long, env = "BERTH_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Multi-user mode: a file of `username:argon2-hash[:admin]` lines (see `berth users add`);
    /// `<data-dir>/users` is used when it exists and no file is named.
    #[arg(long, env = "BERTH_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// Origins whose browser pages may call the API (comma-separated, e.g. a dashboard at
    /// `http://localhost:3001`; `*` for any). None by default: no browser page on another origin may.
    #[arg(long, env = "BERTH_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Whether host workspaces (commands run as berth's own user on the host) may be created, by
    /// admins only. Off by default.
    #[arg(long, env = "BERTH_HOST_WORKSPACES", default_value_t = false, action = clap::ArgAction::Set)]
    pub host_workspaces: bool,

    /// Who may write the library: `admins` (default; a skill's setup commands run in every user's
    /// workspace that lists it) or `all`.
    #[arg(long, env = "BERTH_LIBRARY_WRITERS", default_value = "admins", value_parser = ["admins", "all"])]
    pub library_writers: String,

    /// How many days the audit log keeps its entries.
    #[arg(long, env = "BERTH_AUDIT_RETENTION_DAYS", default_value_t = 365)]
    pub audit_retention_days: u64,

    /// A token a Prometheus scraper sends to read `/metrics` (admins' tokens work too).
    #[arg(long, env = "BERTH_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Log lines as `text` (coloured only on a terminal) or `json` (one object per line).
    #[arg(long, env = "BERTH_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// HMAC secret for tokens; generated into the data dir when absent.
    #[arg(long, env = "BERTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// How long a login token stays valid.
    #[arg(long, env = "BERTH_TOKEN_TTL_HOURS", default_value_t = 24 * 7)]
    pub token_ttl_hours: u64,

    /// Distro used for container workspaces that name none.
    #[arg(long, env = "BERTH_DEFAULT_DISTRO", default_value = "debian-bookworm")]
    pub default_distro: String,

    /// Memory limit of a workspace container that sets none, in MiB.
    #[arg(long, env = "BERTH_MEMORY_MB", default_value_t = 4096)]
    pub memory_mb: u64,

    /// CPU limit of a workspace container that sets none, in cores; default half the host's cores
    /// (at least 0.5, at most 2), so one workspace cannot take the whole host.
    #[arg(long, env = "BERTH_CPUS")]
    pub cpus: Option<f64>,

    /// Maximum number of processes of a workspace container that sets none.
    #[arg(long, env = "BERTH_PIDS_LIMIT", default_value_t = 2048)]
    pub pids_limit: i64,

    /// Disk (MiB) a workspace that sets none may use: `/workspace` plus its container's own files.
    #[arg(long, env = "BERTH_DISK_MB", default_value_t = 10240)]
    pub disk_mb: u64,

    /// The most disk (MiB) a workspace may ask for.
    #[arg(long, env = "BERTH_MAX_DISK_MB", default_value_t = 102400)]
    pub max_disk_mb: u64,

    /// How often workspaces' disk use is measured (seconds).
    #[arg(long, env = "BERTH_DISK_CHECK_SECS", default_value_t = 15)]
    pub disk_check_secs: u64,

    /// The port the LLM gateway answers on at each workspace network's gateway address (one port for
    /// every berth on the host: the firewall lets it through).
    #[arg(long, env = "BERTH_GATEWAY_PORT", default_value_t = 7787)]
    pub gateway_port: u16,

    /// The most memory (MiB) a workspace may ask for.
    #[arg(long, env = "BERTH_MAX_MEMORY_MB", default_value_t = 16384)]
    pub max_memory_mb: u64,

    /// The most CPUs a workspace may ask for; default the host's cores.
    #[arg(long, env = "BERTH_MAX_CPUS")]
    pub max_cpus: Option<f64>,

    /// The most processes a workspace may ask for.
    #[arg(long, env = "BERTH_MAX_PIDS", default_value_t = 8192)]
    pub max_pids: i64,

    /// Upper bound on one run of a workspace's init script.
    #[arg(long, env = "BERTH_INIT_TIMEOUT_SECS", default_value_t = 1800)]
    pub init_timeout_secs: u64,

    /// Default timeout of an exec that names none.
    #[arg(long, env = "BERTH_EXEC_TIMEOUT_SECS", default_value_t = 300)]
    pub exec_timeout_secs: u64,

    /// Largest timeout an exec may ask for.
    #[arg(long, env = "BERTH_EXEC_MAX_TIMEOUT_SECS", default_value_t = 3600)]
    pub exec_max_timeout_secs: u64,

    /// Cap on each of an exec's stdout and stderr, in bytes; the rest is discarded and flagged.
    #[arg(long, env = "BERTH_EXEC_MAX_OUTPUT", default_value_t = 1 << 20)]
    pub exec_max_output: usize,

    /// Whether a build may pull a missing base image from its registry. Off on air-gapped hosts, where
    /// `berth images bootstrap` makes base images instead.
    #[arg(long, env = "BERTH_PULL_BASE_IMAGES", default_value_t = true, action = clap::ArgAction::Set)]
    pub pull_base_images: bool,

    /// How long to try pulling a missing base image before giving up.
    #[arg(long, env = "BERTH_PULL_TIMEOUT_SECS", default_value_t = 120)]
    pub pull_timeout_secs: u64,

    /// Root directory of host workspaces; defaults to `<data-dir>/host-workspaces`.
    #[arg(long, env = "BERTH_HOST_ROOT")]
    pub host_root: Option<PathBuf>,

    /// The library's git repository; defaults to `<data-dir>/library`.
    #[arg(long, env = "BERTH_LIBRARY_PATH")]
    pub library_path: Option<PathBuf>,

    /// A git remote for the library (any URL git accepts); `POST /api/library/sync` pulls from it.
    #[arg(long, env = "BERTH_LIBRARY_REMOTE")]
    pub library_remote: Option<String>,

    /// SSH private key for the library remote.
    #[arg(long, env = "BERTH_LIBRARY_SSH_KEY")]
    pub library_ssh_key: Option<PathBuf>,

    /// The opencode binary to run in workspaces; without it berth provisions the pinned version from the
    /// npm registry into `<data-dir>/opencode`.
    #[arg(long, env = "BERTH_OPENCODE_BIN")]
    pub opencode_bin: Option<PathBuf>,

    /// The resident agent binary (`berth-agent`, built with berth) to run in every workspace container;
    /// defaults to `berth-agent` beside berth's own executable. Without one, workspaces are reached through
    /// the engine alone.
    #[arg(long, env = "BERTH_AGENT_BIN")]
    pub agent_bin: Option<PathBuf>,

    /// Largest file `PUT /api/workspaces/:id/files` accepts, in MiB.
    #[arg(long, env = "BERTH_MAX_FILE_MB", default_value_t = 1024)]
    pub max_file_mb: u64,

    /// How many started generic workspace containers (the default distro, no extra packages, default
    /// limits, a bridge network) berth keeps ready for creates to claim: an E2B sandbox or a templated
    /// workspace that fits one starts in milliseconds. Each holds its memory while it waits; 0 keeps none.
    #[arg(long, env = "BERTH_POOL_SIZE", default_value_t = 0)]
    pub pool_size: usize,

    /// A domain whose names `{port}-{sandboxID}.{domain}` route to that port of an E2B sandbox (wildcard
    /// DNS pointing at berth); create and connect answer it as the sandbox's `domain`.
    #[arg(long, env = "BERTH_E2B_DOMAIN")]
    pub e2b_domain: Option<String>,

    /// Where berth keeps the opencode versions it provisions (mounted read-only into workspaces);
    /// defaults to `<data-dir>/opencode`.
    #[arg(long = "opencode-dir", env = "BERTH_OPENCODE_DIR")]
    pub opencode_cache: Option<PathBuf>,

    /// The npm registry the opencode package comes from.
    #[arg(
        long,
        env = "BERTH_NPM_REGISTRY",
        default_value = "https://registry.npmjs.org"
    )]
    pub npm_registry: String,

    /// An OpenCode config fragment (a path, or inline JSON) merged into every workspace's OpenCode
    /// configuration: providers, their `baseURL`, a default `model`.
    #[arg(long, env = "BERTH_OPENCODE_CONFIG")]
    pub opencode_config: Option<String>,

    /// Upper bound on one agent turn.
    #[arg(long, env = "BERTH_TURN_TIMEOUT_SECS", default_value_t = 1800)]
    pub turn_timeout_secs: u64,

    /// Name of the workspace missions use when they name none; created from the `debian` template when
    /// missing.
    #[arg(long, env = "BERTH_DEFAULT_WORKSPACE", default_value = "default")]
    pub default_workspace: String,

    /// Host directories local codebases may live under (colon-separated); defaults to
    /// `<data-dir>/codebases`.
    #[arg(long, env = "BERTH_CODEBASE_ROOTS")]
    pub codebase_roots: Option<String>,

    /// How many queued tasks berth runs itself at once.
    #[arg(long, env = "BERTH_TASK_CONCURRENCY", default_value_t = 2)]
    pub task_concurrency: usize,

    /// How long a worker holds a task without a heartbeat before it goes back to the queue.
    #[arg(long, env = "BERTH_TASK_LEASE_SECS", default_value_t = 60)]
    pub task_lease_secs: u64,

    /// How many times a task is handed out before it fails for good.
    #[arg(long, env = "BERTH_TASK_MAX_ATTEMPTS", default_value_t = 3)]
    pub task_max_attempts: i64,

    /// Directory whose `distros/`, `templates/` and `init-scripts/` override the built-in ones;
    /// defaults to the data dir.
    #[arg(long, env = "BERTH_CATALOG_DIR")]
    pub catalog_dir: Option<PathBuf>,
}

fn host_cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

impl Config {
    /// The users file of multi-user mode: the one named, else `<data-dir>/users` when it exists.
    pub fn users_file(&self) -> Option<PathBuf> {
        self.users_file.clone().or_else(|| {
            let default = self.data_dir.join("users");
            default.exists().then_some(default)
        })
    }

    /// Whether only admins may write the library.
    pub fn library_admin_only(&self) -> bool {
        self.library_writers != "all"
    }

    pub fn default_cpus(&self) -> f64 {
        self.cpus
            .unwrap_or_else(|| (host_cores() / 2.0).clamp(0.5, 2.0))
            .min(self.max_cpus())
    }

    pub fn max_cpus(&self) -> f64 {
        self.max_cpus.unwrap_or_else(host_cores)
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("berth.db")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
    pub fn host_root(&self) -> PathBuf {
        self.host_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("host-workspaces"))
    }
    pub fn library_path(&self) -> PathBuf {
        self.library_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("library"))
    }
    /// The resident agent's binary as berth installs it (mounted read-only into containers), and the
    /// per-workspace directories holding each agent's socket (mounted into its container).
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
    pub fn agent_run_dir(&self) -> PathBuf {
        self.data_dir.join("run")
    }
    pub fn opencode_dir(&self) -> PathBuf {
        self.opencode_cache
            .clone()
            .unwrap_or_else(|| self.data_dir.join("opencode"))
    }
    pub fn codebase_roots(&self) -> Vec<PathBuf> {
        match &self.codebase_roots {
            Some(s) => s
                .split(':')
                .filter(|p| !p.trim().is_empty())
                .map(PathBuf::from)
                .collect(),
            None => vec![self.data_dir.join("codebases")],
        }
    }
    pub fn catalog_dir(&self) -> PathBuf {
        self.catalog_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.clone())
    }
}
