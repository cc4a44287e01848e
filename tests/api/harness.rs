//! The test harness: starts the real `berth` binary on 127.0.0.1:0 with a fresh data dir, logs in, and
//! talks to it over HTTP. Every engine object the server creates carries its instance label; the guard
//! removes them all when the test ends, and `assert_no_engine_objects` fails a test that leaks.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::container::{ListContainersOptions, RemoveContainerOptions};
use bollard::image::{ListImagesOptions, RemoveImageOptions};
use bollard::volume::{ListVolumesOptions, RemoveVolumeOptions};
use bollard::Docker;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

pub const PASSWORD: &str = "test-password-1";

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    client: reqwest::Client,
    /// Printed lines that are not the listening line (e.g. a generated password).
    pub banner: Vec<String>,
}

/// SSE frames `(id, event, data)` as a client saw them.
pub type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

#[derive(Clone)]
pub struct Options {
    pub env: Vec<(String, String)>,
    pub password: Option<String>,
    /// Where the server's log (stderr) goes; the test's own stderr when `None`.
    pub log_to: Option<PathBuf>,
    /// The address to listen on; a free loopback port when `None`.
    pub listen: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            env: Vec::new(),
            password: Some(PASSWORD.to_string()),
            log_to: None,
            listen: None,
        }
    }
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().to_path_buf();
        let mut s = Self::spawn(&data_dir, &opts).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on an existing data dir (a restart).
    pub async fn spawn(data_dir: &Path, opts: &Options) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(opts.listen.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("BERTH_PASSWORD")
            .env_remove("BERTH_USERS_FILE")
            // Tests never reach a registry.
            .env("BERTH_PULL_BASE_IMAGES", "false")
            .env("BERTH_LOG", "berth=debug")
            .env("BERTH_AGENT_BIN", agent_bin())
            .stdout(Stdio::piped())
            .stderr(match &opts.log_to {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
                None => Stdio::inherit(),
            });
        if let Some(pw) = &opts.password {
            cmd.env("BERTH_PASSWORD", pw);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn berth");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let url = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("berth printed its listening line");
            if let Some(u) = line.strip_prefix("berth listening on ") {
                break u.to_string();
            }
            banner.push(line);
        };
        // Lines printed right after the listening line (the generated password).
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            banner.push(line);
        }
        let mut s = Self {
            child: Some(child),
            url,
            token: String::new(),
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            client: reqwest::Client::new(),
            banner,
        };
        if let Some(pw) = &opts.password {
            s.login(None, pw).await;
        }
        s
    }

    pub async fn login(&mut self, username: Option<&str>, password: &str) {
        let mut body = json!({ "password": password });
        if let Some(u) = username {
            body["username"] = json!(u);
        }
        let (status, v) = self.call("POST", "/api/auth/login", Some(body)).await;
        assert_eq!(status, StatusCode::OK, "login: {v}");
        self.token = v["token"].as_str().expect("token").to_string();
    }

    /// Options that restart a server where this one listened (agent servers that outlived it keep
    /// reaching its LLM gateway on berth's own port).
    pub fn same_address(&self, opts: &Options) -> Options {
        Options {
            listen: Some(self.url.trim_start_matches("http://").to_string()),
            ..opts.clone()
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// A request with another token (a worker's, or none when empty).
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(
            method.parse().expect("method"),
            format!("{}{path}", self.url),
        );
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}"))
        };
        (status, v)
    }

    /// Sends a raw body (for malformed JSON).
    pub async fn raw(&self, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.url),
            )
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("non-JSON answer {status}: {text}")),
        )
    }

    /// Collects the SSE frames of `path` (as `(id, event, data)`) in the background.
    pub fn collect_sse(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> (Seen, tokio::task::JoinHandle<()>) {
        let got: Seen = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let mut req = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let task = tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if let Some(frame) = sse_frame(&block) {
                        sink.lock().unwrap().push(frame);
                    }
                }
            }
        });
        (got, task)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(body)).await
    }

    pub async fn create(&self, body: Value) -> Value {
        let (status, v) = self.post("/api/workspaces", body).await;
        assert_eq!(status, StatusCode::CREATED, "create: {v}");
        v
    }

    /// Polls until the workspace leaves `building`/`pending` after a build started.
    pub async fn wait_built(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (status, v) = self.get(&format!("/api/workspaces/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{v}");
            if v["status"] != "building" {
                return v;
            }
            assert!(Instant::now() < deadline, "build of {id} never finished");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A container workspace from the plain debian template, built and ready.
    pub async fn ready_workspace(&self, name: &str, extra: Value) -> String {
        let mut body = json!({ "name": name, "template": "debian" });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        let created = self.create(body).await;
        let id = created["id"].as_str().expect("id").to_string();
        let ws = self.wait_built(&id).await;
        assert_eq!(ws["status"], "ready", "workspace {name}: {ws}");
        id
    }

    pub async fn exec(&self, id: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/api/workspaces/{id}/exec"), body).await
    }

    /// Exec that must succeed at the HTTP level; returns the result object.
    pub async fn sh(&self, id: &str, command: &str) -> Value {
        let (status, v) = self.exec(id, json!({ "command": command })).await;
        assert_eq!(status, StatusCode::OK, "exec {command}: {v}");
        v
    }

    /// Waits until the init log contains `needle` (e.g. a part of init has started).
    pub async fn wait_for_log(&self, id: &str, needle: &str) {
        for _ in 0..600 {
            let (_, log) = self.get(&format!("/api/workspaces/{id}/init-log")).await;
            if log["content"].as_str().unwrap_or("").contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{needle:?} never appeared in the init log of {id}");
    }

    pub fn instance(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("instance-id"))
            .expect("instance-id")
            .trim()
            .to_string()
    }

    /// SIGKILL: a crash, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server as a service manager does (SIGTERM) and waits for it; how long it took.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        started.elapsed()
    }

    /// Fails if any container, volume, network or image of this server's instance is still in the
    /// engine; while the server runs, its shared images are its build cache, not a leak (it removes
    /// those no container uses when it stops).
    pub async fn assert_no_engine_objects(&self) {
        let left = list_instance_objects(&self.instance(), self.child.is_some()).await;
        assert!(left.is_empty(), "engine objects leaked: {left:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if let Ok(instance) = std::fs::read_to_string(self.data_dir.join("instance-id")) {
            let instance = instance.trim().to_string();
            // Drop is synchronous and may run inside a runtime: clean up on a thread of its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(remove_instance_objects(&instance));
            })
            .join();
        }
    }
}

/// Whether a process with this command line runs in the container.
pub async fn process_running(container: &str, cmdline: &str) -> bool {
    let out = tokio::process::Command::new("docker")
        .args([
            "exec",
            container,
            "sh",
            "-c",
            r#"for p in /proc/[0-9]*; do tr '\0' ' ' < "$p/cmdline" 2>/dev/null; echo; done"#,
        ])
        .env("DOCKER_API_VERSION", "1.41")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().any(|l| l.trim() == cmdline)
}

/// One SSE frame as `(id, event, data)`, its data parsed as JSON (`null` if it is not); `None` for a
/// frame without an event name (a comment, a keep-alive).
pub fn sse_frame(block: &str) -> Option<(String, String, Value)> {
    let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id:") {
            id = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    (!event.is_empty()).then(|| {
        (
            id,
            event,
            serde_json::from_str(&data).unwrap_or(Value::Null),
        )
    })
}

/// Polls `check` until it answers `Some`, for at most `within`: the one way tests wait for something
/// that happens on its own time, instead of fixed sleeps.
pub async fn eventually<T, Fut>(what: &str, within: Duration, mut check: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `berth users add ARGS...` with the password on stdin (the users file named by the args, never by
/// the environment).
pub fn users_add(args: &[&str], password: &str) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["users", "add"])
        .args(args)
        .env_remove("BERTH_USERS_FILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success(), "berth users add {args:?}");
}

pub async fn docker() -> Docker {
    Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

fn instance_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("berth.instance={instance}")],
    )])
}

/// What the engine holds of an instance; `but_cache`: without its shared images (`berth-img-…`).
pub async fn list_instance_objects(instance: &str, but_cache: bool) -> Vec<String> {
    let d = docker().await;
    let mut out = Vec::new();
    for c in d
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: instance_filter(instance),
            ..Default::default()
        }))
        .await
        .unwrap()
    {
        out.push(format!("container {}", c.id.unwrap_or_default()));
    }
    for v in d
        .list_volumes(Some(ListVolumesOptions {
            filters: instance_filter(instance),
        }))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
    {
        out.push(format!("volume {}", v.name));
    }
    for i in d
        .list_images(Some(ListImagesOptions {
            filters: instance_filter(instance),
            ..Default::default()
        }))
        .await
        .unwrap()
    {
        let cache =
            !i.repo_tags.is_empty() && i.repo_tags.iter().all(|t| t.starts_with("berth-img-"));
        if !(but_cache && cache) {
            out.push(format!("image {}", i.id));
        }
    }
    for n in d
        .list_networks(Some(bollard::network::ListNetworksOptions {
            filters: instance_filter(instance),
        }))
        .await
        .unwrap()
    {
        out.push(format!("network {}", n.name.unwrap_or_default()));
    }
    out
}

async fn remove_instance_objects(instance: &str) {
    let d = docker().await;
    // Containers a test made itself (not through berth) carry `berth.test=<instance>`.
    let test_made = HashMap::from([("label".to_string(), vec![format!("berth.test={instance}")])]);
    let filters = instance_filter(instance);
    for f in [test_made, filters.clone()] {
        let list = d
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: f,
                ..Default::default()
            }))
            .await
            .unwrap_or_default();
        for c in list {
            let opts = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            let _ = d
                .remove_container(&c.id.unwrap_or_default(), Some(opts))
                .await;
        }
    }
    if let Ok(list) = d
        .list_volumes(Some(ListVolumesOptions {
            filters: filters.clone(),
        }))
        .await
    {
        for v in list.volumes.unwrap_or_default() {
            let _ = d
                .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
                .await;
        }
    }
    if let Ok(list) = d
        .list_networks(Some(bollard::network::ListNetworksOptions {
            filters: filters.clone(),
        }))
        .await
    {
        for n in list {
            let _ = d.remove_network(&n.name.unwrap_or_default()).await;
        }
    }
    if let Ok(list) = d
        .list_images(Some(ListImagesOptions {
            filters,
            ..Default::default()
        }))
        .await
    {
        for i in list {
            let _ = d
                .remove_image(
                    &i.id,
                    // Not its parents: other tests' builds run on those cached steps.
                    Some(RemoveImageOptions {
                        force: true,
                        noprune: true,
                    }),
                    None,
                )
                .await;
        }
    }
}

/// The resident agent's static binary, built by the project's script when missing (`make test` builds it
/// first; a lock keeps parallel test processes from building it twice).
pub fn agent_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/berth-agent");
    if !bin.is_file() {
        let status = Command::new("flock")
            .arg(root.join("target/agent-build.lock"))
            .args([
                "bash",
                "-c",
                "[ -f target/release/berth-agent ] || bash scripts/agent.sh",
            ])
            .current_dir(root)
            .status()
            .expect("build berth-agent");
        assert!(status.success(), "building berth-agent failed");
    }
    bin
}

/// The pinned opencode binary, provisioned once per checkout by berth's own installer.
/// The cache dir `berth opencode install` fills (for `BERTH_OPENCODE_DIR`).
pub fn opencode_dir() -> PathBuf {
    opencode_bin();
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/opencode")
}

pub fn opencode_bin() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/opencode");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["opencode", "install", "--dir"])
        .arg(&dir)
        .output()
        .expect("run berth opencode install");
    assert!(
        out.status.success(),
        "berth opencode install: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
