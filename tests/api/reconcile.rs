//! Restart reconciliation: a crash mid-build leaves nothing stuck, stopped containers come back, orphaned
//! labelled containers go, and containers without berth's labels are never touched.

use std::collections::HashMap;

use bollard::container::{
    Config, CreateContainerOptions, RemoveContainerOptions, StopContainerOptions,
};
use serde_json::json;

use crate::harness::{docker, Options, Server};

#[tokio::test]
async fn restart_reconciles_store_and_engine() {
    let mut s = Server::start().await;
    let instance = s.instance();
    let ready = s.ready_workspace("survivor", json!({})).await;
    let stuck = s
        .create(json!({ "name": "stuck", "template": "debian", "init_script": "sleep 600" }))
        .await;
    let stuck = stuck["id"].as_str().unwrap().to_string();
    s.wait_for_log(&stuck, "running 02-workspace.sh").await;

    let d = docker().await;
    // An orphan carrying this instance's labels, and a stranger without berth's labels.
    let orphan_labels = HashMap::from([
        ("berth.managed".to_string(), "true".to_string()),
        ("berth.instance".to_string(), instance.clone()),
        (
            "berth.workspace".to_string(),
            "00000000-0000-4000-8000-00000000dead".to_string(),
        ),
    ]);
    let stranger_name = format!("berth-test-stranger-{instance}");
    for (name, labels) in [
        (format!("berth-test-orphan-{instance}"), orphan_labels),
        (
            stranger_name.clone(),
            HashMap::from([("berth.test".to_string(), instance.clone())]),
        ),
    ] {
        d.create_container(
            Some(CreateContainerOptions {
                name: name.clone(),
                platform: None,
            }),
            Config {
                image: Some("debian:bookworm".to_string()),
                cmd: Some(vec!["true".to_string()]),
                labels: Some(labels),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    // A volume of this instance that no workspace owns (a delete cut off between its steps).
    d.create_volume(bollard::volume::CreateVolumeOptions {
        name: format!("berth-test-orphan-{instance}"),
        labels: orphan_labels_of(&instance),
        ..Default::default()
    })
    .await
    .unwrap();
    // Untagged images: one of this instance (a rebuild's leftover), one of nobody's.
    let dangling = build_untagged(&format!(
        "LABEL berth.managed=true berth.instance={instance}"
    ));
    let foreign = build_untagged(&format!("LABEL berth.test={instance}"));
    // The ready workspace's container stops while berth is down.
    s.kill();
    d.stop_container(
        &format!("berth-ws-{ready}"),
        Some(StopContainerOptions { t: 1 }),
    )
    .await
    .unwrap();

    let dir = s.data_dir.clone();
    let s2 = Server::spawn(&dir, &Options::default()).await;
    let (_, w) = s2.get(&format!("/api/workspaces/{stuck}")).await;
    assert_eq!(w["status"], "error", "{w}");
    assert!(
        w["error_message"].as_str().unwrap().contains("interrupted"),
        "{w}"
    );
    let (_, w) = s2.get(&format!("/api/workspaces/{ready}")).await;
    assert_eq!(w["status"], "ready", "{w}");
    assert_eq!(s2.sh(&ready, "echo back").await["stdout"], "back\n");
    // The interrupted one can be built again.
    s2.call(
        "PUT",
        &format!("/api/workspaces/{stuck}"),
        Some(json!({ "init_script": "true" })),
    )
    .await;
    let (status, _) = s2
        .post(&format!("/api/workspaces/{stuck}/build"), json!({}))
        .await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    assert_eq!(s2.wait_built(&stuck).await["status"], "ready");

    let orphan = d
        .inspect_container(&format!("berth-test-orphan-{instance}"), None)
        .await;
    assert!(orphan.is_err(), "the orphan was removed");
    assert!(
        d.inspect_volume(&format!("berth-test-orphan-{instance}"))
            .await
            .is_err(),
        "the orphaned volume was removed"
    );
    assert!(
        d.inspect_image(&dangling).await.is_err(),
        "the dangling image was collected"
    );
    assert!(
        d.inspect_image(&foreign).await.is_ok(),
        "an image without berth's labels was touched"
    );
    let _ = d.remove_image(&foreign, None, None).await;
    let stranger = d.inspect_container(&stranger_name, None).await;
    assert!(
        stranger.is_ok(),
        "a container without berth's labels was touched"
    );
    d.remove_container(
        &stranger_name,
        Some(RemoveContainerOptions {
            force: true,
            ..Default::default()
        }),
    )
    .await
    .unwrap();

    // A volume kept on purpose survives the next reconcile.
    let (status, _) = s2
        .call(
            "DELETE",
            &format!("/api/workspaces/{stuck}?keep_volume=true"),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    // A vanished container flags the workspace instead of pretending it is ready.
    let mut s2 = s2;
    s2.kill();
    d.remove_container(
        &format!("berth-ws-{ready}"),
        Some(RemoveContainerOptions {
            force: true,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let s3 = Server::spawn(&dir, &Options::default()).await;
    let (_, w) = s3.get(&format!("/api/workspaces/{ready}")).await;
    assert_eq!(w["status"], "error", "{w}");
    assert!(w["error_message"].as_str().unwrap().contains("gone"), "{w}");
    let kept = format!("berth-ws-{stuck}");
    assert!(
        d.inspect_volume(&kept).await.is_ok(),
        "a kept volume was collected"
    );
    d.remove_volume(&kept, None).await.unwrap();
    let (status, _) = s3
        .call("DELETE", &format!("/api/workspaces/{ready}"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    s3.assert_no_engine_objects().await;
    drop(s);
}

fn orphan_labels_of(instance: &str) -> HashMap<String, String> {
    HashMap::from([
        ("berth.managed".to_string(), "true".to_string()),
        ("berth.instance".to_string(), instance.to_string()),
        (
            "berth.workspace".to_string(),
            "00000000-0000-4000-8000-00000000dead".to_string(),
        ),
    ])
}

/// Builds an untagged image from debian:bookworm with `line` added; its id.
fn build_untagged(line: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("docker")
        .args(["build", "-q", "-"])
        .env("DOCKER_API_VERSION", "1.41")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    write!(
        child.stdin.take().unwrap(),
        "FROM debian:bookworm\n{line}\n"
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
