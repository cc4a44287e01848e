//! Container workspace lifecycle: build with init script and log, debug, rerun-init, rebuild keeping
//! /workspace, delete leaving nothing behind, and a missing base image.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Server;

#[tokio::test]
async fn build_init_log_rerun_rebuild_and_delete() {
    let mut s = Server::start().await;
    let init =
        "echo \"init for $GREETING\"\necho $GREETING > /workspace/greeting\necho to-stderr >&2\n";
    let id = s
        .ready_workspace(
            "life",
            json!({ "env_vars": { "GREETING": "hello" }, "init_script": init }),
        )
        .await;

    // The init log holds the image build and the init output.
    let (status, log) = s.get(&format!("/api/workspaces/{id}/init-log")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log["exists"], true);
    let content = log["content"].as_str().unwrap();
    for needle in [
        "Successfully built",
        "running 01-base.sh",
        "init for hello",
        "to-stderr",
        "init exited with code 0",
    ] {
        assert!(
            content.contains(needle),
            "{needle:?} not in init log:\n{content}"
        );
    }
    assert!(log["total_lines"].as_u64().unwrap() >= 5);
    let (_, tail) = s
        .get(&format!("/api/workspaces/{id}/init-log?lines=2"))
        .await;
    assert_eq!(tail["content"].as_str().unwrap().lines().count(), 2);
    assert_eq!(
        s.sh(&id, "cat /workspace/greeting").await["stdout"],
        "hello\n"
    );

    // Debug shows the engine's view: running, the limits and hardening, the volume.
    let (status, d) = s.get(&format!("/api/workspaces/{id}/debug")).await;
    assert_eq!(status, StatusCode::OK);
    let c = &d["container"];
    assert_eq!(c["running"], true, "{d}");
    assert_eq!(c["oom_killed"], false);
    assert!(c["limits"]["memory_bytes"].as_i64().unwrap() > 0);
    assert!(c["limits"]["pids_limit"].as_i64().unwrap() > 0);
    assert_eq!(c["security"]["cap_drop"], json!(["ALL"]));
    assert!(c["security"]["security_opt"]
        .to_string()
        .contains("no-new-privileges"));
    assert!(c["security"]["security_opt"]
        .to_string()
        .contains("seccomp=berth"));
    // The workspace volume, and the agent binary read-only; nothing else of the host.
    let mounts = c["mounts"].as_array().unwrap();
    assert!(
        mounts.iter().any(|m| m["destination"] == "/workspace"),
        "{mounts:?}"
    );
    for m in mounts {
        match m["destination"].as_str().unwrap() {
            "/workspace" => assert_eq!(m["rw"], true),
            "/opt/berth/agent" | "/opt/berth/bin" => assert_eq!(m["rw"], false, "{m}"),
            // The resident agent's socket directory: this workspace's own.
            "/run/berth" => assert!(
                m["source"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/run/{id}")),
                "{m}"
            ),
            other => panic!("unexpected mount {other}: {m}"),
        }
    }
    assert_eq!(d["init"]["last_exit_code"], 0);
    let first_container = c["id"].as_str().unwrap().to_string();
    // No Docker socket inside, and no privilege to regain.
    assert_eq!(
        s.sh(&id, "test -e /var/run/docker.sock").await["exit_code"],
        1
    );
    assert!(
        s.sh(&id, "grep NoNewPrivs /proc/self/status").await["stdout"]
            .as_str()
            .unwrap()
            .contains('1')
    );

    // rerun-init runs the same init again without a rebuild.
    let (status, r) = s
        .post(&format!("/api/workspaces/{id}/rerun-init"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["success"], true);
    assert_eq!(r["exit_code"], 0);
    assert!(
        r["stdout"].as_str().unwrap().contains("init for hello"),
        "{r}"
    );
    assert!(r["stderr"].as_str().unwrap().contains("to-stderr"), "{r}");
    assert!(r["duration_secs"].as_f64().unwrap() >= 0.0);

    // A failing init script: rerun-init reports it and the workspace is `error`, still repairable.
    let (status, _) = s
        .call(
            "PUT",
            &format!("/api/workspaces/{id}"),
            Some(json!({ "init_script": "echo failing; exit 3" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, r) = s
        .post(&format!("/api/workspaces/{id}/rerun-init"), json!({}))
        .await;
    assert_eq!(r["success"], false, "{r}");
    assert_eq!(r["exit_code"], 3);
    let (_, w) = s.get(&format!("/api/workspaces/{id}")).await;
    assert_eq!(w["status"], "error");
    assert!(
        w["error_message"].as_str().unwrap().contains("exit code 3"),
        "{w}"
    );
    let (status, _) = s.exec(&id, json!({ "command": "true" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "exec needs ready");
    // An init that hangs is cut off by the timeout.
    s.call(
        "PUT",
        &format!("/api/workspaces/{id}"),
        Some(json!({ "init_script": "sleep 600" })),
    )
    .await;
    let (_, r) = s
        .post(
            &format!("/api/workspaces/{id}/rerun-init"),
            json!({ "timeout_secs": 1 }),
        )
        .await;
    assert_eq!(r["timed_out"], true, "{r}");
    assert_eq!(r["success"], false);
    s.call(
        "PUT",
        &format!("/api/workspaces/{id}"),
        Some(json!({ "init_script": "echo fixed" })),
    )
    .await;
    let (_, r) = s
        .post(&format!("/api/workspaces/{id}/rerun-init"), json!({}))
        .await;
    assert_eq!(r["success"], true, "{r}");
    let (_, w) = s.get(&format!("/api/workspaces/{id}")).await;
    assert_eq!(w["status"], "ready");
    assert_eq!(w["error_message"], serde_json::Value::Null);

    // The default CPU limit is below the host's total.
    let cores = std::thread::available_parallelism().unwrap().get() as i64;
    let (_, d) = s.get(&format!("/api/workspaces/{id}/debug")).await;
    let cpus = d["container"]["limits"]["nano_cpus"].as_i64().unwrap();
    assert!(cpus > 0 && cpus < cores * 1_000_000_000, "{d}");

    // A new distro whose base image is missing: the rebuild's pre-flight refuses it and the running
    // container keeps serving.
    let (status, w) = s
        .call(
            "PUT",
            &format!("/api/workspaces/{id}"),
            Some(json!({ "distro": "arch" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{w}");
    assert_eq!(w["needs_rebuild"], true, "{w}");
    let (status, v) = s
        .post(
            &format!("/api/workspaces/{id}/build"),
            json!({ "rebuild": true }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("berth images bootstrap arch-linux"),
        "{v}"
    );
    let (_, w) = s.get(&format!("/api/workspaces/{id}")).await;
    assert_eq!(w["status"], "ready", "{w}");
    assert_eq!(s.sh(&id, "echo still").await["stdout"], "still\n");
    // Limits of its own, within the maxima, applied by the rebuild below.
    let (status, w) = s
        .call(
            "PUT",
            &format!("/api/workspaces/{id}"),
            Some(json!({ "distro": "bookworm", "memory_mb": 512, "cpus": 0.5, "pids": 300 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{w}");
    assert_eq!(
        (w["memory_mb"].clone(), w["needs_rebuild"].clone()),
        (json!(512), json!(true))
    );

    // Rebuild replaces the container and keeps /workspace; a second build meanwhile is refused.
    s.sh(
        &id,
        "echo kept > /workspace/keep.txt; echo lost > /root/lost.txt",
    )
    .await;
    let (status, w) = s
        .post(
            &format!("/api/workspaces/{id}/build"),
            json!({ "rebuild": true }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{w}");
    assert_eq!(w["status"], "building");
    let (status, v) = s
        .post(&format!("/api/workspaces/{id}/build"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, _) = s.exec(&id, json!({ "command": "true" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "no exec while building");
    let w = s.wait_built(&id).await;
    assert_eq!(w["status"], "ready", "{w}");
    assert_eq!(
        s.sh(&id, "cat /workspace/keep.txt").await["stdout"],
        "kept\n"
    );
    assert_eq!(s.sh(&id, "test -e /root/lost.txt").await["exit_code"], 1);
    let (_, d) = s.get(&format!("/api/workspaces/{id}/debug")).await;
    assert_ne!(
        d["container"]["id"],
        first_container.as_str(),
        "rebuild made a new container"
    );
    let limits = &d["container"]["limits"];
    assert_eq!(limits["memory_bytes"], 512 * 1024 * 1024, "{d}");
    assert_eq!(limits["nano_cpus"], 500_000_000, "{d}");
    assert_eq!(limits["pids_limit"], 300, "{d}");
    assert_eq!(w["needs_rebuild"], false, "{w}");

    // Delete removes container, network and volume; the shared image stays as the build cache.
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.get(&format!("/api/workspaces/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.assert_no_engine_objects().await;
    // The next create of the same distro and packages finds its image built.
    let again = s.ready_workspace("again", json!({})).await;
    let (_, log) = s.get(&format!("/api/workspaces/{again}/init-log")).await;
    let content = log["content"].as_str().unwrap();
    assert!(content.contains("reusing image"), "{content}");
    assert!(!content.contains("Step 1/"), "{content}");
    s.call("DELETE", &format!("/api/workspaces/{again}"), None)
        .await;
    // A stop removes the image nothing uses.
    s.terminate();
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn delete_can_keep_the_volume_and_deleting_while_building_cancels_the_build() {
    let s = Server::start().await;
    let created = s
        .create(json!({ "name": "slow", "template": "debian", "init_script": "sleep 600" }))
        .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["status"], "building");
    // Wait until init is running, then delete mid-build.
    s.wait_for_log(id, "running 02-workspace.sh").await;
    let (status, _) = s
        .call(
            "DELETE",
            &format!("/api/workspaces/{id}?keep_volume=true"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left = crate::harness::list_instance_objects(&s.instance(), true).await;
    assert_eq!(
        left,
        vec![format!("volume berth-ws-{id}")],
        "only the kept volume remains"
    );
}

#[tokio::test]
async fn a_missing_base_image_fails_the_build_with_the_command_that_makes_it() {
    let s = Server::start().await;
    // Ubuntu's and Arch's images are absent here (no registry, no mirror) and pulling is off in tests.
    for (template, distro) in [("arch", "arch-linux"), ("ubuntu-noble", "ubuntu-noble")] {
        let created = s
            .create(json!({ "name": format!("no-{template}"), "template": template }))
            .await;
        let id = created["id"].as_str().unwrap();
        let w = s.wait_built(id).await;
        assert_eq!(w["status"], "error", "{w}");
        let msg = w["error_message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("berth images bootstrap {distro}")),
            "{msg}"
        );
        let image = if distro == "arch-linux" {
            "archlinux:latest"
        } else {
            "ubuntu:24.04"
        };
        assert!(msg.contains(image), "{msg}");
        let (status, _) = s.exec(id, json!({ "command": "true" })).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (_, log) = s.get(&format!("/api/workspaces/{id}/init-log")).await;
        assert!(
            log["content"].as_str().unwrap().contains("build failed"),
            "{log}"
        );
    }
}

#[tokio::test]
async fn the_init_log_on_the_host_keeps_its_head_and_tail_under_its_cap() {
    let s = Server::start().await;
    let id = s
        .ready_workspace(
            "chatty",
            json!({ "init_script": "echo FIRST; head -c 30000000 /dev/zero | tr '\\0' x; echo; echo LAST" }),
        )
        .await;
    // Twice more: reruns append to the same log.
    for _ in 0..2 {
        let (status, r) = s
            .post(&format!("/api/workspaces/{id}/rerun-init"), json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{r}");
    }
    let log = s.data_dir.join(format!("logs/{id}/init.log"));
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size < 13 << 20, "the init log is {size} bytes");
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert!(text.contains("FIRST"), "the head was lost");
    assert!(
        text.contains("the middle was dropped"),
        "no word of the cut"
    );
    assert!(
        text.trim_end().ends_with("exited with code 0"),
        "{}",
        &text[text.len() - 200..]
    );
    assert!(
        text[text.len() - 300..].contains("LAST"),
        "the tail was lost"
    );
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}
