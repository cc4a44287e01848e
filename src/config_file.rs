//! `berth.toml`: the server's settings in a file, with the same keys as its environment variables
//! (`BERTH_LISTEN = "..."`, or `listen = "..."`). The file is read before the command line is parsed
//! and fills in only the variables the environment does not set, so the environment and flags win.
//! The file is the one named by `--config` (or `BERTH_CONFIG`), else `<data-dir>/berth.toml` when it
//! exists.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::CommandFactory;

use crate::config::Config;

/// The variable a file key names: `listen`, `data-dir` and `BERTH_LISTEN` all work.
fn env_name(key: &str) -> String {
    let upper = key.to_ascii_uppercase().replace('-', "_");
    if upper.starts_with("BERTH_") {
        upper
    } else {
        format!("BERTH_{upper}")
    }
}

/// Every setting `berth serve` reads: `(field name, variable)`, e.g. `("opencode_cache",
/// "BERTH_OPENCODE_DIR")`.
fn known_settings() -> Vec<(String, String)> {
    #[derive(clap::Parser)]
    struct Probe {
        #[command(flatten)]
        config: Config,
    }
    Probe::command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            Some((a.get_id().to_string(), env))
        })
        .collect()
}

/// The variable a file key names: a variable (`BERTH_LISTEN`), a field (`opencode_cache`, as `config
/// show` prints it) or the variable's short form (`listen`, `data-dir`).
fn variable_of(key: &str, known: &[(String, String)]) -> Option<String> {
    if let Some((_, env)) = known.iter().find(|(id, _)| id == key) {
        return Some(env.clone());
    }
    let name = env_name(key);
    known.iter().any(|(_, env)| *env == name).then_some(name)
}

/// Whether the settings file matters to this command line: the server and `config show` only, so a
/// client command's own arguments (`berth exec ws -- grep --config x`) are never read as berth's.
fn wants_settings(args: &[OsString]) -> bool {
    let words: Vec<String> = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .take_while(|a| a != "--")
        .filter(|a| !a.starts_with('-'))
        .take(2)
        .collect();
    matches!(words.first().map(String::as_str), Some("serve"))
        || (words.first().map(String::as_str) == Some("config")
            && words.get(1).map(String::as_str) == Some("show"))
}

/// `--config PATH` / `--config=PATH` from the arguments, else `BERTH_CONFIG`.
fn named_file(args: &[OsString]) -> Option<PathBuf> {
    flag_or_env(args, "--config", "BERTH_CONFIG")
}

/// The data dir the command line or the environment names (for `<data-dir>/berth.toml`).
fn data_dir(args: &[OsString]) -> PathBuf {
    flag_or_env(args, "--data-dir", "BERTH_DATA_DIR").unwrap_or_else(|| PathBuf::from("berth-data"))
}

/// A path flag's value (`--flag VALUE` or `--flag=VALUE`), else the variable's, read before clap
/// parses the command line.
fn flag_or_env(args: &[OsString], flag: &str, var: &str) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == flag {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Reads the settings file (if any) into the environment; the file read, for `config show`. Must run
/// before any thread starts: it sets environment variables.
pub fn apply(args: &[OsString]) -> anyhow::Result<Option<PathBuf>> {
    if !wants_settings(args) {
        return Ok(None);
    }
    let file = match named_file(args) {
        Some(f) => f,
        None => {
            let f = data_dir(args).join("berth.toml");
            if !f.exists() {
                return Ok(None);
            }
            f
        }
    };
    let vars = parse(&file)?;
    for (name, value) in vars {
        if std::env::var_os(&name).is_none() {
            // Safe here: the caller runs this before starting any thread.
            std::env::set_var(name, value);
        }
    }
    Ok(Some(file))
}

/// The file's settings as `(variable, value)`; unknown keys and nested tables are errors.
fn parse(file: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("read the settings file {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    let known = known_settings();
    let mut out = Vec::new();
    for (key, value) in table {
        let Some(name) = variable_of(&key, &known) else {
            bail!(
                "{}: unknown setting {key:?} (settings are berth's environment variables, e.g. listen or BERTH_LISTEN)",
                file.display()
            );
        };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "{}: {key} must be a string, number or boolean, not {}",
                file.display(),
                other.type_str()
            ),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// The effective settings as `berth.toml` lines, secrets masked: passwords and tokens, an inline
/// OpenCode configuration (it may hold provider keys), and credentials inside URLs.
pub fn show(config: &Config) -> String {
    const SECRETS: [&str; 3] = ["password", "jwt_secret", "metrics_token"];
    let value = serde_json::to_value(config).expect("the config serializes");
    let mut out = String::new();
    for (key, v) in value.as_object().into_iter().flatten() {
        let line = match v {
            serde_json::Value::Null => format!("# {key} is not set"),
            _ if SECRETS.contains(&key.as_str()) => format!("{key} = \"********\""),
            serde_json::Value::String(s)
                if key == "opencode_config" && s.trim_start().starts_with('{') =>
            {
                format!("{key} = \"******** (inline JSON)\"")
            }
            serde_json::Value::String(s) => {
                format!("{key} = {}", toml::Value::String(without_userinfo(s)))
            }
            other => format!("{key} = {other}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `https://user:secret@host/x` → `https://****@host/x`; anything else as it is.
fn without_userinfo(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://****{}", &rest[at..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_variables_and_unknown_ones_are_refused() {
        assert_eq!(env_name("listen"), "BERTH_LISTEN");
        assert_eq!(env_name("data-dir"), "BERTH_DATA_DIR");
        assert_eq!(env_name("BERTH_CPUS"), "BERTH_CPUS");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("berth.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9\"\nBERTH_CPUS = 1.5\nhost_workspaces = true\n",
        )
        .unwrap();
        let vars = parse(&f).unwrap();
        assert!(vars.contains(&("BERTH_LISTEN".into(), "127.0.0.1:9".into())));
        assert!(vars.contains(&("BERTH_CPUS".into(), "1.5".into())));
        assert!(vars.contains(&("BERTH_HOST_WORKSPACES".into(), "true".into())));
        std::fs::write(&f, "opencode_cache = \"/x\"\nconfig_file = \"/y\"\n").unwrap();
        let vars = parse(&f).unwrap();
        assert!(vars.contains(&("BERTH_OPENCODE_DIR".into(), "/x".into())));
        assert!(vars.contains(&("BERTH_CONFIG".into(), "/y".into())));
        std::fs::write(&f, "colour = \"red\"\n").unwrap();
        assert!(parse(&f).unwrap_err().to_string().contains("colour"));
        std::fs::write(&f, "[table]\nx = 1\n").unwrap();
        assert!(parse(&f).is_err());
    }

    #[test]
    fn only_the_server_and_config_show_read_the_file() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_settings(&args(&["berth", "serve", "--listen", "x"])));
        assert!(wants_settings(&args(&["berth", "config", "show"])));
        assert!(!wants_settings(&args(&[
            "berth", "exec", "ws", "--", "grep", "--config", "x"
        ])));
        assert!(!wants_settings(&args(&["berth", "ws", "ls"])));
    }

    #[test]
    fn credentials_in_urls_are_masked() {
        assert_eq!(
            without_userinfo("https://user:ghp_x@github.com/a/b.git"),
            "https://****@github.com/a/b.git"
        );
        assert_eq!(
            without_userinfo("https://registry.npmjs.org"),
            "https://registry.npmjs.org"
        );
        assert_eq!(without_userinfo("git@host:repo"), "git@host:repo");
    }
}
