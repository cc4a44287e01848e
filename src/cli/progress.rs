//! Following a build: the init log as it grows (on stderr), a spinner with the build's phase when
//! stderr is a terminal, until the workspace leaves `building`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::Value;

use super::client::{CliError, Client};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// The API's largest `lines`.
const MAX_LINES: usize = 100_000;

/// Lines of the init log not shown yet, by its line count.
pub struct LogTail {
    id: String,
    seen: usize,
}

impl LogTail {
    /// A tail that starts after what the log holds now (`from_start`: before all of it).
    pub async fn new(client: &Client, id: &str, from_start: bool) -> Result<Self, CliError> {
        let mut tail = Self {
            id: id.to_string(),
            seen: 0,
        };
        if !from_start {
            tail.seen = tail.total(client).await?;
        }
        Ok(tail)
    }

    async fn total(&self, client: &Client) -> Result<usize, CliError> {
        let v = client
            .get(&format!("/api/workspaces/{}/init-log?lines=1", self.id))
            .await?;
        Ok(v["total_lines"].as_u64().unwrap_or(0) as usize)
    }

    /// The lines added since the last call.
    pub async fn next(&mut self, client: &Client) -> Result<Vec<String>, CliError> {
        let total = self.total(client).await?;
        if total <= self.seen {
            // A log that shrank was started afresh: follow the new one.
            self.seen = self.seen.min(total);
            return Ok(Vec::new());
        }
        let want = (total - self.seen).min(MAX_LINES);
        let v = client
            .get(&format!(
                "/api/workspaces/{}/init-log?lines={want}",
                self.id
            ))
            .await?;
        self.seen = total;
        Ok(v["content"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect())
    }
}

/// Shows the log until the workspace is no longer building; its last state.
pub async fn follow(client: &Client, id: &str, tail: &mut LogTail) -> Result<Value, CliError> {
    let live = std::io::stderr().is_terminal();
    let mut phase = String::from("starting");
    let mut frame = 0;
    loop {
        let ws = client.get(&format!("/api/workspaces/{id}")).await?;
        let lines = tail.next(client).await?;
        let mut err = std::io::stderr().lock();
        if live && !lines.is_empty() {
            let _ = write!(err, "\r\x1b[2K");
        }
        for line in &lines {
            if let Some(p) = line.strip_prefix("== berth: ") {
                phase = p.to_string();
            }
            let _ = writeln!(err, "{line}");
        }
        if ws["status"] != "building" {
            if live {
                let _ = write!(err, "\r\x1b[2K");
            }
            return Ok(ws);
        }
        if live {
            frame = (frame + 1) % FRAMES.len();
            let shown: String = phase.chars().take(70).collect();
            let _ = write!(err, "\r\x1b[2K{} {shown}", FRAMES[frame]);
            let _ = err.flush();
        }
        drop(err);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}
