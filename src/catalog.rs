//! The catalog: distros, built-in workspace templates and init-script fragments. Data, not code: shipped in
//! the binary, overridable by files of the same name under `<catalog-dir>/{distros,templates,init-scripts}`,
//! and validated once at start-up so a bad file stops berth instead of failing a build later.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

const BUILTIN_DISTROS: &[(&str, &str)] = &[
    (
        "debian-bookworm",
        include_str!("../distros/debian-bookworm.yaml"),
    ),
    ("ubuntu-noble", include_str!("../distros/ubuntu-noble.yaml")),
    ("ubuntu-jammy", include_str!("../distros/ubuntu-jammy.yaml")),
    ("arch-linux", include_str!("../distros/arch-linux.yaml")),
];

const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    ("debian", include_str!("../templates/debian.yaml")),
    (
        "ubuntu-noble",
        include_str!("../templates/ubuntu-noble.yaml"),
    ),
    (
        "ubuntu-jammy",
        include_str!("../templates/ubuntu-jammy.yaml"),
    ),
    ("arch", include_str!("../templates/arch.yaml")),
];

const BUILTIN_INIT_SCRIPTS: &[(&str, &str)] = &[("base", include_str!("../init-scripts/base.sh"))];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distro {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The base image reference, e.g. `debian:bookworm`.
    pub image: String,
    pub package_manager: String,
    /// Shell command installing `{packages}`.
    pub install: String,
    /// Shell command that exits 0 when `{package}` is installed.
    pub installed: String,
    #[serde(default)]
    pub packages: Vec<String>,
    pub bootstrap: Bootstrap,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// `debootstrap` or `pacstrap`.
    pub tool: String,
    pub suite: Option<String>,
    pub mirror: Option<String>,
    pub variant: Option<String>,
    pub keyring: Option<String>,
    #[serde(default)]
    pub packages: Vec<String>,
}

/// A workspace template: the defaults a workspace created from it starts with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub distro: Option<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub skills: Vec<String>,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default)]
    pub init_scripts: Vec<String>,
    pub init_script: Option<String>,
    /// Container network mode: `bridge`, `host` or `none`.
    pub network: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    distros: Vec<Distro>,
    templates: BTreeMap<String, Template>,
    init_scripts: HashMap<String, String>,
}

impl Catalog {
    /// The built-in catalog with overrides from `dir`, validated.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut distros = BTreeMap::new();
        for (name, text) in BUILTIN_DISTROS {
            distros.insert(name.to_string(), parse_distro(name, text)?);
        }
        for (name, text) in read_overrides(&dir.join("distros"), "yaml")? {
            distros.insert(name.clone(), parse_distro(&name, &text)?);
        }
        let mut templates = BTreeMap::new();
        for (name, text) in BUILTIN_TEMPLATES {
            templates.insert(name.to_string(), parse_template(name, text)?);
        }
        for (name, text) in read_overrides(&dir.join("templates"), "yaml")? {
            templates.insert(name.clone(), parse_template(&name, &text)?);
        }
        let mut init_scripts: HashMap<String, String> = BUILTIN_INIT_SCRIPTS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        init_scripts.extend(read_overrides(&dir.join("init-scripts"), "sh")?);

        let catalog = Self {
            distros: distros.into_values().collect(),
            templates,
            init_scripts,
        };
        for t in catalog.templates.values() {
            catalog
                .check_template(t)
                .with_context(|| format!("template {}", t.name))?;
        }
        Ok(catalog)
    }

    /// Resolves a canonical name or alias (case-insensitive).
    pub fn distro(&self, name: &str) -> Option<&Distro> {
        let name = name.trim().to_ascii_lowercase();
        self.distros
            .iter()
            .find(|d| d.name == name || d.aliases.contains(&name))
    }

    pub fn distro_names(&self) -> Vec<&str> {
        self.distros.iter().map(|d| d.name.as_str()).collect()
    }

    pub fn distros(&self) -> &[Distro] {
        &self.distros
    }

    pub fn template(&self, name: &str) -> Option<&Template> {
        self.templates.get(name)
    }

    pub fn template_names(&self) -> Vec<&str> {
        self.templates.keys().map(String::as_str).collect()
    }

    pub fn init_script(&self, name: &str) -> Option<&str> {
        self.init_scripts.get(name).map(String::as_str)
    }

    /// A template is usable when its distro and every fragment it names exist.
    pub fn check_template(&self, t: &Template) -> anyhow::Result<()> {
        if let Some(d) = &t.distro {
            if self.distro(d).is_none() {
                bail!(
                    "unknown distro {d:?}; valid: {}",
                    self.distro_names().join(", ")
                );
            }
        }
        for f in &t.init_scripts {
            if self.init_script(f).is_none() {
                bail!("unknown init script fragment {f:?}");
            }
        }
        Ok(())
    }
}

fn parse_distro(file_name: &str, text: &str) -> anyhow::Result<Distro> {
    let d: Distro =
        serde_yaml::from_str(text).with_context(|| format!("distro file {file_name}.yaml"))?;
    if d.name != file_name {
        bail!("distro file {file_name}.yaml names itself {:?}", d.name);
    }
    if !d.install.contains("{packages}") || !d.installed.contains("{package}") {
        bail!("distro {file_name}: install must use {{packages}} and installed {{package}}");
    }
    Ok(d)
}

fn parse_template(file_name: &str, text: &str) -> anyhow::Result<Template> {
    let t: Template =
        serde_yaml::from_str(text).with_context(|| format!("template file {file_name}.yaml"))?;
    if t.name != file_name {
        bail!("template file {file_name}.yaml names itself {:?}", t.name);
    }
    Ok(t)
}

/// `(stem, contents)` of every `*.ext` file in `dir`; a missing dir is simply empty.
fn read_overrides(dir: &Path, ext: &str) -> anyhow::Result<Vec<(String, String)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        out.push((stem.to_string(), text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_is_valid_and_resolves_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::load(dir.path()).unwrap();
        assert_eq!(c.distro("noble").unwrap().name, "ubuntu-noble");
        assert_eq!(c.distro("jammy").unwrap().name, "ubuntu-jammy");
        assert_eq!(c.distro("bookworm").unwrap().name, "debian-bookworm");
        assert_eq!(c.distro("archlinux").unwrap().name, "arch-linux");
        assert_eq!(c.distro("Arch").unwrap().name, "arch-linux");
        assert!(c.distro("fedora").is_none());
        // At least a plain template per distro.
        for d in c.distro_names() {
            assert!(
                c.templates.values().any(|t| t.distro.as_deref() == Some(d)),
                "{d}"
            );
        }
    }

    #[test]
    fn overrides_replace_builtins_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(
            dir.path().join("templates/debian.yaml"),
            "name: debian\ndistro: bookworm\ninit_scripts: [base]\npackages: [jq]\n",
        )
        .unwrap();
        let c = Catalog::load(dir.path()).unwrap();
        assert_eq!(c.template("debian").unwrap().packages, vec!["jq"]);

        std::fs::write(
            dir.path().join("templates/bad.yaml"),
            "name: bad\ndistro: fedora\n",
        )
        .unwrap();
        let err = Catalog::load(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("unknown distro"), "{err:#}");
    }
}
