//! Missions with the real opencode binary in real containers, against the scripted fake LLM: tool turns
//! that change /workspace, stored events and their replay (by query and by Last-Event-ID) matching the live
//! stream, queued messages in order, cancel, a berth crash and resume, a dying agent server, LLM errors,
//! the pass-through, and bad input.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_llm::FakeLlm;
use crate::harness::{docker, eventually, opencode_bin, Options, Seen, Server};

/// Options for a server wired to the fake LLM and the pinned opencode binary.
fn agent_server_options(llm: &FakeLlm) -> Options {
    let opts = Options {
        env: vec![
            ("BERTH_OPENCODE_CONFIG".into(), llm.opencode_config()),
            (
                "BERTH_OPENCODE_BIN".into(),
                opencode_bin().to_string_lossy().into(),
            ),
        ],
        ..Default::default()
    };
    opts
}

/// A server wired to the fake LLM and the pinned opencode binary.
async fn agent_server(llm: &FakeLlm) -> (Server, Options) {
    let opts = agent_server_options(llm);
    let s = Server::start_with(opts.clone()).await;
    (s, opts)
}

/// A ready workspace on the host's network, so OpenCode inside reaches the fake LLM on 127.0.0.1.
async fn agent_workspace(s: &Server, name: &str) -> String {
    s.ready_workspace(name, json!({ "network": "host" })).await
}

async fn mission(s: &Server, ws: &str) -> String {
    let (status, m) = s
        .post(
            "/api/control/missions",
            json!({ "title": "test mission", "workspace_id": ws }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    for key in [
        "id",
        "status",
        "title",
        "workspace_id",
        "workspace_name",
        "agent",
        "model_override",
        "model_effort",
        "created_at",
        "updated_at",
    ] {
        assert!(m.get(key).is_some(), "mission lacks {key}: {m}");
    }
    let id = m["id"].as_str().unwrap().to_string();
    let (status, _) = s
        .post(&format!("/api/control/missions/{id}/load"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    id
}

async fn send(s: &Server, content: &str) -> Value {
    let (status, v) = s
        .post("/api/control/message", json!({ "content": content }))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn events(s: &Server, mission: &str, query: &str) -> Vec<Value> {
    let (status, v) = s
        .get(&format!(
            "/api/control/missions/{mission}/events?limit=10000{query}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

/// Waits until the mission has an event of `kind` for the user message `message_id`.
async fn wait_event(s: &Server, mission: &str, kind: &str, message_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let found = events(s, mission, "")
            .await
            .into_iter()
            .find(|e| e["type"] == kind && e["data"]["message_id"] == message_id);
        if let Some(e) = found {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} for message {message_id}: {:#?}",
            events(s, mission, "").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits for the end of a message's turn (its final idle/cancelled/interrupted status event).
async fn wait_turn_end(s: &Server, mission: &str, message_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let found = events(s, mission, "&types=status")
            .await
            .into_iter()
            .find(|e| {
                e["data"]["message_id"] == message_id
                    && ["idle", "cancelled", "interrupted"]
                        .contains(&e["data"]["status"].as_str().unwrap_or(""))
            });
        if let Some(e) = found {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "turn of {message_id} never ended: {:#?}",
            events(s, mission, "").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Collects SSE events from `/api/control/stream` in the background.
fn collect_stream(s: &Server, last_event_id: Option<&str>) -> (Seen, tokio::task::JoinHandle<()>) {
    s.collect_sse("/api/control/stream", last_event_id)
}

#[tokio::test]
async fn a_tool_turn_changes_the_workspace_and_replays_match_the_live_stream() {
    let llm = FakeLlm::start().await;
    let (s, _) = agent_server(&llm).await;
    let ws = agent_workspace(&s, "agent-tools").await;
    // Library agents and commands are given to every workspace's OpenCode server.
    for (path, content) in [
        ("/api/library/agent/reviewer", "---\ndescription: Reviews code\nmode: primary\npermissions:\n  bash: allow\n---\nYou are REVIEWER-7.\n"),
        ("/api/library/command/greet", "---\ndescription: Greets someone\n---\nSay hello to $ARGUMENTS\n"),
    ] {
        let (status, v) = s.call("PUT", path, Some(json!({ "content": content }))).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let (live, live_task) = collect_stream(&s, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = mission(&s, &ws).await;

    let bash = r#"CALL_TOOL bash {"command":"echo hi from bash > /workspace/from-bash.txt && cat /workspace/from-bash.txt","description":"write a file"}"#;
    let sent = send(&s, bash).await;
    assert_eq!(sent["queued"], false);
    let msg = sent["id"].as_str().unwrap().to_string();
    let answer = wait_event(&s, &m, "assistant_message", &msg).await;
    let (_, mission_now) = s.get(&format!("/api/control/missions/{m}")).await;
    let history = mission_now["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{mission_now}");
    assert_eq!(
        (history[0]["role"].as_str(), history[1]["role"].as_str()),
        (Some("user"), Some("assistant"))
    );
    assert_eq!(history[0]["content"], bash);
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .starts_with("DONE. tool said:"),
        "{answer}"
    );
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .contains("hi from bash"),
        "{answer}"
    );
    assert_eq!(
        s.sh(&ws, "cat /workspace/from-bash.txt").await["stdout"],
        "hi from bash\n"
    );
    // The tool call and the answer after its result: two completions from the fake.
    assert!(llm.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2);

    let write = r#"CALL_TOOL write {"filePath":"/workspace/written.txt","content":"written by the agent\n"}"#;
    let msg2 = send(&s, write).await["id"].as_str().unwrap().to_string();
    wait_event(&s, &m, "assistant_message", &msg2).await;
    wait_turn_end(&s, &m, &msg2).await;
    assert_eq!(
        s.sh(&ws, "cat /workspace/written.txt").await["stdout"],
        "written by the agent\n"
    );

    // The stored history of the turn, in order.
    let all = events(&s, &m, "").await;
    let kinds: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let first_turn: Vec<&str> = kinds
        .iter()
        .copied()
        .skip_while(|k| *k != "user_message")
        .take(6)
        .collect();
    assert_eq!(
        first_turn,
        vec![
            "user_message",
            "status",
            "tool_call",
            "tool_result",
            "assistant_message",
            "status"
        ],
        "{kinds:?}"
    );
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=all.len() as i64).collect::<Vec<_>>(),
        "per-mission sequence numbers"
    );
    let tools = events(&s, &m, "&types=tool_call,tool_result").await;
    assert_eq!(tools.len(), 4);
    assert_eq!(tools[0]["data"]["tool"], "bash");
    assert_eq!(tools[2]["data"]["tool"], "write");
    assert!(tools[1]["data"]["output"]
        .as_str()
        .unwrap()
        .contains("hi from bash"));
    let (_, page) = s
        .get(&format!(
            "/api/control/missions/{m}/events?limit=2&offset=1"
        ))
        .await;
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[0]["seq"], 2);
    // No per-delta rows: one assistant_message per turn.
    assert_eq!(events(&s, &m, "&types=assistant_message").await.len(), 2);

    // The live stream opened with the control state (no id: it is not a stored event), then saw
    // exactly what the store holds, with ids.
    let deadline = Instant::now() + Duration::from_secs(30);
    while live.lock().unwrap().len() < all.len() + 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = live.lock().unwrap()[0].clone();
    assert_eq!(
        (first.0.as_str(), first.1.as_str()),
        ("", "status"),
        "{first:?}"
    );
    assert!(first.2["state"].is_string(), "{first:?}");
    let seen: Vec<(String, String)> = live
        .lock()
        .unwrap()
        .iter()
        .skip(1)
        .map(|(id, ev, _)| (id.clone(), ev.clone()))
        .collect();
    let stored: Vec<(String, String)> = all
        .iter()
        .map(|e| (e["id"].to_string(), e["type"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(seen, stored);
    // Each frame also carries Open Agent's flat fields, for its dashboard's chat.
    let frames = live.lock().unwrap().clone();
    let of = |kind: &str| -> Vec<Value> {
        frames
            .iter()
            .filter(|(_, e, _)| e == kind)
            .map(|(_, _, d)| d.clone())
            .collect()
    };
    let said = &of("user_message")[0];
    assert_eq!(
        (said["id"].as_str(), said["mission_id"].as_str()),
        (Some(msg.as_str()), Some(m.as_str())),
        "{said}"
    );
    let call = &of("tool_call")[0];
    assert_eq!(call["name"], "bash", "{call}");
    assert!(
        call["tool_call_id"].is_string() && call["args"]["command"].is_string(),
        "{call}"
    );
    let result = &of("tool_result")[0];
    assert_eq!(result["tool_call_id"], call["tool_call_id"], "{result}");
    assert!(
        result["result"].as_str().unwrap().contains("hi from bash"),
        "{result}"
    );
    let answered = &of("assistant_message")[0];
    assert_eq!(answered["success"], true, "{answered}");
    assert!(
        answered["content"].as_str().unwrap().starts_with("DONE."),
        "{answered}"
    );
    assert!(of("status")
        .iter()
        .all(|st| st["state"] == "running" || st["state"] == "idle"));
    // Stored events too, for its history view.
    let stored_call = all.iter().find(|e| e["type"] == "tool_call").unwrap();
    assert_eq!(stored_call["event_type"], "tool_call");
    assert_eq!(stored_call["tool_name"], "bash");
    assert!(
        stored_call["content"]
            .as_str()
            .unwrap()
            .contains("hi from bash"),
        "{stored_call}"
    );
    assert_eq!(stored_call["sequence"], stored_call["seq"]);
    live_task.abort();

    // Reconnecting with Last-Event-ID replays what came after it from the store.
    let mid = &all[3]["id"].to_string();
    let (replay, replay_task) = collect_stream(&s, Some(mid));
    let deadline = Instant::now() + Duration::from_secs(30);
    while replay.lock().unwrap().len() < all.len() - 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let replayed: Vec<String> = replay
        .lock()
        .unwrap()
        .iter()
        .skip(1)
        .map(|(id, _, _)| id.clone())
        .collect();
    let expected: Vec<String> = all[4..].iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(replayed, expected);
    replay_task.abort();
    // A future id is answered with a notice and the live stream; a malformed one is a 400.
    let (future, future_task) = collect_stream(&s, Some("999999999"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        future.lock().unwrap().first().map(|e| e.1.clone()),
        Some("notice".to_string())
    );
    assert_eq!(
        future.lock().unwrap().get(1).map(|e| e.1.clone()),
        Some("status".to_string()),
        "then the control state"
    );
    future_task.abort();
    let resp = s
        .client()
        .get(format!("{}/api/control/stream", s.url))
        .bearer_auth(&s.token)
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // The pass-through reaches the workspace's OpenCode server.
    let (status, health) = s
        .get(&format!("/api/workspaces/{ws}/opencode/global/health"))
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["healthy"], true);
    let (status, sessions) = s
        .get(&format!("/api/workspaces/{ws}/opencode/session"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    assert_eq!(sessions[0]["title"], "test mission");
    // The /v1 runtime view shows the mission's session too, with its messages.
    let sid = sessions[0]["id"].as_str().unwrap();
    let (_, rt) = s.get("/v1/opencode/runtime/sessions").await;
    assert!(
        rt["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == sid && x["workspace_id"] == ws.as_str()),
        "{rt}"
    );
    let (_, msgs) = s
        .get(&format!("/v1/opencode/runtime/sessions/{sid}/messages"))
        .await;
    assert!(msgs["total"].as_i64().unwrap() >= 4, "{msgs}");
    let (_, agents) = s.get(&format!("/api/workspaces/{ws}/opencode/agent")).await;
    let reviewer = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "reviewer")
        .unwrap_or_else(|| panic!("no library agent in {agents}"));
    assert_eq!(reviewer["description"], "Reviews code");
    let (_, commands) = s
        .get(&format!("/api/workspaces/{ws}/opencode/command"))
        .await;
    assert!(
        commands
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "greet" && c["template"] == "Say hello to $ARGUMENTS"),
        "{commands}"
    );
    // A message for the library agent runs with its prompt.
    let (status, v) = s
        .post(
            "/api/control/message",
            json!({ "content": "SYSTEM_HAS REVIEWER-7", "agent": "reviewer" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let answer = wait_event(&s, &m, "assistant_message", v["id"].as_str().unwrap()).await;
    assert_eq!(answer["data"]["content"], "system has REVIEWER-7: true");
    // Without berth's token, nothing.
    let resp = s
        .client()
        .get(format!("{}/api/workspaces/{ws}/opencode/session", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    s.call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn messages_queue_in_order_cancel_aborts_and_errors_are_events() {
    let llm = FakeLlm::start().await;
    let (s, _) = agent_server(&llm).await;
    let ws = agent_workspace(&s, "agent-queue").await;
    let m = mission(&s, &ws).await;

    let first = send(&s, "SLOW 2").await;
    assert_eq!(first["queued"], false);
    let second = send(&s, "second").await;
    let third = send(&s, "third").await;
    assert_eq!(
        (second["queued"].as_bool(), third["queued"].as_bool()),
        (Some(true), Some(true))
    );
    wait_event(&s, &m, "assistant_message", third["id"].as_str().unwrap()).await;
    let answers: Vec<String> = events(&s, &m, "&types=assistant_message")
        .await
        .iter()
        .map(|e| e["data"]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(answers.len(), 3);
    assert!(answers[0].starts_with("slow ."), "{answers:?}");
    assert_eq!(&answers[1..], ["Echo: second", "Echo: third"]);

    // Cancel while idle is refused; cancel mid-turn aborts it and drops the queue.
    let (status, v) = s.post("/api/control/cancel", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let slow = send(&s, "SLOW 60").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let queued = send(&s, "never runs").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_event(&s, &m, "status", &slow).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let (status, v) = s
        .post(&format!("/api/control/missions/{m}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["dropped_messages"], 1);
    let end = wait_turn_end(&s, &m, &slow).await;
    assert_eq!(end["data"]["status"], "cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "cancel did not abort the turn"
    );
    assert!(!events(&s, &m, "")
        .await
        .iter()
        .any(|e| e["type"] == "assistant_message" && e["data"]["message_id"] == queued.as_str()));

    // A 4xx from the LLM ends the turn with an error event; the mission keeps working.
    let bad = send(&s, "FAIL_400").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let err = wait_event(&s, &m, "error", &bad).await;
    assert!(
        err["data"]["message"]
            .as_str()
            .unwrap()
            .contains("fake error 400"),
        "{err}"
    );
    let ok = send(&s, "after the error").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = wait_event(&s, &m, "assistant_message", &ok).await;
    assert_eq!(answer["data"]["content"], "Echo: after the error");

    // The agent server dies mid-turn: an error event, and the next message gets a new server.
    let doomed = send(&s, "SLOW 60").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_event(&s, &m, "status", &doomed).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.sh(&ws, "pkill -9 -f 'opencod[e] serve' || true").await;
    let err = wait_event(&s, &m, "error", &doomed).await;
    assert!(
        err["data"]["message"].as_str().unwrap().contains("stopped"),
        "{err}"
    );
    let after = send(&s, "alive again").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        wait_event(&s, &m, "assistant_message", &after).await["data"]["content"],
        "Echo: alive again"
    );

    s.call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_turn_a_crash_cut_off_is_settled_from_opencode_and_resume_never_repeats_a_tool() {
    let llm = FakeLlm::start().await;
    let (mut s, opts) = agent_server(&llm).await;
    let ws = agent_workspace(&s, "agent-crash").await;
    let m = mission(&s, &ws).await;
    let container = format!("berth-ws-{ws}");

    // berth dies while a tool runs; the agent server lives on and finishes the turn meanwhile.
    let first = send(
        &s,
        r#"CALL_TOOL bash {"command": "echo ran >> /workspace/count; sleep 4; echo tool-done", "description": "counts"}"#,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_tool_calls(&s, &m, 1).await;
    s.kill();
    let mut s2 = Server::spawn(&s.data_dir, &s.same_address(&opts)).await;
    let answer = wait_event(&s2, &m, "assistant_message", &first).await;
    let text = answer["data"]["content"].as_str().unwrap();
    assert!(
        text.starts_with("DONE. tool said") && text.contains("tool-done"),
        "{answer}"
    );
    let results = events(&s2, &m, "&types=tool_result").await;
    assert_eq!(results.len(), 1, "each result once: {results:#?}");
    assert_eq!(events(&s2, &m, "&types=tool_call").await.len(), 1);
    let (_, mission) = s2.get(&format!("/api/control/missions/{m}")).await;
    assert_eq!(mission["status"], "active", "{mission}");
    assert_eq!(
        s2.sh(&ws, "wc -l < /workspace/count").await["stdout"],
        "1\n"
    );

    // berth and the agent server both die while a tool runs: the turn is interrupted, and resume goes
    // on from what the session holds instead of sending the prompt (and running the tool) again.
    let second = send(
        &s2,
        r#"CALL_TOOL bash {"command": "echo ran >> /workspace/count2; sleep 30", "description": "counts"}"#,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_tool_calls(&s2, &m, 2).await;
    s2.kill();
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            &container,
            "sh",
            "-c",
            "pkill -9 -f 'opencod[e] serve' || true",
        ])
        .env("DOCKER_API_VERSION", "1.41")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let s3 = Server::spawn(&s.data_dir, &s2.same_address(&opts)).await;
    let mission = eventually(
        "the cut-off turn is settled",
        Duration::from_secs(120),
        || async {
            let (_, v) = s3.get(&format!("/api/control/missions/{m}")).await;
            (v["status"] == "interrupted").then_some(v)
        },
    )
    .await;
    assert_eq!(mission["status"], "interrupted");
    let (status, v) = s3
        .post(&format!("/api/control/missions/{m}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let answer = wait_event(&s3, &m, "assistant_message", &second).await;
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .contains("do not run them again"),
        "{answer}"
    );
    assert_eq!(
        s3.sh(&ws, "wc -l < /workspace/count2").await["stdout"],
        "1\n"
    );
    // Same OpenCode session throughout: it lives on the workspace volume.
    let (_, sessions) = s3
        .get(&format!("/api/workspaces/{ws}/opencode/session"))
        .await;
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}");
    // A completed mission does not resume.
    s3.post(
        &format!("/api/control/missions/{m}/status"),
        json!({ "status": "completed" }),
    )
    .await;
    let (status, _) = s3
        .post(&format!("/api/control/missions/{m}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    s3.call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    s3.assert_no_engine_objects().await;
    drop((s, s2));
}

/// Waits until the mission has recorded `n` tool calls.
async fn wait_tool_calls(s: &Server, m: &str, n: usize) {
    eventually("the tool call", Duration::from_secs(120), || async {
        (events(s, m, "&types=tool_call").await.len() >= n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_mission_requests_and_provider_keys() {
    let llm = FakeLlm::start().await;
    let (s, _) = agent_server(&llm).await;
    let (status, v) = s
        .post("/api/control/message", json!({ "content": "hello" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no mission loaded: {v}");
    let pending = s
        .create(json!({ "name": "not-built", "workspace_type": "container" }))
        .await;
    let pending = pending["id"].as_str().unwrap();
    for body in [
        json!({ "workspace_id": "00000000-0000-4000-8000-000000000000" }),
        json!({ "workspace_id": pending, "agent": "no-such-agent" }),
        json!({ "workspace_id": pending, "model_override": "fake/no-such-model" }),
        json!({ "workspace_id": pending, "model_override": "nobody/model" }),
        json!({ "workspace_id": pending, "model_override": "no-slash" }),
        json!({ "workspace_id": pending, "model_effort": "extreme" }),
    ] {
        let (status, v) = s.post("/api/control/missions", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    let (status, m) = s
        .post("/api/control/missions", json!({ "workspace_id": pending, "agent": "plan", "model_override": "fake/fake-model", "model_effort": "high" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    assert_eq!(m["workspace_name"], "not-built");
    assert_eq!(m["status"], "pending");
    let id = m["id"].as_str().unwrap();
    s.post(&format!("/api/control/missions/{id}/load"), json!({}))
        .await;
    let (status, v) = s
        .post("/api/control/message", json!({ "content": "hello" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "workspace not ready: {v}");
    let (status, _) = s
        .post("/api/control/message", json!({ "content": "  " }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s
        .post(
            &format!("/api/control/missions/{id}/status"),
            json!({ "status": "done" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s
        .post(&format!("/api/control/missions/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s
        .post(&format!("/api/control/missions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s
        .get(&format!("/api/control/missions/{id}/events?limit=0"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = s
        .get("/api/control/missions/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, tree) = s.get("/api/control/tree").await;
    assert_eq!(status, StatusCode::OK, "{tree}");
    let (status, v) = s
        .call("DELETE", &format!("/api/control/missions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["ok"].as_bool(), v["deleted"].as_str()),
        (Some(true), Some(id))
    );

    // Provider keys: stored sealed, never answered.
    let secret = "sk-test-secret-key-1234567890";
    let (status, v) = s
        .post("/api/providers/fake/auth", json!({ "api_key": secret }))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    let (status, list) = s.get("/api/providers").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.to_string().contains(secret));
    let fake = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "fake")
        .unwrap();
    assert_eq!(fake["has_api_key"], true);
    assert_eq!(fake["models"], json!(["fake-model"]));
    let (status, v) = s
        .post("/api/providers/fake/auth", json!({ "type": "oauth" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, _) = s
        .post("/api/providers/bad%2Fid/auth", json!({ "api_key": "x" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let db = std::fs::read(s.data_dir.join("berth.db")).unwrap();
    let wal = std::fs::read(s.data_dir.join("berth.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "plaintext key in the store"
        );
    }
    let (status, _) = s.call("DELETE", "/api/providers/fake/auth", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.call("DELETE", "/api/providers/fake/auth", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bridge_workspace_serves_opencode_on_loopback_and_its_sessions_survive_a_rebuild() {
    let llm = FakeLlm::start().await;
    let (s, _) = agent_server(&llm).await;
    let ws = s.ready_workspace("agent-bridge", json!({})).await;
    let (_, w) = s.get(&format!("/api/workspaces/{ws}")).await;
    assert_eq!(w["network"], "bridge");

    // The agent port is published on the host's loopback only.
    let container = format!("berth-ws-{ws}");
    let inspect = docker()
        .await
        .inspect_container(&container, None)
        .await
        .unwrap();
    let ports = inspect.host_config.unwrap().port_bindings.unwrap();
    let bindings = ports["4096/tcp"].as_ref().unwrap();
    assert!(
        bindings
            .iter()
            .all(|b| b.host_ip.as_deref() == Some("127.0.0.1")),
        "{bindings:?}"
    );

    // Through the pass-through: health, then a session made by OpenCode's own API.
    let (status, health) = s
        .get(&format!("/api/workspaces/{ws}/opencode/global/health"))
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let (status, session) = s
        .post(
            &format!("/api/workspaces/{ws}/opencode/session"),
            json!({ "title": "made before the rebuild" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");

    // A rebuild replaces the container; OpenCode's state is on the volume, so the session is still there.
    let (status, v) = s
        .post(
            &format!("/api/workspaces/{ws}/build"),
            json!({ "rebuild": true }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(s.wait_built(&ws).await["status"], "ready");
    let (status, sessions) = s
        .get(&format!("/api/workspaces/{ws}/opencode/session"))
        .await;
    assert_eq!(status, StatusCode::OK, "{sessions}");
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == session["id"] && x["title"] == "made before the rebuild"),
        "{sessions}"
    );

    s.call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    s.assert_no_engine_objects().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_built_under_other_settings_gets_a_copy_of_the_binary() {
    let llm = FakeLlm::start().await;
    // Built while berth kept its binaries elsewhere (and had none yet): the container's mount does not
    // hold the binary berth runs after the restart.
    let old_dir = tempfile::tempdir().unwrap();
    let missing = Options {
        env: vec![
            ("BERTH_OPENCODE_CONFIG".into(), llm.opencode_config()),
            ("BERTH_OPENCODE_BIN".into(), "/nonexistent/opencode".into()),
            (
                "BERTH_OPENCODE_DIR".into(),
                old_dir.path().to_string_lossy().into(),
            ),
        ],
        ..Default::default()
    };
    let mut s = Server::start_with(missing.clone()).await;
    let ws = agent_workspace(&s, "agent-no-mount").await;
    s.kill();

    let opts = agent_server_options(&llm);
    let s2 = Server::spawn(&s.data_dir.clone(), &opts).await;
    let m = mission(&s2, &ws).await;
    let id = send(&s2, "hello without a mount").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = wait_event(&s2, &m, "assistant_message", &id).await;
    assert_eq!(answer["data"]["content"], "Echo: hello without a mount");
    assert_eq!(
        s2.sh(
            &ws,
            "test -x /opt/berth/opencode-* && ! ls /opt/berth/agent/given-*"
        )
        .await["exit_code"],
        0,
        "the binary was copied in"
    );
    s2.call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    s2.assert_no_engine_objects().await;
    drop(s);
}

#[tokio::test]
async fn an_agent_server_that_dies_while_starting_is_told_at_once() {
    let llm = FakeLlm::start().await;
    let (s, _) = agent_server(&llm).await;
    // Too little memory for the agent server: the kernel kills it while it starts.
    let ws = s
        .ready_workspace(
            "agent-starved",
            json!({ "network": "host", "memory_mb": 64 }),
        )
        .await;
    let m = mission(&s, &ws).await;
    let msg = send(&s, "hello").await["id"].as_str().unwrap().to_string();
    let err = wait_event(&s, &m, "error", &msg).await;
    let text = err["data"]["message"].as_str().unwrap();
    // Its own exit and its own log, not a 90 s wait nor an older server's log.
    assert!(
        text.contains("exited with code 137 while starting"),
        "{err}"
    );
    assert!(!text.contains("within 90s"), "{err}");
    s.call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_graceful_stop_sends_live_streams_the_interrupted_turn_before_they_close() {
    let llm = FakeLlm::start().await;
    let (mut s, opts) = agent_server(&llm).await;
    let ws = agent_workspace(&s, "agent-stop").await;
    let m = mission(&s, &ws).await;
    let (seen, stream) = collect_stream(&s, None);
    let msg = send(&s, "SLOW 60").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_event(&s, &m, "status", &msg).await;
    let took = s.terminate();
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    tokio::time::timeout(Duration::from_secs(10), stream)
        .await
        .expect("the stream ended with berth")
        .unwrap();
    let frames = seen.lock().unwrap().clone();
    assert!(
        frames.iter().any(|(_, event, frame)| event == "status"
            && frame["data"]["status"] == "interrupted"
            && frame["data"]["message_id"] == msg.as_str()),
        "{frames:#?}"
    );
    let s2 = Server::spawn(&s.data_dir, &opts).await;
    let (_, mission) = s2.get(&format!("/api/control/missions/{m}")).await;
    assert_eq!(mission["status"], "interrupted", "{mission}");
    s2.call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    s2.assert_no_engine_objects().await;
}

#[tokio::test]
async fn the_pass_through_forwards_paths_headers_and_bodies_as_they_are() {
    let llm = FakeLlm::start().await;
    let (s, _) = agent_server(&llm).await;
    let ws = agent_workspace(&s, "agent-pipe").await;
    let base = format!("{}/api/workspaces/{ws}/opencode", s.url);
    let http = s.client();
    let resp = http
        .post(format!("{base}/session"))
        .bearer_auth(&s.token)
        .json(&json!({ "title": "pipe" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let session: Value = resp.json().await.unwrap();
    let sid = session["id"].as_str().unwrap();

    // OpenCode's headers come back (its length among them).
    let resp = http
        .get(format!("{base}/session/{sid}/message"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().contains_key("content-length"),
        "{:?}",
        resp.headers()
    );
    // An encoded `/` stays encoded: this names a session called "<sid>/message", which does not exist,
    // not the message list of <sid>.
    let resp = http
        .get(format!("{base}/session/{sid}%2Fmessage"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), StatusCode::OK, "{:?}", resp.text().await);
    // One body limit, declared or chunked.
    let chunks = (0..6).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1 << 20]));
    let resp = http
        .post(format!("{base}/session"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "payload_too_large", "{v}");
    // WebSockets pass too: OpenCode's own terminal, created and connected through berth.
    let resp = http
        .post(format!("{base}/pty"))
        .bearer_auth(&s.token)
        .json(&json!({ "command": "/bin/sh", "title": "through berth" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let pty: Value = resp.json().await.unwrap();
    let url = format!(
        "{}/pty/{}/connect?token={}",
        base.replace("http://", "ws://"),
        pty["id"].as_str().unwrap(),
        s.token
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    socket
        .send(Message::Text("echo relayed-$((40 + 2))\n".into()))
        .await
        .unwrap();
    let mut seen = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while !seen.contains("relayed-42") {
            match socket.next().await {
                Some(Ok(Message::Text(t))) => seen.push_str(&t),
                Some(Ok(Message::Binary(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
                Some(Ok(_)) => {}
                other => panic!("the socket ended: {other:?} after {seen:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no echo through the relay: {seen:?}"));
    drop(socket);
    s.call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    s.assert_no_engine_objects().await;
}
