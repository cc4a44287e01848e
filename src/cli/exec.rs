//! `berth exec WS -- CMD...`: the command's stdout and stderr to ours, its exit code as ours.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::client::{CliError, Client};
use super::{env_pairs, Target};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The workspace, by name or id.
    pub workspace: String,
    /// Working directory (relative ones are under /workspace).
    #[arg(long)]
    pub cwd: Option<String>,
    /// `KEY=VALUE`, for this command only; repeatable.
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Seconds before the command's whole process tree is killed.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// The command and its arguments (after `--`); run by the workspace's shell.
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

pub async fn run(t: &Target, a: ExecArgs) -> Result<ExitCode, CliError> {
    let client = Client::new(t)?;
    let mut body = json!({
        "command": shell_line(&a.command),
        "env": env_pairs(&a.env)?,
    });
    if let Some(cwd) = &a.cwd {
        body["cwd"] = json!(cwd);
    }
    if let Some(s) = a.timeout {
        body["timeout_secs"] = json!(s);
    }
    let ws = super::ws::resolve(&client, &a.workspace).await?;
    let v = client
        .post(&format!("/api/workspaces/{ws}/exec"), body)
        .await?;
    if t.json {
        println!("{v:#}");
    } else {
        std::io::stdout().write_all(v["stdout"].as_str().unwrap_or_default().as_bytes())?;
        std::io::stderr().write_all(v["stderr"].as_str().unwrap_or_default().as_bytes())?;
        if v["timed_out"] == true {
            eprintln!("berth: the command timed out and was killed");
        }
        for stream in ["stdout", "stderr"] {
            if v[format!("{stream}_truncated")] == true {
                eprintln!("berth: {stream} was cut off at the server's limit");
            }
        }
    }
    let code = v["exit_code"].as_i64().unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// One argument stays one word: each is quoted for the shell unless it is plainly safe, so
/// `berth exec ws -- echo "a b"` prints `a b`. A single argument is taken as a shell line as is
/// (`berth exec ws -- 'ls | wc -l'`).
fn shell_line(args: &[String]) -> String {
    if let [one] = args {
        return one.clone();
    }
    args.iter()
        .map(|a| {
            let safe = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
            if safe {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_stay_words() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(shell_line(&args(&["echo", "a b"])), "echo 'a b'");
        assert_eq!(shell_line(&args(&["echo", "it's"])), r"echo 'it'\''s'");
        assert_eq!(shell_line(&args(&["ls | wc -l"])), "ls | wc -l");
        assert_eq!(shell_line(&args(&["ls", "-la", "/tmp"])), "ls -la /tmp");
    }
}
