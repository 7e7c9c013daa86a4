//! One connection's sleeve path, as pure logic: heartbeats that show the
//! UDP path works, and path-MTU discovery ([`Pmtu`]) over the same control
//! datagrams. Both are acknowledged by the peer over the TCP control
//! connection. A path whose acknowledgements stop for
//! [`LinkConfig::timeout_ms`] goes down: the mesh then withdraws the
//! connection from routing (never left silent), and brings it back when
//! they return.
//!
//! A link may also check that its path carries datagrams bigger than the
//! path MTU as IPv4 fragments ([`Link::check_fragments`]): the sleeve sends
//! TCP super-frames whole only over a path shown to carry them, and cuts
//! them into MTU-sized frames everywhere else.

use super::pmtu::{Pmtu, PmtuConfig, PmtuState};

/// Heartbeat sequence numbers have this bit set; path-MTU probes do not.
const HEARTBEAT_BIT: u64 = 1 << 63;
/// Fragment checks have this bit set (and not the heartbeat bit).
const FRAGMENT_BIT: u64 = 1 << 62;
/// How long a fragment check waits for its acknowledgement.
const FRAGMENT_TIMEOUT_MS: u64 = 1_000;
/// Unanswered checks in a row that show the path does not carry fragments.
const FRAGMENT_TRIES: u32 = 3;
/// How often the answer is checked again, either way.
const FRAGMENT_RECHECK_MS: u64 = 30_000;

/// Whether the path carries datagrams bigger than its MTU, as fragments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fragments {
    /// Not known yet.
    Unknown,
    Carried,
    /// Checks went unanswered while heartbeats were answered.
    Blocked,
}

impl std::fmt::Display for Fragments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fragments::Unknown => "unknown",
            Fragments::Carried => "carried",
            Fragments::Blocked => "blocked",
        })
    }
}

/// The fragment check's state.
#[derive(Clone, Debug)]
struct FragmentCheck {
    /// The UDP payload of a check: the largest datagram to be sent.
    size: usize,
    state: Fragments,
    seq: u64,
    /// The check in flight: (seq, answer due by).
    inflight: Option<(u64, u64)>,
    missed: u32,
    next_at: u64,
    /// The state changed since [`Link::take_fragments_change`] last said.
    changed: bool,
}

/// Tunables, in milliseconds of the caller's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub pmtu: PmtuConfig,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            interval_ms: 500,
            timeout_ms: 3_000,
            pmtu: PmtuConfig { probe_timeout_ms: 400, ..PmtuConfig::default() },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No acknowledgement yet.
    Probing,
    Up,
    /// Acknowledgements stopped.
    Down,
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkState::Probing => "probing",
            LinkState::Up => "up",
            LinkState::Down => "down",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: LinkState,
    pub to: LinkState,
}

/// A control datagram to send now: `size` bytes of UDP payload (0: as small
/// as possible), with DF for probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToSend {
    pub seq: u64,
    pub size: usize,
    pub probe: bool,
    /// A fragment check: `size` bytes without DF, for the underlay to fragment.
    pub fragmented: bool,
}

/// One path, as `weavectl status connections` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkView {
    pub state: LinkState,
    /// Milliseconds in this state.
    pub for_ms: u64,
    /// The largest UDP payload sent on the path.
    pub payload_limit: usize,
    pub pmtu: PmtuState,
    pub rtt_ms: Option<u64>,
    pub heartbeats_sent: u64,
    pub heartbeats_acked: u64,
    /// Datagrams are sealed (a password, and not both ends trusted).
    pub sealed: bool,
    /// Whether the path carries fragmented datagrams, when checked.
    #[serde(default)]
    pub fragments: Option<Fragments>,
    /// TCP super-frames go whole, in pieces that fit the path (both ends
    /// offer `sleeve-pieces`).
    #[serde(default)]
    pub pieces: bool,
}

#[derive(Clone, Debug)]
pub struct Link {
    cfg: LinkConfig,
    state: LinkState,
    since: u64,
    last_ack: Option<u64>,
    next_heartbeat: u64,
    heartbeat_seq: u64,
    /// Heartbeats in flight: (seq, sent at), newest last, bounded.
    inflight: std::collections::VecDeque<(u64, u64)>,
    pmtu: Pmtu,
    limit: usize,
    pub rtt_ms: Option<u64>,
    pub sent: u64,
    pub acked: u64,
    /// Datagrams on this path are sealed (set by the owner; shown only).
    pub sealed: bool,
    /// Super-frames go in pieces (set by the owner; shown only).
    pub pieces: bool,
    fragments: Option<FragmentCheck>,
}

impl Link {
    /// A new connection whose local route carries UDP payloads of up to `limit` bytes.
    pub fn new(now: u64, cfg: LinkConfig, limit: usize) -> Link {
        let pmtu = Pmtu::new(cfg.pmtu.clone(), limit);
        Link {
            cfg,
            state: LinkState::Probing,
            since: now,
            last_ack: None,
            next_heartbeat: now,
            heartbeat_seq: 0,
            inflight: Default::default(),
            pmtu,
            limit,
            rtt_ms: None,
            sent: 0,
            acked: 0,
            sealed: false,
            pieces: false,
            fragments: None,
        }
    }

    /// Checks, once the path is up and then every
    /// `FRAGMENT_RECHECK_MS`, that it carries `size`-byte datagrams sent
    /// without DF (so fragmented by IPv4 where the path MTU is smaller).
    pub fn check_fragments(&mut self, now: u64, size: usize) {
        self.fragments = Some(FragmentCheck {
            size,
            state: Fragments::Unknown,
            seq: 0,
            inflight: None,
            missed: 0,
            next_at: now,
            changed: false,
        });
    }

    /// What the fragment check found, if it is on.
    pub fn fragments(&self) -> Option<Fragments> {
        self.fragments.as_ref().map(|f| f.state)
    }

    /// The fragment check's new answer, once per change.
    pub fn take_fragments_change(&mut self) -> Option<Fragments> {
        let f = self.fragments.as_mut()?;
        std::mem::take(&mut f.changed).then_some(f.state)
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn view(&self, now: u64) -> LinkView {
        LinkView {
            state: self.state,
            for_ms: now.saturating_sub(self.since),
            payload_limit: self.payload_limit(),
            pmtu: self.pmtu.state(),
            rtt_ms: self.rtt_ms,
            heartbeats_sent: self.sent,
            heartbeats_acked: self.acked,
            sealed: self.sealed,
            pieces: self.pieces,
            fragments: self.fragments(),
        }
    }

    /// Whether the path carries traffic (or has not been shown not to).
    pub fn usable(&self) -> bool {
        self.state != LinkState::Down
    }

    /// The largest UDP payload to send: the verified path MTU, or the
    /// route's limit while the search runs.
    pub fn payload_limit(&self) -> usize {
        match self.pmtu.state() {
            PmtuState::Verified => self.pmtu.current(),
            PmtuState::Searching => self.limit.max(self.pmtu.current()),
        }
    }

    pub fn pmtu_state(&self) -> PmtuState {
        self.pmtu.state()
    }

    /// The next control datagram to send, if one is due.
    pub fn poll_send(&mut self, now: u64) -> Option<ToSend> {
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.cfg.interval_ms;
            self.heartbeat_seq += 1;
            let seq = HEARTBEAT_BIT | self.heartbeat_seq;
            if self.inflight.len() == 64 {
                self.inflight.pop_front();
            }
            self.inflight.push_back((seq, now));
            self.sent += 1;
            return Some(ToSend { seq, size: 0, probe: false, fragmented: false });
        }
        // Probes only over a path that works: a dead one would fail them all.
        if self.state != LinkState::Up {
            return None;
        }
        if let Some(f) = self.fragments.as_mut() {
            if let Some(send) = f.poll_send(now) {
                return Some(send);
            }
        }
        self.pmtu.poll_probe(now).map(|p| ToSend { seq: p.seq, size: p.size, probe: true, fragmented: false })
    }

    /// The peer acknowledged control datagram `seq`, which arrived as `len` bytes.
    pub fn handle_ack(&mut self, now: u64, seq: u64, len: usize) -> Option<Transition> {
        if seq & HEARTBEAT_BIT != 0 {
            let i = self.inflight.iter().position(|(s, _)| *s == seq)?;
            let (_, at) = self.inflight[i];
            self.inflight.drain(..=i);
            self.rtt_ms = Some(now.saturating_sub(at));
            self.acked += 1;
        } else if seq & FRAGMENT_BIT != 0 {
            if !self.fragments.as_mut().is_some_and(|f| f.handle_ack(now, seq, len)) {
                return None;
            }
        } else if !self.pmtu.handle_ack(now, seq, len) {
            return None;
        }
        self.last_ack = Some(now);
        self.goto(now, LinkState::Up)
    }

    /// The kernel refused a datagram as too big; the route now allows `limit`.
    pub fn handle_too_big(&mut self, now: u64, limit: usize) {
        self.limit = limit;
        self.pmtu.handle_too_big(now, limit);
    }

    /// Time passed: a path silent for the timeout goes down.
    pub fn handle_timeout(&mut self, now: u64) -> Option<Transition> {
        let quiet_since = self.last_ack.unwrap_or(self.since);
        if self.state != LinkState::Down && now.saturating_sub(quiet_since) >= self.cfg.timeout_ms {
            return self.goto(now, LinkState::Down);
        }
        None
    }

    /// When to call [`Link::poll_send`] and [`Link::handle_timeout`] next.
    pub fn poll_timeout(&self) -> u64 {
        let quiet = self.last_ack.unwrap_or(self.since) + self.cfg.timeout_ms;
        let mut t = self.next_heartbeat;
        if self.state != LinkState::Down {
            t = t.min(quiet);
        }
        if self.state == LinkState::Up {
            t = t.min(self.pmtu.poll_timeout());
            if let Some(f) = &self.fragments {
                t = t.min(f.inflight.map_or(f.next_at, |(_, due)| due));
            }
        }
        t
    }

    fn goto(&mut self, now: u64, to: LinkState) -> Option<Transition> {
        if self.state == to {
            return None;
        }
        let t = Transition { from: self.state, to };
        self.state = to;
        self.since = now;
        Some(t)
    }
}

impl FragmentCheck {
    fn poll_send(&mut self, now: u64) -> Option<ToSend> {
        if let Some((_, due)) = self.inflight {
            if now < due {
                return None;
            }
            self.inflight = None;
            self.missed += 1;
            if self.missed < FRAGMENT_TRIES {
                self.next_at = now;
            } else {
                self.missed = 0;
                self.next_at = now + FRAGMENT_RECHECK_MS;
                self.set(Fragments::Blocked);
            }
        }
        if now < self.next_at {
            return None;
        }
        self.seq += 1;
        let seq = FRAGMENT_BIT | self.seq;
        self.inflight = Some((seq, now + FRAGMENT_TIMEOUT_MS));
        Some(ToSend { seq, size: self.size, probe: false, fragmented: true })
    }

    /// True for the answer to a check this side sent, whole.
    fn handle_ack(&mut self, now: u64, seq: u64, len: usize) -> bool {
        let n = seq & !FRAGMENT_BIT;
        if n == 0 || n > self.seq || len < self.size {
            return false;
        }
        // A late answer to an earlier check counts too: the path carried it.
        if self.inflight.is_some_and(|(s, _)| s == seq) || self.state != Fragments::Carried {
            self.inflight = None;
            self.missed = 0;
            self.next_at = now + FRAGMENT_RECHECK_MS;
        }
        self.set(Fragments::Carried);
        true
    }

    fn set(&mut self, to: Fragments) {
        if self.state != to {
            self.state = to;
            self.changed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a link over a path that carries payloads up to `path` bytes
    /// while `alive(now)`; returns the transitions seen.
    fn drive(l: &mut Link, from: u64, to: u64, path: usize, alive: impl Fn(u64) -> bool) -> Vec<(u64, LinkState)> {
        let mut seen = Vec::new();
        let mut now = from;
        while now < to {
            if let Some(t) = l.handle_timeout(now) {
                seen.push((now, t.to));
            }
            while let Some(s) = l.poll_send(now) {
                let len = if s.probe { s.size } else { 45 };
                if alive(now) && len <= path && !s.fragmented {
                    if let Some(t) = l.handle_ack(now + 1, s.seq, len) {
                        seen.push((now + 1, t.to));
                    }
                }
            }
            now = l.poll_timeout().max(now + 1).min(to);
        }
        seen
    }

    #[test]
    fn comes_up_discovers_the_path_mtu_goes_down_and_returns() {
        let mut l = Link::new(0, LinkConfig::default(), 1472);
        assert_eq!(l.payload_limit(), 1472, "optimistic while searching");
        let seen = drive(&mut l, 0, 30_000, 1172, |_| true);
        assert_eq!(seen.first(), Some(&(1, LinkState::Up)));
        assert_eq!(l.pmtu_state(), PmtuState::Verified);
        assert!((1164..=1172).contains(&l.payload_limit()), "{}", l.payload_limit());
        assert_eq!(l.rtt_ms, Some(1));
        // The path dies at 40 s: down within the timeout plus an interval.
        let seen = drive(&mut l, 30_000, 60_000, 1172, |t| t < 40_000);
        let down = seen.iter().find(|(_, s)| *s == LinkState::Down).expect("goes down");
        assert!(down.0 >= 40_000 && down.0 <= 40_000 + 3_000 + 500, "{down:?}");
        // It returns.
        let seen = drive(&mut l, 60_000, 61_000, 1172, |_| true);
        assert_eq!(seen, vec![(60_001, LinkState::Up)]);
    }

    #[test]
    fn a_path_that_never_answers_goes_down_and_stray_acks_are_ignored() {
        let mut l = Link::new(0, LinkConfig::default(), 1472);
        // Acks for nothing we sent do not count.
        assert_eq!(l.handle_ack(5, HEARTBEAT_BIT | 99, 45), None);
        assert_eq!(l.handle_ack(5, 7, 1000), None);
        assert_eq!(l.state(), LinkState::Probing);
        let seen = drive(&mut l, 0, 5_000, 0, |_| false);
        assert_eq!(seen, vec![(3_000, LinkState::Down)]);
        assert!(!l.usable());
        l.handle_too_big(5_000, 1172);
        assert_eq!(l.payload_limit(), 1172);
    }

    /// Drives a link whose path carries heartbeats always, and fragmented
    /// datagrams while `frags(now)`; returns the fragment answers as they change.
    fn drive_fragments(l: &mut Link, from: u64, to: u64, frags: impl Fn(u64) -> bool) -> Vec<(u64, Fragments)> {
        let mut seen = Vec::new();
        let mut now = from;
        while now < to {
            l.handle_timeout(now);
            while let Some(s) = l.poll_send(now) {
                if s.fragmented {
                    assert_eq!(s.size, 62_100);
                    assert!(!s.probe, "a fragment check must not carry DF");
                    if frags(now) {
                        l.handle_ack(now + 5, s.seq, s.size);
                    }
                } else {
                    l.handle_ack(now + 1, s.seq, if s.probe { s.size } else { 45 });
                }
            }
            if let Some(f) = l.take_fragments_change() {
                seen.push((now, f));
            }
            now = l.poll_timeout().max(now + 1).min(to);
        }
        seen
    }

    #[test]
    fn fragment_checks_find_whether_the_path_carries_fragments_and_follow_changes() {
        let mut l = Link::new(0, LinkConfig::default(), 1472);
        assert_eq!(l.fragments(), None);
        assert_eq!(l.view(0).fragments, None);
        l.check_fragments(0, 62_100);
        assert_eq!(l.fragments(), Some(Fragments::Unknown));
        // Carried: known within the first round trips, and said once.
        let seen = drive_fragments(&mut l, 0, 20_000, |_| true);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].0 < 1_000 && seen[0].1 == Fragments::Carried, "{seen:?}");
        assert_eq!(l.view(20_000).fragments, Some(Fragments::Carried));
        // Blocked from 40 s: the recheck (every 30 s) and its retries find it.
        let seen = drive_fragments(&mut l, 20_000, 120_000, |t| t < 40_000);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].1, Fragments::Blocked);
        assert!(seen[0].0 >= 40_000 && seen[0].0 <= 40_000 + 30_000 + 3 * 1_000 + 100, "{seen:?}");
        assert_eq!(l.state(), LinkState::Up, "heartbeats still answered");
        // Carried again: back within a recheck interval.
        let seen = drive_fragments(&mut l, 120_000, 200_000, |_| true);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].1 == Fragments::Carried && seen[0].0 <= 120_000 + 30_000 + 100, "{seen:?}");
    }

    #[test]
    fn fragment_acks_must_be_whole_and_ours() {
        let mut l = Link::new(0, LinkConfig::default(), 1472);
        l.check_fragments(0, 62_100);
        // Nothing sent yet: no answer counts.
        assert_eq!(l.handle_ack(1, FRAGMENT_BIT | 1, 62_100), None);
        // Up first (checks only go over a working path).
        let hb = l.poll_send(0).unwrap();
        l.handle_ack(1, hb.seq, 45);
        let check = l.poll_send(1).expect("a check once up");
        assert!(check.fragmented && check.seq & FRAGMENT_BIT != 0);
        // Cut short on the way: not carried.
        l.handle_ack(2, check.seq, 1400);
        assert_eq!(l.fragments(), Some(Fragments::Unknown));
        // Never sent: ignored.
        l.handle_ack(2, FRAGMENT_BIT | 9, 62_100);
        assert_eq!(l.fragments(), Some(Fragments::Unknown));
        l.handle_ack(3, check.seq, 62_100);
        assert_eq!(l.take_fragments_change(), Some(Fragments::Carried));
        assert_eq!(l.take_fragments_change(), None);
    }

    #[test]
    fn a_path_that_never_carries_fragments_is_blocked_after_three_tries() {
        let mut l = Link::new(0, LinkConfig::default(), 1472);
        l.check_fragments(0, 62_100);
        let seen = drive_fragments(&mut l, 0, 10_000, |_| false);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].1, Fragments::Blocked);
        assert!((3_000..3_100).contains(&seen[0].0), "{seen:?}");
    }
}
