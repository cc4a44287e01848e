//! Queries of the `/v1` agent API other than tasks: workers, codebases, synced sessions and the monitor
//! log.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::Store;

#[derive(Debug, Clone, FromRow)]
pub struct WorkerRow {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub hostname: Option<String>,
    pub capabilities: String,
    pub codebases: String,
    pub registered_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow)]
pub struct CodebaseRow {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub path: String,
    pub description: String,
    pub agent_config: String,
    pub worker_id: Option<String>,
    pub workspace_id: Option<String>,
    pub mission_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_activity: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, FromRow)]
pub struct MonitorRow {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub agent_name: String,
    pub content: String,
    pub metadata: String,
    pub response_time: Option<f64>,
    pub tokens: Option<i64>,
    pub error: Option<String>,
}

/// One entry for the monitor log.
pub struct MonitorEntry<'a> {
    pub kind: &'a str,
    pub agent_name: &'a str,
    pub content: &'a str,
    pub metadata: serde_json::Value,
    pub response_time: Option<f64>,
    pub error: Option<&'a str>,
}

impl Store {
    // Workers.

    /// Inserts the worker, or updates its name, hostname, capabilities and codebases when its key is
    /// registered already (its token changes only with `new_token`); whether it was new.
    pub async fn upsert_worker(
        &self,
        w: &WorkerRow,
        token_hash: &str,
        new_token: bool,
    ) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO workers (id, name, hostname, capabilities, codebases, token_hash, registered_at, last_seen,
               owner)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&w.id)
        .bind(&w.name)
        .bind(&w.hostname)
        .bind(&w.capabilities)
        .bind(&w.codebases)
        .bind(token_hash)
        .bind(w.registered_at)
        .bind(w.last_seen)
        .bind(&w.owner)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            sqlx::query(
                "UPDATE workers SET name = ?, hostname = ?, capabilities = ?, codebases = ?, last_seen = ?
                 WHERE id = ?",
            )
            .bind(&w.name)
            .bind(&w.hostname)
            .bind(&w.capabilities)
            .bind(&w.codebases)
            .bind(w.last_seen)
            .bind(&w.id)
            .execute(&mut *tx)
            .await?;
            if new_token {
                sqlx::query("UPDATE workers SET token_hash = ? WHERE id = ?")
                    .bind(token_hash)
                    .bind(&w.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// `(worker id, owner)` of a worker token.
    pub async fn worker_by_token(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT id, owner FROM workers WHERE token_hash = ?")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn get_worker(&self, id: &str) -> anyhow::Result<Option<WorkerRow>> {
        Ok(sqlx::query_as(
            "SELECT id, owner, name, hostname, capabilities, codebases, registered_at, last_seen FROM workers WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The owner's workers (everyone's with `None`).
    pub async fn list_workers(&self, owner: Option<&str>) -> anyhow::Result<Vec<WorkerRow>> {
        Ok(sqlx::query_as(
            "SELECT id, owner, name, hostname, capabilities, codebases, registered_at, last_seen FROM workers
             WHERE (? IS NULL OR owner = ?) ORDER BY registered_at",
        )
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks the worker alive and extends the leases of the tasks it holds; false for an unknown worker.
    pub async fn heartbeat(&self, id: &str, lease_until: DateTime<Utc>) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("UPDATE workers SET last_seen = ? WHERE id = ?")
            .bind(Utc::now())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            sqlx::query(
                "UPDATE tasks SET lease_expires_at = ? WHERE worker_id = ? AND status = 'running'",
            )
            .bind(lease_until)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    pub async fn set_worker_codebases(&self, id: &str, codebases: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE workers SET codebases = ? WHERE id = ?")
            .bind(codebases)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the worker's row only; the tasks it holds keep their leases.
    pub async fn delete_worker_only(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM workers WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes the worker and puts the tasks it held back in the queue; returns those tasks' ids.
    pub async fn delete_worker(&self, id: &str) -> anyhow::Result<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM workers WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        let requeued: Vec<String> = sqlx::query_scalar(
            "UPDATE tasks SET status = 'pending', worker_id = NULL, lease_expires_at = NULL
             WHERE worker_id = ? AND status = 'running' RETURNING id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(requeued))
    }

    // Codebases.

    /// Inserts the codebase; false when one with the same path (and worker) exists already.
    pub async fn insert_codebase(&self, c: &CodebaseRow) -> anyhow::Result<bool> {
        let res = sqlx::query(
            "INSERT INTO codebases (id, name, path, description, agent_config, worker_id, workspace_id,
               mission_id, created_at, last_activity, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.path)
        .bind(&c.description)
        .bind(&c.agent_config)
        .bind(&c.worker_id)
        .bind(&c.workspace_id)
        .bind(&c.mission_id)
        .bind(c.created_at)
        .bind(c.last_activity)
        .bind(&c.owner)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_codebase(&self, id: &str) -> anyhow::Result<Option<CodebaseRow>> {
        Ok(sqlx::query_as("SELECT * FROM codebases WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn codebase_by_path(
        &self,
        path: &str,
        worker_id: Option<&str>,
    ) -> anyhow::Result<Option<CodebaseRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM codebases WHERE path = ? AND worker_id IS ?")
                .bind(path)
                .bind(worker_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every codebase (berth's own bookkeeping).
    pub async fn list_codebases(&self) -> anyhow::Result<Vec<CodebaseRow>> {
        self.codebases_of(None).await
    }

    /// The owner's codebases (everyone's with `None`).
    pub async fn codebases_of(&self, owner: Option<&str>) -> anyhow::Result<Vec<CodebaseRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM codebases WHERE (? IS NULL OR owner = ?) ORDER BY created_at",
        )
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Workers' codebases at this path (one per worker).
    pub async fn codebases_at_path(&self, path: &str) -> anyhow::Result<Vec<CodebaseRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM codebases WHERE path = ? AND worker_id IS NOT NULL ORDER BY created_at",
        )
        .bind(path)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The codebases a worker works on: those registered with its id.
    pub async fn codebases_of_worker(&self, worker_id: &str) -> anyhow::Result<Vec<CodebaseRow>> {
        Ok(
            sqlx::query_as("SELECT * FROM codebases WHERE worker_id = ? ORDER BY created_at")
                .bind(worker_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// What a registration may change: name, description and agent configuration (never the run
    /// state, which runs update on their own).
    pub async fn update_codebase_info(&self, c: &CodebaseRow) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE codebases SET name = ?, description = ?, agent_config = ? WHERE id = ?",
        )
        .bind(&c.name)
        .bind(&c.description)
        .bind(&c.agent_config)
        .bind(&c.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_codebase_workspace(&self, id: &str, workspace_id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE codebases SET workspace_id = ? WHERE id = ?")
            .bind(workspace_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the codebase's current mission (its agent session) and when it last worked.
    pub async fn set_codebase_mission(
        &self,
        id: &str,
        mission_id: &str,
        at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE codebases SET mission_id = ?, last_activity = ? WHERE id = ?")
            .bind(mission_id)
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes the codebase and cancels its queued tasks (running ones are the caller's to stop).
    pub async fn delete_codebase(&self, id: &str) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE tasks SET status = 'cancelled', completed_at = ?, error = 'codebase deleted'
             WHERE codebase_id = ? AND status = 'pending'",
        )
        .bind(Utc::now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM synced_sessions WHERE codebase_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM codebases WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    // Synced sessions.

    pub async fn upsert_synced_session(
        &self,
        codebase_id: &str,
        id: &str,
        worker_id: Option<&str>,
        data: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO synced_sessions (codebase_id, id, worker_id, data, synced_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (codebase_id, id) DO UPDATE SET worker_id = excluded.worker_id,
               data = excluded.data, synced_at = excluded.synced_at",
        )
        .bind(codebase_id)
        .bind(id)
        .bind(worker_id)
        .bind(data)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn synced_session(
        &self,
        codebase_id: &str,
        id: &str,
    ) -> anyhow::Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT data FROM synced_sessions WHERE codebase_id = ? AND id = ?")
                .bind(codebase_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn synced_sessions(&self, codebase_id: &str) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT data FROM synced_sessions WHERE codebase_id = ? ORDER BY synced_at DESC",
        )
        .bind(codebase_id)
        .fetch_all(&self.pool)
        .await?)
    }

    // Monitor.

    pub async fn log_monitor(
        &self,
        e: MonitorEntry<'_>,
        owner: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO monitor_messages (timestamp, type, agent_name, content, metadata, response_time, error,
               owner)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(Utc::now())
        .bind(e.kind)
        .bind(e.agent_name)
        .bind(e.content)
        .bind(e.metadata.to_string())
        .bind(e.response_time)
        .bind(e.error)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest monitor messages (of one owner's work, with `Some`), newest first.
    pub async fn monitor_messages(
        &self,
        kind: Option<&str>,
        owner: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<MonitorRow>> {
        Ok(sqlx::query_as(
            "SELECT id, timestamp, type, agent_name, content, metadata, response_time, tokens, error
             FROM monitor_messages WHERE (?1 IS NULL OR type = ?1) AND (?2 IS NULL OR owner = ?2)
             ORDER BY id DESC LIMIT ?3",
        )
        .bind(kind)
        .bind(owner)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// `(total, by type, average response time, tokens)` over the whole log.
    pub async fn monitor_totals(
        &self,
        owner: Option<&str>,
    ) -> anyhow::Result<(i64, Vec<(String, i64)>, Option<f64>, i64)> {
        const MINE: &str = "(?1 IS NULL OR owner = ?1)";
        let total: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM monitor_messages WHERE {MINE}"
        ))
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        let by_type: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT type, COUNT(*) FROM monitor_messages WHERE {MINE} GROUP BY type"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let (avg, tokens): (Option<f64>, Option<i64>) = sqlx::query_as(&format!(
            "SELECT AVG(response_time), SUM(tokens) FROM monitor_messages WHERE {MINE}"
        ))
        .bind(owner)
        .fetch_one(&self.pool)
        .await?;
        Ok((total, by_type, avg, tokens.unwrap_or(0)))
    }
}
