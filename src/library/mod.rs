//! The library: skills, commands, rules, agents, MCP servers, workspace templates, init-script fragments
//! and tools, kept as files in a git repository (optionally with a remote). Every save and delete is a
//! commit; writes are serialized and atomic, so the history and the files never disagree.

mod frontmatter;
mod git;
pub mod items;
mod opencode;
mod remote;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use utoipa::ToSchema;

use crate::catalog::{Catalog, Template};
use crate::error::{ApiError, ApiResult};
use git::Git;
pub use items::{check_name, ItemType};
pub use remote::{LibraryStatus, SyncOutcome};

#[derive(Clone)]
pub struct Library {
    inner: Arc<Inner>,
}

struct Inner {
    git: Git,
    remote: Option<String>,
    catalog: Catalog,
    /// One writer at a time: saves, deletes and syncs each leave the repository in a committed state.
    lock: tokio::sync::Mutex<()>,
    /// Goes up when a writer is done: what is derived from the library is made again when it moved.
    version: std::sync::atomic::AtomicU64,
}

/// The writer's turn; the library's version goes up when it ends, whatever the writer did.
struct Writing<'a> {
    _turn: tokio::sync::MutexGuard<'a, ()>,
    version: &'a std::sync::atomic::AtomicU64,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemSummary {
    pub name: String,
    pub description: Option<String>,
    pub path: String,
    /// A template's fields (`distro`, `skills`, ...), an agent's (`model`, ...): see `Item`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Item {
    #[serde(rename = "type")]
    pub item_type: ItemType,
    pub name: String,
    pub description: Option<String>,
    pub path: String,
    pub content: String,
    /// Skills only: the skill's other files, relative to its directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
    /// Skills only: the same files, as Open Agent's dashboard names them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<Vec<String>>,
    /// What the content says, as fields (Open Agent's dashboard reads templates and agents so): a
    /// template's `distro`, `skills`, `env_vars`, `init_scripts`, `init_script`, …; an agent's
    /// `model`, `tools`, `permissions`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Library {
    /// Opens the repository at `root`, creating it (or cloning `remote`) when missing.
    pub async fn open(
        root: &Path,
        remote: Option<String>,
        ssh_key: Option<PathBuf>,
        catalog: Catalog,
    ) -> anyhow::Result<Self> {
        let git = Git::new(root, ssh_key.clone());
        if !root.join(".git").exists() {
            std::fs::create_dir_all(root)
                .with_context(|| format!("create library {}", root.display()))?;
            let cloned = match &remote {
                Some(url) => {
                    let parent = Git::new(root.parent().unwrap_or(Path::new("/")), ssh_key);
                    let target = root.to_string_lossy().into_owned();
                    match parent.run(&["clone", "-q", "--", url, &target]).await {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!(error = %e, "cloning the library remote failed; starting an empty library");
                            false
                        }
                    }
                }
                None => false,
            };
            if !cloned {
                git.run(&["init", "-q", "-b", "main"]).await?;
                if remote.is_none() {
                    std::fs::write(
                        root.join("README.md"),
                        "# berth library\n\nSkills, commands, rules, agents, MCP servers, workspace templates, init scripts and tools.\n",
                    )?;
                    git.run(&["add", "README.md"]).await?;
                    git.run(&["commit", "-q", "-m", "Start the library"])
                        .await?;
                }
            }
            if !git.succeeds(&["rev-parse", "--verify", "-q", "HEAD"]).await {
                // An empty clone or init: name the first branch predictably.
                git.run(&["symbolic-ref", "HEAD", "refs/heads/main"])
                    .await?;
            }
        }
        roll_back_cut_off_changes(&git).await?;
        if let Some(url) = &remote {
            if git.run(&["remote", "get-url", "origin"]).await.is_ok() {
                git.run(&["remote", "set-url", "origin", url]).await?;
            } else {
                git.run(&["remote", "add", "origin", url]).await?;
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                git,
                remote,
                catalog,
                lock: tokio::sync::Mutex::new(()),
                version: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Changes with every save, delete and sync (read it before reading what it covers).
    pub fn version(&self) -> u64 {
        self.inner.version.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn writing(&self) -> Writing<'_> {
        Writing {
            _turn: self.inner.lock.lock().await,
            version: &self.inner.version,
        }
    }

    fn root(&self) -> &Path {
        self.inner.git.dir()
    }

    /// `root/rel`, refusing any path whose existing components include a symlink (a pulled library could
    /// otherwise point a write or a sync outside itself).
    fn safe_path(&self, rel: &Path) -> ApiResult<PathBuf> {
        let mut p = self.root().to_path_buf();
        for c in rel.components() {
            p.push(c);
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                if m.file_type().is_symlink() {
                    return Err(ApiError::invalid(format!(
                        "{} is a symlink; the library does not follow symlinks",
                        rel.display()
                    )));
                }
            }
        }
        Ok(p)
    }

    pub async fn list(&self, t: ItemType) -> ApiResult<Vec<ItemSummary>> {
        let dir = self.safe_path(Path::new(t.dir()))?;
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(ApiError::Internal(e.into())),
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some((_, name)) = ItemType::item_of(&format!("{}/{file_name}", t.dir())) else {
                continue;
            };
            if items::check_name(&name).is_err() {
                continue;
            }
            if let Ok(item) = self.get(t, &name).await {
                out.push(ItemSummary {
                    name,
                    description: item.description,
                    path: item.path,
                    fields: item.fields,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub async fn get(&self, t: ItemType, name: &str) -> ApiResult<Item> {
        items::check_name(name)?;
        let rel = t.file(name);
        let path = self.safe_path(&rel)?;
        let content = match tokio::fs::read_to_string(&path).await {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ApiError::not_found(format!("no {} named {name}", t.dir())))
            }
            Err(e) => return Err(ApiError::Internal(e.into())),
        };
        let files = if t == ItemType::Skill {
            Some(
                self.skill_files(name)?
                    .into_iter()
                    .map(|(p, _)| p)
                    .filter(|p| p != "SKILL.md")
                    .collect(),
            )
        } else {
            None
        };
        Ok(Item {
            item_type: t,
            name: name.to_string(),
            description: items::describe(t, &content),
            path: rel.to_string_lossy().into_owned(),
            fields: items::fields_of(t, name, &content),
            references: files.clone(),
            content,
            files,
        })
    }

    /// Saves an item (and, for a skill, any extra files given) in one commit.
    pub async fn save(
        &self,
        t: ItemType,
        name: &str,
        content: &str,
        files: &BTreeMap<String, String>,
        author: &str,
    ) -> ApiResult<Item> {
        items::check_name(name)?;
        items::check_item(t, name, content)?;
        if t == ItemType::WorkspaceTemplate {
            self.check_template(name, content)?;
        }
        if t != ItemType::Skill && !files.is_empty() {
            return Err(ApiError::invalid("only skills have extra files"));
        }
        let mut writes = vec![(t.file(name), content.to_string())];
        for (path, body) in files {
            let rel = items::check_skill_file(path)?;
            if rel == Path::new("SKILL.md") {
                return Err(ApiError::invalid(
                    "SKILL.md is the skill's content, not one of its files",
                ));
            }
            items::check_content(body)?;
            writes.push((
                PathBuf::from(format!("skill/{name}")).join(rel),
                body.clone(),
            ));
        }
        let _guard = self.writing().await;
        let existed = self.root().join(t.file(name)).exists();
        let verb = if existed { "Update" } else { "Add" };
        self.write_and_commit(&writes, &format!("{verb} {} {name}", t.dir()), author)
            .await?;
        drop(_guard);
        self.get(t, name).await
    }

    pub async fn delete(&self, t: ItemType, name: &str, author: &str) -> ApiResult<()> {
        items::check_name(name)?;
        let rel = match t {
            ItemType::Skill => PathBuf::from(format!("skill/{name}")),
            _ => t.file(name),
        };
        let _guard = self.writing().await;
        let path = self.safe_path(&rel)?;
        if !self.root().join(t.file(name)).exists() {
            return Err(ApiError::not_found(format!("no {} named {name}", t.dir())));
        }
        let rel_s = rel.to_string_lossy().into_owned();
        let git = &self.inner.git;
        git.run(&["rm", "-r", "-q", "--ignore-unmatch", "--", &rel_s])
            .await
            .map_err(internal)?;
        // Untracked leftovers (never committed) go too.
        if path.exists() {
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
        self.commit(&format!("Delete {} {name}", t.dir()), author)
            .await
    }

    pub async fn read_skill_file(&self, name: &str, file: &str) -> ApiResult<String> {
        items::check_name(name)?;
        let rel = PathBuf::from(format!("skill/{name}")).join(items::check_skill_file(file)?);
        let path = self.safe_path(&rel)?;
        if !self.root().join(ItemType::Skill.file(name)).exists() {
            return Err(ApiError::not_found(format!("no skill named {name}")));
        }
        match tokio::fs::read(&path).await {
            Ok(b) => String::from_utf8(b)
                .map_err(|_| ApiError::invalid(format!("{file} is not UTF-8 text"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::not_found(
                format!("skill {name} has no file {file}"),
            )),
            Err(e) => Err(ApiError::Internal(e.into())),
        }
    }

    pub async fn delete_skill_file(&self, name: &str, file: &str, author: &str) -> ApiResult<()> {
        items::check_name(name)?;
        let sub = items::check_skill_file(file)?;
        if sub == Path::new("SKILL.md") {
            return Err(ApiError::invalid(
                "delete the skill itself to remove SKILL.md",
            ));
        }
        let rel = PathBuf::from(format!("skill/{name}")).join(sub);
        let _guard = self.writing().await;
        let path = self.safe_path(&rel)?;
        if !path.is_file() {
            return Err(ApiError::not_found(format!(
                "skill {name} has no file {file}"
            )));
        }
        let rel_s = rel.to_string_lossy().into_owned();
        self.inner
            .git
            .run(&["rm", "-q", "--ignore-unmatch", "--", &rel_s])
            .await
            .map_err(internal)?;
        let _ = std::fs::remove_file(&path);
        self.commit(&format!("Delete {file} from skill {name}"), author)
            .await
    }

    /// Every regular file of a skill, relative to its directory; symlinks and hidden files are skipped.
    pub fn skill_files(&self, name: &str) -> ApiResult<Vec<(String, Vec<u8>)>> {
        items::check_name(name)?;
        let dir = self.safe_path(Path::new(&format!("skill/{name}")))?;
        let mut out = Vec::new();
        collect_files(&dir, &dir, &mut out).map_err(|e| ApiError::Internal(e.into()))?;
        out.sort();
        Ok(out)
    }

    pub async fn exists(&self, t: ItemType, name: &str) -> bool {
        items::check_name(name).is_ok()
            && self
                .safe_path(&t.file(name))
                .map(|p| p.is_file())
                .unwrap_or(false)
    }

    pub async fn skill_setup_commands(&self, name: &str) -> Vec<String> {
        match self.get(ItemType::Skill, name).await {
            Ok(item) => items::skill_meta(name, &item.content)
                .map(|m| m.setup_commands)
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// A workspace template from the library, parsed; `Ok(None)` when there is none of that name.
    pub async fn template(&self, name: &str) -> ApiResult<Option<Template>> {
        match self.get(ItemType::WorkspaceTemplate, name).await {
            Ok(item) => Ok(Some(parse_template(name, &item.content)?)),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn init_script(&self, name: &str) -> Option<String> {
        self.get(ItemType::InitScript, name)
            .await
            .ok()
            .map(|i| i.content)
    }

    fn check_template(&self, name: &str, content: &str) -> ApiResult<()> {
        let t = parse_template(name, content)?;
        if let Some(d) = &t.distro {
            if self.inner.catalog.distro(d).is_none() {
                return Err(ApiError::invalid(format!(
                    "template {name}: unknown distro {d:?}; valid: {}",
                    self.inner.catalog.distro_names().join(", ")
                )));
            }
        }
        for f in &t.init_scripts {
            let in_library = items::check_name(f).is_ok()
                && self.root().join(ItemType::InitScript.file(f)).is_file();
            if !in_library && self.inner.catalog.init_script(f).is_none() {
                return Err(ApiError::invalid(format!(
                    "template {name}: unknown init script {f:?}"
                )));
            }
        }
        crate::workspaces::validate::packages(&t.packages)?;
        crate::workspaces::validate::item_names("skill", &t.skills)?;
        crate::workspaces::validate::env_vars(&t.env_vars)?;
        Ok(())
    }

    /// Writes files atomically (temp file, rename) and commits them; on any failure the previous
    /// contents are put back, so nothing half-written stays.
    async fn write_and_commit(
        &self,
        writes: &[(PathBuf, String)],
        message: &str,
        author: &str,
    ) -> ApiResult<()> {
        let mut previous: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
        let result = async {
            for (rel, body) in writes {
                let path = self.safe_path(rel)?;
                previous.push((path.clone(), std::fs::read(&path).ok()));
                write_atomic(&path, body.as_bytes()).map_err(|e| ApiError::Internal(e.into()))?;
                let rel_s = rel.to_string_lossy().into_owned();
                self.inner
                    .git
                    .run(&["add", "--", &rel_s])
                    .await
                    .map_err(internal)?;
            }
            self.commit(message, author).await
        }
        .await;
        if result.is_err() {
            for (path, old) in previous.into_iter().rev() {
                let _ = match old {
                    Some(bytes) => write_atomic(&path, &bytes),
                    None => std::fs::remove_file(&path),
                };
            }
            let _ = self.inner.git.run(&["reset", "-q"]).await;
        }
        result
    }

    async fn commit(&self, message: &str, author: &str) -> ApiResult<()> {
        let git = &self.inner.git;
        if git.succeeds(&["diff", "--cached", "--quiet"]).await {
            return Ok(()); // Saved the same content again: nothing to record.
        }
        let author = format!("{author} <{author}@berth>");
        git.run(&["commit", "-q", "-m", message, "--author", &author])
            .await
            .map_err(internal)?;
        Ok(())
    }
}

/// berth changes the library only by whole commits; anything else in the work tree or index at start-up is
/// a save, delete or sync a crash cut off before its commit (its client never got a success). It is
/// rolled back, so the next unrelated commit never sweeps it in; berth's temp files go with it.
async fn roll_back_cut_off_changes(git: &Git) -> anyhow::Result<()> {
    let changes = git.run(&["status", "--porcelain"]).await?;
    if changes.trim().is_empty() {
        return Ok(());
    }
    let paths: Vec<&str> = changes.lines().map(|l| l.get(3..).unwrap_or(l)).collect();
    tracing::warn!(paths = ?paths, "rolling back library changes a crash left uncommitted");
    if git
        .succeeds(&["rev-parse", "--verify", "-q", "MERGE_HEAD"])
        .await
    {
        git.run(&["merge", "--abort"]).await?;
    }
    if git.succeeds(&["rev-parse", "--verify", "-q", "HEAD"]).await {
        git.run(&["reset", "-q", "--hard", "HEAD"]).await?;
    } else {
        git.run(&["rm", "-r", "-q", "--cached", "--ignore-unmatch", "."])
            .await?;
    }
    git.run(&["clean", "-f", "-d", "-q"]).await?;
    Ok(())
}

fn internal(e: git::GitError) -> ApiError {
    ApiError::Internal(e.into())
}

pub fn parse_template(name: &str, content: &str) -> ApiResult<Template> {
    let t: Template = serde_yaml::from_str(content)
        .map_err(|e| ApiError::invalid(format!("template {name}: {e}")))?;
    if t.name != name {
        return Err(ApiError::invalid(format!(
            "template {name}: its name field says {:?}",
            t.name
        )));
    }
    Ok(t)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_file_name(format!(
        ".{}.berth-tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry.file_type()?;
        let path = entry.path();
        if ft.is_dir() {
            collect_files(base, &path, out)?;
        } else if ft.is_file() {
            let rel = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read(&path)?));
        }
    }
    Ok(())
}
