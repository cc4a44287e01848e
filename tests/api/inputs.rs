//! Bad input gets a clear JSON error with the right status, and nothing is lost; host workspaces.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Options, Server};

#[tokio::test]
async fn bad_workspace_requests_get_clear_errors() {
    let s = Server::start().await;
    let (status, v) = s
        .post(
            "/api/workspaces",
            json!({ "name": "w", "workspace_type": "container", "distro": "fedora" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "invalid_request");
    let msg = v["error"].as_str().unwrap();
    for d in [
        "ubuntu-noble",
        "ubuntu-jammy",
        "debian-bookworm",
        "arch-linux",
    ] {
        assert!(msg.contains(d), "{msg}");
    }
    for name in ["", ".hidden", "a/b", "../x", "with space", &"x".repeat(65)] {
        let (status, v) = s.post("/api/workspaces", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {v}");
    }
    let bad = [
        json!({ "name": "w", "workspace_type": "vm" }),
        json!({ "name": "w", "template": "nope" }),
        json!({ "name": "w", "skills": ["../etc"] }),
        json!({ "name": "w", "env_vars": { "1BAD": "x" } }),
        json!({ "name": "w", "packages": ["$(reboot)"] }),
        json!({ "name": "w", "init_scripts": ["missing-fragment"] }),
        json!({ "name": "w", "path": "../outside" }),
        json!({ "name": "w", "path": "/etc" }),
        json!({ "nome": "w" }),
        json!({ "name": "0b6c5f7e-1a2b-4c3d-8e9f-0a1b2c3d4e5f" }),
        json!({ "name": 5 }),
    ];
    for body in bad {
        let (status, v) = s.post("/api/workspaces", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].is_string() && v["code"].is_string(), "{v}");
    }
    let (status, v) = s.raw("POST", "/api/workspaces", "{\"name\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "invalid_request");
    // An oversized body is refused from its Content-Length alone. Sent by hand, headers only: a client
    // still writing a body the server refused may see the connection reset before the answer.
    let answer = raw_http(
        &s.url,
        &format!(
            "POST /api/workspaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            s.token,
            5 << 20
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // Nothing above created anything.
    let (_, list) = s.get("/api/workspaces").await;
    assert_eq!(list, json!([]));

    for path in [
        "/api/workspaces/not-a-uuid",
        "/api/workspaces/00000000-0000-4000-8000-000000000000",
        "/api/workspaces/00000000-0000-4000-8000-000000000000/init-log",
        "/api/workspaces/00000000-0000-4000-8000-000000000000/debug",
    ] {
        let (status, v) = s.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {v}");
        assert_eq!(v["code"], "not_found");
    }
    let (status, _) = s
        .call(
            "DELETE",
            "/api/workspaces/00000000-0000-4000-8000-000000000000",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = s.get("/api/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test]
async fn a_pending_container_workspace_refuses_exec_and_names_are_unique() {
    let s = Server::start().await;
    let ws = s
        .create(json!({ "name": "pend", "workspace_type": "container", "distro": "bookworm" }))
        .await;
    assert_eq!(ws["status"], "pending");
    assert_eq!(ws["distro"], "debian-bookworm");
    assert_eq!(ws["path"], "/workspace");
    let id = ws["id"].as_str().unwrap();
    let (status, v) = s.exec(id, json!({ "command": "true" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = s
        .post(&format!("/api/workspaces/{id}/rerun-init"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = s.post("/api/workspaces", json!({ "name": "pend" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = s
        .post(
            &format!("/api/workspaces/{id}/build"),
            json!({ "distro": "plan9" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = s
        .raw("POST", &format!("/api/workspaces/{id}/build"), "{oops")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (_, again) = s.get(&format!("/api/workspaces/{id}")).await;
    assert_eq!(again["status"], "pending", "bad requests changed nothing");
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn env_var_values_are_never_returned_nor_stored_in_plaintext() {
    let s = Server::start_with(Options {
        env: vec![("BERTH_HOST_WORKSPACES".into(), "true".into())],
        ..Default::default()
    })
    .await;
    let secret = "s3cr3t-value-that-must-not-leak";
    let ws = s
        .create(json!({ "name": "h", "workspace_type": "host", "env_vars": { "API_KEY": secret } }))
        .await;
    assert_eq!(ws["env_vars"]["API_KEY"], "********");
    let id = ws["id"].as_str().unwrap();
    // The value reaches commands.
    let out = s.sh(id, "printf %s \"$API_KEY\"").await;
    assert_eq!(out["stdout"], secret);
    // A client sending back what it read keeps the value.
    let (status, v) = s
        .call(
            "PUT",
            &format!("/api/workspaces/{id}"),
            Some(json!({ "env_vars": { "API_KEY": "********", "B": "2" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let out = s.sh(id, "printf %s-%s \"$API_KEY\" \"$B\"").await;
    assert_eq!(out["stdout"], format!("{secret}-2"));
    for (_, v) in [
        s.get("/api/workspaces").await,
        s.get(&format!("/api/workspaces/{id}")).await,
        s.get(&format!("/api/workspaces/{id}/debug")).await,
    ] {
        assert!(!v.to_string().contains(secret), "{v}");
    }
    let db = std::fs::read(s.data_dir.join("berth.db")).unwrap();
    let wal = std::fs::read(s.data_dir.join("berth.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "plaintext secret in the store"
        );
    }
}

#[tokio::test]
async fn host_workspaces_exec_on_the_host() {
    let s = Server::start_with(Options {
        env: vec![("BERTH_HOST_WORKSPACES".into(), "true".into())],
        ..Default::default()
    })
    .await;
    // Enabled, the seed's default type is a host workspace for an admin.
    let ws = s.create(json!({ "name": "hostws" })).await;
    assert_eq!(ws["workspace_type"], "host");
    assert_eq!(ws["status"], "ready");
    let id = ws["id"].as_str().unwrap();

    let (status, v) = s
        .exec(id, json!({ "command": "mkdir -p sub; echo out; echo err >&2; echo $X; exit 3", "env": { "X": "y" } }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["stdout"], "out\ny\n");
    assert_eq!(v["stderr"], "err\n");
    let (_, v) = s.exec(id, json!({ "command": "pwd", "cwd": "sub" })).await;
    assert!(
        v["stdout"]
            .as_str()
            .unwrap()
            .trim_end()
            .ends_with("/hostws/sub"),
        "{v}"
    );
    let (status, v) = s
        .exec(id, json!({ "command": "pwd", "cwd": "missing" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    // A timeout kills the whole process group, grandchildren included.
    let marker = format!("berth-host-test-{}", std::process::id());
    let (_, v) = s
        .exec(id, json!({ "command": format!("bash -c 'exec -a {marker} sleep 300' & sleep 300"), "timeout_secs": 1 }))
        .await;
    assert_eq!(v["timed_out"], true, "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(&marker),
        "a grandchild survived the timeout"
    );

    let (_, v) = s
        .exec(id, json!({ "command": "head -c 3000000 /dev/zero" }))
        .await;
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stdout"].as_str().unwrap().len(), 1 << 20);

    for body in [
        json!({ "command": "" }),
        json!({ "command": "true", "timeout_secs": 0 }),
        json!({ "command": "true", "timeout_secs": 10_000_000 }),
        json!({ "command": "true", "env": { "A B": "x" } }),
        json!({ "cmd": "true" }),
    ] {
        let (status, v) = s.exec(id, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    let (status, v) = s
        .post(&format!("/api/workspaces/{id}/build"), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

/// Writes `request` to the server and returns what it answers before closing or going quiet.
async fn raw_http(url: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut chunk)).await
    {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if String::from_utf8_lossy(&buf).contains("}") {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
