//! The opencode binary berth runs in workspaces: the pinned version of the npm package
//! `opencode-linux-x64`, downloaded from the npm registry, checked against the integrity hash pinned here,
//! and unpacked with `tar` into a cache dir. Or a binary given by path.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha512};

/// The pinned opencode version and its npm `dist.integrity`.
pub const VERSION: &str = "1.18.34";
const INTEGRITY: &str =
    "sha512-RTAMjCve4euxP2QKLuvRmdoW5J5DQK1DiZqt+7slfixyjAEi79QC2Df2oYKogibaAI4IEU8uzenoJeEl3k+UEw==";
const PACKAGE: &str = "opencode-linux-x64";

/// Where workspaces see the binary: its directory (or the given file) is bind-mounted read-only here,
/// so no container needs a copy of its own.
const MOUNT_POINT: &str = "/opt/berth/agent";

/// The read-only bind mount that gives a workspace container the binary: `(host path, container path)`.
/// A given binary is mounted as a file; otherwise the cache dir (created if missing, so a binary
/// provisioned later appears in running containers too).
pub fn mount(config: &crate::config::Config) -> Option<(PathBuf, String)> {
    match &config.opencode_bin {
        Some(bin) if bin.is_file() => Some((bin.clone(), format!("{MOUNT_POINT}/opencode"))),
        Some(_) => None,
        None => {
            let dir = config.opencode_dir();
            std::fs::create_dir_all(&dir).ok()?;
            Some((dir, MOUNT_POINT.to_string()))
        }
    }
}

/// The binary's path inside a container that has the mount.
pub fn mounted_path(config: &crate::config::Config) -> String {
    match &config.opencode_bin {
        Some(_) => format!("{MOUNT_POINT}/opencode"),
        None => format!("{MOUNT_POINT}/{VERSION}/package/bin/opencode"),
    }
}

/// Where the pinned binary lives under `cache_dir`.
pub fn cached_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join(VERSION).join("package/bin/opencode")
}

/// Returns the cached binary, downloading and verifying it first when missing.
pub async fn ensure(cache_dir: &Path, registry: &str) -> anyhow::Result<PathBuf> {
    let bin = cached_path(cache_dir);
    if bin.is_file() {
        return Ok(bin);
    }
    let url = format!(
        "{}/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz",
        registry.trim_end_matches('/')
    );
    tracing::info!(%url, "downloading opencode");
    let bytes = reqwest::get(&url)
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("download {url}"))?
        .bytes()
        .await
        .with_context(|| format!("download {url}"))?;
    let digest = format!("sha512-{}", B64.encode(Sha512::digest(&bytes)));
    if digest != INTEGRITY {
        bail!("{url} failed its integrity check (got {digest}, pinned {INTEGRITY})");
    }
    // Unpack beside the final place, then rename: a crash never leaves a half-unpacked binary in place.
    let version_dir = cache_dir.join(VERSION);
    let staging = cache_dir.join(format!(".{VERSION}.{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&staging)?;
    let tgz = staging.join("package.tgz");
    std::fs::write(&tgz, &bytes)?;
    let status = tokio::process::Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&staging)
        .status()
        .await
        .context("run tar")?;
    if !status.success() {
        bail!("tar could not unpack {}", tgz.display());
    }
    std::fs::remove_file(&tgz)?;
    if !staging.join("package/bin/opencode").is_file() {
        bail!("the {PACKAGE} package has no bin/opencode");
    }
    match std::fs::rename(&staging, &version_dir) {
        Ok(()) => {}
        // Another process won the race; its copy is the same verified package.
        Err(_) if bin.is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(e) => return Err(e).context("move the unpacked opencode into place"),
    }
    Ok(bin)
}
