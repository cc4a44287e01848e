//! `POST /exec`: runs a command in a workspace, in its container or on the host, and answers with its
//! capped output. The hot path: one engine exec per request for containers, nothing else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{Status, Workspace, WorkspaceType};
use super::Workspaces;
use crate::engine::{self, ExecOutput, ExecRequest, OutputSink};
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Deserialize, ToSchema)]
pub struct ExecSpec {
    pub command: String,
    pub cwd: Option<String>,
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Leave processes the command started running after it ends (a server started with `&`);
    /// by default they are killed when it ends.
    #[serde(default)]
    pub background: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExecResult {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
}

impl From<ExecOutput> for ExecResult {
    fn from(o: ExecOutput) -> Self {
        Self {
            exit_code: o.exit_code,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            timed_out: o.timed_out,
            stdout_truncated: o.stdout_truncated,
            stderr_truncated: o.stderr_truncated,
        }
    }
}

const REPLACED: &str = "the command was killed: a rebuild replaced the workspace's container while it ran; run it again once the workspace is ready";

impl Workspaces {
    /// Whether a rebuild has begun or replaced the container since `ws` was read.
    async fn replaced(&self, ws: &super::model::Workspace) -> bool {
        match self
            .inner
            .store
            .get_workspace(&ws.id, &self.inner.secrets)
            .await
        {
            Ok(Some(now)) => {
                (now.status == Status::Building
                    && now.building_op != Some(super::model::BuildOp::RerunInit))
                    || now.container_id != ws.container_id
            }
            _ => false,
        }
    }

    /// Runs `spec` in `ws` (as the caller's access check just read it).
    pub async fn exec(&self, ws: Workspace, spec: ExecSpec) -> ApiResult<ExecResult> {
        let started = std::time::Instant::now();
        let result = self.exec_command(ws, spec).await;
        let outcome = match &result {
            Ok(r) if r.timed_out => "timed_out",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        crate::metrics::get().observe_exec(outcome, started.elapsed());
        result
    }

    async fn exec_command(&self, ws: Workspace, spec: ExecSpec) -> ApiResult<ExecResult> {
        if spec.command.trim().is_empty() {
            return Err(ApiError::invalid("command must not be empty"));
        }
        if spec.command.contains('\0') || spec.cwd.as_deref().is_some_and(|c| c.contains('\0')) {
            return Err(ApiError::invalid(
                "command and cwd must not contain NUL bytes",
            ));
        }
        super::validate::env_vars(&spec.env)?;
        let config = &self.inner.config;
        let timeout = self.checked_timeout(
            spec.timeout_secs,
            config.exec_timeout_secs,
            config.exec_max_timeout_secs,
        )?;
        let mut env = ws.env_vars.clone();
        env.extend(spec.env);
        let out = match ws.workspace_type {
            WorkspaceType::Host => {
                let cwd = super::host::resolve_cwd(&ws.path, spec.cwd.as_deref())?;
                super::host::run(
                    &spec.command,
                    &cwd,
                    &env,
                    timeout,
                    config.exec_max_output,
                    spec.background,
                )
                .await?
            }
            WorkspaceType::Container => {
                if ws.status != Status::Ready {
                    return Err(ApiError::conflict(ws.not_ready()));
                }
                // A relative cwd is relative to /workspace.
                let cwd = match spec.cwd.as_deref() {
                    None | Some("") => "/workspace".to_string(),
                    Some(c) if c.starts_with('/') => c.to_string(),
                    Some(c) => format!("/workspace/{c}"),
                };
                let container = engine::container_name(&ws.id);
                if let Some(agent) = self.inner.resident.client(&ws.id) {
                    let result = self
                        .exec_through_agent(
                            &agent,
                            &spec.command,
                            &cwd,
                            &env,
                            timeout,
                            spec.background,
                        )
                        .await;
                    // A command cut off with its agent may have lost its container to a rebuild.
                    if matches!(result, Err(ApiError::AgentUnavailable(_)))
                        && self.replaced(&ws).await
                    {
                        return Err(ApiError::conflict(REPLACED));
                    }
                    return result;
                }
                let result = self
                    .inner
                    .engine
                    .exec(
                        ExecRequest {
                            container: &container,
                            command: &spec.command,
                            cwd: &cwd,
                            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                            timeout,
                            max_output: config.exec_max_output,
                            // berth stopping ends the command (its whole tree), not the other
                            // way round: a long exec must not hold shutdown.
                            cancel: Some(self.inner.shutdown.child_token()),
                            keep_processes: spec.background,
                        },
                        &mut OutputSink::none(),
                    )
                    .await;
                // A command that ended abnormally may have lost its container to a rebuild: say so.
                let abnormal = match &result {
                    Ok(out) => out.exit_code < 0 || out.exit_code >= 128,
                    Err(_) => true,
                };
                if abnormal && self.replaced(&ws).await {
                    return Err(ApiError::conflict(REPLACED));
                }
                let out = result.map_err(|e| match e {
                    e if e.is_not_found() => ApiError::conflict(format!(
                        "the workspace's container is gone; rebuild it ({e})"
                    )),
                    engine::EngineError::Conflict { .. } => ApiError::conflict(format!(
                        "the workspace's container is not running; rebuild it ({e})"
                    )),
                    e => e.into(),
                })?;
                if out.cancelled {
                    return Err(ApiError::Unavailable(
                        "berth is stopping: the command was stopped (its processes killed); run it again once berth is back".into(),
                    ));
                }
                if out.cwd_missing() {
                    return Err(ApiError::invalid(format!(
                        "cwd {cwd} does not exist in the workspace"
                    )));
                }
                out
            }
        };
        Ok(out.into())
    }

    /// The fast path: the container's resident agent runs the command (no engine round trips).
    async fn exec_through_agent(
        &self,
        agent: &crate::resident::AgentClient,
        command: &str,
        cwd: &str,
        env: &BTreeMap<String, String>,
        timeout: std::time::Duration,
        background: bool,
    ) -> ApiResult<ExecResult> {
        let request = serde_json::json!({
            "command": command,
            "cwd": cwd,
            "env": env,
            "timeout_ms": timeout.as_millis() as u64,
            "max_output": self.inner.config.exec_max_output,
            "background": background,
        });
        // berth stopping ends the command: dropping the request makes the agent kill its tree.
        let answer = tokio::select! {
            a = agent.json("POST", "/berth/exec", &request) => a?,
            _ = self.inner.shutdown.cancelled() => return Err(ApiError::Unavailable(
                "berth is stopping: the command was stopped (its processes killed); run it again once berth is back".into(),
            )),
        };
        match answer {
            (200, v) => {
                let text = |k: &str| {
                    use base64::Engine as _;
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(v[k].as_str().unwrap_or(""))
                        .unwrap_or_default();
                    String::from_utf8_lossy(&raw).into_owned()
                };
                Ok(ExecResult {
                    exit_code: v["exit_code"].as_i64().unwrap_or(-1),
                    stdout: text("stdout"),
                    stderr: text("stderr"),
                    timed_out: v["timed_out"].as_bool().unwrap_or(false),
                    stdout_truncated: v["stdout_truncated"].as_bool().unwrap_or(false),
                    stderr_truncated: v["stderr_truncated"].as_bool().unwrap_or(false),
                })
            }
            (400, v) if v["code"] == "cwd_missing" => Err(ApiError::invalid(format!(
                "cwd {cwd} does not exist in the workspace"
            ))),
            (status, v) => Err(ApiError::Engine(format!(
                "the workspace's agent answered {status}: {}",
                v["message"].as_str().unwrap_or("")
            ))),
        }
    }
}
