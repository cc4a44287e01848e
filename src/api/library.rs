//! `/api/library`: items by type, skill files, status and sync with the remote. Saving or deleting a skill
//! or tool re-syncs the workspaces that use it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::shapes;
use super::{Json, Path};
use crate::audit::{Audit, Entry};
use crate::error::{ApiError, ApiResult};
use crate::library::{Item, ItemSummary, ItemType, LibraryStatus, SyncOutcome};
use crate::principal::Principal;
use crate::workspaces::Workspaces;

#[utoipa::path(
    get, path = "/api/library/{type}", tag = "library",
    summary = "The library's items of a type",
    params(("type" = String, Path, description = "`skill`, `command`, `rule`, `agent`, `mcp`, `workspace-template`, `init-script` or `tool`")),
    responses(
        (status = 200, description = "the items", body = Vec<ItemSummary>),
        (status = 400, description = "an unknown type"),
    ),
)]
pub async fn list_items(
    State(ws): State<Workspaces>,
    Path(t): Path<String>,
) -> ApiResult<Json<Vec<ItemSummary>>> {
    let t = ItemType::parse(&t)?;
    Ok(Json(ws.library().list(t).await?))
}

#[utoipa::path(
    get, path = "/api/library/{type}/{name}", tag = "library",
    summary = "Read a library item",
    params(("type" = String, Path, description = "`skill`, `command`, `rule`, `agent`, `mcp`, `workspace-template`, `init-script` or `tool`"), ("name" = String, Path, description = "the item's name")),
    responses(
        (status = 200, description = "the item", body = Item),
        (status = 400, description = "an unknown type"),
        (status = 404, description = "no such item"),
    ),
)]
pub async fn get_item(
    State(ws): State<Workspaces>,
    Path((t, name)): Path<(String, String)>,
) -> ApiResult<Json<Item>> {
    let t = ItemType::parse(&t)?;
    Ok(Json(ws.library().get(t, &name).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
// Open Agent's dashboard sends an agent's `name`, `path`, `model` and `permissions` beside its
// content, and template fields berth has no counterpart for: accepted, and read from `content`.
#[allow(dead_code)]
pub struct SaveItem {
    /// The item's main file (a skill's `SKILL.md`, a template's YAML, …). A template may be given as
    /// fields instead (below).
    content: Option<String>,
    /// Skills only: other files of the skill, by path relative to its directory.
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// Templates without `content`: the template's fields (Open Agent's dashboard writes them so).
    description: Option<String>,
    distro: Option<String>,
    skills: Option<Vec<String>>,
    /// A template's tools (names); an agent's `tools` map is sent along too, and read from `content`.
    #[schema(value_type = Option<Object>)]
    tools: Option<serde_json::Value>,
    packages: Option<Vec<String>>,
    env_vars: Option<BTreeMap<String, String>>,
    init_scripts: Option<Vec<String>>,
    init_script: Option<String>,
    network: Option<String>,
    /// Sent along by Open Agent's dashboard; what counts is `content` (its front matter).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    name: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    path: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    model: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    permissions: Option<serde_json::Value>,
    /// Open Agent's template fields berth has no counterpart for; ignored.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    encrypted_keys: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    shared_network: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    tailscale_mode: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    config_profile: Option<serde_json::Value>,
}

impl SaveItem {
    /// The item's content: as given, or a template written from its fields.
    fn content(&self, t: ItemType, name: &str) -> ApiResult<String> {
        if let Some(c) = &self.content {
            return Ok(c.clone());
        }
        if t != ItemType::WorkspaceTemplate {
            return Err(ApiError::invalid("content is required"));
        }
        let tpl = crate::catalog::Template {
            name: name.to_string(),
            description: self.description.clone().unwrap_or_default(),
            distro: self.distro.clone(),
            packages: self.packages.clone().unwrap_or_default(),
            skills: self.skills.clone().unwrap_or_default(),
            tools: match &self.tools {
                None => Vec::new(),
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|_| ApiError::invalid("tools: a list of tool names"))?,
            },
            env_vars: self.env_vars.clone().unwrap_or_default(),
            init_scripts: self.init_scripts.clone().unwrap_or_default(),
            init_script: self.init_script.clone().filter(|s| !s.is_empty()),
            network: self.network.clone(),
        };
        serde_yaml::to_string(&tpl).map_err(|e| ApiError::Internal(e.into()))
    }
}

#[utoipa::path(
    put, path = "/api/library/{type}/{name}", tag = "library",
    summary = "Save a library item (a git commit); workspaces using a saved skill or tool are re-synced",
    params(("type" = String, Path, description = "`skill`, `command`, `rule`, `agent`, `mcp`, `workspace-template`, `init-script` or `tool`"), ("name" = String, Path, description = "the item's name")),
    request_body = SaveItem,
    responses(
        (status = 200, description = "the saved item", body = Item),
        (status = 400, description = "an unknown type or name, or content that fails the type's checks (front matter, JSON, template fields), or files on a non-skill"),
        (status = 403, description = "the caller may not write the library, or a template with `network: host` from a non-admin"),
    ),
)]
pub async fn save_item(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path((t, name)): Path<(String, String)>,
    Json(req): Json<SaveItem>,
) -> ApiResult<Json<Item>> {
    check_writer(&ws, &who)?;
    let t = ItemType::parse(&t)?;
    let content = req.content(t, &name)?;
    if t == ItemType::WorkspaceTemplate {
        refuse_redacted(&name, &content)?;
    }
    if t == ItemType::WorkspaceTemplate && !who.is_admin() {
        // A template is used by whoever names it, admins too: host networking stays an admin's
        // choice even when the library is open to all.
        let network = serde_yaml::from_str::<serde_yaml::Value>(&content)
            .ok()
            .and_then(|v| {
                v.get("network")
                    .and_then(|n| n.as_str())
                    .map(str::to_string)
            });
        if network.as_deref() == Some("host") {
            who.require_admin("a template with network \"host\"")?;
        }
    }
    let item = ws
        .library()
        .save(t, &name, &content, &req.files, &who.name)
        .await?;
    record_write(&audit, &who, "library.save", t, &name, None).await;
    ws.resync_users_of(&[(t, name)]).await?;
    Ok(Json(item))
}

#[utoipa::path(
    delete, path = "/api/library/{type}/{name}", tag = "library",
    summary = "Delete a library item (a git commit)",
    params(("type" = String, Path, description = "`skill`, `command`, `rule`, `agent`, `mcp`, `workspace-template`, `init-script` or `tool`"), ("name" = String, Path, description = "the item's name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "an unknown type"),
        (status = 403, description = "the caller may not write the library (admins only unless `BERTH_LIBRARY_WRITERS=all`)"),
        (status = 404, description = "no such item"),
    ),
)]
pub async fn delete_item(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path((t, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_writer(&ws, &who)?;
    let t = ItemType::parse(&t)?;
    ws.library().delete(t, &name, &who.name).await?;
    record_write(&audit, &who, "library.delete", t, &name, None).await;
    ws.resync_users_of(&[(t, name)]).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/api/library/skill/{name}/files/{path}", tag = "library",
    summary = "Read one file of a skill",
    params(("name" = String, Path, description = "the skill's name"), ("path" = String, Path, description = "the file's path inside the skill; may contain `/`")),
    responses(
        (status = 200, description = "the file", body = shapes::SkillFile),
        (status = 400, description = "a path outside the skill, or a file that is not UTF-8"),
        (status = 404, description = "no such skill or file"),
    ),
)]
pub async fn get_skill_file(
    State(ws): State<Workspaces>,
    Path((name, file)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let content = ws.library().read_skill_file(&name, &file).await?;
    Ok(Json(
        serde_json::json!({ "skill": name, "path": file, "content": content }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveFile {
    /// The file's text.
    content: String,
}

#[utoipa::path(
    put, path = "/api/library/skill/{name}/files/{path}", tag = "library",
    summary = "Save one file of a skill (a git commit)",
    params(("name" = String, Path, description = "the skill's name"), ("path" = String, Path, description = "the file's path inside the skill; may contain `/`")),
    request_body = SaveFile,
    responses(
        (status = 200, description = "the skill", body = Item),
        (status = 400, description = "a path outside the skill, or content berth refuses"),
        (status = 403, description = "the caller may not write the library (admins only unless `BERTH_LIBRARY_WRITERS=all`)"),
        (status = 404, description = "no such skill"),
    ),
)]
pub async fn save_skill_file(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path((name, file)): Path<(String, String)>,
    Json(req): Json<SaveFile>,
) -> ApiResult<Json<Item>> {
    check_writer(&ws, &who)?;
    let library = ws.library();
    let skill = library.get(ItemType::Skill, &name).await?;
    let files = BTreeMap::from([(file.clone(), req.content)]);
    let item = library
        .save(ItemType::Skill, &name, &skill.content, &files, &who.name)
        .await?;
    record_write(
        &audit,
        &who,
        "library.save",
        ItemType::Skill,
        &name,
        Some(&file),
    )
    .await;
    ws.resync_users_of(&[(ItemType::Skill, name)]).await?;
    Ok(Json(item))
}

#[utoipa::path(
    delete, path = "/api/library/skill/{name}/files/{path}", tag = "library",
    summary = "Delete one file of a skill (a git commit)",
    params(("name" = String, Path, description = "the skill's name"), ("path" = String, Path, description = "the file's path inside the skill; may contain `/`")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "a path outside the skill, or the skill's `SKILL.md`"),
        (status = 403, description = "the caller may not write the library (admins only unless `BERTH_LIBRARY_WRITERS=all`)"),
        (status = 404, description = "no such skill or file"),
    ),
)]
pub async fn delete_skill_file(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path((name, file)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    check_writer(&ws, &who)?;
    ws.library()
        .delete_skill_file(&name, &file, &who.name)
        .await?;
    record_write(
        &audit,
        &who,
        "library.delete",
        ItemType::Skill,
        &name,
        Some(&file),
    )
    .await;
    ws.resync_users_of(&[(ItemType::Skill, name)]).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/api/library/status", tag = "library",
    summary = "The library repository: branch, remote, head, ahead and behind, clean",
    responses(
        (status = 200, description = "the status", body = LibraryStatus),
    ),
)]
pub async fn library_status(State(ws): State<Workspaces>) -> ApiResult<Json<LibraryStatus>> {
    Ok(Json(ws.library().status().await?))
}

#[utoipa::path(
    post, path = "/api/library/sync", tag = "library",
    summary = "Sync with the remote: fetch, fast-forward, push local commits, re-sync affected workspaces",
    responses(
        (status = 200, description = "what moved, and the workspaces re-synced", body = SyncOutcome),
        (status = 400, description = "the library has no remote"),
        (status = 403, description = "the caller may not write the library (admins only unless `BERTH_LIBRARY_WRITERS=all`)"),
        (status = 409, description = "`diverged_history`: local and remote histories diverged; `remote_unreachable`: the remote cannot be reached (neither changes anything); `push_failed`: the remote refused the push"),
    ),
)]
pub async fn sync_library(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
) -> ApiResult<Json<SyncOutcome>> {
    check_writer(&ws, &who)?;
    let mut outcome = ws.library().pull().await?;
    audit
        .record(
            Entry::ok(&who.name, "library.sync", None).detail(serde_json::json!({
                "changed": outcome.changed_items.len(),
            })),
        )
        .await;
    outcome.workspaces_synced = ws.resync_users_of(&outcome.changed_items).await?;
    Ok(Json(outcome))
}

async fn record_write(
    audit: &Audit,
    who: &Principal,
    action: &str,
    t: ItemType,
    name: &str,
    file: Option<&str>,
) {
    let target = format!("{}/{name}", t.dir());
    let detail = serde_json::json!({ "file": file });
    audit
        .record(Entry::ok(&who.name, action, Some(&target)).detail(detail))
        .await;
}

/// The library is the team's: everyone reads it, and writing needs the admin role unless the operator
/// opened it to all (`BERTH_LIBRARY_WRITERS=all`), since a skill's setup commands run inside every
/// workspace that lists it.
/// A template saved from a workspace's answer carries its env vars' redaction marker, not their
/// values: stored, the template would hand out the marker. Refused, naming the variables.
fn refuse_redacted(name: &str, content: &str) -> ApiResult<()> {
    let Ok(tpl) = crate::library::parse_template(name, content) else {
        return Ok(());
    };
    let masked: Vec<&str> = tpl
        .env_vars
        .iter()
        .filter(|(_, v)| v.as_str() == crate::workspaces::model::REDACTED)
        .map(|(k, _)| k.as_str())
        .collect();
    if !masked.is_empty() {
        return Err(ApiError::invalid(format!(
            "template {name}: env_vars {} hold the redaction marker a workspace answers instead of a value; send the values",
            masked.join(", ")
        )));
    }
    Ok(())
}

pub(super) fn check_writer(ws: &Workspaces, who: &Principal) -> ApiResult<()> {
    if ws.config().library_admin_only() {
        who.require_admin(
            "writing the library (BERTH_LIBRARY_WRITERS=all opens it to every user)",
        )?;
    }
    Ok(())
}
