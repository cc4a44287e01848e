//! The audit log's rows.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::Store;

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub client: Option<String>,
    pub detail: String,
}

/// Which entries a listing shows, newest first.
#[derive(Debug, Default)]
pub struct AuditFilter<'a> {
    pub actor: Option<&'a str>,
    /// An action, or a prefix ending in `.` (`workspace.`).
    pub action: Option<&'a str>,
    pub target: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    pub before_id: Option<i64>,
}

impl Store {
    pub async fn insert_audit(&self, r: &AuditRow) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, target, outcome, client, detail)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(r.at)
        .bind(&r.actor)
        .bind(&r.action)
        .bind(&r.target)
        .bind(&r.outcome)
        .bind(&r.client)
        .bind(&r.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_audit_before(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        Ok(sqlx::query("DELETE FROM audit_log WHERE at < ?")
            .bind(cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn list_audit(
        &self,
        f: AuditFilter<'_>,
        limit: i64,
    ) -> anyhow::Result<Vec<AuditRow>> {
        let prefix = f
            .action
            .filter(|a| a.ends_with('.'))
            .map(|a| format!("{a}%"));
        let exact = f.action.filter(|a| !a.ends_with('.'));
        Ok(sqlx::query_as(
            "SELECT id, at, actor, action, target, outcome, client, detail FROM audit_log
             WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2)
               AND (?3 IS NULL OR action LIKE ?3) AND (?4 IS NULL OR target = ?4)
               AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR id < ?6)
             ORDER BY id DESC LIMIT ?7",
        )
        .bind(f.actor)
        .bind(exact)
        .bind(prefix)
        .bind(f.target)
        .bind(f.since)
        .bind(f.before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
