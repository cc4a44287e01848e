//! OpenCode: the pinned binary, a client of its server API, and the runtime that runs one server per
//! workspace.

pub mod binary;
pub mod client;
pub mod runtime;
mod sse;

pub use client::Client;
pub use runtime::{AgentConfig, Runtime};

/// The text of an OpenCode message (`{info, parts}`): its text parts, joined.
pub fn message_text(message: &serde_json::Value) -> String {
    message["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] == "text")
        .filter_map(|p| p["text"].as_str())
        .collect()
}
