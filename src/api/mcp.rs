//! `/mcp/v1/rpc`: the part of CodeTether's MCP endpoint its worker uses, as JSON-RPC 2.0 — agent
//! discovery (`register_agent`, `refresh_agent_heartbeat`, `discover_agents`), per user. It takes a
//! user's token, a worker token or a worker's own, and checks it itself.

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::Json;
use crate::agents::AgentCard;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize, ToSchema)]
pub struct RpcRequest {
    /// `"2.0"`.
    jsonrpc: Option<String>,
    #[schema(value_type = Object)]
    id: Option<Value>,
    /// `initialize`, `tools/list` or `tools/call`.
    method: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    params: Value,
}

/// The user a token speaks for: a worker's owner, or the user (any scope).
async fn owner_of(s: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let token = super::auth::bearer_of(headers)?;
    if let Some((_, owner)) = super::auth::worker_caller(s, token).await? {
        return Ok(owner);
    }
    Ok(super::auth::authenticate(s, token).await?.0.name)
}

fn rpc_error(id: &Value, code: i64, message: impl Into<String>) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message.into() } })
}

fn tool_result(id: &Value, v: Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": { "content": [{ "type": "text", "text": v.to_string() }], "isError": false },
    })
}

fn text(v: &Value, max: usize) -> Option<String> {
    v.as_str()
        .filter(|s| !s.trim().is_empty() && s.len() <= max)
        .map(str::to_string)
}

#[utoipa::path(
    post, path = "/mcp/v1/rpc", tag = "v1 workers",
    summary = "MCP over JSON-RPC 2.0: agent discovery for workers (register_agent, refresh_agent_heartbeat, discover_agents)",
    request_body = RpcRequest,
    responses(
        (status = 200, description = "a JSON-RPC answer: `result`, or `error` (bad request -32600, unknown method or tool -32601, bad arguments -32602)", body = Object),
        (status = 401, description = "no token, or one that does not hold"),
    ),
)]
pub async fn rpc(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<RpcRequest>,
) -> ApiResult<Json<Value>> {
    let owner = owner_of(&s, &headers).await?;
    let id = req.id.clone().unwrap_or(Value::Null);
    if req.jsonrpc.as_deref() != Some("2.0") {
        return Ok(Json(rpc_error(&id, -32600, "jsonrpc must be \"2.0\"")));
    }
    let discovery = s.agents.discovery();
    let answer = match req.method.as_str() {
        "initialize" => json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": {
                "protocolVersion": "2024-11-05",
                "serverInfo": { "name": "berth", "version": env!("CARGO_PKG_VERSION") },
                "capabilities": { "tools": {} },
            },
        }),
        "tools/list" => json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": { "tools": [
                { "name": "register_agent", "description": "Make an agent discoverable to the user's other agents",
                  "inputSchema": { "type": "object", "required": ["name"], "properties": {
                      "name": { "type": "string" }, "description": { "type": "string" }, "url": { "type": "string" },
                      "capabilities": { "type": "object" }, "models_supported": { "type": "array", "items": { "type": "string" } } } } },
                { "name": "refresh_agent_heartbeat", "description": "Keep an agent listed (entries lapse after 120 s)",
                  "inputSchema": { "type": "object", "required": ["agent_name"], "properties": { "agent_name": { "type": "string" } } } },
                { "name": "discover_agents", "description": "The user's agents seen in the last 120 s",
                  "inputSchema": { "type": "object", "properties": {} } },
            ] },
        }),
        "tools/call" => {
            let args = &req.params["arguments"];
            match req.params["name"].as_str().unwrap_or_default() {
                "register_agent" => {
                    let Some(name) = text(&args["name"], 256) else {
                        return Ok(Json(rpc_error(&id, -32602, "name: 1 to 256 characters")));
                    };
                    let mut card = AgentCard::new(
                        name,
                        text(&args["description"], 4096).unwrap_or_default(),
                        text(&args["url"], 2048),
                    );
                    if args["capabilities"].to_string().len() > 16 * 1024 {
                        return Ok(Json(rpc_error(&id, -32602, "capabilities: at most 16 KiB")));
                    }
                    card.capabilities = args["capabilities"].clone();
                    card.models_supported = args["models_supported"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| text(m, 256))
                        .take(100)
                        .collect();
                    if !discovery.register(&owner, card.clone()) {
                        return Err(ApiError::RateLimited {
                            message: "too many agents registered for discovery".into(),
                            retry_after_secs: 120,
                        });
                    }
                    tool_result(&id, json!({ "success": true, "agent": card }))
                }
                "refresh_agent_heartbeat" => {
                    let Some(name) = text(&args["agent_name"], 256) else {
                        return Ok(Json(rpc_error(
                            &id,
                            -32602,
                            "agent_name: 1 to 256 characters",
                        )));
                    };
                    // After a restart of berth the agent is unknown: it is listed again by name.
                    if !discovery.refresh(&owner, &name) {
                        discovery
                            .register(&owner, AgentCard::new(name.clone(), String::new(), None));
                    }
                    tool_result(&id, json!({ "success": true, "agent_name": name }))
                }
                "discover_agents" => tool_result(&id, json!({ "agents": discovery.list(&owner) })),
                other => rpc_error(&id, -32601, format!("unknown tool {other:?}")),
            }
        }
        other => rpc_error(&id, -32601, format!("unknown method {other:?}")),
    };
    Ok(Json(answer))
}
