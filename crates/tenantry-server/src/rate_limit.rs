//! Rate limits: provisioning requests per principal (at most N in any clock minute; N = 0 turns it off), and
//! sign-in attempts per account and per client address (an exponential delay, capped at a minute).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fixed one-minute windows per principal. Cheap, and enough to stop a runaway script.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request; `Err(seconds)` says how long to wait when the principal is over its limit.
    pub fn check(&self, principal: &str) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let minute = now / 60;
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget old windows now and then so the map cannot grow without bound.
        if windows.len() > 10_000 {
            windows.retain(|_, (window, _)| *window == minute);
        }
        let entry = windows.entry(principal.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= self.per_minute {
            return Err(60 - now % 60);
        }
        entry.1 += 1;
        Ok(())
    }
}

/// Failed sign-ins an account may have before each further one waits.
pub const ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failed sign-ins a client address may have, across accounts, before each further one waits. Higher than an
/// account's: many people can share one address (an office behind NAT).
pub const ADDRESS_FREE_FAILURES: u32 = 20;
/// The longest wait after failures: what an attacker can impose on a real user at most, per attempt.
pub const MAX_SIGN_IN_DELAY: Duration = Duration::from_secs(60);
/// Failures older than this are forgotten.
pub const FORGET_FAILURES_AFTER: Duration = Duration::from_secs(15 * 60);
/// Entries kept before the forgotten ones are dropped (the map cannot grow without bound).
const MAX_THROTTLE_ENTRIES: usize = 10_000;

/// What a sign-in attempt is counted against: its account (the normalised email) and its client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignInKey {
    Account(String),
    Address(String),
}

impl SignInKey {
    fn free_failures(&self) -> u32 {
        match self {
            SignInKey::Account(_) => ACCOUNT_FREE_FAILURES,
            SignInKey::Address(_) => ADDRESS_FREE_FAILURES,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Instant,
}

/// How long a key waits after its `count`-th failure: nothing within the free allowance, then 1 s, 2 s, 4 s, …
/// up to [`MAX_SIGN_IN_DELAY`].
fn delay_after(count: u32, free: u32) -> Duration {
    if count < free {
        return Duration::ZERO;
    }
    let doublings = (count - free).min(16);
    Duration::from_secs(1u64 << doublings).min(MAX_SIGN_IN_DELAY)
}

/// Throttles password guessing. An attempt is counted as a failure when it starts, before the password is checked,
/// so parallel guesses cannot slip through while the first ones are being verified; a success then takes its
/// count back and clears its account. A blocked attempt is refused without checking the password and is not
/// counted, so waiting out the delay always works: an attacker can hold a real user back by at most
/// [`MAX_SIGN_IN_DELAY`] per attempt, and never for longer than they keep guessing.
#[derive(Debug, Default)]
pub struct SignInThrottle {
    entries: Mutex<HashMap<SignInKey, Failures>>,
}

impl SignInThrottle {
    /// Starts an attempt: `Err(seconds)` to wait when any key is blocked, otherwise the attempt is counted.
    pub fn begin(&self, keys: &[SignInKey], now: Instant) -> Result<(), u64> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() > MAX_THROTTLE_ENTRIES {
            entries.retain(|_, failures| {
                failures.blocked_until > now
                    || now.duration_since(failures.last) < FORGET_FAILURES_AFTER
            });
        }
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(failures) = entries.get(key) {
                if failures.blocked_until > now {
                    wait = wait.max(failures.blocked_until - now);
                }
            }
        }
        if !wait.is_zero() {
            // Whole seconds, rounded up: a client that waits this long is let in.
            return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        }
        for key in keys {
            let failures = entries.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
                blocked_until: now,
            });
            if now.duration_since(failures.last) >= FORGET_FAILURES_AFTER {
                failures.count = 0;
            }
            failures.count = failures.count.saturating_add(1);
            failures.last = now;
            failures.blocked_until = now + delay_after(failures.count, key.free_failures());
        }
        Ok(())
    }

    /// A started attempt succeeded: its account starts afresh, and its other keys take the attempt back.
    pub fn succeeded(&self, keys: &[SignInKey]) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in keys {
            if matches!(key, SignInKey::Account(_)) {
                entries.remove(key);
            } else if let Some(failures) = entries.get_mut(key) {
                failures.count = failures.count.saturating_sub(1);
                failures.blocked_until =
                    failures.last + delay_after(failures.count, key.free_failures());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(email: &str, address: &str) -> Vec<SignInKey> {
        vec![
            SignInKey::Account(email.into()),
            SignInKey::Address(address.into()),
        ]
    }

    #[test]
    fn an_account_waits_after_its_free_failures_and_a_success_clears_it() {
        let throttle = SignInThrottle::default();
        let start = Instant::now();
        for _ in 0..ACCOUNT_FREE_FAILURES {
            assert!(throttle.begin(&keys("a@x", "1"), start).is_ok());
        }
        // From another address too: the account is what is guessed.
        assert_eq!(throttle.begin(&keys("a@x", "2"), start), Err(1));
        let later = start + Duration::from_secs(1);
        assert!(throttle.begin(&keys("a@x", "2"), later).is_ok());
        throttle.succeeded(&keys("a@x", "2"));
        for _ in 0..ACCOUNT_FREE_FAILURES {
            assert!(throttle.begin(&keys("a@x", "2"), later).is_ok());
        }
        assert!(throttle.begin(&keys("b@x", "2"), later).is_ok());
    }

    #[test]
    fn the_delay_doubles_and_stops_at_a_minute() {
        let throttle = SignInThrottle::default();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..1000 {
            match throttle.begin(&keys("a@x", "1"), now) {
                Ok(()) => {}
                Err(seconds) => {
                    waits.push(seconds);
                    now += Duration::from_secs(seconds);
                }
            }
        }
        assert_eq!(&waits[..7], &[1, 2, 4, 8, 16, 32, 60]);
        assert!(waits.iter().all(|&seconds| seconds <= 60), "{waits:?}");
        // Fifteen quiet minutes later, the account starts afresh.
        now += FORGET_FAILURES_AFTER + MAX_SIGN_IN_DELAY;
        for _ in 0..ACCOUNT_FREE_FAILURES {
            assert!(throttle.begin(&keys("a@x", "1"), now).is_ok());
        }
    }

    #[test]
    fn an_address_waits_after_guesses_across_accounts() {
        let throttle = SignInThrottle::default();
        let now = Instant::now();
        for index in 0..ADDRESS_FREE_FAILURES {
            assert!(throttle
                .begin(&keys(&format!("user{index}@x"), "9"), now)
                .is_ok());
        }
        assert!(throttle.begin(&keys("fresh@x", "9"), now).is_err());
        assert!(throttle.begin(&keys("fresh@x", "10"), now).is_ok());
    }

    #[test]
    fn refuses_past_the_limit_per_principal() {
        let limiter = RateLimiter::new(2);
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_err());
        assert!(limiter.check("b").is_ok());
        let off = RateLimiter::new(0);
        assert!((0..1000).all(|_| off.check("a").is_ok()));
    }
}
