//! The API's error type: every failure a handler can return, rendered as `{"error","code"}` JSON with the
//! status that tells the client what went wrong. Clients branch on `code`, never on the message text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A conflict clients handle by kind (e.g. `diverged_history`), so it carries its own code.
    #[error("{message}")]
    ConflictCode { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed this (e.g. a worker token on a user's action).
    #[error("{0}")]
    Forbidden(String),
    /// A refusal clients handle by kind (e.g. `host_workspaces_disabled`), so it carries its own code.
    #[error("{message}")]
    ForbiddenCode { code: &'static str, message: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Too many attempts; try again in `retry_after_secs` (sent as `Retry-After`).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// The agent (its OpenCode server) cannot be reached or started now.
    #[error("{0}")]
    Unavailable(String),
    /// A workspace's resident agent does not answer (it is restarting, or its container is not running).
    #[error("{0}")]
    AgentUnavailable(String),
    /// The Docker engine failed or is unreachable; the message names the operation.
    #[error("{0}")]
    Engine(String),
    /// Anything else; the cause is logged, never sent to the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::Conflict(msg.into())
    }

    /// The status and `code` clients see (the API document lists them all).
    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::ConflictCode { code, .. } => (StatusCode::CONFLICT, code),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::ForbiddenCode { code, .. } => (StatusCode::FORBIDDEN, code),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Self::AgentUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "agent_unavailable"),
            Self::Engine(_) => (StatusCode::BAD_GATEWAY, "engine_error"),
            Self::Internal(e) if crate::storage::is_full(e) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The one place engine failures become API errors: an object berth expected that the engine does
/// not have (removed behind berth's back), or one in the wrong state (not running), is the
/// workspace's state (409 `engine_state`: rebuild or start it); anything else is the engine failing
/// (502).
impl From<crate::engine::EngineError> for ApiError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::EngineError as E;
        match e {
            E::NotFound { .. } | E::Conflict { .. } => Self::ConflictCode {
                code: "engine_state",
                message: format!("{e}; rebuild or start the workspace"),
            },
            E::Other { .. } => Self::Engine(e.to_string()),
        }
    }
}

/// A workspace's OpenCode server failing a call is a failing upstream (502), like the engine.
impl From<crate::opencode::client::ClientError> for ApiError {
    fn from(e: crate::opencode::client::ClientError) -> Self {
        Self::Engine(e.to_string())
    }
}

/// The one place a resident agent's answers become API errors: its Connect codes map onto berth's.
impl From<crate::resident::AgentError> for ApiError {
    fn from(e: crate::resident::AgentError) -> Self {
        use crate::resident::AgentError as A;
        use envd::connect::Code;
        match e {
            A::Unavailable(_) => Self::AgentUnavailable(format!(
                "{e}; it is restarted with its container's loop, try again in a moment (or start the workspace)"
            )),
            A::Protocol(m) => Self::Engine(format!("the workspace's agent: {m}")),
            A::Rpc(r) => match r.code {
                Code::NotFound => Self::NotFound(r.message),
                Code::InvalidArgument | Code::OutOfRange => Self::Invalid(r.message),
                Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
                    Self::Conflict(r.message)
                }
                Code::PermissionDenied => Self::Forbidden(r.message),
                Code::ResourceExhausted => Self::RateLimited {
                    message: r.message,
                    retry_after_secs: 1,
                },
                Code::Unavailable => Self::AgentUnavailable(r.message),
                _ => Self::Engine(format!("the workspace's agent: {}", r.message)),
            },
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::Internal(e) if crate::storage::is_full(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "a write failed: the data dir is full"
                );
                "berth's data dir is full: nothing was changed; free space on its disk and try again"
                    .to_string()
            }
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "internal server error".to_string()
            }
            Self::Engine(msg) => {
                tracing::warn!(error = %msg, "engine error");
                crate::metrics::get()
                    .engine_errors
                    .with_label_values(&["request"])
                    .inc();
                msg.clone()
            }
            other => other.to_string(),
        };
        let mut resp = (status, Json(json!({ "error": message, "code": code }))).into_response();
        if let Self::RateLimited {
            retry_after_secs, ..
        } = &self
        {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after_secs),
            );
        }
        resp
    }
}
