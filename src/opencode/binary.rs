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

/// The read-only bind mount that gives a workspace container its binaries: berth's cache dir
/// `(host path, container path)`, created if missing so a binary put there later (provisioned, or a
/// given one's copy) appears in running containers too. Containers never depend on a path outside it.
pub fn mount(cache_dir: &Path) -> Option<(PathBuf, String)> {
    std::fs::create_dir_all(cache_dir).ok()?;
    Some((cache_dir.to_path_buf(), MOUNT_POINT.to_string()))
}

/// Where a binary under `cache_dir` appears inside a container that has the mount.
pub fn mounted_path(cache_dir: &Path, bin: &Path) -> Option<String> {
    let rel = bin.strip_prefix(cache_dir).ok()?;
    Some(format!("{MOUNT_POINT}/{}", rel.to_str()?))
}

/// A given binary's place in the cache dir, named by its content: a different binary given after a
/// restart gets a new name (so no workspace silently keeps the old one), and the original path may
/// go away without breaking any container. Linked when it can be, else copied.
pub fn adopt(cache_dir: &Path, given: &Path) -> anyhow::Result<PathBuf> {
    // Hashed as a stream: the binary is large.
    let mut file =
        std::fs::File::open(given).with_context(|| format!("read {}", given.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    let digest: String = hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache_dir.join(format!("given-{digest}"));
    let bin = dir.join("opencode");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir)?;
    let staging = dir.join(format!(".opencode.{}", uuid::Uuid::new_v4().simple()));
    if std::fs::hard_link(given, &staging).is_err() {
        std::fs::copy(given, &staging)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&staging, &bin)?;
    Ok(bin)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_binary_is_taken_in_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let given = dir.path().join("opencode");
        std::fs::write(&given, b"first build").unwrap();
        let a = adopt(&cache, &given).unwrap();
        assert_eq!(
            adopt(&cache, &given).unwrap(),
            a,
            "the same binary, the same place"
        );
        assert_eq!(std::fs::read(&a).unwrap(), b"first build");
        assert_eq!(
            mounted_path(&cache, &a).unwrap(),
            format!(
                "{MOUNT_POINT}/{}/opencode",
                a.parent().unwrap().file_name().unwrap().to_str().unwrap()
            )
        );
        // A different binary given later gets a new place; the old one stays for containers using it.
        std::fs::remove_file(&given).unwrap();
        std::fs::write(&given, b"second build").unwrap();
        let b = adopt(&cache, &given).unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), b"first build");
        assert!(
            mounted_path(&cache, &given).is_none(),
            "outside the cache dir"
        );
    }
}
