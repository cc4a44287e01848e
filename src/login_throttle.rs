//! Slows password guessing. Failed logins are counted twice: per client address, whatever username it
//! tries (so random usernames cannot dodge the count, and each refused attempt costs no hashing), and
//! per client and account (so a guesser elsewhere cannot hold the owner off). Past a few failures each
//! further attempt waits a doubling delay (capped), refused with 429 without checking the password. A
//! success clears the account's count and takes itself off the address's; failures are forgotten after
//! a quiet spell. Attempts are counted when they start, so parallel requests cannot slip past the count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures against one account from one client before delays start.
const FREE_FAILURES: u32 = 5;
/// Failures from one client, over all usernames, before delays start: a few mistyped usernames too.
const FREE_ADDRESS_FAILURES: u32 = 10;
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

impl Record {
    fn fresh(now: Instant) -> Self {
        Self {
            failures: 0,
            last: now,
            blocked_until: None,
        }
    }

    /// Forgets old failures; the wait still to serve, if any.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        if now - self.last >= FORGET_AFTER {
            *self = Self::fresh(now);
        }
        self.blocked_until.filter(|u| *u > now).map(|u| u - now)
    }

    fn count(&mut self, now: Instant, free: u32) {
        self.failures += 1;
        self.last = now;
        if self.failures > free {
            let doublings = (self.failures - free - 1).min(16);
            self.blocked_until = Some(now + Duration::from_secs(1 << doublings).min(MAX_DELAY));
        }
    }
}

fn address_key(client: IpAddr) -> String {
    client.to_string()
}

fn account_key(client: IpAddr, account: &str) -> String {
    format!("{client}|{account}")
}

impl LoginThrottle {
    /// Starts an attempt by `client` against `account`: counted as a failure until `succeeded` says
    /// otherwise. `Err(wait)` while it must wait.
    pub fn attempt(&self, client: IpAddr, account: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut keys = self.keys.lock().expect("throttle lock");
        let wanted = [
            (address_key(client), FREE_ADDRESS_FAILURES),
            (account_key(client, account), FREE_FAILURES),
        ];
        let mut slots = Vec::with_capacity(2);
        for (key, free) in wanted {
            let key = if !keys.contains_key(&key) && keys.len() >= MAX_KEYS {
                keys.retain(|_, r| now - r.last < FORGET_AFTER);
                if keys.len() >= MAX_KEYS {
                    OVERFLOW.to_string()
                } else {
                    key
                }
            } else {
                key
            };
            let r = keys
                .entry(key.clone())
                .or_insert_with(|| Record::fresh(now));
            if let Some(wait) = r.wait(now) {
                return Err(wait);
            }
            slots.push((key, free));
        }
        for (key, free) in slots {
            if let Some(r) = keys.get_mut(&key) {
                r.count(now, free);
            }
        }
        Ok(())
    }

    /// The attempt was not a failure after all.
    pub fn succeeded(&self, client: IpAddr, account: &str) {
        let mut keys = self.keys.lock().expect("throttle lock");
        keys.remove(&account_key(client, account));
        if let Some(r) = keys.get_mut(&address_key(client)) {
            r.failures = r.failures.saturating_sub(1);
            if r.failures <= FREE_ADDRESS_FAILURES {
                r.blocked_until = None;
            }
        }
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
    fn random_usernames_from_one_address_are_throttled_too() {
        let t = LoginThrottle::default();
        let through = (0..100)
            .filter(|i| t.attempt(AWAY, &format!("user{i}")).is_ok())
            .count();
        assert_eq!(through, FREE_ADDRESS_FAILURES as usize + 1);
        // Another address is not affected.
        assert!(t.attempt(HOME, "user1").is_ok());
    }

    #[test]
    fn successes_do_not_count_against_the_address() {
        let t = LoginThrottle::default();
        for i in 0..50 {
            let account = format!("user{i}");
            assert!(t.attempt(AWAY, &account).is_ok(), "attempt {i}");
            t.succeeded(AWAY, &account);
        }
    }

    #[test]
    fn attempts_count_when_they_start_and_delays_double_up_to_a_cap() {
        let t = LoginThrottle::default();
        // Many at once, none finished: only the free ones and the first delayed one get through.
        let through = (0..100).filter(|_| t.attempt(AWAY, "x").is_ok()).count();
        assert_eq!(through, FREE_FAILURES as usize + 1);
        let t = LoginThrottle::default();
        {
            let mut r = t.keys.lock().unwrap();
            r.insert(
                account_key(AWAY, "x"),
                Record {
                    failures: 40,
                    last: Instant::now(),
                    blocked_until: None,
                },
            );
        }
        t.attempt(AWAY, "x").unwrap();
        let wait = t.attempt(AWAY, "x").unwrap_err();
        assert!(wait > Duration::from_secs(30) && wait <= MAX_DELAY);
    }
}
