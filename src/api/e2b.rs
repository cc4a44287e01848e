//! E2B's control API and sandbox traffic under `/e2b`, so E2B's SDKs run against berth unchanged
//! (`E2B_API_URL=http://HOST:7700/e2b`, `E2B_SANDBOX_URL=http://HOST:7700/e2b`). The API key is a berth
//! API token (`X-API-Key`, or `Authorization: Bearer`); a sandbox is a berth workspace of that user.
//! Sandbox traffic carries `E2b-Sandbox-Id` and `E2b-Sandbox-Port`: envd's port goes to the
//! workspace's resident agent, which speaks envd's protocol. Errors are E2B's `{code, message}`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::e2b::{NewSandbox, Sandbox, State as SandboxState, ENVD_PORT, ENVD_VERSION};
use crate::error::ApiError;
use crate::principal::Principal;

/// An error in E2B's shape: `{code, message}` with the HTTP status as the code.
pub struct E2bError(ApiError);

impl From<ApiError> for E2bError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<crate::resident::AgentError> for E2bError {
    fn from(e: crate::resident::AgentError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for E2bError {
    fn into_response(self) -> Response {
        let (status, _) = self.0.status_and_code();
        let message = match &self.0 {
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "e2b request failed");
                "internal error".to_string()
            }
            e => e.to_string(),
        };
        (
            status,
            axum::Json(json!({ "code": status.as_u16(), "message": message })),
        )
            .into_response()
    }
}

type E2bResult<T> = Result<T, E2bError>;

/// The caller behind `X-API-Key` (or a bearer token).
async fn caller(s: &AppState, headers: &HeaderMap) -> E2bResult<Principal> {
    let token = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| super::auth::bearer_of(headers).ok().map(str::to_string))
        .ok_or_else(|| ApiError::Unauthorized("missing X-API-Key: use a berth API token".into()))?;
    let (who, cred) = super::auth::authenticate(s, &token).await?;
    if cred.is_worker_scoped() {
        return Err(ApiError::Forbidden("a worker token cannot drive sandboxes".into()).into());
    }
    Ok(who)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn state_name(s: SandboxState) -> &'static str {
    match s {
        SandboxState::Running => "running",
        SandboxState::Paused => "paused",
    }
}

/// A sandbox as create, resume and connect answer it.
fn created(s: &Sandbox, token: Option<String>, domain: Option<&str>) -> Value {
    let mut v = json!({
        "domain": domain,
        "templateID": s.row.template_id,
        "sandboxID": s.row.workspace_id,
        "clientID": "berth",
        "envdVersion": ENVD_VERSION,
    });
    if let Some(t) = token {
        v["envdAccessToken"] = json!(t);
    }
    v
}

/// A sandbox as create, resume and connect answer it, with its status.
fn answer(s: &AppState, sandbox: &Sandbox, status: StatusCode) -> Response {
    let token = s.sandboxes.access_token(sandbox);
    let domain = s.workspaces.config().e2b_domain.as_deref();
    (status, axum::Json(created(sandbox, token, domain))).into_response()
}

/// A sandbox as list and get answer it.
fn detail(s: &Sandbox, token: Option<String>) -> Value {
    let ws = &s.workspace;
    let mut v = json!({
        "templateID": s.row.template_id,
        "sandboxID": s.row.workspace_id,
        "alias": ws.template.clone().unwrap_or_else(|| "base".into()),
        "clientID": "berth",
        "startedAt": rfc3339(s.row.started_at),
        "endAt": rfc3339(s.row.expires_at),
        "cpuCount": ws.limits.cpus.map(|c| c.ceil() as i64).unwrap_or(1).max(1),
        "memoryMB": ws.limits.memory_mb.unwrap_or(0),
        "diskSizeMB": ws.limits.disk_mb.unwrap_or(0),
        "state": state_name(s.state()),
        "envdVersion": ENVD_VERSION,
        "metadata": s.metadata(),
    });
    if let Some(t) = token {
        v["envdAccessToken"] = json!(t);
    }
    v
}

/// E2B's `NewSandbox`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct NewSandboxBody {
    #[serde(rename = "templateID")]
    template_id: String,
    timeout: Option<u64>,
    auto_pause: Option<bool>,
    secure: Option<bool>,
    metadata: Option<BTreeMap<String, String>>,
    env_vars: Option<BTreeMap<String, String>>,
}

fn body<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> E2bResult<T> {
    Ok(super::optional_json(bytes)?)
}

#[utoipa::path(
    post, path = "/e2b/sandboxes", tag = "e2b",
    summary = "Create an E2B sandbox",
    description = "A berth workspace of the caller's, built from the template (`base` is the default distro; berth's templates by name), answered once it is ready (a warm pool's container when one fits). Secure unless `secure: false`: its envd traffic must then carry the `envdAccessToken` answered here. the API key (`X-API-Key`, or `Authorization: Bearer`) is a berth API token.",
    request_body = NewSandboxBody,
    responses(
        (status = 201, description = "E2B's `Sandbox`: `sandboxID`, `templateID`, `envdVersion`, `envdAccessToken`, `domain`"),
        (status = 400, description = "an unknown template (the answer names berth's), a timeout out of range, bad env vars"),
        (status = 401, description = "no API key, or not a valid one"),
    ),
)]
pub async fn create_sandbox(
    State(s): State<AppState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> E2bResult<Response> {
    let who = caller(&s, &headers).await?;
    let b: NewSandboxBody = body(&bytes)?;
    let sandbox = s
        .sandboxes
        .create(
            &who,
            NewSandbox {
                template_id: b.template_id,
                timeout_secs: b.timeout,
                metadata: b.metadata.unwrap_or_default(),
                env_vars: b.env_vars.unwrap_or_default(),
                // Secure unless asked otherwise: its envd traffic must carry the access token.
                secure: b.secure.unwrap_or(true),
                auto_pause: b.auto_pause.unwrap_or(false),
            },
        )
        .await?;
    s.audit
        .record(crate::audit::Entry::ok(
            &who.name,
            "e2b.sandbox.create",
            Some(&sandbox.row.workspace_id),
        ))
        .await;
    Ok(answer(&s, &sandbox, StatusCode::CREATED))
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", default)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `key=value&key2=value2`, url-encoded as one parameter.
    metadata: Option<String>,
    /// `running`, `paused`, or both comma-separated.
    state: Option<String>,
    limit: Option<usize>,
}

fn matches(s: &Sandbox, q: &ListQuery, default_states: &[SandboxState]) -> bool {
    let states: Vec<SandboxState> = match &q.state {
        Some(list) => list
            .split(',')
            .filter_map(|x| match x.trim() {
                "running" => Some(SandboxState::Running),
                "paused" => Some(SandboxState::Paused),
                _ => None,
            })
            .collect(),
        None => default_states.to_vec(),
    };
    if !states.contains(&s.state()) {
        return false;
    }
    let wanted: Vec<(String, String)> = q
        .metadata
        .as_deref()
        .and_then(|m| serde_urlencoded::from_str(m).ok())
        .unwrap_or_default();
    let have = s.metadata();
    wanted.iter().all(|(k, v)| have.get(k) == Some(v))
}

async fn list(
    s: &AppState,
    headers: &HeaderMap,
    q: &ListQuery,
    default_states: &[SandboxState],
) -> E2bResult<Response> {
    let who = caller(s, headers).await?;
    let all = s.sandboxes.list(&who).await?;
    let items: Vec<Value> = all
        .iter()
        .filter(|x| matches(x, q, default_states))
        .take(q.limit.unwrap_or(usize::MAX))
        .map(|x| detail(x, None))
        .collect();
    Ok(axum::Json(items).into_response())
}

#[utoipa::path(
    post, path = "/e2b/v2/sandboxes", tag = "e2b",
    summary = "Create an E2B sandbox: `POST /e2b/sandboxes` under the path newer SDKs use",
    request_body = NewSandboxBody,
    responses(
        (status = 201, description = "E2B's `Sandbox`"),
        (status = 400, description = "an unknown template, a timeout out of range, bad env vars"),
        (status = 401, description = "no API key, or not a valid one"),
    ),
)]
pub async fn create_sandbox_v2(
    state: State<AppState>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> E2bResult<Response> {
    create_sandbox(state, headers, bytes).await
}

#[utoipa::path(
    get, path = "/e2b/sandboxes", tag = "e2b",
    summary = "The caller's running sandboxes (an admin's: everyone's)",
    params(ListQuery),
    responses(
        (status = 200, description = "E2B's `ListedSandbox` list"),
        (status = 401, description = "no API key, or not a valid one"),
    ),
)]
pub async fn list_sandboxes(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> E2bResult<Response> {
    list(&s, &headers, &q, &[SandboxState::Running]).await
}

#[utoipa::path(
    get, path = "/e2b/v2/sandboxes", tag = "e2b",
    summary = "The caller's sandboxes, running and paused unless `state` says which",
    params(ListQuery),
    responses(
        (status = 200, description = "E2B's `ListedSandbox` list"),
        (status = 401, description = "no API key, or not a valid one"),
    ),
)]
pub async fn list_sandboxes_v2(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> E2bResult<Response> {
    list(
        &s,
        &headers,
        &q,
        &[SandboxState::Running, SandboxState::Paused],
    )
    .await
}

#[utoipa::path(
    get, path = "/e2b/sandboxes/{id}", tag = "e2b",
    summary = "One sandbox, with its access token",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    responses(
        (status = 200, description = "E2B's `SandboxDetail`"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
    ),
)]
pub async fn get_sandbox(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> E2bResult<Response> {
    let who = caller(&s, &headers).await?;
    let sandbox = s.sandboxes.get(&who, &id).await?;
    let token = s.sandboxes.access_token(&sandbox);
    Ok(axum::Json(detail(&sandbox, token)).into_response())
}

#[utoipa::path(
    delete, path = "/e2b/sandboxes/{id}", tag = "e2b",
    summary = "Kill a sandbox: its workspace, container and volume are removed",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    responses(
        (status = 204, description = "killed"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
    ),
)]
pub async fn kill_sandbox(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> E2bResult<StatusCode> {
    let who = caller(&s, &headers).await?;
    s.sandboxes.kill(&who, &id).await?;
    s.audit
        .record(crate::audit::Entry::ok(
            &who.name,
            "e2b.sandbox.kill",
            Some(&id),
        ))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The timeout bodies of set-timeout (`timeout`), refresh (`duration`), resume and connect.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(default)]
pub struct TimeoutBody {
    timeout: Option<u64>,
    duration: Option<u64>,
    #[serde(rename = "autoPause")]
    auto_pause: Option<bool>,
}

#[utoipa::path(
    post, path = "/e2b/sandboxes/{id}/timeout", tag = "e2b",
    summary = "The sandbox times out `timeout` seconds from now",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    request_body = TimeoutBody,
    responses(
        (status = 204, description = "set"),
        (status = 400, description = "no timeout, or one out of range"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
    ),
)]
pub async fn set_timeout(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    bytes: axum::body::Bytes,
) -> E2bResult<StatusCode> {
    let who = caller(&s, &headers).await?;
    let b: TimeoutBody = body(&bytes)?;
    let secs = b
        .timeout
        .ok_or_else(|| ApiError::invalid("timeout (seconds) is required"))?;
    s.sandboxes.set_timeout(&who, &id, secs).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/e2b/sandboxes/{id}/refreshes", tag = "e2b",
    summary = "Keep the sandbox alive at least `duration` seconds more",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    request_body = TimeoutBody,
    responses(
        (status = 204, description = "extended (or already later)"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
    ),
)]
pub async fn refresh(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    bytes: axum::body::Bytes,
) -> E2bResult<StatusCode> {
    let who = caller(&s, &headers).await?;
    let b: TimeoutBody = body(&bytes)?;
    s.sandboxes.refresh(&who, &id, b.duration).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/e2b/sandboxes/{id}/pause", tag = "e2b",
    summary = "Pause: the container stops, its files stay, it does not time out",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    responses(
        (status = 204, description = "paused"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
        (status = 409, description = "already paused"),
    ),
)]
pub async fn pause(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> E2bResult<StatusCode> {
    let who = caller(&s, &headers).await?;
    s.sandboxes.pause(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/e2b/sandboxes/{id}/resume", tag = "e2b",
    summary = "Resume a paused sandbox with a fresh timeout",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    request_body = TimeoutBody,
    responses(
        (status = 201, description = "E2B's `Sandbox`"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
        (status = 409, description = "not paused"),
    ),
)]
pub async fn resume(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    bytes: axum::body::Bytes,
) -> E2bResult<Response> {
    let who = caller(&s, &headers).await?;
    let b: TimeoutBody = body(&bytes)?;
    let _ = b.auto_pause;
    let (sandbox, _) = s.sandboxes.resume(&who, &id, b.timeout, true).await?;
    Ok(answer(&s, &sandbox, StatusCode::CREATED))
}

#[utoipa::path(
    post, path = "/e2b/sandboxes/{id}/connect", tag = "e2b",
    summary = "Connect: resume a paused sandbox, or extend a running one's timeout",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    request_body = TimeoutBody,
    responses(
        (status = 200, description = "E2B's `Sandbox` (it was running)"),
        (status = 201, description = "E2B's `Sandbox` (it was paused and is resumed)"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
    ),
)]
pub async fn connect(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    bytes: axum::body::Bytes,
) -> E2bResult<Response> {
    let who = caller(&s, &headers).await?;
    let b: TimeoutBody = body(&bytes)?;
    let (sandbox, was_paused) = s.sandboxes.resume(&who, &id, b.timeout, false).await?;
    let status = if was_paused {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(answer(&s, &sandbox, status))
}

#[utoipa::path(
    post, path = "/e2b/v2/sandboxes/{id}/connect", tag = "e2b",
    summary = "Connect: `POST /e2b/sandboxes/{id}/connect` under the path newer SDKs use",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    request_body = TimeoutBody,
    responses(
        (status = 200, description = "E2B's `Sandbox` (it was running)"),
        (status = 201, description = "E2B's `Sandbox` (it was paused and is resumed)"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
    ),
)]
pub async fn connect_v2(
    state: State<AppState>,
    headers: HeaderMap,
    id: axum::extract::Path<String>,
    bytes: axum::body::Bytes,
) -> E2bResult<Response> {
    connect(state, headers, id, bytes).await
}

#[utoipa::path(
    get, path = "/e2b/sandboxes/{id}/metrics", tag = "e2b",
    summary = "The sandbox's resource use now: one sample (CPU over the engine's last second), none while paused",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    responses(
        (status = 200, description = "E2B's `SandboxMetric` list"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
    ),
)]
pub async fn metrics(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> E2bResult<Response> {
    let who = caller(&s, &headers).await?;
    let now = s.sandboxes.metrics(&who, &id).await?;
    let items: Vec<Value> = now
        .into_iter()
        .map(|m| {
            json!({
                "timestamp": rfc3339(m.at),
                "timestampUnix": m.at.timestamp(),
                "cpuCount": m.cpu_count,
                "cpuUsedPct": (m.cpu_used_pct * 100.0).round() / 100.0,
                "memUsed": m.mem_used,
                "memTotal": m.mem_total,
                "memCache": m.mem_cache,
                "diskUsed": m.disk_used,
                "diskTotal": m.disk_total,
            })
        })
        .collect();
    Ok(axum::Json(items).into_response())
}

#[utoipa::path(
    get, path = "/e2b/templates", tag = "e2b",
    summary = "The templates a sandbox may name: `base` and berth's",
    responses(
        (status = 200, description = "E2B's `Template` list"),
        (status = 401, description = "no API key, or not a valid one"),
    ),
)]
pub async fn list_templates(State(s): State<AppState>, headers: HeaderMap) -> E2bResult<Response> {
    caller(&s, &headers).await?;
    let now = rfc3339(Utc::now());
    let names = std::iter::once("base".to_string()).chain(s.workspaces.template_names());
    let items: Vec<Value> = names
        .map(|n| {
            json!({
                "templateID": n, "buildID": n, "cpuCount": 1, "memoryMB": 0, "diskSizeMB": 0,
                "public": true, "aliases": [n], "names": [n], "createdAt": now, "updatedAt": now,
                "createdBy": null, "lastSpawnedAt": null, "spawnCount": 0, "buildCount": 0,
                "envdVersion": ENVD_VERSION, "buildStatus": "ready",
            })
        })
        .collect();
    Ok(axum::Json(items).into_response())
}

/// E2B's `SandboxSnapshotRequest` (berth keeps files, not memory: `memory` is taken and ignored).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(default)]
pub struct SnapshotBody {
    name: Option<String>,
    memory: Option<Value>,
}

fn snapshot_info(row: &crate::store::e2b::SnapshotRow) -> Value {
    json!({ "snapshotID": row.id, "names": [row.name] })
}

#[utoipa::path(
    post, path = "/e2b/sandboxes/{id}/snapshots", tag = "e2b",
    summary = "Snapshot a sandbox: its files (container and `/workspace`) as they are now, for new sandboxes",
    description = "`Sandbox.create(snapshotID)` (or its name) starts a sandbox from it. A container keeps no memory across a snapshot: processes are not in it.",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    request_body = SnapshotBody,
    responses(
        (status = 201, description = "E2B's `SnapshotInfo`: `snapshotID`, `names`"),
        (status = 400, description = "a name over 128 characters"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
    ),
)]
pub async fn create_snapshot(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    bytes: axum::body::Bytes,
) -> E2bResult<Response> {
    let who = caller(&s, &headers).await?;
    let b: SnapshotBody = body(&bytes)?;
    let _ = b.memory;
    let row = s.sandboxes.snapshot(&who, &id, b.name, true).await?;
    s.audit
        .record(crate::audit::Entry::ok(
            &who.name,
            "e2b.snapshot.create",
            Some(&row.id),
        ))
        .await;
    Ok((StatusCode::CREATED, axum::Json(snapshot_info(&row))).into_response())
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// Only this sandbox's snapshots.
    #[serde(rename = "sandboxID")]
    sandbox_id: Option<String>,
    name: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "nextToken")]
    next_token: Option<String>,
}

#[utoipa::path(
    get, path = "/e2b/snapshots", tag = "e2b",
    summary = "The caller's snapshots (an admin's: everyone's), newest first",
    params(SnapshotQuery),
    responses(
        (status = 200, description = "E2B's `SnapshotInfo` list"),
        (status = 401, description = "no API key, or not a valid one"),
    ),
)]
pub async fn list_snapshots(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<SnapshotQuery>,
) -> E2bResult<Response> {
    let who = caller(&s, &headers).await?;
    let _ = q.next_token;
    let rows = s
        .sandboxes
        .snapshots(&who, q.sandbox_id.as_deref(), q.name.as_deref())
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .take(q.limit.unwrap_or(usize::MAX))
        .map(snapshot_info)
        .collect();
    Ok(axum::Json(items).into_response())
}

#[utoipa::path(
    delete, path = "/e2b/templates/{id}", tag = "e2b",
    summary = "Delete a snapshot (E2B deletes snapshots as templates); berth's own templates stay",
    params(("id" = String, Path, description = "the snapshot's id")),
    responses(
        (status = 204, description = "deleted: sandboxes still running from it keep running"),
        (status = 400, description = "one of berth's templates"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no snapshot of the caller's with this id"),
    ),
)]
pub async fn delete_template(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> E2bResult<StatusCode> {
    let who = caller(&s, &headers).await?;
    if id == "base" || s.workspaces.template_names().contains(&id) {
        return Err(ApiError::invalid(format!(
            "{id} is one of berth's templates: they are the server's, not deleted through E2B"
        ))
        .into());
    }
    s.sandboxes.delete_snapshot(&who, &id).await?;
    s.audit
        .record(crate::audit::Entry::ok(
            &who.name,
            "e2b.snapshot.delete",
            Some(&id),
        ))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// E2B's `SandboxForkRequest`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(default)]
pub struct ForkBody {
    timeout: Option<u64>,
    count: Option<u32>,
}

#[utoipa::path(
    post, path = "/e2b/sandboxes/{id}/fork", tag = "e2b",
    summary = "Fork a sandbox: `count` new sandboxes (default 1, at most 10) from its files as they are now",
    description = "Each gets the source's env vars, metadata and security; its processes are not copied. One result per fork: `{sandbox}` or `{error: {code, message}}`.",
    params(("id" = String, Path, description = "the sandbox's id (its workspace's)")),
    request_body = ForkBody,
    responses(
        (status = 201, description = "E2B's `SandboxForkResult` list"),
        (status = 400, description = "a count out of range, a timeout out of range"),
        (status = 401, description = "no API key, or not a valid one"),
        (status = 404, description = "no sandbox of the caller's with this id"),
    ),
)]
pub async fn fork_sandbox(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    bytes: axum::body::Bytes,
) -> E2bResult<Response> {
    let who = caller(&s, &headers).await?;
    let b: ForkBody = body(&bytes)?;
    let forks = s.sandboxes.fork(&who, &id, b.timeout, b.count).await?;
    let domain = s.workspaces.config().e2b_domain.as_deref();
    let items: Vec<Value> = forks
        .into_iter()
        .map(|f| match f {
            Ok(sandbox) => {
                let token = s.sandboxes.access_token(&sandbox);
                json!({ "sandbox": created(&sandbox, token, domain) })
            }
            Err(e) => {
                let (status, _) = e.status_and_code();
                json!({ "error": { "code": status.as_u16(), "message": e.to_string() } })
            }
        })
        .collect();
    s.audit
        .record(crate::audit::Entry::ok(
            &who.name,
            "e2b.sandbox.fork",
            Some(&id),
        ))
        .await;
    Ok((StatusCode::CREATED, axum::Json(items)).into_response())
}

/// Request headers that concern berth or this hop, never the sandbox.
const NOT_FORWARDED: [&str; 7] = [
    "host",
    "x-api-key",
    "authorization",
    "x-access-token",
    "e2b-sandbox-id",
    "e2b-sandbox-port",
    "cookie",
];

#[utoipa::path(
    method(get, post, put, patch, delete), path = "/e2b/",
    tag = "e2b",
    summary = "Sandbox traffic (envd, and any port of the sandbox)",
    description = "Routed by `E2b-Sandbox-Id` and `E2b-Sandbox-Port` (or a `{port}-{sandboxID}.{BERTH_E2B_DOMAIN}` host name): envd's port 49983 to the workspace's resident agent (a secure sandbox's requests carry `X-Access-Token`), any other port to that port in the container. The path after `/e2b` goes as it was sent.",
    responses(
        (status = 200, description = "the sandbox's answer"),
        (status = 400, description = "no sandbox id or port"),
        (status = 401, description = "a secure sandbox's traffic without its access token"),
        (status = 404, description = "no such sandbox"),
        (status = 502, description = "nothing listens on the port"),
    ),
)]
pub async fn sandbox_traffic_root(state: State<AppState>, req: Request) -> E2bResult<Response> {
    sandbox_traffic(state, req).await
}

/// Sandbox traffic: envd's port to the workspace's resident agent, as it was sent (path after `/e2b`).
#[utoipa::path(
    method(get, post, put, patch, delete), path = "/e2b/{path}",
    params(("path" = String, Path, description = "the sandbox's path, e.g. `process.Process/Start` or `files`")),
    tag = "e2b",
    summary = "Sandbox traffic (envd, and any port of the sandbox)",
    description = "Routed by `E2b-Sandbox-Id` and `E2b-Sandbox-Port` (or a `{port}-{sandboxID}.{BERTH_E2B_DOMAIN}` host name): envd's port 49983 to the workspace's resident agent (a secure sandbox's requests carry `X-Access-Token`), any other port to that port in the container. The path after `/e2b` goes as it was sent.",
    responses(
        (status = 200, description = "the sandbox's answer"),
        (status = 400, description = "no sandbox id or port"),
        (status = 401, description = "a secure sandbox's traffic without its access token"),
        (status = 404, description = "no such sandbox"),
        (status = 502, description = "nothing listens on the port"),
    ),
)]
pub async fn sandbox_traffic(State(s): State<AppState>, req: Request) -> E2bResult<Response> {
    let (id, port, given) = {
        let header = |name: &str| -> Option<String> {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (
            header("e2b-sandbox-id"),
            header("e2b-sandbox-port"),
            header("x-access-token"),
        )
    };
    let Some(id) = id else {
        return Err(
            ApiError::not_found("no such route (sandbox traffic carries E2b-Sandbox-Id)").into(),
        );
    };
    let port: u16 = port.and_then(|p| p.parse().ok()).unwrap_or(ENVD_PORT);
    let (sandbox, token) = match s.sandboxes.for_traffic(&id).await {
        Ok(found) => found,
        // Not a sandbox: a berth workspace's port, for its preview URLs.
        Err(ApiError::NotFound(_)) if port != ENVD_PORT => {
            return workspace_port(&s, &id, port, req).await
        }
        Err(e) => return Err(e.into()),
    };
    // envd's port takes the sandbox's access token (or, for a file URL, a signature made with it); its
    // other ports are public, as E2B's are.
    if let Some(t) = token.filter(|_| port == ENVD_PORT) {
        let given = given.unwrap_or_default();
        let signed = file_url_signed(&req, &t);
        if !signed && !crate::secrets::constant_time_eq(given.as_bytes(), t.as_bytes()) {
            return Err(ApiError::Unauthorized(
                "this sandbox is secure: send its envd access token (X-Access-Token)".into(),
            )
            .into());
        }
    }
    if sandbox.state() == SandboxState::Paused {
        return Err(
            ApiError::conflict(format!("sandbox {id} is paused; resume or connect to it")).into(),
        );
    }
    if port != ENVD_PORT {
        return port_proxy(&s, &sandbox.workspace, port, req).await;
    }
    let agent = s
        .workspaces
        .resident()
        .client(&id)
        .ok_or_else(|| ApiError::ConflictCode {
            code: "no_agent",
            message: format!("sandbox {id} has no resident agent"),
        })?;
    let mut upstream_path = req
        .uri()
        .path()
        .strip_prefix("/e2b")
        .unwrap_or(req.uri().path())
        .to_string();
    if let Some(q) = req.uri().query() {
        upstream_path = format!("{upstream_path}?{q}");
    }
    let target = upstream_path;
    let start = path_is_start(req.uri().path());
    let mut upstream = hyper::Request::builder()
        .method(req.method().clone())
        .uri(&target)
        .header("host", "agent");
    for (name, value) in req.headers() {
        let n = name.as_str();
        // A rewritten body has its own length.
        let rewritten = start && n == "content-length";
        if !super::relay::HOP_BY_HOP.contains(&n) && !NOT_FORWARDED.contains(&n) && !rewritten {
            upstream = upstream.header(name, value);
        }
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = if start {
        // The sandbox's env vars (berth keeps them out of the container) join every process it starts.
        let bytes = axum::body::to_bytes(req.into_body(), 16 << 20)
            .await
            .map_err(|e| ApiError::invalid(format!("the request body: {e}")))?;
        let bytes = with_env(&bytes, &content_type, &sandbox.workspace.env_vars)?;
        crate::resident::client::full(bytes)
    } else {
        BodyExt::boxed_unsync(
            req.into_body()
                .map_err(|e| std::io::Error::other(e.to_string())),
        )
    };
    let upstream = upstream
        .body(body)
        .map_err(|e| ApiError::invalid(format!("the request: {e}")))?;
    let resp = agent.send(upstream).await?;
    let mut out = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if !super::relay::HOP_BY_HOP.contains(&name.as_str()) {
            out = out.header(name, value);
        }
    }
    Ok(out.body(Body::new(resp.into_body())).expect("a response"))
}

fn path_is_start(path: &str) -> bool {
    path.ends_with("/process.Process/Start")
}

/// A `Start` request with the sandbox's env vars beneath the request's own, and E2B's default working
/// directory (its user's home) when it names none.
fn with_env(
    body: &[u8],
    content_type: &str,
    env: &BTreeMap<String, String>,
) -> Result<bytes::Bytes, ApiError> {
    use envd::connect::{Codec, Deframer};
    use envd::process::StartRequest;
    let codec = Codec::of(content_type, true)
        .ok_or_else(|| ApiError::invalid(format!("content type {content_type:?}")))?;
    let mut d = Deframer::default();
    d.push(body);
    let frame = d
        .next(16 << 20)
        .map_err(|e| ApiError::invalid(e.message))?
        .ok_or_else(|| ApiError::invalid("the request holds no message"))?;
    let mut start: StartRequest = codec
        .decode(&frame.payload)
        .map_err(|e| ApiError::invalid(e.message))?;
    if let Some(process) = start.process.as_mut() {
        if process.cwd.as_deref().is_none_or(str::is_empty) {
            process.cwd = Some(crate::e2b::USER_HOME.into());
        }
        for (k, v) in env {
            process.envs.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    Ok(codec.frame(&start))
}

/// A berth workspace's port (not a sandbox's: those are public, as E2B's are): for a request with a
/// preview grant for it (in the query, whereupon it becomes a cookie of that host, or in that cookie),
/// or with a token of a user who may act on the workspace.
async fn workspace_port(
    s: &AppState,
    id: &str,
    port: u16,
    mut req: Request,
) -> E2bResult<Response> {
    let missing = || ApiError::not_found(format!("no sandbox or workspace {id}"));
    let ws = s.workspaces.get(id).await.map_err(|_| missing())?;
    let from_query = granted_in_query(req.uri());
    let from_cookie = granted_in_cookie(req.headers());
    let allowed = |g: &Option<String>| {
        g.as_deref()
            .and_then(|g| s.workspaces.preview_allows(g, id, port))
    };
    let secure = req
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes() == b"https");
    let mut set_cookie = None;
    if let (Some(expires), Some(grant)) = (allowed(&from_query), from_query.as_deref()) {
        let cookie = grant_cookie(grant, expires, secure)?;
        // A browser goes on to the same address without the grant, holding it as a cookie of this
        // host: out of the address bar, and of the Referer the page's own requests would carry.
        if matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        ) {
            let location = without_grant(req.uri());
            let location = location.strip_prefix("/e2b").unwrap_or(&location);
            let location = if location.starts_with('/') {
                location.to_string()
            } else {
                format!("/{location}")
            };
            return Ok(Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(axum::http::header::LOCATION, location)
                .header(axum::http::header::SET_COOKIE, cookie)
                .body(Body::empty())
                .expect("a response"));
        }
        set_cookie = Some(cookie);
        // The grant is berth's, not the app's.
        if let Ok(uri) = without_grant(req.uri()).parse() {
            *req.uri_mut() = uri;
        }
    } else if allowed(&from_cookie).is_none() {
        let who = caller(s, req.headers()).await.map_err(|_| {
            ApiError::Unauthorized(format!(
                "port {port} of workspace {id} takes a preview URL (POST /api/workspaces/{id}/preview) or a token of a user who may act on it"
            ))
        })?;
        if !who.may_act_on(&ws.owner) {
            return Err(missing().into());
        }
    }
    let mut resp = port_proxy(s, &ws, port, req).await?;
    if let Some(cookie) = set_cookie {
        resp.headers_mut()
            .append(axum::http::header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// The cookie a preview grant becomes: this host's alone (no `Domain`), for as long as the grant lasts,
/// out of scripts' reach.
fn grant_cookie(
    grant: &str,
    expires: DateTime<Utc>,
    secure: bool,
) -> Result<axum::http::HeaderValue, ApiError> {
    let max_age = (expires - Utc::now()).num_seconds().max(0);
    let cookie = format!(
        "{}={grant}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        super::preview::GRANT,
        if secure { "; Secure" } else { "" }
    );
    cookie
        .parse()
        .map_err(|_| ApiError::invalid("the preview grant is not a cookie value"))
}

fn granted_in_query(uri: &axum::http::Uri) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(uri.query()?).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == super::preview::GRANT)
        .map(|(_, v)| v)
}

fn granted_in_cookie(headers: &HeaderMap) -> Option<String> {
    cookie_pairs(headers)
        .find(|(k, _)| *k == super::preview::GRANT)
        .map(|(_, v)| v.to_string())
}

fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(axum::http::header::COOKIE)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// The request's path and query without berth's grant.
fn without_grant(uri: &axum::http::Uri) -> String {
    let rest: Vec<(String, String)> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != super::preview::GRANT)
        .collect();
    let query = serde_urlencoded::to_string(&rest).unwrap_or_default();
    match query.as_str() {
        "" => uri.path().to_string(),
        q => format!("{}?{q}", uri.path()),
    }
}

/// Any other port of a sandbox (or a workspace): plain HTTP to the container (on its own network; the
/// host's loopback for a host-network one), as E2B exposes a sandbox's ports. Cookies go through but
/// berth's preview grant.
async fn port_proxy(
    s: &AppState,
    ws: &crate::workspaces::model::Workspace,
    port: u16,
    req: Request,
) -> E2bResult<Response> {
    let host = match ws.network.as_str() {
        "host" => std::net::IpAddr::from([127, 0, 0, 1]),
        "none" => {
            return Err(ApiError::conflict(format!(
                "{} has no network (network: none), so no port to reach",
                ws.id
            ))
            .into())
        }
        _ => s
            .workspaces
            .engine()
            .container_address(&ws.id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::conflict(format!("{} has no address (is it running?)", ws.id))
            })?,
    };
    let path = req
        .uri()
        .path()
        .strip_prefix("/e2b")
        .unwrap_or(req.uri().path())
        .to_string();
    let target = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let cookies: Vec<String> = cookie_pairs(req.headers())
        .filter(|(k, _)| *k != super::preview::GRANT)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let cookie = (!cookies.is_empty())
        .then(|| cookies.join("; ").parse().ok())
        .flatten();
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::Engine(format!("port {port} of {}: nothing answers ({e})", ws.id))
    };
    if super::relay::is_websocket(&req) {
        // A dev server's live reload, a terminal, an app's own socket: joined through.
        let extra = cookie
            .map(|c| (axum::http::header::COOKIE, c))
            .into_iter()
            .collect();
        return super::relay::websocket(
            &format!("{host}:{port}"),
            &target,
            req,
            |name| !NOT_FORWARDED.contains(&name),
            extra,
        )
        .await
        .map_err(|e| unreachable(&e).into());
    }
    let url = format!("http://{host}:{port}{target}");
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| ApiError::invalid("unsupported method"))?;
    let mut upstream = s.gateway_client.request(method, &url);
    for (name, value) in req.headers() {
        let n = name.as_str();
        if !super::relay::HOP_BY_HOP.contains(&n) && !NOT_FORWARDED.contains(&n) {
            upstream = upstream.header(n, value.as_bytes());
        }
    }
    if let Some(c) = cookie {
        upstream = upstream.header(axum::http::header::COOKIE, c);
    }
    let body = reqwest::Body::wrap_stream(req.into_body().into_data_stream());
    let resp = upstream
        .body(body)
        .send()
        .await
        .map_err(|e| unreachable(&e))?;
    let out = super::relay::response_head(&resp, &[]);
    Ok(out
        .body(Body::from_stream(resp.bytes_stream()))
        .expect("a response"))
}

/// `{port}-{sandboxID}.{domain}`: the request becomes that sandbox's traffic (`/e2b` + its path, with the
/// sandbox's headers), so E2B's host names reach a sandbox's ports through berth.
pub async fn route_by_host(
    domain: String,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase());
    let suffix = format!(".{}", domain.to_ascii_lowercase());
    let target = host
        .as_deref()
        .and_then(|h| h.strip_suffix(&suffix))
        .and_then(|label| label.split_once('-'))
        .and_then(|(port, id)| Some((port.parse::<u16>().ok()?, id.to_string())));
    if let Some((port, id)) = target {
        let path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        if let Ok(uri) = format!("/e2b{path_and_query}").parse() {
            *req.uri_mut() = uri;
            let headers = req.headers_mut();
            if let (Ok(id), Ok(port)) = (id.parse(), port.to_string().parse()) {
                headers.insert("e2b-sandbox-id", id);
                headers.insert("e2b-sandbox-port", port);
            }
        }
    }
    next.run(req).await
}

/// Whether a `/files` request carries a valid signature of E2B's file URLs (`download_url`,
/// `upload_url`): `v1_` + base64(sha256("path:read|write:user:token[:expiration]")), unexpired.
fn file_url_signed(req: &Request, token: &str) -> bool {
    use base64::Engine as _;
    use sha2::Digest;
    let path = req.uri().path();
    if !(path == "/e2b/files" || path == "/files") {
        return false;
    }
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let (Some(file), Some(signature)) = (query.get("path"), query.get("signature")) else {
        return false;
    };
    let operation = if req.method() == axum::http::Method::GET {
        "read"
    } else {
        "write"
    };
    let user = query.get("username").map(String::as_str).unwrap_or("");
    let raw = match query.get("signature_expiration") {
        Some(exp) => {
            let Ok(at) = exp.parse::<i64>() else {
                return false;
            };
            if at < Utc::now().timestamp() {
                return false;
            }
            format!("{file}:{operation}:{user}:{token}:{exp}")
        }
        None => format!("{file}:{operation}:{user}:{token}"),
    };
    let digest = sha2::Sha256::digest(raw.as_bytes());
    let expected = format!(
        "v1_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    );
    crate::secrets::constant_time_eq(expected.as_bytes(), signature.as_bytes())
}
