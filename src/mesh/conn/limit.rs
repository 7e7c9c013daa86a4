//! Limits on inbound connections, for the daemon's accept loop. Pure: the
//! caller passes `now`.
//!
//! A connection limit (accepted and not yet released), and a token bucket on
//! accepts: `burst` accepts at once, refilled at `per_second`.

use std::time::{Duration, Instant};

use thiserror::Error;

/// Why an accepted socket must be closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Refusal {
    /// Too many connections are open.
    #[error("connection limit of {max} reached")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// Accepts come too fast.
    #[error("accept rate limit reached; next accept possible in {retry_in:?}")]
    RateLimited {
        /// When a token will be available.
        retry_in: Duration,
    },
}

/// Accept limits.
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Accepts per second, sustained.
    pub per_second: f64,
    /// Accepts allowed in a burst.
    pub burst: u32,
}

impl Default for LimitConfig {
    /// 100 connections, 10 accepts per second, bursts of 20.
    fn default() -> Self {
        LimitConfig { max_connections: 100, per_second: 10.0, burst: 20 }
    }
}

/// Counts open connections and meters accepts.
#[derive(Debug)]
pub struct AcceptLimiter {
    cfg: LimitConfig,
    active: usize,
    tokens: f64,
    last: Instant,
}

impl AcceptLimiter {
    /// A limiter with a full bucket at `now`.
    pub fn new(cfg: LimitConfig, now: Instant) -> Self {
        AcceptLimiter { cfg, active: 0, tokens: f64::from(cfg.burst), last: now }
    }

    /// Asks to accept one connection. On `Ok` it counts as open until
    /// [`AcceptLimiter::release`]; a refusal costs nothing.
    pub fn try_accept(&mut self, now: Instant) -> Result<(), Refusal> {
        self.refill(now);
        if self.active >= self.cfg.max_connections {
            return Err(Refusal::TooMany { max: self.cfg.max_connections });
        }
        if self.tokens < 1.0 {
            let rate = self.cfg.per_second.max(f64::MIN_POSITIVE);
            let retry_in = Duration::try_from_secs_f64((1.0 - self.tokens) / rate).unwrap_or(Duration::MAX);
            return Err(Refusal::RateLimited { retry_in });
        }
        self.tokens -= 1.0;
        self.active += 1;
        Ok(())
    }

    /// A connection accepted earlier has ended.
    pub fn release(&mut self) {
        self.active = self.active.saturating_sub(1);
    }

    /// Connections counted as open.
    pub fn active(&self) -> usize {
        self.active
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.cfg.per_second).min(f64::from(self.cfg.burst));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limit_counts_releases() {
        let t = Instant::now();
        let mut l = AcceptLimiter::new(LimitConfig { max_connections: 2, per_second: 100.0, burst: 100 }, t);
        assert!(l.try_accept(t).is_ok());
        assert!(l.try_accept(t).is_ok());
        assert_eq!(l.try_accept(t), Err(Refusal::TooMany { max: 2 }));
        l.release();
        assert!(l.try_accept(t).is_ok());
        assert_eq!(l.active(), 2);
    }

    #[test]
    fn token_bucket_allows_bursts_then_the_rate() {
        let t = Instant::now();
        let mut l = AcceptLimiter::new(LimitConfig { max_connections: 1000, per_second: 2.0, burst: 3 }, t);
        for _ in 0..3 {
            assert!(l.try_accept(t).is_ok());
        }
        match l.try_accept(t) {
            Err(Refusal::RateLimited { retry_in }) => assert_eq!(retry_in, Duration::from_millis(500)),
            other => panic!("{other:?}"),
        }
        assert!(l.try_accept(t + Duration::from_millis(499)).is_err());
        assert!(l.try_accept(t + Duration::from_millis(501)).is_ok());
        // A long pause refills only up to the burst.
        let later = t + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(l.try_accept(later).is_ok());
        }
        assert!(l.try_accept(later).is_err());
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t = Instant::now() + Duration::from_secs(10);
        let mut l = AcceptLimiter::new(LimitConfig { max_connections: 10, per_second: 1.0, burst: 1 }, t);
        assert!(l.try_accept(t).is_ok());
        assert!(l.try_accept(t - Duration::from_secs(5)).is_err());
    }
}
