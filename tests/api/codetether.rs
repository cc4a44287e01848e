//! CodeTether's stock worker (PyPI `codetether`, pinned, installed by `scripts/codetether.sh`) against
//! the real server, unchanged: it registers under its own id with a user's worker token, listens on
//! its push channel, claims, runs its own OpenCode (pointed at the fake LLM) and reports. Its
//! token-less calls are taken only from the worker that vouched for itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_llm::FakeLlm;
use crate::harness::{eventually, opencode_bin, Options, Server};

/// The `codetether-worker` script, installed once per checkout.
fn worker_script() -> PathBuf {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/codetether.sh"))
        .output()
        .expect("run scripts/codetether.sh");
    assert!(
        out.status.success(),
        "scripts/codetether.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// One stock worker process with a home of its own (its OpenCode's config and storage live there).
struct StockWorker {
    child: Option<Child>,
    home: tempfile::TempDir,
    log: PathBuf,
    id: String,
}

impl StockWorker {
    /// Starts a worker with `id`, serving the directory `repo` (made under its home when relative).
    fn start(s: &Server, llm: &FakeLlm, token: &str, id: &str, repo: &Path) -> Self {
        let home = tempfile::tempdir().unwrap();
        let config_dir = home.path().join(".config/opencode");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(config_dir.join("opencode.json"), llm.opencode_config()).unwrap();
        let log = home.path().join("worker.log");
        // OpenCode makes its database on first use, and two first runs at once (the worker runs two
        // tasks at a time) race on it: it is made before the worker starts, as on any used machine.
        let out = Self::env(Command::new(opencode_bin()), home.path())
            .args(["session", "list"])
            .output()
            .expect("run opencode");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut w = Self {
            child: None,
            home,
            log,
            id: id.to_string(),
        };
        w.spawn(s, token, repo);
        w
    }

    fn spawn(&mut self, s: &Server, token: &str, repo: &Path) {
        let config = json!({
            "server_url": s.url,
            "worker_name": format!("stock {}", self.id),
            "worker_id": self.id,
            "codebases": [{ "name": "repo", "path": repo, "description": "the test's repository" }],
            "opencode_bin": opencode_bin(),
            "poll_interval": 2,
        });
        let cfg = self.home.path().join("worker.json");
        std::fs::write(&cfg, config.to_string()).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Self::env(Command::new(worker_script()), self.home.path())
            .arg("--config")
            .arg(&cfg)
            .env("A2A_AUTH_TOKEN", token)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start codetether-worker");
        self.child = Some(child);
    }

    /// A command living in `home`: its own config, data and caches.
    fn env(mut cmd: Command, home: &Path) -> Command {
        cmd.current_dir(home)
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_STATE_HOME", home.join(".local/state"));
        cmd
    }

    /// SIGTERM, as a service manager stops it: it unregisters on the way out.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The worker's log says `needle` (waiting for it).
    async fn wait_log(&self, needle: &str) {
        eventually(
            &format!("worker {} logs {needle:?}", self.id),
            Duration::from_secs(120),
            || async { self.log().contains(needle).then_some(()) },
        )
        .await;
    }
}

impl Drop for StockWorker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn server(lease_secs: u64) -> Server {
    Server::start_with(Options {
        env: vec![("BERTH_TASK_LEASE_SECS".into(), lease_secs.to_string())],
        ..Default::default()
    })
    .await
}

/// A worker token of the server's admin.
async fn worker_token(s: &Server) -> String {
    let (status, v) = s
        .post(
            "/api/auth/tokens",
            json!({ "name": "stock worker", "scope": "worker" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["scope"], "worker");
    v["token"].as_str().unwrap().to_string()
}

/// The id of the worker's codebase at `path`, once it is registered with the worker.
async fn codebase_at(s: &Server, worker: &str, path: &Path) -> String {
    let path = path.to_string_lossy().into_owned();
    eventually(
        &format!("worker {worker} registers {path}"),
        Duration::from_secs(120),
        || async {
            let (_, v) = s.get("/v1/opencode/codebases").await;
            v.as_array()?
                .iter()
                .find(|c| c["worker_id"] == worker && c["path"] == path.as_str())
                .map(|c| c["id"].as_str().unwrap().to_string())
        },
    )
    .await
}

async fn task_in(s: &Server, id: &str, status: &str, within: Duration) -> Value {
    eventually(&format!("task {id} is {status}"), within, || async {
        let (_, t) = s.get(&format!("/v1/opencode/tasks/{id}")).await;
        let ended = ["completed", "failed", "cancelled"].contains(&t["status"].as_str()?);
        assert!(
            t["status"] == status || !ended,
            "task {id} ended otherwise: {t}"
        );
        (t["status"] == status).then_some(t)
    })
    .await
}

fn repo_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("README.md"), "a repository\n").unwrap();
    d
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stock_worker_registers_under_its_id_and_completes_a_triggered_task() {
    let llm = FakeLlm::start().await;
    let s = server(60).await;
    let token = worker_token(&s).await;
    let repo = repo_dir();
    let mut w = StockWorker::start(&s, &llm, &token, "stock-1", repo.path());
    let cb = codebase_at(&s, "stock-1", repo.path()).await;

    // Its own id, shown active while its channel is open, serving its codebase.
    let worker = eventually(
        "the worker is active with its codebase",
        Duration::from_secs(60),
        || async {
            let (_, v) = s.get("/v1/opencode/workers").await;
            v.as_array()?
                .iter()
                .find(|w| {
                    w["worker_id"] == "stock-1"
                        && w["status"] == "active"
                        && w["codebases"]
                            .as_array()
                            .is_some_and(|c| c.contains(&json!(cb)))
                })
                .cloned()
        },
    )
    .await;
    assert_eq!(worker["owner"], "admin", "{worker}");

    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/trigger"),
            json!({ "prompt": "hello from berth", "model": "fake/fake-model" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    let task = v["task_id"].as_str().unwrap().to_string();
    let done = task_in(&s, &task, "completed", Duration::from_secs(180)).await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["worker_id"], "stock-1", "{done}");
    assert!(
        done["result"]
            .as_str()
            .is_some_and(|r| r.starts_with("Echo:") && r.contains("hello from berth")),
        "{done}"
    );
    let (_, out) = s.get(&format!("/v1/opencode/tasks/{task}/output")).await;
    assert!(
        out["outputs"]
            .as_array()
            .is_some_and(|o| o.iter().any(|c| c["output"]
                .as_str()
                .is_some_and(|t| t.contains("hello from berth")))),
        "{out}"
    );
    w.wait_log(&format!("Successfully claimed task {task}"))
        .await;
    assert!(!w.log().contains(" - ERROR - "), "{}", w.log());

    // What it syncs (replayed here: its OpenCode keeps sessions where it cannot read them) is
    // stored and shown, token-less, tied to its open channel.
    let url = format!(
        "{}/v1/opencode/codebases/{cb}/sessions/ses_stock/messages/sync",
        s.url
    );
    let body = json!({ "worker_id": "stock-1", "messages": [
        { "id": "m1", "role": "user", "time": { "created": 1_700_000_000_000i64 }, "parts": [{ "type": "text", "text": "hi" }] },
        { "info": { "id": "m2", "role": "assistant", "time": { "created": 1_700_000_001_000i64 } }, "parts": [{ "type": "text", "text": "hello" }] },
    ]});
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, v) = s
        .get(&format!(
            "/v1/opencode/codebases/{cb}/messages?session_id=ses_stock"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let contents: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["hi", "hello"], "{v}");

    // Stopped, it unregisters; its codebases stay.
    w.stop();
    eventually("the worker is gone", Duration::from_secs(30), || async {
        let (_, v) = s.get("/v1/opencode/workers").await;
        v.as_array()?.is_empty().then_some(())
    })
    .await;
    s.assert_no_engine_objects().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_worker_keeps_its_codebase_and_a_long_task_completes_on_its_first_attempt() {
    let llm = FakeLlm::start().await;
    // A short lease: the task below runs for more than three of them.
    let s = server(20).await;
    let token = worker_token(&s).await;
    let repo = repo_dir();
    let mut w = StockWorker::start(&s, &llm, &token, "stock-long", repo.path());
    let cb = codebase_at(&s, "stock-long", repo.path()).await;
    w.wait_log("SSE connection established").await;
    w.stop();
    w.spawn(&s, &token, repo.path());
    w.wait_log("SSE connection confirmed").await;
    let (_, all) = s.get("/v1/opencode/codebases").await;
    let at_path: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["path"] == repo.path().to_string_lossy().as_ref())
        .collect();
    assert_eq!(at_path.len(), 1, "{all}");
    assert_eq!(at_path[0]["id"], cb.as_str());

    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/tasks"),
            json!({ "title": "long", "prompt": "SLOW 65", "model": "fake/fake-model" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let task = v["task"]["id"].as_str().unwrap().to_string();
    let done = task_in(&s, &task, "completed", Duration::from_secs(240)).await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert!(!w.log().contains(" - ERROR - "), "{}", w.log());
    s.assert_no_engine_objects().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_stock_workers_on_one_queue_never_run_a_task_twice() {
    let llm = FakeLlm::start().await;
    let s = server(60).await;
    let token = worker_token(&s).await;
    let repo = repo_dir();
    // Two processes of one worker (one id, one codebase): both are pushed every task.
    let a = StockWorker::start(&s, &llm, &token, "stock-pair", repo.path());
    let b = StockWorker::start(&s, &llm, &token, "stock-pair", repo.path());
    let cb = codebase_at(&s, "stock-pair", repo.path()).await;
    a.wait_log("SSE connection confirmed").await;
    b.wait_log("SSE connection confirmed").await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (status, v) = s
            .post(
                &format!("/v1/opencode/codebases/{cb}/tasks"),
                json!({ "title": format!("t{i}"), "prompt": format!("task {i}"), "model": "fake/fake-model" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        tasks.push(v["task"]["id"].as_str().unwrap().to_string());
    }
    for t in &tasks {
        let done = task_in(&s, t, "completed", Duration::from_secs(240)).await;
        assert_eq!(done["attempts"], 1, "{done}");
        let claims = [&a, &b]
            .iter()
            .filter(|w| w.log().contains(&format!("Successfully claimed task {t}")))
            .count();
        assert_eq!(claims, 1, "task {t} claimed {claims} times");
    }
    s.assert_no_engine_objects().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_task_stays_cancelled_and_forged_token_less_calls_are_refused() {
    let llm = FakeLlm::start().await;
    let s = server(60).await;
    let token = worker_token(&s).await;
    let repo = repo_dir();
    let w = StockWorker::start(&s, &llm, &token, "stock-c", repo.path());
    let cb = codebase_at(&s, "stock-c", repo.path()).await;
    w.wait_log("SSE connection confirmed").await;

    let (_, v) = s
        .post(
            &format!("/v1/opencode/codebases/{cb}/tasks"),
            json!({ "title": "slow", "prompt": "SLOW 8", "model": "fake/fake-model" }),
        )
        .await;
    let task = v["task"]["id"].as_str().unwrap().to_string();
    task_in(&s, &task, "running", Duration::from_secs(60)).await;

    // Token-less calls: only as the worker that vouched, from its address; never as another.
    let anon = reqwest::Client::new();
    let forged = [
        (
            "PUT",
            format!("/v1/opencode/tasks/{task}/status"),
            json!({ "status": "completed", "worker_id": "intruder", "result": "forged" }),
        ),
        (
            "POST",
            format!("/v1/opencode/tasks/{task}/output"),
            json!({ "worker_id": "intruder", "output": "forged" }),
        ),
        (
            "POST",
            "/v1/opencode/workers/intruder/heartbeat".to_string(),
            json!({}),
        ),
        ("GET", format!("/v1/opencode/codebases/{cb}"), Value::Null),
        (
            "POST",
            format!("/v1/opencode/codebases/{cb}/trigger"),
            json!({ "prompt": "x", "worker_id": "stock-c" }),
        ),
    ];
    for (method, path, body) in forged {
        let mut req = anon.request(method.parse().unwrap(), format!("{}{path}", s.url));
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["detail"].is_string(), "{v}");
    }
    // A registration nobody vouches for is held, never stored.
    let resp = anon
        .post(format!("{}/v1/opencode/codebases", s.url))
        .json(&json!({ "name": "planted", "path": "/srv/planted", "worker_id": "stock-ghost" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let (status, v) = s
        .post(&format!("/v1/opencode/tasks/{task}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // The stock worker runs on to the end; its final report is refused and the task stays cancelled.
    w.wait_log(&format!(
        "Task {task} status update failed with client error: 409"
    ))
    .await;
    let (_, t) = s.get(&format!("/v1/opencode/tasks/{task}")).await;
    assert_eq!(t["status"], "cancelled", "{t}");
    let (_, all) = s.get("/v1/opencode/codebases").await;
    assert!(!all.to_string().contains("planted"), "{all}");

    // A worker token is no admin's token anywhere else.
    let (status, _) = s.call_as(&token, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Revoked, it vouches for nothing: the worker's token-less calls are refused at once.
    let heartbeat = format!("{}/v1/opencode/workers/stock-c/heartbeat", s.url);
    let resp = anon.post(&heartbeat).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "tied while its token holds");
    let (_, tokens) = s.get("/api/auth/tokens").await;
    let id = tokens.as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = s
        .call("DELETE", &format!("/api/auth/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let resp = anon.post(&heartbeat).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    s.assert_no_engine_objects().await;
}
