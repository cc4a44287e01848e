//! The host firewall rules berth manages, so a bridge workspace reaches the internet but not the host's
//! own services, not other workspaces and not link-local or cloud metadata addresses. Every workspace
//! network's bridge is named `berth…`, so two chains cover them all:
//! - `BERTH-INPUT`, jumped to from `INPUT` for `-i berth+`: what a workspace sends to the host itself
//!   (any of its addresses: the gateway, the LAN address, other bridges) is dropped, but replies to
//!   connections the host opened and calls to the LLM gateway's port;
//! - `BERTH-FORWARD`, jumped to from the engine's `DOCKER-USER` for `-i berth+`: link-local addresses
//!   (169.254.0.0/16, where cloud metadata lives) and other workspaces' networks are dropped.
//!
//! They are installed (idempotently) at every start and stay while berth is stopped, so workspaces stay
//! fenced in; `berth firewall remove` takes them away. IPv4 only: workspace networks have no IPv6.
//! Without root or `iptables` berth runs on, saying so in its log and in `/api/health`.

use std::process::Command;

use crate::engine::BRIDGE_PREFIX;

const INPUT_CHAIN: &str = "BERTH-INPUT";
const FORWARD_CHAIN: &str = "BERTH-FORWARD";

fn iptables(args: &[&str]) -> Result<String, String> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .map_err(|e| format!("run iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes `chain` hold exactly `rules` (left alone when it does already).
fn fill(chain: &str, rules: &[Vec<&str>]) -> Result<(), String> {
    let wanted: Vec<String> = std::iter::once(format!("-N {chain}"))
        .chain(rules.iter().map(|r| format!("-A {chain} {}", r.join(" "))))
        .collect();
    match iptables(&["-S", chain]) {
        Ok(current) if current.lines().eq(wanted.iter().map(String::as_str)) => return Ok(()),
        Ok(_) => {
            iptables(&["-F", chain])?;
        }
        Err(_) => {
            iptables(&["-N", chain])?;
        }
    }
    for rule in rules {
        let mut args = vec!["-A", chain];
        args.extend(rule.iter().copied());
        iptables(&args)?;
    }
    Ok(())
}

/// Several berth servers on one host share the rules: one changes them at a time.
fn host_lock() -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let dir = std::path::Path::new("/run/lock");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let path = dir.join("berth-firewall.lock");
    let path = path.as_path();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("lock {}: {e}", path.display()))
}

/// Adds `from -i berth+ -j to` unless it is there.
fn jump(from: &str, to: &str) -> Result<(), String> {
    let iface = format!("{BRIDGE_PREFIX}+");
    let rule = ["-i", iface.as_str(), "-j", to];
    let mut check = vec!["-C", from];
    check.extend(rule);
    if iptables(&check).is_ok() {
        return Ok(());
    }
    let mut insert = vec!["-I", from, "1"];
    insert.extend(rule);
    iptables(&insert).map(|_| ())
}

/// Installs the rules; an error says why workspaces are not fenced in.
pub fn install(gateway_port: u16) -> Result<(), String> {
    let _turn = host_lock()?;
    let iface = format!("{BRIDGE_PREFIX}+");
    let established = vec![
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "-j",
        "RETURN",
    ];
    // The LLM gateway is the one host service workspaces reach.
    let port = gateway_port.to_string();
    let gateway = vec![
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        port.as_str(),
        "-j",
        "RETURN",
    ];
    fill(INPUT_CHAIN, &[established, gateway, vec!["-j", "DROP"]])?;
    fill(
        FORWARD_CHAIN,
        &[
            vec!["-d", "169.254.0.0/16", "-j", "DROP"],
            vec!["-o", iface.as_str(), "-j", "DROP"],
            vec!["-j", "RETURN"],
        ],
    )?;
    jump("INPUT", INPUT_CHAIN)?;
    // The engine creates DOCKER-USER when it starts; berth needs it to exist.
    if iptables(&["-n", "-L", "DOCKER-USER"]).is_err() {
        iptables(&["-N", "DOCKER-USER"])?;
    }
    jump("DOCKER-USER", FORWARD_CHAIN)
}

/// Takes berth's rules away (`berth firewall remove`).
pub fn remove() -> Result<(), String> {
    let _turn = host_lock()?;
    let iface = format!("{BRIDGE_PREFIX}+");
    for (from, to) in [("INPUT", INPUT_CHAIN), ("DOCKER-USER", FORWARD_CHAIN)] {
        while iptables(&["-D", from, "-i", iface.as_str(), "-j", to]).is_ok() {}
        if iptables(&["-n", "-L", to]).is_ok() {
            iptables(&["-F", to])?;
            iptables(&["-X", to])?;
        }
    }
    Ok(())
}
