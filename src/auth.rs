//! Authentication: single-password or multi-user logins checked against argon2 hashes, and the HS256
//! tokens they yield. Only hashes are ever stored; plaintext passwords live just long enough to be checked.
//! Single-password mode is one admin; a users file gives each user a role (`name:hash[:admin]`).

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
use crate::principal::{Principal, Role};
use crate::secrets;

const ADMIN_HASH_FILE: &str = "admin-password.argon2";

#[derive(Debug)]
enum Mode {
    /// One password; every login is the user `admin`. `version` changes when the password does.
    Single { hash: String, version: String },
    /// `username:hash[:admin]` lines, re-read when the file changes so `berth users add` needs no
    /// restart.
    Multi {
        file: PathBuf,
        cache: Mutex<Option<(FileStamp, Users)>>,
    },
}

/// A user of the users file: their password hash and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub hash: String,
    pub role: Role,
}

type Users = HashMap<String, UserEntry>;

/// The single-password mode's one user.
const ADMIN: &str = "admin";
/// How many password hashes run at once: argon2 takes ~19 MiB and a core each, so a flood of logins
/// queues here instead of exhausting memory and CPU.
const HASHING_PERMITS: usize = 2;

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
    hashing: Arc<tokio::sync::Semaphore>,
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
    /// Names this token, so a logout can void it alone.
    #[serde(default)]
    pub jti: String,
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
        let mode = if let Some(file) = config.users_file() {
            read_users(&file).with_context(|| format!("users file {}", file.display()))?;
            Mode::Multi {
                file,
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
            hashing: Arc::new(tokio::sync::Semaphore::new(HASHING_PERMITS)),
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
                (ADMIN.to_string(), version.clone())
            }
            Mode::Multi { .. } => {
                let users = self.users()?;
                let Some(name) = username else {
                    verify_password(password, &self.decoy_hash);
                    return Ok(None);
                };
                match users.get(name) {
                    Some(u) if verify_password(password, &u.hash) => {
                        (name.to_string(), version_of(&u.hash))
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
            jti: secrets::random_hex(12),
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)?;
        Ok(Some(Token { token, expires_at }))
    }

    /// How logins work, as Open Agent's dashboard reads it from `/api/health`: one password
    /// (`single_tenant`) or users with their own (`multi_user`, the login asks for a username).
    pub fn mode_name(&self) -> &'static str {
        match &*self.mode {
            Mode::Single { .. } => "single_tenant",
            Mode::Multi { .. } => "multi_user",
        }
    }

    /// Guards against password guessing, per client and per account (see `account`).
    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// A turn at password hashing; hold it while `login` runs.
    pub async fn hashing_permit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.hashing
            .clone()
            .acquire_owned()
            .await
            .expect("the hashing semaphore is never closed")
    }

    /// The user `name` as berth knows them now: `None` once they left the users file.
    pub fn user(&self, name: &str) -> Option<Principal> {
        self.user_version(name).map(|(p, _)| p)
    }

    /// The user and their password's version: tokens issued under another version are void.
    pub fn user_version(&self, name: &str) -> Option<(Principal, String)> {
        match &*self.mode {
            Mode::Single { version, .. } => {
                (name == ADMIN).then(|| (Principal::new(ADMIN, Role::Admin), version.clone()))
            }
            Mode::Multi { .. } => {
                let users = self.users().ok()?;
                users
                    .get(name)
                    .map(|u| (Principal::new(name, u.role), version_of(&u.hash)))
            }
        }
    }

    /// The account a login attempt is against: in single-password mode always the admin, whatever
    /// username a client sends (so varying it does not dodge the throttle).
    pub fn account(&self, username: Option<&str>) -> String {
        match &*self.mode {
            Mode::Single { .. } => ADMIN.into(),
            Mode::Multi { .. } => username.unwrap_or_default().to_string(),
        }
    }

    /// The token's claims and user if it is signed by us, unexpired, and its user's password is still
    /// the one it was issued under (a removed user or a changed password voids it). Revocation by
    /// logout is the caller's to check (it is in the store).
    pub fn verify(&self, token: &str) -> Option<(Claims, Principal)> {
        let mut validation = Validation::default();
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        let (current, role) = match &*self.mode {
            Mode::Single { version, .. } => (version.clone(), Role::Admin),
            Mode::Multi { .. } => {
                let users = self.users().ok()?;
                let u = users.get(&claims.sub)?;
                (version_of(&u.hash), u.role)
            }
        };
        if claims.pwv != current {
            return None;
        }
        let who = Principal::new(claims.sub.clone(), role);
        Some((claims, who))
    }

    /// The users file, read again only when it changed.
    fn users(&self) -> anyhow::Result<Users> {
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

/// Parses a users file: `username:argon2-hash[:admin]` per line (a missing role is `user`), `#`
/// comments and blank lines ignored.
fn read_users(file: &Path) -> anyhow::Result<Users> {
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
        let Some((name, rest)) = line.split_once(':') else {
            bail!("line {}: expected username:hash[:admin]", n + 1);
        };
        // argon2's PHC strings never contain ':', so a last field is a role.
        let (hash, role) = match rest.rsplit_once(':') {
            Some((hash, "admin")) => (hash, Role::Admin),
            Some((hash, "user")) => (hash, Role::User),
            Some((_, other)) => bail!("line {}: unknown role {other:?} (admin or user)", n + 1),
            None => (rest, Role::User),
        };
        PasswordHash::new(hash).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?;
        users.insert(
            name.to_string(),
            UserEntry {
                hash: hash.to_string(),
                role,
            },
        );
    }
    Ok(users)
}

/// `berth users add`: adds or replaces one user's hash (and role) in the users file.
pub fn add_user(file: &Path, name: &str, password: &str, role: Role) -> anyhow::Result<()> {
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
    users.insert(
        name.to_string(),
        UserEntry {
            hash: hash_password(password)?,
            role,
        },
    );
    let mut names: Vec<_> = users.keys().cloned().collect();
    names.sort();
    let body: String = names
        .iter()
        .map(|n| match users[n].role {
            Role::Admin => format!("{n}:{}:admin\n", users[n].hash),
            Role::User => format!("{n}:{}\n", users[n].hash),
        })
        .collect();
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    secrets::write_private(
        file,
        &format!("# berth users: username:argon2 hash[:admin]\n{body}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        add_user(&file, "alice", "alice-password", Role::Admin).unwrap();
        add_user(&file, "bob", "bob-password", Role::User).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("alice-password"));
        let users = read_users(&file).unwrap();
        assert!(verify_password("alice-password", &users["alice"].hash));
        assert!(!verify_password("bob-password", &users["alice"].hash));
        assert_eq!(users["alice"].role, Role::Admin);
        assert_eq!(users["bob"].role, Role::User);
        assert!(add_user(&file, "a/b", "long-enough", Role::User).is_err());
        assert!(add_user(&file, "carol", "short", Role::User).is_err());
    }

    #[test]
    fn old_users_files_without_roles_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        let hash = hash_password("long-enough").unwrap();
        std::fs::write(&file, format!("old:{hash}\nboss:{hash}:admin\n")).unwrap();
        let users = read_users(&file).unwrap();
        assert_eq!(users["old"].role, Role::User);
        assert_eq!(users["boss"].role, Role::Admin);
        std::fs::write(&file, format!("x:{hash}:root\n")).unwrap();
        assert!(read_users(&file).is_err());
    }
}
