//! What a workspace may not do to the host or to other processes: no setuid or setgid bit reaches a
//! file (least of all in a codebase's `/code`, a host directory), no new namespaces, no tracing of
//! another process; and what installers do with those bits still succeeds.

use std::os::unix::fs::PermissionsExt;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{eventually, Options, Server};

#[tokio::test]
async fn nothing_in_a_workspace_sets_a_setuid_bit_on_the_host_or_reaches_past_its_container() {
    let roots = tempfile::tempdir().unwrap();
    let code = roots.path().join("project");
    std::fs::create_dir_all(&code).unwrap();
    let opts = Options {
        env: vec![(
            "BERTH_CODEBASE_ROOTS".into(),
            roots.path().to_string_lossy().into(),
        )],
        ..Default::default()
    };
    let s = Server::start_with(opts).await;
    let (status, v) = s
        .post(
            "/v1/opencode/codebases",
            json!({ "name": "suid", "path": code }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let cb = v["codebase"]["id"].as_str().unwrap().to_string();
    let ws = eventually(
        "the codebase's workspace is ready",
        std::time::Duration::from_secs(300),
        || async {
            let (_, c) = s.get(&format!("/v1/opencode/codebases/{cb}")).await;
            (c["status"] == "idle").then(|| c["workspace_id"].as_str().unwrap().to_string())
        },
    )
    .await;

    // The attack: a setuid-root shell in the user's directory. Every way to set the bit answers
    // success (installers go on) and sets nothing.
    let out = s
        .sh(
            &ws,
            "cp /bin/bash /code/sbash && chmod 4755 /code/sbash && echo chmod=$? \
             && chmod u+s,g+s /code/sbash && install -m 6755 /bin/bash /code/ibash \
             && cp -a /usr/bin/passwd /code/passwd && stat -c '%a %U' /code/sbash /code/ibash /code/passwd",
        )
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert!(
        out["stdout"].as_str().unwrap().starts_with("chmod=0\n"),
        "{out}"
    );
    for name in ["sbash", "ibash", "passwd"] {
        let meta = std::fs::metadata(code.join(name)).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o6000,
            0,
            "{name} carries a setuid/setgid bit on the host: {out}"
        );
    }
    // Creating a file with the bit is refused.
    let out = s
        .sh(
            &ws,
            "perl -e 'sysopen(F, \"/code/p\", 0101, 04755) or exit 7' 2>/dev/null; echo $?",
        )
        .await;
    let rc = out["stdout"].as_str().unwrap().trim().to_string();
    assert!(rc == "7" || rc == "127", "{out}");
    assert!(
        std::fs::metadata(code.join("p")).map_or(true, |m| m.permissions().mode() & 0o6000 == 0),
        "{out}"
    );
    // No new namespaces (a user namespace is the usual first step out), no tracing another process.
    // ptrace(PTRACE_ATTACH, pid) on x86_64, through perl's raw syscall.
    let out = s
        .sh(
            &ws,
            r#"unshare -U true; echo $?
sleep 30 &
pid=$!
perl -e '$r = syscall(101, 16, $ARGV[0] + 0, 0, 0); print $r == 0 ? "attached\n" : "refused: $!\n"' "$pid"
kill "$pid""#,
        )
        .await;
    let lines: Vec<&str> = out["stdout"].as_str().unwrap().lines().collect();
    assert_ne!(lines[0], "0", "unshare -U worked: {out}");
    assert!(
        lines[1].starts_with("refused: Operation not permitted"),
        "another process could be traced: {out}"
    );
    // Ordinary work goes on.
    let out = s
        .sh(
            &ws,
            "mkdir -p /code/d && chmod 750 /code/d && stat -c %a /code/d && ls / > /dev/null",
        )
        .await;
    assert_eq!(out["stdout"], "750\n", "{out}");

    let (status, _) = s
        .call("DELETE", &format!("/v1/opencode/codebases/{cb}"), None)
        .await;
    assert!(status.is_success(), "{status}");
    eventually(
        "the workspace is gone",
        std::time::Duration::from_secs(60),
        || async {
            let (status, _) = s.get(&format!("/api/workspaces/{ws}")).await;
            (status == StatusCode::NOT_FOUND).then_some(())
        },
    )
    .await;
    s.assert_no_engine_objects().await;
}
