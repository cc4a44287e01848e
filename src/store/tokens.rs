//! API tokens (hashes only) and login tokens voided by logout.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::Store;

#[derive(Debug, Clone, FromRow)]
pub struct ApiTokenRow {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub user_version: String,
    pub scope: TokenScope,
}

/// What a token may do: act as its user everywhere, or only as that user's workers (under `/v1`, on
/// the worker's own work, and `/mcp`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    sqlx::Type,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    User,
    Worker,
}

const COLUMNS: &str = "id, owner, name, created_at, expires_at, last_used_at, user_version, scope";

impl Store {
    pub async fn insert_api_token(&self, t: &ApiTokenRow, hash: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, owner, name, token_hash, created_at, expires_at, user_version, scope)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.owner)
        .bind(&t.name)
        .bind(hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(&t.user_version)
        .bind(t.scope)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired token with this hash; its use is recorded at most once a minute.
    pub async fn use_api_token(
        &self,
        hash: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<ApiTokenRow>> {
        let row: Option<ApiTokenRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE token_hash = ? AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(t) = &row {
            let stale = t
                .last_used_at
                .is_none_or(|at| now - at > chrono::Duration::seconds(60));
            if stale {
                sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(&t.id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(row)
    }

    /// The owner's tokens (everyone's with `None`), newest first.
    pub async fn list_api_tokens(&self, owner: Option<&str>) -> anyhow::Result<Vec<ApiTokenRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE (? IS NULL OR owner = ?) ORDER BY created_at DESC, id"
        ))
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_api_token(&self, id: &str) -> anyhow::Result<Option<ApiTokenRow>> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn delete_api_token(&self, id: &str) -> anyhow::Result<bool> {
        Ok(sqlx::query("DELETE FROM api_tokens WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    /// Voids a login token until it would have expired; also drops voided ones that have expired.
    pub async fn revoke_login(&self, jti: &str, expires_at: DateTime<Utc>) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM revoked_logins WHERE expires_at < ?")
            .bind(Utc::now())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO revoked_logins (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn login_revoked(&self, jti: &str) -> anyhow::Result<bool> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM revoked_logins WHERE jti = ?")
                .bind(jti)
                .fetch_one(&self.pool)
                .await?
                > 0,
        )
    }
}
