//! The warm pool (`BERTH_POOL_SIZE`): started generic containers that a create which fits them claims,
//! binding its own name, owner and env at claim time; the pool fills again, a create that does not fit
//! builds its own container, and neither a stop nor a crash leaves a pooled container behind.

use std::time::Duration;

use bollard::container::ListContainersOptions;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{docker, eventually, Options, Server};

fn pooled(size: usize) -> Options {
    Options {
        env: vec![("BERTH_POOL_SIZE".into(), size.to_string())],
        ..Default::default()
    }
}

/// Workspace ids of this server's running containers that no workspace has (yet): the pool's.
async fn pool_ids(s: &Server) -> Vec<String> {
    let (status, list) = s.get("/api/workspaces").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let known: Vec<&str> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|w| w["id"].as_str())
        .collect();
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("berth.instance={}", s.instance())],
    )]);
    let containers = docker()
        .await
        .list_containers(Some(ListContainersOptions {
            filters,
            ..Default::default()
        }))
        .await
        .unwrap();
    containers
        .into_iter()
        .filter_map(|c| c.labels?.get("berth.workspace").cloned())
        .filter(|id| !known.contains(&id.as_str()))
        .collect()
}

async fn one_pooled(s: &Server, not: Option<&str>) -> String {
    eventually(
        "a started container waits in the pool",
        Duration::from_secs(180),
        || async {
            let ids = pool_ids(s).await;
            match ids.as_slice() {
                [id] if Some(id.as_str()) != not => Some(id.clone()),
                _ => None,
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_create_that_fits_claims_a_started_container_and_the_pool_fills_again() {
    let mut s = Server::start_with(pooled(1)).await;
    let waiting = one_pooled(&s, None).await;

    // A templated create fits (the default distro, no packages, default limits, bridge): its workspace
    // is the pooled container, with its own env and name, and runs its template's init there.
    let ws = s
        .create(json!({
            "name": "claimed",
            "template": "debian",
            "env_vars": { "GREETING": "hello from the claim" },
        }))
        .await;
    assert_eq!(ws["id"], waiting, "the create took the pooled container");
    let id = waiting.clone();
    let built = s.wait_built(&id).await;
    assert_eq!(built["status"], "ready", "{built}");
    assert_eq!(built["owner"], "admin", "{built}");
    let out = s
        .sh(
            &id,
            "echo \"$GREETING\"; test -d /workspace/.opencode/skill && echo synced",
        )
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert_eq!(out["stdout"], "hello from the claim\nsynced\n", "{out}");
    let (_, log) = s.get(&format!("/api/workspaces/{id}/init-log")).await;
    assert!(
        log["content"]
            .as_str()
            .unwrap_or("")
            .contains("workspace ready"),
        "{log}"
    );

    // Another container is made for the next create.
    let next = one_pooled(&s, Some(&id)).await;
    assert_ne!(next, id);

    // A create that does not fit (a memory limit of its own) gets a container of its own, with that
    // limit, and leaves the pooled one waiting.
    let own = s
        .create(json!({ "name": "own-limits", "template": "debian", "memory_mb": 512 }))
        .await;
    let own_id = own["id"].as_str().unwrap().to_string();
    assert_ne!(own_id, next);
    assert_eq!(s.wait_built(&own_id).await["status"], "ready");
    let limit = docker()
        .await
        .inspect_container(&format!("berth-ws-{own_id}"), None)
        .await
        .unwrap()
        .host_config
        .and_then(|h| h.memory);
    assert_eq!(limit, Some(512 << 20));
    assert_eq!(pool_ids(&s).await, vec![next.clone()]);

    // A create without a template waits for its build (as without a pool), and its build makes its
    // own container: the pool is for creates that build at once.
    let pending = s
        .create(json!({ "name": "pending", "workspace_type": "container" }))
        .await;
    assert_eq!(pending["status"], "pending", "{pending}");
    assert_ne!(pending["id"], next);

    for w in [
        id.as_str(),
        own_id.as_str(),
        pending["id"].as_str().unwrap(),
    ] {
        let (status, v) = s
            .call("DELETE", &format!("/api/workspaces/{w}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    }
    // A stop removes the pool's container, network, volume and image.
    s.terminate();
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_crash_leaves_no_pooled_container_behind() {
    let mut s = Server::start_with(pooled(1)).await;
    one_pooled(&s, None).await;
    s.kill();
    // The next start's reconcile removes what no workspace owns; without a pool, nothing is made.
    let mut again = Server::spawn(&s.data_dir, &Options::default()).await;
    again.assert_no_engine_objects().await;
    again.terminate();
}
