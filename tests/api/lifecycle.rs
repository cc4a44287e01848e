//! A built workspace's container between builds: stop and start keep everything and run no init, and what
//! the engine does behind berth's back (a kill, an OOM kill, a removal) shows in the status at once.

use std::time::Duration;

use bollard::container::{KillContainerOptions, RemoveContainerOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{docker, eventually, process_running, Server};

async fn status_when(s: &Server, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    eventually(what, Duration::from_secs(30), || async {
        let (_, w) = s.get(&format!("/api/workspaces/{id}")).await;
        ok(&w).then_some(w)
    })
    .await
}

#[tokio::test]
async fn stop_and_start_keep_everything_and_run_no_init() {
    let s = Server::start().await;
    let id = s
        .ready_workspace(
            "power",
            json!({ "init_script": "echo ran >> /workspace/init-runs" }),
        )
        .await;
    s.sh(&id, "echo kept > /workspace/file; echo tmp > /tmp/file")
        .await;
    let (status, w) = s
        .post(&format!("/api/workspaces/{id}/stop"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{w}");
    assert_eq!(w["status"], "pending", "{w}");
    assert_eq!(w["container_state"], "stopped", "{w}");
    let d = docker().await;
    let c = d
        .inspect_container(&format!("berth-ws-{id}"), None)
        .await
        .unwrap();
    assert_eq!(c.state.unwrap().running, Some(false));
    let (status, e) = s.exec(&id, json!({ "command": "true" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert!(e["error"].as_str().unwrap().contains("/start"), "{e}");
    // The die event of a stop berth asked for changes nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, w) = s.get(&format!("/api/workspaces/{id}")).await;
    assert_eq!(w["status"], "pending", "{w}");
    // Stopping again is harmless.
    let (status, _) = s
        .post(&format!("/api/workspaces/{id}/stop"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, w) = s
        .post(&format!("/api/workspaces/{id}/start"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{w}");
    assert_eq!(w["status"], "ready", "{w}");
    assert_eq!(w["container_state"], "running", "{w}");
    let out = s
        .sh(
            &id,
            "cat /workspace/file /tmp/file; wc -l < /workspace/init-runs",
        )
        .await;
    assert_eq!(out["stdout"], "kept\ntmp\n1\n", "{out}");

    // Neither can act on a workspace that is building, nor start one that is ready.
    let (status, _) = s
        .post(&format!("/api/workspaces/{id}/start"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // A command in flight when a rebuild replaces the container is told why it ended.
    let (url, token, ws) = (s.url.clone(), s.token.clone(), id.clone());
    let exec = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!("{url}/api/workspaces/{ws}/exec"))
            .bearer_auth(token)
            .json(&json!({ "command": "sleep 47" }))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    });
    let container = format!("berth-ws-{id}");
    eventually("the exec runs", Duration::from_secs(30), || {
        let c = container.clone();
        async move { process_running(&c, "sleep 47").await.then_some(()) }
    })
    .await;
    let (status, _) = s
        .post(
            &format!("/api/workspaces/{id}/build"),
            json!({ "rebuild": true }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, e) = exec.await.unwrap();
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("a rebuild replaced"),
        "{e}"
    );
    let (status, e) = s
        .post(&format!("/api/workspaces/{id}/stop"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert_eq!(s.wait_built(&id).await["status"], "ready");
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn engine_side_changes_show_at_once() {
    let s = Server::start().await;
    let id = s
        .ready_workspace("watched", json!({ "memory_mb": 64 }))
        .await;
    let d = docker().await;
    let name = format!("berth-ws-{id}");

    // A process killed for lack of memory (the one that asked for it, by its OOM score): the container
    // runs on, the reason shows.
    let out = s
        .sh(&id, "head -c 400m /dev/zero | sh -c 'echo 1000 > /proc/self/oom_score_adj; exec tail' > /dev/null; echo $?")
        .await;
    assert_ne!(out["stdout"], "0\n", "{out}");
    let w = status_when(&s, &id, "the OOM kill shows", |w| {
        w["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("lack of memory (limit 64 MB)"))
    })
    .await;
    assert_eq!(w["status"], "ready", "{w}");
    assert_eq!(s.sh(&id, "echo alive").await["stdout"], "alive\n");
    let (_, debug) = s.get(&format!("/api/workspaces/{id}/debug")).await;
    assert_eq!(debug["container"]["oom_killed"], true, "{debug}");
    assert!(
        debug["container"]["oom_kills"].as_i64() >= Some(1),
        "{debug}"
    );

    // Killed behind berth's back: error with the exit code, and `start` brings it back as it was.
    s.sh(&id, "echo kept > /workspace/file").await;
    d.kill_container(&name, Some(KillContainerOptions { signal: "SIGKILL" }))
        .await
        .unwrap();
    let w = status_when(&s, &id, "the kill shows", |w| w["status"] == "error").await;
    assert_eq!(w["container_state"], "exited", "{w}");
    let msg = w["error_message"].as_str().unwrap();
    assert!(
        msg.contains("exited with code 137") && msg.contains("/start"),
        "{w}"
    );
    let (status, e) = s.exec(&id, json!({ "command": "true" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    let (status, w) = s
        .post(&format!("/api/workspaces/{id}/start"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{w}");
    assert_eq!(w["status"], "ready", "{w}");
    assert!(w["error_message"].is_null(), "{w}");
    assert_eq!(s.sh(&id, "cat /workspace/file").await["stdout"], "kept\n");

    // Stopped behind berth's back, then started behind its back: it follows both.
    d.stop_container(&name, None).await.unwrap();
    status_when(&s, &id, "the stop shows", |w| w["status"] == "error").await;
    d.start_container::<String>(&name, None).await.unwrap();
    let w = status_when(&s, &id, "the start shows", |w| w["status"] == "ready").await;
    assert_eq!(w["container_state"], "running", "{w}");

    // Removed behind berth's back: error, `start` refuses, a build makes a new container.
    d.remove_container(
        &name,
        Some(RemoveContainerOptions {
            force: true,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let w = status_when(&s, &id, "the removal shows", |w| {
        w["container_state"] == "removed"
    })
    .await;
    assert_eq!(w["status"], "error", "{w}");
    let (status, e) = s
        .post(&format!("/api/workspaces/{id}/start"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    let (status, _) = s
        .post(&format!("/api/workspaces/{id}/build"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let w = s.wait_built(&id).await;
    assert_eq!(w["status"], "ready", "{w}");
    assert_eq!(s.sh(&id, "cat /workspace/file").await["stdout"], "kept\n");
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}
