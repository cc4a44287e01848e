//! E2B's SDK (PyPI `e2b`, pinned, installed by `scripts/e2b.sh`) runs its documented flows against berth:
//! the SDK's own calls, unchanged, with berth's `/e2b` as its API and sandbox URL.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Server;

/// Runs one of the project's install scripts (idempotent, cached under target/): what it prints.
fn install(script: &str) -> String {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs an SDK's flows script against the server with a fresh API key as `E2B_API_KEY`; it must print
/// `ok` last. Then every sandbox it made is gone, and nothing is left in the engine.
async fn run_flows(s: &mut Server, program: &str, script: &str, env: &[(&str, &str)]) {
    let (status, tok) = s.post("/api/auth/tokens", json!({ "name": "e2b" })).await;
    assert_eq!(status, StatusCode::CREATED, "{tok}");
    let out = tokio::process::Command::new(program)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .envs(env.iter().copied())
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
        "{script} failed:\n{stdout}\n{stderr}"
    );
    // The sandboxes were the user's workspaces; all of them are gone now (and a stop takes the warm
    // pool's container).
    let (_, list) = s.get("/api/workspaces").await;
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    s.terminate();
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn the_e2b_sdk_runs_its_documented_flows_on_berth() {
    let mut s = Server::start().await;
    let python = install("scripts/e2b.sh");
    run_flows(&mut s, &python, "tests/e2b/flows.py", &[]).await;
}

#[tokio::test]
async fn the_e2b_js_sdk_runs_its_documented_flows_on_berth() {
    // With a warm pool: its sandboxes are claimed started containers (each create that finds one).
    let mut s = Server::start_with(crate::harness::Options {
        env: vec![("BERTH_POOL_SIZE".into(), "1".into())],
        ..Default::default()
    })
    .await;
    let dir = install("scripts/e2b-js.sh");
    run_flows(
        &mut s,
        "node",
        "tests/e2b/flows.mjs",
        &[("E2B_JS_DIR", &dir)],
    )
    .await;
}

/// A server whose sandboxes' (and workspaces') ports are named `{port}-{id}.sbx.test`.
async fn with_domain() -> Server {
    Server::start_with(crate::harness::Options {
        env: vec![("BERTH_E2B_DOMAIN".into(), "sbx.test".into())],
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_sandbox_port_answers_through_its_headers_and_its_host_name() {
    let s = with_domain().await;
    let resp = s
        .client()
        .post(format!("{}/e2b/v2/sandboxes", s.url))
        .header("X-API-Key", &s.token)
        .json(&json!({ "templateID": "base", "timeout": 120 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let sbx: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(sbx["domain"], "sbx.test", "{sbx}");
    let id = sbx["sandboxID"].as_str().unwrap().to_string();
    // A tiny HTTP server on port 8000 inside (perl is in every Debian).
    let server = r#"perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8000,Listen=>5,ReuseAddr=>1) or die; while($c=$s->accept){$l=<$c>; print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nport 8000 got $l"; close $c}'"#;
    let (status, p) = s
        .post(
            &format!("/api/workspaces/{id}/processes"),
            json!({ "command": server }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let through_headers = || {
        s.client()
            .get(format!("{}/e2b/some/path?x=1", s.url))
            .header("E2b-Sandbox-Id", &id)
            .header("E2b-Sandbox-Port", "8000")
            .send()
    };
    let text = crate::harness::eventually(
        "the port answers",
        std::time::Duration::from_secs(20),
        || async {
            let resp = through_headers().await.ok()?;
            (resp.status() == StatusCode::OK).then_some(())?;
            resp.text().await.ok()
        },
    )
    .await;
    assert!(text.contains("port 8000 got GET /some/path?x=1 "), "{text}");
    // E2B's host names: {port}-{sandboxID}.{domain}.
    for path in ["/hello", "/"] {
        let resp = s
            .client()
            .get(format!("{}{path}", s.url))
            .header("Host", format!("8000-{id}.sbx.test"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.unwrap();
        assert!(text.contains(&format!("GET {path} ")), "{text}");
    }
    // A WebSocket to a port (a dev server's live reload): the upgrade goes through and the two
    // connections are joined (this server answers 101 and echoes lines).
    let echo = r#"perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8002,Listen=>5,ReuseAddr=>1) or die; while($c=$s->accept){$c->autoflush(1); $u=""; while(($l=<$c>) && $l ne "\r\n"){$u.=$l} print $c "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"; print $c "saw ".(($u=~/upgrade: websocket/i)?"upgrade":"none")."\n"; while($l=<$c>){print $c "echo $l"} close $c}'"#;
    let (status, p) = s
        .post(
            &format!("/api/workspaces/{id}/processes"),
            json!({ "command": echo }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let addr = s.url.trim_start_matches("http://").to_string();
    let lines = crate::harness::eventually(
        "the WebSocket port answers",
        std::time::Duration::from_secs(20),
        || {
            let (addr, id) = (addr.clone(), id.clone());
            async move {
                use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
                let tcp = tokio::net::TcpStream::connect(&addr).await.ok()?;
                let mut tcp = BufReader::new(tcp);
                let upgrade = format!(
                    "GET /live HTTP/1.1\r\nHost: 8002-{id}.sbx.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                );
                tcp.get_mut().write_all(upgrade.as_bytes()).await.ok()?;
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    tcp.read_line(&mut line).await.ok()?;
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    head.push_str(&line);
                }
                head.starts_with("HTTP/1.1 101").then_some(())?;
                tcp.get_mut().write_all(b"hello\n").await.ok()?;
                let (mut saw, mut echoed) = (String::new(), String::new());
                tcp.read_line(&mut saw).await.ok()?;
                tcp.read_line(&mut echoed).await.ok()?;
                Some((saw, echoed))
            }
        },
    )
    .await;
    assert_eq!(lines, ("saw upgrade\n".into(), "echo hello\n".into()));
    // envd's own port by host name needs the sandbox's token, as by header.
    let resp = s
        .client()
        .get(format!("{}/health", s.url))
        .header("Host", format!("49983-{id}.sbx.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = s
        .client()
        .get(format!("{}/health", s.url))
        .header("Host", format!("49983-{id}.sbx.test"))
        .header("X-Access-Token", sbx["envdAccessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // E2B's signed file URLs (download_url): the signature stands for the access token.
    let resp = s
        .client()
        .put(format!(
            "{}/api/workspaces/{id}/files?path=/home/user/signed.txt",
            s.url
        ))
        .bearer_auth(&s.token)
        .body("signed content")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let sign = |token: &str| {
        use base64::Engine as _;
        use sha2::Digest;
        let raw = format!("/home/user/signed.txt:read::{token}");
        format!(
            "v1_{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha2::Sha256::digest(raw))
        )
    };
    let url_with = |signature: String| {
        s.client()
            .get(format!(
                "{}/files?path=%2Fhome%2Fuser%2Fsigned.txt&signature={}",
                s.url,
                signature.replace('+', "%2B").replace('/', "%2F")
            ))
            .header("Host", format!("49983-{id}.sbx.test"))
            .send()
    };
    let resp = url_with(sign(sbx["envdAccessToken"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "signed content");
    let resp = url_with(sign("not-the-token")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // A port nothing listens on is a clear 502.
    let resp = s
        .client()
        .get(format!("{}/e2b/", s.url))
        .header("E2b-Sandbox-Id", &id)
        .header("E2b-Sandbox-Port", "8001")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
}

/// A berth workspace's port through the same host routing: closed to strangers, open to its owner's
/// token, and to a browser holding a preview URL (whose grant becomes a cookie of that host alone).
#[tokio::test]
async fn a_workspace_port_opens_to_its_owner_and_to_a_preview_url_only() {
    let s = with_domain().await;
    let id = s.ready_workspace("web", json!({})).await;
    // Answers with its request line and headers.
    let server = r#"perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8000,Listen=>5,ReuseAddr=>1) or die; while($c=$s->accept){$r="";while(($l=<$c>) && $l ne "\r\n"){$r.=$l} print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n$r"; close $c}'"#;
    let (status, p) = s
        .post(
            &format!("/api/workspaces/{id}/processes"),
            json!({ "command": server }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    // A browser's requests, one at a time (a redirect is looked at, not followed).
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |port: u16, path: &str, token: Option<&str>, cookie: Option<&str>| {
        let mut req = browser
            .get(format!("{}{path}", s.url))
            .header("Host", format!("{port}-{id}.sbx.test"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        req.send()
    };
    // Nobody's request is refused; the owner's token opens it (and does not reach the app).
    let resp = get(8000, "/", None, None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = get(8000, "/", Some("berth_not-a-token"), None)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let text = crate::harness::eventually(
        "the port answers its owner",
        std::time::Duration::from_secs(20),
        || async {
            let resp = get(8000, "/owner", Some(&s.token), None).await.ok()?;
            (resp.status() == StatusCode::OK).then_some(())?;
            resp.text().await.ok()
        },
    )
    .await;
    assert!(text.starts_with("GET /owner "), "{text}");
    assert!(!text.to_lowercase().contains("authorization"), "{text}");

    // A preview URL: bad asks are refused, a good one opens the port with no token.
    for bad in [json!({ "port": 0 }), json!({ "port": 8000, "ttl_secs": 0 })] {
        let (status, e) = s.post(&format!("/api/workspaces/{id}/preview"), bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    }
    let (status, preview) = s
        .post(
            &format!("/api/workspaces/{id}/preview"),
            json!({ "port": 8000, "ttl_secs": 600 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{preview}");
    let url = reqwest::Url::parse(preview["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.host_str(), Some(format!("8000-{id}.sbx.test").as_str()));
    // The browser is sent on to the same page without the grant, which it now holds as a cookie of
    // that host; the app never sees the grant.
    let resp = get(
        8000,
        &format!("/app?{}&page=2", url.query().unwrap()),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/app?page=2");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("berth_preview=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
    let grant = cookie.split(';').next().unwrap().to_string();
    let resp = get(8000, "/app?page=2", None, Some(&grant)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("GET /app?page=2 "), "{text}");
    // Then the cookie alone, with the app's own cookies passed on and berth's kept back.
    let resp = get(8000, "/asset.js", None, Some(&format!("app=1; {grant}")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(text.contains("cookie: app=1\r\n"), "{text}");
    assert!(!text.contains("berth_preview"), "{text}");
    // It opens that port only, and a forged grant opens nothing.
    let resp = get(8001, "/", None, Some(&grant)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let forged = format!("{}x", &grant[..grant.len() - 1]);
    let resp = get(8000, "/", None, Some(&forged)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Its envd port is not a workspace's to open this way.
    let resp = get(49983, "/health", Some(&s.token), None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
