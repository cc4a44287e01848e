//! The `berth` client commands, run as a user would (a subprocess with its own config dir) against
//! the real server: login, create with progress to completion, exec's streams and exit codes, ls, logs
//! -f, tokens, rm, logout, and one clear line for each failure.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{Server, PASSWORD};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `berth ARGS` against `url`, with `home` as its config dir and `stdin` fed in.
fn berth(url: &str, home: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("BERTH_URL", url)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("BERTH_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "berth {args:?} panicked: {}",
        run.stderr
    );
    run
}

/// A failure is one line on stderr naming the server's code, and a non-zero exit.
fn one_line_error(r: &Run, code: &str) {
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with("berth: ") && r.stderr.contains(code),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn the_cli_drives_a_workspace_from_login_to_removal() {
    let s = Server::start().await;
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| berth(&s.url, home.path(), args, "", &[]);

    // Not logged in yet; then logged in, the token kept for the user alone.
    one_line_error(&run(&["ws", "ls"]), "berth login");
    let r = berth(
        &s.url,
        home.path(),
        &["login"],
        &format!("{PASSWORD}\n"),
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("as admin"), "{}", r.stdout);
    let creds = home.path().join("berth/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let r = run(&["ws", "ls", "--json"]);
    assert_eq!((r.code, r.stdout.trim()), (0, "[]"), "{}", r.stderr);

    // Create follows the build to the end: the log as it grows (a line written in two parts shows
    // whole, once), then the verdict.
    let script = home.path().join("init.sh");
    std::fs::write(&script, "printf 'part1-'; sleep 1; echo part2\n").unwrap();
    let r = run(&[
        "ws",
        "create",
        "cli-ws",
        "--template",
        "debian",
        "--env",
        "GREETING=hi",
        "--init-script",
        script.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.stderr.matches("part1-part2").count(), 1, "{}", r.stderr);
    assert_eq!(r.stderr.matches("== berth: workspace ready").count(), 1);
    assert!(
        r.stderr.contains("== berth: workspace ready"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("workspace cli-ws is ready"),
        "{}",
        r.stdout
    );
    let r = run(&["ws", "ls"]);
    assert!(
        r.stdout.lines().next().unwrap().starts_with("NAME") && r.stdout.contains("cli-ws"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("ready"), "{}", r.stdout);

    // Exec: the command's streams to ours, its exit code as ours; arguments stay words.
    let r = run(&[
        "exec",
        "cli-ws",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (7, "out\n", "err\n")
    );
    let r = run(&["exec", "cli-ws", "--", "echo", "a  b", "$GREETING"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "a  b $GREETING\n"));
    let r = run(&[
        "exec",
        "cli-ws",
        "--cwd",
        "/tmp",
        "-e",
        "X=1",
        "--",
        "echo $X $PWD $GREETING",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "1 /tmp hi\n"),
        "{}",
        r.stderr
    );
    let r = run(&["exec", "cli-ws", "--timeout", "1", "--", "sleep 30"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("timed out"), "{}", r.stderr);
    // Our stdin to the command with -i, through the workspace's resident agent.
    let r = berth(
        &s.url,
        home.path(),
        &["exec", "-i", "cli-ws", "--", "tr a-z A-Z; echo end"],
        "piped in\nand more\n",
        &[],
    );
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "PIPED IN\nAND MORE\nend\n"),
        "{}",
        r.stderr
    );
    // The terminal, fed from a pipe: the shell runs what it reads and its exit code is ours.
    let r = berth(
        &s.url,
        home.path(),
        &["shell", "cli-ws"],
        "echo in-the-shell-$((2 * 21))\nexit 5\n",
        &[],
    );
    assert_eq!(r.code, 5, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("in-the-shell-42"), "{}", r.stdout);
    // cp both ways, bytes intact.
    let local = home.path().join("payload.bin");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &payload).unwrap();
    let r = run(&["cp", local.to_str().unwrap(), "cli-ws:copied/payload.bin"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let back = home.path().join("back.bin");
    let r = run(&[
        "cp",
        "cli-ws:/workspace/copied/payload.bin",
        back.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(&back).unwrap(), payload);
    one_line_error(
        &run(&["cp", "cli-ws:/nope", back.to_str().unwrap()]),
        "not_found",
    );

    // A rebuild followed to the end shows its own log from its first line.
    let r = run(&["ws", "build", "cli-ws", "--rebuild"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("== berth: rebuilding workspace cli-ws"),
        "{}",
        r.stderr
    );
    // A rebuild in the background, followed by logs -f until it is done.
    let r = run(&["ws", "build", "cli-ws", "--rebuild", "--no-wait"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["ws", "logs", "-f", "cli-ws"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("rebuilding workspace cli-ws"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("== berth: workspace ready"),
        "{}",
        r.stderr
    );
    let r = run(&["ws", "inspect", "cli-ws"]);
    let ws: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(ws["status"], "ready");

    // API tokens work instead of the stored login.
    let r = run(&["tokens", "create", "ci"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let token = r.stdout.trim().to_string();
    assert!(token.starts_with("berth_"), "{token}");
    let r = berth(
        &s.url,
        home.path(),
        &["ws", "ls", "--json"],
        "",
        &[("BERTH_TOKEN", token.as_str())],
    );
    assert!(r.stdout.contains("cli-ws"), "{}", r.stderr);
    // Logging out never touches BERTH_TOKEN's token (it is revoked with `tokens rm`).
    let other = tempfile::tempdir().unwrap();
    let r = berth(
        &s.url,
        other.path(),
        &["logout"],
        "",
        &[("BERTH_TOKEN", token.as_str())],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (status, _) = s.call_as(&token, "GET", "/api/auth/verify", None).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    // A worker token is for workers alone: refused on the user's own routes.
    let r = run(&["tokens", "create", "--worker", "box"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let worker_token = r.stdout.trim().to_string();
    let (status, _) = s
        .call_as(&worker_token, "GET", "/api/workspaces", None)
        .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    let (status, v) = s
        .call_as(&worker_token, "GET", "/v1/opencode/codebases", None)
        .await;
    assert_eq!(
        status,
        reqwest::StatusCode::BAD_REQUEST,
        "names no worker: {v}"
    );
    // A wrong password says so.
    let r = berth(&s.url, other.path(), &["login"], "wrong-password\n", &[]);
    one_line_error(&r, "invalid credentials");
    let r = run(&["tokens", "ls"]);
    assert!(
        r.stdout.contains("ci") && !r.stdout.contains(&token),
        "{}",
        r.stdout
    );

    // Clear one-line failures.
    one_line_error(&run(&["exec", "nope", "--", "true"]), "not_found");
    one_line_error(
        &run(&["ws", "create", "bad", "--distro", "fedora"]),
        "invalid_request",
    );
    one_line_error(
        &berth(
            &s.url,
            home.path(),
            &["ws", "ls"],
            "",
            &[("BERTH_TOKEN", "berth_forged")],
        ),
        "unauthorized",
    );
    one_line_error(
        &berth("http://127.0.0.1:9", home.path(), &["ws", "ls"], "", &[]),
        "cannot reach",
    );
    let r = run(&["cp", "a", "b"]);
    assert_ne!(r.code, 0);

    // Remove, log out: the stored token is void and forgotten.
    let r = run(&["ws", "rm", "cli-ws"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["ws", "ls", "--json"]);
    assert_eq!(r.stdout.trim(), "[]");
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    let old = stored[&s.url].as_str().unwrap().to_string();
    let r = run(&["logout"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (status, _) = s.call_as(&old, "GET", "/api/auth/verify", None).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    one_line_error(&run(&["ws", "ls"]), "berth login");
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_settings_file_in_the_data_dir_configures_the_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("berth.toml"),
        "host_workspaces = true\nBERTH_METRICS_TOKEN = \"scrape-secret-1\"\n\
         library_remote = \"https://bot:ghp-secret-2@git.example/lib.git\"\n\
         opencode_config = '{\"provider\":{\"x\":{\"options\":{\"apiKey\":\"sk-secret-3\"}}}}'\n",
    )
    .unwrap();
    let s = Server::spawn(dir.path(), &crate::harness::Options::default()).await;
    // The file allowed host workspaces; the environment would have overridden it.
    let (status, v) = s
        .post(
            "/api/workspaces",
            serde_json::json!({ "name": "h", "workspace_type": "host" }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{v}");
    let show = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["config", "show", "--data-dir"])
        .arg(dir.path())
        .env("BERTH_PASSWORD", "never-shown-pw")
        .output()
        .unwrap();
    let text = String::from_utf8(show.stdout).unwrap();
    assert!(text.contains("host_workspaces = true"), "{text}");
    assert!(text.contains("metrics_token = \"********\""), "{text}");
    for secret in [
        "scrape-secret-1",
        "never-shown-pw",
        "ghp-secret-2",
        "sk-secret-3",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("https://****@git.example/lib.git"), "{text}");
    // A key berth does not know stops it with the key's name.
    std::fs::write(dir.path().join("berth.toml"), "colour = \"red\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["config", "show", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
}
