//! Secrets at rest: files berth generates into the data dir (readable by its owner only), and the
//! AES-256-GCM box that encrypts workspace env var values before they reach the store.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{anyhow, Context};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;

/// Reads `path`, or creates it with `make()` and mode 0600 when it does not exist yet.
pub fn load_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => return Ok(s.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    }
    let value = make();
    write_private(path, &value)?;
    Ok(value)
}

/// Writes a file only its owner can read, atomically (temp file, then rename).
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))
}

/// Restricts a file to 0600 or a directory to 0700 (symlinks are left alone).
pub fn make_private(path: &Path) -> anyhow::Result<()> {
    restrict(path, false)
}

/// `make_private` for a directory and everything under it.
pub fn make_private_tree(path: &Path) -> anyhow::Result<()> {
    restrict(path, true)
}

fn restrict(path: &Path, recurse: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = if meta.is_dir() { 0o700 } else { 0o600 };
    if meta.permissions().mode() & 0o777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    if recurse && meta.is_dir() {
        for entry in std::fs::read_dir(path)?.flatten() {
            restrict(&entry.path(), true)?;
        }
    }
    Ok(())
}

/// Compares secrets in time that does not depend on where they differ.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encrypts short secrets (env var values) with a key kept in the data dir.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl SecretBox {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let hex = load_or_create(&data_dir.join("secret.key"), || random_hex(32))?;
        let key = decode_hex(&hex).ok_or_else(|| anyhow!("secret.key is not 64 hex digits"))?;
        if key.len() != 32 {
            return Err(anyhow!("secret.key is not 64 hex digits"));
        }
        Ok(Self {
            cipher: Aes256Gcm::new_from_slice(&key).expect("32-byte key"),
        })
    }

    /// `v1:` + base64(nonce || ciphertext).
    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("v1:{}", B64.encode(out))
    }

    pub fn unseal(&self, sealed: &str) -> anyhow::Result<String> {
        let raw = sealed
            .strip_prefix("v1:")
            .ok_or_else(|| anyhow!("unknown secret format"))?;
        let raw = B64.decode(raw).context("secret is not base64")?;
        if raw.len() < 12 {
            return Err(anyhow!("secret too short"));
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| anyhow!("secret does not decrypt with this data dir's key"))?;
        Ok(String::from_utf8(pt)?)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_round_trip_and_hide_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let sb = SecretBox::open(dir.path()).unwrap();
        let sealed = sb.seal("hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, sb.seal("hunter2"), "nonces must differ");
        assert_eq!(sb.unseal(&sealed).unwrap(), "hunter2");
        // The same data dir opens with the same key.
        assert_eq!(
            SecretBox::open(dir.path())
                .unwrap()
                .unseal(&sealed)
                .unwrap(),
            "hunter2"
        );
        let mode = std::fs::metadata(dir.path().join("secret.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }
}
