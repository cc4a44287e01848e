//! Crash safety: what a second server, a kill or a restart must never do to a data dir's state.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{eventually, Server};

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
