//! Exec in a container workspace: env, cwd, exit codes, stderr, output caps, timeouts that kill a process
//! tree, many execs at once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{eventually, process_running, Server};

#[tokio::test]
async fn exec_runs_commands_in_the_container() {
    let s = Server::start().await;
    let id = s
        .ready_workspace(
            "execws",
            json!({ "env_vars": { "WS_VAR": "from-workspace" } }),
        )
        .await;

    let (status, v) = s
        .exec(&id, json!({ "command": "echo $WS_VAR $REQ_VAR; echo oops >&2; exit 7", "env": { "REQ_VAR": "from-request" } }))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["exit_code"], 7);
    assert_eq!(v["stdout"], "from-workspace from-request\n");
    assert_eq!(v["stderr"], "oops\n");
    assert_eq!(v["timed_out"], false);

    // Request env overrides the workspace's; default cwd is /workspace; relative cwd is under it.
    let (_, v) = s
        .exec(
            &id,
            json!({ "command": "echo $WS_VAR; pwd; mkdir -p a/b", "env": { "WS_VAR": "over" } }),
        )
        .await;
    assert_eq!(v["stdout"], "over\n/workspace\n");
    let (_, v) = s.exec(&id, json!({ "command": "pwd", "cwd": "a/b" })).await;
    assert_eq!(v["stdout"], "/workspace/a/b\n");
    let (_, v) = s
        .exec(&id, json!({ "command": "pwd", "cwd": "/tmp" }))
        .await;
    assert_eq!(v["stdout"], "/tmp\n");
    let (status, v) = s
        .exec(&id, json!({ "command": "pwd", "cwd": "no/such/dir" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("/workspace/no/such/dir"),
        "{v}"
    );

    // Runs in the distro it was built from.
    let v = s.sh(&id, "grep ^VERSION_CODENAME /etc/os-release").await;
    assert_eq!(v["stdout"], "VERSION_CODENAME=bookworm\n");

    // Huge output is capped at 1 MiB per stream and flagged; the workspace stays usable.
    let v = s
        .sh(
            &id,
            "head -c 5000000 /dev/zero | tr '\\0' a; head -c 2000000 /dev/zero >&2; echo done",
        )
        .await;
    assert_eq!(v["stdout_truncated"], true);
    assert_eq!(v["stderr_truncated"], true);
    assert_eq!(v["stdout"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(s.sh(&id, "echo still-here").await["stdout"], "still-here\n");

    // Output that is not UTF-8 still comes back as JSON.
    let v = s.sh(&id, "printf '\\377\\376ok'").await;
    assert!(v["stdout"].as_str().unwrap().ends_with("ok"), "{v}");

    for body in [
        json!({ "command": "   " }),
        json!({ "command": "true", "timeout_secs": 0 }),
        json!({ "command": "true", "timeout_secs": 99_999_999 }),
        json!({ "command": "true", "env": { "": "x" } }),
        json!({ "command": ["not", "a", "string"] }),
    ] {
        let (status, v) = s.exec(&id, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    s.call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_tree_and_returns_promptly() {
    let s = Server::start().await;
    let id = s.ready_workspace("timeoutws", json!({})).await;

    // Background children, a setsid'd grandchild reparented to init, and a foreground sleep.
    let cmd =
        "sleep 1001 & (setsid sleep 1002 &) ; bash -c 'sleep 1003' & echo started; sleep 1004";
    let started = std::time::Instant::now();
    let (status, v) = s
        .exec(&id, json!({ "command": cmd, "timeout_secs": 2 }))
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(
        v["stdout"], "started\n",
        "output before the timeout is kept"
    );
    // Generous bound: the point is that it does not wait for the 1000 s sleeps.
    assert!(took.as_secs() < 60, "took {took:?}");
    let ps = s.sh(&id, "ps -eo args").await;
    let ps = ps["stdout"].as_str().unwrap();
    for n in 1001..=1004 {
        assert!(
            !ps.contains(&format!("sleep {n}")),
            "sleep {n} survived: {ps}"
        );
    }

    // Many execs at once all complete with their own output.
    let runs = (0..12).map(|i| {
        let s = &s;
        let id = &id;
        async move {
            (
                i,
                s.exec(id, json!({ "command": format!("sleep 0.5; echo {i}") }))
                    .await,
            )
        }
    });
    for (i, (status, v)) in futures::future::join_all(runs).await {
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["stdout"], format!("{i}\n"));
    }
}

#[tokio::test]
async fn an_exec_owns_its_processes_unless_it_asks_to_leave_them_running() {
    let s = Server::start().await;
    let id = s.ready_workspace("owner", json!({})).await;
    let container = format!("berth-ws-{id}");
    // Background jobs, one that left its session, and a forking loop: all gone when the exec ends, and
    // the answer comes when the command ends, not when its jobs do.
    let out = s
        .sh(
            &id,
            "sleep 301 & setsid sleep 302 & (while true; do sleep 303 & sleep 0.05; done) & echo started",
        )
        .await;
    assert_eq!(out["stdout"], "started\n", "{out}");
    for line in ["sleep 301", "sleep 302", "sleep 303"] {
        assert!(
            !process_running(&container, line).await,
            "{line} outlived its exec"
        );
    }
    // Asked to: a server started in the background keeps running.
    let (status, out) = s
        .exec(
            &id,
            json!({ "command": "nohup sleep 304 > /dev/null 2>&1 & echo kept", "background": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    // The answer may come before nohup has become `sleep 304`; once it has, it stays.
    eventually(
        "the background server runs",
        Duration::from_secs(10),
        || async { process_running(&container, "sleep 304").await.then_some(()) },
    )
    .await;
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}
