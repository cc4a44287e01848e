//! `make bench`: 200 failed logins with random usernames, 50 at a time, against a multi-user berth.
//! Prints berth's resident memory (idle, and peak during the flood) and `/api/health` latency idle
//! (the reference, measured in the same run) and during the flood. Asserts nothing; the aim is a peak
//! under 150 MB and health latency near idle.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

const LOGINS: usize = 200;
const AT_ONCE: usize = 50;
const HEALTH_SAMPLES: usize = 50;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn health_latencies(http: &reqwest::Client, url: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        http.get(format!("{url}/api/health"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out.sort();
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let data = tempfile::tempdir().unwrap();
    let mut add = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["users", "add", "alice", "--data-dir"])
        .arg(data.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "alice-password").unwrap();
    assert!(add.wait().unwrap().success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env_remove("BERTH_PASSWORD")
        .env_remove("BERTH_USERS_FILE")
        .env("BERTH_PULL_BASE_IMAGES", "false")
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start berth");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("berth exited").unwrap();
        if let Some(u) = line.strip_prefix("berth listening on ") {
            break u.to_string();
        }
    };
    let http = reqwest::Client::new();
    let idle = health_latencies(&http, &url, HEALTH_SAMPLES).await;
    let idle_rss = rss_kib(pid);

    let peak = Arc::new(AtomicU64::new(idle_rss));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let flood = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let mut statuses = std::collections::BTreeMap::new();
            for batch in 0..LOGINS / AT_ONCE {
                let calls = (0..AT_ONCE).map(|i| {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        let body = json!({ "username": format!("guess-{batch}-{i}-{}", rand_suffix()), "password": "wrong" });
                        http.post(format!("{url}/api/auth/login"))
                            .json(&body)
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0)
                    }
                });
                for s in futures::future::join_all(calls).await {
                    *statuses.entry(s).or_insert(0) += 1;
                }
            }
            statuses
        })
    };
    let during = health_latencies(&http, &url, HEALTH_SAMPLES).await;
    let statuses = flood.await.unwrap();
    let flood_time = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let after_rss = rss_kib(pid);

    let p = |v: &[Duration], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!("\nlogin flood: {LOGINS} failed logins with random usernames, {AT_ONCE} at a time, in {:.2} s", flood_time.as_secs_f64());
    println!("answers by status: {statuses:?}");
    println!(
        "berth RSS: idle {:.1} MB, peak during the flood {:.1} MB, after {:.1} MB (aim: peak under 150 MB)",
        idle_rss as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        after_rss as f64 / 1024.0
    );
    println!(
        "/api/health idle (reference)  p50 {:>7.2} ms   p90 {:>7.2} ms",
        ms(p(&idle, 0.5)),
        ms(p(&idle, 0.9))
    );
    println!(
        "/api/health during the flood  p50 {:>7.2} ms   p90 {:>7.2} ms   ({:.2}x the reference p50)",
        ms(p(&during, 0.5)),
        ms(p(&during, 0.9)),
        p(&during, 0.5).as_secs_f64() / p(&idle, 0.5).as_secs_f64()
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish()
}
