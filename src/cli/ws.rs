//! `berth ws ...`: workspaces by name or id.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{CliError, Client};
use super::progress::{follow, LogTail};
use super::tokens::text;
use super::{env_pairs, table, Target};

#[derive(Debug, Subcommand)]
pub enum WsCommand {
    /// Create a container workspace and follow its build until it is ready (exit 0) or failed (1).
    Create(CreateArgs),
    /// List workspaces.
    Ls,
    /// Everything berth knows of a workspace, as JSON.
    Inspect { workspace: String },
    /// Build (or with --rebuild, rebuild) and follow it.
    Build {
        workspace: String,
        #[arg(long)]
        rebuild: bool,
        /// Build from another distro.
        #[arg(long)]
        distro: Option<String>,
        /// Start the build and return.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove a workspace: its container, image and (unless --keep-volume) its /workspace volume.
    Rm {
        workspace: String,
        #[arg(long)]
        keep_volume: bool,
    },
    /// The init log; with -f, followed while the workspace builds.
    Logs {
        workspace: String,
        #[arg(long, short)]
        follow: bool,
    },
    /// Run the workspace's init again in its container.
    RerunInit {
        workspace: String,
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Copy the workspace's skills and tools into it again.
    Sync { workspace: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    #[arg(long)]
    pub distro: Option<String>,
    #[arg(long)]
    pub template: Option<String>,
    /// A file whose contents become the workspace's init script.
    #[arg(long)]
    pub init_script: Option<std::path::PathBuf>,
    /// `KEY=VALUE`; repeatable.
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// A library skill; repeatable.
    #[arg(long = "skill")]
    pub skills: Vec<String>,
    /// Extra packages; repeatable.
    #[arg(long = "package")]
    pub packages: Vec<String>,
    /// bridge (default), host (admins) or none.
    #[arg(long)]
    pub network: Option<String>,
    #[arg(long)]
    pub memory_mb: Option<u64>,
    #[arg(long)]
    pub cpus: Option<f64>,
    #[arg(long)]
    pub pids: Option<i64>,
    /// Create (and start the build) and return.
    #[arg(long)]
    pub no_wait: bool,
}

/// A workspace's id from its name or id (the server looks names up among the caller's own).
pub async fn resolve(client: &Client, workspace: &str) -> Result<String, CliError> {
    let plain = !workspace.is_empty()
        && workspace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !plain {
        return Err(CliError::Usage(format!(
            "{workspace:?} is not a workspace name or id"
        )));
    }
    let v = client.get(&format!("/api/workspaces/{workspace}")).await?;
    Ok(v["id"].as_str().unwrap_or(workspace).to_string())
}

pub async fn run(t: &Target, c: WsCommand) -> Result<ExitCode, CliError> {
    let client = Client::new(t)?;
    match c {
        WsCommand::Create(a) => create(t, &client, a).await,
        WsCommand::Ls => {
            let v = client.get("/api/workspaces").await?;
            if t.json {
                println!("{v:#}");
                return Ok(ExitCode::SUCCESS);
            }
            let rows = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    vec![
                        text(&w["name"]),
                        w["id"]
                            .as_str()
                            .unwrap_or_default()
                            .chars()
                            .take(8)
                            .collect(),
                        text(&w["workspace_type"]),
                        text(&w["distro"]),
                        text(&w["status"]),
                        text(&w["owner"]),
                        text(&w["created_at"]).chars().take(19).collect(),
                    ]
                })
                .collect();
            table(
                &["NAME", "ID", "TYPE", "DISTRO", "STATUS", "OWNER", "CREATED"],
                rows,
            );
            Ok(ExitCode::SUCCESS)
        }
        WsCommand::Inspect { workspace } => {
            let id = resolve(&client, &workspace).await?;
            println!("{:#}", client.get(&format!("/api/workspaces/{id}")).await?);
            Ok(ExitCode::SUCCESS)
        }
        WsCommand::Build {
            workspace,
            rebuild,
            distro,
            no_wait,
        } => {
            let id = resolve(&client, &workspace).await?;
            let mut body = json!({ "rebuild": rebuild });
            if let Some(d) = distro {
                body["distro"] = json!(d);
            }
            client
                .post(&format!("/api/workspaces/{id}/build"), body)
                .await?;
            // The build started its log afresh before answering.
            let mut tail = LogTail::new(&id);
            if no_wait {
                println!("building {workspace}");
                return Ok(ExitCode::SUCCESS);
            }
            let ws = follow(&client, &id, &mut tail).await?;
            Ok(finished(t, &ws))
        }
        WsCommand::Rm {
            workspace,
            keep_volume,
        } => {
            let id = resolve(&client, &workspace).await?;
            client
                .delete(&format!("/api/workspaces/{id}?keep_volume={keep_volume}"))
                .await?;
            println!("removed {workspace}");
            Ok(ExitCode::SUCCESS)
        }
        WsCommand::Logs {
            workspace,
            follow: keep_following,
        } => {
            let id = resolve(&client, &workspace).await?;
            let mut tail = LogTail::new(&id);
            if keep_following {
                follow(&client, &id, &mut tail).await?;
            } else {
                for line in tail.next(&client).await? {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        WsCommand::RerunInit { workspace, timeout } => {
            let id = resolve(&client, &workspace).await?;
            let mut body = json!({});
            if let Some(s) = timeout {
                body["timeout_secs"] = json!(s);
            }
            let v = client
                .post(&format!("/api/workspaces/{id}/rerun-init"), body)
                .await?;
            if t.json {
                println!("{v:#}");
            } else {
                print!("{}", v["stdout"].as_str().unwrap_or_default());
                eprint!("{}", v["stderr"].as_str().unwrap_or_default());
            }
            Ok(if v["success"] == true {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        WsCommand::Sync { workspace } => {
            let id = resolve(&client, &workspace).await?;
            let v = client
                .post(&format!("/api/workspaces/{id}/sync"), json!({}))
                .await?;
            println!("{v:#}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create(t: &Target, client: &Client, a: CreateArgs) -> Result<ExitCode, CliError> {
    let mut body = json!({ "name": a.name, "workspace_type": "container" });
    let set = |body: &mut Value, key: &str, v: Value| {
        if !v.is_null() {
            body[key] = v;
        }
    };
    set(&mut body, "distro", json!(a.distro));
    set(&mut body, "template", json!(a.template));
    set(&mut body, "network", json!(a.network));
    set(&mut body, "memory_mb", json!(a.memory_mb));
    set(&mut body, "cpus", json!(a.cpus));
    set(&mut body, "pids", json!(a.pids));
    if let Some(path) = &a.init_script {
        let script = std::fs::read_to_string(path)
            .map_err(|e| CliError::Local(format!("init script {}: {e}", path.display())))?;
        body["init_script"] = json!(script);
    }
    if !a.env.is_empty() {
        body["env_vars"] = env_pairs(&a.env)?;
    }
    if !a.skills.is_empty() {
        body["skills"] = json!(a.skills);
    }
    if !a.packages.is_empty() {
        body["packages"] = json!(a.packages);
    }
    let ws = client.post("/api/workspaces", body).await?;
    let id = ws["id"].as_str().unwrap_or_default().to_string();
    let mut tail = LogTail::new(&id);
    // A template starts the build at once; otherwise it is started here.
    if ws["status"] == "pending" {
        client
            .post(&format!("/api/workspaces/{id}/build"), json!({}))
            .await?;
    }
    if a.no_wait {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let ws = follow(client, &id, &mut tail).await?;
    Ok(finished(t, &ws))
}

/// Says how a build ended; the exit status tells scripts the same.
fn finished(t: &Target, ws: &Value) -> ExitCode {
    if t.json {
        println!("{ws:#}");
    }
    let name = ws["name"].as_str().unwrap_or_default();
    if ws["status"] == "ready" {
        if !t.json {
            println!("workspace {name} is ready ({})", text(&ws["id"]));
        }
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "berth: workspace {name} is {}: {}",
            text(&ws["status"]),
            text(&ws["error_message"])
        );
        ExitCode::FAILURE
    }
}
