//! `/api/library`: items by type, skill files, status and sync with the remote. Saving or deleting a skill
//! or tool re-syncs the workspaces that use it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;

use super::{Json, Path};
use crate::audit::{Audit, Entry};
use crate::error::ApiResult;
use crate::library::{Item, ItemSummary, ItemType, LibraryStatus, SyncOutcome};
use crate::principal::Principal;
use crate::workspaces::Workspaces;

pub async fn list_items(
    State(ws): State<Workspaces>,
    Path(t): Path<String>,
) -> ApiResult<Json<Vec<ItemSummary>>> {
    let t = ItemType::parse(&t)?;
    Ok(Json(ws.library().list(t).await?))
}

pub async fn get_item(
    State(ws): State<Workspaces>,
    Path((t, name)): Path<(String, String)>,
) -> ApiResult<Json<Item>> {
    let t = ItemType::parse(&t)?;
    Ok(Json(ws.library().get(t, &name).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveItem {
    content: String,
    /// Skills only: other files of the skill, by path relative to its directory.
    #[serde(default)]
    files: BTreeMap<String, String>,
}

pub async fn save_item(
    State(ws): State<Workspaces>,
    State(audit): State<Audit>,
    Extension(who): Extension<Principal>,
    Path((t, name)): Path<(String, String)>,
    Json(req): Json<SaveItem>,
) -> ApiResult<Json<Item>> {
    check_writer(&ws, &who)?;
    let t = ItemType::parse(&t)?;
    if t == ItemType::WorkspaceTemplate && !who.is_admin() {
        // A template is used by whoever names it, admins too: host networking stays an admin's
        // choice even when the library is open to all.
        let network = serde_yaml::from_str::<serde_yaml::Value>(&req.content)
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
        .save(t, &name, &req.content, &req.files, &who.name)
        .await?;
    record_write(&audit, &who, "library.save", t, &name, None).await;
    ws.resync_users_of(&[(t, name)]).await?;
    Ok(Json(item))
}

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

pub async fn get_skill_file(
    State(ws): State<Workspaces>,
    Path((name, file)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let content = ws.library().read_skill_file(&name, &file).await?;
    Ok(Json(
        serde_json::json!({ "skill": name, "path": file, "content": content }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveFile {
    content: String,
}

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

pub async fn library_status(State(ws): State<Workspaces>) -> ApiResult<Json<LibraryStatus>> {
    Ok(Json(ws.library().status().await?))
}

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
fn check_writer(ws: &Workspaces, who: &Principal) -> ApiResult<()> {
    if ws.config().library_admin_only() {
        who.require_admin(
            "writing the library (BERTH_LIBRARY_WRITERS=all opens it to every user)",
        )?;
    }
    Ok(())
}
