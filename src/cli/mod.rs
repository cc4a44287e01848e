//! The `berth` client commands: a berth server driven over its HTTP API, in the habits of `docker` and
//! `gh`. Each command prints what a person wants to read (or JSON with `--json`) and exits non-zero
//! with one line naming the server's error code when something fails.

mod client;
mod credentials;
mod exec;
mod progress;
mod shell;
mod tokens;
mod ws;

use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use client::{CliError, Client};

/// Where the server is and how to print; every client command takes these.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The berth server.
    #[arg(
        long,
        env = "BERTH_URL",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    pub url: String,
    /// Print JSON instead of tables and prose.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Log in and keep the token (in the user's config dir, mode 0600).
    Login {
        /// The account, in multi-user mode.
        #[arg(long, short)]
        username: Option<String>,
    },
    /// Void the stored token and forget it.
    Logout,
    /// Long-lived API tokens.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Workspaces: create (following the build), list, inspect, build, remove, logs, rerun init, sync.
    #[command(subcommand)]
    Ws(ws::WsCommand),
    /// Run a command in a workspace: its stdout and stderr go to ours, and its exit code is ours.
    Exec(exec::ExecArgs),
    /// A terminal in a workspace: its login shell, in ours.
    Shell {
        /// The workspace, by name or id.
        workspace: String,
    },
    /// Copy a file between this machine and a workspace: `berth cp ./f WS:/workspace/f` or back
    /// (`-` is stdin or stdout).
    Cp {
        /// `PATH` here or `WS:PATH` in a workspace.
        source: String,
        /// `PATH` here or `WS:PATH` in a workspace.
        destination: String,
    },
}

/// Runs a client command; the exit code is the command's own for `exec`, else 0 or 1.
pub async fn run(target: Target, command: ClientCommand) -> ExitCode {
    match dispatch(&target, command).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(t: &Target, command: ClientCommand) -> Result<ExitCode, CliError> {
    match command {
        ClientCommand::Login { username } => tokens::login(t, username).await,
        ClientCommand::Logout => tokens::logout(t).await,
        ClientCommand::Tokens(c) => tokens::run(t, c).await,
        ClientCommand::Ws(c) => ws::run(t, c).await,
        ClientCommand::Exec(args) => exec::run(t, args).await,
        ClientCommand::Shell { workspace } => shell::run(t, &workspace).await,
        ClientCommand::Cp {
            source,
            destination,
        } => copy(t, &source, &destination).await,
    }
}

/// A file streamed to or from the workspace's files API (its resident agent), whole or not at all.
async fn copy(t: &Target, source: &str, destination: &str) -> Result<ExitCode, CliError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    fn remote(p: &str) -> Option<(&str, &str)> {
        p.split_once(':')
            .filter(|(ws, path)| !ws.is_empty() && !ws.contains('/') && !path.is_empty())
    }
    let files_url = |id: &str, path: &str| {
        let query = serde_urlencoded::to_string([("path", path)]).unwrap_or_default();
        format!("/api/workspaces/{id}/files?{query}")
    };
    let client = Client::new(t)?;
    match (remote(source), remote(destination)) {
        (None, Some((ws, path))) => {
            let id = ws::resolve(&client, ws).await?;
            let body = if source == "-" {
                reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(tokio::io::stdin()))
            } else {
                let file = tokio::fs::File::open(source)
                    .await
                    .map_err(|e| CliError::Local(format!("{source}: {e}")))?;
                reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file))
            };
            let url = files_url(&id, path);
            let req = client.request(reqwest::Method::PUT, &url).body(body);
            let v: serde_json::Value = client
                .send(&url, req)
                .await?
                .json()
                .await
                .map_err(|e| client.unreachable(&e))?;
            if t.json {
                println!("{v:#}");
            }
            Ok(ExitCode::SUCCESS)
        }
        (Some((ws, path)), None) => {
            let id = ws::resolve(&client, ws).await?;
            let url = files_url(&id, path);
            let resp = client
                .send(&url, client.request(reqwest::Method::GET, &url))
                .await?;
            let mut body = resp.bytes_stream();
            // Written beside the target and renamed when complete, so a cut-off copy leaves nothing.
            let (mut out, tmp): (Box<dyn tokio::io::AsyncWrite + Unpin>, Option<String>) =
                if destination == "-" {
                    (Box::new(tokio::io::stdout()), None)
                } else {
                    let tmp = format!("{destination}.berth-cp");
                    let f = tokio::fs::File::create(&tmp)
                        .await
                        .map_err(|e| CliError::Local(format!("{destination}: {e}")))?;
                    (Box::new(f), Some(tmp))
                };
            let copied: Result<(), CliError> = async {
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| client.unreachable(&e))?;
                    out.write_all(&chunk).await?;
                }
                out.flush().await?;
                Ok(())
            }
            .await;
            drop(out);
            match (copied, tmp) {
                (Ok(()), Some(tmp)) => tokio::fs::rename(&tmp, destination).await?,
                (Err(e), Some(tmp)) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
                (result, None) => result?,
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(CliError::Usage(
            "one side of cp is a workspace path (WS:PATH) and the other a local path".into(),
        )),
    }
}

/// One line of password: from the terminal without echo when stdin is one, else from stdin as is.
pub fn read_password(prompt: &str) -> std::io::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::BufRead;
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

/// `KEY=VALUE` arguments as a JSON object.
fn env_pairs(pairs: &[String]) -> Result<serde_json::Value, CliError> {
    let mut env = serde_json::Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--env {p:?}: use KEY=VALUE")))?;
        env.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    Ok(serde_json::Value::Object(env))
}

/// Rows under a header, columns padded to their widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}
