//! The resident agent: one static binary running in every new container, reached on a unix socket; exec
//! through it, processes with live output that resumes, stdin, signals, timeouts that kill trees, files
//! both ways, watches, on every network mode; the agent comes back when killed.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::harness::{agent_bin, eventually, process_running, Options, Server};

/// Whether an ELF file asks for a dynamic loader (a `PT_INTERP` program header).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
    })
}

async fn start_process(s: &Server, ws: &str, body: Value) -> u64 {
    let (status, p) = s
        .post(&format!("/api/workspaces/{ws}/processes"), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    p["id"].as_u64().unwrap()
}

/// The SSE frames of a process's output until it ends, with when each arrived.
async fn output(
    s: &Server,
    ws: &str,
    pid: u64,
    last_event_id: Option<&str>,
) -> Vec<(String, String, Value, Instant)> {
    let mut req = s
        .client()
        .get(format!(
            "{}/api/workspaces/{ws}/processes/{pid}/output",
            s.url
        ))
        .bearer_auth(&s.token);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut got = Vec::new();
    use futures::StreamExt;
    while let Some(Ok(chunk)) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some((id, event, data)) = crate::harness::sse_frame(&block) {
                got.push((id, event, data, Instant::now()));
            }
        }
    }
    got
}

fn stdout_of(events: &[(String, String, Value, Instant)]) -> String {
    events
        .iter()
        .filter(|(_, e, ..)| e == "stdout" || e == "pty")
        .map(|(_, _, d, _)| d["data"].as_str().unwrap().to_string())
        .collect()
}

/// The number of engine execs the container has had: exec through the agent adds none.
async fn engine_execs(container: &str) -> usize {
    let d = crate::harness::docker().await;
    let c = d.inspect_container(container, None).await.unwrap();
    c.exec_ids.map(|e| e.len()).unwrap_or(0)
}

#[tokio::test]
async fn the_agent_runs_exec_processes_and_files_in_every_new_container() {
    // One static binary: it runs on any distro's C library, Ubuntu jammy's older glibc included.
    let elf = std::fs::read(agent_bin()).unwrap();
    assert!(
        !has_interpreter(&elf),
        "berth-agent must be linked statically"
    );

    let s = Server::start().await;
    let ws = s.ready_workspace("resident", json!({})).await;
    let container = format!("berth-ws-{ws}");
    assert!(
        process_running(
            &container,
            "/opt/berth/bin/berth-agent --socket /run/berth/agent.sock"
        )
        .await
    );

    // Exec goes through the agent: the engine runs no exec for it.
    let before = engine_execs(&container).await;
    let r = s.sh(&ws, "echo hi; echo oops >&2; exit 3").await;
    assert_eq!(r["stdout"], "hi\n", "{r}");
    assert_eq!(r["stderr"], "oops\n", "{r}");
    let (status, r) = s.exec(&ws, json!({ "command": "echo hi; exit 3" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["exit_code"], 3, "{r}");
    let (status, r) = s
        .exec(&ws, json!({ "command": "pwd", "cwd": "nowhere" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(engine_execs(&container).await, before);

    // Output streams live: the first line arrives well before the command ends.
    let started = Instant::now();
    let pid = start_process(
        &s,
        &ws,
        json!({ "command": "for i in 1 2 3; do echo line$i; sleep 1; done; echo err >&2", "tag": "lines" }),
    )
    .await;
    let (status, list) = s.get(&format!("/api/workspaces/{ws}/processes")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == pid && p["tag"] == "lines"),
        "{list}"
    );
    let events = output(&s, &ws, pid, None).await;
    let first = events.iter().find(|(_, e, ..)| e == "stdout").unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        last.1,
        "exit",
        "{:?}",
        events.iter().map(|e| &e.1).collect::<Vec<_>>()
    );
    assert_eq!(last.2["exit_code"], 0);
    assert!(
        last.3.duration_since(first.3) > Duration::from_millis(1500),
        "the first line came when the command ended"
    );
    assert!(first.3.duration_since(started) < Duration::from_millis(1500));
    assert_eq!(stdout_of(&events), "line1\nline2\nline3\n");
    assert!(events
        .iter()
        .any(|(_, e, d, _)| e == "stderr" && d["data"] == "err\n"));
    // Reconnecting after an event replays only what came after it.
    let second = events
        .iter()
        .filter(|(_, e, ..)| e == "stdout")
        .nth(1)
        .unwrap()
        .0
        .clone();
    let again = output(&s, &ws, pid, Some(&second)).await;
    assert_eq!(stdout_of(&again), "line3\n");

    // Stdin, and closing it.
    let pid = start_process(
        &s,
        &ws,
        json!({ "command": "cat; echo done", "stdin": true }),
    )
    .await;
    let (status, v) = s
        .post(
            &format!("/api/workspaces/{ws}/processes/{pid}/stdin"),
            json!({ "data": "hello\n", "close": true }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(
        stdout_of(&output(&s, &ws, pid, None).await),
        "hello\ndone\n"
    );
    // Stdin to a process started without it is refused; so is a signal that is not one.
    let pid = start_process(&s, &ws, json!({ "command": "sleep 300" })).await;
    let (status, v) = s
        .post(
            &format!("/api/workspaces/{ws}/processes/{pid}/stdin"),
            json!({ "data": "x" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (status, v) = s
        .post(
            &format!("/api/workspaces/{ws}/processes/{pid}/signal"),
            json!({ "signal": "SIGNOPE" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, _) = s
        .post(
            &format!("/api/workspaces/{ws}/processes/{pid}/signal"),
            json!({ "signal": "TERM" }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let end = output(&s, &ws, pid, None).await;
    assert_eq!(
        end.last().unwrap().2["status"],
        "signal: terminated",
        "{:?}",
        end.last()
    );
    for path in ["output", "stdin", "signal"] {
        let (status, v) = s
            .call(
                if path == "output" { "GET" } else { "POST" },
                &format!("/api/workspaces/{ws}/processes/999999/{path}"),
                (path != "output").then(|| json!({ "data": "x", "signal": "TERM" })),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    // A timeout kills the whole tree, children that left the session included.
    let pid = start_process(
        &s,
        &ws,
        json!({ "command": "(setsid sleep 1001 &); sleep 1002", "timeout_secs": 1 }),
    )
    .await;
    let end = output(&s, &ws, pid, None).await;
    assert_eq!(end.last().unwrap().2["status"], "timed out");
    for n in [1001, 1002] {
        assert!(!process_running(&container, &format!("sleep {n}")).await);
    }

    // Files: 10 MB both ways, checksummed; list, mkdir, move, delete; a watch sees a change.
    let data: Vec<u8> = (0..10_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let resp = s
        .client()
        .put(format!(
            "{}/api/workspaces/{ws}/files?path=data/big.bin",
            s.url
        ))
        .bearer_auth(&s.token)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = s
        .client()
        .get(format!(
            "{}/api/workspaces/{ws}/files?path=/workspace/data/big.bin",
            s.url
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let back = resp.bytes().await.unwrap();
    assert_eq!(Sha256::digest(&back), Sha256::digest(&data));
    let r = s
        .sh(&ws, "sha256sum < /workspace/data/big.bin | cut -c1-64")
        .await;
    assert_eq!(
        r["stdout"].as_str().unwrap().trim(),
        format!("{:x}", Sha256::digest(&data))
    );
    let (status, made) = s
        .post(
            &format!("/api/workspaces/{ws}/files/mkdir"),
            json!({ "path": "data/sub" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["type"], "dir");
    let (status, _) = s
        .post(
            &format!("/api/workspaces/{ws}/files/mkdir"),
            json!({ "path": "data/sub" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, moved) = s
        .post(
            &format!("/api/workspaces/{ws}/files/move"),
            json!({ "from": "data/big.bin", "to": "data/sub/moved.bin" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let (_, list) = s
        .get(&format!(
            "/api/workspaces/{ws}/files/list?path=data&depth=2"
        ))
        .await;
    let entries = list["entries"].as_array().unwrap();
    let moved = entries.iter().find(|e| e["name"] == "moved.bin").unwrap();
    assert_eq!(moved["size"], 10_000_000, "{list}");
    assert_eq!(moved["type"], "file");
    assert!(
        moved["mtime"].is_string() && moved["mode"].is_number(),
        "{moved}"
    );
    let (collected, watch) =
        s.collect_sse(&format!("/api/workspaces/{ws}/files/watch?path=data"), None);
    // The watch is in place once its stream is open; a file made afterwards shows.
    eventually(
        "the watch sees a new file",
        Duration::from_secs(20),
        || async {
            s.sh(&ws, "touch /workspace/data/new-$(date +%s%N)").await;
            let seen = collected.lock().unwrap().clone();
            seen.iter()
                .any(|(_, e, d)| e == "create" && d["name"].as_str().unwrap().starts_with("new-"))
                .then_some(())
        },
    )
    .await;
    watch.abort();
    let (status, _) = s
        .call(
            "DELETE",
            &format!("/api/workspaces/{ws}/files?path=data/sub"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .get(&format!(
            "/api/workspaces/{ws}/files?path=data/sub/moved.bin"
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Symlinks resolve inside the container: /etc/hostname through a link is the container's.
    s.sh(&ws, "ln -sf /etc/hostname /workspace/host-link").await;
    let resp = s
        .client()
        .get(format!(
            "{}/api/workspaces/{ws}/files?path=host-link",
            s.url
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap().trim(), "resident");

    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn files_over_the_cap_are_refused_and_a_network_none_workspace_does_it_all() {
    let s = Server::start_with(Options {
        env: vec![("BERTH_MAX_FILE_MB".into(), "1".into())],
        ..Default::default()
    })
    .await;
    let ws = s
        .ready_workspace("offline", json!({ "network": "none" }))
        .await;
    let r = s.sh(&ws, "echo offline").await;
    assert_eq!(r["stdout"], "offline\n");
    let pid = start_process(&s, &ws, json!({ "command": "echo streamed" })).await;
    assert_eq!(stdout_of(&output(&s, &ws, pid, None).await), "streamed\n");
    let put = |body: reqwest::Body| {
        s.client()
            .put(format!("{}/api/workspaces/{ws}/files?path=f.bin", s.url))
            .bearer_auth(&s.token)
            .body(body)
            .send()
    };
    let resp = put(vec![7u8; 1000].into()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // Declared too large, and too large without declaring it (chunked): both 413, the file untouched.
    let resp = put(vec![0u8; 2 << 20].into()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![1u8; 64 * 1024])).collect();
    let resp = put(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = s
        .sh(
            &ws,
            "wc -c < /workspace/f.bin; ls -a /workspace | grep -c berth-upload || true",
        )
        .await;
    assert_eq!(r["stdout"], "1000\n0\n", "{r}");
    // Processes are bounded: past 256 running, a start is refused clearly.
    for _ in 0..256 {
        start_process(&s, &ws, json!({ "command": "sleep 600" })).await;
    }
    let (status, v) = s
        .post(
            &format!("/api/workspaces/{ws}/processes"),
            json!({ "command": "sleep 600" }),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(v["error"].as_str().unwrap().contains("256"), "{v}");
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_killed_agent_comes_back_and_processes_outlive_a_berth_restart() {
    let mut s = Server::start().await;
    let ws = s.ready_workspace("comeback", json!({})).await;
    let container = format!("berth-ws-{ws}");
    let pid = start_process(
        &s,
        &ws,
        json!({ "command": "for i in $(seq 1 40); do echo tick$i; sleep 0.5; done" }),
    )
    .await;
    // berth goes away and comes back on the same data dir: the process ran on, its output was kept.
    s.kill();
    let s2 = Server::spawn(&s.data_dir, &Default::default()).await;
    let events = output(&s2, &ws, pid, Some("0")).await;
    let out = stdout_of(&events);
    assert!(
        out.starts_with("tick1\ntick2\n") && out.ends_with("tick40\n"),
        "{out}"
    );

    // Killed from outside, the agent is back within a moment; meanwhile requests are refused promptly.
    let kill = tokio::process::Command::new("docker")
        .args([
            "exec",
            &container,
            "sh",
            "-c",
            "kill -9 $(pidof berth-agent)",
        ])
        .env("DOCKER_API_VERSION", "1.41")
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    eventually(
        "the agent answers again",
        Duration::from_secs(30),
        || async {
            let (status, v) = s2.exec(&ws, json!({ "command": "echo back" })).await;
            assert!(
                status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
                "{status} {v}"
            );
            (status == StatusCode::OK && v["stdout"] == "back\n").then_some(())
        },
    )
    .await;
    let (status, _) = s2
        .call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s2.assert_no_engine_objects().await;
}

/// Reads the terminal until `needle` has been seen.
async fn read_until<S>(socket: &mut S, seen: &mut String, needle: &str)
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(Duration::from_secs(20), async {
        while !seen.contains(needle) {
            match socket.next().await {
                Some(Ok(Message::Binary(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
                Some(Ok(Message::Text(t))) => seen.push_str(&t),
                Some(Ok(_)) => {}
                other => panic!("the terminal closed early: {other:?} after {seen:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} never came"));
}

#[tokio::test]
async fn a_terminal_over_a_websocket_echoes_resizes_and_ends_with_its_shell() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let s = Server::start().await;
    let ws = s.ready_workspace("terminal", json!({})).await;
    // A browser's way: the token as a query parameter.
    let url = format!(
        "{}/api/workspaces/{ws}/pty?cols=100&rows=30&token={}",
        s.url.replace("http://", "ws://"),
        s.token
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut seen = String::new();
    socket
        .send(Message::Text("echo $((6 * 7))-$TERM\n".into()))
        .await
        .unwrap();
    read_until(&mut socket, &mut seen, "42-xterm-256color").await;
    socket
        .send(Message::Text(
            json!({ "type": "resize", "cols": 120, "rows": 40 })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::Binary(b"stty size\n".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut socket, &mut seen, "40 120").await;
    socket
        .send(Message::Binary(b"exit 7\n".to_vec().into()))
        .await
        .unwrap();
    read_until(&mut socket, &mut seen, "\"exit_code\":7").await;
    // Without a token there is no terminal.
    let bare = format!(
        "{}/api/workspaces/{ws}/pty",
        s.url.replace("http://", "ws://")
    );
    assert!(tokio_tungstenite::connect_async(bare).await.is_err());
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}
