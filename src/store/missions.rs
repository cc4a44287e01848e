//! Mission queries: missions, their stored events, their message queue, each user's control session, and
//! provider keys. Event numbering and queue claims are single statements, so concurrent writers never
//! hand out the same sequence number or message twice.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::Store;
use crate::missions::MissionStatus;

#[derive(Debug, Clone, FromRow)]
pub struct MissionRow {
    pub id: String,
    pub owner: String,
    pub title: Option<String>,
    pub status: MissionStatus,
    pub workspace_id: String,
    pub agent: Option<String>,
    pub model_override: Option<String>,
    pub model_effort: Option<String>,
    pub opencode_session_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub mission_id: String,
    pub seq: i64,
    pub event_type: String,
    pub data: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow)]
pub struct MessageRow {
    pub id: String,
    pub mission_id: String,
    pub content: String,
    pub agent: Option<String>,
    pub status: String,
    /// When its prompt reached OpenCode (a resumed message whose prompt did is continued, not resent).
    pub delivered_at: Option<DateTime<Utc>>,
}

impl Store {
    pub async fn insert_mission(&self, m: &MissionRow) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO missions (id, owner, title, status, workspace_id, agent, model_override, model_effort,
               opencode_session_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.id)
        .bind(&m.owner)
        .bind(&m.title)
        .bind(m.status)
        .bind(&m.workspace_id)
        .bind(&m.agent)
        .bind(&m.model_override)
        .bind(&m.model_effort)
        .bind(&m.opencode_session_id)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get_mission(&self, id: &str) -> anyhow::Result<Option<MissionRow>> {
        Ok(sqlx::query_as("SELECT * FROM missions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The owner's missions; with `None`, every user's (not the codebases' runs, which `/v1` shows).
    pub async fn list_missions(&self, owner: Option<&str>) -> anyhow::Result<Vec<MissionRow>> {
        Ok(sqlx::query_as(
            "SELECT * FROM missions WHERE (? IS NULL AND owner NOT LIKE 'codebase:%') OR owner = ?
             ORDER BY created_at, id",
        )
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn missions_with_status(
        &self,
        status: MissionStatus,
    ) -> anyhow::Result<Vec<MissionRow>> {
        Ok(sqlx::query_as("SELECT * FROM missions WHERE status = ?")
            .bind(status)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Moves a mission to `to` if its status is one of `from` (all statuses when `from` is empty).
    pub async fn transition_mission(
        &self,
        id: &str,
        from: &[MissionStatus],
        to: MissionStatus,
    ) -> anyhow::Result<bool> {
        let cond = if from.is_empty() {
            String::new()
        } else {
            format!(" AND status IN ({})", vec!["?"; from.len()].join(", "))
        };
        let sql = format!("UPDATE missions SET status = ?, updated_at = ? WHERE id = ?{cond}");
        let mut q = sqlx::query(&sql).bind(to).bind(Utc::now()).bind(id);
        for s in from {
            q = q.bind(s);
        }
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    pub async fn set_mission_session(&self, id: &str, session: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE missions SET opencode_session_id = ?, updated_at = ? WHERE id = ?")
            .bind(session)
            .bind(Utc::now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every event of an owner (a deleted codebase's task events have no mission to go with).
    pub async fn delete_events_of(&self, owner: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM mission_events WHERE owner = ?")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_mission(&self, id: &str) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        for sql in [
            "DELETE FROM mission_events WHERE mission_id = ?",
            "DELETE FROM mission_messages WHERE mission_id = ?",
            "UPDATE control_sessions SET mission_id = NULL WHERE mission_id = ?",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let n = sqlx::query("DELETE FROM missions WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Stores an event with the mission's next sequence number; returns it with its global id.
    pub async fn append_event(
        &self,
        mission_id: &str,
        owner: &str,
        event_type: &str,
        data: &str,
    ) -> anyhow::Result<EventRow> {
        Ok(sqlx::query_as(
            "INSERT INTO mission_events (mission_id, owner, seq, event_type, data, created_at)
             SELECT ?, ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM mission_events WHERE mission_id = ?
             RETURNING id, mission_id, seq, event_type, data, created_at",
        )
        .bind(mission_id)
        .bind(owner)
        .bind(event_type)
        .bind(data)
        .bind(Utc::now())
        .bind(mission_id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn mission_events(
        &self,
        mission_id: &str,
        types: &[String],
        limit: i64,
        offset: i64,
    ) -> anyhow::Result<Vec<EventRow>> {
        let cond = if types.is_empty() {
            String::new()
        } else {
            format!(" AND event_type IN ({})", vec!["?"; types.len()].join(", "))
        };
        let sql = format!(
            "SELECT id, mission_id, seq, event_type, data, created_at FROM mission_events
             WHERE mission_id = ?{cond} ORDER BY seq LIMIT ? OFFSET ?"
        );
        let mut q = sqlx::query_as(&sql).bind(mission_id);
        for t in types {
            q = q.bind(t);
        }
        Ok(q.bind(limit).bind(offset).fetch_all(&self.pool).await?)
    }

    /// How many of a mission's events are of one of `types`.
    pub async fn count_mission_events(
        &self,
        mission_id: &str,
        types: &[&str],
    ) -> anyhow::Result<i64> {
        let marks = vec!["?"; types.len()].join(", ");
        let sql = format!(
            "SELECT COUNT(*) FROM mission_events WHERE mission_id = ? AND event_type IN ({marks})"
        );
        let mut q = sqlx::query_scalar(&sql).bind(mission_id);
        for t in types {
            q = q.bind(*t);
        }
        Ok(q.fetch_one(&self.pool).await?)
    }

    /// A user's events after `after` (a global id), oldest first.
    pub async fn events_after(
        &self,
        owner: &str,
        after: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<EventRow>> {
        Ok(sqlx::query_as(
            "SELECT id, mission_id, seq, event_type, data, created_at FROM mission_events
             WHERE owner = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(owner)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn last_event_id(&self) -> anyhow::Result<i64> {
        let (n,): (Option<i64>,) = sqlx::query_as("SELECT MAX(id) FROM mission_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.unwrap_or(0))
    }

    pub async fn queue_message(
        &self,
        id: &str,
        mission_id: &str,
        content: &str,
        agent: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO mission_messages (id, mission_id, position, content, agent, status, created_at)
             SELECT ?, ?, COALESCE(MAX(position), 0) + 1, ?, ?, 'queued', ? FROM mission_messages WHERE mission_id = ?",
        )
        .bind(id)
        .bind(mission_id)
        .bind(content)
        .bind(agent)
        .bind(Utc::now())
        .bind(mission_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Messages of the mission that are queued or running, other than `except`.
    pub async fn pending_messages(&self, mission_id: &str, except: &str) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM mission_messages WHERE mission_id = ? AND id != ? AND status IN ('queued', 'running')",
        )
        .bind(mission_id)
        .bind(except)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// How many of the mission's messages wait their turn.
    pub async fn queued_count(&self, mission_id: &str) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM mission_messages WHERE mission_id = ? AND status = 'queued'",
        )
        .bind(mission_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Messages waiting their turn in the owner's missions, oldest first.
    pub async fn queued_messages_of(&self, owner: &str) -> anyhow::Result<Vec<MessageRow>> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.mission_id, m.content, m.agent, m.status, m.delivered_at FROM mission_messages m
             JOIN missions s ON s.id = m.mission_id
             WHERE s.owner = ? AND m.status = 'queued' ORDER BY m.created_at, m.position",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Drops a queued message of the owner's (all of them with `None`); how many were dropped.
    pub async fn drop_queued(&self, owner: &str, id: Option<&str>) -> anyhow::Result<u64> {
        Ok(sqlx::query(
            "UPDATE mission_messages SET status = 'cancelled'
             WHERE status = 'queued' AND (? IS NULL OR id = ?)
               AND mission_id IN (SELECT id FROM missions WHERE owner = ?)",
        )
        .bind(id)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Claims the mission's oldest queued message, if no other is running.
    pub async fn claim_message(&self, mission_id: &str) -> anyhow::Result<Option<MessageRow>> {
        Ok(sqlx::query_as(
            "UPDATE mission_messages SET status = 'running'
             WHERE id = (SELECT id FROM mission_messages WHERE mission_id = ? AND status = 'queued'
                         ORDER BY position LIMIT 1)
               AND NOT EXISTS (SELECT 1 FROM mission_messages WHERE mission_id = ? AND status = 'running')
             RETURNING id, mission_id, content, agent, status, delivered_at",
        )
        .bind(mission_id)
        .bind(mission_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The messages of the mission in `status` (the running one after a crash), in order.
    pub async fn messages_in(
        &self,
        mission_id: &str,
        status: &str,
    ) -> anyhow::Result<Vec<MessageRow>> {
        Ok(sqlx::query_as(
            "SELECT id, mission_id, content, agent, status, delivered_at FROM mission_messages
             WHERE mission_id = ? AND status = ? ORDER BY position",
        )
        .bind(mission_id)
        .bind(status)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn mark_delivered(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE mission_messages SET delivered_at = ? WHERE id = ?")
            .bind(Utc::now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn finish_message(&self, id: &str, status: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE mission_messages SET status = ? WHERE id = ?")
            .bind(status)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves every message of the mission in one of `from` to `to`; returns how many moved.
    pub async fn move_messages(
        &self,
        mission_id: &str,
        from: &str,
        to: &str,
    ) -> anyhow::Result<u64> {
        Ok(sqlx::query(
            "UPDATE mission_messages SET status = ? WHERE mission_id = ? AND status = ?",
        )
        .bind(to)
        .bind(mission_id)
        .bind(from)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn load_mission(&self, owner: &str, mission_id: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO control_sessions (owner, mission_id) VALUES (?, ?)
             ON CONFLICT (owner) DO UPDATE SET mission_id = excluded.mission_id",
        )
        .bind(owner)
        .bind(mission_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn loaded_mission(&self, owner: &str) -> anyhow::Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT mission_id FROM control_sessions WHERE owner = ?")
                .bind(owner)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|r| r.0))
    }

    pub async fn set_provider_key(&self, provider: &str, sealed: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO provider_keys (provider_id, api_key, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (provider_id) DO UPDATE SET api_key = excluded.api_key, updated_at = excluded.updated_at",
        )
        .bind(provider)
        .bind(sealed)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_provider_key(&self, provider: &str) -> anyhow::Result<bool> {
        Ok(
            sqlx::query("DELETE FROM provider_keys WHERE provider_id = ?")
                .bind(provider)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// `(provider id, sealed key)` pairs.
    pub async fn provider_keys(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT provider_id, api_key FROM provider_keys ORDER BY provider_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
