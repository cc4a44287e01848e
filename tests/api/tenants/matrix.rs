//! Every route that takes an object id, walked as another user: 404 and nothing changed; what an
//! admin sees.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;

use super::*;

/// Every path the server serves, from the binary itself.
fn served_paths() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("routes")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Paths with an id that name no user's object, and why.
const SHARED: [(&str, &str); 9] = [
    ("/api/library/{type}", "the library is the team's"),
    ("/api/library/{type}/{name}", "the library is the team's"),
    (
        "/api/library/skill/{name}/files/{*path}",
        "the library is the team's",
    ),
    ("/api/providers/{id}/auth", "provider keys are the server's"),
    ("/api/backends/{id}/config", "backends are the server's"),
    ("/api/backends/{id}/agents", "backends are the server's"),
    (
        "/api/library/skills/{name}/references/{*path}",
        "the library is the team's",
    ),
    (
        "/e2b/{*path}",
        "sandbox traffic names its sandbox in a header and carries the sandbox's access token, not a \
         user's (tests/api/tenants/e2b.rs walks it)",
    ),
    (
        "/llm/{provider}/{*path}",
        "providers are the server's; the caller is a workspace, by its own gateway token",
    ),
];

#[tokio::test]
async fn another_users_objects_do_not_exist_on_any_route() {
    let t = tenants(Vec::new()).await;
    let s = &t.s;
    let alice = login(s, ALICE).await;
    let bob = login(s, BOB).await;
    let root = login(s, ROOT).await;

    // Alice's objects: a workspace (not built: ownership is checked before anything else), a mission
    // on it, a worker with a codebase and a task, and an API token.
    let (status, ws) = s
        .call_as(
            &alice,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "mine" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    assert_eq!(ws["workspace_type"], "container", "{ws}");
    assert_eq!(ws["owner"], "alice");
    let ws = ws["id"].as_str().unwrap().to_string();
    let (status, m) = s
        .call_as(
            &alice,
            "POST",
            "/api/control/missions",
            Some(json!({ "title": "secret work", "workspace_id": ws })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let mission = m["id"].as_str().unwrap().to_string();
    let (status, w) = s
        .call_as(
            &alice,
            "POST",
            "/v1/opencode/workers/register",
            Some(json!({ "name": "alice-box" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{w}");
    let worker = w["worker_id"].as_str().unwrap().to_string();
    let (status, cb) = s
        .call_as(
            &alice,
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "repo", "path": "/home/alice/repo", "worker_id": worker })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cb}");
    let cb = cb["codebase"]["id"].as_str().unwrap().to_string();
    let (status, task) = s
        .call_as(
            &alice,
            "POST",
            &format!("/v1/opencode/codebases/{cb}/tasks"),
            Some(json!({ "title": "t", "prompt": "alice's private prompt" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    let task = task["task"]["id"].as_str().unwrap().to_string();
    let (status, tok) = s
        .call_as(
            &alice,
            "POST",
            "/api/auth/tokens",
            Some(json!({ "name": "ci" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tok}");
    let tok_id = tok["id"].as_str().unwrap().to_string();
    // An E2B sandbox (a workspace of hers, built).
    let (status, sbx) = s
        .call_as(
            &alice,
            "POST",
            "/e2b/sandboxes",
            Some(json!({ "templateID": "base", "timeout": 600 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sbx}");
    let sbx = sbx["sandboxID"].as_str().unwrap().to_string();
    let (status, snap) = s
        .call_as(
            &alice,
            "POST",
            &format!("/e2b/sandboxes/{sbx}/snapshots"),
            Some(json!({ "name": "hers" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{snap}");
    let snap = snap["snapshotID"].as_str().unwrap().to_string();

    // (path template, method, concrete path, body)
    let cbp = format!("/v1/opencode/codebases/{cb}");
    let matrix: Vec<(&str, &str, String, Value)> = vec![
        (
            "/api/auth/tokens/{id}",
            "DELETE",
            format!("/api/auth/tokens/{tok_id}"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}",
            "GET",
            format!("/api/workspaces/{ws}"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}",
            "PUT",
            format!("/api/workspaces/{ws}"),
            json!({ "name": "stolen" }),
        ),
        (
            "/api/workspaces/{id}",
            "DELETE",
            format!("/api/workspaces/{ws}"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/build",
            "POST",
            format!("/api/workspaces/{ws}/build"),
            json!({}),
        ),
        (
            "/api/workspaces/{id}/exec",
            "POST",
            format!("/api/workspaces/{ws}/exec"),
            json!({ "command": "id" }),
        ),
        (
            "/api/workspaces/{id}/processes",
            "POST",
            format!("/api/workspaces/{ws}/processes"),
            json!({ "command": "id" }),
        ),
        (
            "/api/workspaces/{id}/processes",
            "GET",
            format!("/api/workspaces/{ws}/processes"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/processes/{pid}/output",
            "GET",
            format!("/api/workspaces/{ws}/processes/1/output"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/processes/{pid}/stdin",
            "POST",
            format!("/api/workspaces/{ws}/processes/1/stdin"),
            json!({ "data": "x" }),
        ),
        (
            "/api/workspaces/{id}/processes/{pid}/signal",
            "POST",
            format!("/api/workspaces/{ws}/processes/1/signal"),
            json!({ "signal": "KILL" }),
        ),
        (
            "/api/workspaces/{id}/processes/{pid}/resize",
            "POST",
            format!("/api/workspaces/{ws}/processes/1/resize"),
            json!({ "cols": 80, "rows": 24 }),
        ),
        (
            "/api/workspaces/{id}/files",
            "GET",
            format!("/api/workspaces/{ws}/files?path=/etc/hostname"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/files",
            "PUT",
            format!("/api/workspaces/{ws}/files?path=stolen"),
            json!("x"),
        ),
        (
            "/api/workspaces/{id}/files",
            "DELETE",
            format!("/api/workspaces/{ws}/files?path=/workspace"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/pty",
            "GET",
            format!("/api/workspaces/{ws}/pty"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/files/list",
            "GET",
            format!("/api/workspaces/{ws}/files/list?path=/"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/files/mkdir",
            "POST",
            format!("/api/workspaces/{ws}/files/mkdir"),
            json!({ "path": "stolen" }),
        ),
        (
            "/api/workspaces/{id}/files/move",
            "POST",
            format!("/api/workspaces/{ws}/files/move"),
            json!({ "from": "a", "to": "b" }),
        ),
        (
            "/api/workspaces/{id}/files/watch",
            "GET",
            format!("/api/workspaces/{ws}/files/watch?path=/workspace"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/init-log",
            "GET",
            format!("/api/workspaces/{ws}/init-log"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/rerun-init",
            "POST",
            format!("/api/workspaces/{ws}/rerun-init"),
            json!({}),
        ),
        (
            "/api/workspaces/{id}/stop",
            "POST",
            format!("/api/workspaces/{ws}/stop"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/start",
            "POST",
            format!("/api/workspaces/{ws}/start"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/preview",
            "POST",
            format!("/api/workspaces/{ws}/preview"),
            json!({ "port": 8000 }),
        ),
        (
            "/api/workspaces/{id}/debug",
            "GET",
            format!("/api/workspaces/{ws}/debug"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/sync",
            "POST",
            format!("/api/workspaces/{ws}/sync"),
            Value::Null,
        ),
        (
            "/api/workspaces/{id}/opencode/{*path}",
            "GET",
            format!("/api/workspaces/{ws}/opencode/session"),
            Value::Null,
        ),
        (
            "/api/control/missions/{id}",
            "GET",
            format!("/api/control/missions/{mission}"),
            Value::Null,
        ),
        (
            "/api/control/missions/{id}",
            "DELETE",
            format!("/api/control/missions/{mission}"),
            Value::Null,
        ),
        (
            "/api/control/missions/{id}/load",
            "POST",
            format!("/api/control/missions/{mission}/load"),
            Value::Null,
        ),
        (
            "/api/control/missions/{id}/cancel",
            "POST",
            format!("/api/control/missions/{mission}/cancel"),
            Value::Null,
        ),
        (
            "/api/control/missions/{id}/status",
            "POST",
            format!("/api/control/missions/{mission}/status"),
            json!({ "status": "failed" }),
        ),
        (
            "/api/control/missions/{id}/resume",
            "POST",
            format!("/api/control/missions/{mission}/resume"),
            Value::Null,
        ),
        (
            "/api/control/missions/{id}/events",
            "GET",
            format!("/api/control/missions/{mission}/events"),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}",
            "GET",
            cbp.clone(),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}",
            "DELETE",
            cbp.clone(),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}/trigger",
            "POST",
            format!("{cbp}/trigger"),
            json!({ "prompt": "p" }),
        ),
        (
            "/v1/opencode/codebases/{id}/message",
            "POST",
            format!("{cbp}/message"),
            json!({ "message": "m" }),
        ),
        (
            "/v1/opencode/codebases/{id}/interrupt",
            "POST",
            format!("{cbp}/interrupt"),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}/stop",
            "POST",
            format!("{cbp}/stop"),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}/status",
            "GET",
            format!("{cbp}/status"),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}/sessions",
            "GET",
            format!("{cbp}/sessions"),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}/sessions/sync",
            "POST",
            format!("{cbp}/sessions/sync"),
            json!({ "worker_id": worker, "sessions": [] }),
        ),
        (
            "/v1/opencode/codebases/{id}/messages",
            "GET",
            format!("{cbp}/messages"),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}/events",
            "GET",
            format!("{cbp}/events"),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}/tasks",
            "GET",
            format!("{cbp}/tasks"),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}/tasks",
            "POST",
            format!("{cbp}/tasks"),
            json!({ "title": "x", "prompt": "x" }),
        ),
        (
            "/v1/opencode/tasks/{id}",
            "GET",
            format!("/v1/opencode/tasks/{task}"),
            Value::Null,
        ),
        (
            "/v1/opencode/tasks/{id}/status",
            "PUT",
            format!("/v1/opencode/tasks/{task}/status"),
            json!({ "status": "completed", "worker_id": worker, "result": "forged" }),
        ),
        (
            "/v1/opencode/tasks/{id}/output",
            "GET",
            format!("/v1/opencode/tasks/{task}/output"),
            Value::Null,
        ),
        (
            "/v1/opencode/tasks/{id}/output",
            "POST",
            format!("/v1/opencode/tasks/{task}/output"),
            json!({ "worker_id": worker, "output": "x" }),
        ),
        (
            "/v1/opencode/tasks/{id}/cancel",
            "POST",
            format!("/v1/opencode/tasks/{task}/cancel"),
            Value::Null,
        ),
        (
            "/v1/opencode/codebases/{id}/sessions/{sid}/messages/sync",
            "POST",
            format!("{cbp}/sessions/ses_x/messages/sync"),
            json!({ "worker_id": worker, "messages": [] }),
        ),
        (
            "/api/control/queue/{id}",
            "DELETE",
            "/api/control/queue/msg_x".into(),
            Value::Null,
        ),
        (
            "/v1/opencode/workers/{id}/unregister",
            "POST",
            format!("/v1/opencode/workers/{worker}/unregister"),
            Value::Null,
        ),
        (
            "/v1/opencode/workers/{id}/heartbeat",
            "POST",
            format!("/v1/opencode/workers/{worker}/heartbeat"),
            Value::Null,
        ),
        (
            "/v1/opencode/workers/{id}/claim",
            "POST",
            format!("/v1/opencode/workers/{worker}/claim"),
            Value::Null,
        ),
        (
            "/v1/opencode/runtime/sessions/{id}",
            "GET",
            "/v1/opencode/runtime/sessions/ses_x".into(),
            Value::Null,
        ),
        (
            "/v1/opencode/runtime/sessions/{id}/messages",
            "GET",
            "/v1/opencode/runtime/sessions/ses_x/messages".into(),
            Value::Null,
        ),
        (
            "/v1/opencode/runtime/sessions/{id}/parts",
            "GET",
            "/v1/opencode/runtime/sessions/ses_x/parts".into(),
            Value::Null,
        ),
        (
            "/e2b/sandboxes/{id}",
            "GET",
            format!("/e2b/sandboxes/{sbx}"),
            Value::Null,
        ),
        (
            "/e2b/sandboxes/{id}",
            "DELETE",
            format!("/e2b/sandboxes/{sbx}"),
            Value::Null,
        ),
        (
            "/e2b/sandboxes/{id}/timeout",
            "POST",
            format!("/e2b/sandboxes/{sbx}/timeout"),
            json!({ "timeout": 1 }),
        ),
        (
            "/e2b/sandboxes/{id}/refreshes",
            "POST",
            format!("/e2b/sandboxes/{sbx}/refreshes"),
            json!({ "duration": 60 }),
        ),
        (
            "/e2b/sandboxes/{id}/pause",
            "POST",
            format!("/e2b/sandboxes/{sbx}/pause"),
            Value::Null,
        ),
        (
            "/e2b/sandboxes/{id}/resume",
            "POST",
            format!("/e2b/sandboxes/{sbx}/resume"),
            json!({}),
        ),
        (
            "/e2b/sandboxes/{id}/connect",
            "POST",
            format!("/e2b/sandboxes/{sbx}/connect"),
            json!({ "timeout": 1 }),
        ),
        (
            "/e2b/v2/sandboxes/{id}/connect",
            "POST",
            format!("/e2b/v2/sandboxes/{sbx}/connect"),
            json!({ "timeout": 1 }),
        ),
        (
            "/e2b/sandboxes/{id}/snapshots",
            "POST",
            format!("/e2b/sandboxes/{sbx}/snapshots"),
            json!({}),
        ),
        (
            "/e2b/sandboxes/{id}/fork",
            "POST",
            format!("/e2b/sandboxes/{sbx}/fork"),
            json!({ "count": 1 }),
        ),
        (
            "/e2b/templates/{id}",
            "DELETE",
            format!("/e2b/templates/{snap}"),
            Value::Null,
        ),
        (
            "/e2b/sandboxes/{id}/metrics",
            "GET",
            format!("/e2b/sandboxes/{sbx}/metrics"),
            Value::Null,
        ),
    ];

    // A route added later that takes an id must join the matrix (or say why it is shared).
    for path in served_paths().iter().filter(|p| p.contains('{')) {
        let covered =
            matrix.iter().any(|(t, ..)| t == path) || SHARED.iter().any(|(t, _)| t == path);
        assert!(
            covered,
            "route {path} takes an id but is not in the ownership matrix"
        );
    }

    for (_, method, path, body) in &matrix {
        let body = (!body.is_null()).then(|| body.clone());
        let (status, v) = s.call_as(&bob, method, path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "bob {method} {path}: {v}");
    }

    // Nothing changed: alice still has all of it, the task is untouched.
    for path in [
        format!("/api/workspaces/{ws}"),
        format!("/api/control/missions/{mission}"),
        format!("/v1/opencode/codebases/{cb}"),
        format!("/e2b/sandboxes/{sbx}"),
    ] {
        let (status, v) = s.call_as(&alice, "GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
    }
    let (_, v) = s
        .call_as(&alice, "GET", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(v["name"], "mine");
    let (_, v) = s
        .call_as(&alice, "GET", &format!("/e2b/sandboxes/{sbx}"), None)
        .await;
    assert_eq!(v["state"], "running", "{v}");
    let (_, v) = s.call_as(&alice, "GET", "/e2b/snapshots", None).await;
    assert_eq!(v[0]["snapshotID"], snap.as_str(), "{v}");
    // Bob's listing holds none of it, nor can he start a sandbox from it.
    let (_, v) = s.call_as(&bob, "GET", "/e2b/snapshots", None).await;
    assert_eq!(v, json!([]));
    let (status, v) = s
        .call_as(
            &bob,
            "POST",
            "/e2b/sandboxes",
            Some(json!({ "templateID": snap })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (_, v) = s
        .call_as(&alice, "GET", &format!("/v1/opencode/tasks/{task}"), None)
        .await;
    assert_eq!(v["status"], "pending", "{v}");
    let token = tok["token"].as_str().unwrap();
    assert_eq!(
        s.call_as(token, "GET", "/api/auth/verify", None).await.0,
        StatusCode::OK
    );

    // Bob's listings hold none of it, nor do his counts.
    for (path, key) in [
        ("/api/workspaces", None),
        ("/api/control/missions", None),
        ("/v1/opencode/codebases", None),
        ("/v1/opencode/workers", None),
        ("/api/auth/tokens", None),
        ("/v1/opencode/tasks", Some("tasks")),
    ] {
        let (status, v) = s.call_as(&bob, "GET", path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        let list = key.map_or(&v, |k| &v[k]);
        assert_eq!(
            list.as_array().map(Vec::len),
            Some(0),
            "bob sees {path}: {v}"
        );
    }
    let (_, stats) = s.call_as(&bob, "GET", "/api/stats", None).await;
    assert_eq!(stats["berth"]["workspaces"]["total"], 0, "{stats}");
    assert_eq!(stats["berth"]["agents"]["tasks"]["pending"], 0, "{stats}");
    let (_, log) = s.call_as(&bob, "GET", "/v1/monitor/messages", None).await;
    assert!(
        !log.to_string().contains(&task),
        "bob reads alice's monitor log: {log}"
    );

    // The admin sees and acts on everything; listings say whose each object is.
    let (status, v) = s
        .call_as(&root, "GET", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, all) = s.call_as(&root, "GET", "/api/workspaces", None).await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == ws.as_str() && w["owner"] == "alice"),
        "{all}"
    );
    // A name is always the caller's own: the admin reaches alice's workspace by id, not by name.
    let (status, _) = s.call_as(&root, "GET", "/api/workspaces/mine", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = s.call_as(&alice, "GET", "/api/workspaces/mine", None).await;
    assert_eq!(
        (status, v["id"].as_str()),
        (StatusCode::OK, Some(ws.as_str()))
    );
    let (_, all) = s.call_as(&root, "GET", "/api/control/missions", None).await;
    assert!(all.to_string().contains(&mission), "{all}");
    let (_, stats) = s.call_as(&root, "GET", "/api/stats", None).await;
    // Alice's workspace and her sandbox's.
    assert_eq!(stats["berth"]["workspaces"]["total"], 2, "{stats}");

    // Names are per user: bob may have a workspace called "mine" too.
    let (status, v) = s
        .call_as(
            &bob,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "mine" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = s
        .call_as(&alice, "DELETE", &format!("/e2b/sandboxes/{sbx}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let (status, v) = s
        .call_as(&alice, "DELETE", &format!("/e2b/templates/{snap}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    s.assert_no_engine_objects().await;
}
