//! `/llm/{provider}/...`: the LLM gateway workspaces' agent servers call instead of their providers. The
//! caller is a workspace, by its gateway token (`Authorization: Bearer` or `x-api-key`); berth puts the
//! provider's key in its place and passes the answer back as it comes, counting the tokens it reports.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::{StreamExt, TryStreamExt};

use super::Path;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::gateway::UsageTap;

/// The caller's credentials (replaced by the provider's) and its side of the connection.
const NOT_FORWARDED: [&str; 3] = ["host", "authorization", "x-api-key"];

#[utoipa::path(
    method(get, post), path = "/llm/{provider}/{path}", tag = "gateway",
    summary = "The LLM gateway: a provider's API, called by a workspace with its gateway token",
    description = "OpenAI- and Anthropic-compatible: the call goes to the provider's API base plus `{path}` with the provider's key in place of the workspace's token (`Authorization: Bearer` or `x-api-key`, as the caller sent it); the answer (streamed or not, errors included) comes back as it is. Workspaces find the gateway in their agent configuration.",
    params(
        ("provider" = String, Path, description = "a provider of the agent configuration"),
        ("path" = String, Path, description = "the provider API's path, e.g. `chat/completions` or `messages`"),
    ),
    responses(
        (status = 200, description = "the provider's answer, whatever its status and body"),
        (status = 401, description = "no valid gateway token"),
        (status = 404, description = "a provider the gateway cannot reach"),
        (status = 502, description = "the provider did not answer"),
    ),
    security(()),
)]
pub async fn call_provider(
    State(s): State<AppState>,
    Path((provider, _path)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or_default()
        .trim()
        .to_string();
    let (workspace, owner) = crate::gateway::resolve(&s.store, &token)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("a workspace's gateway token is needed".into()))?;
    let upstream = s
        .missions
        .provider_upstream(&provider)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no provider {provider:?} the gateway reaches"))
        })?;
    // The rest of the path as the caller sent it.
    let raw = req.uri().path();
    let rest = raw
        .strip_prefix("/llm/")
        .and_then(|r| r.split_once('/'))
        .map_or("", |(_, r)| r);
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("{}/{rest}{query}", upstream.base);
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::invalid("unsupported method"))?;
    let anthropic_style = req.headers().contains_key("x-api-key");
    let mut call = s.gateway_client.request(method, url);
    for (name, value) in req.headers() {
        let name = name.as_str();
        if !NOT_FORWARDED.contains(&name) && !super::relay::HOP_BY_HOP.contains(&name) {
            call = call.header(name, value.as_bytes());
        }
    }
    if let Some(key) = &upstream.key {
        call = if anthropic_style {
            call.header("x-api-key", key)
        } else {
            call.bearer_auth(key)
        };
    }
    let body = req
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    let resp = call
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| ApiError::Engine(format!("LLM provider {provider}: {e}")))?;
    let out = super::relay::response_head(&resp, &NOT_FORWARDED);
    // The answer passes as it comes; what it reports it used is counted when it ends.
    let store = s.store.clone();
    let counted = futures::stream::unfold(
        (
            resp.bytes_stream(),
            UsageTap::default(),
            Some((store, workspace, owner)),
        ),
        |(mut body, mut tap, mut record)| async move {
            match body.next().await {
                Some(Ok(chunk)) => {
                    tap.feed(&chunk);
                    Some((Ok(chunk), (body, tap, record)))
                }
                Some(Err(e)) => Some((Err(e), (body, tap, record))),
                None => {
                    if let Some((store, ws, owner)) = record.take() {
                        tap.finish();
                        if let Err(e) = store
                            .add_llm_usage(&ws, &owner, tap.input_tokens, tap.output_tokens)
                            .await
                        {
                            tracing::warn!(workspace.id = %ws, error = %e, "counting LLM usage failed");
                        }
                    }
                    None
                }
            }
        },
    );
    out.body(Body::from_stream(counted))
        .map_err(|e| ApiError::Internal(e.into()))
}
