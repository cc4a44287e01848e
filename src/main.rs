//! The `berth` command: `serve`, `users add`, `images bootstrap`.

use std::io::BufRead;
use std::path::PathBuf;

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
    /// Print every path the HTTP API serves, one per line.
    #[command(hide = true)]
    Routes,
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

fn main() -> anyhow::Result<()> {
    return_large_allocations();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve(config) => config.log_format.clone(),
        _ => "text".to_string(),
    };
    berth::logging::init(&format);
    match cli.command {
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
            let password = read_password(&format!("password for {name}: "))?;
            let role = if admin { Role::Admin } else { Role::User };
            berth::auth::add_user(&file, &name, &password, role)?;
            println!(
                "user {name} ({}) written to {}",
                role.as_str(),
                file.display()
            );
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

/// One line of password: from the terminal without echo when stdin is one, else from stdin as is.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        eprint!("{prompt}");
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        tcsetattr(&stdin, SetArg::TCSANOW, t)?;
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
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
