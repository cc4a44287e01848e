//! Open Agent's dashboard as a client: the calls it makes, in its shapes, and the fields it reads.
//! Each test is a contract for one screen or mechanism of the dashboard (see
//! ../shared/notes/openagent-dashboard.md).

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Options, Server};

const DASHBOARD: &str = "http://localhost:3001";

async fn preflight(s: &Server, origin: &str, path: &str) -> reqwest::Response {
    s.client()
        .request(reqwest::Method::OPTIONS, format!("{}{path}", s.url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_dashboard_finds_its_login_and_may_call_from_its_origin_only_when_allowed() {
    let s = Server::start_with(Options {
        env: vec![(
            "BERTH_CORS_ORIGINS".into(),
            format!("{DASHBOARD}, https://other.example"),
        )],
        ..Default::default()
    })
    .await;

    // The login dialog: shown because auth is required, without a username in single-password mode.
    let (status, health) = s.get("/api/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["auth_required"], true, "{health}");
    assert_eq!(health["auth_mode"], "single_tenant", "{health}");
    let resp = s
        .client()
        .post(format!("{}/api/auth/login", s.url))
        .header("origin", DASHBOARD)
        .json(&serde_json::json!({ "password": crate::harness::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        DASHBOARD,
        "the login answer is readable by the dashboard"
    );
    let login: Value = resp.json().await.unwrap();
    let exp = login["exp"].as_i64().expect("exp in unix seconds");
    assert!(exp > chrono::Utc::now().timestamp(), "{login}");

    // Its preflight is answered, with the Authorization header allowed.
    let resp = preflight(&s, DASHBOARD, "/api/control/missions").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], DASHBOARD);
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("DELETE"));
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    // Every answer carries the origin, errors too.
    let resp = s
        .client()
        .get(format!("{}/api/workspaces", s.url))
        .header("origin", DASHBOARD)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["access-control-allow-origin"], DASHBOARD);

    // Another origin gets nothing a browser would accept, and changes nothing.
    let resp = preflight(&s, "http://evil.example", "/api/control/missions").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "forbidden", "{v}");
    let resp = s
        .client()
        .get(format!("{}/api/health", s.url))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // Without BERTH_CORS_ORIGINS no browser page on another origin may call.
    let closed = Server::start().await;
    let resp = preflight(&closed, DASHBOARD, "/api/health").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_control_screens_read_the_loaded_mission_the_work_and_the_queue() {
    let s = Server::start().await;
    // Nothing loaded yet: `null`, which the dashboard expects, not an error.
    let (status, v) = s.get("/api/control/missions/current").await;
    assert_eq!((status, &v), (StatusCode::OK, &Value::Null));
    let (status, ws) = s
        .post("/api/workspaces", serde_json::json!({ "name": "dash" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    let (status, m) = s
        .post(
            "/api/control/missions",
            serde_json::json!({ "title": "from the dashboard", "workspace_id": ws["id"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{m}");
    // The chat reads the conversation from the mission itself.
    assert_eq!(m["history"], serde_json::json!([]), "{m}");
    assert_eq!(m["resumable"], false, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let (status, _) = s
        .post(
            &format!("/api/control/missions/{id}/load"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, current) = s.get("/api/control/missions/current").await;
    assert_eq!(current["id"], id.as_str(), "{current}");

    // The overview: nothing at work, nothing waiting, no subtasks.
    let (status, running) = s.get("/api/control/running").await;
    assert_eq!((status, running), (StatusCode::OK, serde_json::json!([])));
    let (status, queue) = s.get("/api/control/queue").await;
    assert_eq!((status, queue), (StatusCode::OK, serde_json::json!([])));
    let (_, progress) = s.get("/api/control/progress").await;
    assert_eq!(progress["total_subtasks"], 0, "{progress}");
    assert!(progress["current_subtask"].is_null(), "{progress}");
    let (status, v) = s.call("DELETE", "/api/control/queue", None).await;
    assert_eq!(
        (status, &v["cleared"]),
        (StatusCode::OK, &serde_json::json!(0))
    );
    let (status, v) = s.call("DELETE", "/api/control/queue/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");

    // Open Agent's statuses; anything else is refused and changes nothing.
    for st in ["blocked", "not_feasible"] {
        let (status, v) = s
            .post(
                &format!("/api/control/missions/{id}/status"),
                serde_json::json!({ "status": st }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["status"], st, "{v}");
    }
    let (status, _) = s
        .post(
            &format!("/api/control/missions/{id}/status"),
            serde_json::json!({ "status": "weird" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, v) = s.get(&format!("/api/control/missions/{id}")).await;
    assert_eq!(v["status"], "not_feasible");

    // Its new-mission dialog: one backend, OpenCode, with its agents; the nil workspace (Open
    // Agent's default) is the caller's default workspace; another backend is refused, clearly.
    let (_, backends) = s.get("/api/backends").await;
    assert_eq!(
        backends,
        serde_json::json!([{ "id": "opencode", "name": "OpenCode" }])
    );
    let (_, agents) = s.get("/api/backends/opencode/agents").await;
    assert!(
        agents
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "build"),
        "{agents}"
    );
    let (status, _) = s.get("/api/backends/claudecode/config").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = s
        .post(
            "/api/control/missions",
            serde_json::json!({ "backend": "claudecode" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("OpenCode"), "{v}");
    let (status, other) = s
        .post(
            "/api/control/missions",
            serde_json::json!({ "backend": "opencode", "workspace_id": "00000000-0000-0000-0000-000000000000" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_ne!(
        other["workspace_id"],
        "00000000-0000-0000-0000-000000000000"
    );
    let (status, _) = s
        .call(
            "DELETE",
            &format!("/api/control/missions/{}", other["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Delete answers JSON the dashboard parses.
    let (status, v) = s
        .call("DELETE", &format!("/api/control/missions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, serde_json::json!({ "ok": true, "deleted": id }));
    let (_, current) = s.get("/api/control/missions/current").await;
    assert!(current.is_null(), "{current}");
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn the_library_screens_read_and_write_items_in_the_dashboards_shapes() {
    use serde_json::json;
    let s = Server::start().await;
    // A new skill's front matter has no name: it is named by its path. Its files are its references.
    let (status, v) = s
        .call(
            "PUT",
            "/api/library/skills/demo",
            Some(json!({ "content": "---\ndescription: A demo\n---\nDo the demo.\n" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = s
        .call(
            "PUT",
            "/api/library/skills/demo/references/docs/guide.md",
            Some(json!({ "content": "# Guide\n" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, skill) = s.get("/api/library/skills/demo").await;
    assert_eq!(skill["references"], json!(["docs/guide.md"]), "{skill}");
    assert!(skill["content"].as_str().unwrap().contains("Do the demo."));
    let resp = s
        .client()
        .get(format!(
            "{}/api/library/skills/demo/references/docs/guide.md",
            s.url
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "# Guide\n", "raw text");

    // Templates are written and read as fields.
    let (status, v) = s
        .call(
            "PUT",
            "/api/library/workspace-template/dash",
            Some(
                json!({ "description": "for the dashboard", "distro": "debian-bookworm",
                          "skills": ["demo"], "env_vars": { "A": "1" }, "init_scripts": [],
                          "init_script": "echo hi", "shared_network": null }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, tpl) = s.get("/api/library/workspace-template/dash").await;
    assert_eq!(tpl["distro"], "debian-bookworm", "{tpl}");
    assert_eq!(tpl["skills"], json!(["demo"]), "{tpl}");
    assert_eq!(tpl["env_vars"]["A"], "1", "{tpl}");
    assert_eq!(tpl["init_script"], "echo hi", "{tpl}");
    let (status, v) = s
        .call(
            "PUT",
            "/api/library/workspace-template/dash",
            Some(json!({ "distro": 5 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "malformed fields: {v}");
    let (_, tpl) = s.get("/api/library/workspace-template/dash").await;
    assert_eq!(tpl["distro"], "debian-bookworm", "unchanged: {tpl}");
    // Saved from a workspace's answer, env values are the redaction marker: refused, not stored.
    let (status, v) = s
        .call(
            "PUT",
            "/api/library/workspace-template/from-ws",
            Some(json!({ "distro": "debian-bookworm", "env_vars": { "TOKEN": "********" } })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("TOKEN"), "{v}");
    let (status, _) = s.get("/api/library/workspace-template/from-ws").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Agents come with their fields; the dashboard sends them back beside the content.
    let agent =
        "---\ndescription: Reviews\nmodel: fake/fake-model\ntools:\n  bash: false\n---\nReview.\n";
    let (status, v) = s
        .call(
            "PUT",
            "/api/library/agent/reviewer",
            Some(json!({ "name": "reviewer", "content": agent, "description": null,
                          "path": "agent/reviewer.md", "model": null, "tools": {}, "permissions": {} })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, a) = s.get("/api/library/agent/reviewer").await;
    assert_eq!(a["model"], "fake/fake-model", "{a}");
    assert_eq!(a["tools"]["bash"], false, "{a}");
    assert!(a["permissions"].is_object(), "{a}");

    // MCP servers are one map, read and written whole; a bad one changes nothing.
    let (_, mcps) = s.get("/api/library/mcps").await;
    assert_eq!(mcps, json!({}));
    let fs = json!({ "type": "local", "command": ["mcp-fs", "/workspace"], "enabled": true });
    let (status, v) = s
        .call("PUT", "/api/library/mcps", Some(json!({ "fs": fs })))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = s
        .call(
            "PUT",
            "/api/library/mcps",
            Some(json!({ "fs": fs, "bad/name": {} })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, mcps) = s.get("/api/library/mcps").await;
    assert_eq!(mcps, json!({ "fs": fs }));
    let (_, one) = s.get("/api/library/mcp").await;
    assert_eq!(one[0]["name"], "fs", "the seed's listing stays: {one}");

    // What berth has no counterpart for loads empty; status says nothing is left uncommitted.
    assert_eq!(s.get("/api/library/plugins").await.1, json!({}));
    assert_eq!(s.get("/api/library/config-profile").await.1, json!([]));
    assert_eq!(
        s.get("/api/library/builtin-commands").await.1,
        json!({ "opencode": [], "claudecode": [] })
    );
    let (_, st) = s.get("/api/library/status").await;
    assert_eq!(st["modified_files"], json!([]), "{st}");
    let (status, v) = s
        .post("/api/library/commit", json!({ "message": "x" }))
        .await;
    assert_eq!((status, &v["ok"]), (StatusCode::OK, &json!(true)), "{v}");
    let (status, _) = s.get("/api/library/plugin-nope").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an unknown type is refused"
    );

    // The overview's cards.
    let (_, stats) = s.get("/api/stats").await;
    for key in [
        "total_tasks",
        "active_tasks",
        "success_rate",
        "total_cost_cents",
    ] {
        assert!(stats[key].is_number(), "{key}: {stats}");
    }
}

#[tokio::test]
async fn the_workspace_screens_send_open_agents_fields() {
    use serde_json::json;
    let s = Server::start().await;
    let (status, ws) = s
        .post(
            "/api/workspaces",
            json!({ "name": "oa", "workspace_type": "container" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    assert_eq!(
        (&ws["plugins"], &ws["shared_network"]),
        (&json!([]), &json!(false)),
        "{ws}"
    );
    let id = ws["id"].as_str().unwrap().to_string();
    // Its settings form sends every field back, Open Agent's own included.
    let (status, v) = s
        .call(
            "PUT",
            &format!("/api/workspaces/{id}"),
            Some(
                json!({ "env_vars": { "K": "v" }, "init_script": "echo hi", "skills": [],
                          "shared_network": null, "tailscale_mode": null, "config_profile": null }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["init_script"], "echo hi", "{v}");
    // What berth has no counterpart for is refused, and changes nothing.
    for body in [
        json!({ "tailscale_mode": "exit_node", "init_script": "echo no" }),
        json!({ "config_profile": "work", "init_script": "echo no" }),
        json!({ "plugins": ["x"], "init_script": "echo no" }),
    ] {
        let (status, v) = s
            .call("PUT", &format!("/api/workspaces/{id}"), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    let (_, v) = s.get(&format!("/api/workspaces/{id}")).await;
    assert_eq!(v["init_script"], "echo hi", "{v}");
    // The build screen's log reader.
    let (status, log) = s.get(&format!("/api/workspaces/{id}/init-log")).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    for key in ["exists", "total_lines", "log_path"] {
        assert!(log.get(key).is_some(), "{key}: {log}");
    }
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}
