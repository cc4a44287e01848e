//! The agent server berth last started in each workspace: where it listens and its password (sealed),
//! so a restarted berth reattaches to a server that kept running instead of killing its turn.

use chrono::Utc;

use super::Store;

pub struct AgentServerRow {
    pub url: String,
    /// Sealed with the data dir's key.
    pub password: String,
    pub config_hash: String,
}

impl Store {
    pub async fn save_agent_server(
        &self,
        workspace_id: &str,
        row: &AgentServerRow,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO agent_servers (workspace_id, url, password, config_hash, started_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (workspace_id) DO UPDATE SET url = excluded.url, password = excluded.password,
               config_hash = excluded.config_hash, started_at = excluded.started_at",
        )
        .bind(workspace_id)
        .bind(&row.url)
        .bind(&row.password)
        .bind(&row.config_hash)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn agent_server(&self, workspace_id: &str) -> anyhow::Result<Option<AgentServerRow>> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT url, password, config_hash FROM agent_servers WHERE workspace_id = ?",
        )
        .bind(workspace_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(url, password, config_hash)| AgentServerRow {
            url,
            password,
            config_hash,
        }))
    }

    pub async fn forget_agent_server(&self, workspace_id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM agent_servers WHERE workspace_id = ?")
            .bind(workspace_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
