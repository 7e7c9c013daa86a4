//! One connection's sleeve path, as pure logic: heartbeats that show the
//! UDP path works, and path-MTU discovery ([`Pmtu`]) over the same control
//! datagrams. Both are acknowledged by the peer over the TCP control
//! connection. A path whose acknowledgements stop for
//! [`LinkConfig::timeout_ms`] goes down: the mesh then withdraws the
//! connection from routing (never left silent), and brings it back when
//! they return.

use super::pmtu::{Pmtu, PmtuConfig, PmtuState};

/// Heartbeat sequence numbers have this bit set; path-MTU probes do not.
const HEARTBEAT_BIT: u64 = 1 << 63;

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
        }
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
            return Some(ToSend { seq, size: 0, probe: false });
        }
        // Probes only over a path that works: a dead one would fail them all.
        if self.state == LinkState::Up {
            return self.pmtu.poll_probe(now).map(|p| ToSend { seq: p.seq, size: p.size, probe: true });
        }
        None
    }

    /// The peer acknowledged control datagram `seq`, which arrived as `len` bytes.
    pub fn handle_ack(&mut self, now: u64, seq: u64, len: usize) -> Option<Transition> {
        if seq & HEARTBEAT_BIT != 0 {
            let i = self.inflight.iter().position(|(s, _)| *s == seq)?;
            let (_, at) = self.inflight[i];
            self.inflight.drain(..=i);
            self.rtt_ms = Some(now.saturating_sub(at));
            self.acked += 1;
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
                if alive(now) && len <= path {
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
}
