//! Process trees: every process the agent starts carries a marker in its environment and leads its own
//! session; children inherit the marker, so a whole tree is found even when parts of it called setsid or
//! were reparented to init.

use std::time::Duration;

pub const MARKER_VAR: &str = "BERTH_EXEC_ID";

/// The pids (other than ours) whose environment carries `marker`, or whose session `leader` leads.
fn members(marker: &str, leader: Option<u32>) -> Vec<i32> {
    let me = std::process::id() as i32;
    let wanted = format!("{MARKER_VAR}={marker}");
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let in_session = leader.is_some_and(|l| session_of(pid) == Some(l));
        let marked = || {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == wanted.as_bytes()))
                .unwrap_or(false)
        };
        if in_session || marked() {
            found.push(pid);
        }
    }
    found
}

fn session_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from its closing one.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(3)?.parse().ok()
}

/// Kills the whole tree, over a few passes to catch processes forked while a pass ran.
pub async fn kill(marker: &str, leader: Option<u32>) {
    for _ in 0..5 {
        let pids = {
            let marker = marker.to_string();
            tokio::task::spawn_blocking(move || members(&marker, leader))
                .await
                .unwrap_or_default()
        };
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `signal` to the process's group (its session's: each process leads its own).
pub fn signal_group(pid: u32, signal: i32) -> std::io::Result<()> {
    if unsafe { libc::kill(-(pid as i32), signal) } == 0 {
        return Ok(());
    }
    // A group already gone but its leader a zombie not yet reaped: the leader itself.
    if unsafe { libc::kill(pid as i32, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
