//! Which provider a gateway call goes to, and the agent configuration that sends calls there.

use serde_json::{json, Value};

/// Where a provider's calls go, and the key berth adds.
pub struct Upstream {
    /// The provider's API base, e.g. `https://api.openai.com/v1`; the call's path is appended.
    pub base: String,
    pub key: Option<String>,
}

/// Bases of providers OpenCode knows without one in the configuration.
fn default_base(id: &str, npm: Option<&str>) -> Option<&'static str> {
    match (id, npm) {
        (_, Some("@ai-sdk/anthropic")) | ("anthropic", _) => Some("https://api.anthropic.com/v1"),
        (_, Some("@ai-sdk/openai")) | ("openai", _) => Some("https://api.openai.com/v1"),
        _ => None,
    }
}

/// The upstream of `provider` in the (host-side) agent configuration.
pub fn upstream(config: &Value, provider: &str) -> Option<Upstream> {
    let p = config["provider"].get(provider)?;
    let base = p["options"]["baseURL"]
        .as_str()
        .or_else(|| default_base(provider, p["npm"].as_str()))?
        .trim_end_matches('/')
        .to_string();
    Some(Upstream {
        base,
        key: p["options"]["apiKey"].as_str().map(str::to_string),
    })
}

/// The configuration a workspace's agent server gets: every provider the gateway can reach goes
/// through `gateway` (`…/llm`) with the workspace's `token` in place of its key. Keys never stay in it.
pub fn route_through(config: &Value, gateway: &str, token: &str) -> Value {
    let mut out = config.clone();
    if let Some(providers) = out["provider"].as_object_mut() {
        for (id, p) in providers.iter_mut() {
            let reachable = p["options"]["baseURL"].is_string()
                || default_base(id, p["npm"].as_str()).is_some();
            if !p["options"].is_object() {
                p["options"] = json!({});
            }
            let options = p["options"].as_object_mut().expect("made an object above");
            options.remove("apiKey");
            if reachable {
                options.insert("baseURL".into(), json!(format!("{gateway}/{id}")));
                options.insert("apiKey".into(), json!(token));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_replaced_by_the_token_and_bases_by_the_gateway() {
        let config = json!({ "provider": {
            "fake": { "npm": "@ai-sdk/openai-compatible", "options": { "baseURL": "http://127.0.0.1:9/v1", "apiKey": "sk-secret" } },
            "anthropic": { "options": { "apiKey": "sk-ant" } },
            "odd": { "options": { "apiKey": "sk-odd" } },
        }});
        let routed = route_through(&config, "http://10.0.0.1:7787/llm", "bgw_t");
        assert!(!routed.to_string().contains("sk-"), "{routed}");
        assert_eq!(
            routed["provider"]["fake"]["options"]["baseURL"],
            "http://10.0.0.1:7787/llm/fake"
        );
        assert_eq!(
            routed["provider"]["anthropic"]["options"]["apiKey"],
            "bgw_t"
        );
        let up = upstream(&config, "fake").unwrap();
        assert_eq!(
            (up.base.as_str(), up.key.as_deref()),
            ("http://127.0.0.1:9/v1", Some("sk-secret"))
        );
        assert_eq!(
            upstream(&config, "anthropic").unwrap().base,
            "https://api.anthropic.com/v1"
        );
        assert!(upstream(&config, "odd").is_none());
    }
}
