//! Providers and the OpenCode configuration every workspace's server gets: berth's base settings, the
//! library's agents and commands, the operator's fragment (`BERTH_OPENCODE_CONFIG`), then the API keys
//! set through the providers API.

use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::library::Library;
use crate::secrets::SecretBox;
use crate::store::Store;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub id: String,
    pub name: String,
    /// Where the provider is defined: `config` (the OpenCode fragment) or `api` (only a key set here).
    pub source: &'static str,
    pub has_api_key: bool,
    pub models: Vec<String>,
}

/// Reads `BERTH_OPENCODE_CONFIG`: inline JSON when it starts with `{`, else a path to a JSON file.
pub fn load_fragment(setting: Option<&str>) -> anyhow::Result<Value> {
    let Some(s) = setting.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(json!({}));
    };
    let text = if s.starts_with('{') {
        s.to_string()
    } else {
        std::fs::read_to_string(s)
            .map_err(|e| anyhow::anyhow!("read BERTH_OPENCODE_CONFIG {s}: {e}"))?
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("BERTH_OPENCODE_CONFIG is not JSON: {e}"))?;
    if !v.is_object() {
        anyhow::bail!("BERTH_OPENCODE_CONFIG must be a JSON object");
    }
    Ok(v)
}

/// Objects merge key by key; anything else is replaced by the overlay.
pub fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The whole configuration: berth's base, the library's agents and commands, the operator's fragment
/// (which may override them), then the stored API keys.
pub async fn opencode_config(
    fragment: &Value,
    library: &Library,
    store: &Store,
    secrets: &SecretBox,
) -> ApiResult<Value> {
    let mut config = json!({
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": false,
        "share": "disabled",
        // The workspace container is the sandbox; inside it the agent may act.
        "permission": { "*": "allow" },
    });
    merge(&mut config, &library.opencode_section().await?);
    merge(&mut config, fragment);
    for (id, sealed) in store.provider_keys().await? {
        let key = secrets.unseal(&sealed).map_err(ApiError::Internal)?;
        merge(
            &mut config,
            &json!({ "provider": { id: { "options": { "apiKey": key } } } }),
        );
    }
    Ok(config)
}

pub async fn list(fragment: &Value, store: &Store) -> ApiResult<Vec<ProviderView>> {
    let keys: Vec<String> = store
        .provider_keys()
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut out = Vec::new();
    if let Some(providers) = fragment["provider"].as_object() {
        for (id, p) in providers {
            out.push(ProviderView {
                id: id.clone(),
                name: p["name"].as_str().unwrap_or(id).to_string(),
                source: "config",
                has_api_key: keys.contains(id) || p["options"]["apiKey"].is_string(),
                models: p["models"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default(),
            });
        }
    }
    for id in keys {
        if !out.iter().any(|p| p.id == id) {
            out.push(ProviderView {
                name: id.clone(),
                id,
                source: "api",
                has_api_key: true,
                models: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// Provider ids become JSON keys in OpenCode's config: keep them plain.
pub fn check_provider_id(id: &str) -> ApiResult<()> {
    if crate::workspaces::validate::is_safe_name(id, 64) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("invalid provider id {id:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_deep() {
        let mut a = json!({ "provider": { "x": { "name": "X", "options": { "baseURL": "u" } } }, "model": "a" });
        merge(
            &mut a,
            &json!({ "provider": { "x": { "options": { "apiKey": "k" } } }, "model": "b" }),
        );
        assert_eq!(
            a["provider"]["x"]["options"],
            json!({ "baseURL": "u", "apiKey": "k" })
        );
        assert_eq!(a["provider"]["x"]["name"], "X");
        assert_eq!(a["model"], "b");
    }
}
