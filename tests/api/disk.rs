//! A full data dir (a small tmpfs): writes answer 507 and change nothing, health says so, and a build
//! whose end could not be recorded settles once space returns; nothing stays `building`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{eventually, Options, Server};

/// A tmpfs mounted for one test, unmounted when dropped (after the server that uses it).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mb: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mb}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount a tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` to the last byte; the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    path
}

#[tokio::test]
async fn a_full_data_dir_answers_507_and_a_build_settles_when_space_returns() {
    let disk = Tmpfs::mount(48);
    let data_dir = disk.path().join("data");
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("berth.log");
    let opts = Options {
        log_to: Some(log.clone()),
        ..Default::default()
    };
    let mut s = Server::spawn(&data_dir, &opts).await;
    let (_, h) = s.get("/api/health").await;
    assert_eq!(h["data_dir"]["full"], false, "{h}");

    // A build whose init is running when the disk fills up.
    let ws = s
        .create(json!({ "name": "squeezed", "template": "debian", "init_script": "sleep 4" }))
        .await;
    let ws = ws["id"].as_str().unwrap().to_string();
    s.wait_for_log(&ws, "running 02-workspace.sh").await;
    let filler = fill(disk.path());

    let (_, h) = s.get("/api/health").await;
    assert_eq!(h["data_dir"]["full"], true, "{h}");
    // Writes are refused with the reason, and reads go on.
    let (status, e) = s
        .post(
            "/api/workspaces",
            json!({ "name": "refused", "template": "debian" }),
        )
        .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{e}");
    assert_eq!(e["code"], "insufficient_storage", "{e}");
    assert!(e["error"].as_str().unwrap().contains("full"), "{e}");
    let (status, list) = s.get("/api/workspaces").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // The init ends while the disk is full: its end cannot be recorded yet.
    eventually(
        "berth fails to record the build's end",
        Duration::from_secs(60),
        || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                text.contains("recording the end of a build failed")
                    .then_some(())
            }
        },
    )
    .await;
    let (_, w) = s.get(&format!("/api/workspaces/{ws}")).await;
    assert_eq!(w["status"], "building", "{w}");

    // Space returns: the build's end is recorded without a restart, and new work is accepted.
    std::fs::remove_file(filler).unwrap();
    let w = eventually("the build settles", Duration::from_secs(60), || async {
        let (_, w) = s.get(&format!("/api/workspaces/{ws}")).await;
        (w["status"] != "building").then_some(w)
    })
    .await;
    assert_eq!(w["status"], "ready", "{w}");
    let (status, _) = s
        .post(
            &format!("/api/workspaces/{ws}/build"),
            json!({ "rebuild": true }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(s.wait_built(&ws).await["status"], "ready");
    let (status, _) = s
        .call("DELETE", &format!("/api/workspaces/{ws}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.assert_no_engine_objects().await;
    s.kill();
}
