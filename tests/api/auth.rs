//! Logins in both modes, tokens, and what needs one.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{users_add, Options, Server, PASSWORD};

#[tokio::test]
async fn tokens_guard_the_api_and_bad_logins_are_refused() {
    let mut s = Server::start().await;
    // Health is public.
    let token = std::mem::take(&mut s.token);
    let (status, v) = s.get("/api/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["docker"]["reachable"], true, "{v}");

    for path in ["/api/workspaces", "/api/stats", "/api/auth/verify"] {
        let (status, v) = s.get(path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(v["code"], "unauthorized");
    }
    let (status, v) = s
        .post("/api/auth/login", json!({ "password": "wrong" }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "unauthorized");
    let (status, v) = s.raw("POST", "/api/auth/login", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    s.token = "not.a.token".into();
    assert_eq!(s.get("/api/auth/verify").await.0, StatusCode::UNAUTHORIZED);
    s.token = token;
    let (status, v) = s.get("/api/auth/verify").await;
    assert_eq!(status, StatusCode::OK, "{v}");

    let (status, v) = s
        .post("/api/auth/login", json!({ "password": PASSWORD }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["token"].is_string() && v["expires_at"].is_string(), "{v}");

    // Guessing is slowed: after five failures (whatever username is sent, in single-password mode) even
    // the right password waits, then works again.
    for i in 0..6 {
        let (status, _) = s
            .post(
                "/api/auth/login",
                json!({ "username": format!("guess{i}"), "password": "wrong" }),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, v) = s
        .post("/api/auth/login", json!({ "password": PASSWORD }))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["code"], "rate_limited");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, v) = s
        .post("/api/auth/login", json!({ "password": PASSWORD }))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn generated_admin_password_is_shown_once_and_stored_hashed() {
    let mut s = Server::start_with(Options {
        password: None,
        ..Default::default()
    })
    .await;
    let line = s
        .banner
        .iter()
        .find(|l| l.contains("generated admin password"))
        .unwrap_or_else(|| panic!("no password line in {:?}", s.banner))
        .clone();
    let password = line.rsplit(' ').next().unwrap().to_string();
    s.login(None, &password).await;
    let stored = std::fs::read_to_string(s.data_dir.join("admin-password.argon2")).unwrap();
    assert!(stored.starts_with("$argon2"), "{stored}");
    assert!(!stored.contains(&password));

    // A restart keeps the password and does not print it again.
    s.kill();
    let dir = s.data_dir.clone();
    let mut again = Server::spawn(
        &dir,
        &Options {
            password: None,
            ..Default::default()
        },
    )
    .await;
    assert!(
        !again.banner.iter().any(|l| l.contains("password")),
        "{:?}",
        again.banner
    );
    again.login(None, &password).await;
    drop(again);
}

#[tokio::test]
async fn multi_user_mode_uses_the_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    for (name, pw) in [("alice", "alice-password"), ("bob", "bob-password")] {
        add_user(&users, name, pw);
    }
    assert!(!std::fs::read_to_string(&users)
        .unwrap()
        .contains("alice-password"));

    let opts = Options {
        password: None,
        env: vec![("BERTH_USERS_FILE".into(), users.to_string_lossy().into())],
        ..Default::default()
    };
    let mut s = Server::start_with(opts).await;
    s.login(Some("alice"), "alice-password").await;
    let (status, v) = s.get("/api/auth/verify").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["user"], "alice");
    for body in [
        json!({ "username": "alice", "password": "bob-password" }),
        json!({ "username": "carol", "password": "alice-password" }),
        json!({ "password": "alice-password" }),
    ] {
        let (status, _) = s.post("/api/auth/login", body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }

    // A password reset voids the tokens issued before it; so does removing the user.
    let alice_token = s.token.clone();
    s.login(Some("bob"), "bob-password").await;
    let bob_token = s.token.clone();
    add_user(&users, "alice", "alice-new-password");
    let (status, _) = s
        .call_as(&alice_token, "GET", "/api/auth/verify", None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a reset password voids old tokens"
    );
    let (status, _) = s.call_as(&bob_token, "GET", "/api/auth/verify", None).await;
    assert_eq!(status, StatusCode::OK, "other users keep theirs");
    let text = std::fs::read_to_string(&users).unwrap();
    let without_bob: String = text
        .lines()
        .filter(|l| !l.starts_with("bob:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&users, without_bob).unwrap();
    let (status, _) = s
        .call_as(&bob_token, "GET", "/v1/opencode/codebases", None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a removed user's token is void"
    );
    s.login(Some("alice"), "alice-new-password").await;
    assert_eq!(s.get("/api/auth/verify").await.0, StatusCode::OK);
}

/// `berth users add NAME --file FILE` with the password on stdin.
fn add_user(file: &std::path::Path, name: &str, pw: &str) {
    users_add(&[name, "--file", file.to_str().unwrap()], pw);
}

#[tokio::test]
async fn stats_report_host_usage_and_berth_counts() {
    let s = Server::start().await;
    let (status, v) = s.get("/api/stats").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["cpu"]["cores"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["memory"]["total_bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(v["disk"]["total_bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(v["network"]["rx_bytes"].is_u64(), "{v}");
    assert_eq!(v["berth"]["workspaces"]["total"], 0);
    assert_eq!(v["berth"]["agents"]["codebases"], 0);
    assert_eq!(v["berth"]["agents"]["tasks"]["pending"], 0);
    assert_eq!(v["berth"]["agents"]["agent_servers"], 0);
}
