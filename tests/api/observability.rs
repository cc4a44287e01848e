//! What operators watch: `/metrics` as Prometheus text, JSON log lines, the audit log.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{json, Value};

use std::time::Duration;

use crate::harness::{eventually, Options, Server};

/// Prometheus text as `"name{labels}" -> value`; panics on a line that is not a sample or a comment.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        assert!(key.starts_with("berth_"), "unprefixed metric: {line}");
        out.insert(key.to_string(), value);
    }
    out
}

async fn scrape(s: &Server, token: &str) -> (StatusCode, String) {
    let resp = s
        .client()
        .get(format!("{}/metrics", s.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

#[tokio::test]
async fn metrics_count_requests_and_read_the_store() {
    let s = Server::start_with(Options {
        env: vec![("BERTH_METRICS_TOKEN".into(), "scrape-me-please".into())],
        ..Default::default()
    })
    .await;
    let (status, _) = s.get("/api/workspaces").await;
    assert_eq!(status, StatusCode::OK);
    s.create(json!({ "name": "counted" })).await;
    let (status, _) = s.get("/api/workspaces/not-a-workspace").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Methods outside the standard ones share one label.
    for m in ["FOO1", "FOO2"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        s.client()
            .request(method, format!("{}/x", s.url))
            .send()
            .await
            .unwrap();
    }

    let resp = s
        .client()
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = scrape(&s, "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for token in [s.token.as_str(), "scrape-me-please"] {
        let (status, text) = scrape(&s, token).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let m = samples(&text);
        let get = |k: &str| {
            m.get(k)
                .copied()
                .unwrap_or_else(|| panic!("no {k} in\n{text}"))
        };
        assert!(
            get(r#"berth_http_requests_total{method="GET",route="/api/workspaces",status="200"}"#)
                >= 1.0
        );
        assert!(
            get(
                r#"berth_http_requests_total{method="GET",route="/api/workspaces/{id}",status="404"}"#
            ) >= 1.0
        );
        assert!(
            get(
                r#"berth_http_request_duration_seconds_count{method="POST",route="/api/workspaces"}"#
            ) >= 1.0
        );
        assert_eq!(get(r#"berth_workspaces{status="pending"}"#), 1.0);
        assert_eq!(get(r#"berth_tasks{status="pending"}"#), 0.0);
        assert_eq!(get("berth_sse_subscribers"), 0.0);
        assert_eq!(get("berth_agent_servers"), 0.0);
        assert!(!text.contains("FOO1"), "{text}");
        assert_eq!(
            get(r#"berth_http_requests_total{method="other",route="unmatched",status="404"}"#),
            2.0
        );
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_each_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("berth.log");
    let s = Server::start_with(Options {
        env: vec![
            ("BERTH_LOG_FORMAT".into(), "json".into()),
            ("BERTH_LOG".into(), "berth=info".into()),
        ],
        log_to: Some(log.clone()),
        ..Default::default()
    })
    .await;
    let (status, _) = s.get("/api/workspaces").await;
    assert_eq!(status, StatusCode::OK);
    let line = eventually("the request's log line", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(!text.contains(&s.token), "a token reached the log");
        assert!(!text.contains('\u{1b}'), "colours in a file");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let found = lines
            .into_iter()
            .find(|l| l["route"] == "/api/workspaces" && l["method"] == "GET");
        async move { found }
    })
    .await;
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["user"], "admin", "{line}");
    assert!(line["duration_ms"].is_number(), "{line}");
    assert!(
        line["timestamp"].is_string() && line["level"] == "INFO",
        "{line}"
    );
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_and_never_a_secret() {
    let s = Server::start().await;
    let (status, _) = s
        .post("/api/auth/login", json!({ "password": "wrong-one" }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, tok) = s.post("/api/auth/tokens", json!({ "name": "ci" })).await;
    let token = tok["token"].as_str().unwrap().to_string();
    let ws = s.create(json!({ "name": "audited" })).await;
    let id = ws["id"].as_str().unwrap();
    // Refused (not built), recorded all the same; the env value is never.
    let (status, _) = s
        .exec(
            id,
            json!({ "command": "echo $SECRET", "env": { "SECRET": "value-never-logged" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, v) = s.get("/api/audit").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let text = v.to_string();
    assert!(
        !text.contains("value-never-logged") && !text.contains(&token),
        "{v}"
    );
    let entries = v["entries"].as_array().unwrap();
    let find = |action: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {v}"))
    };
    assert!(entries
        .iter()
        .any(|e| e["action"] == "login" && e["outcome"] == "ok" && e["actor"] == "admin"));
    assert!(entries
        .iter()
        .any(|e| e["action"] == "login" && e["outcome"] == "failed" && e["client"] == "127.0.0.1"));
    assert_eq!(find("token.create")["actor"], "admin");
    assert_eq!(find("workspace.create")["target"], id);
    let exec = find("workspace.exec");
    assert_eq!(
        (exec["outcome"].as_str(), exec["detail"]["command"].as_str()),
        (Some("failed"), Some("echo $SECRET"))
    );
    assert_eq!(find("workspace.delete")["target"], id);
    // Newest first, and filtered.
    assert_eq!(entries[0]["action"], "workspace.delete");
    let (_, v) = s.get("/api/audit?action=workspace.&limit=10").await;
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["workspace.delete", "workspace.exec", "workspace.create"]
    );
    let (status, _) = s.get("/api/audit?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
