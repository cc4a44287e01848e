//! The `berth` command: the server (`serve`) and its host-side tools (`users`, `opencode`, `images`),
//! and the client commands that drive a server over HTTP (`login`, `ws`, `exec`, ...).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use berth::catalog::Catalog;
use berth::config::Config;
use berth::principal::Role;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Self-hosted container workspace orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: berth::cli::Target,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTP API.
    Serve(Box<Config>),
    /// Manage the users file of multi-user mode.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Provision the pinned opencode binary from the npm registry (integrity-checked) and print its path.
    Opencode {
        #[command(subcommand)]
        command: OpencodeCommand,
    },
    /// Manage base images.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
    /// The host firewall rules that fence bridge workspaces in (installed by `berth serve`).
    Firewall {
        #[command(subcommand)]
        command: FirewallCommand,
    },
    /// The server's settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print every path the HTTP API serves, one per line.
    #[command(hide = true)]
    Routes,
    #[command(flatten)]
    Client(berth::cli::ClientCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings `berth serve` would run with (file, environment and flags), secrets masked.
    Show(Box<Config>),
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add a user (or reset their password and role). The password is read without echo from the
    /// terminal, or as one line from stdin.
    Add {
        name: String,
        /// Give the user the admin role (they see and act on everything).
        #[arg(long)]
        admin: bool,
        /// The users file; default `<data-dir>/users`, which `berth serve` reads from the same data dir.
        #[arg(long, env = "BERTH_USERS_FILE")]
        file: Option<PathBuf>,
        #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum OpencodeCommand {
    /// Download and unpack the pinned version into DIR (default `<data-dir>/opencode`); idempotent.
    Install {
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
        data_dir: PathBuf,
        #[arg(
            long,
            env = "BERTH_NPM_REGISTRY",
            default_value = "https://registry.npmjs.org"
        )]
        registry: String,
    },
}

#[derive(Subcommand)]
enum FirewallCommand {
    /// Install (or refresh) berth's rules now.
    Install {
        /// The LLM gateway's port, which workspaces may reach.
        #[arg(long, env = "BERTH_GATEWAY_PORT", default_value_t = 7787)]
        gateway_port: u16,
    },
    /// Take berth's rules away: bridge workspaces then reach the host's services again.
    Remove,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Build a distro's base image from its package mirror and import it into the engine.
    Bootstrap {
        distro: String,
        /// Package mirror to use instead of the distro file's.
        #[arg(long, env = "BERTH_BOOTSTRAP_MIRROR")]
        mirror: Option<String>,
        /// Rebuild even if the image is present.
        #[arg(long)]
        force: bool,
        #[arg(long, env = "BERTH_DATA_DIR", default_value = "berth-data")]
        data_dir: PathBuf,
        #[arg(long, env = "BERTH_CATALOG_DIR")]
        catalog_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    return_large_allocations();
    // Before any thread exists: the settings file fills in environment variables.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(e) = berth::config_file::apply(&args) {
        eprintln!("berth: {e:#}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve(config) => config.log_format.clone(),
        _ => "text".to_string(),
    };
    berth::logging::init(&format);
    let outcome = match cli.command {
        Command::Client(c) => return berth::cli::run(cli.target, c).await,
        other => run_host_command(other).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The server and the commands that work on this host directly.
async fn run_host_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Client(_) => unreachable!("client commands are dispatched before"),
        Command::Serve(config) => berth::server::serve(*config).await,
        Command::Users {
            command:
                UsersCommand::Add {
                    name,
                    admin,
                    file,
                    data_dir,
                },
        } => {
            let file = file.unwrap_or_else(|| data_dir.join("users"));
            let password = berth::cli::read_password(&format!("password for {name}: "))?;
            let role = if admin { Role::Admin } else { Role::User };
            berth::auth::add_user(&file, &name, &password, role)?;
            println!(
                "user {name} ({}) written to {}",
                role.as_str(),
                file.display()
            );
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Show(config),
        } => {
            print!("{}", berth::config_file::show(&config));
            Ok(())
        }
        Command::Firewall { command } => {
            match command {
                FirewallCommand::Install { gateway_port } => berth::firewall::install(gateway_port),
                FirewallCommand::Remove => berth::firewall::remove(),
            }
            .map_err(|e| anyhow::anyhow!(e))?;
            Ok(())
        }
        Command::Routes => {
            for path in berth::router::paths() {
                println!("{path}");
            }
            Ok(())
        }
        Command::Opencode {
            command:
                OpencodeCommand::Install {
                    dir,
                    data_dir,
                    registry,
                },
        } => {
            let dir = dir.unwrap_or_else(|| data_dir.join("opencode"));
            let bin = berth::opencode::binary::ensure(&dir, &registry).await?;
            println!("{}", bin.display());
            Ok(())
        }
        Command::Images {
            command:
                ImagesCommand::Bootstrap {
                    distro,
                    mirror,
                    force,
                    data_dir,
                    catalog_dir,
                },
        } => {
            let catalog = Catalog::load(catalog_dir.as_ref().unwrap_or(&data_dir))?;
            let distro = catalog.distro(&distro).cloned().with_context(|| {
                format!(
                    "unknown distro {distro:?}; valid: {}",
                    catalog.distro_names().join(", ")
                )
            })?;
            let engine = berth::engine::Engine::connect("bootstrap".into()).await?;
            std::fs::create_dir_all(&data_dir)?;
            let work_dir = data_dir.canonicalize()?;
            let opts = berth::images::BootstrapOptions {
                mirror,
                force,
                work_dir,
            };
            berth::images::bootstrap(&engine, &distro, &opts).await
        }
    }
}

/// Large blocks (argon2's 19 MiB per password check, big request bodies) go straight to the kernel
/// and back when freed. glibc otherwise raises its mmap threshold after the first such block and keeps
/// later ones in per-thread arenas: a burst of logins on the blocking pool's threads then left berth
/// holding about 19 MiB per thread that ever hashed.
fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called once, before the runtime starts any thread.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
