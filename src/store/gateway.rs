//! The LLM gateway's tokens (one per workspace) and the usage it counted.

use chrono::Utc;
use serde::Serialize;
use sqlx::FromRow;

use super::Store;

#[derive(Debug, Clone, FromRow, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    pub workspace_id: String,
    pub owner: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

impl Store {
    /// The workspace's sealed token, if it has one.
    pub async fn gateway_token(&self, workspace_id: &str) -> anyhow::Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM gateway_tokens WHERE workspace_id = ?")
                .bind(workspace_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Records a new token; false if the workspace got one meanwhile.
    pub async fn insert_gateway_token(
        &self,
        workspace_id: &str,
        owner: &str,
        token_hash: &str,
        sealed: &str,
    ) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO gateway_tokens (workspace_id, owner, token_hash, sealed, created_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id) DO NOTHING",
        )
        .bind(workspace_id)
        .bind(owner)
        .bind(token_hash)
        .bind(sealed)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// `(workspace, owner)` of a token, by its hash; only while the workspace exists.
    pub async fn gateway_token_owner(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT g.workspace_id, g.owner FROM gateway_tokens g
             JOIN workspaces w ON w.id = g.workspace_id WHERE g.token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn add_llm_usage(
        &self,
        workspace_id: &str,
        owner: &str,
        input_tokens: i64,
        output_tokens: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO llm_usage (workspace_id, owner, requests, input_tokens, output_tokens)
             VALUES (?, ?, 1, ?, ?)
             ON CONFLICT (workspace_id) DO UPDATE SET requests = llm_usage.requests + 1,
               input_tokens = llm_usage.input_tokens + excluded.input_tokens,
               output_tokens = llm_usage.output_tokens + excluded.output_tokens",
        )
        .bind(workspace_id)
        .bind(owner)
        .bind(input_tokens)
        .bind(output_tokens)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Usage per workspace (of one owner's, with `Some`).
    pub async fn llm_usage(&self, owner: Option<&str>) -> anyhow::Result<Vec<UsageRow>> {
        Ok(sqlx::query_as(
            "SELECT workspace_id, owner, requests, input_tokens, output_tokens FROM llm_usage
             WHERE (? IS NULL OR owner = ?) ORDER BY workspace_id",
        )
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }
}
