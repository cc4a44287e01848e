//! The audit log: security-relevant actions (logins, tokens, workspaces, execs, missions, codebases,
//! library writes, provider keys), stored for `GET /api/audit` and written to the log under the target
//! `berth::audit`. An entry never holds a secret: an exec records its command line, not its env values.

use std::net::IpAddr;

use chrono::Utc;
use serde_json::{json, Value};

use crate::store::audit::AuditRow;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

/// One action to record.
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub outcome: Outcome,
    pub client: Option<IpAddr>,
    pub detail: Value,
}

impl<'a> Entry<'a> {
    /// A successful action by `actor` on `target`.
    pub fn ok(actor: &'a str, action: &'a str, target: Option<&'a str>) -> Self {
        Self {
            actor,
            action,
            target,
            outcome: Outcome::Ok,
            client: None,
            detail: json!({}),
        }
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

#[derive(Clone)]
pub struct Audit {
    store: Store,
}

impl Audit {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Stores and logs an entry. A failure to store is logged, never the caller's problem: the action
    /// itself already happened.
    pub async fn record(&self, e: Entry<'_>) {
        tracing::info!(
            target: "berth::audit",
            actor = e.actor,
            action = e.action,
            target_id = e.target.unwrap_or(""),
            outcome = e.outcome.as_str(),
            client = e.client.map(|c| c.to_string()).unwrap_or_default(),
            detail = %e.detail,
            "audit"
        );
        let row = AuditRow {
            id: 0,
            at: Utc::now(),
            actor: e.actor.to_string(),
            action: e.action.to_string(),
            target: e.target.map(str::to_string),
            outcome: e.outcome.as_str().to_string(),
            client: e.client.map(|c| c.to_string()),
            detail: e.detail.to_string(),
        };
        if let Err(err) = self.store.insert_audit(&row).await {
            tracing::warn!(error = %err, action = e.action, "storing an audit entry failed");
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Drops entries older than `days`, now and then once a day until shutdown.
    pub async fn keep_for(&self, days: u64, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            let cutoff = Utc::now() - chrono::Duration::days(days.min(36_500) as i64);
            match self.store.delete_audit_before(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, days, "old audit entries dropped"),
                Err(e) => tracing::warn!(error = %e, "dropping old audit entries failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
