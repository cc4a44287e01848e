//! Snapshots and forks. A snapshot is a sandbox's container committed as an image (its files: E2B's
//! snapshots also keep memory, which a container cannot) with its `/workspace` volume copied beside it as
//! a tar, since a commit leaves volumes out. A sandbox created from one runs that image and gets that
//! `/workspace` back. A fork is a snapshot of its own that its new sandboxes start from, dropped once they
//! have (its image stays while they run and goes with the last of them).

use std::path::PathBuf;

use chrono::Utc;

use super::{NewSandbox, Sandbox, Sandboxes};
use crate::error::{ApiError, ApiResult};
use crate::principal::Principal;
use crate::store::e2b::SnapshotRow;

/// The most sandboxes one fork makes.
const MAX_FORKS: u32 = 10;

impl Sandboxes {
    fn snapshots_dir(&self) -> PathBuf {
        self.workspaces.config().data_dir.join("snapshots")
    }

    fn workspace_tar(&self, snapshot_id: &str) -> PathBuf {
        self.snapshots_dir().join(format!("{snapshot_id}.tar"))
    }

    /// Commits sandbox `id` and copies its `/workspace`; `listed` ones are the user's, a fork's are not.
    pub async fn snapshot(
        &self,
        who: &Principal,
        id: &str,
        name: Option<String>,
        listed: bool,
    ) -> ApiResult<SnapshotRow> {
        let sandbox = self.get(who, id).await?;
        let snapshot_id = format!("snap-{}", crate::secrets::random_hex(8));
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) if n.len() > 128 || n.chars().any(char::is_control) => {
                return Err(ApiError::invalid(
                    "a snapshot name is 1 to 128 printable characters",
                ))
            }
            Some(n) => n,
            None => snapshot_id.clone(),
        };
        let engine = self.workspaces.engine();
        let container = crate::engine::container_name(&sandbox.row.workspace_id);
        let tag = crate::engine::snapshot_tag(engine.instance(), &snapshot_id);
        let image_id = engine
            .commit(&container, &tag, &[("berth.snapshot", &snapshot_id)])
            .await?;
        let copied = async {
            let dir = self.snapshots_dir();
            tokio::fs::create_dir_all(&dir).await.map_err(|e| {
                ApiError::Internal(anyhow::anyhow!("create {}: {e}", dir.display()))
            })?;
            crate::secrets::make_private(&dir).map_err(ApiError::Internal)?;
            engine
                .download_to(&container, "/workspace", &self.workspace_tar(&snapshot_id))
                .await
                .map_err(ApiError::from)
        };
        if let Err(e) = copied.await {
            let _ = engine.remove_image(&tag).await;
            let _ = tokio::fs::remove_file(self.workspace_tar(&snapshot_id)).await;
            return Err(e);
        }
        let row = SnapshotRow {
            id: snapshot_id,
            owner: sandbox.row.owner.clone(),
            name,
            sandbox_id: sandbox.row.workspace_id.clone(),
            image_id,
            listed,
            created_at: Utc::now(),
        };
        self.store.insert_snapshot(&row).await?;
        Ok(row)
    }

    /// A snapshot `who` may use, by id or by one of their snapshots' names.
    pub async fn owned_snapshot(
        &self,
        who: &Principal,
        id_or_name: &str,
    ) -> ApiResult<Option<SnapshotRow>> {
        let row = self.store.snapshot(&who.name, id_or_name).await?;
        Ok(row.filter(|r| who.may_act_on(&r.owner)))
    }

    /// The listed snapshots `who` may see, optionally of one sandbox or by name.
    pub async fn snapshots(
        &self,
        who: &Principal,
        sandbox_id: Option<&str>,
        name: Option<&str>,
    ) -> ApiResult<Vec<SnapshotRow>> {
        let owner = (!who.is_admin()).then_some(who.name.as_str());
        Ok(self
            .store
            .snapshots(owner)
            .await?
            .into_iter()
            .filter(|r| sandbox_id.is_none_or(|s| r.sandbox_id == s))
            .filter(|r| name.is_none_or(|n| r.name == n || r.id == n))
            .collect())
    }

    /// Removes a snapshot: its tag (its image goes now, or with the last sandbox still running it), its
    /// `/workspace` copy and its record.
    pub async fn delete_snapshot(&self, who: &Principal, id: &str) -> ApiResult<()> {
        let row = self
            .owned_snapshot(who, id)
            .await?
            .filter(|r| r.id == id)
            .ok_or_else(|| ApiError::not_found(format!("snapshot {id} not found")))?;
        self.drop_snapshot(&row).await
    }

    async fn drop_snapshot(&self, row: &SnapshotRow) -> ApiResult<()> {
        let engine = self.workspaces.engine();
        engine
            .remove_image(&crate::engine::snapshot_tag(engine.instance(), &row.id))
            .await?;
        match tokio::fs::remove_file(self.workspace_tar(&row.id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "remove a snapshot's copy: {e}"
                )))
            }
        }
        self.store.delete_snapshot(&row.id).await?;
        Ok(())
    }

    /// Puts a snapshot's `/workspace` into a sandbox made from it.
    pub(super) async fn restore_workspace(
        &self,
        snapshot_id: &str,
        sandbox_id: &str,
    ) -> ApiResult<()> {
        let tar = self.workspace_tar(snapshot_id);
        if !tar.is_file() {
            return Ok(());
        }
        // The copy holds `workspace/...`: unpacked at the root, it fills the new volume.
        self.workspaces
            .engine()
            .upload_tar_file(&crate::engine::container_name(sandbox_id), "/", &tar)
            .await
            .map_err(ApiError::from)
    }

    /// `count` new sandboxes from sandbox `id` as it is now, each with its env, metadata and security;
    /// each one's outcome.
    pub async fn fork(
        &self,
        who: &Principal,
        id: &str,
        timeout_secs: Option<u64>,
        count: Option<u32>,
    ) -> ApiResult<Vec<ApiResult<Sandbox>>> {
        let count = count.unwrap_or(1);
        if count == 0 || count > MAX_FORKS {
            return Err(ApiError::invalid(format!("count must be 1 to {MAX_FORKS}")));
        }
        let source = self.get(who, id).await?;
        let snapshot = self.snapshot(who, id, None, false).await?;
        let mut out = Vec::new();
        for _ in 0..count {
            out.push(
                self.create(
                    who,
                    NewSandbox {
                        template_id: snapshot.id.clone(),
                        timeout_secs,
                        metadata: source.metadata(),
                        env_vars: source.workspace.env_vars.clone(),
                        secure: source.row.token_sealed.is_some(),
                        auto_pause: source.row.auto_pause,
                    },
                )
                .await,
            );
        }
        self.drop_snapshot(&snapshot).await?;
        Ok(out)
    }
}
