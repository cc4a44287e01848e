//! What a workspace may not do to the host or to other processes: no setuid or setgid bit reaches a
//! file (least of all in a codebase's `/code`, a host directory), no new namespaces, no tracing of
//! another process; and what installers do with those bits still succeeds.

use std::os::unix::fs::PermissionsExt;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{eventually, Options, Server};

#[tokio::test]
async fn nothing_in_a_workspace_sets_a_setuid_bit_on_the_host_or_reaches_past_its_container() {
    let roots = tempfile::tempdir().unwrap();
    let code = roots.path().join("project");
    std::fs::create_dir_all(&code).unwrap();
    let opts = Options {
        env: vec![(
            "BERTH_CODEBASE_ROOTS".into(),
            roots.path().to_string_lossy().into(),
        )],
        ..Default::default()
    };
    let s = Server::start_with(opts).await;
    let (status, v) = s
        .post(
            "/v1/opencode/codebases",
            json!({ "name": "suid", "path": code }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let cb = v["codebase"]["id"].as_str().unwrap().to_string();
    let ws = eventually(
        "the codebase's workspace is ready",
        std::time::Duration::from_secs(300),
        || async {
            let (_, c) = s.get(&format!("/v1/opencode/codebases/{cb}")).await;
            (c["status"] == "idle").then(|| c["workspace_id"].as_str().unwrap().to_string())
        },
    )
    .await;

    // The attack: a setuid-root shell in the user's directory. Every way to set the bit answers
    // success (installers go on) and sets nothing.
    let out = s
        .sh(
            &ws,
            "cp /bin/bash /code/sbash && chmod 4755 /code/sbash && echo chmod=$? \
             && chmod u+s,g+s /code/sbash && install -m 6755 /bin/bash /code/ibash \
             && cp -a /usr/bin/passwd /code/passwd && stat -c '%a %U' /code/sbash /code/ibash /code/passwd",
        )
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert!(
        out["stdout"].as_str().unwrap().starts_with("chmod=0\n"),
        "{out}"
    );
    for name in ["sbash", "ibash", "passwd"] {
        let meta = std::fs::metadata(code.join(name)).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o6000,
            0,
            "{name} carries a setuid/setgid bit on the host: {out}"
        );
    }
    // Creating a file with the bit is refused.
    let out = s
        .sh(
            &ws,
            "perl -e 'sysopen(F, \"/code/p\", 0101, 04755) or exit 7' 2>/dev/null; echo $?",
        )
        .await;
    let rc = out["stdout"].as_str().unwrap().trim().to_string();
    assert!(rc == "7" || rc == "127", "{out}");
    assert!(
        std::fs::metadata(code.join("p")).map_or(true, |m| m.permissions().mode() & 0o6000 == 0),
        "{out}"
    );
    // No new namespaces (a user namespace is the usual first step out), no tracing another process.
    // ptrace(PTRACE_ATTACH, pid) on x86_64, through perl's raw syscall.
    let out = s
        .sh(
            &ws,
            r#"unshare -U true; echo $?
sleep 30 &
pid=$!
perl -e '$r = syscall(101, 16, $ARGV[0] + 0, 0, 0); print $r == 0 ? "attached\n" : "refused: $!\n"' "$pid"
kill "$pid""#,
        )
        .await;
    let lines: Vec<&str> = out["stdout"].as_str().unwrap().lines().collect();
    assert_ne!(lines[0], "0", "unshare -U worked: {out}");
    assert!(
        lines[1].starts_with("refused: Operation not permitted"),
        "another process could be traced: {out}"
    );
    // Ordinary work goes on.
    let out = s
        .sh(
            &ws,
            "mkdir -p /code/d && chmod 750 /code/d && stat -c %a /code/d && ls / > /dev/null",
        )
        .await;
    assert_eq!(out["stdout"], "750\n", "{out}");

    let (status, _) = s
        .call("DELETE", &format!("/v1/opencode/codebases/{cb}"), None)
        .await;
    assert!(status.is_success(), "{status}");
    eventually(
        "the workspace is gone",
        std::time::Duration::from_secs(60),
        || async {
            let (status, _) = s.get(&format!("/api/workspaces/{ws}")).await;
            (status == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_bridge_workspace_reaches_neither_the_hosts_services_nor_a_neighbour() {
    let s = Server::start().await;
    let (_, h) = s.get("/api/health").await;
    assert_eq!(h["network_isolation"], true, "{h}");
    // A service of the host's, on every address it has.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let _ = std::io::Write::write_all(&mut conn, b"host service\n");
        }
    });
    let a = s.ready_workspace("fenced-a", json!({})).await;
    let b = s.ready_workspace("fenced-b", json!({})).await;
    let d = crate::harness::docker().await;
    let net = d
        .inspect_network::<String>(&format!("berth-ws-{a}"), None)
        .await
        .unwrap();
    let gateway = net.ipam.unwrap().config.unwrap()[0]
        .gateway
        .clone()
        .unwrap();
    let c = d
        .inspect_container(&format!("berth-ws-{b}"), None)
        .await
        .unwrap();
    let b_ip = c.network_settings.unwrap().networks.unwrap()[&format!("berth-ws-{b}")]
        .ip_address
        .clone()
        .unwrap();
    // The neighbour serves on its own address.
    let (status, out) = s
        .exec(
            &b,
            json!({ "command": "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 7777, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) { print $c \"neighbour\\n\"; close $c }' > /dev/null 2>&1 &", "background": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let read = |ip: &str, port: u16| {
        format!("timeout 3 bash -c 'exec 3<>/dev/tcp/{ip}/{port}; head -n 1 <&3'; echo \"rc=$?\"")
    };
    let out = eventually(
        "the neighbour listens",
        std::time::Duration::from_secs(20),
        || {
            let cmd = read("127.0.0.1", 7777);
            let s = &s;
            let b = b.clone();
            async move {
                let out = s.sh(&b, &cmd).await;
                out["stdout"]
                    .as_str()
                    .unwrap()
                    .starts_with("neighbour")
                    .then_some(out)
            }
        },
    )
    .await;
    assert!(out["stdout"].as_str().unwrap().contains("rc=0"), "{out}");
    // From the other workspace: neither the host (its gateway address) nor the neighbour answers.
    for (ip, port) in [(gateway.as_str(), port), (b_ip.as_str(), 7777)] {
        let out = s.sh(&a, &read(ip, port)).await;
        let text = out["stdout"].as_str().unwrap();
        assert!(
            !text.contains("service") && !text.contains("neighbour"),
            "{ip}:{port} answered: {out}"
        );
        assert!(!text.contains("rc=0"), "{ip}:{port} answered: {out}");
    }
    // The host's service was there all along, for the host.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut line = String::new();
    std::io::Read::read_to_string(&mut conn, &mut line).ok();
    assert_eq!(line, "host service\n");
    // Link-local (cloud metadata) addresses are dropped on the way out.
    let rules = std::process::Command::new("iptables")
        .args(["-S", "BERTH-FORWARD"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&rules.stdout).contains("-d 169.254.0.0/16 -j DROP"),
        "{rules:?}"
    );
    for id in [&a, &b] {
        let (status, _) = s
            .call("DELETE", &format!("/api/workspaces/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_bridge_workspace_calls_a_loopback_llm_through_the_gateway_and_never_holds_the_key() {
    let llm = crate::fake_llm::FakeLlm::start().await;
    let opts = Options {
        env: vec![
            ("BERTH_OPENCODE_CONFIG".into(), llm.opencode_config()),
            (
                "BERTH_OPENCODE_BIN".into(),
                crate::harness::opencode_bin().to_string_lossy().into(),
            ),
        ],
        ..Default::default()
    };
    let s = Server::start_with(opts).await;
    const KEY: &str = "sk-berth-gateway-test-4f1c";
    let (status, v) = s
        .post("/api/providers/fake/auth", json!({ "api_key": KEY }))
        .await;
    assert!(status.is_success(), "{v}");
    // A bridge workspace: the fake LLM listens on the host's loopback, which it cannot reach itself.
    let ws = s.ready_workspace("gated", json!({})).await;
    let (status, m) = s
        .post(
            "/api/control/missions",
            json!({ "title": "through the gateway", "workspace_id": ws }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    let m = m["id"].as_str().unwrap().to_string();
    s.post(&format!("/api/control/missions/{m}/load"), json!({}))
        .await;
    let (status, sent) = s
        .post(
            "/api/control/message",
            json!({ "content": "hello gateway" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let answer = eventually(
        "the answer",
        std::time::Duration::from_secs(180),
        || async {
            let (_, evs) = s
                .get(&format!(
                    "/api/control/missions/{m}/events?types=assistant_message,error"
                ))
                .await;
            evs.as_array().unwrap().first().cloned()
        },
    )
    .await;
    assert_eq!(answer["type"], "assistant_message", "{answer}");
    assert_eq!(answer["data"]["content"], "Echo: hello gateway", "{answer}");
    // The provider got the key from berth, the workspace never had it.
    let auth = llm.auth.lock().unwrap().clone();
    assert!(
        !auth.is_empty() && auth.iter().all(|a| a == &format!("Bearer {KEY}")),
        "{auth:?}"
    );
    let out = s
        .sh(
            &ws,
            // The key is put together where nothing searched holds it (this command line does not).
            &format!(
                "printf '%s%s' {} {} > /dev/shm/k; grep -rlsf /dev/shm/k /proc/[0-9]*/environ /proc/[0-9]*/cmdline /workspace /tmp /root | head -5; echo end",
                &KEY[..10],
                &KEY[10..]
            ),
        )
        .await;
    assert_eq!(out["stdout"], "end\n", "the key is in the workspace: {out}");
    // Nor can an exec read the agent server's password (seen here from the host), nor its memory.
    let (pid, password) = agent_server_on_host(&ws).expect("the agent server runs");
    let out = s
        .sh(
            &ws,
            &format!(
                "printf '%s%s' {} {} > /dev/shm/p; grep -rlsf /dev/shm/p /proc/[0-9]*/environ /proc/[0-9]*/cmdline /workspace /tmp /root | head -5; \
                 for p in $(grep -l 'se[r]ve' /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do [ \"$(tr '\\0' ' ' < /proc/$p/cmdline | cut -d' ' -f2)\" = serve ] || continue; echo seen; cat /proc/$p/environ >/dev/null 2>&1 && echo readable $p; head -c1 /proc/$p/mem >/dev/null 2>&1 && echo mem $p; done; echo end",
                &password[..8],
                &password[8..]
            ),
        )
        .await;
    // `seen` once per process of the server (it is there; not the shell that waits for it, which
    // holds no password), and nothing read from any of them.
    let stdout = out["stdout"].as_str().unwrap();
    assert!(
        stdout.starts_with("seen\n") && stdout.replace("seen\n", "") == "end\n",
        "an exec reads the agent server (host pid {pid}): {out}"
    );
    let (_, config) = s
        .get(&format!("/api/workspaces/{ws}/opencode/config"))
        .await;
    assert!(!config.to_string().contains(KEY), "{config}");
    // The tokens the provider reported are counted for the workspace and its owner.
    let (_, stats) = s.get("/api/stats").await;
    let usage = &stats["llm"]["workspaces"][&ws];
    assert!(usage["output_tokens"].as_i64() >= Some(5), "{stats}");
    assert!(
        stats["llm"]["users"]["admin"]["requests"].as_i64() >= Some(1),
        "{stats}"
    );
    // A call without a workspace's token is refused.
    let resp = s
        .client()
        .post(format!("{}/llm/fake/chat/completions", s.url))
        .bearer_auth(&s.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_workspace_past_its_disk_limit_is_stopped_and_says_so() {
    let opts = Options {
        env: vec![("BERTH_DISK_CHECK_SECS".into(), "1".into())],
        ..Default::default()
    };
    let s = Server::start_with(opts).await;
    let (status, e) = s
        .post(
            "/api/workspaces",
            json!({ "name": "tiny", "template": "debian", "disk_mb": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let ws = s.ready_workspace("filler", json!({ "disk_mb": 64 })).await;
    let (_, w) = s.get(&format!("/api/workspaces/{ws}")).await;
    assert_eq!(w["disk_mb"], 64, "{w}");
    // A neighbour with room to spare is left alone.
    let calm = s.ready_workspace("calm", json!({})).await;
    s.sh(&ws, "head -c 100000000 /dev/zero > /workspace/big")
        .await;
    let w = eventually(
        "the limit is enforced",
        std::time::Duration::from_secs(60),
        || async {
            let (_, w) = s.get(&format!("/api/workspaces/{ws}")).await;
            (w["status"] == "error").then_some(w)
        },
    )
    .await;
    let msg = w["error_message"].as_str().unwrap();
    assert!(msg.contains("64 MiB disk limit"), "{w}");
    // The status is recorded before the stop (so the engine's event finds a stop berth made).
    let d = crate::harness::docker().await;
    eventually(
        "the container stops",
        std::time::Duration::from_secs(30),
        || async {
            let c = d
                .inspect_container(&format!("berth-ws-{ws}"), None)
                .await
                .unwrap();
            (c.state.unwrap().running == Some(false)).then_some(())
        },
    )
    .await;
    let (_, other) = s.get(&format!("/api/workspaces/{calm}")).await;
    assert_eq!(other["status"], "ready", "{other}");
    for id in [&ws, &calm] {
        let (status, _) = s
            .call("DELETE", &format!("/api/workspaces/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    s.assert_no_engine_objects().await;
}

/// The host pid and password of a workspace's agent server, read from the host's `/proc`.
fn agent_server_on_host(ws: &str) -> Option<(u32, String)> {
    let marker = format!("BERTH_EXEC_ID=opencode-{ws}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        if !vars.contains(&marker) {
            continue;
        }
        if let Some(p) = vars
            .iter()
            .find_map(|v| v.strip_prefix("OPENCODE_SERVER_PASSWORD="))
        {
            return Some((pid, p.to_string()));
        }
    }
    None
}
