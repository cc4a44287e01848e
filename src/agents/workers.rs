//! Agent workers: machines that run tasks themselves. A worker belongs to the user who registered it.
//! Registration issues the worker's own API token (answered once, stored as a hash); heartbeats keep
//! the worker online and its task leases alive; unregistering puts the tasks it held back in the queue.

use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
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
    /// The worker's own id (letters, digits, `.`, `_`, `-`; at most 128), unique among the owner's
    /// workers: registering it again is the same worker. Absent: berth picks one.
    #[serde(default)]
    pub worker_id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    /// Codebases it serves; ids that name no codebase (CodeTether's `global`) are ignored.
    #[serde(default)]
    pub codebases: Vec<String>,
}

/// A worker with whether it is online now: its push channel open, or a heartbeat within a lease.
#[derive(Debug, Clone)]
pub struct Worker {
    pub row: WorkerRow,
    pub online: bool,
}

/// A registration's outcome: the worker, and its token when one was issued (shown once).
#[derive(Debug)]
pub struct Registered {
    pub worker: Worker,
    pub token: Option<String>,
}

/// A worker's key in the store: its id in its owner's namespace (user names hold no colon).
pub fn worker_key(owner: &str, id: &str) -> String {
    format!("{owner}:{id}")
}

/// The id a worker key shows to clients.
pub fn shown(key: &str) -> &str {
    key.split_once(':').map_or(key, |(_, id)| id)
}

/// A client-chosen worker id.
pub fn check_worker_id(id: &str) -> ApiResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(ApiError::invalid(format!(
            "worker_id {id:?} must be 1 to 128 letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(())
}

pub(super) fn check_list(field: &str, items: &[String]) -> ApiResult<()> {
    if items.len() > 1000 {
        return Err(ApiError::invalid(format!("{field}: at most 1000 entries")));
    }
    for i in items {
        check_text(field, i, 256)?;
    }
    Ok(())
}

impl RegisterWorker {
    /// The fields berth takes from a registration, whoever sends it.
    pub(super) fn check(&self) -> ApiResult<()> {
        check_text("name", &self.name, 128)?;
        if let Some(h) = &self.hostname {
            check_text("hostname", h, 256)?;
        }
        check_list("capabilities", &self.capabilities)?;
        check_list("codebases", &self.codebases)?;
        if let Some(id) = &self.worker_id {
            check_worker_id(id)?;
        }
        Ok(())
    }
}

impl Agents {
    /// Registers a worker, or updates it when its id is registered already. A user's token gets the
    /// worker's own token in the answer (a new one each time); a worker speaking for itself does not.
    pub async fn register_worker(
        &self,
        caller: &Caller,
        req: RegisterWorker,
    ) -> ApiResult<Registered> {
        req.check()?;
        let (key, owner, issue) = match caller {
            Caller::Worker { id, owner } => {
                if let Some(named) = &req.worker_id {
                    if &worker_key(owner, named) != id {
                        return Err(ApiError::Forbidden(format!(
                            "this token belongs to worker {}, not {named}",
                            shown(id)
                        )));
                    }
                }
                (id.clone(), owner.clone(), false)
            }
            Caller::User(p) => {
                let id = req.worker_id.clone().unwrap_or_else(|| {
                    format!("wk_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
                });
                (worker_key(&p.name, &id), p.name.clone(), true)
            }
        };
        let codebases = self.own_codebases(&key, &req.codebases).await?;
        let now = Utc::now();
        let row = WorkerRow {
            id: key.clone(),
            owner,
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            capabilities: json!(req.capabilities).to_string(),
            codebases: json!(codebases).to_string(),
            registered_at: now,
            last_seen: now,
        };
        let token = format!("{TOKEN_PREFIX}{}", secrets::random_hex(24));
        // A worker registering itself keeps the token it has; a new row gets one nobody holds.
        let hash = secrets::sha256_hex(token.as_bytes());
        let new = self.inner.store.upsert_worker(&row, &hash, issue).await?;
        if new {
            self.monitor(
                "system",
                &row.name,
                &format!("worker {} registered", shown(&key)),
                json!({ "owner": row.owner, "worker_id": shown(&key), "hostname": row.hostname }),
            )
            .await;
            tracing::info!(worker.id = %key, "worker registered");
        }
        let row = self
            .inner
            .store
            .get_worker(&key)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Worker {} not found", shown(&key))))?;
        Ok(Registered {
            worker: self.worker_state(row),
            token: issue.then_some(token),
        })
    }

    pub(super) fn worker_state(&self, row: WorkerRow) -> Worker {
        let online = self.inner.links.is_live(&row.id)
            || Utc::now() - row.last_seen
                < chrono::Duration::seconds(self.inner.config.task_lease_secs as i64);
        Worker { row, online }
    }

    /// The caller's workers (everyone's for an admin; a worker sees only itself).
    pub async fn list_workers(&self, caller: &Caller) -> ApiResult<Vec<Worker>> {
        Ok(self
            .inner
            .store
            .list_workers(caller.listing_owner())
            .await?
            .into_iter()
            .filter(|w| caller.worker().is_none_or(|me| me == w.id))
            .map(|w| self.worker_state(w))
            .collect())
    }

    /// A worker acts only for itself; users (admins too) for their own workers: worker ids are per
    /// user, so an id names the caller's worker. Another user's worker is 404, as if it did not exist.
    pub async fn check_worker(&self, caller: &Caller, id: &str) -> ApiResult<WorkerRow> {
        let key = worker_key(caller.owner(), id);
        if let Caller::Worker { id: me, .. } = caller {
            if *me != key {
                return Err(ApiError::conflict(format!(
                    "this token belongs to worker {}, not {id}",
                    shown(me)
                )));
            }
        }
        match self.inner.store.get_worker(&key).await? {
            Some(w) if caller.may_act_on(&w.owner) => Ok(w),
            _ => Err(ApiError::not_found(format!(
                "Worker {id} not found; register again"
            ))),
        }
    }

    /// The codebases of a worker's list that are its own. Listing one cannot hand it another worker's,
    /// another user's or berth's own tasks: such ids are refused (403); ids that name no codebase at
    /// all (CodeTether's `global`, or one deleted meanwhile) are dropped.
    async fn own_codebases(&self, worker: &str, ids: &[String]) -> ApiResult<Vec<String>> {
        let own = self.served_by(worker).await?;
        let mut keep = Vec::new();
        let mut foreign = Vec::new();
        for id in ids {
            if own.contains(id) {
                keep.push(id.clone());
            } else if self.inner.store.get_codebase(id).await?.is_some() {
                foreign.push(id.as_str());
            }
        }
        if !foreign.is_empty() {
            return Err(ApiError::Forbidden(format!(
                "worker {} may list only codebases registered with its id; not: {}",
                shown(worker),
                foreign.join(", ")
            )));
        }
        Ok(keep)
    }

    /// Keeps the worker online and the leases of the tasks it holds alive; with a list, sets the
    /// codebases it serves now.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        id: &str,
        codebases: Option<Vec<String>>,
    ) -> ApiResult<()> {
        let w = self.check_worker(caller, id).await?;
        let store = &self.inner.store;
        if let Some(list) = &codebases {
            self.set_worker_codebases(&w.id, list).await?;
        }
        if !store.heartbeat(&w.id, self.lease()).await? {
            return Err(ApiError::not_found(format!(
                "Worker {id} not found; register again"
            )));
        }
        Ok(())
    }

    /// Records the codebases a worker says it serves (its own only; see `own_codebases`).
    pub async fn set_worker_codebases(&self, key: &str, list: &[String]) -> ApiResult<Vec<String>> {
        check_list("codebases", list)?;
        let own = self.own_codebases(key, list).await?;
        self.inner
            .store
            .set_worker_codebases(key, &json!(own).to_string())
            .await?;
        Ok(own)
    }

    /// Removes the worker; the tasks it held go back to the queue. A worker unregistering itself
    /// while a channel of it is open (another process of the same worker, or its own still closing)
    /// leaves its tasks to their leases: the process that holds one renews it and reports.
    pub async fn unregister_worker(&self, caller: &Caller, id: &str) -> ApiResult<Vec<String>> {
        let w = self.check_worker(caller, id).await?;
        if caller.worker().is_some() && self.inner.links.is_live(&w.id) {
            self.inner.store.delete_worker_only(&w.id).await?;
            self.inner.links.forget(&w.id);
            return Ok(Vec::new());
        }
        let requeued = self
            .inner
            .store
            .delete_worker(&w.id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Worker {id} not found")))?;
        self.monitor(
            "system",
            "",
            &format!(
                "worker {id} unregistered; {} tasks queued again",
                requeued.len()
            ),
            json!({ "owner": w.owner, "worker_id": id, "requeued": requeued }),
        )
        .await;
        self.inner.links.forget(&w.id);
        self.inner.wake.notify_one();
        Ok(requeued)
    }

    /// `(worker key, owner)` behind a worker token, if it is one.
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
