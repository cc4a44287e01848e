//! API tokens, logout, void tokens and streams, a private data dir.

use reqwest::StatusCode;
use serde_json::json;

use super::*;

#[tokio::test]
async fn api_tokens_act_as_their_user_and_revoke_at_once() {
    let t = tenants(Vec::new()).await;
    let s = &t.s;
    let alice = login(s, ALICE).await;
    let bob = login(s, BOB).await;
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/api/auth/tokens",
            Some(json!({ "name": "ci", "expires_in_days": 0 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, tok) = s
        .call_as(
            &alice,
            "POST",
            "/api/auth/tokens",
            Some(json!({ "name": "ci", "expires_in_days": 30 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tok}");
    let token = tok["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("berth_"), "{token}");
    let id = tok["id"].as_str().unwrap();

    // Listed without its secret; stored only as a hash.
    let (_, list) = s.call_as(&alice, "GET", "/api/auth/tokens", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert!(!list.to_string().contains(&token), "{list}");
    let db = std::fs::read(s.data_dir.join("berth.db")).unwrap();
    let wal = std::fs::read(s.data_dir.join("berth.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }

    // It is alice everywhere a login token works.
    let (status, v) = s.call_as(&token, "GET", "/api/auth/verify", None).await;
    assert_eq!(
        (status, v["user"].clone()),
        (StatusCode::OK, json!("alice")),
        "{v}"
    );
    let (status, _) = s
        .call_as(
            &token,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "via-token" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, v) = s.call_as(&alice, "GET", "/api/workspaces", None).await;
    assert_eq!(v[0]["name"], "via-token", "{v}");
    let (status, _) = s
        .call_as(&token, "GET", "/v1/opencode/codebases", None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Only its owner revokes it, and then it is void at once.
    let (status, _) = s
        .call_as(&bob, "DELETE", &format!("/api/auth/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .call_as(&alice, "DELETE", &format!("/api/auth/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for path in ["/api/auth/verify", "/v1/opencode/codebases"] {
        let (status, _) = s.call_as(&token, "GET", path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }

    // Logout voids the login token it is called with, not the user's other ones.
    let other = login(s, ALICE).await;
    let (status, _) = s.call_as(&alice, "POST", "/api/auth/logout", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.call_as(&alice, "GET", "/api/auth/verify", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call_as(&other, "GET", "/api/auth/verify", None).await.0,
        StatusCode::OK
    );

    // A worker's token is for /v1 alone.
    let (_, w) = s
        .call_as(
            &other,
            "POST",
            "/v1/opencode/workers/register",
            Some(json!({ "name": "w" })),
        )
        .await;
    let wt = w["token"].as_str().unwrap();
    let (status, v) = s.call_as(wt, "GET", "/api/workspaces", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    // A reset password voids the user's API tokens; streams end with their token.
    let (_, tok) = s
        .call_as(
            &other,
            "POST",
            "/api/auth/tokens",
            Some(json!({ "name": "old" })),
        )
        .await;
    let old = tok["token"].as_str().unwrap().to_string();
    let stream = s
        .client()
        .get(format!("{}/api/control/stream", s.url))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let (status, _) = s.call_as(&other, "POST", "/api/auth/logout", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut body = stream.bytes_stream();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        use futures::StreamExt;
        while body.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream outlived its token's logout");
    add_user(&s.data_dir, ("alice", "alice-new-password"), false);
    assert_eq!(
        s.call_as(&old, "GET", "/api/auth/verify", None).await.0,
        StatusCode::UNAUTHORIZED
    );

    // What berth keeps at rest is its own.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.data_dir), 0o700);
    assert_eq!(mode(&s.data_dir.join("berth.db")), 0o600);
    assert_eq!(mode(&s.data_dir.join("users")), 0o600);
}
