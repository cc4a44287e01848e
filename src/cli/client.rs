//! The HTTP side of the client: a token, requests, and the server's errors as one readable line.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::credentials;
use super::Target;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach the berth server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{message} ({code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("not logged in to {0}: run `berth login` or set BERTH_TOKEN")]
    NoToken(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Local(String),
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::Local(e.to_string())
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client with only the stored login for this server (never `BERTH_TOKEN`).
    pub fn stored(t: &Target) -> Result<Self, CliError> {
        let base = t.url.trim_end_matches('/').to_string();
        Ok(Self {
            http: reqwest::Client::new(),
            token: credentials::load(&base)?,
            base,
        })
    }

    /// A client with the token from `BERTH_TOKEN` or the stored login for this server.
    pub fn new(t: &Target) -> Result<Self, CliError> {
        let client = Self::stored(t)?;
        Ok(match std::env::var("BERTH_TOKEN") {
            Ok(tok) if !tok.is_empty() => client.with_token(tok),
            _ => client,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn with_token(mut self, token: String) -> Self {
        self.token = Some(token);
        self
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::DELETE, path, None).await
    }

    /// A request with the token (public routes need none); the JSON answer, or the server's error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(self.error_of(path, resp).await);
        }
        let text = resp.text().await.map_err(|e| self.unreachable(&e))?;
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        })
    }

    /// A request to `path` with the token, for bodies and answers that are not JSON (streams, files).
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends a request built by `request`: the response when it succeeded, else the server's error.
    pub async fn send(
        &self,
        path: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CliError> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(self.error_of(path, resp).await)
        }
    }

    pub fn unreachable(&self, e: &reqwest::Error) -> CliError {
        CliError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(e),
        }
    }

    /// The server's error answer as one readable error.
    async fn error_of(&self, path: &str, resp: reqwest::Response) -> CliError {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let message = value["error"]
            .as_str()
            .or(value["detail"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| format!("the server answered {status}"));
        let code = value["code"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.as_u16().to_string());
        let logging_in = path == "/api/auth/login";
        if status == StatusCode::UNAUTHORIZED && self.token.is_none() && !logging_in {
            return CliError::NoToken(self.base.clone());
        }
        let message = if status == StatusCode::UNAUTHORIZED && !logging_in {
            format!("{message}; run `berth login` again")
        } else {
            message
        };
        CliError::Api {
            status,
            code,
            message,
        }
    }
}

/// The innermost error of a request failure: "Connection refused", not a chain of wrappers.
fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
