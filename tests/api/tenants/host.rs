//! Host workspaces and host networking: off by default, admin-only; what else needs the admin role.

use reqwest::StatusCode;
use serde_json::json;

use super::*;

#[tokio::test]
async fn host_workspaces_and_host_networking_are_admin_only_and_off_by_default() {
    let t = tenants(Vec::new()).await;
    let s = &t.s;
    let alice = login(s, ALICE).await;
    let root = login(s, ROOT).await;
    for who in [&alice, &root] {
        let (status, v) = s
            .call_as(
                who,
                "POST",
                "/api/workspaces",
                Some(json!({ "name": "h", "workspace_type": "host" })),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["code"], "host_workspaces_disabled");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("BERTH_HOST_WORKSPACES"),
            "{v}"
        );
    }
    // Unknown fields are named, not dropped.
    for field in ["type", "image"] {
        let (status, v) = s
            .call_as(
                &alice,
                "POST",
                "/api/workspaces",
                Some(json!({ "name": "x", field: "y" })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{v}");
    }
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "n", "network": "host" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "big", "memory_mb": 1_000_000 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, ws) = s
        .call_as(
            &alice,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "c", "memory_mb": 512, "cpus": 0.5, "pids": 256 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    assert_eq!(
        (ws["memory_mb"].clone(), ws["pids"].clone()),
        (json!(512), json!(256))
    );
    let id = ws["id"].as_str().unwrap();
    let (status, v) = s
        .call_as(
            &alice,
            "PUT",
            &format!("/api/workspaces/{id}"),
            Some(json!({ "network": "host" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .call_as(
            &alice,
            "PUT",
            &format!("/api/workspaces/{id}"),
            Some(json!({ "colour": "red" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // Nor through a codebase's workspace.
    let dir = s.data_dir.join("codebases/alice-repo");
    std::fs::create_dir_all(&dir).unwrap();
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "r", "path": dir, "agent_config": { "network": "host" } })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (_, v) = s
        .call_as(&alice, "GET", "/v1/opencode/codebases", None)
        .await;
    assert_eq!(
        v.as_array().unwrap().len(),
        0,
        "a refused registration leaves nothing: {v}"
    );
    // Registered without it, a later registration cannot add it.
    let plain = json!({ "name": "r", "path": dir });
    let (status, v) = s
        .call_as(&alice, "POST", "/v1/opencode/codebases", Some(plain))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/v1/opencode/codebases",
            Some(json!({ "name": "r", "path": dir, "agent_config": { "network": "host" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        v["codebase"]["agent_config"].get("network").is_none(),
        "{v}"
    );
    // Nobody else mounts alice's directory: not it, not inside it, not around it.
    let bob = login(s, BOB).await;
    for path in [dir.clone(), dir.join("src"), s.data_dir.join("codebases")] {
        std::fs::create_dir_all(&path).unwrap();
        let (status, v) = s
            .call_as(
                &bob,
                "POST",
                "/v1/opencode/codebases",
                Some(json!({ "name": "x", "path": path })),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{path:?}: {v}");
    }
    // Library writes and provider keys are the admin's.
    let skill = json!({ "content": "---\nname: s\ndescription: d\n---\nbody\n" });
    let (status, v) = s
        .call_as(&alice, "PUT", "/api/library/skill/s", Some(skill.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .call_as(&root, "PUT", "/api/library/skill/s", Some(skill))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, _) = s.call_as(&alice, "GET", "/api/library/skill/s", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = s
        .call_as(
            &alice,
            "POST",
            "/api/providers/openai/auth",
            Some(json!({ "api_key": "k" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    drop(t);

    // Enabled by the operator: for admins only, and only with host fields.
    let t = tenants(vec![("BERTH_HOST_WORKSPACES".into(), "true".into())]).await;
    let s = &t.s;
    let alice = login(s, ALICE).await;
    let root = login(s, ROOT).await;
    let host = json!({ "name": "h", "workspace_type": "host" });
    let (status, v) = s
        .call_as(&alice, "POST", "/api/workspaces", Some(host.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = s
        .call_as(
            &root,
            "POST",
            "/api/workspaces",
            Some(json!({ "name": "h", "workspace_type": "host", "distro": "bookworm" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("distro"), "{v}");
    let (status, v) = s
        .call_as(&root, "POST", "/api/workspaces", Some(host))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap();
    // A mission on a host workspace is refused up front, with the reason.
    let (status, v) = s
        .call_as(
            &root,
            "POST",
            "/api/control/missions",
            Some(json!({ "workspace_id": id })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("host workspace"),
        "{v}"
    );
}
