//! `/api/library` routes Open Agent's dashboard calls beyond the seed's items: all MCP servers as one
//! map, a skill's files as its "references" (read as raw text), and the collections berth has no
//! counterpart for (plugins, config profiles, built-in commands), answered empty so its screens load.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::{Json, Path};
use crate::audit::{Audit, Entry};
use crate::error::{ApiError, ApiResult};
use crate::library::{ItemType, SyncOutcome};
use crate::principal::Principal;
use crate::workspaces::Workspaces;

#[utoipa::path(
    get, path = "/api/library/mcps", tag = "library",
    summary = "Every MCP server of the library, as one map by name",
    responses((status = 200, description = "the servers: `{name: {type, command, env, url, headers, enabled}}`", body = Object)),
)]
pub async fn get_mcps(State(ws): State<Workspaces>) -> ApiResult<Json<Map<String, Value>>> {
    let library = ws.library();
    let mut out = Map::new();
    for item in library.list(ItemType::Mcp).await? {
        let full = library.get(ItemType::Mcp, &item.name).await?;
        let v: Value = serde_json::from_str(&full.content).unwrap_or_else(|_| json!({}));
        out.insert(item.name, v);
    }
    Ok(Json(out))
}

#[utoipa::path(
    put, path = "/api/library/mcps", tag = "library",
    summary = "Replace every MCP server of the library with this map (one commit per change)",
    request_body(content = Object, description = "`{name: {type, command, env, url, headers, enabled}}`"),
    responses(
        (status = 200, description = "the servers now", body = Object),
        (status = 400, description = "a name berth refuses, or a server that is not a JSON object; nothing is changed"),
        (status = 403, description = "the caller may not write the library"),
    ),
)]
pub async fn put_mcps(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Json(map): Json<Map<String, Value>>,
) -> ApiResult<Json<Map<String, Value>>> {
    super::library::check_writer(&ws, &who)?;
    // All checked before anything is written: a refused map changes nothing.
    for (name, server) in &map {
        crate::library::check_name(name)?;
        if !server.is_object() {
            return Err(ApiError::invalid(format!(
                "mcp {name}: must be a JSON object"
            )));
        }
    }
    let library = ws.library();
    let before = library.list(ItemType::Mcp).await?;
    let mut changed = Vec::new();
    for (name, server) in &map {
        let content =
            serde_json::to_string_pretty(server).map_err(|e| ApiError::Internal(e.into()))?;
        let same = library
            .get(ItemType::Mcp, name)
            .await
            .is_ok_and(|i| serde_json::from_str::<Value>(&i.content).ok().as_ref() == Some(server));
        if !same {
            library
                .save(ItemType::Mcp, name, &content, &BTreeMap::new(), &who.name)
                .await?;
            changed.push((ItemType::Mcp, name.clone()));
        }
    }
    for old in before {
        if !map.contains_key(&old.name) {
            library.delete(ItemType::Mcp, &old.name, &who.name).await?;
            changed.push((ItemType::Mcp, old.name));
        }
    }
    for (_, name) in &changed {
        audit
            .record(Entry::ok(
                &who.name,
                "library.save",
                Some(&format!("mcp/{name}")),
            ))
            .await;
    }
    ws.resync_users_of(&changed).await?;
    get_mcps(State(ws)).await
}

#[utoipa::path(
    get, path = "/api/library/skills/{name}/references/{path}", tag = "library",
    summary = "One file of a skill, as raw text (Open Agent's \"references\")",
    params(("name" = String, Path, description = "the skill's name"), ("path" = String, Path, description = "the file's path inside the skill; may contain `/`")),
    responses(
        (status = 200, description = "the file's text", content_type = "text/plain", body = String),
        (status = 400, description = "a path outside the skill, or a file that is not UTF-8"),
        (status = 404, description = "no such skill or file"),
    ),
)]
pub async fn get_reference(
    State(ws): State<Workspaces>,
    Path((name, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let content = ws.library().read_skill_file(&name, &file).await?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], content).into_response())
}

#[utoipa::path(
    get, path = "/api/library/plugins", tag = "library",
    summary = "OpenCode plugins of the library: berth has none (always `{}`)",
    responses((status = 200, description = "no plugins", body = Object)),
)]
pub async fn get_plugins() -> Json<Value> {
    Json(json!({}))
}

#[utoipa::path(
    get, path = "/api/library/config-profile", tag = "library",
    summary = "Configuration profiles: berth has none (always `[]`; the server's settings apply)",
    responses((status = 200, description = "no profiles", body = Vec<Object>)),
)]
pub async fn get_config_profiles() -> Json<Vec<Value>> {
    Json(Vec::new())
}

/// Commands built into each agent backend, by backend.
#[derive(Serialize, ToSchema)]
pub struct BuiltinCommands {
    #[schema(value_type = Vec<Object>)]
    opencode: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    claudecode: Vec<Value>,
}

#[utoipa::path(
    get, path = "/api/library/builtin-commands", tag = "library",
    summary = "Built-in commands by backend: none that berth runs (its commands are the library's)",
    responses((status = 200, description = "the lists, both present", body = BuiltinCommands)),
)]
pub async fn get_builtin_commands() -> Json<BuiltinCommands> {
    Json(BuiltinCommands {
        opencode: Vec::new(),
        claudecode: Vec::new(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Committed {
    ok: bool,
    /// Always false: berth commits each change as it is saved, so nothing is left to commit.
    committed: bool,
    message: String,
}

#[utoipa::path(
    post, path = "/api/library/commit", tag = "library",
    summary = "Commit pending changes: berth has none (every save is a commit)",
    responses((status = 200, description = "nothing to commit", body = Committed)),
)]
pub async fn commit(Extension(_who): Extension<Principal>) -> Json<Committed> {
    Json(Committed {
        ok: true,
        committed: false,
        message: "berth commits every change as it is saved".into(),
    })
}

#[utoipa::path(
    post, path = "/api/library/push", tag = "library",
    summary = "Push to the remote (as sync: berth pulls, then pushes)",
    responses(
        (status = 200, description = "what moved", body = SyncOutcome),
        (status = 400, description = "the library has no remote"),
        (status = 403, description = "the caller may not write the library"),
        (status = 409, description = "the histories diverged, or the remote cannot be reached"),
    ),
)]
pub async fn push(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<SyncOutcome>> {
    super::library::sync_library(State(ws), State(audit), Extension(who)).await
}

#[utoipa::path(
    put, path = "/api/library/skills/{name}/references/{path}", tag = "library",
    summary = "Save one file of a skill (as `PUT /api/library/skill/{name}/files/{path}`)",
    params(("name" = String, Path, description = "the skill's name"), ("path" = String, Path, description = "the file's path inside the skill; may contain `/`")),
    request_body = super::library::SaveFile,
    responses(
        (status = 200, description = "the skill", body = crate::library::Item),
        (status = 400, description = "a path outside the skill, or content berth refuses"),
        (status = 403, description = "the caller may not write the library"),
        (status = 404, description = "no such skill"),
    ),
)]
pub async fn put_reference(
    ws: State<Workspaces>,
    audit: State<Audit>,
    who: Extension<Principal>,
    path: Path<(String, String)>,
    body: Json<super::library::SaveFile>,
) -> ApiResult<Json<crate::library::Item>> {
    super::library::save_skill_file(ws, audit, who, path, body).await
}

#[utoipa::path(
    delete, path = "/api/library/skills/{name}/references/{path}", tag = "library",
    summary = "Delete one file of a skill (as `DELETE /api/library/skill/{name}/files/{path}`)",
    params(("name" = String, Path, description = "the skill's name"), ("path" = String, Path, description = "the file's path inside the skill; may contain `/`")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "a path outside the skill, or the skill's `SKILL.md`"),
        (status = 403, description = "the caller may not write the library"),
        (status = 404, description = "no such skill or file"),
    ),
)]
pub async fn delete_reference(
    ws: State<Workspaces>,
    audit: State<Audit>,
    who: Extension<Principal>,
    path: Path<(String, String)>,
) -> ApiResult<axum::http::StatusCode> {
    super::library::delete_skill_file(ws, audit, who, path).await
}

/// Open Agent's settings for its own harness, as berth answers them: no agent hidden, `build` first.
#[derive(Serialize, ToSchema)]
pub struct HarnessConfig {
    hidden_agents: Vec<String>,
    default_agent: String,
}

#[utoipa::path(
    get, path = "/api/library/sandboxed-sh/config", tag = "library",
    summary = "Open Agent's harness settings: no hidden agents, `build` by default",
    responses((status = 200, description = "the settings", body = HarnessConfig)),
)]
pub async fn harness_config() -> Json<HarnessConfig> {
    Json(HarnessConfig {
        hidden_agents: Vec::new(),
        default_agent: "build".into(),
    })
}

#[utoipa::path(
    get, path = "/api/library/sandboxed-sh/agents", tag = "library",
    summary = "The agents a mission may name: OpenCode's own, then the library's",
    responses((status = 200, description = "agent names", body = Vec<String>)),
)]
pub async fn harness_agents(
    State(m): State<crate::missions::Missions>,
) -> ApiResult<Json<Vec<String>>> {
    Ok(Json(m.agent_names().await?))
}
