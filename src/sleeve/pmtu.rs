//! Path-MTU discovery for one sleeve connection, as pure logic: probe
//! datagrams sent with don't-fragment, acknowledged by the peer over the
//! control connection with the size that arrived.
//!
//! The search first tries the largest size the local route allows (the
//! common case: it works, one round trip), then bisects between the largest
//! size verified and the smallest size that failed. A size fails after
//! [`PmtuConfig::tries`] unanswered probes, so a lost datagram is not taken
//! for a size limit. The result is re-verified every
//! [`PmtuConfig::reverify_ms`], and at once when the kernel refuses a send
//! as too big (EMSGSIZE, after an ICMP "fragmentation needed" lowered the
//! route's MTU). Until a size is verified, [`Pmtu::current`] is the safe
//! floor. Sizes are UDP payload bytes; times are milliseconds.

/// Tunables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PmtuConfig {
    /// The size assumed to work before anything is verified: 576-byte IPv4
    /// datagrams minus the IPv4 and UDP headers.
    pub floor: usize,
    /// How long a probe waits for its acknowledgement.
    pub probe_timeout_ms: u64,
    /// Unanswered probes before a size counts as too big.
    pub tries: u32,
    /// Stop bisecting when the bounds are this close.
    pub resolution: usize,
    /// Verify the result again after this long.
    pub reverify_ms: u64,
}

impl Default for PmtuConfig {
    fn default() -> Self {
        PmtuConfig { floor: 548, probe_timeout_ms: 1_000, tries: 3, resolution: 8, reverify_ms: 600_000 }
    }
}

/// A probe to send now: a datagram of exactly `size` bytes with DF set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub seq: u64,
    pub size: usize,
}

/// Where the search stands, for `status connections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PmtuState {
    Searching,
    Verified,
}

#[derive(Clone, Debug)]
pub struct Pmtu {
    cfg: PmtuConfig,
    /// Largest size verified (or the floor).
    lo: usize,
    /// Smallest size known to fail, or the route's limit plus one.
    hi: usize,
    state: PmtuState,
    /// The probe in flight: (seq, size, sent at, tries so far).
    inflight: Option<(u64, usize, u64, u32)>,
    next_seq: u64,
    reverify_at: u64,
    /// The route's limit was tried (the first probe).
    tried_limit: bool,
}

impl Pmtu {
    /// A connection whose local route allows datagrams of up to `limit` bytes.
    pub fn new(cfg: PmtuConfig, limit: usize) -> Pmtu {
        let lo = cfg.floor.min(limit);
        Pmtu {
            lo,
            hi: limit + 1,
            state: PmtuState::Searching,
            inflight: None,
            next_seq: 1,
            reverify_at: 0,
            tried_limit: false,
            cfg,
        }
    }

    /// The largest datagram to send now.
    pub fn current(&self) -> usize {
        self.lo
    }

    pub fn state(&self) -> PmtuState {
        self.state
    }

    /// The size to try next while searching: the route's limit first, then
    /// the middle of the bounds.
    fn candidate(&mut self) -> Option<usize> {
        if self.hi.saturating_sub(self.lo) <= self.cfg.resolution.max(1) {
            return None;
        }
        if !self.tried_limit {
            self.tried_limit = true;
            return Some(self.hi - 1);
        }
        Some(self.lo + (self.hi - self.lo) / 2)
    }

    fn send(&mut self, now: u64, size: usize, tries: u32) -> Probe {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight = Some((seq, size, now, tries));
        Probe { seq, size }
    }

    /// The probe to send now, if any (at most one is in flight).
    pub fn poll_probe(&mut self, now: u64) -> Option<Probe> {
        if let Some((_, size, at, tries)) = self.inflight {
            if now.saturating_sub(at) < self.cfg.probe_timeout_ms {
                return None;
            }
            // Unanswered.
            if tries + 1 < self.cfg.tries {
                return Some(self.send(now, size, tries + 1));
            }
            self.inflight = None;
            self.hi = size;
            if self.lo >= size {
                // The verified size itself stopped working: start over below it.
                self.lo = self.cfg.floor.min(size.saturating_sub(1));
            }
        }
        if self.state == PmtuState::Verified {
            if now < self.reverify_at {
                return None;
            }
            // Re-verify: the size in use must still get through.
            self.state = PmtuState::Searching;
            let lo = self.lo;
            return Some(self.send(now, lo, 0));
        }
        match self.candidate() {
            Some(size) => Some(self.send(now, size, 0)),
            None => {
                self.state = PmtuState::Verified;
                self.reverify_at = now + self.cfg.reverify_ms;
                None
            }
        }
    }

    /// The peer acknowledged probe `seq`, saying `size` bytes arrived.
    /// Returns whether it was the probe in flight.
    pub fn handle_ack(&mut self, _now: u64, seq: u64, size: usize) -> bool {
        let Some((s, sent, _, _)) = self.inflight else { return false };
        if s != seq || size != sent {
            return false;
        }
        self.inflight = None;
        self.lo = self.lo.max(size);
        if self.hi <= self.lo {
            self.hi = self.lo + 1;
        }
        true
    }

    /// The kernel refused to send `size` bytes as too big (EMSGSIZE), and
    /// now allows `limit`: the verified size drops to at most that, and the
    /// search starts again below it.
    pub fn handle_too_big(&mut self, now: u64, limit: usize) {
        self.hi = self.hi.min(limit + 1);
        if self.lo > limit {
            self.lo = self.cfg.floor.min(limit);
        }
        if self.inflight.is_some_and(|(_, s, _, _)| s > limit) {
            self.inflight = None;
        }
        self.state = PmtuState::Searching;
        self.reverify_at = now;
    }

    /// When [`Pmtu::poll_probe`] next has work.
    pub fn poll_timeout(&self) -> u64 {
        match (self.inflight, self.state) {
            (Some((_, _, at, _)), _) => at + self.cfg.probe_timeout_ms,
            (None, PmtuState::Verified) => self.reverify_at,
            (None, PmtuState::Searching) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs the search over a path that carries up to `path` bytes and loses
    /// the probes `lose(n)` says (n counts probes sent); returns the result
    /// and the time taken.
    fn run(p: &mut Pmtu, path: usize, lose: impl Fn(u64) -> bool) -> (usize, u64) {
        let mut now = 0;
        let mut n = 0;
        loop {
            assert!(now < 10_000_000, "no convergence");
            while let Some(pr) = p.poll_probe(now) {
                n += 1;
                if pr.size <= path && !lose(n) {
                    p.handle_ack(now + 5, pr.seq, pr.size);
                }
            }
            if p.state() == PmtuState::Verified {
                return (p.current(), now);
            }
            now = p.poll_timeout().max(now + 1);
        }
    }

    #[test]
    fn full_size_works_in_one_round_trip() {
        let mut p = Pmtu::new(PmtuConfig::default(), 1472);
        let (size, t) = run(&mut p, 1472, |_| false);
        assert_eq!(size, 1472);
        assert!(t < 100, "took {t} ms");
    }

    #[test]
    fn a_smaller_path_is_found_by_bisection() {
        let mut p = Pmtu::new(PmtuConfig::default(), 8972);
        let (size, _) = run(&mut p, 1422, |_| false);
        assert!(size <= 1422 && size + 8 >= 1422, "found {size}");
    }

    #[test]
    fn reverification_notices_a_shrunk_path() {
        let cfg = PmtuConfig::default();
        let mut p = Pmtu::new(cfg.clone(), 1472);
        run(&mut p, 1472, |_| false);
        // Later the path shrinks silently (no ICMP reaches us).
        let mut now = cfg.reverify_ms;
        let path = 1300;
        while p.state() == PmtuState::Verified || now == cfg.reverify_ms {
            while let Some(pr) = p.poll_probe(now) {
                if pr.size <= path {
                    p.handle_ack(now + 5, pr.seq, pr.size);
                }
            }
            now = p.poll_timeout().max(now + 1);
        }
        let (size, _) = run(&mut p, path, |_| false);
        assert!(size <= path && size + 8 >= path, "found {size}");
    }

    #[test]
    fn emsgsize_lowers_and_searches_again() {
        let mut p = Pmtu::new(PmtuConfig::default(), 1472);
        run(&mut p, 1472, |_| false);
        p.handle_too_big(1_000, 1400);
        assert!(p.current() <= 1400);
        assert_eq!(p.state(), PmtuState::Searching);
        let (size, _) = run(&mut p, 1380, |_| false);
        assert!(size <= 1380 && size + 8 >= 1380, "found {size}");
    }

    proptest! {
        /// Never settles above what the path carries, always within the
        /// resolution of it when losses are fewer than the tries, and never
        /// below the floor.
        #[test]
        fn converges_under_loss(path in 548usize..9000, limit in 548usize..9000, seed: u64) {
            let cfg = PmtuConfig::default();
            let mut p = Pmtu::new(cfg.clone(), limit);
            // At most one loss in any three consecutive probes.
            let lose = |n: u64| (n.wrapping_mul(seed | 1) >> 7).is_multiple_of(3) && n % 3 == 1;
            let (size, _) = run(&mut p, path, lose);
            let best = path.min(limit);
            prop_assert!(size <= best, "{} above the path's {}", size, best);
            prop_assert!(size + cfg.resolution >= best, "{} far below {}", size, best);
            prop_assert!(size >= cfg.floor.min(limit));
        }
    }
}
