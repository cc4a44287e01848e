//! berth-agent: the resident agent in every workspace container. It serves E2B's envd protocol (the
//! `process.Process` and `filesystem.Filesystem` Connect services, `/files`, `/health`) plus berth's fast
//! buffered exec, on a unix socket in a directory berth mounts from the host, so it works on every
//! network mode. Only a process outside the container's pid namespace may talk to it: the kernel reports
//! such a peer's pid as 0, which no process inside the container can have (see `peer_allowed`).

mod exec;
mod files;
mod fs;
mod process;
mod rpc;
mod tree;

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const DEFAULT_SOCKET: &str = "/run/berth/agent.sock";

pub struct Agent {
    pub processes: process::Table,
    pub watchers: fs::Watchers,
}

fn main() {
    let mut socket = DEFAULT_SOCKET.to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => socket = args.next().unwrap_or_else(|| usage()),
            "--version" => {
                println!("berth-agent {VERSION}");
                return;
            }
            _ => usage(),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(e) = rt.block_on(serve(&socket)) {
        eprintln!("berth-agent: {e}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: berth-agent [--socket PATH] | --version");
    std::process::exit(2)
}

async fn serve(path: &str) -> std::io::Result<()> {
    // A socket left by the agent's previous life is in the way of this one.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let agent = Arc::new(Agent {
        processes: process::Table::default(),
        watchers: fs::Watchers::default(),
    });
    eprintln!("berth-agent {VERSION} listening on {path}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("berth-agent: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if !peer_allowed(&stream) {
            continue;
        }
        let agent = agent.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| rpc::route(agent.clone(), req));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Whether the peer is outside this container: its pid is not visible in our pid namespace, so the
/// kernel reports 0. Every process in the container has a pid here; berth, on the host, has none.
fn peer_allowed(stream: &tokio::net::UnixStream) -> bool {
    match stream.peer_cred() {
        Ok(cred) => cred.pid().unwrap_or(0) == 0 && cred.uid() == 0,
        Err(_) => false,
    }
}
