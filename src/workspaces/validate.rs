//! Checks on what clients send, each failing with a message that says what is allowed.

use std::collections::BTreeMap;

use crate::error::{ApiError, ApiResult};

pub const MAX_INIT_SCRIPT: usize = 1 << 20;

/// Names that become file, directory or host names: 1 to `max` of `[A-Za-z0-9._-]`, starting with a
/// letter or digit, no `..`.
pub fn is_safe_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.contains("..")
}

/// Workspace names become container hostnames and directory names: 1 to 64 of `[A-Za-z0-9._-]`, starting
/// with a letter or digit.
pub fn workspace_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    // Workspaces are addressed by name or id: a name shaped like an id could never be named.
    if uuid::Uuid::parse_str(name).is_ok() {
        return Err(ApiError::invalid(format!(
            "invalid workspace name {name:?}: it has the shape of an id"
        )));
    }
    if is_safe_name(name, 64) {
        Ok(name.to_string())
    } else {
        Err(ApiError::invalid(format!(
            "invalid workspace name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Skill, tool and fragment names: like workspace names, they become file names.
pub fn item_names(kind: &str, names: &[String]) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !is_safe_name(n, 128) {
            return Err(ApiError::invalid(format!(
                "invalid {kind} name {n:?}: use letters, digits, '.', '_' or '-', starting with a letter or digit"
            )));
        }
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// Package names as apt and pacman spell them.
pub fn packages(names: &[String]) -> ApiResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let ok = !n.is_empty()
            && n.len() <= 128
            && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.:_=".contains(c));
        if !ok {
            return Err(ApiError::invalid(format!("invalid package name {n:?}")));
        }
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    Ok(out)
}

pub fn env_vars(env: &BTreeMap<String, String>) -> ApiResult<()> {
    if env.len() > 256 {
        return Err(ApiError::invalid("at most 256 env vars"));
    }
    for (k, v) in env {
        let ok = !k.is_empty()
            && k.len() <= 256
            && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(ApiError::invalid(format!(
                "invalid env var name {k:?}: use letters, digits and '_', not starting with a digit"
            )));
        }
        if v.contains('\0') || v.len() > 64 * 1024 {
            return Err(ApiError::invalid(format!(
                "env var {k} has a value with a NUL byte or over 64 KiB"
            )));
        }
    }
    Ok(())
}

/// A container's network mode; `bridge` when none is given.
pub fn network(mode: Option<&str>) -> ApiResult<String> {
    match mode.unwrap_or("bridge") {
        m @ ("bridge" | "host" | "none") => Ok(m.to_string()),
        other => Err(ApiError::invalid(format!(
            "invalid network {other:?}: use bridge, host or none"
        ))),
    }
}

pub fn init_script(script: &str) -> ApiResult<()> {
    if script.len() > MAX_INIT_SCRIPT {
        return Err(ApiError::invalid("init_script is over 1 MiB"));
    }
    if script.contains('\0') {
        return Err(ApiError::invalid("init_script contains a NUL byte"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(workspace_name("my-workspace").is_ok());
        assert_eq!(workspace_name("  ws1 ").unwrap(), "ws1");
        for bad in [
            "",
            ".hidden",
            "a/b",
            "a..b",
            "-x",
            "a b",
            "x\0",
            &"a".repeat(65),
            "0b6c5f7e-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
        ] {
            assert!(workspace_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            item_names("skill", &["a".into(), "a".into(), "b".into()]).unwrap(),
            vec!["a", "b"]
        );
        assert!(item_names("skill", &["../x".into()]).is_err());
        assert!(packages(&["libssl-dev".into(), "g++".into()]).is_ok());
        assert!(packages(&["rm -rf".into()]).is_err());
        assert!(packages(&["$(x)".into()]).is_err());
    }

    #[test]
    fn env() {
        let ok = BTreeMap::from([("A_1".to_string(), "v".to_string())]);
        assert!(env_vars(&ok).is_ok());
        let bad = BTreeMap::from([("1A".to_string(), "v".to_string())]);
        assert!(env_vars(&bad).is_err());
        let bad = BTreeMap::from([("A=B".to_string(), "v".to_string())]);
        assert!(env_vars(&bad).is_err());
    }
}
