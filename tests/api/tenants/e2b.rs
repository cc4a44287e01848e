//! E2B's API across users: errors in E2B's shape, and another user's sandbox does not exist on any of
//! its routes.

use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn e2b_errors_come_in_its_shape_and_another_users_sandbox_does_not_exist() {
    let t = super::tenants(vec![]).await;
    let s = &t.s;
    let key = super::login(s, super::ALICE).await;
    let bob_key = super::login(s, super::BOB).await;
    let e2b = |method: reqwest::Method, path: &str, key: Option<&str>| {
        let mut req = s.client().request(method, format!("{}/e2b{path}", s.url));
        if let Some(k) = key {
            req = req.header("X-API-Key", k);
        }
        req
    };
    // No key, a wrong key: 401 in E2B's shape.
    for key in [None, Some("berth_not-a-key")] {
        let resp = e2b(reqwest::Method::GET, "/v2/sandboxes", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["code"], 401, "{v}");
        assert!(v["message"].is_string(), "{v}");
    }
    // An unknown template names berth's.
    let resp = e2b(reqwest::Method::POST, "/v2/sandboxes", Some(&key))
        .json(&json!({ "templateID": "no-such-template" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("debian"), "{v}");
    // A sandbox: secure, so its envd traffic needs its token.
    let resp = e2b(reqwest::Method::POST, "/v2/sandboxes", Some(&key))
        .json(&json!({ "templateID": "base", "timeout": 60 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let sbx: serde_json::Value = resp.json().await.unwrap();
    let id = sbx["sandboxID"].as_str().unwrap().to_string();
    let token = sbx["envdAccessToken"].as_str().unwrap().to_string();
    let health = |t: Option<&str>| {
        let mut req = s
            .client()
            .get(format!("{}/e2b/health", s.url))
            .header("E2b-Sandbox-Id", &id)
            .header("E2b-Sandbox-Port", "49983");
        if let Some(t) = t {
            req = req.header("X-Access-Token", t);
        }
        req.send()
    };
    assert_eq!(
        health(None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        health(Some("wrong")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        health(Some(&token)).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    // A snapshot name past its bound and a fork count out of range are refused, making nothing.
    let long = "n".repeat(129);
    for (path, body) in [
        (
            format!("/sandboxes/{id}/snapshots"),
            json!({ "name": long }),
        ),
        (format!("/sandboxes/{id}/fork"), json!({ "count": 11 })),
        (format!("/sandboxes/{id}/fork"), json!({ "count": 0 })),
    ] {
        let resp = e2b(reqwest::Method::POST, &path, Some(&key))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path} {body}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["code"], 400, "{v}");
    }
    let resp = e2b(reqwest::Method::GET, "/snapshots", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap(), json!([]));
    // It is a berth workspace of its user.
    let (status, w) = s
        .call_as(&key, "GET", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{w}");
    assert_eq!(w["owner"], "alice", "{w}");
    // Another user: none of its routes find it.
    for (method, path) in [
        (reqwest::Method::GET, format!("/sandboxes/{id}")),
        (reqwest::Method::DELETE, format!("/sandboxes/{id}")),
        (reqwest::Method::POST, format!("/sandboxes/{id}/timeout")),
        (reqwest::Method::POST, format!("/sandboxes/{id}/refreshes")),
        (reqwest::Method::POST, format!("/sandboxes/{id}/pause")),
        (reqwest::Method::POST, format!("/sandboxes/{id}/resume")),
        (reqwest::Method::POST, format!("/sandboxes/{id}/connect")),
        (reqwest::Method::POST, format!("/v2/sandboxes/{id}/connect")),
        (reqwest::Method::GET, format!("/sandboxes/{id}/metrics")),
    ] {
        let resp = e2b(method.clone(), &path, Some(&bob_key))
            .json(&json!({ "timeout": 30 }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "bob {method} {path}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["code"], 404, "{v}");
    }
    // A workspace's port (not a sandbox's) is its owner's: another user's token finds nothing there.
    let (status, w) = s
        .call_as(
            &key,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "web", "workspace_type": "container" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{w}");
    let resp = e2b(reqwest::Method::GET, "/", Some(&bob_key))
        .header("E2b-Sandbox-Id", w["id"].as_str().unwrap())
        .header("E2b-Sandbox-Port", "8000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = e2b(reqwest::Method::GET, "/v2/sandboxes", Some(&bob_key))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v, json!([]), "bob lists alice's sandbox");
    // Alice kills it; then it is 404 to her too.
    let resp = e2b(
        reqwest::Method::DELETE,
        &format!("/sandboxes/{id}"),
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = e2b(
        reqwest::Method::GET,
        &format!("/sandboxes/{id}"),
        Some(&key),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    s.assert_no_engine_objects().await;
}
