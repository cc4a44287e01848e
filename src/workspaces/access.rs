//! Who may reach a workspace and what they may ask of it: ownership (by id or by the caller's own
//! name), host workspaces (off by default, admins only), and per-workspace limits within the operator's
//! maxima.

use super::model::{Limits, Status, Workspace, WorkspaceType};
use super::Workspaces;
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;

impl Workspaces {
    /// The workspaces `who` may see: their own, or all for an admin.
    pub async fn list_for(&self, who: &Principal) -> ApiResult<Vec<Workspace>> {
        Ok(self
            .inner
            .store
            .list_workspaces(who.listing_owner(), &self.inner.secrets)
            .await?)
    }

    /// How many workspaces (of one owner's, with `Some`) are in each status, every status listed.
    pub async fn counts_for(&self, owner: Option<&str>) -> ApiResult<Vec<(Status, i64)>> {
        let rows = self.inner.store.workspace_counts(owner).await?;
        Ok(Status::ALL
            .into_iter()
            .map(|s| {
                let n = rows
                    .iter()
                    .find(|(name, _)| name == s.as_str())
                    .map_or(0, |(_, n)| *n);
                (s, n)
            })
            .collect())
    }

    /// The workspace, by id or by name, if `who` may act on it; 404 otherwise, as if it did not
    /// exist. A name is always the caller's own workspace of that name (admins reach other users'
    /// by id), so a name never lands on someone else's workspace.
    pub async fn owned(&self, who: &Principal, id_or_name: &str) -> ApiResult<Workspace> {
        let missing = || ApiError::not_found(format!("no workspace {id_or_name:?}"));
        if uuid::Uuid::parse_str(id_or_name).is_ok() {
            let ws = self.get(id_or_name).await?;
            return if who.may_act_on(&ws.owner) {
                Ok(ws)
            } else {
                Err(missing())
            };
        }
        self.owned_named(&who.name, id_or_name)
            .await?
            .ok_or_else(missing)
    }

    /// `owned`, for running something in it: a host workspace only while the operator allows them and
    /// for an admin (a row from before, or a demoted admin, gets nothing from the host).
    pub async fn usable(&self, who: &Principal, id: &str) -> ApiResult<Workspace> {
        let ws = self.owned(who, id).await?;
        if ws.workspace_type == WorkspaceType::Host {
            self.check_host_allowed(who)?;
        }
        Ok(ws)
    }

    /// The resident agent of a workspace `who` may use: a ready container built with one.
    pub async fn agent(
        &self,
        who: &Principal,
        id: &str,
    ) -> ApiResult<(Workspace, crate::resident::AgentClient)> {
        let ws = self.usable(who, id).await?;
        if ws.workspace_type == WorkspaceType::Host {
            return Err(ApiError::ConflictCode {
                code: "no_agent",
                message: "a host workspace has no resident agent: use POST /exec".into(),
            });
        }
        if ws.status != super::model::Status::Ready {
            return Err(ApiError::conflict(ws.not_ready()));
        }
        match self.inner.resident.client(&ws.id) {
            Some(agent) => Ok((ws, agent)),
            None => Err(ApiError::ConflictCode {
                code: "no_agent",
                message: "this workspace's container was built without berth's resident agent; rebuild it (POST /build with rebuild: true) to get processes, terminals and files".into(),
            }),
        }
    }

    /// `owner`'s workspace named `name`.
    pub async fn owned_named(&self, owner: &str, name: &str) -> ApiResult<Option<Workspace>> {
        Ok(self
            .inner
            .store
            .workspace_by_name(owner, name, &self.inner.secrets)
            .await?)
    }

    /// Whether `who` may act on the workspace, without loading it: for listings that name workspaces.
    pub async fn visible_to(&self, who: &Principal, id: &str) -> bool {
        if who.is_admin() {
            return true;
        }
        matches!(self.inner.store.workspace_owner(id).await, Ok(Some(o)) if o == who.name)
    }

    /// Host workspaces: only when the operator enabled them, and only for admins.
    pub(super) fn check_host_allowed(&self, who: &Principal) -> ApiResult<()> {
        if !self.inner.config.host_workspaces {
            return Err(ApiError::ForbiddenCode {
                code: "host_workspaces_disabled",
                message: "host workspaces are disabled on this server (they run commands as berth's own user on the host); an operator can enable them for admins with BERTH_HOST_WORKSPACES=true".into(),
            });
        }
        who.require_admin("a host workspace (it runs commands as berth's user on the host)")
    }

    /// Per-workspace limits within the operator's maxima.
    pub(super) fn check_limits(&self, l: Limits) -> ApiResult<Limits> {
        let c = &self.inner.config;
        if let Some(m) = l.memory_mb {
            if !(64..=c.max_memory_mb).contains(&m) {
                return Err(ApiError::invalid(format!(
                    "memory_mb must be 64 to {}",
                    c.max_memory_mb
                )));
            }
        }
        if let Some(cpus) = l.cpus {
            if !(cpus.is_finite() && cpus >= 0.01 && cpus <= c.max_cpus()) {
                return Err(ApiError::invalid(format!(
                    "cpus must be 0.01 to {}",
                    c.max_cpus()
                )));
            }
        }
        if let Some(d) = l.disk_mb {
            if !(64..=c.max_disk_mb).contains(&d) {
                return Err(ApiError::invalid(format!(
                    "disk_mb must be 64 to {}",
                    c.max_disk_mb
                )));
            }
        }
        if let Some(p) = l.pids {
            if !(16..=c.max_pids).contains(&p) {
                return Err(ApiError::invalid(format!(
                    "pids must be 16 to {}",
                    c.max_pids
                )));
            }
        }
        Ok(l)
    }
}
