//! E2B sandboxes: what the E2B-compatible API keeps beside each workspace it created.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::Store;

#[derive(Debug, Clone, FromRow)]
pub struct SandboxRow {
    pub workspace_id: String,
    pub owner: String,
    pub template_id: String,
    /// JSON object of strings.
    pub metadata: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub auto_pause: bool,
    pub token_sealed: Option<String>,
}

const COLUMNS: &str =
    "s.workspace_id, s.owner, s.template_id, s.metadata, s.started_at, s.expires_at, s.auto_pause, s.token_sealed";

impl Store {
    pub async fn insert_sandbox(&self, row: &SandboxRow) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO e2b_sandboxes (workspace_id, owner, template_id, metadata, started_at, expires_at, auto_pause, token_sealed)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.workspace_id)
        .bind(&row.owner)
        .bind(&row.template_id)
        .bind(&row.metadata)
        .bind(row.started_at)
        .bind(row.expires_at)
        .bind(row.auto_pause)
        .bind(&row.token_sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A sandbox whose workspace still exists.
    pub async fn sandbox(&self, workspace_id: &str) -> anyhow::Result<Option<SandboxRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM e2b_sandboxes s JOIN workspaces w ON w.id = s.workspace_id
             WHERE s.workspace_id = ?"
        ))
        .bind(workspace_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The sandboxes of `owner` (every one for `None`), newest first.
    pub async fn sandboxes(&self, owner: Option<&str>) -> anyhow::Result<Vec<SandboxRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM e2b_sandboxes s JOIN workspaces w ON w.id = s.workspace_id
             WHERE (? IS NULL OR s.owner = ?) ORDER BY s.started_at DESC"
        );
        Ok(sqlx::query_as(&sql)
            .bind(owner)
            .bind(owner)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Sandboxes whose timeout has passed.
    pub async fn expired_sandboxes(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<SandboxRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM e2b_sandboxes s JOIN workspaces w ON w.id = s.workspace_id
             WHERE s.expires_at <= ?"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn set_sandbox_expiry(
        &self,
        workspace_id: &str,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE e2b_sandboxes SET expires_at = ? WHERE workspace_id = ?")
            .bind(expires_at)
            .bind(workspace_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets sandboxes whose workspace is gone (deleted through either API).
    pub async fn delete_sandbox(&self, workspace_id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM e2b_sandboxes WHERE workspace_id = ?")
            .bind(workspace_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A snapshot: a sandbox's container committed as an image, and whose it is.
#[derive(Debug, Clone, FromRow)]
pub struct SnapshotRow {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub sandbox_id: String,
    pub image_id: String,
    /// A fork's snapshot is its own, not listed.
    pub listed: bool,
    pub created_at: DateTime<Utc>,
}

impl Store {
    pub async fn insert_snapshot(&self, row: &SnapshotRow) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO e2b_snapshots (id, owner, name, sandbox_id, image_id, listed, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.id)
        .bind(&row.owner)
        .bind(&row.name)
        .bind(&row.sandbox_id)
        .bind(&row.image_id)
        .bind(row.listed)
        .bind(row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A snapshot by its id, or by its name among `owner`'s.
    pub async fn snapshot(
        &self,
        owner: &str,
        id_or_name: &str,
    ) -> anyhow::Result<Option<SnapshotRow>> {
        Ok(sqlx::query_as(
            "SELECT id, owner, name, sandbox_id, image_id, listed, created_at FROM e2b_snapshots
             WHERE id = ? OR (owner = ? AND name = ?) ORDER BY created_at DESC LIMIT 1",
        )
        .bind(id_or_name)
        .bind(owner)
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The listed snapshots of `owner` (every one for `None`), newest first.
    pub async fn snapshots(&self, owner: Option<&str>) -> anyhow::Result<Vec<SnapshotRow>> {
        Ok(sqlx::query_as(
            "SELECT id, owner, name, sandbox_id, image_id, listed, created_at FROM e2b_snapshots
             WHERE listed = ? AND (? IS NULL OR owner = ?) ORDER BY created_at DESC",
        )
        .bind(true)
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_snapshot(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM e2b_snapshots WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
