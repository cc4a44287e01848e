//! `berth shell WS`: the workspace's terminal (its login shell on a PTY through the resident agent), in
//! ours: raw mode while it runs, window size changes passed on, its exit code as ours.

use std::io::Write;
use std::process::ExitCode;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::client::{CliError, Client};
use super::Target;

/// The terminal's size, when stdout is one.
fn window_size() -> Option<(u16, u16)> {
    let mut ws: nix::libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { nix::libc::ioctl(1, nix::libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Puts stdin in raw mode for as long as it lives.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> Self {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, &raw);
        }
        Self(saved)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

pub async fn run(t: &Target, workspace: &str) -> Result<ExitCode, CliError> {
    let client = Client::new(t)?;
    let ws = super::ws::resolve(&client, workspace).await?;
    let (cols, rows) = window_size().unwrap_or((80, 24));
    let url = format!(
        "{}/api/workspaces/{ws}/pty?cols={cols}&rows={rows}",
        client.base().replacen("http", "ws", 1)
    );
    let mut req = url
        .into_client_request()
        .map_err(|e| CliError::Local(format!("the terminal's address: {e}")))?;
    if let Some(token) = client.token() {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| CliError::Local("the token is not a valid header".into()))?;
        req.headers_mut().insert("authorization", value);
    }
    let (socket, _) = match tokio_tungstenite::connect_async(req).await {
        Ok(s) => s,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            return Err(CliError::Api {
                status: reqwest::StatusCode::from_u16(resp.status().as_u16())
                    .unwrap_or(reqwest::StatusCode::BAD_GATEWAY),
                code: v["code"].as_str().unwrap_or("error").to_string(),
                message: v["error"].as_str().unwrap_or(&body).to_string(),
            });
        }
        Err(e) => {
            return Err(CliError::Unreachable {
                url: client.base().to_string(),
                reason: e.to_string(),
            })
        }
    };
    let (mut out, mut inp) = socket.split();
    let raw = RawMode::enter();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(64);
    // Keystrokes.
    let keys = tx.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if keys
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    // Window size changes.
    if let Ok(mut winch) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    {
        let resize = tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((cols, rows)) = window_size() {
                    let msg = serde_json::json!({ "type": "resize", "cols": cols, "rows": rows });
                    if resize
                        .send(Message::Text(msg.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if out.send(m).await.is_err() {
                return;
            }
        }
    });
    let mut code = 0u8;
    while let Some(Ok(msg)) = inp.next().await {
        match msg {
            Message::Binary(b) => {
                let mut stdout = std::io::stdout();
                stdout.write_all(&b)?;
                stdout.flush()?;
            }
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                if v["type"] == "exit" {
                    code = u8::try_from(v["exit_code"].as_i64().unwrap_or(1)).unwrap_or(1);
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    drop(raw);
    Ok(ExitCode::from(code))
}
