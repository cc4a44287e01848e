//! Crash safety: what a second server, a kill or a restart must never do to a data dir's state.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{eventually, process_running, Server};

#[tokio::test]
async fn a_second_berth_on_a_data_dir_in_use_refuses_to_start_and_touches_nothing() {
    let s = Server::start().await;
    let (status, ws) = s.post("/api/workspaces", json!({ "name": "kept" })).await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    let mut second = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data_dir)
        .env("BERTH_PASSWORD", "other")
        .env("BERTH_PULL_BASE_IMAGES", "false")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let code = eventually("the second berth exits", Duration::from_secs(30), || {
        let done = second.try_wait().unwrap();
        async move { done }
    })
    .await;
    assert!(!code.success(), "a second berth must not run");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("another berth is using data dir"), "{err}");
    // The first one goes on as it was: its store, its login, its workspace.
    let (status, v) = s
        .get(&format!("/api/workspaces/{}", ws["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], ws["status"], "{v}");
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_graceful_stop_is_prompt_and_kills_the_execs_it_cuts_off() {
    let mut s = Server::start().await;
    let ws = s.ready_workspace("long-exec", json!({})).await;
    // An exec that would run for 45 s, in flight when berth is told to stop.
    let (url, token) = (s.url.clone(), s.token.clone());
    let id = ws.clone();
    let exec = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/api/workspaces/{id}/exec"))
            .bearer_auth(token)
            .json(&json!({ "command": "sleep 45; echo finished", "timeout_secs": 120 }))
            .send()
            .await
    });
    let container = format!("berth-ws-{ws}");
    eventually("the exec runs", Duration::from_secs(30), || {
        let c = container.clone();
        async move { sleeping(&c).await.then_some(()) }
    })
    .await;
    let took = s.terminate();
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    // The client got an answer (or its connection closed), not a 45 s wait.
    match exec.await.unwrap() {
        Ok(resp) => {
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            let v: serde_json::Value = resp.json().await.unwrap();
            assert!(v["error"].as_str().unwrap().contains("stopping"), "{v}");
        }
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    // Nothing it started runs on in the container.
    assert!(!sleeping(&container).await, "the cut-off exec still runs");
}

/// Whether `sleep 45` runs in the container.
async fn sleeping(container: &str) -> bool {
    process_running(container, "sleep 45").await
}

#[tokio::test]
async fn what_a_crash_cut_off_in_a_container_is_killed_and_named() {
    let mut s = Server::start().await;
    let ws = s
        .ready_workspace("leftovers", json!({ "init_script": "true" }))
        .await;
    let container = format!("berth-ws-{ws}");
    // An exec with a 6 s timeout and a rerun-init that would run for 10 minutes, both cut off.
    s.call(
        "PUT",
        &format!("/api/workspaces/{ws}"),
        Some(json!({ "init_script": "sleep 601" })),
    )
    .await;
    let (url, token) = (s.url.clone(), s.token.clone());
    // The exec first (a rerun-init makes the workspace busy, and an exec then waits its turn).
    for (path, body, running) in [
        (
            "exec",
            json!({ "command": "sleep 602", "timeout_secs": 6 }),
            "sleep 602",
        ),
        ("rerun-init", json!({}), "sleep 601"),
    ] {
        let (url, token, id) = (url.clone(), token.clone(), ws.clone());
        tokio::spawn(async move {
            let _ = reqwest::Client::new()
                .post(format!("{url}/api/workspaces/{id}/{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await;
        });
        eventually(running, Duration::from_secs(30), || {
            let c = container.clone();
            async move { process_running(&c, running).await.then_some(()) }
        })
        .await;
    }
    eventually("both run", Duration::from_secs(30), || {
        let c = container.clone();
        async move {
            (process_running(&c, "sleep 601").await && process_running(&c, "sleep 602").await)
                .then_some(())
        }
    })
    .await;
    s.kill();
    let s2 = crate::harness::Server::spawn(&s.data_dir, &Default::default()).await;
    // The init is gone before anything can start a new one, and the error names what was cut off.
    assert!(
        !process_running(&container, "sleep 601").await,
        "the cut-off init runs on"
    );
    let (_, w) = s2.get(&format!("/api/workspaces/{ws}")).await;
    assert_eq!(w["status"], "error", "{w}");
    assert!(
        w["error_message"].as_str().unwrap().contains("rerun-init"),
        "{w}"
    );
    // The exec's own timeout is still enforced.
    eventually(
        "the cut-off exec is killed at its deadline",
        Duration::from_secs(30),
        || {
            let c = container.clone();
            async move { (!process_running(&c, "sleep 602").await).then_some(()) }
        },
    )
    .await;
    s2.call(
        "PUT",
        &format!("/api/workspaces/{ws}"),
        Some(json!({ "init_script": "ls /var/lib/berth/init | wc -l" })),
    )
    .await;
    let (status, r) = s2
        .post(&format!("/api/workspaces/{ws}/rerun-init"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["success"], true, "{r}");
    // Only this run's parts are there: the cut-off run's were removed.
    assert!(r["stdout"].as_str().unwrap().contains("\n1\n"), "{r}");
    let (status, _) = s2
        .call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s2.assert_no_engine_objects().await;
}

#[tokio::test]
async fn parallel_deletes_of_one_workspace_answer_204_once_and_404_otherwise() {
    let s = Server::start().await;
    let ws = s.ready_workspace("doomed", json!({})).await;
    let path = format!("/api/workspaces/{ws}");
    let calls = (0..5).map(|_| s.call("DELETE", &path, None));
    let answers = futures::future::join_all(calls).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|(st, _)| *st).collect();
    assert!(
        statuses
            .iter()
            .all(|st| *st == StatusCode::NO_CONTENT || *st == StatusCode::NOT_FOUND),
        "{answers:?}"
    );
    assert!(statuses.contains(&StatusCode::NO_CONTENT), "{answers:?}");
    let (status, _) = s.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.assert_no_engine_objects().await;
}
