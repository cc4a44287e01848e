//! HTTP handlers, one module per domain, plus the extractors that turn malformed requests into the API's
//! JSON errors instead of axum's plain-text rejections. `openapi` describes them all.

pub mod audit;
pub mod auth;
pub mod backends;
pub mod control;
pub mod cors;
pub mod e2b;
pub mod event_stream;
pub mod files;
pub mod gateway;
pub mod library;
pub mod library_openagent;
pub mod mcp;
pub mod metrics;
pub mod missions;
pub mod observe;
pub mod openapi;
pub mod opencode_proxy;
pub mod preview;
pub mod processes;
pub mod providers;
pub mod relay;
pub mod system;
pub mod terminal;
pub mod tokens;
pub mod v1;
pub mod workspace_power;
pub mod workspaces;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;

use crate::error::ApiError;

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::PayloadTooLarge("request body too large".into());
        }
        ApiError::Invalid(format!("invalid JSON body: {}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::Invalid(format!("invalid query: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::Invalid(format!("invalid path: {}", r.body_text()))
    }
}

/// A JSON body that may be absent: an empty body means the defaults.
pub fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::Invalid(format!("invalid JSON body: {e}")))
}

/// The largest page any listing answers.
const MAX_LIMIT: i64 = 10_000;

/// A listing's `?limit=`: `default` when absent, else 1 to 10000.
pub fn limit_or(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 10000"));
    }
    Ok(limit)
}

/// A listing's `?limit=&offset=`.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1 to 10000.
    pub limit: Option<i64>,
    /// At least 0 (default 0).
    pub offset: Option<i64>,
}

impl Page {
    /// `(limit, offset)`: `default` and 0 when absent.
    pub fn get(&self, default: i64) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(default);
        let offset = self.offset.unwrap_or(0);
        if !(1..=MAX_LIMIT).contains(&limit) || offset < 0 {
            return Err(ApiError::invalid(
                "limit must be 1 to 10000 and offset at least 0",
            ));
        }
        Ok((limit, offset))
    }
}
