//! Live links to workers: the push channels they hold open (`GET /v1/worker/tasks/stream`), which
//! addresses vouched for which worker with a token, and registrations held until a worker vouches.
//!
//! CodeTether's stock worker sends its token only on `/v1/worker/*` and `/mcp`; its `/v1/opencode`
//! calls carry just its worker id. berth accepts such a call only when it can be tied to a worker that
//! proved itself with a token: the same worker id, from the same address, with a live push channel
//! or a token-authenticated call within `GRACE`. Registrations that come before the channel (the
//! stock worker registers first) are held here, in memory, until the channel vouches for them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::{RegisterCodebase, RegisterWorker};
use crate::store::tasks::TaskRow;

/// How long a token-authenticated call vouches for token-less calls of the same worker from the same
/// address once its channel is gone (the stock worker polls, reports and unregisters meanwhile).
const GRACE: Duration = Duration::from_secs(600);
/// How long a registration waits for its worker's channel.
const HOLD: Duration = Duration::from_secs(120);
/// Held registrations across all addresses, and from one address: a flood of forged ones costs
/// bounded memory and cannot crowd out other addresses.
const MAX_HELD: usize = 128;
const MAX_HELD_PER_ADDRESS: usize = 8;
/// Codebases held per worker.
const MAX_HELD_CODEBASES: usize = 16;
/// Vouches kept at once (the oldest idle one goes first).
const MAX_VOUCHED: usize = 4096;

/// What a worker's channel is sent.
#[derive(Debug, Clone)]
pub enum Push {
    /// A task it may claim.
    Task(Box<TaskRow>),
    /// A task it holds or was offered was cancelled.
    Cancelled(String),
}

#[derive(Clone, Default)]
pub struct Links {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// By worker key: the open channels and their broadcast.
    channels: HashMap<String, Channel>,
    /// By (address, client worker id): who vouched, and until when.
    vouched: HashMap<(IpAddr, String), Vouch>,
    /// By (address, client worker id): registrations waiting for the worker's channel.
    held: HashMap<(IpAddr, String), Held>,
}

struct Channel {
    open: usize,
    tx: broadcast::Sender<Push>,
}

struct Vouch {
    key: String,
    owner: String,
    /// The token that vouched: a token-less call is taken only while it still holds.
    token: String,
    live: usize,
    last: Instant,
    /// Two users' tokens vouched for this id at this address: it is nobody's (see `vouch_entry`).
    contested: bool,
}

/// Registrations a worker made before it vouched for itself.
pub struct Held {
    pub worker: Option<RegisterWorker>,
    /// The ids answered, with what was asked.
    pub codebases: Vec<(String, RegisterCodebase)>,
    at: Instant,
}

/// A worker's vouched identity: its key in the store, its owner, and the token that vouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tied {
    pub key: String,
    pub owner: String,
    pub token: String,
}

/// An open channel; dropping it closes it.
pub struct ChannelGuard {
    links: Links,
    key: String,
    at: (IpAddr, String),
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        let mut s = self.links.lock();
        if let Some(c) = s.channels.get_mut(&self.key) {
            c.open -= 1;
            if c.open == 0 {
                s.channels.remove(&self.key);
            }
        }
        if let Some(v) = s.vouched.get_mut(&self.at) {
            v.live = v.live.saturating_sub(1);
            v.last = Instant::now();
        }
    }
}

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().expect("links lock")
    }

    /// Opens a channel for the worker; its pushes arrive on the receiver.
    pub fn open(
        &self,
        addr: IpAddr,
        client: &str,
        tied: &Tied,
    ) -> (ChannelGuard, broadcast::Receiver<Push>) {
        let mut s = self.lock();
        let c = s
            .channels
            .entry(tied.key.clone())
            .or_insert_with(|| Channel {
                open: 0,
                tx: broadcast::channel(256).0,
            });
        c.open += 1;
        let rx = c.tx.subscribe();
        let v = vouch_entry(&mut s, addr, client, tied);
        v.live += 1;
        let guard = ChannelGuard {
            links: self.clone(),
            key: tied.key.clone(),
            at: (addr, client.to_string()),
        };
        (guard, rx)
    }

    /// A token-authenticated call of the worker from this address.
    pub fn vouch(&self, addr: IpAddr, client: &str, tied: &Tied) {
        let mut s = self.lock();
        vouch_entry(&mut s, addr, client, tied);
    }

    /// The worker a token-less call from this address with this id speaks for, if one vouched.
    pub fn tied(&self, addr: IpAddr, client: &str) -> Option<Tied> {
        let s = self.lock();
        let v = s.vouched.get(&(addr, client.to_string()))?;
        (!v.contested && (v.live > 0 || v.last.elapsed() < GRACE)).then(|| Tied {
            key: v.key.clone(),
            owner: v.owner.clone(),
            token: v.token.clone(),
        })
    }

    /// Every worker vouched for from this address (a token-less poll names none).
    pub fn tied_at(&self, addr: IpAddr) -> Vec<Tied> {
        let s = self.lock();
        s.vouched
            .iter()
            .filter(|((a, _), v)| {
                *a == addr && !v.contested && (v.live > 0 || v.last.elapsed() < GRACE)
            })
            .map(|(_, v)| Tied {
                key: v.key.clone(),
                owner: v.owner.clone(),
                token: v.token.clone(),
            })
            .collect()
    }

    /// A worker that is gone (unregistered, its token void): nothing vouches for it any longer.
    pub fn forget(&self, key: &str) {
        let mut s = self.lock();
        s.vouched.retain(|_, v| v.key != key);
    }

    /// Whether the worker has a channel open now.
    pub fn is_live(&self, key: &str) -> bool {
        self.lock().channels.contains_key(key)
    }

    /// Sends to the worker's open channels, if any.
    pub fn push(&self, key: &str, p: Push) {
        if let Some(c) = self.lock().channels.get(key) {
            let _ = c.tx.send(p);
        }
    }

    /// Holds a worker's registration until its channel vouches.
    pub fn hold_worker(&self, addr: IpAddr, client: &str, req: RegisterWorker) {
        let mut s = self.lock();
        if let Some(h) = held_entry(&mut s, addr, client) {
            h.worker = Some(req);
        }
    }

    /// Holds a codebase registration; the id to answer (the same for the same path), or `None` when
    /// too many are held.
    pub fn hold_codebase(
        &self,
        addr: IpAddr,
        client: &str,
        req: RegisterCodebase,
        new_id: impl FnOnce() -> String,
    ) -> Option<String> {
        let mut s = self.lock();
        let h = held_entry(&mut s, addr, client)?;
        if let Some((id, r)) = h.codebases.iter_mut().find(|(_, r)| r.path == req.path) {
            *r = req;
            return Some(id.clone());
        }
        if h.codebases.len() >= MAX_HELD_CODEBASES {
            return None;
        }
        let id = new_id();
        h.codebases.push((id.clone(), req));
        Some(id)
    }

    /// The registrations held for this worker at this address, taken.
    pub fn take_held(&self, addr: IpAddr, client: &str) -> Option<Held> {
        let mut s = self.lock();
        s.held
            .remove(&(addr, client.to_string()))
            .filter(|h| h.at.elapsed() < HOLD)
    }
}

fn vouch_entry<'a>(s: &'a mut State, addr: IpAddr, client: &str, tied: &Tied) -> &'a mut Vouch {
    let k = (addr, client.to_string());
    if !s.vouched.contains_key(&k) && s.vouched.len() >= MAX_VOUCHED {
        // Entries of workers long gone go first, then the idle one seen least recently.
        s.vouched
            .retain(|_, v| v.live > 0 || v.last.elapsed() < GRACE);
        if s.vouched.len() >= MAX_VOUCHED {
            let oldest = s
                .vouched
                .iter()
                .filter(|(_, v)| v.live == 0)
                .min_by_key(|(_, v)| v.last)
                .map(|(k, _)| k.clone());
            if let Some(o) = oldest {
                s.vouched.remove(&o);
            }
        }
    }
    let fresh = |v: &Vouch| v.live > 0 || v.last.elapsed() < GRACE;
    let v = s.vouched.entry(k).or_insert_with(|| Vouch {
        key: tied.key.clone(),
        owner: tied.owner.clone(),
        token: tied.token.clone(),
        live: 0,
        last: Instant::now(),
        contested: false,
    });
    if v.key != tied.key {
        if v.owner != tied.owner && fresh(v) {
            // Another user's token names the same worker id at the same address while the first
            // one's still vouches: token-less calls cannot be told apart, so they are nobody's.
            v.contested = true;
        } else if !fresh(v) || v.owner == tied.owner {
            v.key = tied.key.clone();
            v.owner = tied.owner.clone();
            v.live = 0;
            v.contested = false;
        }
    }
    if v.key == tied.key {
        v.token = tied.token.clone();
    }
    v.last = Instant::now();
    v
}

fn held_entry<'a>(s: &'a mut State, addr: IpAddr, client: &str) -> Option<&'a mut Held> {
    s.held.retain(|_, h| h.at.elapsed() < HOLD);
    let k = (addr, client.to_string());
    let from_here = s.held.keys().filter(|(a, _)| *a == addr).count();
    if !s.held.contains_key(&k) && (s.held.len() >= MAX_HELD || from_here >= MAX_HELD_PER_ADDRESS) {
        return None;
    }
    let h = s.held.entry(k).or_insert_with(|| Held {
        worker: None,
        codebases: Vec::new(),
        at: Instant::now(),
    });
    h.at = Instant::now();
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tied(key: &str) -> Tied {
        Tied {
            key: key.into(),
            owner: "alice".into(),
            token: "t".into(),
        }
    }

    #[test]
    fn a_token_less_call_is_tied_only_to_its_address_and_id() {
        let links = Links::default();
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(links.tied(here, "w1"), None);
        let (guard, _rx) = links.open(here, "w1", &tied("alice:w1"));
        assert_eq!(links.tied(here, "w1"), Some(tied("alice:w1")));
        assert_eq!(links.tied(there, "w1"), None);
        assert_eq!(links.tied(here, "w2"), None);
        assert!(links.is_live("alice:w1"));
        drop(guard);
        assert!(!links.is_live("alice:w1"));
        // Within the grace period the worker's reports still count as its own.
        assert_eq!(links.tied(here, "w1"), Some(tied("alice:w1")));
        links.forget("alice:w1");
        assert_eq!(links.tied(here, "w1"), None);
    }

    #[test]
    fn another_users_token_for_the_same_id_and_address_leaves_it_to_nobody() {
        let links = Links::default();
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        links.vouch(here, "box", &tied("alice:box"));
        let bob = Tied {
            key: "bob:box".into(),
            owner: "bob".into(),
            token: "b".into(),
        };
        links.vouch(here, "box", &bob);
        assert_eq!(links.tied(here, "box"), None);
        assert!(links.tied_at(here).is_empty());
    }

    #[test]
    fn held_codebases_keep_one_id_per_path() {
        let links = Links::default();
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let req = |path: &str| RegisterCodebase {
            name: "x".into(),
            path: path.into(),
            description: None,
            agent_config: None,
            worker_id: Some("w1".into()),
        };
        let a = links.hold_codebase(here, "w1", req("/a"), || "cb_1".into());
        let again = links.hold_codebase(here, "w1", req("/a"), || "cb_2".into());
        let b = links.hold_codebase(here, "w1", req("/b"), || "cb_3".into());
        assert_eq!(
            (a.as_deref(), again.as_deref(), b.as_deref()),
            (Some("cb_1"), Some("cb_1"), Some("cb_3"))
        );
        let held = links.take_held(here, "w1").unwrap();
        assert_eq!(held.codebases.len(), 2);
        assert!(links.take_held(here, "w1").is_none());
    }
}
