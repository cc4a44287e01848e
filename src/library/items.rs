//! Library item types, where each lives on disk, and the checks a saved item must pass.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use utoipa::ToSchema;

use super::frontmatter;
use crate::error::{ApiError, ApiResult};

pub const MAX_ITEM_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ItemType {
    Skill,
    Command,
    Rule,
    Agent,
    Mcp,
    WorkspaceTemplate,
    InitScript,
    Tool,
}

pub const ALL_TYPES: [ItemType; 8] = [
    ItemType::Skill,
    ItemType::Command,
    ItemType::Rule,
    ItemType::Agent,
    ItemType::Mcp,
    ItemType::WorkspaceTemplate,
    ItemType::InitScript,
    ItemType::Tool,
];

impl ItemType {
    pub fn parse(s: &str) -> ApiResult<Self> {
        // Plural spellings are accepted as aliases of the same collection.
        let known = |x: &str| ALL_TYPES.into_iter().find(|t| t.dir() == x);
        known(s)
            .or_else(|| s.strip_suffix('s').and_then(known))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "unknown library type {s:?}; valid types: {}",
                    ALL_TYPES.map(|t| t.dir()).join(", ")
                ))
            })
    }

    /// The directory of this type in the library, which is also its name in the API.
    pub fn dir(self) -> &'static str {
        match self {
            Self::Skill => "skill",
            Self::Command => "command",
            Self::Rule => "rule",
            Self::Agent => "agent",
            Self::Mcp => "mcp",
            Self::WorkspaceTemplate => "workspace-template",
            Self::InitScript => "init-script",
            Self::Tool => "tool",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Skill | Self::Command | Self::Rule | Self::Agent => "md",
            Self::Mcp => "json",
            Self::WorkspaceTemplate => "yaml",
            Self::InitScript => "sh",
            Self::Tool => "ts",
        }
    }

    /// The item's main file, relative to the library root.
    pub fn file(self, name: &str) -> PathBuf {
        match self {
            Self::Skill => PathBuf::from(format!("skill/{name}/SKILL.md")),
            t => PathBuf::from(format!("{}/{name}.{}", t.dir(), t.extension())),
        }
    }

    /// The name of the item a library-relative path belongs to, if any.
    pub fn item_of(path: &str) -> Option<(Self, String)> {
        let mut parts = path.splitn(3, '/');
        let dir = parts.next()?;
        let rest = parts.next()?;
        let t = ALL_TYPES.into_iter().find(|t| t.dir() == dir)?;
        let name = if t == Self::Skill {
            rest.to_string()
        } else {
            rest.strip_suffix(&format!(".{}", t.extension()))?
                .to_string()
        };
        Some((t, name))
    }
}

/// Item names become file and directory names: 1 to 128 of `[A-Za-z0-9._-]`, starting with a letter or
/// digit, no `..`.
pub fn check_name(name: &str) -> ApiResult<()> {
    let ok = crate::workspaces::validate::is_safe_name(name, 128);
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "invalid item name {name:?}: use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// A file path inside a skill: relative, no `..`, no hidden components, not SKILL.md's own slot handled
/// elsewhere.
pub fn check_skill_file(path: &str) -> ApiResult<PathBuf> {
    let p = Path::new(path);
    let bad = path.is_empty()
        || path.len() > 512
        || path.contains('\0')
        || path.contains('\\')
        || p.is_absolute()
        || p.components().any(|c| match c {
            Component::Normal(s) => s.to_string_lossy().starts_with('.'),
            _ => true,
        });
    if bad {
        return Err(ApiError::invalid(format!(
            "invalid skill file path {path:?}: it must be relative, inside the skill, without '..' or hidden parts"
        )));
    }
    Ok(p.to_path_buf())
}

pub fn check_content(content: &str) -> ApiResult<()> {
    if content.len() > MAX_ITEM_BYTES {
        return Err(ApiError::invalid("content is over 1 MiB"));
    }
    if content.contains('\0') {
        return Err(ApiError::invalid("content contains a NUL byte"));
    }
    Ok(())
}

/// Front matter fields of a skill berth reads.
#[derive(Debug, Default, Clone)]
pub struct SkillMeta {
    pub description: Option<String>,
    pub setup_commands: Vec<String>,
}

pub fn skill_meta(name: &str, content: &str) -> ApiResult<SkillMeta> {
    let fm = frontmatter::parse(content)
        .map_err(|e| ApiError::invalid(format!("skill {name}: {e}")))?
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "skill {name}: SKILL.md needs YAML front matter with a description"
            ))
        })?;
    // Without a name the skill is named by its path (Open Agent's dashboard writes new skills so).
    if let Some(n) = frontmatter::string_field(&fm, "name") {
        if n != name {
            return Err(ApiError::invalid(format!(
                "skill {name}: front matter names it {n:?}"
            )));
        }
    }
    let description = frontmatter::string_field(&fm, "description").ok_or_else(|| {
        ApiError::invalid(format!("skill {name}: front matter has no description"))
    })?;
    let setup_commands = match fm.get("setup_commands") {
        None | Some(serde_yaml::Value::Null) => Vec::new(),
        Some(v) => serde_yaml::from_value::<Vec<String>>(v.clone()).map_err(|_| {
            ApiError::invalid(format!(
                "skill {name}: setup_commands must be a list of strings"
            ))
        })?,
    };
    Ok(SkillMeta {
        description: Some(description),
        setup_commands,
    })
}

/// The description of any item, for listings: front matter, a template's field, or a script's first
/// comment line.
pub fn describe(t: ItemType, content: &str) -> Option<String> {
    match t {
        ItemType::Mcp => None,
        ItemType::WorkspaceTemplate => serde_yaml::from_str::<serde_yaml::Value>(content)
            .ok()?
            .get("description")?
            .as_str()
            .map(str::to_string),
        ItemType::InitScript | ItemType::Tool => content
            .lines()
            .map(str::trim)
            .find(|l| (l.starts_with('#') && !l.starts_with("#!")) || l.starts_with("//"))
            .map(|l| l.trim_start_matches(['#', '/', ' ']).to_string()),
        _ => frontmatter::parse(content)
            .ok()
            .flatten()
            .and_then(|m| frontmatter::string_field(&m, "description")),
    }
}

/// An item's content as fields, for clients that read templates and agents field by field.
pub fn fields_of(
    t: ItemType,
    name: &str,
    content: &str,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{json, Value};
    let mut out = serde_json::Map::new();
    match t {
        ItemType::WorkspaceTemplate => {
            if let Ok(tpl) = crate::library::parse_template(name, content) {
                out.insert("distro".into(), json!(tpl.distro));
                out.insert("skills".into(), json!(tpl.skills));
                out.insert("tools".into(), json!(tpl.tools));
                out.insert("packages".into(), json!(tpl.packages));
                out.insert("env_vars".into(), json!(tpl.env_vars));
                out.insert("encrypted_keys".into(), json!([]));
                out.insert("init_scripts".into(), json!(tpl.init_scripts));
                out.insert(
                    "init_script".into(),
                    json!(tpl.init_script.unwrap_or_default()),
                );
                out.insert("network".into(), json!(tpl.network));
            }
        }
        ItemType::Agent => {
            let fm = frontmatter::parse(content)
                .ok()
                .flatten()
                .unwrap_or_default();
            let get = |k: &str| {
                fm.get(k)
                    .and_then(|v| serde_json::to_value(v).ok())
                    .unwrap_or(Value::Null)
            };
            out.insert("model".into(), get("model"));
            let tools = get("tools");
            out.insert(
                "tools".into(),
                if tools.is_object() { tools } else { json!({}) },
            );
            let perms = match get("permissions") {
                Value::Object(m) => Value::Object(m),
                _ => match get("permission") {
                    Value::Object(m) => Value::Object(m),
                    _ => json!({}),
                },
            };
            out.insert("permissions".into(), perms);
        }
        _ => {}
    }
    out
}

/// Checks an item's content before it is written. Templates are checked by the caller, which knows the
/// distros and fragments.
pub fn check_item(t: ItemType, name: &str, content: &str) -> ApiResult<()> {
    check_content(content)?;
    match t {
        ItemType::Skill => {
            skill_meta(name, content)?;
        }
        ItemType::Command | ItemType::Rule | ItemType::Agent => {
            frontmatter::parse(content)
                .map_err(|e| ApiError::invalid(format!("{} {name}: {e}", t.dir())))?;
        }
        ItemType::Mcp => match serde_json::from_str::<serde_json::Value>(content) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => {
                return Err(ApiError::invalid(format!(
                    "mcp {name}: must be a JSON object"
                )))
            }
            Err(e) => return Err(ApiError::invalid(format!("mcp {name}: invalid JSON: {e}"))),
        },
        ItemType::WorkspaceTemplate | ItemType::InitScript | ItemType::Tool => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_names_and_paths() {
        assert_eq!(ItemType::parse("skills").unwrap(), ItemType::Skill);
        assert_eq!(
            ItemType::parse("workspace-template").unwrap(),
            ItemType::WorkspaceTemplate
        );
        assert!(ItemType::parse("plugin").is_err());
        assert_eq!(ItemType::Skill.file("a"), PathBuf::from("skill/a/SKILL.md"));
        assert_eq!(ItemType::Mcp.file("x"), PathBuf::from("mcp/x.json"));
        assert_eq!(
            ItemType::item_of("skill/a/refs/b.md"),
            Some((ItemType::Skill, "a".into()))
        );
        assert_eq!(
            ItemType::item_of("command/c.md"),
            Some((ItemType::Command, "c".into()))
        );
        assert_eq!(ItemType::item_of("README.md"), None);
        for bad in ["", ".x", "a/b", "..", "a..b", "a\0b", &"n".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            ".git/config",
            "a\\b",
            "",
        ] {
            assert!(check_skill_file(bad).is_err(), "{bad:?}");
        }
        assert!(check_skill_file("references/notes.md").is_ok());
    }

    #[test]
    fn skill_front_matter_is_checked() {
        assert!(check_item(
            ItemType::Skill,
            "s",
            "---\nname: s\ndescription: d\n---\nbody"
        )
        .is_ok());
        assert!(check_item(ItemType::Skill, "s", "no front matter").is_err());
        assert!(check_item(
            ItemType::Skill,
            "s",
            "---\nname: other\ndescription: d\n---\n"
        )
        .is_err());
        assert!(check_item(ItemType::Skill, "s", "---\nname: s\n---\n").is_err());
        assert!(check_item(
            ItemType::Skill,
            "s",
            "---\nname: s\ndescription: d\nsetup_commands: 5\n---\n"
        )
        .is_err());
        let meta = skill_meta(
            "s",
            "---\nname: s\ndescription: d\nsetup_commands: [\"echo hi\"]\n---\n",
        )
        .unwrap();
        assert_eq!(meta.setup_commands, vec!["echo hi"]);
        assert!(check_item(ItemType::Mcp, "m", "[1]").is_err());
        assert!(check_item(ItemType::Mcp, "m", "{\"type\":\"local\"}").is_ok());
        assert!(check_item(ItemType::Command, "c", "---\nbad: [\n---\n").is_err());
    }
}
