//! Per-user token buckets: how many creates that reach git each user may start (issue 10, item 4).
//!
//! Small and in memory on purpose: one bucket per user id, refilled evenly, forgotten once full
//! again. A restart forgets every bucket, which only ever lets users do more, once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nexus_types::diagnostics::lock;

/// Buckets above this many are pruned of the full ones (users idle for a minute or more).
const PRUNE_AT: usize = 4096;

/// A token bucket per key: `burst` tokens, refilled at `burst` per `period`.
pub(crate) struct PerKeyLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<i64, (f64, Instant)>>,
}

impl PerKeyLimiter {
    /// `per_minute` takes a minute to refill from empty; a burst of `per_minute` is allowed.
    pub(crate) fn per_minute(per_minute: u32) -> PerKeyLimiter {
        let burst = f64::from(per_minute.max(1));
        PerKeyLimiter { burst, per_second: burst / 60.0, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`; when none is left, how long until one is.
    pub(crate) fn take(&self, key: i64) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: i64, now: Instant) -> Result<(), Duration> {
        let mut buckets = lock(&self.buckets);
        if buckets.len() > PRUNE_AT {
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, (tokens, at)| *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_an_even_refill_per_key() {
        let limiter = PerKeyLimiter::per_minute(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at(1, t0).is_ok());
        }
        let wait = limiter.take_at(1, t0).unwrap_err();
        assert!(wait <= Duration::from_secs(20) && wait >= Duration::from_secs(19), "{wait:?}");
        assert!(limiter.take_at(2, t0).is_ok(), "another key has its own bucket");
        assert!(limiter.take_at(1, t0 + Duration::from_secs(21)).is_ok(), "one token back after 20 s");
        assert!(limiter.take_at(1, t0 + Duration::from_secs(21)).is_err());
    }
}
