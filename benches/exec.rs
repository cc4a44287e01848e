//! `make bench`: berth's exec round trip (through the container's resident agent) against the Docker
//! Engine's own exec on the same container; streamed output (berth's process API over SSE) against the
//! engine's attached exec; a cached workspace create-to-ready against plain volume + container create +
//! start with the same limits (with and without a network of its own); a warm pool claim to the first
//! command against the engine's exec on a running container; E2B's SDK on both; and a worker's
//! claim-and-finish of a queued task against berth's cheapest authenticated round trip, measured in one
//! run. Prints ratios; asserts nothing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::container::{Config, CreateContainerOptions, RemoveContainerOptions};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures::StreamExt;
use serde_json::{json, Value};

const EXECS: usize = 200;
const BUILDS: usize = 5;
const TASKS: usize = 300;

struct Berth {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Berth {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let text = req.send().await.unwrap().text().await.unwrap();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A template-less workspace, built: what an E2B `base` sandbox is.
    async fn create_built(&self, name: &str) -> String {
        let ws = self
            .call(
                reqwest::Method::POST,
                "/api/workspaces",
                Some(json!({ "name": name })),
            )
            .await;
        let id = ws["id"].as_str().expect("created").to_string();
        self.call(
            reqwest::Method::POST,
            &format!("/api/workspaces/{id}/build"),
            Some(json!({})),
        )
        .await;
        self.wait_ready(&id).await;
        id
    }

    /// `true` through `POST /exec`, which must succeed.
    async fn exec_true(&self, id: &str) {
        let r = self
            .call(
                reqwest::Method::POST,
                &format!("/api/workspaces/{id}/exec"),
                Some(json!({ "command": "true" })),
            )
            .await;
        assert_eq!(r["exit_code"], 0, "{r}");
    }

    async fn delete(&self, id: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/api/workspaces/{id}"),
            None,
        )
        .await;
    }

    /// A new API token's secret (an E2B API key).
    async fn api_token(&self, name: &str) -> String {
        self.call(
            reqwest::Method::POST,
            "/api/auth/tokens",
            Some(json!({ "name": name })),
        )
        .await["token"]
            .as_str()
            .expect("a token")
            .to_string()
    }

    /// Until the warm pool has a started container.
    async fn pool_ready(&self) {
        loop {
            let text = self
                .http
                .get(format!("{}/metrics", self.url))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.lines().any(|l| l == "berth_pool_ready 1") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_ready(&self, id: &str) {
        loop {
            let w = self
                .call(reqwest::Method::GET, &format!("/api/workspaces/{id}"), None)
                .await;
            match w["status"].as_str() {
                Some("ready") => return,
                Some("building") => tokio::time::sleep(Duration::from_millis(5)).await,
                _ => panic!("build failed: {w}"),
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p90) = (percentile(&samples, 0.5), percentile(&samples, 0.9));
    println!(
        "{name:<44} p50 {:>8.2} ms   p90 {:>8.2} ms",
        p50.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3
    );
    (p50, p90)
}

async fn engine_exec(docker: &Docker, container: &str) {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec!["bash", "-c", "true"]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.unwrap()
    {
        while output.next().await.is_some() {}
    }
    // A client needs the exit code too, as berth returns it.
    assert_eq!(
        docker.inspect_exec(&exec.id).await.unwrap().exit_code,
        Some(0)
    );
}

/// Starts a berth on a fresh data dir (with `pool` warm containers) and logs in as its admin.
async fn start_berth(pool: usize) -> (std::process::Child, Berth, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("BERTH_PASSWORD", "bench-password")
        .env("BERTH_PULL_BASE_IMAGES", "false")
        .env("BERTH_LOG", "warn")
        .env("BERTH_POOL_SIZE", pool.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start berth");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("berth exited").unwrap();
        if let Some(u) = line.strip_prefix("berth listening on ") {
            break u.to_string();
        }
    };
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{url}/api/auth/login"))
        .json(&json!({ "password": "bench-password" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let berth = Berth {
        url,
        token: login["token"].as_str().unwrap().to_string(),
        http,
    };
    (child, berth, data)
}

/// Stops a berth the way an operator does (SIGTERM), so it removes its warm pool.
fn stop_berth(mut child: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::main]
async fn main() {
    let (child, berth, _data) = start_berth(0).await;
    let docker = Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();

    println!(
        "exec round trip, {EXECS} sequential execs of `true` on one debian-bookworm container"
    );
    let id = berth.create_built("bench-exec").await;
    let container = format!("berth-ws-{id}");
    for _ in 0..10 {
        engine_exec(&docker, &container).await;
        berth.exec_true(&id).await;
    }
    // Interleaved, so drift on the machine hits both alike.
    let (mut engine, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..EXECS {
        let t = Instant::now();
        engine_exec(&docker, &container).await;
        engine.push(t.elapsed());
        let t = Instant::now();
        berth.exec_true(&id).await;
        ours.push(t.elapsed());
    }
    let (e50, e90) = report("Docker Engine exec (create+start+inspect)", engine);
    let (b50, b90) = report("berth POST /exec (resident agent)", ours);
    println!(
        "berth / engine: p50 {:.3}  p90 {:.3}   (aim: 0.15 or lower)",
        b50.as_secs_f64() / e50.as_secs_f64(),
        b90.as_secs_f64() / e90.as_secs_f64(),
    );
    streams(&berth, &docker, &id, &container).await;
    berth.delete(&id).await;

    create(&berth, &docker).await;
    queue(&berth).await;
    stop_berth(child);

    let (child, warm, _warm_data) = start_berth(1).await;
    claim(&warm, &docker).await;
    stop_berth(child);
}

/// The engine's attached exec of `command`, read to its end; how many bytes came.
async fn engine_stream(docker: &Docker, container: &str, command: &str) -> usize {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec!["sh", "-c", command]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut bytes = 0;
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.unwrap()
    {
        while let Some(Ok(chunk)) = output.next().await {
            bytes += chunk.into_bytes().len();
        }
    }
    bytes
}

/// berth's process API: start `command`, read its output's SSE to the `exit` event; how many bytes of
/// events came.
async fn berth_stream(berth: &Berth, id: &str, command: &str) -> usize {
    let p = berth
        .call(
            reqwest::Method::POST,
            &format!("/api/workspaces/{id}/processes"),
            Some(json!({ "command": command })),
        )
        .await;
    let pid = p["id"].as_u64().expect("a process");
    let mut body = berth
        .http
        .get(format!(
            "{}/api/workspaces/{id}/processes/{pid}/output",
            berth.url
        ))
        .bearer_auth(&berth.token)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let (mut bytes, mut tail) = (0, Vec::new());
    while let Some(Ok(chunk)) = body.next().await {
        bytes += chunk.len();
        // The end may straddle two chunks.
        tail.extend_from_slice(&chunk);
        if tail.windows(11).any(|w| w == b"event: exit") {
            break;
        }
        tail = tail.split_off(tail.len().saturating_sub(10));
    }
    bytes
}

/// Streamed output, berth's process API (SSE) against the engine's attached exec on the same container:
/// the time to a short command's whole output, and the rate of a long one.
async fn streams(berth: &Berth, docker: &Docker, id: &str, container: &str) {
    const RUNS: usize = 30;
    const BIG: &str = "seq 1 2000000";
    println!("\nstreamed output, {RUNS} runs of `echo hi` and 5 of `{BIG}` (14.8 MB)");
    let (mut engine, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        engine_stream(docker, container, "echo hi").await;
        engine.push(t.elapsed());
        let t = Instant::now();
        berth_stream(berth, id, "echo hi").await;
        ours.push(t.elapsed());
    }
    let (e50, _) = report("engine attached exec, start to end", engine);
    let (b50, _) = report("berth process + SSE output, start to end", ours);
    println!(
        "berth / engine: p50 {:.2}",
        b50.as_secs_f64() / e50.as_secs_f64()
    );
    let (mut engine, mut ours) = (Vec::new(), Vec::new());
    let (mut engine_bytes, mut our_bytes) = (0, 0);
    for _ in 0..5 {
        let t = Instant::now();
        engine_bytes = engine_stream(docker, container, BIG).await;
        engine.push(t.elapsed());
        let t = Instant::now();
        our_bytes = berth_stream(berth, id, BIG).await;
        ours.push(t.elapsed());
    }
    let (e50, _) = report("engine attached exec, 14.8 MB", engine);
    let (b50, _) = report("berth process + SSE output, 14.8 MB", ours);
    println!(
        "rate: engine {:.0} MB/s of output, berth {:.0} MB/s of output ({:.0} MB/s of SSE, which carries each chunk as text and base64)   berth / engine time: p50 {:.2}",
        engine_bytes as f64 / e50.as_secs_f64() / 1e6,
        engine_bytes as f64 / b50.as_secs_f64() / 1e6,
        our_bytes as f64 / b50.as_secs_f64() / 1e6,
        b50.as_secs_f64() / e50.as_secs_f64()
    );
}

/// The limits berth gives a workspace that sets none (its defaults on this host), for the references.
fn default_limits() -> bollard::models::HostConfig {
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    bollard::models::HostConfig {
        memory: Some(4096 << 20),
        memory_swap: Some(4096 << 20),
        nano_cpus: Some(((cores / 2.0).clamp(0.5, 2.0) * 1e9) as i64),
        pids_limit: Some(2048),
        init: Some(true),
        ..Default::default()
    }
}

/// A plain volume + container create + start with berth's default limits, optionally on a network of
/// its own (what berth gives every bridge workspace); returns what to remove.
async fn plain_create(docker: &Docker, name: &str, own_network: bool) -> Duration {
    use bollard::network::CreateNetworkOptions;
    use bollard::volume::CreateVolumeOptions;
    let t = Instant::now();
    docker
        .create_volume(CreateVolumeOptions {
            name: name.to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    if own_network {
        docker
            .create_network(CreateNetworkOptions {
                name: name.to_string(),
                driver: "bridge".to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut host = default_limits();
    host.binds = Some(vec![format!("{name}:/workspace")]);
    host.network_mode = own_network.then(|| name.to_string());
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: name.to_string(),
                platform: None,
            }),
            Config {
                image: Some("debian:bookworm".to_string()),
                cmd: Some(vec!["sleep".to_string(), "infinity".to_string()]),
                host_config: Some(host),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker.start_container::<String>(name, None).await.unwrap();
    let took = t.elapsed();
    docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    if own_network {
        docker.remove_network(name).await.unwrap();
    }
    docker.remove_volume(name, None).await.unwrap();
    took
}

/// Cached create-to-ready with no warm pool: berth's template-less build (shared image cached; volume,
/// own network, container, agent) against plain creates with the same limits, interleaved.
async fn create(berth: &Berth, docker: &Docker) {
    println!("\ncreate to ready (image cached, no warm pool), {BUILDS} runs each");
    let (mut plain, mut networked, mut ours, mut first) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..BUILDS {
        let name = format!("berth-bench-plain-{}-{i}", std::process::id());
        plain.push(plain_create(docker, &name, false).await);
        networked.push(plain_create(docker, &name, true).await);
        let t = Instant::now();
        let id = berth.create_built(&format!("bench-build-{i}")).await;
        ours.push(t.elapsed());
        berth.exec_true(&id).await;
        first.push(t.elapsed());
        berth.delete(&id).await;
    }
    let (p50, _) = report("plain volume + create + start", plain);
    let (n50, _) = report("the same + a network of its own", networked);
    let (o50, _) = report("berth workspace create-to-ready", ours);
    println!(
        "berth / plain: p50 {:.2} (aim: 1.2)   berth / plain with own network: p50 {:.2}",
        o50.as_secs_f64() / p50.as_secs_f64(),
        o50.as_secs_f64() / n50.as_secs_f64()
    );
    let (f50, _) = report("berth API create + build + first exec", first);
    let s50 = e2b_sdk(berth, "E2B SDK Sandbox.create + commands.run", None).await;
    println!(
        "E2B SDK / berth API, create to first command: p50 {:.2}",
        s50.as_secs_f64() / f50.as_secs_f64()
    );
}

/// A warm claim to the first command: a sandbox created through `/e2b` (answered once ready) and an
/// exec in it, against the engine's own exec on a running container.
async fn claim(berth: &Berth, docker: &Docker) {
    println!("\nwarm pool (BERTH_POOL_SIZE=1): create to first command, {BUILDS} runs each");
    // Built, not created from a template: a build of an existing workspace claims nothing.
    let reference_id = berth.create_built("bench-reference").await;
    let reference = &format!("berth-ws-{reference_id}");
    let (mut engine, mut ours) = (Vec::new(), Vec::new());
    let key = berth.api_token("bench-claim").await;
    for _ in 0..BUILDS {
        let t = Instant::now();
        engine_exec(docker, reference).await;
        engine.push(t.elapsed());
        berth.pool_ready().await;
        let t = Instant::now();
        let sandbox: Value = berth
            .http
            .post(format!("{}/e2b/sandboxes", berth.url))
            .header("X-API-Key", &key)
            .json(&json!({ "templateID": "base" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = sandbox["sandboxID"]
            .as_str()
            .expect("a sandbox")
            .to_string();
        berth.exec_true(&id).await;
        ours.push(t.elapsed());
        berth.delete(&id).await;
    }
    berth.delete(&reference_id).await;
    let (e50, _) = report("Docker Engine exec on a running container", engine);
    let (c50, _) = report("berth claim + first exec", ours);
    println!(
        "claim / engine exec: p50 {:.2}   (aim: claim + first command 100 ms or less: {:.0} ms)",
        c50.as_secs_f64() / e50.as_secs_f64(),
        c50.as_secs_f64() * 1e3
    );
    let s50 = e2b_sdk(
        berth,
        "E2B SDK Sandbox.create + commands.run (warm)",
        Some(&format!("{}/metrics", berth.url)),
    )
    .await;
    println!(
        "E2B SDK / berth API, claim to first command: p50 {:.2}",
        s50.as_secs_f64() / c50.as_secs_f64()
    );
}

/// Create-to-first-command through E2B's Python SDK, each sandbox killed after; with `metrics`, each
/// create waits first until the warm pool has a container again.
async fn e2b_sdk(berth: &Berth, label: &str, metrics: Option<&str>) -> Duration {
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/e2b.sh"))
        .output()
        .expect("scripts/e2b.sh");
    let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let token = berth.api_token("bench-e2b").await;
    let wait = match metrics {
        Some(url) => format!(
            "    while b'berth_pool_ready 1' not in urllib.request.urlopen(urllib.request.Request({url:?}, headers={{'Authorization': 'Bearer ' + os.environ['E2B_API_KEY']}})).read(): time.sleep(0.02)\n"
        ),
        None => String::new(),
    };
    let script = format!(
        "import os, time, urllib.request\nfrom e2b import Sandbox\nfor _ in range({BUILDS}):\n{wait}    t = time.perf_counter()\n    s = Sandbox.create(timeout=60)\n    s.commands.run('true')\n    print((time.perf_counter() - t) * 1000, flush=True)\n    s.kill()\n"
    );
    let run = Command::new(&python)
        .args(["-c", &script])
        .env("E2B_API_KEY", &token)
        .env("E2B_API_URL", format!("{}/e2b", berth.url))
        .env("E2B_SANDBOX_URL", format!("{}/e2b", berth.url))
        .output()
        .expect("run the e2b SDK");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let sdk: Vec<Duration> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64(ms / 1e3))
        .collect();
    report(label, sdk).0
}

/// A worker takes a queued task and reports it done (two requests, each a conditional write), against
/// two authenticated reads of the task list's first page (the HTTP and auth floor), interleaved.
async fn queue(berth: &Berth) {
    use reqwest::Method;
    println!("\ntask queue, {TASKS} tasks claimed and finished by one worker");
    let reg = berth
        .call(
            Method::POST,
            "/v1/opencode/workers/register",
            Some(json!({ "name": "bench-worker" })),
        )
        .await;
    let worker = reg["worker_id"].as_str().unwrap().to_string();
    let cb = berth
        .call(
            Method::POST,
            "/v1/opencode/codebases",
            Some(json!({ "name": "bench", "path": "/srv/bench", "worker_id": worker })),
        )
        .await;
    let cb = cb["codebase"]["id"].as_str().unwrap().to_string();
    for i in 0..TASKS {
        berth
            .call(
                Method::POST,
                &format!("/v1/opencode/codebases/{cb}/tasks"),
                Some(json!({ "title": format!("t{i}"), "prompt": "x", "priority": i % 5 })),
            )
            .await;
    }
    let worker_call = |method: Method, path: String, body: Option<Value>| {
        let w = Berth {
            url: berth.url.clone(),
            token: reg["token"].as_str().unwrap().to_string(),
            http: berth.http.clone(),
        };
        async move { w.call(method, &path, body).await }
    };
    let (mut floor, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..TASKS {
        let t = Instant::now();
        berth.call(Method::GET, "/v1/opencode/workers", None).await;
        berth.call(Method::GET, "/v1/opencode/workers", None).await;
        floor.push(t.elapsed());
        let t = Instant::now();
        let claimed = worker_call(
            Method::POST,
            format!("/v1/opencode/workers/{worker}/claim"),
            None,
        )
        .await;
        let task = claimed["task"]["id"].as_str().expect("a task").to_string();
        let done = worker_call(
            Method::PUT,
            format!("/v1/opencode/tasks/{task}/status"),
            Some(json!({ "status": "completed", "result": "ok" })),
        )
        .await;
        ours.push(t.elapsed());
        assert_eq!(done["task"]["status"], "completed", "{done}");
    }
    let (f50, f90) = report("two authenticated reads (floor)", floor);
    let (q50, q90) = report("claim + report completed", ours);
    println!(
        "queue / floor: p50 {:.2}  p90 {:.2}",
        q50.as_secs_f64() / f50.as_secs_f64(),
        q90.as_secs_f64() / f90.as_secs_f64()
    );
}
