//! `berth login`, `logout` and `tokens create|ls|rm`.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{CliError, Client};
use super::{credentials, table, Target};

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token; it is shown once.
    Create {
        name: String,
        /// Days until it expires; without it, it does not.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// A worker token: only for your agent workers (e.g. CodeTether's worker's `A2A_AUTH_TOKEN`),
        /// refused on everything else.
        #[arg(long)]
        worker: bool,
    },
    /// List your tokens (never their secrets).
    Ls,
    /// Revoke a token at once.
    Rm { id: String },
}

pub async fn login(t: &Target, username: Option<String>) -> Result<ExitCode, CliError> {
    let client = Client::stored(t)?;
    let password = super::read_password("password: ")?;
    let mut body = json!({ "password": password });
    if let Some(u) = &username {
        body["username"] = json!(u);
    }
    let v = client.post("/api/auth/login", body).await?;
    let token = v["token"]
        .as_str()
        .ok_or_else(|| CliError::Local(format!("the server's login answer has no token: {v}")))?;
    let file = credentials::store(client.base(), token)?;
    let who = client
        .with_token(token.to_string())
        .get("/api/auth/verify")
        .await?;
    println!(
        "logged in to {} as {} (token kept in {})",
        t.url.trim_end_matches('/'),
        who["user"].as_str().unwrap_or("?"),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Voids and forgets the stored login; `BERTH_TOKEN` is left alone (an API token is revoked with
/// `berth tokens rm`).
pub async fn logout(t: &Target) -> Result<ExitCode, CliError> {
    let client = Client::stored(t)?;
    if client.token().is_none() {
        println!("not logged in to {}", client.base());
        return Ok(ExitCode::SUCCESS);
    }
    // Forgotten here whatever the server says: a token the server already voided is gone anyway.
    let voided = client.post("/api/auth/logout", json!({})).await;
    credentials::forget(client.base())?;
    match voided {
        Ok(_) | Err(CliError::Api { .. }) => {
            println!("logged out of {}", client.base());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
    }
}

pub async fn run(t: &Target, c: TokensCommand) -> Result<ExitCode, CliError> {
    let client = Client::new(t)?;
    match c {
        TokensCommand::Create {
            name,
            expires_in_days,
            worker,
        } => {
            let scope = if worker { "worker" } else { "user" };
            let mut body = json!({ "name": name, "scope": scope });
            if let Some(d) = expires_in_days {
                body["expires_in_days"] = json!(d);
            }
            let v = client.post("/api/auth/tokens", body).await?;
            if t.json {
                println!("{v:#}");
            } else {
                println!("{}", v["token"].as_str().unwrap_or_default());
                eprintln!(
                    "token {} created; it is shown only this once",
                    v["id"].as_str().unwrap_or_default()
                );
            }
        }
        TokensCommand::Ls => {
            let v = client.get("/api/auth/tokens").await?;
            if t.json {
                println!("{v:#}");
            } else {
                let rows = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|tok| {
                        vec![
                            text(&tok["id"]),
                            text(&tok["name"]),
                            text(&tok["owner"]),
                            text(&tok["scope"]),
                            text(&tok["created_at"]),
                            text(&tok["expires_at"]),
                            text(&tok["last_used_at"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "NAME",
                        "OWNER",
                        "SCOPE",
                        "CREATED",
                        "EXPIRES",
                        "LAST USED",
                    ],
                    rows,
                );
            }
        }
        TokensCommand::Rm { id } => {
            client.delete(&format!("/api/auth/tokens/{id}")).await?;
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON value as a table cell: strings bare, nothing as `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
