//! E2B's SDK (PyPI `e2b`, pinned, installed by `scripts/e2b.sh`) runs its documented flows against berth:
//! the SDK's own calls, unchanged, with berth's `/e2b` as its API and sandbox URL.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Server;

/// The virtualenv's python with the pinned SDK, installed once per checkout.
fn e2b_python() -> String {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/e2b.sh"))
        .output()
        .expect("run scripts/e2b.sh");
    assert!(
        out.status.success(),
        "scripts/e2b.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_e2b_sdk_runs_its_documented_flows_on_berth() {
    let s = Server::start().await;
    let (status, tok) = s.post("/api/auth/tokens", json!({ "name": "e2b" })).await;
    assert_eq!(status, StatusCode::CREATED, "{tok}");
    let key = tok["token"].as_str().unwrap().to_string();
    let python = e2b_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2b/flows.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .env("E2B_API_KEY", &key)
        .env("E2B_API_URL", format!("{}/e2b", s.url))
        .env("E2B_SANDBOX_URL", format!("{}/e2b", s.url))
        .env_remove("E2B_DOMAIN")
        .env_remove("E2B_DEBUG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "the SDK's flows failed:\n{stdout}\n{stderr}"
    );
    // The sandboxes were the user's workspaces; all of them are gone now.
    let (_, list) = s.get("/api/workspaces").await;
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    s.assert_no_engine_objects().await;
}

/// The directory holding the pinned npm SDK's node_modules, installed once per checkout.
fn e2b_js_dir() -> String {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/e2b-js.sh"))
        .output()
        .expect("run scripts/e2b-js.sh");
    assert!(
        out.status.success(),
        "scripts/e2b-js.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_e2b_js_sdk_runs_its_documented_flows_on_berth() {
    let s = Server::start().await;
    let (status, tok) = s
        .post("/api/auth/tokens", json!({ "name": "e2b-js" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tok}");
    let dir = e2b_js_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2b/flows.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("E2B_JS_DIR", &dir)
        .env("E2B_API_KEY", tok["token"].as_str().unwrap())
        .env("E2B_API_URL", format!("{}/e2b", s.url))
        .env("E2B_SANDBOX_URL", format!("{}/e2b", s.url))
        .env_remove("E2B_DOMAIN")
        .env_remove("E2B_DEBUG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "the JS SDK's flows failed:\n{stdout}\n{stderr}"
    );
    let (_, list) = s.get("/api/workspaces").await;
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    s.assert_no_engine_objects().await;
}
