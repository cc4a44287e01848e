//! Slows password guessing: after a few failed logins from one client against one account, each
//! further attempt waits a doubling delay (capped), refused with 429 without checking the password. A
//! success clears it, and failures are forgotten after a quiet spell. Keyed by client address and
//! account, so a guesser elsewhere cannot hold the owner off; attempts are counted when they start, so
//! parallel requests cannot slip past the count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before delays start.
const FREE_FAILURES: u32 = 5;
const MAX_DELAY: Duration = Duration::from_secs(60);
/// Failures older than this, with none since, are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Bound on tracked keys, so guessing from many addresses cannot grow memory without limit.
const MAX_KEYS: usize = 10_000;
/// Where keys go once the table is full of recent ones: they share one count.
const OVERFLOW: &str = "*";

#[derive(Default)]
pub struct LoginThrottle {
    keys: Mutex<HashMap<String, Record>>,
}

struct Record {
    failures: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl LoginThrottle {
    /// Starts an attempt by `client` against `account`: counted as a failure until `succeeded` says
    /// otherwise. `Err(wait)` while it must wait.
    pub fn attempt(&self, client: IpAddr, account: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut keys = self.keys.lock().expect("throttle lock");
        let mut key = format!("{client}|{account}");
        if !keys.contains_key(&key) && keys.len() >= MAX_KEYS {
            keys.retain(|_, r| now - r.last < FORGET_AFTER);
            if keys.len() >= MAX_KEYS {
                key = OVERFLOW.to_string();
            }
        }
        let r = keys.entry(key).or_insert(Record {
            failures: 0,
            last: now,
            blocked_until: None,
        });
        if now - r.last >= FORGET_AFTER {
            r.failures = 0;
            r.blocked_until = None;
        }
        if let Some(until) = r.blocked_until.filter(|u| *u > now) {
            return Err(until - now);
        }
        r.failures += 1;
        r.last = now;
        if r.failures > FREE_FAILURES {
            let doublings = (r.failures - FREE_FAILURES - 1).min(16);
            r.blocked_until = Some(now + Duration::from_secs(1 << doublings).min(MAX_DELAY));
        }
        Ok(())
    }

    pub fn succeeded(&self, client: IpAddr, account: &str) {
        self.keys
            .lock()
            .expect("throttle lock")
            .remove(&format!("{client}|{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn delays_start_after_the_free_failures_and_a_success_clears_them() {
        let t = LoginThrottle::default();
        for _ in 0..=FREE_FAILURES {
            assert!(t.attempt(AWAY, "admin").is_ok());
        }
        let wait = t.attempt(AWAY, "admin").unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        // The owner, elsewhere, is not held off by a guesser.
        assert!(t.attempt(HOME, "admin").is_ok());
        t.succeeded(AWAY, "admin");
        assert!(t.attempt(AWAY, "admin").is_ok());
    }

    #[test]
    fn attempts_count_when_they_start_and_delays_double_up_to_a_cap() {
        let t = LoginThrottle::default();
        // Many at once, none finished: only the free ones and the first delayed one get through.
        let through = (0..100).filter(|_| t.attempt(AWAY, "x").is_ok()).count();
        assert_eq!(through, FREE_FAILURES as usize + 1);
        let t = LoginThrottle::default();
        for _ in 0..40 {
            let mut r = t.keys.lock().unwrap();
            let rec = r.entry(format!("{AWAY}|x")).or_insert(Record {
                failures: 0,
                last: Instant::now(),
                blocked_until: None,
            });
            rec.failures += 1;
        }
        t.attempt(AWAY, "x").unwrap();
        let wait = t.attempt(AWAY, "x").unwrap_err();
        assert!(wait > Duration::from_secs(30) && wait <= MAX_DELAY);
    }
}
