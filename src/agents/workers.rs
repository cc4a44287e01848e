//! Agent workers: machines that run tasks themselves. A worker belongs to the user who registered it.
//! Registration issues the worker's own API token (answered once, stored as a hash); heartbeats keep
//! the worker online and its task leases alive; unregistering puts the tasks it held back in the queue.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::codebases::check_text;
use super::{Agents, Caller};
use crate::error::{ApiError, ApiResult};
use crate::secrets;
use crate::store::agents::WorkerRow;

/// Prefix of worker tokens, so the auth layer knows where to look them up.
pub const TOKEN_PREFIX: &str = "bwt_";

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterWorker {
    pub name: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub codebases: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    pub worker_id: String,
    pub owner: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub hostname: Option<String>,
    pub codebases: Vec<String>,
    pub registered_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// `active` while heartbeats come within a lease, else `offline`.
    pub status: &'static str,
}

fn check_list(field: &str, items: &[String]) -> ApiResult<()> {
    if items.len() > 1000 {
        return Err(ApiError::invalid(format!("{field}: at most 1000 entries")));
    }
    for i in items {
        check_text(field, i, 256)?;
    }
    Ok(())
}

impl Agents {
    /// Registers a worker; the answer carries its token, the only time it is shown.
    pub async fn register_worker(&self, caller: &Caller, req: RegisterWorker) -> ApiResult<Value> {
        let who = caller.require_user()?;
        check_text("name", &req.name, 128)?;
        if let Some(h) = &req.hostname {
            check_text("hostname", h, 256)?;
        }
        check_list("capabilities", &req.capabilities)?;
        check_list("codebases", &req.codebases)?;
        let id = format!("wk_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        self.check_own_codebases(&id, &req.codebases).await?;
        let now = Utc::now();
        let row = WorkerRow {
            id,
            owner: who.name.clone(),
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            capabilities: json!(req.capabilities).to_string(),
            codebases: json!(req.codebases).to_string(),
            registered_at: now,
            last_seen: now,
        };
        let token = format!("{TOKEN_PREFIX}{}", secrets::random_hex(24));
        self.inner
            .store
            .insert_worker(&row, &secrets::sha256_hex(token.as_bytes()))
            .await?;
        self.monitor(
            "system",
            &row.name,
            &format!("worker {} registered", row.id),
            json!({ "worker_id": row.id, "hostname": row.hostname }),
        )
        .await;
        tracing::info!(worker.id = %row.id, "worker registered");
        Ok(
            json!({ "success": true, "worker_id": row.id, "token": token, "worker": self.worker_view(row) }),
        )
    }

    fn worker_view(&self, w: WorkerRow) -> WorkerView {
        let online = Utc::now() - w.last_seen
            < chrono::Duration::seconds(self.inner.config.task_lease_secs as i64);
        WorkerView {
            capabilities: serde_json::from_str(&w.capabilities).unwrap_or_default(),
            codebases: serde_json::from_str(&w.codebases).unwrap_or_default(),
            worker_id: w.id,
            owner: w.owner,
            name: w.name,
            hostname: w.hostname,
            registered_at: w.registered_at,
            last_seen: w.last_seen,
            status: if online { "active" } else { "offline" },
        }
    }

    /// The caller's workers (everyone's for an admin; a worker sees only itself).
    pub async fn list_workers(&self, caller: &Caller) -> ApiResult<Vec<WorkerView>> {
        Ok(self
            .inner
            .store
            .list_workers(caller.listing_owner())
            .await?
            .into_iter()
            .filter(|w| caller.worker().is_none_or(|me| me == w.id))
            .map(|w| self.worker_view(w))
            .collect())
    }

    /// A worker acts only for itself; users for their own workers (an admin for any). Another
    /// user's worker is 404, as if it did not exist.
    pub(super) async fn check_worker(&self, caller: &Caller, id: &str) -> ApiResult<WorkerRow> {
        if let Caller::Worker { id: me, .. } = caller {
            if me != id {
                return Err(ApiError::conflict(format!(
                    "this token belongs to worker {me}, not {id}"
                )));
            }
        }
        match self.inner.store.get_worker(id).await? {
            Some(w) if caller.may_act_on(&w.owner) => Ok(w),
            _ => Err(ApiError::not_found(format!(
                "Worker {id} not found; register again"
            ))),
        }
    }

    /// A worker may list only codebases registered with its own id: listing one cannot hand it
    /// another worker's, another user's or berth's own tasks.
    async fn check_own_codebases(&self, worker: &str, ids: &[String]) -> ApiResult<()> {
        let own = self.served_by(worker).await?;
        let foreign: Vec<&str> = ids
            .iter()
            .filter(|id| !own.contains(id))
            .map(String::as_str)
            .collect();
        if !foreign.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "worker {worker} may list only codebases registered with its id; not: {}",
                foreign.join(", ")
            )));
        }
        Ok(())
    }

    pub async fn heartbeat(
        &self,
        caller: &Caller,
        id: &str,
        codebases: Option<Vec<String>>,
    ) -> ApiResult<Value> {
        self.check_worker(caller, id).await?;
        if let Some(list) = &codebases {
            check_list("codebases", list)?;
            self.check_own_codebases(id, list).await?;
        }
        let store = &self.inner.store;
        if !store.heartbeat(id, self.lease()).await? {
            return Err(ApiError::not_found(format!(
                "Worker {id} not found; register again"
            )));
        }
        if let Some(list) = codebases {
            store
                .set_worker_codebases(id, &json!(list).to_string())
                .await?;
        }
        Ok(json!({ "success": true }))
    }

    pub async fn unregister_worker(&self, caller: &Caller, id: &str) -> ApiResult<Value> {
        self.check_worker(caller, id).await?;
        let requeued = self
            .inner
            .store
            .delete_worker(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Worker {id} not found")))?;
        self.monitor(
            "system",
            "",
            &format!(
                "worker {id} unregistered; {} tasks queued again",
                requeued.len()
            ),
            json!({ "worker_id": id, "requeued": requeued }),
        )
        .await;
        self.inner.wake.notify_one();
        Ok(
            json!({ "success": true, "message": format!("Worker {id} unregistered"), "requeued_tasks": requeued }),
        )
    }

    /// `(worker id, owner)` behind a worker token, if it is one.
    pub async fn worker_for_token(&self, token: &str) -> ApiResult<Option<(String, String)>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        Ok(self
            .inner
            .store
            .worker_by_token(&secrets::sha256_hex(token.as_bytes()))
            .await?)
    }
}
