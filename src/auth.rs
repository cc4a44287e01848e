//! Authentication: single-password or multi-user logins checked against argon2 hashes, and the HS256
//! tokens they yield. Only hashes are ever stored; plaintext passwords live just long enough to be checked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::login_throttle::LoginThrottle;
use crate::secrets;

const ADMIN_HASH_FILE: &str = "admin-password.argon2";

#[derive(Debug)]
enum Mode {
    /// One password; every login is the user `admin`. `version` changes when the password does.
    Single { hash: String, version: String },
    /// `username:hash` lines, re-read when the file changes so `berth users add` needs no restart.
    Multi {
        file: PathBuf,
        cache: Mutex<Option<(FileStamp, HashMap<String, String>)>>,
    },
}

#[derive(Clone)]
pub struct Auth {
    mode: Arc<Mode>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
    /// A valid hash to verify against when a username is unknown, so timing does not reveal which
    /// usernames exist.
    decoy_hash: Arc<String>,
    throttle: Arc<LoginThrottle>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// The password's version when the token was issued: a changed password, or a removed user, voids
    /// the tokens issued before.
    #[serde(default)]
    pub pwv: String,
}

pub struct Token {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl Auth {
    /// Sets up auth from the config. Returns the admin password when one was generated now, so the caller
    /// can show it once.
    pub fn init(config: &Config) -> anyhow::Result<(Self, Option<String>)> {
        let mut generated = None;
        let secret = match &config.jwt_secret {
            Some(s) if !s.is_empty() => s.clone(),
            _ => secrets::load_or_create(&config.data_dir.join("jwt-secret"), || {
                secrets::random_hex(32)
            })?,
        };
        let mode = if let Some(file) = &config.users_file {
            read_users(file).with_context(|| format!("users file {}", file.display()))?;
            Mode::Multi {
                file: file.clone(),
                cache: Mutex::new(None),
            }
        } else if let Some(pw) = &config.password {
            if pw.is_empty() {
                bail!("BERTH_PASSWORD is empty");
            }
            // The hash is salted afresh at each start; the version must not change with it, so it comes
            // from the password itself, keyed with the token secret.
            Mode::Single {
                hash: hash_password(pw)?,
                version: version_of(&format!("{secret}\0{pw}")),
            }
        } else {
            let path = config.data_dir.join(ADMIN_HASH_FILE);
            let hash = secrets::load_or_create(&path, || {
                let pw = secrets::random_hex(12);
                let hash = hash_password(&pw).expect("argon2 hashing of a fresh password");
                generated = Some(pw);
                hash
            })?;
            PasswordHash::new(&hash)
                .map_err(|e| anyhow::anyhow!("{} is not an argon2 hash: {e}", path.display()))?;
            Mode::Single {
                version: version_of(&hash),
                hash,
            }
        };
        let auth = Self {
            mode: Arc::new(mode),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            ttl: Duration::hours(config.token_ttl_hours.max(1) as i64),
            decoy_hash: Arc::new(hash_password(&secrets::random_hex(8))?),
            throttle: Arc::new(LoginThrottle::default()),
        };
        Ok((auth, generated))
    }

    /// Checks a login; `None` for bad credentials, without saying which part was wrong. CPU-heavy
    /// (argon2): call from a blocking thread.
    pub fn login(&self, username: Option<&str>, password: &str) -> anyhow::Result<Option<Token>> {
        let (user, pwv) = match &*self.mode {
            Mode::Single { hash, version } => {
                // A username is accepted for clients that always send one; it names nobody here.
                if !verify_password(password, hash) {
                    return Ok(None);
                }
                ("admin".to_string(), version.clone())
            }
            Mode::Multi { .. } => {
                let users = self.users()?;
                let Some(name) = username else {
                    verify_password(password, &self.decoy_hash);
                    return Ok(None);
                };
                match users.get(name) {
                    Some(hash) if verify_password(password, hash) => {
                        (name.to_string(), version_of(hash))
                    }
                    Some(_) => return Ok(None),
                    None => {
                        verify_password(password, &self.decoy_hash);
                        return Ok(None);
                    }
                }
            }
        };
        let now = Utc::now();
        let expires_at = now + self.ttl;
        let claims = Claims {
            sub: user,
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            pwv,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)?;
        Ok(Some(Token { token, expires_at }))
    }

    /// Guards against password guessing, per account (see `account`).
    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// The account a login attempt is against: in single-password mode always the admin, whatever
    /// username a client sends (so varying it does not dodge the throttle).
    pub fn account(&self, username: Option<&str>) -> String {
        match &*self.mode {
            Mode::Single { .. } => "admin".into(),
            Mode::Multi { .. } => username.unwrap_or_default().to_string(),
        }
    }

    /// The token's claims if it is signed by us, unexpired, and its user's password is still the one
    /// it was issued under (a removed user or a changed password voids it).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::default();
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        let current = match &*self.mode {
            Mode::Single { version, .. } => version.clone(),
            Mode::Multi { .. } => version_of(self.users().ok()?.get(&claims.sub)?),
        };
        (claims.pwv == current).then_some(claims)
    }

    /// The users file, read again only when it changed.
    fn users(&self) -> anyhow::Result<HashMap<String, String>> {
        let Mode::Multi { file, cache } = &*self.mode else {
            return Ok(HashMap::new());
        };
        let stamp = FileStamp::of(file);
        let mut cache = cache.lock().expect("users cache lock");
        if let Some((at, users)) = &*cache {
            if stamp.is_some() && *at == stamp.unwrap_or_default() {
                return Ok(users.clone());
            }
        }
        let users = read_users(file)?;
        *cache = Some((stamp.unwrap_or_default(), users.clone()));
        Ok(users)
    }
}

/// What tells a changed users file from the cached one: a replaced file (new inode), a rewrite in
/// place (ctime, length), or an edit (mtime). The modification time alone misses edits within one
/// clock tick and files with fixed timestamps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(file: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(file).ok()?;
        Some(Self {
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        })
    }
}

/// A short fingerprint of a password (hash) for tokens; it reveals nothing usable about the password.
fn version_of(secret_material: &str) -> String {
    secrets::sha256_hex(secret_material.as_bytes())[..16].to_string()
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hash password: {e}"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Parses a users file: `username:argon2-hash` per line, `#` comments and blank lines ignored.
fn read_users(file: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, hash)) = line.split_once(':') else {
            bail!("line {}: expected username:hash", n + 1);
        };
        PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
        users.insert(name.to_string(), hash.to_string());
    }
    Ok(users)
}

/// `berth users add`: adds or replaces one user's hash in the users file.
pub fn add_user(file: &Path, name: &str, password: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
    {
        bail!("usernames are 1 to 64 characters of letters, digits, '.', '_', '-', '@'");
    }
    if password.len() < 8 {
        bail!("passwords need at least 8 characters");
    }
    let mut users = read_users(file)?;
    users.insert(name.to_string(), hash_password(password)?);
    let mut names: Vec<_> = users.keys().cloned().collect();
    names.sort();
    let body: String = names
        .iter()
        .map(|n| format!("{n}:{}\n", users[n]))
        .collect();
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    secrets::write_private(
        file,
        &format!("# berth users: username:argon2 hash\n{body}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        add_user(&file, "alice", "alice-password").unwrap();
        add_user(&file, "bob", "bob-password").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("alice-password"));
        let users = read_users(&file).unwrap();
        assert!(verify_password("alice-password", &users["alice"]));
        assert!(!verify_password("bob-password", &users["alice"]));
        assert!(add_user(&file, "a/b", "long-enough").is_err());
        assert!(add_user(&file, "carol", "short").is_err());
    }
}
