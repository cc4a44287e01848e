//! The library's agents and commands as OpenCode configuration (`agent` and `command` sections), so
//! every workspace's OpenCode server knows them. Only keys OpenCode understands are passed on: an
//! unknown or malformed key in its configuration would stop the server from starting at all.

use serde_json::{json, Map, Value};
use serde_yaml::Mapping;

use super::frontmatter;
use super::{ItemType, Library};
use crate::error::ApiResult;

/// Agent front-matter keys OpenCode's agent schema takes as they are.
const AGENT_KEYS: [&str; 8] = [
    "description",
    "model",
    "temperature",
    "top_p",
    "mode",
    "tools",
    "color",
    "disable",
];
const AGENT_MODES: [&str; 3] = ["primary", "subagent", "all"];
const PERMISSIONS: [&str; 3] = ["ask", "allow", "deny"];

impl Library {
    /// `{"agent": {...}, "command": {...}}` for every agent and command in the library. Items whose
    /// front matter no longer parses are skipped (saving checks it, so only a hand edit gets here).
    pub async fn opencode_section(&self) -> ApiResult<Value> {
        let mut agents = Map::new();
        for summary in self.list(ItemType::Agent).await? {
            let item = self.get(ItemType::Agent, &summary.name).await?;
            if let Some(agent) = agent_config(&item.content) {
                agents.insert(summary.name, agent);
            }
        }
        let mut commands = Map::new();
        for summary in self.list(ItemType::Command).await? {
            let item = self.get(ItemType::Command, &summary.name).await?;
            if let Some(command) = command_config(&item.content) {
                commands.insert(summary.name, command);
            }
        }
        Ok(json!({ "agent": agents, "command": commands }))
    }
}

fn to_json(v: &serde_yaml::Value) -> Option<Value> {
    serde_json::to_value(v).ok()
}

/// An agent file: front matter for its settings, the body for its prompt. The library's format
/// (`open-agent`'s) says `permissions`; OpenCode says `permission`.
fn agent_config(content: &str) -> Option<Value> {
    let meta = frontmatter::parse(content).ok()?.unwrap_or_default();
    let mut out = Map::new();
    for key in AGENT_KEYS {
        if let Some(v) = meta.get(key).and_then(to_json) {
            let fits = match key {
                "mode" => v.as_str().is_some_and(|m| AGENT_MODES.contains(&m)),
                "temperature" | "top_p" => v.is_number(),
                "disable" => v.is_boolean(),
                "tools" => v
                    .as_object()
                    .is_some_and(|t| t.values().all(Value::is_boolean)),
                _ => v.is_string(),
            };
            if fits {
                out.insert(key.to_string(), v);
            }
        }
    }
    if let Some(p) = permission(&meta) {
        out.insert("permission".into(), p);
    }
    let prompt = frontmatter::body(content).trim();
    if !prompt.is_empty() {
        out.insert("prompt".into(), Value::String(prompt.to_string()));
    }
    Some(Value::Object(out))
}

/// `permission` (or `permissions`): tool → `ask|allow|deny`, or tool → pattern → one of those.
fn permission(meta: &Mapping) -> Option<Value> {
    let v = meta
        .get("permission")
        .or_else(|| meta.get("permissions"))
        .and_then(to_json)?;
    let is_action = |v: &Value| v.as_str().is_some_and(|s| PERMISSIONS.contains(&s));
    let valid = v
        .as_object()?
        .values()
        .all(|rule| is_action(rule) || rule.as_object().is_some_and(|m| m.values().all(is_action)));
    valid.then_some(v)
}

/// A command file: the body is its template (`$ARGUMENTS` and `$1`… are filled by OpenCode).
fn command_config(content: &str) -> Option<Value> {
    let meta = frontmatter::parse(content).ok()?.unwrap_or_default();
    let template = frontmatter::body(content).trim();
    if template.is_empty() {
        return None;
    }
    let mut out = Map::new();
    out.insert("template".into(), Value::String(template.to_string()));
    for key in ["description", "agent", "model"] {
        if let Some(v) = frontmatter::string_field(&meta, key) {
            out.insert(key.into(), Value::String(v));
        }
    }
    if let Some(b) = meta.get("subtask").and_then(serde_yaml::Value::as_bool) {
        out.insert("subtask".into(), Value::Bool(b));
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_keep_what_opencode_understands() {
        let a = agent_config(
            "---\ndescription: Reviews code\nmode: subagent\ntemperature: 0.2\ntools:\n  write: false\npermissions:\n  bash: ask\nparams: [x]\nmodel: 42\n---\nYou review code.\n",
        )
        .unwrap();
        assert_eq!(
            a,
            json!({
                "description": "Reviews code",
                "mode": "subagent",
                "temperature": 0.2,
                "tools": { "write": false },
                "permission": { "bash": "ask" },
                "prompt": "You review code.",
            })
        );
        let bad = agent_config("---\nmode: boss\npermission:\n  bash: maybe\n---\n").unwrap();
        assert_eq!(bad, json!({}));
    }

    #[test]
    fn commands_are_templates() {
        let c = command_config(
            "---\ndescription: Say hi\nparams:\n  - name: who\nsubtask: true\n---\nSay hi to $ARGUMENTS\n",
        )
        .unwrap();
        assert_eq!(
            c,
            json!({ "template": "Say hi to $ARGUMENTS", "description": "Say hi", "subtask": true })
        );
        assert!(command_config("---\ndescription: empty\n---\n").is_none());
    }
}
