//! Workspace queries. Status changes are single conditional updates so two requests can never both win a
//! transition (e.g. two builds of one workspace).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::Store;
use crate::secrets::SecretBox;
use crate::workspaces::model::{BuildOp, ContainerState, Status, Workspace, WorkspaceType};

#[derive(FromRow)]
struct Row {
    id: String,
    owner: String,
    name: String,
    workspace_type: String,
    path: String,
    template: Option<String>,
    distro: Option<String>,
    packages: String,
    skills: String,
    tools: String,
    env_vars: String,
    init_scripts: String,
    init_script: Option<String>,
    network: String,
    code_mount: Option<String>,
    base_image: Option<String>,
    memory_mb: Option<i64>,
    cpus: Option<f64>,
    pids_limit: Option<i64>,
    disk_mb: Option<i64>,
    needs_rebuild: bool,
    status: String,
    error_message: Option<String>,
    container_id: Option<String>,
    container_state: Option<String>,
    building_op: Option<String>,
    image_id: Option<String>,
    init_exit_code: Option<i64>,
    init_finished_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn json_list(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

impl Row {
    fn into_workspace(self, secrets: &SecretBox) -> anyhow::Result<Workspace> {
        let sealed: BTreeMap<String, String> = serde_json::from_str(&self.env_vars)?;
        let mut env_vars = BTreeMap::new();
        for (k, v) in sealed {
            env_vars.insert(k, secrets.unseal(&v)?);
        }
        Ok(Workspace {
            workspace_type: WorkspaceType::parse(&self.workspace_type)
                .ok_or_else(|| anyhow::anyhow!("bad workspace_type {}", self.workspace_type))?,
            status: Status::parse(&self.status)
                .ok_or_else(|| anyhow::anyhow!("bad status {}", self.status))?,
            packages: json_list(&self.packages),
            skills: json_list(&self.skills),
            tools: json_list(&self.tools),
            init_scripts: json_list(&self.init_scripts),
            env_vars,
            id: self.id,
            owner: self.owner,
            name: self.name,
            path: self.path,
            template: self.template,
            distro: self.distro,
            init_script: self.init_script,
            network: self.network,
            code_mount: self.code_mount,
            base_image: self.base_image,
            limits: crate::workspaces::model::Limits {
                memory_mb: self.memory_mb.map(|m| m as u64),
                disk_mb: self.disk_mb.map(|m| m as u64),
                cpus: self.cpus,
                pids: self.pids_limit,
            },
            needs_rebuild: self.needs_rebuild,
            error_message: self.error_message,
            container_id: self.container_id,
            container_state: self
                .container_state
                .as_deref()
                .and_then(ContainerState::parse),
            building_op: self.building_op.as_deref().and_then(BuildOp::parse),
            image_id: self.image_id,
            init_exit_code: self.init_exit_code,
            init_finished_at: self.init_finished_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn seal_env(secrets: &SecretBox, env: &BTreeMap<String, String>) -> String {
    let sealed: BTreeMap<&String, String> = env.iter().map(|(k, v)| (k, secrets.seal(v))).collect();
    serde_json::to_string(&sealed).expect("string map serializes")
}

fn to_json(v: &[String]) -> String {
    serde_json::to_string(v).expect("string list serializes")
}

/// Outcome of a write that may collide with an existing name.
pub enum Inserted {
    Ok,
    NameTaken,
}

fn name_checked<T>(res: Result<T, sqlx::Error>) -> anyhow::Result<Inserted> {
    match res {
        Ok(_) => Ok(Inserted::Ok),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(Inserted::NameTaken),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    pub async fn insert_workspace(
        &self,
        w: &Workspace,
        secrets: &SecretBox,
    ) -> anyhow::Result<Inserted> {
        let res = sqlx::query(
            "INSERT INTO workspaces (id, name, workspace_type, path, template, distro, packages, skills,
               tools, env_vars, init_scripts, init_script, status, error_message, created_at, updated_at, network,
               code_mount, owner, memory_mb, cpus, pids_limit, disk_mb, base_image)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&w.id)
        .bind(&w.name)
        .bind(w.workspace_type.as_str())
        .bind(&w.path)
        .bind(&w.template)
        .bind(&w.distro)
        .bind(to_json(&w.packages))
        .bind(to_json(&w.skills))
        .bind(to_json(&w.tools))
        .bind(seal_env(secrets, &w.env_vars))
        .bind(to_json(&w.init_scripts))
        .bind(&w.init_script)
        .bind(w.status.as_str())
        .bind(&w.error_message)
        .bind(w.created_at)
        .bind(w.updated_at)
        .bind(&w.network)
        .bind(&w.code_mount)
        .bind(&w.owner)
        .bind(w.limits.memory_mb.map(|m| m as i64))
        .bind(w.limits.cpus)
        .bind(w.limits.pids)
        .bind(w.limits.disk_mb.map(|m| m as i64))
        .bind(&w.base_image)
        .execute(&self.pool)
        .await;
        name_checked(res)
    }

    pub async fn get_workspace(
        &self,
        id: &str,
        secrets: &SecretBox,
    ) -> anyhow::Result<Option<Workspace>> {
        let row: Option<Row> = sqlx::query_as("SELECT * FROM workspaces WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.into_workspace(secrets)).transpose()
    }

    /// The owner's workspaces; every workspace with `None`.
    pub async fn list_workspaces(
        &self,
        owner: Option<&str>,
        secrets: &SecretBox,
    ) -> anyhow::Result<Vec<Workspace>> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT * FROM workspaces WHERE (? IS NULL OR owner = ?) ORDER BY created_at, id",
        )
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| r.into_workspace(secrets))
            .collect()
    }

    /// How many workspaces (of one owner's, with `Some`) are in each status; counted by the store,
    /// so no workspace is loaded (nor its env vars unsealed) to be counted.
    pub async fn workspace_counts(
        &self,
        owner: Option<&str>,
    ) -> anyhow::Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM workspaces WHERE (? IS NULL OR owner = ?) GROUP BY status",
        )
        .bind(owner)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn workspace_by_name(
        &self,
        owner: &str,
        name: &str,
        secrets: &SecretBox,
    ) -> anyhow::Result<Option<Workspace>> {
        let row: Option<Row> =
            sqlx::query_as("SELECT * FROM workspaces WHERE owner = ? AND name = ?")
                .bind(owner)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| r.into_workspace(secrets)).transpose()
    }

    /// Who owns a workspace, without unsealing anything.
    pub async fn workspace_owner(&self, id: &str) -> anyhow::Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT owner FROM workspaces WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn set_needs_rebuild(&self, id: &str, needs: bool) -> anyhow::Result<()> {
        sqlx::query("UPDATE workspaces SET needs_rebuild = ? WHERE id = ?")
            .bind(needs)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Saves the user-editable fields; build results are written by the build alone.
    pub async fn update_workspace_spec(
        &self,
        w: &Workspace,
        secrets: &SecretBox,
    ) -> anyhow::Result<Inserted> {
        let res = sqlx::query(
            "UPDATE workspaces SET name = ?, distro = ?, packages = ?, skills = ?, tools = ?, env_vars = ?,
               init_scripts = ?, init_script = ?, updated_at = ?, network = ?, memory_mb = ?, cpus = ?,
               pids_limit = ?, disk_mb = ?, needs_rebuild = ? WHERE id = ?",
        )
        .bind(&w.name)
        .bind(&w.distro)
        .bind(to_json(&w.packages))
        .bind(to_json(&w.skills))
        .bind(to_json(&w.tools))
        .bind(seal_env(secrets, &w.env_vars))
        .bind(to_json(&w.init_scripts))
        .bind(&w.init_script)
        .bind(Utc::now())
        .bind(&w.network)
        .bind(w.limits.memory_mb.map(|m| m as i64))
        .bind(w.limits.cpus)
        .bind(w.limits.pids)
        .bind(w.limits.disk_mb.map(|m| m as i64))
        .bind(w.needs_rebuild)
        .bind(&w.id)
        .execute(&self.pool)
        .await;
        name_checked(res)
    }

    /// Moves a workspace to `to` only if its status is one of `from`. False means someone else moved it
    /// first (or it is gone).
    pub async fn transition_workspace(
        &self,
        id: &str,
        from: &[Status],
        to: Status,
        error_message: Option<&str>,
    ) -> anyhow::Result<bool> {
        let placeholders = vec!["?"; from.len()].join(", ");
        let sql = format!(
            "UPDATE workspaces SET status = ?, error_message = ?, updated_at = ?
             WHERE id = ? AND status IN ({placeholders})"
        );
        let mut q = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(error_message)
            .bind(Utc::now())
            .bind(id);
        for s in from {
            q = q.bind(s.as_str());
        }
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// Moves the workspace from one of `from` to `building` for `op`; false if it was in none of them.
    pub async fn begin_building(
        &self,
        id: &str,
        from: &[Status],
        op: BuildOp,
    ) -> anyhow::Result<bool> {
        let placeholders = vec!["?"; from.len()].join(", ");
        let sql = format!(
            "UPDATE workspaces SET status = 'building', error_message = NULL, building_op = ?, updated_at = ?
             WHERE id = ? AND status IN ({placeholders})"
        );
        let mut q = sqlx::query(&sql)
            .bind(op.as_str())
            .bind(Utc::now())
            .bind(id);
        for s in from {
            q = q.bind(s.as_str());
        }
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    /// `transition_workspace` that also records the container's state, and only while the workspace's
    /// container is still `container_id` (an event about a container a rebuild replaced changes nothing).
    pub async fn settle_container(
        &self,
        id: &str,
        container_id: &str,
        from: &[Status],
        to: Status,
        error_message: Option<&str>,
        state: ContainerState,
    ) -> anyhow::Result<bool> {
        let placeholders = vec!["?"; from.len()].join(", ");
        let sql = format!(
            "UPDATE workspaces SET status = ?, error_message = ?, container_state = ?, updated_at = ?
             WHERE id = ? AND container_id = ? AND status IN ({placeholders})"
        );
        let mut q = sqlx::query(&sql)
            .bind(to.as_str())
            .bind(error_message)
            .bind(state.as_str())
            .bind(Utc::now())
            .bind(id)
            .bind(container_id);
        for s in from {
            q = q.bind(s.as_str());
        }
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    pub async fn set_container_state(
        &self,
        id: &str,
        state: Option<ContainerState>,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE workspaces SET container_state = ?, updated_at = ? WHERE id = ?")
            .bind(state.map(ContainerState::as_str))
            .bind(Utc::now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_workspace_engine_ids(
        &self,
        id: &str,
        container_id: Option<&str>,
        image_id: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE workspaces SET container_id = ?, image_id = ?, updated_at = ? WHERE id = ?",
        )
        .bind(container_id)
        .bind(image_id)
        .bind(Utc::now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_workspace_distro(&self, id: &str, distro: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE workspaces SET distro = ? WHERE id = ?")
            .bind(distro)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn record_init_result(&self, id: &str, exit_code: Option<i64>) -> anyhow::Result<()> {
        sqlx::query("UPDATE workspaces SET init_exit_code = ?, init_finished_at = ? WHERE id = ?")
            .bind(exit_code)
            .bind(Utc::now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_workspace(&self, id: &str) -> anyhow::Result<bool> {
        // What the E2B API kept about it goes with it.
        sqlx::query("DELETE FROM e2b_sandboxes WHERE workspace_id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query("DELETE FROM workspaces WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }
}

impl Store {
    /// Records a volume a delete kept on purpose, before the workspace's row goes.
    pub async fn keep_volume(
        &self,
        name: &str,
        workspace_id: &str,
        owner: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO kept_volumes (name, workspace_id, owner, kept_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(workspace_id)
        .bind(owner)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts an OOM kill in the workspace's container.
    pub async fn record_oom_kill(&self, id: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE workspaces SET oom_kills = oom_kills + 1, last_oom_at = ? WHERE id = ?",
        )
        .bind(Utc::now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// `(oom_kills, last_oom_at)` of a workspace.
    pub async fn oom_kills(&self, id: &str) -> anyhow::Result<(i64, Option<DateTime<Utc>>)> {
        Ok(
            sqlx::query_as("SELECT oom_kills, last_oom_at FROM workspaces WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or((0, None)),
        )
    }

    pub async fn kept_volumes(&self) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM kept_volumes")
            .fetch_all(&self.pool)
            .await?)
    }
}
