//! The seed's complete `/v1/opencode` workflow against a real container, the real opencode and the
//! fake LLM: status, register a codebase (a host directory mounted into its workspace), models,
//! trigger, events, message, tasks berth runs itself, interrupt, stop; and the runtime view of the
//! sessions that triggers created.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_llm::FakeLlm;
use crate::harness::{eventually, opencode_dir, Options, Server};

/// A server with the fake LLM, the pinned opencode, and `roots` as where codebases may live.
async fn agent_server(llm: &FakeLlm, roots: &std::path::Path) -> (Server, Options) {
    let opts = Options {
        env: vec![
            ("BERTH_OPENCODE_CONFIG".into(), llm.opencode_config()),
            // The provisioned-cache path (mounted as a directory); missions use a given binary.
            (
                "BERTH_OPENCODE_DIR".into(),
                opencode_dir().to_string_lossy().into(),
            ),
            (
                "BERTH_CODEBASE_ROOTS".into(),
                roots.to_string_lossy().into(),
            ),
        ],
        ..Default::default()
    };
    let s = Server::start_with(opts.clone()).await;
    (s, opts)
}

/// Registers a local codebase on the host network (to reach the fake LLM) and waits until it is idle.
async fn ready_codebase(s: &Server, name: &str, path: &std::path::Path) -> String {
    let (status, v) = s
        .post(
            "/v1/opencode/codebases",
            json!({ "name": name, "path": path, "agent_config": { "network": "host" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let cb = v["codebase"]["id"].as_str().unwrap().to_string();
    wait_codebase(s, &cb, "idle").await;
    cb
}

async fn wait_task(s: &Server, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (_, t) = s.get(&format!("/v1/opencode/tasks/{id}")).await;
        if t["status"] == status {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} never became {status}: {t}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn wait_codebase(s: &Server, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, c) = s.get(&format!("/v1/opencode/codebases/{id}")).await;
        if c["status"] == status {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "codebase {id} never became {status}: {c}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_workflow_runs_the_real_agent_on_a_mounted_codebase() {
    let llm = FakeLlm::start().await;
    let roots = tempfile::tempdir().unwrap();
    let project = roots.path().join("my-app");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("README.md"), "my app\n").unwrap();
    let (s, _) = agent_server(&llm, roots.path()).await;

    // 1. Status.
    let (status, v) = s.get("/v1/opencode/status").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["available"], true);
    assert_eq!(v["registered_codebases"], 0);
    assert!(v["opencode_binary"].is_string(), "{v}");

    // 2. Register the codebase; berth builds a workspace with the directory at /code.
    let (status, v) = s
        .post(
            "/v1/opencode/codebases",
            json!({
                "name": "my-app",
                "path": project,
                "description": "My application",
                "agent_config": { "network": "host", "default_model": "fake/fake-model" }
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    let cb = v["codebase"]["id"].as_str().unwrap().to_string();
    for key in ["id", "name", "path", "description", "created_at"] {
        assert!(
            v["codebase"].get(key).is_some(),
            "codebase lacks {key}: {v}"
        );
    }
    assert_eq!(v["codebase"]["status"], "building", "{v}");
    let ws = v["codebase"]["workspace_id"].as_str().unwrap().to_string();
    // The agent binary is a read-only mount, not a copy per workspace.
    let (_, v) = s.get("/v1/opencode/status").await;
    assert!(
        v["opencode_binary"]
            .as_str()
            .unwrap()
            .ends_with("package/bin/opencode"),
        "{v}"
    );
    let (_, list) = s.get("/v1/opencode/codebases").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // 3. Models.
    let (_, models) = s.get("/v1/opencode/models").await;
    assert!(
        models
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "fake/fake-model"
                && m["name"] == "Fake Model"
                && m["provider"] == "Fake LLM"),
        "{models}"
    );

    // 4. Trigger, 5. watch the events.
    let (events, events_task) = s.collect_sse(&format!("/v1/opencode/codebases/{cb}/events"), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let write =
        r#"CALL_TOOL write {"filePath":"/code/hello.txt","content":"written by the agent\n"}"#;
    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/trigger"),
            json!({ "prompt": write, "agent": "build", "files": ["README.md"], "metadata": { "ticket": "T-1" } }),
        )
        .await;
    // Triggered while the workspace still builds (no waiting in between): it starts once built.
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "running");
    let session = v["session_id"].as_str().unwrap().to_string();
    assert!(session.starts_with("ses"), "{v}");
    let task = v["task_id"].as_str().unwrap().to_string();
    assert_eq!(s.sh(&ws, "cat /code/README.md").await["stdout"], "my app\n");
    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/trigger"),
            json!({ "prompt": "a second agent" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("already running"));
    let t = wait_task(&s, &task, "completed").await;
    assert!(t["result"].as_str().unwrap().starts_with("DONE."), "{t}");
    assert_eq!(t["session_id"], session.as_str());
    assert_eq!(t["metadata"]["ticket"], "T-1");
    let probe = s
        .sh(&ws, "test -x /opt/berth/agent/*/package/bin/opencode && ! ls /opt/berth/opencode-* && ! touch /opt/berth/agent/x")
        .await;
    assert_eq!(probe["exit_code"], 0, "{probe}");
    // The agent's file is in the user's directory on the host.
    assert_eq!(
        std::fs::read_to_string(project.join("hello.txt")).unwrap(),
        "written by the agent\n"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !events
        .lock()
        .unwrap()
        .iter()
        .any(|(_, e, _)| e == "complete")
    {
        assert!(Instant::now() < deadline, "{:?}", events.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = events.lock().unwrap().clone();
    let kinds: Vec<&str> = seen.iter().map(|(_, e, _)| e.as_str()).collect();
    for kind in ["status", "tool_use", "file_change", "output", "complete"] {
        assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
    let tool = seen.iter().find(|(_, e, _)| e == "tool_use").unwrap();
    assert_eq!(tool.2["tool"], "write");
    let change = seen.iter().find(|(_, e, _)| e == "file_change").unwrap();
    assert_eq!(
        (change.2["action"].as_str(), change.2["path"].as_str()),
        (Some("create"), Some("/code/hello.txt")),
        "{change:?}"
    );
    let complete = seen.iter().find(|(_, e, _)| e == "complete").unwrap();
    assert_eq!(complete.2["status"], "completed");
    assert!(
        complete.2["summary"].as_str().unwrap().starts_with("DONE."),
        "{complete:?}"
    );
    let status = seen.iter().find(|(_, e, _)| e == "status").unwrap();
    assert!(status.2["message"].is_string(), "{status:?}");
    events_task.abort();

    // 6. A follow-up message in the same session.
    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/message"),
            json!({ "message": "Also add type hints" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, m) = s
            .get(&format!("/v1/opencode/codebases/{cb}/messages"))
            .await;
        assert_eq!(status, StatusCode::OK, "{m}");
        assert_eq!(m["session_id"], session.as_str());
        if m["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["role"] == "assistant" && x["content"] == "Echo: Also add type hints")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_codebase(&s, &cb, "idle").await;
    let (_, sessions) = s
        .get(&format!("/v1/opencode/codebases/{cb}/sessions"))
        .await;
    assert_eq!(sessions["total"], 1, "{sessions}");
    assert_eq!(sessions["sessions"][0]["id"], session.as_str());
    assert!(
        sessions["sessions"][0]["messages_count"].as_i64().unwrap() >= 4,
        "{sessions}"
    );
    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/sessions/sync"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["synced"], 1);

    // The runtime shows the session the trigger created, with its messages and parts.
    let (_, rt) = s.get("/v1/opencode/runtime/sessions").await;
    assert!(
        rt["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == session.as_str()),
        "{rt}"
    );
    let (status, one) = s
        .get(&format!("/v1/opencode/runtime/sessions/{session}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["session"]["directory"], "/code");
    let (_, msgs) = s
        .get(&format!("/v1/opencode/runtime/sessions/{session}/messages"))
        .await;
    assert!(msgs["total"].as_i64().unwrap() >= 4, "{msgs}");
    assert!(
        msgs["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["tool_calls"].as_i64() > Some(0)),
        "{msgs}"
    );
    let (_, parts) = s
        .get(&format!("/v1/opencode/runtime/sessions/{session}/parts"))
        .await;
    assert!(
        parts["parts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "tool" && p["message_id"].is_string()),
        "{parts}"
    );
    let (_, projects) = s.get("/v1/opencode/runtime/projects").await;
    assert!(
        !projects["projects"].as_array().unwrap().is_empty(),
        "{projects}"
    );
    let (_, rs) = s.get("/v1/opencode/runtime/status").await;
    assert!(rs["sessions"].as_i64().unwrap() >= 1, "{rs}");

    // A queued task: berth runs it itself, in a new session.
    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/tasks"),
            json!({ "title": "queued", "prompt": "queued one", "priority": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let queued = v["task"]["id"].as_str().unwrap().to_string();
    let t = wait_task(&s, &queued, "completed").await;
    assert_eq!(t["result"], "Echo: queued one");
    assert_eq!(t["worker_id"], "berth");
    assert_ne!(t["session_id"], session.as_str());

    // Interrupt a slow run; then nothing runs, and interrupting again is a conflict.
    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/trigger"),
            json!({ "prompt": "SLOW 60" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let slow = v["task_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, st) = s.get(&format!("/v1/opencode/codebases/{cb}/status")).await;
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["task_id"], slow.as_str());
    assert_eq!(st["model"], "fake/fake-model");
    let started = Instant::now();
    let (status, v) = s
        .post(&format!("/v1/opencode/codebases/{cb}/interrupt"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    wait_task(&s, &slow, "cancelled").await;
    wait_codebase(&s, &cb, "idle").await;
    assert!(started.elapsed() < Duration::from_secs(40));
    let (status, _) = s
        .post(&format!("/v1/opencode/codebases/{cb}/interrupt"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // 7. Stop, bad input, the monitor, delete.
    let (status, v) = s
        .post(&format!("/v1/opencode/codebases/{cb}/stop"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/trigger"),
            json!({ "prompt": "x", "agent": "no-such-agent" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, _) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/trigger"),
            json!({ "prompt": "x", "files": ["../../etc/passwd"] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, agents) = s.get("/v1/monitor/agents").await;
    assert_eq!(agents[0]["name"], "my-app");
    assert!(
        agents[0]["messages_count"].as_i64().unwrap() > 3,
        "{agents}"
    );
    let (_, stats) = s.get("/v1/monitor/stats").await;
    assert!(stats["tool_calls"].as_i64().unwrap() >= 1, "{stats}");
    assert!(stats["interventions"].as_i64().unwrap() >= 3, "{stats}");

    let (status, v) = s
        .call("DELETE", &format!("/v1/opencode/codebases/{cb}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = s.get(&format!("/v1/opencode/codebases/{cb}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The user's directory stays; berth's workspace goes, and so do its runs' missions and events.
    assert!(project.join("hello.txt").exists());
    s.assert_no_engine_objects().await;
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        s.data_dir.join("berth.db").display()
    ))
    .await
    .unwrap();
    let owner = format!("codebase:{cb}");
    for table in ["missions", "mission_events"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE owner = ?"))
            .bind(&owner)
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} of a deleted codebase");
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_cut_off_by_a_berth_crash_runs_again_after_the_restart() {
    let llm = FakeLlm::start().await;
    let roots = tempfile::tempdir().unwrap();
    let project = roots.path().join("crashy");
    std::fs::create_dir(&project).unwrap();
    let (mut s, opts) = agent_server(&llm, roots.path()).await;
    let cb = ready_codebase(&s, "crashy", &project).await;
    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/tasks"),
            json!({ "title": "slow", "prompt": "SLOW 6" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let task = v["task"]["id"].as_str().unwrap().to_string();
    let first = wait_task(&s, &task, "running").await;
    assert_eq!(first["attempts"], 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.kill();

    let s2 = Server::spawn(&s.data_dir.clone(), &opts).await;
    // Nothing is stuck: the task is queued again and berth runs it to the end.
    let done = wait_task(&s2, &task, "completed").await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert!(
        done["result"].as_str().unwrap().starts_with("slow"),
        "{done}"
    );
    let (status, v) = s2
        .call("DELETE", &format!("/v1/opencode/codebases/{cb}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    s2.assert_no_engine_objects().await;
    drop(s);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_cut_off_before_its_workspace_is_finished_at_restart() {
    let roots = tempfile::tempdir().unwrap();
    let project = roots.path().join("half");
    std::fs::create_dir(&project).unwrap();
    let opts = Options {
        env: vec![(
            "BERTH_CODEBASE_ROOTS".into(),
            roots.path().to_string_lossy().into(),
        )],
        ..Default::default()
    };
    let mut s = Server::start_with(opts.clone()).await;
    let (status, v) = s
        .post(
            "/v1/opencode/codebases",
            json!({ "name": "half", "path": project }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let cb = v["codebase"]["id"].as_str().unwrap().to_string();
    let ws = wait_codebase(&s, &cb, "idle").await["workspace_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.kill();

    // The store as a crash between making the workspace and recording it would leave it.
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        s.data_dir.join("berth.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE codebases SET workspace_id = NULL WHERE id = ?")
        .bind(&cb)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;

    let s2 = Server::spawn(&s.data_dir.clone(), &opts).await;
    let c = wait_codebase(&s2, &cb, "idle").await;
    assert_eq!(
        c["workspace_id"],
        ws.as_str(),
        "the workspace is adopted: {c}"
    );
    let (status, _) = s2
        .call("DELETE", &format!("/v1/opencode/codebases/{cb}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    s2.assert_no_engine_objects().await;
    drop(s);
}

#[tokio::test]
async fn a_codebase_whose_build_a_crash_cut_off_builds_again_at_restart() {
    let roots = tempfile::tempdir().unwrap();
    let project = roots.path().join("cut");
    std::fs::create_dir(&project).unwrap();
    let opts = Options {
        env: vec![(
            "BERTH_CODEBASE_ROOTS".into(),
            roots.path().to_string_lossy().into(),
        )],
        ..Default::default()
    };
    let mut s = Server::start_with(opts.clone()).await;
    // A template whose init takes a while: the crash comes mid-build.
    let (status, v) = s
        .call(
            "PUT",
            "/api/library/workspace-template/slow",
            Some(json!({ "content": "name: slow\ndistro: debian-bookworm\ninit_script: |\n  sleep 4\n" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = s
        .post(
            "/v1/opencode/codebases",
            json!({ "name": "cut", "path": project, "agent_config": { "template": "slow" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let cb = v["codebase"]["id"].as_str().unwrap().to_string();
    let ws = v["codebase"]["workspace_id"].as_str().unwrap().to_string();
    eventually("the init runs", Duration::from_secs(60), || async {
        let (_, w) = s.get(&format!("/api/workspaces/{ws}")).await;
        (w["status"] == "building").then_some(())
    })
    .await;
    s.kill();

    // After the restart the cut-off build runs again by itself, and the codebase becomes usable.
    let s2 = Server::spawn(&s.data_dir.clone(), &opts).await;
    let c = wait_codebase(&s2, &cb, "idle").await;
    assert_eq!(c["workspace_id"], ws.as_str(), "{c}");
    let (_, w) = s2.get(&format!("/api/workspaces/{ws}")).await;
    assert_eq!(w["status"], "ready", "{w}");
    let (status, _) = s2
        .call("DELETE", &format!("/v1/opencode/codebases/{cb}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    s2.assert_no_engine_objects().await;
    drop(s);
}
