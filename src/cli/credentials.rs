//! Stored logins: one token per server, in `$XDG_CONFIG_HOME/berth/credentials.json` (else
//! `~/.config/berth/`), readable by the user alone.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::CliError;

fn file() -> Result<PathBuf, CliError> {
    let dir = match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(
            std::env::var_os("HOME")
                .ok_or_else(|| CliError::Local("HOME is not set; set BERTH_TOKEN".into()))?,
        )
        .join(".config"),
    };
    Ok(dir.join("berth").join("credentials.json"))
}

fn read() -> Result<BTreeMap<String, String>, CliError> {
    match std::fs::read_to_string(file()?) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| CliError::Local(format!("stored credentials are unreadable: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e.into()),
    }
}

fn write(all: &BTreeMap<String, String>) -> Result<(), CliError> {
    let path = file()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        crate::secrets::make_private(dir).map_err(|e| CliError::Local(e.to_string()))?;
    }
    let text = serde_json::to_string_pretty(all).expect("a string map serializes");
    crate::secrets::write_private(&path, &text).map_err(|e| CliError::Local(e.to_string()))
}

/// The stored token for a server.
pub fn load(server: &str) -> Result<Option<String>, CliError> {
    Ok(read()?.remove(server))
}

pub fn store(server: &str, token: &str) -> Result<PathBuf, CliError> {
    let mut all = read()?;
    all.insert(server.to_string(), token.to_string());
    write(&all)?;
    file()
}

pub fn forget(server: &str) -> Result<bool, CliError> {
    let mut all = read()?;
    let had = all.remove(server).is_some();
    if had {
        write(&all)?;
    }
    Ok(had)
}
