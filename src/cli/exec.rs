//! `berth exec WS -- CMD...`: the command's stdout and stderr to ours as they come, our stdin to it with
//! `-i`, its exit code as ours. Through the workspace's resident agent (a process whose output streams
//! and resumes if the connection breaks); a workspace without one gets the buffered exec.

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
    /// Pass our stdin to the command (until it ends).
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// The command and its arguments (after `--`); run by the workspace's shell.
    #[arg(required = true, last = true)]
    pub command: Vec<String>,
}

pub async fn run(t: &Target, a: ExecArgs) -> Result<ExitCode, CliError> {
    let client = Client::new(t)?;
    let ws = super::ws::resolve(&client, &a.workspace).await?;
    if !t.json {
        match streamed(&client, &ws, &a).await {
            Err(CliError::Api { code, .. }) if code == "no_agent" => {}
            other => return other,
        }
    } else if a.interactive {
        return Err(CliError::Usage("--json and -i do not go together".into()));
    }
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

/// The command as a process on the agent: output written as it arrives (resuming after the last event
/// seen if the stream breaks), stdin forwarded with `-i`.
async fn streamed(client: &Client, ws: &str, a: &ExecArgs) -> Result<ExitCode, CliError> {
    use base64::Engine as _;
    use futures::StreamExt;
    let mut body = json!({
        "command": shell_line(&a.command),
        "env": env_pairs(&a.env)?,
        "stdin": a.interactive,
    });
    if let Some(cwd) = &a.cwd {
        body["cwd"] = json!(cwd);
    }
    if let Some(s) = a.timeout {
        body["timeout_secs"] = json!(s);
    }
    let p = client
        .post(&format!("/api/workspaces/{ws}/processes"), body)
        .await?;
    let pid = p["id"].as_u64().unwrap_or_default();
    let stdin_path = format!("/api/workspaces/{ws}/processes/{pid}/stdin");
    if a.interactive {
        let (path, client) = (stdin_path.clone(), client.clone());
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = stdin.read(&mut buf).await.unwrap_or(0);
                let chunk = base64::engine::general_purpose::STANDARD.encode(&buf[..n]);
                let body = if n == 0 {
                    json!({ "close": true })
                } else {
                    json!({ "data_b64": chunk })
                };
                if client.post(&path, body).await.is_err() || n == 0 {
                    return;
                }
            }
        });
    }
    let output = format!("/api/workspaces/{ws}/processes/{pid}/output");
    let mut last = String::from("0");
    let b64 = base64::engine::general_purpose::STANDARD;
    loop {
        let req = client
            .request(reqwest::Method::GET, &output)
            .header("Last-Event-ID", &last);
        let resp = client.send(&output, req).await?;
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "", String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                let v: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
                let bytes = b64
                    .decode(v["data_b64"].as_str().unwrap_or(""))
                    .unwrap_or_default();
                match event {
                    "stdout" | "pty" => {
                        let mut out = std::io::stdout();
                        out.write_all(&bytes)?;
                        out.flush()?;
                    }
                    "stderr" => std::io::stderr().write_all(&bytes)?,
                    "exit" => return Ok(exit_code(&v)),
                    _ => {}
                }
                if let Some(id) = id.filter(|i| !i.is_empty()) {
                    last = id;
                }
            }
        }
        // The stream broke before the process ended: pick it up after the last event seen.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Our exit code from the process's end: its own, 124 after a timeout (as `timeout` does), 128 + the
/// signal's number when a signal ended it.
fn exit_code(end: &serde_json::Value) -> ExitCode {
    if end["exited"] == true {
        return ExitCode::from(u8::try_from(end["exit_code"].as_i64().unwrap_or(1)).unwrap_or(1));
    }
    let status = end["status"].as_str().unwrap_or("");
    eprintln!("berth: the command ended: {status}");
    if status == "timed out" {
        return ExitCode::from(124);
    }
    let signal = match status {
        "signal: killed" => 9,
        "signal: terminated" => 15,
        "signal: interrupt" => 2,
        "signal: hangup" => 1,
        s => s
            .strip_prefix("signal: signal ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    };
    ExitCode::from(if signal > 0 { 128 + signal } else { 1 })
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
