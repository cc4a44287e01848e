//! A client of one `opencode serve`: the few calls berth drives (health, sessions, prompts, abort,
//! messages, the event stream), each with a timeout so a hung server never hangs berth.

use std::time::Duration;

use futures::Stream;
use serde_json::{json, Value};

/// Basic-auth user OpenCode expects with `OPENCODE_SERVER_PASSWORD`.
pub const USER: &str = "opencode";

#[derive(Clone)]
pub struct Client {
    pub base: String,
    password: String,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("opencode {op}: {msg}")]
pub struct ClientError {
    pub op: &'static str,
    pub msg: String,
}

type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    pub fn new(base: String, password: String) -> Self {
        Self {
            base,
            password,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("reqwest client"),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The server's password, for berth's own record of it (sealed there).
    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(USER, Some(&self.password))
    }

    async fn json(
        &self,
        op: &'static str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<Value> {
        let err = |msg: String| ClientError { op, msg };
        let resp = req
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            return Err(err(format!(
                "HTTP {status}: {}",
                text.chars().take(500).collect::<String>()
            )));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| err(format!("bad JSON: {e}")))
    }

    /// One short health probe. Start-up requests can hang (a known OpenCode quirk), so the timeout is
    /// short and callers retry.
    pub async fn healthy(&self) -> bool {
        let req = self.request(reqwest::Method::GET, "/global/health");
        matches!(self.json("health", req, Duration::from_millis(1000)).await, Ok(v) if v["healthy"] == true)
    }

    pub async fn create_session(&self, title: &str) -> Result<String> {
        let req = self
            .request(reqwest::Method::POST, "/session")
            .json(&json!({ "title": title }));
        let v = self
            .json("create session", req, Duration::from_secs(30))
            .await?;
        v["id"].as_str().map(str::to_string).ok_or(ClientError {
            op: "create session",
            msg: format!("no id in {v}"),
        })
    }

    pub async fn session_exists(&self, id: &str) -> bool {
        let req = self.request(reqwest::Method::GET, &format!("/session/{id}"));
        self.json("get session", req, Duration::from_secs(10))
            .await
            .is_ok()
    }

    /// Starts a turn without waiting for it (`prompt_async`); progress comes on the event stream.
    pub async fn prompt(&self, session: &str, body: &Value) -> Result<()> {
        let req = self
            .request(
                reqwest::Method::POST,
                &format!("/session/{session}/prompt_async"),
            )
            .json(body);
        self.json("prompt", req, Duration::from_secs(30))
            .await
            .map(|_| ())
    }

    pub async fn abort(&self, session: &str) -> Result<()> {
        let req = self.request(reqwest::Method::POST, &format!("/session/{session}/abort"));
        self.json("abort", req, Duration::from_secs(15))
            .await
            .map(|_| ())
    }

    /// Any read of OpenCode's API (`/session`, `/project`, …).
    pub async fn get(&self, path: &str) -> Result<Value> {
        let req = self.request(reqwest::Method::GET, path);
        self.json("read", req, Duration::from_secs(30)).await
    }

    pub async fn messages(&self, session: &str) -> Result<Vec<Value>> {
        let req = self.request(reqwest::Method::GET, &format!("/session/{session}/message"));
        let v = self.json("messages", req, Duration::from_secs(30)).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The server's event stream (`/event`), as parsed JSON events.
    pub async fn events(&self) -> Result<impl Stream<Item = Value> + Send + Unpin> {
        let resp = self
            .request(reqwest::Method::GET, "/event")
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| ClientError {
                op: "events",
                msg: e.to_string(),
            })?;
        Ok(super::sse::events(resp.bytes_stream()))
    }
}
