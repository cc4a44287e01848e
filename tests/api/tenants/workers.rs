//! Workers act only for their owner, and reports renew their lease.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;
use crate::harness::eventually;

#[tokio::test]
async fn workers_act_only_for_their_owner() {
    let t = tenants(Vec::new()).await;
    let s = &t.s;
    let alice = login(s, ALICE).await;
    let bob = login(s, BOB).await;
    let register = |who: String, name: &'static str| async move {
        let (status, w) = s
            .call_as(
                &who,
                "POST",
                "/v1/opencode/workers/register",
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{w}");
        (
            w["worker_id"].as_str().unwrap().to_string(),
            w["token"].as_str().unwrap().to_string(),
        )
    };
    let (wa, wa_token) = register(alice.clone(), "a").await;
    let (wb, wb_token) = register(bob.clone(), "b").await;
    let (_, cb) = s
        .call_as(
            &wa_token,
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "repo", "path": "/srv/repo" })),
        )
        .await;
    let cb = cb["codebase"]["id"].as_str().unwrap().to_string();
    let (_, task) = s
        .call_as(
            &alice,
            "POST",
            &format!("/v1/opencode/codebases/{cb}/tasks"),
            Some(json!({ "title": "t", "prompt": "private" })),
        )
        .await;
    let task = task["task"]["id"].as_str().unwrap().to_string();

    // Bob's worker cannot list alice's codebase, claim its task, read or report it.
    let (status, v) = s
        .call_as(
            &wb_token,
            "POST",
            &format!("/v1/opencode/workers/{wb}/heartbeat"),
            Some(json!({ "codebases": [cb] })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .call_as(
            &wb_token,
            "POST",
            &format!("/v1/opencode/workers/{wb}/claim"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["task"].is_null(), "{v}");
    let (status, _) = s
        .call_as(
            &wb_token,
            "POST",
            &format!("/v1/opencode/workers/{wb}/claim"),
            Some(json!({ "codebase_id": cb })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (method, path, body) in [
        ("GET", format!("/v1/opencode/tasks/{task}"), None),
        ("GET", format!("/v1/opencode/tasks/{task}/output"), None),
        (
            "PUT",
            format!("/v1/opencode/tasks/{task}/status"),
            Some(json!({ "status": "completed", "worker_id": wb, "result": "forged" })),
        ),
    ] {
        let (status, v) = s.call_as(&wb_token, method, &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {v}");
    }
    let (_, v) = s
        .call_as(&wb_token, "GET", "/v1/opencode/tasks", None)
        .await;
    assert_eq!(v["tasks"].as_array().unwrap().len(), 0, "{v}");
    // Nor can bob (a user) hand alice's task to his worker, or name alice's worker.
    let (status, _) = s
        .call_as(
            &bob,
            "POST",
            &format!("/v1/opencode/workers/{wa}/claim"),
            Some(json!({ "codebase_id": cb })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A worker's token reads no conversations and names no other worker.
    let (status, _) = s
        .call_as(&wa_token, "GET", "/v1/opencode/runtime/sessions", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .call_as(
            &wa_token,
            "PUT",
            &format!("/v1/opencode/tasks/{task}/status"),
            Some(json!({ "status": "running", "worker_id": wb })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Alice's worker takes it; a report renews its lease.
    let (status, v) = s
        .call_as(
            &wa_token,
            "POST",
            &format!("/v1/opencode/workers/{wa}/claim"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["id"], task.as_str(), "{v}");
    let lease = |v: &Value| v["lease_expires_at"].as_str().map(str::to_string);
    let (_, before) = s
        .call_as(&alice, "GET", &format!("/v1/opencode/tasks/{task}"), None)
        .await;
    assert!(lease(&before).is_some(), "{before}");
    // Each output report moves the lease to a full lease from now.
    eventually(
        "an output report to renew the lease",
        Duration::from_secs(10),
        || async {
            let (status, v) = s
                .call_as(
                    &wa_token,
                    "POST",
                    &format!("/v1/opencode/tasks/{task}/output"),
                    Some(json!({ "output": "working" })),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            let (_, after) = s
                .call_as(&alice, "GET", &format!("/v1/opencode/tasks/{task}"), None)
                .await;
            (lease(&after) > lease(&before)).then_some(())
        },
    )
    .await;
    let (status, v) = s
        .call_as(
            &wa_token,
            "PUT",
            &format!("/v1/opencode/tasks/{task}/status"),
            Some(json!({ "status": "completed", "result": "done" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // A refused sync stores none of its sessions.
    let (status, v) = s
        .call_as(
            &wa_token,
            "POST",
            &format!("/v1/opencode/codebases/{cb}/sessions/sync"),
            Some(json!({ "sessions": [{ "id": "ses_first" }, { "title": "no id" }] })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (_, v) = s
        .call_as(
            &alice,
            "GET",
            &format!("/v1/opencode/codebases/{cb}/sessions"),
            None,
        )
        .await;
    assert!(!v.to_string().contains("ses_first"), "{v}");
    // A worker sees only itself among its owner's workers.
    let (_, wa2) = s
        .call_as(
            &alice,
            "POST",
            "/v1/opencode/workers/register",
            Some(json!({ "name": "a2" })),
        )
        .await;
    let (_, v) = s
        .call_as(&wa_token, "GET", "/v1/opencode/workers", None)
        .await;
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_ne!(v[0]["worker_id"], wa2["worker_id"]);

    // A removed user's workers lose their tokens with them.
    let users = s.data_dir.join("users");
    let kept: String = std::fs::read_to_string(&users)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("bob:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&users, kept).unwrap();
    let (status, v) = s
        .call_as(
            &wb_token,
            "POST",
            &format!("/v1/opencode/workers/{wb}/heartbeat"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
}
