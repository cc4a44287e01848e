//! Agents that registered for discovery over MCP (`register_agent`), per user, in memory: CodeTether's
//! worker registers itself so other agents can find it, and refreshes that every 45 s. An entry not
//! refreshed for `TTL` is no longer listed; a restart forgets them all (they register again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

const TTL: Duration = Duration::from_secs(120);
/// Entries per user: a flood costs bounded memory.
const MAX_PER_OWNER: usize = 256;

#[derive(Debug, Clone, Serialize)]
pub struct AgentCard {
    pub name: String,
    pub description: String,
    pub url: Option<String>,
    pub capabilities: Value,
    pub models_supported: Vec<String>,
    pub last_seen: DateTime<Utc>,
    #[serde(skip)]
    seen: Option<Instant>,
}

#[derive(Clone, Default)]
pub struct Discovery {
    inner: Arc<Mutex<HashMap<String, HashMap<String, AgentCard>>>>,
}

impl Discovery {
    /// Registers (or refreshes) an agent of `owner`; false when the user has too many.
    pub fn register(&self, owner: &str, mut card: AgentCard) -> bool {
        let mut all = self.inner.lock().expect("discovery lock");
        let mine = all.entry(owner.to_string()).or_default();
        mine.retain(|_, c| c.seen.is_some_and(|s| s.elapsed() < TTL));
        if !mine.contains_key(&card.name) && mine.len() >= MAX_PER_OWNER {
            return false;
        }
        card.seen = Some(Instant::now());
        card.last_seen = Utc::now();
        mine.insert(card.name.clone(), card);
        true
    }

    /// Marks the agent seen; false if it is not registered (any longer).
    pub fn refresh(&self, owner: &str, name: &str) -> bool {
        let mut all = self.inner.lock().expect("discovery lock");
        match all.get_mut(owner).and_then(|m| m.get_mut(name)) {
            Some(c) if c.seen.is_some_and(|s| s.elapsed() < TTL) => {
                c.seen = Some(Instant::now());
                c.last_seen = Utc::now();
                true
            }
            _ => false,
        }
    }

    /// The user's agents seen within the TTL, by name.
    pub fn list(&self, owner: &str) -> Vec<AgentCard> {
        let all = self.inner.lock().expect("discovery lock");
        let mut out: Vec<AgentCard> = all
            .get(owner)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|c| c.seen.is_some_and(|s| s.elapsed() < TTL))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

impl AgentCard {
    pub fn new(name: String, description: String, url: Option<String>) -> Self {
        Self {
            name,
            description,
            url,
            capabilities: Value::Null,
            models_supported: Vec::new(),
            last_seen: Utc::now(),
            seen: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_per_user() {
        let d = Discovery::default();
        assert!(d.register("alice", AgentCard::new("a:1".into(), "x".into(), None)));
        assert_eq!(d.list("alice").len(), 1);
        assert!(d.list("bob").is_empty());
        assert!(d.refresh("alice", "a:1"));
        assert!(!d.refresh("bob", "a:1"));
    }
}
