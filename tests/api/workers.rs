//! The task queue with external workers: atomic claims under contention, leases that lapse when a
//! worker stops heartbeating (requeue, then a final failure), reports only from the holder, worker
//! tokens, the `{"detail"}` errors, and the monitor's view of it all.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{Options, Server};

async fn queue_server() -> Server {
    Server::start_with(Options {
        env: vec![
            ("BERTH_TASK_LEASE_SECS".into(), "2".into()),
            ("BERTH_TASK_MAX_ATTEMPTS".into(), "2".into()),
        ],
        ..Default::default()
    })
    .await
}

/// Registers a worker; `(id, token)`.
async fn worker(s: &Server, name: &str) -> (String, String) {
    let (status, v) = s
        .post(
            "/v1/opencode/workers/register",
            json!({ "name": name, "capabilities": ["opencode"], "hostname": format!("{name}.local") }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    (
        v["worker_id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

async fn task(s: &Server, codebase: &str, title: &str, priority: i64) -> String {
    let (status, v) = s
        .post(
            &format!("/v1/opencode/codebases/{codebase}/tasks"),
            json!({ "title": title, "prompt": format!("do {title}"), "priority": priority }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["task"]["status"], "pending");
    v["task"]["id"].as_str().unwrap().to_string()
}

async fn claim(s: &Server, token: &str, worker: &str) -> Option<Value> {
    let (status, v) = s
        .call_as(
            token,
            "POST",
            &format!("/v1/opencode/workers/{worker}/claim"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    (!v["task"].is_null()).then(|| v["task"].clone())
}

async fn set_status(s: &Server, token: &str, task: &str, body: Value) -> (StatusCode, Value) {
    s.call_as(
        token,
        "PUT",
        &format!("/v1/opencode/tasks/{task}/status"),
        Some(body),
    )
    .await
}

async fn heartbeat(s: &Server, token: &str, worker: &str, body: Option<Value>) {
    let (status, v) = s
        .call_as(
            token,
            "POST",
            &format!("/v1/opencode/workers/{worker}/heartbeat"),
            body,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

/// Waits, heartbeating as `alive` meanwhile, until the task has `status`.
async fn wait_task(s: &Server, task: &str, status: &str, alive: (&str, &str)) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, t) = s.get(&format!("/v1/opencode/tasks/{task}")).await;
        if t["status"] == status {
            return t;
        }
        assert!(Instant::now() < deadline, "task never became {status}: {t}");
        heartbeat(s, alive.1, alive.0, None).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_never_get_the_same_task_and_lapsed_leases_requeue() {
    let s = queue_server().await;
    let (w1, t1) = worker(&s, "one").await;
    let (w2, t2) = worker(&s, "two").await;

    // A codebase on worker one's machine.
    let (status, v) = s
        .call_as(
            &t1,
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "shared", "path": "/srv/shared//repo/" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let cb = v["codebase"]["id"].as_str().unwrap().to_string();
    assert_eq!(v["codebase"]["worker_id"], w1.as_str());
    assert_eq!(v["codebase"]["path"], "/srv/shared/repo");
    // Registering it again (workers do, periodically) keeps its id.
    let (_, again) = s
        .call_as(
            &t1,
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "shared", "path": "/srv/shared/repo" })),
        )
        .await;
    assert_eq!(again["codebase"]["id"], cb.as_str());
    // Worker two may not claim for it, nor take it by listing it in a heartbeat: only a codebase
    // registered with a worker's id is its work.
    let (status, v) = s
        .call_as(
            &t2,
            "POST",
            &format!("/v1/opencode/workers/{w2}/claim"),
            Some(json!({ "codebase_id": cb })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, v) = s
        .call_as(
            &t2,
            "POST",
            &format!("/v1/opencode/workers/{w2}/heartbeat"),
            Some(json!({ "codebases": [cb] })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");

    // Priority first, then oldest first.
    let low = task(&s, &cb, "low", 0).await;
    let high = task(&s, &cb, "high", 5).await;
    let (_, listed) = s.get("/v1/opencode/tasks?status=pending").await;
    let order: Vec<&str> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec![high.as_str(), low.as_str()]);
    let mut all: HashSet<String> = HashSet::from([low, high]);
    for i in 0..28 {
        all.insert(task(&s, &cb, &format!("t{i}"), i % 3).await);
    }

    // Two claimers of worker one claim as fast as they can, at the same time.
    let claimer = |token: String, id: String| {
        let s = &s;
        async move {
            let mut got = Vec::new();
            while let Some(t) = claim(s, &token, &id).await {
                assert_eq!(t["worker_id"], id.as_str());
                assert_eq!(t["status"], "running");
                got.push(t["id"].as_str().unwrap().to_string());
            }
            got
        }
    };
    let (a, b) = tokio::join!(
        claimer(t1.clone(), w1.clone()),
        claimer(t1.clone(), w1.clone())
    );
    assert!(a.len() >= 3, "the first claimer got work: {a:?} {b:?}");
    let a_set: HashSet<String> = a.iter().cloned().collect();
    let b_set: HashSet<String> = b.iter().cloned().collect();
    assert_eq!(a_set.len(), a.len(), "worker one got a task twice");
    assert!(
        a_set.is_disjoint(&b_set),
        "both workers got {:?}",
        a_set.intersection(&b_set).collect::<Vec<_>>()
    );
    assert_eq!(&a_set | &b_set, all, "every task handed out once");

    // Only the holder reports; a finished task stays finished. The codebase's event stream carries a
    // worker's output and results.
    let (events, events_task) = s.collect_sse(&format!("/v1/opencode/codebases/{cb}/events"), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mine = &a[0];
    let (status, v) = set_status(
        &s,
        &t2,
        mine,
        json!({ "status": "completed", "result": "stolen" }),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another worker's task: {v}");
    let (status, v) = s
        .call_as(
            &t1,
            "POST",
            &format!("/v1/opencode/tasks/{mine}/output"),
            Some(json!({ "output": "line 1\n" })),
        )
        .await;
    assert_eq!(
        (status, v["seq"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );
    let (status, v) = set_status(
        &s,
        &t1,
        mine,
        json!({ "status": "running", "session_id": "ses_remote1" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["session_id"], "ses_remote1");
    let (status, v) = set_status(
        &s,
        &t1,
        mine,
        json!({ "status": "completed", "result": "done" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["status"], "completed");
    let (status, v) = set_status(&s, &t1, mine, json!({ "status": "running" })).await;
    assert_eq!(status, StatusCode::CONFLICT, "completed → running: {v}");
    let (status, _) = s
        .call_as(
            &t1,
            "POST",
            &format!("/v1/opencode/tasks/{mine}/output"),
            Some(json!({ "output": "late" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, out) = s.get(&format!("/v1/opencode/tasks/{mine}/output")).await;
    assert_eq!(out["outputs"][0]["output"], "line 1\n");
    let deadline = Instant::now() + Duration::from_secs(10);
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
    let output = seen.iter().find(|(_, e, _)| e == "output").unwrap();
    assert_eq!(
        (output.2["content"].as_str(), output.2["task_id"].as_str()),
        (Some("line 1\n"), Some(mine.as_str()))
    );
    let complete = seen.iter().find(|(_, e, _)| e == "complete").unwrap();
    assert_eq!(complete.2["summary"], "done");
    assert!(
        seen.iter().all(|(id, _, _)| id.parse::<i64>().is_ok()),
        "{seen:?}"
    );
    events_task.abort();
    // A worker's token speaks only for that worker.
    let (status, _) = set_status(
        &s,
        &t1,
        &a[1],
        json!({ "status": "failed", "worker_id": w2 }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Worker one goes silent: its running tasks go back to the queue; back again, it finishes one.
    let lost = a[1].clone();
    let t = wait_task(&s, &lost, "pending", (&w2, &t2)).await;
    assert_eq!(t["attempts"], 1);
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("stopped heartbeating"),
        "{t}"
    );
    let (status, v) = s
        .call_as(
            &t1,
            "POST",
            &format!("/v1/opencode/tasks/{lost}/output"),
            Some(json!({ "output": "too late" })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a lapsed holder is refused: {v}"
    );
    let (status, v) = set_status(&s, &t1, &lost, json!({ "status": "running" })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["task"]["attempts"], 2);
    // A report about an earlier attempt is stale.
    let (status, _) = set_status(
        &s,
        &t1,
        &lost,
        json!({ "status": "completed", "attempt": 1 }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = set_status(
        &s,
        &t1,
        &lost,
        json!({ "status": "completed", "result": "finished on return", "attempt": 2 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, t) = s.get(&format!("/v1/opencode/tasks/{lost}")).await;
    assert_eq!(
        (t["status"].as_str(), t["worker_id"].as_str()),
        (Some("completed"), Some(w1.as_str()))
    );

    // Out of attempts: a task whose second holder also goes silent fails for good.
    let again = a[2].clone();
    wait_task(&s, &again, "pending", (&w2, &t2)).await;
    let (status, _) = s
        .call_as(
            &t1,
            "POST",
            &format!("/v1/opencode/workers/{w1}/heartbeat"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = set_status(&s, &t1, &again, json!({ "status": "running" })).await;
    assert_eq!(status, StatusCode::OK);
    let t = wait_task(&s, &again, "failed", (&w2, &t2)).await;
    assert!(
        t["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{t}"
    );

    // Cancel: pending and running tasks only; the holder finds out at its next report.
    let running_b = &b[0];
    let (status, v) = s
        .post(&format!("/v1/opencode/tasks/{running_b}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = s
        .post(&format!("/v1/opencode/tasks/{running_b}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s
        .call_as(
            &t1,
            "POST",
            &format!("/v1/opencode/tasks/{running_b}/output"),
            Some(json!({ "output": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Unregistering puts the worker's running tasks back.
    let held = b[1].clone();
    let (status, v) = set_status(&s, &t1, &held, json!({ "status": "running" })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = s
        .call_as(
            &t1,
            "POST",
            &format!("/v1/opencode/workers/{w1}/unregister"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        v["requeued_tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == held.as_str()),
        "{v}"
    );
    let (_, t) = s.get(&format!("/v1/opencode/tasks/{held}")).await;
    assert_eq!(t["status"], "pending");
    let (status, v) = s
        .call_as(
            &t1,
            "POST",
            &format!("/v1/opencode/workers/{w1}/heartbeat"),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a removed worker's token is void: {v}"
    );

    let (_, stats) = s.get("/api/stats").await;
    assert_eq!(stats["berth"]["agents"]["tasks"]["completed"], 2, "{stats}");
    assert_eq!(stats["berth"]["agents"]["codebases"], 1, "{stats}");
    // The monitor saw it all.
    let (_, workers) = s.get("/v1/monitor/workers").await;
    assert_eq!(workers.as_array().unwrap().len(), 1);
    let (_, stats) = s.get("/v1/monitor/stats").await;
    assert!(stats["total_messages"].as_i64().unwrap() > 30, "{stats}");
    assert!(stats["errors"].as_i64().unwrap() >= 2, "{stats}");
    let (_, msgs) = s.get("/v1/monitor/messages?type=system&limit=5").await;
    assert_eq!(msgs.as_array().unwrap().len(), 5);
    assert!(msgs
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["type"] == "system"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_v1_api_needs_a_token_and_answers_errors_as_detail() {
    let s = queue_server().await;
    let (status, v) = s.call_as("", "GET", "/v1/opencode/codebases", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(v["detail"].is_string() && v.get("error").is_none(), "{v}");
    let (status, v) = s
        .call_as("bwt_forged", "GET", "/v1/opencode/tasks", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    let (status, v) = s.call_as("", "GET", "/health", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "healthy");

    for (method, path, body, want) in [
        (
            "GET",
            "/v1/opencode/codebases/cb_nope",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v1/opencode/tasks/nope",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v1/opencode/tasks?status=weird",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/v1/monitor/messages?type=weird",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/opencode/codebases/cb_nope/trigger",
            Some(json!({ "prompt": "x" })),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "x", "path": "relative/path" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "x", "path": "/etc" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "x", "path": "/no/such/dir" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "x", "path": "/srv/x", "worker_id": "wk_nope" })),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "", "path": "/srv/x" })),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/opencode/workers/register",
            Some(json!({ "capabilities": [] })),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/opencode/workers/wk_nope/heartbeat",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v1/opencode/runtime/sessions/ses_nope",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/v1/opencode/runtime/sessions?limit=0",
            None,
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/v1/opencode/nope", None, StatusCode::NOT_FOUND),
    ] {
        let (status, v) = s.call(method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {v}");
        assert!(
            v["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{method} {path}: {v}"
        );
    }
    let (status, v) = s.raw("POST", "/v1/opencode/codebases", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["detail"].is_string(), "{v}");

    // A worker token does not register other workers, act for another worker, or do a user's work;
    // registering itself again is the same worker, and gets no new token.
    let (w1, t1) = worker(&s, "one").await;
    let (w2, _) = worker(&s, "two").await;
    let (status, v) = s
        .call_as(
            &t1,
            "POST",
            "/v1/opencode/workers/register",
            Some(json!({ "name": "evil", "worker_id": w2 })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    assert!(v["detail"].is_string());
    let (status, v) = s
        .call_as(
            &t1,
            "POST",
            "/v1/opencode/workers/register",
            Some(json!({ "name": "one again" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["worker_id"].as_str(), &v["token"]),
        (Some(w1.as_str()), &Value::Null),
        "{v}"
    );
    let (_, cb) = s
        .call_as(
            &t1,
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "mine", "path": "/srv/mine" })),
        )
        .await;
    let cb = cb["codebase"]["id"].as_str().unwrap().to_string();
    for (method, path) in [
        ("POST", format!("/v1/opencode/codebases/{cb}/trigger")),
        ("POST", format!("/v1/opencode/codebases/{cb}/tasks")),
        ("DELETE", format!("/v1/opencode/codebases/{cb}")),
    ] {
        let (status, v) = s
            .call_as(
                &t1,
                method,
                &path,
                Some(json!({ "prompt": "x", "title": "x" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {v}");
    }
    let (status, _) = s
        .call_as(
            &t1,
            "POST",
            &format!("/v1/opencode/workers/{w2}/claim"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Two registrations of one directory at once: one codebase, both answered.
    let body = json!({ "name": "twin", "path": "/srv/twin", "worker_id": w2 });
    let ((s1, v1), (s2, v2)) = tokio::join!(
        s.post("/v1/opencode/codebases", body.clone()),
        s.post("/v1/opencode/codebases", body.clone())
    );
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{v1} {v2}");
    assert_eq!(v1["codebase"]["id"], v2["codebase"]["id"]);
    // Worker tokens are not for /api.
    let (status, _) = s.call_as(&t1, "GET", "/api/workspaces", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Tokens are never listed; only their hashes are stored.
    let (_, workers) = s.get("/v1/opencode/workers").await;
    assert!(!workers.to_string().contains(&t1));
    assert_eq!(workers.as_array().unwrap().len(), 2);
    let db = std::fs::read(s.data_dir.join("berth.db")).unwrap();
    let wal = std::fs::read(s.data_dir.join("berth.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(t1.len()).any(|w| w == t1.as_bytes()),
            "plaintext worker token in the store"
        );
    }
    let _ = w1;
}
