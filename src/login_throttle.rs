//! Slows password guessing: after a few failed logins for one account, each further attempt waits a
//! doubling delay (capped), refused with 429 without checking the password. A success clears it. The
//! delay, not a lockout, is the point: an attacker cannot lock the owner out for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before delays start.
const FREE_FAILURES: u32 = 5;
const MAX_DELAY: Duration = Duration::from_secs(60);
/// Bound on tracked accounts, so guessing many names cannot grow memory without limit.
const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub struct LoginThrottle {
    accounts: Mutex<HashMap<String, Account>>,
}

struct Account {
    failures: u32,
    blocked_until: Option<Instant>,
}

impl LoginThrottle {
    /// `Err(wait)` while the account must wait before its next attempt.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let accounts = self.accounts.lock().expect("throttle lock");
        match accounts.get(key).and_then(|a| a.blocked_until) {
            Some(until) if until > Instant::now() => Err(until - Instant::now()),
            _ => Ok(()),
        }
    }

    pub fn failed(&self, key: &str) {
        let mut accounts = self.accounts.lock().expect("throttle lock");
        if accounts.len() >= MAX_KEYS && !accounts.contains_key(key) {
            let now = Instant::now();
            accounts.retain(|_, a| a.blocked_until.is_some_and(|u| u > now));
        }
        // Still full: everyone unknown shares one account.
        let key = if accounts.len() >= MAX_KEYS && !accounts.contains_key(key) {
            "*"
        } else {
            key
        };
        let a = accounts.entry(key.to_string()).or_insert(Account {
            failures: 0,
            blocked_until: None,
        });
        a.failures += 1;
        if a.failures > FREE_FAILURES {
            let doublings = (a.failures - FREE_FAILURES - 1).min(16);
            let delay = Duration::from_secs(1 << doublings).min(MAX_DELAY);
            a.blocked_until = Some(Instant::now() + delay);
        }
    }

    pub fn succeeded(&self, key: &str) {
        self.accounts.lock().expect("throttle lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_start_after_the_free_failures_and_a_success_clears_them() {
        let t = LoginThrottle::default();
        for _ in 0..FREE_FAILURES {
            assert!(t.check("admin").is_ok());
            t.failed("admin");
        }
        assert!(t.check("admin").is_ok());
        t.failed("admin");
        let wait = t.check("admin").unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(t.check("someone-else").is_ok());
        t.succeeded("admin");
        assert!(t.check("admin").is_ok());
    }

    #[test]
    fn delays_double_up_to_a_cap() {
        let t = LoginThrottle::default();
        for _ in 0..40 {
            t.failed("x");
        }
        let wait = t.check("x").unwrap_err();
        assert!(wait > Duration::from_secs(30) && wait <= MAX_DELAY);
    }
}
