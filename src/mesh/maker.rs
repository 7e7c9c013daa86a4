//! The connection maker: which peer addresses to dial, and when.
//!
//! Pure logic. Targets are direct peers (command line, `weavectl connect`,
//! persisted by the daemon) and discovered addresses. Failed attempts back
//! off exponentially with jitter up to a cap; a connection that had lasted
//! reconnects at once; a refusal that can never succeed (connecting to
//! ourselves) is never retried.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Backoff settings, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct BackoffConfig {
    pub initial_ms: u64,
    pub max_ms: u64,
    /// Fraction of the delay added or removed at random (0.2 = ±20%).
    pub jitter: f64,
    /// A connection up this long counts as having lasted: reconnect at once.
    pub lasted_ms: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { initial_ms: 2_000, max_ms: 120_000, jitter: 0.2, lasted_ms: 60_000 }
    }
}

/// Where a target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Direct,
    Discovered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TargetState {
    /// Waiting until `at` (ms) to dial.
    Waiting {
        at: u64,
    },
    Connecting,
    Connected {
        since: u64,
    },
    /// Refused for good (e.g. it is ourselves).
    Abandoned,
}

/// One target as `weavectl status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub addr: String,
    pub source: Source,
    #[serde(flatten)]
    pub state: TargetState,
    pub failures: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MakerError {
    #[error("invalid peer address {0:?}: expected HOST or HOST:PORT")]
    BadAddress(String),
}

/// Normalises a peer address: adds the default port when none is given.
pub fn normalise(addr: &str, default_port: u16) -> Result<String, MakerError> {
    let a = addr.trim();
    let bad = || MakerError::BadAddress(addr.to_string());
    if a.is_empty() || a.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    if a.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(a.to_string());
    }
    if let Ok(ip) = a.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, default_port).to_string());
    }
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            port.parse::<u16>().map_err(|_| bad())?;
            Ok(a.to_string())
        }
        Some(_) => Err(bad()),
        None => Ok(format!("{a}:{default_port}")),
    }
}

#[derive(Debug, Clone)]
struct Target {
    source: Source,
    state: TargetState,
    failures: u32,
    last_error: Option<String>,
}

/// The maker's state. Driven by the daemon: `poll_connect(now)` says what to
/// dial, `handle_*` report what happened.
#[derive(Debug)]
pub struct Maker {
    cfg: BackoffConfig,
    targets: BTreeMap<String, Target>,
    rng: StdRng,
}

impl Maker {
    pub fn new(cfg: BackoffConfig, seed: u64) -> Self {
        Maker { cfg, targets: BTreeMap::new(), rng: StdRng::seed_from_u64(seed) }
    }

    /// Adds a direct target, dialled at once. A discovered one is promoted.
    pub fn add_direct(&mut self, now: u64, addr: String) {
        let t = self.targets.entry(addr).or_insert(Target {
            source: Source::Direct,
            state: TargetState::Waiting { at: now },
            failures: 0,
            last_error: None,
        });
        t.source = Source::Direct;
    }

    /// Replaces every direct target by `addrs` (`weavectl connect --replace`).
    /// Live connections to dropped targets are left to the caller.
    pub fn replace_direct(&mut self, now: u64, addrs: Vec<String>) {
        self.targets.retain(|a, t| t.source != Source::Direct || addrs.contains(a));
        for a in addrs {
            self.add_direct(now, a);
        }
    }

    /// Adds an address learned from the mesh; direct targets are unchanged.
    pub fn add_discovered(&mut self, now: u64, addr: String) {
        self.targets.entry(addr).or_insert(Target {
            source: Source::Discovered,
            state: TargetState::Waiting { at: now },
            failures: 0,
            last_error: None,
        });
    }

    /// Stops dialling `addr`. Returns whether it was a target.
    pub fn forget(&mut self, addr: &str) -> bool {
        self.targets.remove(addr).is_some()
    }

    pub fn direct_targets(&self) -> Vec<String> {
        self.targets.iter().filter(|(_, t)| t.source == Source::Direct).map(|(a, _)| a.clone()).collect()
    }

    fn backoff(&mut self, failures: u32) -> u64 {
        let exp = failures.saturating_sub(1).min(30);
        let base = self.cfg.initial_ms.saturating_mul(1u64 << exp).min(self.cfg.max_ms);
        let j = self.cfg.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + self.rng.gen_range(-j..=j);
        ((base as f64 * factor) as u64).clamp(1, self.cfg.max_ms)
    }

    /// The dial of `addr` failed. `permanent` errors are never retried.
    pub fn handle_attempt_failed(&mut self, now: u64, addr: &str, error: String, permanent: bool) {
        let Some(failures) = self.targets.get_mut(addr).map(|t| {
            t.failures += 1;
            t.failures
        }) else {
            return;
        };
        let delay = self.backoff(failures);
        if let Some(t) = self.targets.get_mut(addr) {
            t.last_error = Some(error);
            t.state = if permanent { TargetState::Abandoned } else { TargetState::Waiting { at: now + delay } };
        }
    }

    pub fn handle_connected(&mut self, now: u64, addr: &str) {
        if let Some(t) = self.targets.get_mut(addr) {
            t.state = TargetState::Connected { since: now };
            t.last_error = None;
        }
    }

    /// The connection to `addr` ended. One that had lasted is redialled at
    /// once; a short-lived one backs off like a failed attempt.
    pub fn handle_disconnected(&mut self, now: u64, addr: &str, reason: String) {
        let lasted = match self.targets.get(addr).map(|t| t.state) {
            Some(TargetState::Connected { since }) => now.saturating_sub(since) >= self.cfg.lasted_ms,
            Some(_) => false,
            None => return,
        };
        if lasted {
            if let Some(t) = self.targets.get_mut(addr) {
                t.failures = 0;
                t.last_error = Some(reason);
                t.state = TargetState::Waiting { at: now };
            }
        } else {
            self.handle_attempt_failed(now, addr, reason, false);
        }
    }

    /// The next address due for dialling at `now`, marked as connecting.
    pub fn poll_connect(&mut self, now: u64) -> Option<String> {
        let (addr, t) =
            self.targets.iter_mut().find(|(_, t)| matches!(t.state, TargetState::Waiting { at } if at <= now))?;
        t.state = TargetState::Connecting;
        Some(addr.clone())
    }

    /// When the next target falls due.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.targets
            .values()
            .filter_map(|t| match t.state {
                TargetState::Waiting { at } => Some(at),
                _ => None,
            })
            .min()
    }

    pub fn status(&self) -> Vec<TargetStatus> {
        self.targets
            .iter()
            .map(|(a, t)| TargetStatus {
                addr: a.clone(),
                source: t.source,
                state: t.state,
                failures: t.failures,
                last_error: t.last_error.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn maker() -> Maker {
        Maker::new(BackoffConfig { jitter: 0.0, ..Default::default() }, 1)
    }

    #[test]
    fn dials_new_targets_at_once_and_only_once() {
        let mut m = maker();
        m.add_direct(0, "10.0.0.1:6783".into());
        assert_eq!(m.poll_connect(0).as_deref(), Some("10.0.0.1:6783"));
        assert_eq!(m.poll_connect(0), None, "already connecting");
    }

    #[test]
    fn failures_back_off_exponentially_to_the_cap() {
        let mut m = maker();
        m.add_direct(0, "a:1".into());
        let mut now = 0;
        let mut delays = vec![];
        for _ in 0..10 {
            assert_eq!(m.poll_connect(now).as_deref(), Some("a:1"));
            m.handle_attempt_failed(now, "a:1", "refused".into(), false);
            let at = m.poll_timeout().unwrap();
            delays.push(at - now);
            assert_eq!(m.poll_connect(at - 1), None);
            now = at;
        }
        assert_eq!(&delays[..4], &[2_000, 4_000, 8_000, 16_000]);
        assert_eq!(*delays.last().unwrap(), 120_000);
    }

    #[test]
    fn a_connection_that_lasted_reconnects_at_once() {
        let mut m = maker();
        m.add_direct(0, "a:1".into());
        m.poll_connect(0);
        m.handle_connected(0, "a:1");
        m.handle_disconnected(61_000, "a:1", "eof".into());
        assert_eq!(m.poll_connect(61_000).as_deref(), Some("a:1"));
        // A short-lived one backs off.
        m.handle_connected(61_000, "a:1");
        m.handle_disconnected(62_000, "a:1", "eof".into());
        assert_eq!(m.poll_connect(62_000), None);
        assert_eq!(m.poll_timeout(), Some(64_000));
    }

    #[test]
    fn permanent_refusals_are_never_retried() {
        let mut m = maker();
        m.add_direct(0, "me:6783".into());
        m.poll_connect(0);
        m.handle_attempt_failed(0, "me:6783", "cannot connect to ourself".into(), true);
        assert_eq!(m.poll_timeout(), None);
        assert_eq!(m.poll_connect(u64::MAX), None);
        assert_eq!(m.status()[0].state, TargetState::Abandoned);
    }

    #[test]
    fn forget_and_replace() {
        let mut m = maker();
        m.add_direct(0, "a:1".into());
        m.add_direct(0, "b:1".into());
        m.add_discovered(0, "c:1".into());
        assert!(m.forget("a:1"));
        assert!(!m.forget("a:1"));
        m.replace_direct(0, vec!["d:1".into()]);
        assert_eq!(m.direct_targets(), vec!["d:1".to_string()]);
        assert_eq!(m.status().len(), 2, "discovered targets survive a replace");
    }

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(normalise("10.0.0.1", 6783).unwrap(), "10.0.0.1:6783");
        assert_eq!(normalise("10.0.0.1:1234", 6783).unwrap(), "10.0.0.1:1234");
        assert_eq!(normalise("fd00::1", 6783).unwrap(), "[fd00::1]:6783");
        assert_eq!(normalise("host-a", 6783).unwrap(), "host-a:6783");
        for bad in ["", "a b", "host:port", "host:99999", ":1"] {
            assert!(normalise(bad, 6783).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn jittered_delays_stay_within_bounds(seed: u64, failures in 1u32..64) {
            let mut m = Maker::new(BackoffConfig::default(), seed);
            let d = m.backoff(failures);
            prop_assert!((1..=120_000).contains(&d));
        }
    }
}
