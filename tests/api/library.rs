//! The library: items saved over HTTP are git commits; bad items are refused with the history intact;
//! a real remote (a local bare repository changed through a second clone) syncs into every workspace that
//! uses what changed; templates from the library build.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{Options, Server};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=tester",
            "-c",
            "user.email=t@example.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn skill(name: &str, description: &str) -> String {
    format!("---\nname: {name}\ndescription: {description}\n---\n# {name}\n\n{description}\n")
}

async fn put(s: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    s.call("PUT", path, Some(body)).await
}

#[tokio::test]
async fn items_are_saved_as_commits_and_bad_input_changes_nothing() {
    let s = Server::start().await;
    let lib = s.data_dir.join("library");

    let (status, v) = put(&s, "/api/library/skill/review", json!({ "content": skill("review", "reviews code"), "files": { "references/checklist.md": "- tests" } })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["files"], json!(["references/checklist.md"]));
    for (t, name, content) in [
        ("command", "deploy", "---\ndescription: deploys\n---\nDeploy $ARGUMENTS\n"),
        ("rule", "style", "Use rustfmt.\n"),
        ("agent", "reviewer", "---\ndescription: a reviewer\nmodel: fake/model\n---\nYou review.\n"),
        ("mcp", "files", "{\"type\": \"local\", \"command\": [\"mcp-files\"]}"),
        ("init-script", "hello", "#!/bin/sh\n# says hello\necho hello from the library fragment\n"),
        ("tool", "adder", "// adds numbers\nexport default {}\n"),
        ("workspace-template", "lib-tpl", "name: lib-tpl\ndescription: from the library\ndistro: bookworm\ninit_scripts: [base, hello]\nskills: [review]\n"),
    ] {
        let (status, v) = put(&s, &format!("/api/library/{t}/{name}"), json!({ "content": content })).await;
        assert_eq!(status, StatusCode::OK, "{t}/{name}: {v}");
    }
    for (file, present) in [
        ("skill/review/SKILL.md", true),
        ("skill/review/references/checklist.md", true),
        ("command/deploy.md", true),
        ("rule/style.md", true),
        ("agent/reviewer.md", true),
        ("mcp/files.json", true),
        ("init-script/hello.sh", true),
        ("tool/adder.ts", true),
        ("workspace-template/lib-tpl.yaml", true),
    ] {
        assert_eq!(lib.join(file).is_file(), present, "{file}");
    }
    let (_, list) = s.get("/api/library/skill").await;
    assert_eq!(list[0]["name"], "review");
    assert_eq!(list[0]["description"], "reviews code");
    let (_, file) = s
        .get("/api/library/skill/review/files/references/checklist.md")
        .await;
    assert_eq!(file["content"], "- tests");
    let log = git(&lib, &["log", "--format=%an|%s"]);
    assert!(log.contains("admin|Add skill review"), "{log}");
    assert!(
        log.contains("admin|Add workspace-template lib-tpl"),
        "{log}"
    );

    let commits_before = git(&lib, &["rev-list", "--count", "HEAD"]);
    let bad: Vec<(&str, Value)> = vec![
        (
            "/api/library/skill/.hidden",
            json!({ "content": skill(".hidden", "x") }),
        ),
        (
            "/api/library/skill/a..b",
            json!({ "content": skill("a..b", "x") }),
        ),
        ("/api/library/skill/bad%2Fname", json!({ "content": "x" })),
        ("/api/library/skill/nul%00name", json!({ "content": "x" })),
        (
            &*Box::leak(format!("/api/library/skill/{}", "n".repeat(200)).into_boxed_str()),
            json!({ "content": "x" }),
        ),
        ("/api/library/widget/x", json!({ "content": "x" })),
        (
            "/api/library/skill/nofm",
            json!({ "content": "no front matter" }),
        ),
        (
            "/api/library/skill/wrongname",
            json!({ "content": skill("other", "x") }),
        ),
        (
            "/api/library/skill/badyaml",
            json!({ "content": "---\nname: [oops\n---\n" }),
        ),
        (
            "/api/library/skill/esc",
            json!({ "content": skill("esc", "x"), "files": { "../../escape.md": "x" } }),
        ),
        (
            "/api/library/skill/abs",
            json!({ "content": skill("abs", "x"), "files": { "/etc/passwd": "x" } }),
        ),
        (
            "/api/library/skill/git",
            json!({ "content": skill("git", "x"), "files": { ".git/config": "x" } }),
        ),
        ("/api/library/mcp/broken", json!({ "content": "{not json" })),
        ("/api/library/mcp/array", json!({ "content": "[1,2]" })),
        (
            "/api/library/workspace-template/t1",
            json!({ "content": "name: t1\ndistro: plan9\n" }),
        ),
        (
            "/api/library/workspace-template/t2",
            json!({ "content": "name: t2\ninit_scripts: [nope]\n" }),
        ),
        (
            "/api/library/workspace-template/t3",
            json!({ "content": "name: t3\nunknown_field: 1\n" }),
        ),
        (
            "/api/library/workspace-template/t4",
            json!({ "content": "name: other\n" }),
        ),
        (
            "/api/library/command/c",
            json!({ "content": "---\nx: [\n---\n" }),
        ),
        (
            "/api/library/command/c",
            json!({ "content": "ok", "files": { "a.md": "x" } }),
        ),
        ("/api/library/command/c", json!({ "text": "wrong field" })),
    ];
    for (path, body) in bad {
        let (status, v) = put(&s, path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {v}");
        assert!(v["error"].is_string(), "{v}");
    }
    // A symlink inside the library (as a pulled repository could have) is never followed.
    std::os::unix::fs::symlink("/etc", lib.join("skill/evil")).unwrap();
    let (status, v) = s.get("/api/library/skill/evil").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = put(
        &s,
        "/api/library/skill/evil",
        json!({ "content": skill("evil", "x") }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    std::fs::remove_file(lib.join("skill/evil")).unwrap();

    assert_eq!(
        git(&lib, &["rev-list", "--count", "HEAD"]),
        commits_before,
        "bad input made commits"
    );
    assert_eq!(
        git(&lib, &["status", "--porcelain"]),
        "",
        "bad input left files behind"
    );

    // Two saves of one item at once: both land, one after the other, and the file is one of them whole.
    let bodies = ["first", "second"].map(|d| json!({ "content": skill("review", d) }));
    let (a, b) = tokio::join!(
        put(&s, "/api/library/skill/review", bodies[0].clone()),
        put(&s, "/api/library/skill/review", bodies[1].clone())
    );
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    let on_disk = std::fs::read_to_string(lib.join("skill/review/SKILL.md")).unwrap();
    assert!(
        on_disk == skill("review", "first") || on_disk == skill("review", "second"),
        "{on_disk}"
    );
    assert_eq!(git(&lib, &["status", "--porcelain"]), "");
    let n: u32 = git(&lib, &["rev-list", "--count", "HEAD"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, commits_before.trim().parse::<u32>().unwrap() + 2);

    // Deleting.
    let (status, _) = s
        .call(
            "DELETE",
            "/api/library/skill/review/files/references/checklist.md",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.call("DELETE", "/api/library/command/deploy", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.get("/api/library/command/deploy").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.call("DELETE", "/api/library/command/deploy", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(git(&lib, &["log", "-1", "--format=%s"]).contains("Delete command deploy"));

    // A workspace may only list skills that exist.
    let (status, v) = s
        .post(
            "/api/workspaces",
            json!({ "name": "w", "skills": ["nope"] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // No remote: sync says so.
    let (status, v) = s.post("/api/library/sync", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn remote_changes_sync_into_every_workspace_that_uses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("library.git");
    let editor = tmp.path().join("editor");
    git(
        tmp.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            editor.to_str().unwrap(),
        ],
    );
    std::fs::create_dir_all(editor.join("skill/lint")).unwrap();
    std::fs::write(
        editor.join("skill/lint/SKILL.md"),
        skill("lint", "version one"),
    )
    .unwrap();
    std::fs::create_dir_all(editor.join("skill/other")).unwrap();
    std::fs::write(
        editor.join("skill/other/SKILL.md"),
        skill("other", "unrelated"),
    )
    .unwrap();
    git(&editor, &["add", "-A"]);
    git(&editor, &["commit", "-q", "-m", "two skills"]);
    git(&editor, &["push", "-q", "origin", "HEAD:main"]);

    let s = Server::start_with(Options {
        env: vec![
            ("BERTH_LIBRARY_REMOTE".into(), bare.to_string_lossy().into()),
            ("BERTH_HOST_WORKSPACES".into(), "true".into()),
        ],
        ..Default::default()
    })
    .await;
    // The library was cloned from the remote.
    let (status, st) = s.get("/api/library/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            st["branch"].as_str(),
            st["ahead"].as_u64(),
            st["behind"].as_u64(),
            st["clean"].as_bool()
        ),
        (Some("main"), Some(0), Some(0), Some(true)),
        "{st}"
    );

    let container = s
        .ready_workspace("uses-lint", json!({ "skills": ["lint"] }))
        .await;
    let host = s
        .create(json!({ "name": "host-lint", "workspace_type": "host", "skills": ["lint"] }))
        .await;
    let host_path = host["path"].as_str().unwrap().to_string();
    let bystander = s
        .create(json!({ "name": "host-other", "workspace_type": "host", "skills": ["other"] }))
        .await;
    let read = |id: String| {
        let s = &s;
        async move {
            s.sh(&id, "cat /workspace/.opencode/skill/lint/SKILL.md")
                .await["stdout"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert!(
        read(container.clone()).await.contains("version one"),
        "synced at build"
    );
    assert!(
        std::fs::read_to_string(format!("{host_path}/.opencode/skill/lint/SKILL.md"))
            .unwrap()
            .contains("version one")
    );

    // The remote changes the skill; a sync pulls it into both workspaces that use it.
    std::fs::write(
        editor.join("skill/lint/SKILL.md"),
        skill("lint", "version two"),
    )
    .unwrap();
    std::fs::write(editor.join("skill/lint/extra.md"), "extra").unwrap();
    git(&editor, &["add", "-A"]);
    git(&editor, &["commit", "-q", "-m", "lint v2"]);
    git(&editor, &["push", "-q", "origin", "HEAD:main"]);
    let (status, out) = s.post("/api/library/sync", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["pulled_commits"], 1);
    assert_eq!(out["changed"], json!(["skill/lint"]));
    let synced: Vec<&str> = out["workspaces_synced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        synced.contains(&container.as_str()) && synced.contains(&host["id"].as_str().unwrap()),
        "{out}"
    );
    assert!(
        !synced.contains(&bystander["id"].as_str().unwrap()),
        "{out}"
    );
    assert!(read(container.clone()).await.contains("version two"));
    assert_eq!(
        s.sh(&container, "cat /workspace/.opencode/skill/lint/extra.md")
            .await["stdout"],
        "extra"
    );
    assert!(
        std::fs::read_to_string(format!("{host_path}/.opencode/skill/lint/SKILL.md"))
            .unwrap()
            .contains("version two")
    );

    // A skill saved here is pushed by the next sync.
    put(
        &s,
        "/api/library/skill/local",
        json!({ "content": skill("local", "made in berth") }),
    )
    .await;
    let (status, out) = s.post("/api/library/sync", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["pushed_commits"], 1);
    git(&editor, &["pull", "-q", "--ff-only", "origin", "main"]);
    assert!(editor.join("skill/local/SKILL.md").is_file());

    // Dropping the skill from the workspace removes it there.
    let (status, _) = s
        .call(
            "PUT",
            &format!("/api/workspaces/{container}"),
            Some(json!({ "skills": ["local"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ls = s.sh(&container, "ls /workspace/.opencode/skill").await;
    assert_eq!(ls["stdout"], "local\n");
    let (status, r) = s
        .post(&format!("/api/workspaces/{container}/sync"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["skills"], json!(["local"]));

    // Diverged history: refused with what to do, and nothing moves.
    put(&s, "/api/library/rule/mine", json!({ "content": "mine" })).await;
    std::fs::create_dir_all(editor.join("rule")).unwrap();
    std::fs::write(editor.join("rule/theirs.md"), "theirs").unwrap();
    git(&editor, &["add", "-A"]);
    git(&editor, &["commit", "-q", "-m", "theirs"]);
    git(&editor, &["push", "-q", "origin", "HEAD:main"]);
    let lib = s.data_dir.join("library");
    let head = git(&lib, &["rev-parse", "HEAD"]);
    let (status, v) = s.post("/api/library/sync", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "diverged_history");
    assert!(v["error"].as_str().unwrap().contains("rebase"), "{v}");
    assert_eq!(git(&lib, &["rev-parse", "HEAD"]), head);
    let (_, st) = s.get("/api/library/status").await;
    assert_eq!(
        (st["ahead"].as_u64(), st["behind"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );

    // An unreachable remote: a clear 4xx, the library untouched.
    std::fs::rename(&bare, tmp.path().join("moved.git")).unwrap();
    let (status, v) = s.post("/api/library/sync", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "remote_unreachable");
    assert_eq!(git(&lib, &["rev-parse", "HEAD"]), head);
    s.call("DELETE", &format!("/api/workspaces/{container}"), None)
        .await;
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_library_template_builds_with_its_fragments_and_skill_setup() {
    let s = Server::start().await;
    let setup = "---\nname: node-ish\ndescription: pretend toolchain\nsetup_commands:\n  - echo skill setup ran > /workspace/setup.txt\n---\nbody\n";
    assert_eq!(
        put(
            &s,
            "/api/library/skill/node-ish",
            json!({ "content": setup })
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        put(
            &s,
            "/api/library/init-script/hello",
            json!({ "content": "echo hello from the library fragment\n" })
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        put(
            &s,
            "/api/library/tool/adder",
            json!({ "content": "export default {}\n" })
        )
        .await
        .0,
        StatusCode::OK
    );
    let tpl = "name: lib-tpl\ndescription: from the library\ndistro: bookworm\ninit_scripts: [base, hello]\nskills: [node-ish]\ntools: [adder]\nenv_vars:\n  FROM_TEMPLATE: tpl\n  OVERRIDDEN: tpl\n";
    let (status, v) = put(
        &s,
        "/api/library/workspace-template/lib-tpl",
        json!({ "content": tpl }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    let id = s
        .ready_workspace(
            "from-lib",
            json!({ "template": "lib-tpl", "env_vars": { "OVERRIDDEN": "request" } }),
        )
        .await;
    let (_, w) = s.get(&format!("/api/workspaces/{id}")).await;
    assert_eq!(w["skills"], json!(["node-ish"]));
    assert_eq!(w["distro"], "debian-bookworm");
    let (_, log) = s.get(&format!("/api/workspaces/{id}/init-log")).await;
    let content = log["content"].as_str().unwrap();
    assert!(
        content.contains("hello from the library fragment"),
        "{content}"
    );
    assert!(content.contains("skill-node-ish"), "{content}");
    assert_eq!(
        s.sh(&id, "cat /workspace/setup.txt").await["stdout"],
        "skill setup ran\n"
    );
    assert_eq!(
        s.sh(&id, "echo $FROM_TEMPLATE $OVERRIDDEN").await["stdout"],
        "tpl request\n"
    );
    assert_eq!(
        s.sh(
            &id,
            "ls /workspace/.opencode/skill /workspace/.opencode/tool"
        )
        .await["stdout"],
        "/workspace/.opencode/skill:\nnode-ish\n\n/workspace/.opencode/tool:\nadder.ts\n"
    );

    // Deleting the skill in the library re-syncs it away from the workspace.
    assert_eq!(
        s.call("DELETE", "/api/library/skill/node-ish", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (_, r) = s
        .post(&format!("/api/workspaces/{id}/sync"), json!({}))
        .await;
    assert_eq!(r["missing"], json!(["skill/node-ish"]), "{r}");
    assert_eq!(
        s.sh(&id, "ls /workspace/.opencode/skill").await["stdout"],
        ""
    );
    s.call("DELETE", &format!("/api/workspaces/{id}"), None)
        .await;
    s.assert_no_engine_objects().await;
}

#[tokio::test]
async fn a_save_a_crash_cut_off_is_rolled_back_at_start_and_never_swept_into_the_next_commit() {
    let mut s = Server::start().await;
    let lib = s.data_dir.join("library");
    let (status, v) = put(
        &s,
        "/api/library/rule/kept",
        json!({ "content": "Kept.\n" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    s.kill();
    // What a crash between a save's writes and its commit leaves: a staged file, a changed tracked file
    // and an atomic write's temp file.
    std::fs::write(lib.join("rule/half.md"), "half saved\n").unwrap();
    git(&lib, &["add", "rule/half.md"]);
    std::fs::write(lib.join("rule/kept.md"), "overwritten\n").unwrap();
    std::fs::write(lib.join("rule/.x.md.berth-tmp-1"), "tmp\n").unwrap();
    // And a data dir file's atomic write cut off before its rename.
    let tmp = s.data_dir.join("instance-id.tmp");
    std::fs::write(&tmp, "half").unwrap();
    let s2 = Server::spawn(&s.data_dir, &Options::default()).await;
    assert!(!tmp.exists(), "a temp file stayed");
    assert_eq!(git(&lib, &["status", "--porcelain"]), "");
    let (status, v) = s2.get("/api/library/rule/kept").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["content"], "Kept.\n", "{v}");
    let (status, _) = s2.get("/api/library/rule/half").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The next save commits its own file and nothing else.
    let (status, v) = put(
        &s2,
        "/api/library/rule/next",
        json!({ "content": "Next.\n" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let files = git(&lib, &["show", "--name-only", "--format=", "HEAD"]);
    assert_eq!(files.trim(), "rule/next.md");
    s2.assert_no_engine_objects().await;
}
