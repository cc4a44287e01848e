//! Tenants: two users and an admin on one server. Every route that takes an object id answers 404 for
//! another user's object and changes nothing; host workspaces, host networking, library writes and
//! provider keys need the admin role; API tokens, logout; workers act only for their owner; logins are
//! throttled per client address.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use std::time::Duration;

use crate::harness::{eventually, users_add, Options, Server};

const ALICE: (&str, &str) = ("alice", "alice-password");
const BOB: (&str, &str) = ("bob", "bob-password");
const ROOT: (&str, &str) = ("root", "root-password");

/// A server in multi-user mode whose users file is `<data-dir>/users`, written by `berth users add`
/// and read by `serve` without being named.
struct Tenants {
    s: Server,
    _dir: tempfile::TempDir,
}

async fn tenants(env: Vec<(String, String)>) -> Tenants {
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

fn add_user(data_dir: &std::path::Path, (name, pw): (&str, &str), admin: bool) {
    let dir = data_dir.to_str().unwrap();
    let mut args = vec![name, "--data-dir", dir];
    if admin {
        args.push("--admin");
    }
    users_add(&args, pw);
}

async fn login(s: &Server, (name, pw): (&str, &str)) -> String {
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
const SHARED: [(&str, &str); 4] = [
    ("/api/library/{type}", "the library is the team's"),
    ("/api/library/{type}/{name}", "the library is the team's"),
    (
        "/api/library/skill/{name}/files/{*path}",
        "the library is the team's",
    ),
    ("/api/providers/{id}/auth", "provider keys are the server's"),
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
    ] {
        let (status, v) = s.call_as(&alice, "GET", &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
    }
    let (_, v) = s
        .call_as(&alice, "GET", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(v["name"], "mine");
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
    assert_eq!(stats["berth"]["workspaces"]["total"], 1, "{stats}");

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
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn host_workspaces_and_host_networking_are_admin_only_and_off_by_default() {
    let t = tenants(Vec::new()).await;
    let s = &t.s;
    let alice = login(s, ALICE).await;
    let root = login(s, ROOT).await;
    for who in [&alice, &root] {
        let (status, v) = s
            .call_as(
                who,
                "POST",
                "/api/workspaces",
                Some(json!({ "name": "h", "workspace_type": "host" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["code"], "host_workspaces_disabled");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("BERTH_HOST_WORKSPACES"),
            "{v}"
        );
    }
    // Unknown fields are named, not dropped.
    for field in ["type", "image"] {
        let (status, v) = s
            .call_as(
                &alice,
                "POST",
                "/api/workspaces",
                Some(json!({ "name": "x", field: "y" })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{v}");
    }
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "n", "network": "host" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "big", "memory_mb": 1_000_000 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, ws) = s
        .call_as(
            &alice,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "c", "memory_mb": 512, "cpus": 0.5, "pids": 256 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    assert_eq!(
        (ws["memory_mb"].clone(), ws["pids"].clone()),
        (json!(512), json!(256))
    );
    let id = ws["id"].as_str().unwrap();
    let (status, v) = s
        .call_as(
            &alice,
            "PUT",
            &format!("/api/workspaces/{id}"),
            Some(json!({ "network": "host" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .call_as(
            &alice,
            "PUT",
            &format!("/api/workspaces/{id}"),
            Some(json!({ "colour": "red" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // Nor through a codebase's workspace.
    let dir = s.data_dir.join("codebases/alice-repo");
    std::fs::create_dir_all(&dir).unwrap();
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "r", "path": dir, "agent_config": { "network": "host" } })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (_, v) = s
        .call_as(&alice, "GET", "/v1/opencode/codebases", None)
        .await;
    assert_eq!(
        v.as_array().unwrap().len(),
        0,
        "a refused registration leaves nothing: {v}"
    );
    // Registered without it, a later registration cannot add it.
    let plain = json!({ "name": "r", "path": dir });
    let (status, v) = s
        .call_as(&alice, "POST", "/v1/opencode/codebases", Some(plain))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "r", "path": dir, "agent_config": { "network": "host" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        v["codebase"]["agent_config"].get("network").is_none(),
        "{v}"
    );
    // Nobody else mounts alice's directory: not it, not inside it, not around it.
    let bob = login(s, BOB).await;
    for path in [dir.clone(), dir.join("src"), s.data_dir.join("codebases")] {
        std::fs::create_dir_all(&path).unwrap();
        let (status, v) = s
            .call_as(
                &bob,
                "POST",
                "/v1/opencode/codebases",
                Some(json!({ "name": "x", "path": path })),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{path:?}: {v}");
    }
    // Library writes and provider keys are the admin's.
    let skill = json!({ "content": "---\nname: s\ndescription: d\n---\nbody\n" });
    let (status, v) = s
        .call_as(&alice, "PUT", "/api/library/skill/s", Some(skill.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .call_as(&root, "PUT", "/api/library/skill/s", Some(skill))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = s.call_as(&alice, "GET", "/api/library/skill/s", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/api/providers/openai/auth",
            Some(json!({ "api_key": "k" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    drop(t);

    // Enabled by the operator: for admins only, and only with host fields.
    let t = tenants(vec![("BERTH_HOST_WORKSPACES".into(), "true".into())]).await;
    let s = &t.s;
    let alice = login(s, ALICE).await;
    let root = login(s, ROOT).await;
    let host = json!({ "name": "h", "workspace_type": "host" });
    let (status, v) = s
        .call_as(&alice, "POST", "/api/workspaces", Some(host.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .call_as(
            &root,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "h", "workspace_type": "host", "distro": "bookworm" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("distro"), "{v}");
    let (status, v) = s
        .call_as(&root, "POST", "/api/workspaces", Some(host))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap();
    // A mission on a host workspace is refused up front, with the reason.
    let (status, v) = s
        .call_as(
            &root,
            "POST",
            "/api/control/missions",
            Some(json!({ "workspace_id": id })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("host workspace"),
        "{v}"
    );
}

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

#[tokio::test]
async fn failed_logins_are_throttled_per_address_whatever_the_username() {
    let t = tenants(Vec::new()).await;
    let s = &t.s;
    let root = login(s, ROOT).await;
    // Twenty at once, each with another username: attempts count when they start, so however slow
    // the hashing, only the free ones (and the first delayed one) are checked; the rest wait.
    let attempts = (0..20).map(|i| async move {
        let resp = s
            .client()
            .post(format!("{}/api/auth/login", s.url))
            .json(&json!({ "username": format!("nobody{i}"), "password": "wrong" }))
            .send()
            .await
            .unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        (status, retry, body)
    });
    let answers = futures::future::join_all(attempts).await;
    let limited: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    let refused = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!((refused, limited.len()), (11, 9), "{answers:?}");
    for (_, retry, body) in limited {
        assert!(retry.is_some_and(|r| (1..=60).contains(&r)), "{retry:?}");
        assert_eq!(body["code"], "rate_limited");
    }
    // The audit log has the checked failures, not the refused flood.
    let (_, v) = s
        .call_as(&root, "GET", "/api/audit?action=login&limit=100", None)
        .await;
    let failed = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "failed")
        .count();
    assert_eq!(failed, 11, "{v}");
}
