//! Tenants: two users and an admin on one server. Every route that takes an object id answers 404 for
//! another user's object and changes nothing; host workspaces, host networking, library writes and
//! provider keys need the admin role; API tokens, logout; workers act only for their owner; logins are
//! throttled per client address.

mod e2b;
mod host;
mod logins;
mod matrix;
mod tokens;
mod workers;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{users_add, Options, Server};

pub const ALICE: (&str, &str) = ("alice", "alice-password");
pub const BOB: (&str, &str) = ("bob", "bob-password");
pub const ROOT: (&str, &str) = ("root", "root-password");

/// A server in multi-user mode whose users file is `<data-dir>/users`, written by `berth users add`
/// and read by `serve` without being named.
pub struct Tenants {
    pub s: Server,
    _dir: tempfile::TempDir,
}

pub async fn tenants(env: Vec<(String, String)>) -> Tenants {
    let dir = tempfile::tempdir().unwrap();
    add_user(dir.path(), ALICE, false);
    add_user(dir.path(), BOB, false);
    add_user(dir.path(), ROOT, true);
    let s = Server::spawn(
        dir.path(),
        &Options {
            env,
            password: None,
            ..Default::default()
        },
    )
    .await;
    Tenants { s, _dir: dir }
}

pub fn add_user(data_dir: &std::path::Path, (name, pw): (&str, &str), admin: bool) {
    let dir = data_dir.to_str().unwrap();
    let mut args = vec![name, "--data-dir", dir];
    if admin {
        args.push("--admin");
    }
    users_add(&args, pw);
}

pub async fn login(s: &Server, (name, pw): (&str, &str)) -> String {
    let (status, v) = s
        .call_as(
            "",
            "POST",
            "/api/auth/login",
            Some(json!({ "username": name, "password": pw })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "login {name}: {v}");
    assert!(v["exp"].is_i64(), "{v}");
    v["token"].as_str().unwrap().to_string()
}
