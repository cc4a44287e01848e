//! Task queries: the queue, claims, reports and output. A claim, a finish and a lease expiry are each
//! one conditional statement, so two workers never hold the same task and a late worker cannot
//! overwrite what another did.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::Store;
use crate::agents::TaskStatus;

/// The pseudo worker id berth's own runner claims tasks under.
pub const LOCAL_WORKER: &str = "berth";

#[derive(Debug, Clone, FromRow)]
pub struct TaskRow {
    pub id: String,
    /// The user whose codebase it is for.
    pub owner: String,
    pub codebase_id: String,
    pub title: String,
    pub prompt: String,
    pub agent_type: String,
    pub model: Option<String>,
    pub priority: i64,
    pub metadata: String,
    pub status: TaskStatus,
    pub worker_id: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub session_id: Option<String>,
    pub mission_id: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, FromRow)]
pub struct OutputRow {
    pub seq: i64,
    pub worker_id: Option<String>,
    pub output: String,
    pub created_at: DateTime<Utc>,
}

/// How a holder ends a task.
#[derive(Debug)]
pub struct Report<'a> {
    pub status: TaskStatus,
    pub result: Option<&'a str>,
    pub error: Option<&'a str>,
    pub session_id: Option<&'a str>,
    /// The attempt the report is about, when the holder says.
    pub attempt: Option<i64>,
}

/// Which tasks a listing shows.
#[derive(Debug, Default, Clone, Copy)]
pub struct TaskFilter<'a> {
    pub codebase_id: Option<&'a str>,
    pub status: Option<TaskStatus>,
    pub owner: Option<&'a str>,
    /// Only tasks this worker holds or whose codebase is its own.
    pub worker: Option<&'a str>,
}

/// What a lease sweep did.
#[derive(Debug, Default)]
pub struct Expired {
    pub requeued: Vec<TaskRow>,
    pub failed: Vec<TaskRow>,
}

const TASK_COLUMNS: &str = "id, owner, codebase_id, title, prompt, agent_type, model, priority, metadata, status,
    worker_id, lease_expires_at, attempts, max_attempts, session_id, mission_id, result, error, created_at,
    started_at, completed_at";

impl Store {
    pub async fn insert_task(&self, t: &TaskRow) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&t.id)
        .bind(&t.owner)
        .bind(&t.codebase_id)
        .bind(&t.title)
        .bind(&t.prompt)
        .bind(&t.agent_type)
        .bind(&t.model)
        .bind(t.priority)
        .bind(&t.metadata)
        .bind(t.status)
        .bind(&t.worker_id)
        .bind(t.lease_expires_at)
        .bind(t.attempts)
        .bind(t.max_attempts)
        .bind(&t.session_id)
        .bind(&t.mission_id)
        .bind(&t.result)
        .bind(&t.error)
        .bind(t.created_at)
        .bind(t.started_at)
        .bind(t.completed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Extends the lease of a running task its holder reported on; false if it does not hold it.
    pub async fn renew_lease(
        &self,
        id: &str,
        worker_id: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND worker_id = ? AND status = 'running'",
        )
        .bind(until)
        .bind(id)
        .bind(worker_id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// How many tasks (of one owner's, with `Some`) are in each status.
    pub async fn task_counts(&self, owner: Option<&str>) -> anyhow::Result<Vec<(TaskStatus, i64)>> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM tasks WHERE (? IS NULL OR owner = ?) GROUP BY status",
        )
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_task(&self, id: &str) -> anyhow::Result<Option<TaskRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Tasks in queue order (priority, then oldest first), optionally of one owner, one codebase,
    /// one status, and only of codebases `worker` works on.
    pub async fn list_tasks(
        &self,
        filter: TaskFilter<'_>,
        limit: i64,
    ) -> anyhow::Result<Vec<TaskRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE (?1 IS NULL OR codebase_id = ?1) AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR owner = ?3)
               AND (?4 IS NULL OR worker_id = ?4
                    OR codebase_id IN (SELECT id FROM codebases WHERE worker_id = ?4))
             ORDER BY priority DESC, created_at ASC LIMIT ?5"
        ))
        .bind(filter.codebase_id)
        .bind(filter.status)
        .bind(filter.owner)
        .bind(filter.worker)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Atomically takes the next pending task of one of `codebases`, skipping `busy` ones, for
    /// `worker_id` until `lease_until`; only the task `only` when given (a worker's `PUT status
    /// running`). One statement: SQLite runs it under its write lock, so two claimers never get the
    /// same task.
    pub async fn claim_task(
        &self,
        worker_id: &str,
        codebases: &[String],
        busy: &[String],
        only: Option<&str>,
        lease_until: DateTime<Utc>,
    ) -> anyhow::Result<Option<TaskRow>> {
        // The id lists go in as JSON arrays, read back with `json_each`.
        let codebases = serde_json::to_string(codebases)?;
        let busy = serde_json::to_string(busy)?;
        Ok(sqlx::query_as(&format!(
            "UPDATE tasks SET status = 'running', worker_id = ?1, lease_expires_at = ?2,
               attempts = attempts + 1, started_at = COALESCE(started_at, ?3), error = NULL
             WHERE id = (SELECT id FROM tasks WHERE status = 'pending'
                           AND codebase_id IN (SELECT value FROM json_each(?4))
                           AND codebase_id NOT IN (SELECT value FROM json_each(?5))
                           AND (?6 IS NULL OR id = ?6)
                         ORDER BY priority DESC, created_at ASC LIMIT 1)
               AND status = 'pending'
             RETURNING {TASK_COLUMNS}"
        ))
        .bind(worker_id)
        .bind(lease_until)
        .bind(Utc::now())
        .bind(&codebases)
        .bind(&busy)
        .bind(only)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The holder gives a running task back to the queue; `refund` when it never started the task, so
    /// the hand-out does not count as an attempt.
    pub async fn release_task(
        &self,
        id: &str,
        worker_id: &str,
        refund: bool,
    ) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "UPDATE tasks SET status = 'pending', worker_id = NULL, lease_expires_at = NULL,
               attempts = attempts - ?
             WHERE id = ? AND worker_id = ? AND status = 'running'",
        )
        .bind(i64::from(refund))
        .bind(id)
        .bind(worker_id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    /// Records the session of a running task held by `worker_id`.
    pub async fn set_task_session(
        &self,
        id: &str,
        worker_id: &str,
        session_id: Option<&str>,
        mission_id: Option<&str>,
    ) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "UPDATE tasks SET session_id = COALESCE(?, session_id), mission_id = COALESCE(?, mission_id)
             WHERE id = ? AND worker_id = ? AND status = 'running'",
        )
        .bind(session_id)
        .bind(mission_id)
        .bind(id)
        .bind(worker_id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    /// Ends a running task held by `worker_id`; false if it is not (any longer) that worker's.
    pub async fn finish_task(
        &self,
        id: &str,
        worker_id: &str,
        status: TaskStatus,
        result: Option<&str>,
        error: Option<&str>,
    ) -> anyhow::Result<bool> {
        let report = Report {
            status,
            result,
            error,
            session_id: None,
            attempt: None,
        };
        self.finish_task_attempt(id, worker_id, report).await
    }

    /// As `finish_task`, and when the report names an attempt only if the task is still on it (a
    /// worker whose lease lapsed and who took the task again cannot finish it with a stale report).
    /// A session in the report is recorded in the same statement.
    pub async fn finish_task_attempt(
        &self,
        id: &str,
        worker_id: &str,
        r: Report<'_>,
    ) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "UPDATE tasks SET status = ?, result = ?, error = ?, completed_at = ?, lease_expires_at = NULL,
               session_id = COALESCE(?, session_id)
             WHERE id = ? AND worker_id = ? AND status = 'running' AND (? IS NULL OR attempts = ?)",
        )
        .bind(r.status)
        .bind(r.result)
        .bind(r.error)
        .bind(Utc::now())
        .bind(r.session_id)
        .bind(id)
        .bind(worker_id)
        .bind(r.attempt)
        .bind(r.attempt)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }

    /// Cancels a pending or running task in one statement; the task (its holder and mission kept), or
    /// `None` when it had already ended.
    pub async fn cancel_task(&self, id: &str) -> anyhow::Result<Option<TaskRow>> {
        Ok(sqlx::query_as(&format!(
            "UPDATE tasks SET status = 'cancelled', completed_at = ?, lease_expires_at = NULL
             WHERE id = ? AND status IN ('pending', 'running')
             RETURNING {TASK_COLUMNS}"
        ))
        .bind(Utc::now())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Tasks whose holder's lease lapsed: back to the queue, or failed once out of attempts.
    pub async fn expire_leases(&self, now: DateTime<Utc>) -> anyhow::Result<Expired> {
        let mut tx = self.pool.begin().await?;
        let failed = sqlx::query_as(&format!(
            "UPDATE tasks SET status = 'failed', completed_at = ?1, lease_expires_at = NULL,
               error = 'its worker stopped heartbeating; gave up after ' || attempts || ' attempts'
             WHERE status = 'running' AND lease_expires_at < ?1 AND attempts >= max_attempts
             RETURNING {TASK_COLUMNS}"
        ))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let requeued = sqlx::query_as(&format!(
            "UPDATE tasks SET status = 'pending', lease_expires_at = NULL,
               error = 'its worker stopped heartbeating; requeued', worker_id = NULL
             WHERE status = 'running' AND lease_expires_at < ?1
             RETURNING {TASK_COLUMNS}"
        ))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Expired { requeued, failed })
    }

    /// At start-up: berth's own running tasks died with the last process; they go back to the queue.
    pub async fn requeue_local_tasks(&self) -> anyhow::Result<u64> {
        Ok(sqlx::query(
            "UPDATE tasks SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
               completed_at = CASE WHEN attempts >= max_attempts THEN ? ELSE completed_at END,
               error = CASE WHEN attempts >= max_attempts
                 THEN 'berth restarted while the task ran; gave up after ' || attempts || ' attempts'
                 ELSE 'berth restarted while the task ran; requeued' END,
               worker_id = NULL, lease_expires_at = NULL
             WHERE status = 'running' AND worker_id = ?",
        )
        .bind(Utc::now())
        .bind(LOCAL_WORKER)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Appends output to a running task held by `worker_id`; its sequence number, or `None` if the task
    /// is not running for that worker.
    pub async fn append_output(
        &self,
        task_id: &str,
        worker_id: &str,
        attempt: Option<i64>,
        output: &str,
    ) -> anyhow::Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO task_output (task_id, seq, worker_id, output, created_at)
             SELECT ?1, COALESCE((SELECT MAX(seq) FROM task_output WHERE task_id = ?1), 0) + 1, ?2, ?3, ?4
             WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ?1 AND worker_id = ?2 AND status = 'running'
                           AND (?5 IS NULL OR attempts = ?5))
             RETURNING seq",
        )
        .bind(task_id)
        .bind(worker_id)
        .bind(output)
        .bind(Utc::now())
        .bind(attempt)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn task_output(&self, task_id: &str, since: i64) -> anyhow::Result<Vec<OutputRow>> {
        Ok(sqlx::query_as(
            "SELECT seq, worker_id, output, created_at FROM task_output WHERE task_id = ? AND seq > ?
             ORDER BY seq LIMIT 10000",
        )
        .bind(task_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_task(id: &str, attempts: i64) -> TaskRow {
        let now = Utc::now();
        TaskRow {
            id: id.into(),
            owner: "admin".into(),
            codebase_id: "cb".into(),
            title: "t".into(),
            prompt: "p".into(),
            agent_type: "build".into(),
            model: None,
            priority: 0,
            metadata: "{}".into(),
            status: TaskStatus::Running,
            worker_id: Some(LOCAL_WORKER.into()),
            lease_expires_at: None,
            attempts,
            max_attempts: 2,
            session_id: None,
            mission_id: None,
            result: None,
            error: None,
            created_at: now,
            started_at: Some(now),
            completed_at: None,
        }
    }

    #[tokio::test]
    async fn a_local_task_out_of_attempts_at_restart_fails_with_its_completion_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("berth.db")).await.unwrap();
        store.insert_task(&running_task("again", 1)).await.unwrap();
        store.insert_task(&running_task("done", 2)).await.unwrap();
        assert_eq!(store.requeue_local_tasks().await.unwrap(), 2);
        let again = store.get_task("again").await.unwrap().unwrap();
        assert_eq!(again.status, TaskStatus::Pending);
        assert!(again.completed_at.is_none());
        let done = store.get_task("done").await.unwrap().unwrap();
        assert_eq!(done.status, TaskStatus::Failed);
        assert!(done.completed_at.is_some(), "{done:?}");
        assert!(done.error.unwrap().contains("gave up after 2 attempts"));
    }
}
