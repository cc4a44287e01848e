//! Following a build: the init log as it grows (on stderr), a spinner with the build's phase when
//! stderr is a terminal, until the workspace leaves `building`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::Value;

use super::client::{CliError, Client};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// The init log from a byte cursor: each read answers the complete lines written since the last one,
/// so nothing is skipped or shown twice, and a line still being written waits for its end.
pub struct LogTail {
    id: String,
    next_byte: u64,
}

impl LogTail {
    /// A tail from the start of the log (a build starts it afresh before answering).
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            next_byte: 0,
        }
    }

    /// The lines added since the last call (all of a log that was started afresh by a new build).
    pub async fn next(&mut self, client: &Client) -> Result<Vec<String>, CliError> {
        let v = client
            .get(&format!(
                "/api/workspaces/{}/init-log?from_byte={}",
                self.id, self.next_byte
            ))
            .await?;
        self.next_byte = v["next_byte"].as_u64().unwrap_or(self.next_byte);
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
            // What the build wrote after the status was read.
            for line in tail.next(client).await? {
                let _ = writeln!(err, "{line}");
            }
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
