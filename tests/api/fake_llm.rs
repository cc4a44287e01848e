//! A scripted OpenAI-compatible LLM for the real OpenCode to talk to (there is no LLM here). It streams
//! chat completion chunks; the last user message says what to do:
//! - `CALL_TOOL <name> <json args>`: call that tool; once the tool result comes back, answer
//!   `DONE. tool said: <result>`;
//! - `FAIL_400`: answer HTTP 400 (OpenCode ends the turn with an error);
//! - `SLOW <secs>`: stream text slowly for that long (to cancel or crash mid-turn);
//! - `THINK`: stream reasoning first;
//! - `SYSTEM_HAS <text>`: answer whether the system prompt OpenCode sent contains that text;
//! - anything else: `Echo: <text>`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

pub struct FakeLlm {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    /// The `Authorization` header of every request, in order.
    pub auth: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLlm {
    pub async fn start() -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let auth = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = auth.clone();
        let app = Router::new().route(
            "/v1/chat/completions",
            post(
                move |headers: axum::http::HeaderMap, Json(body): Json<Value>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let header = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    seen.lock().unwrap().push(header);
                    async move { complete(body).await }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            port,
            requests,
            auth,
            task,
        }
    }

    /// OpenCode configuration pointing at this fake (the `BERTH_OPENCODE_CONFIG` fragment).
    pub fn opencode_config(&self) -> String {
        json!({
            "provider": { "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake LLM",
                "options": { "baseURL": format!("http://127.0.0.1:{}/v1", self.port), "apiKey": "dummy" },
                "models": { "fake-model": { "name": "Fake Model", "tool_call": true, "limit": { "context": 128000, "output": 4096 } } }
            }},
            "enabled_providers": ["fake"],
            "model": "fake/fake-model",
            "small_model": "fake/fake-model"
        })
        .to_string()
    }
}

fn text_of(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn chunk(delta: Value, finish: Option<&str>) -> String {
    let c = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }]
    });
    format!("data: {c}\n\n")
}

fn usage_and_done() -> String {
    let u = json!({
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake-model",
        "choices": [], "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
    });
    format!("data: {u}\n\ndata: [DONE]\n\n")
}

async fn complete(body: Value) -> Response {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let system = messages
        .iter()
        .filter(|m| m["role"] == "system")
        .map(text_of)
        .collect::<String>();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(text_of)
        .unwrap_or_default();
    // `opencode run` (CodeTether's worker runs it) sends a prompt of several words in quotes.
    let user = match user
        .trim()
        .strip_prefix('"')
        .and_then(|u| u.strip_suffix('"'))
    {
        Some(inner) => inner.to_string(),
        None => user,
    };

    let mut pieces: Vec<(String, Duration)> = Vec::new();
    let instant = Duration::ZERO;
    if system.contains("title generator") {
        pieces.push((
            chunk(
                json!({ "role": "assistant", "content": "Fake title" }),
                None,
            ),
            instant,
        ));
        pieces.push((chunk(json!({}), Some("stop")), instant));
    } else if last["role"] == "tool" {
        let result: String = text_of(&last).chars().take(200).collect();
        pieces.push((
            chunk(
                json!({ "role": "assistant", "content": format!("DONE. tool said: {result}") }),
                None,
            ),
            instant,
        ));
        pieces.push((chunk(json!({}), Some("stop")), instant));
    } else if user.contains("FAIL_400") {
        let err = json!({ "error": { "message": "fake error 400", "type": "fake_error", "code": "400" } });
        return (StatusCode::BAD_REQUEST, Json(err)).into_response();
    } else if let Some(rest) = user
        .lines()
        .find_map(|l| l.trim().strip_prefix("CALL_TOOL "))
    {
        let (name, args) = rest.split_once(' ').unwrap_or((rest, "{}"));
        pieces.push((
            chunk(
                json!({ "role": "assistant", "content": format!("I will call {name}.") }),
                None,
            ),
            instant,
        ));
        pieces.push((
            chunk(json!({ "tool_calls": [{ "index": 0, "id": "call_fake1", "type": "function", "function": { "name": name, "arguments": "" } }] }), None),
            instant,
        ));
        let (a, b) = args.split_at(args.len() / 2);
        for part in [a, b] {
            pieces.push((
                chunk(
                    json!({ "tool_calls": [{ "index": 0, "function": { "arguments": part } }] }),
                    None,
                ),
                instant,
            ));
        }
        pieces.push((chunk(json!({}), Some("tool_calls")), instant));
    } else if let Some(needle) = user.trim().strip_prefix("SYSTEM_HAS ") {
        let answer = format!("system has {needle}: {}", system.contains(needle));
        pieces.push((
            chunk(json!({ "role": "assistant", "content": answer }), None),
            instant,
        ));
        pieces.push((chunk(json!({}), Some("stop")), instant));
    } else if let Some(secs) = user.lines().find_map(|l| l.trim().strip_prefix("SLOW ")) {
        let secs: u64 = secs
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        pieces.push((
            chunk(json!({ "role": "assistant", "content": "slow " }), None),
            instant,
        ));
        for _ in 0..secs * 4 {
            pieces.push((
                chunk(json!({ "content": "." }), None),
                Duration::from_millis(250),
            ));
        }
        pieces.push((chunk(json!({}), Some("stop")), instant));
    } else {
        if user.contains("THINK") {
            pieces.push((
                chunk(
                    json!({ "role": "assistant", "reasoning_content": "Let me think briefly." }),
                    None,
                ),
                instant,
            ));
        }
        let echo = user.lines().last().unwrap_or_default().trim().to_string();
        pieces.push((
            chunk(json!({ "role": "assistant", "content": "Echo: " }), None),
            instant,
        ));
        pieces.push((chunk(json!({ "content": echo }), None), instant));
        pieces.push((chunk(json!({}), Some("stop")), instant));
    }
    pieces.push((usage_and_done(), instant));
    let stream = futures::stream::unfold(pieces.into_iter(), |mut it| async move {
        let (text, delay) = it.next()?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<_, std::convert::Infallible>(text), it))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}
