//! The health of one connection's fast datapath, as pure logic: which
//! heartbeats to send and when, what their acknowledgements prove, and when
//! the connection goes on hold or back to the fast datapath.
//!
//! Three kinds of heartbeat go through the tunnel:
//! - **full**: a frame of the overlay MTU plus the Ethernet header, every
//!   [`HealthConfig::interval_ms`]. Only these decide the state;
//! - **small**: the shortest heartbeat, every fourth interval, so that a
//!   connection on hold can say whether the underlay drops everything (UDP
//!   blocked) or only frames that big (an MTU problem);
//! - **jumbo**: when the underlay's path MTU leaves room for a larger overlay
//!   MTU, a frame of that size every [`HealthConfig::jumbo_interval_ms`]: if
//!   it is acknowledged, the larger MTU is offered to the user.
//!
//! States: [`OverlayState::Probing`] until the first full heartbeat is
//! acknowledged (traffic already flows: the tunnel is presumed to work), then
//! [`OverlayState::Fastdp`]; [`OverlayState::OnHold`] when no full heartbeat
//! was acknowledged for [`HealthConfig::timeout_ms`]; back to `Fastdp` on the
//! next acknowledgement. Every change comes out as a [`Transition`] with its
//! reason. Times are milliseconds of the caller's monotonic clock.

use std::collections::VecDeque;

use super::heartbeat;

/// Tunables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// A full heartbeat goes out this often.
    pub interval_ms: u64,
    /// No acknowledged full heartbeat for this long puts the connection on hold.
    pub timeout_ms: u64,
    /// A jumbo heartbeat goes out this often (when there is a candidate).
    pub jumbo_interval_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { interval_ms: 500, timeout_ms: 3_000, jumbo_interval_ms: 10_000 }
    }
}

/// Where a connection's traffic goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlayState {
    /// Heartbeats sent, none acknowledged yet.
    Probing,
    /// Heartbeats acknowledged: traffic goes through the VXLAN tunnel.
    Fastdp,
    /// Heartbeats lost: the connection carries no traffic until they return.
    OnHold,
}

impl std::fmt::Display for OverlayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OverlayState::Probing => "fastdp (probing)",
            OverlayState::Fastdp => "fastdp",
            OverlayState::OnHold => "on hold",
        })
    }
}

/// A state change and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: OverlayState,
    pub to: OverlayState,
    pub reason: String,
}

/// A heartbeat to send now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub seq: u64,
    /// The frame length, Ethernet header included.
    pub len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Full,
    Small,
    Jumbo,
}

/// The per-connection state machine.
#[derive(Clone, Debug)]
pub struct Health {
    cfg: HealthConfig,
    full_len: usize,
    jumbo: Option<(u32, usize)>,
    state: OverlayState,
    since: u64,
    reason: String,
    started: u64,
    next_seq: u64,
    /// Heartbeats not yet acknowledged (newest last, bounded).
    outstanding: VecDeque<(u64, u64, Kind)>,
    intervals: u64,
    small_sent: bool,
    next_send: u64,
    next_jumbo: u64,
    last_full_ack: Option<u64>,
    last_small_ack: Option<u64>,
    jumbo_ok: Option<bool>,
    rtt_ms: Option<u64>,
    acked: u64,
    sent: u64,
}

const MAX_OUTSTANDING: usize = 64;

/// What `status connections` shows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HealthView {
    pub state: OverlayState,
    /// Milliseconds in this state.
    pub for_ms: u64,
    pub reason: String,
    pub rtt_ms: Option<u64>,
    pub sent: u64,
    pub acked: u64,
    /// A larger overlay MTU the underlay was seen to carry.
    pub jumbo_mtu: Option<u32>,
}

impl Health {
    /// A connection that starts now. `mtu` is the overlay MTU; `path_mtu` the
    /// underlay's path MTU towards the peer, if known: when it leaves room
    /// for a larger overlay MTU (more than 50 bytes of VXLAN overhead),
    /// jumbo heartbeats test it.
    pub fn new(now: u64, cfg: HealthConfig, mtu: u32, path_mtu: Option<u32>) -> Health {
        let full_len = heartbeat::frame_len(mtu);
        let jumbo = path_mtu
            .and_then(|p| p.checked_sub(crate::fastdp::VXLAN_OVERHEAD))
            .filter(|j| *j > mtu)
            .map(|j| (j, heartbeat::frame_len(j)));
        Health {
            cfg,
            full_len,
            jumbo,
            state: OverlayState::Probing,
            since: now,
            reason: "heartbeats sent, none acknowledged yet".into(),
            started: now,
            next_seq: 1,
            outstanding: VecDeque::new(),
            intervals: 0,
            small_sent: false,
            next_send: now,
            next_jumbo: now,
            last_full_ack: None,
            last_small_ack: None,
            jumbo_ok: None,
            rtt_ms: None,
            acked: 0,
            sent: 0,
        }
    }

    pub fn state(&self) -> OverlayState {
        self.state
    }

    /// Whether the connection may carry traffic (not on hold).
    pub fn usable(&self) -> bool {
        self.state != OverlayState::OnHold
    }

    fn send(&mut self, now: u64, kind: Kind) -> Probe {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent += 1;
        if self.outstanding.len() == MAX_OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((seq, now, kind));
        let len = match kind {
            Kind::Full => self.full_len,
            Kind::Small => heartbeat::MIN_LEN,
            Kind::Jumbo => self.jumbo.map_or(self.full_len, |(_, l)| l),
        };
        Probe { seq, len }
    }

    /// The next heartbeat due at `now`, if any; call until `None`.
    pub fn poll_probe(&mut self, now: u64) -> Option<Probe> {
        if now >= self.next_send {
            // Every fourth interval a small heartbeat goes first, so that
            // both are in flight together.
            if self.intervals.is_multiple_of(4) && !self.small_sent {
                self.small_sent = true;
                return Some(self.send(now, Kind::Small));
            }
            self.small_sent = false;
            self.intervals += 1;
            self.next_send = now + self.cfg.interval_ms;
            return Some(self.send(now, Kind::Full));
        }
        if self.jumbo.is_some() && now >= self.next_jumbo {
            self.next_jumbo = now + self.cfg.jumbo_interval_ms;
            return Some(self.send(now, Kind::Jumbo));
        }
        None
    }

    fn change(&mut self, now: u64, to: OverlayState, reason: String) -> Option<Transition> {
        if self.state == to {
            return None;
        }
        let from = self.state;
        self.state = to;
        self.since = now;
        self.reason = reason.clone();
        Some(Transition { from, to, reason })
    }

    /// An acknowledgement of heartbeat `seq` (of `len` bytes) arrived.
    pub fn handle_ack(&mut self, now: u64, seq: u64, len: usize) -> Option<Transition> {
        let i = self.outstanding.iter().position(|(s, _, _)| *s == seq)?;
        let (_, sent_at, kind) = self.outstanding[i];
        // Older ones are lost or reordered; either way they prove nothing
        // more. Except jumbo ones, slower and judged by their own timeout.
        self.outstanding.retain(|(s, _, k)| *s > seq || (*k == Kind::Jumbo && *s != seq));
        self.acked += 1;
        match kind {
            Kind::Small => {
                self.last_small_ack = Some(now);
                None
            }
            Kind::Jumbo => {
                self.jumbo_ok = Some(len > self.full_len);
                None
            }
            Kind::Full => {
                self.last_full_ack = Some(now);
                self.rtt_ms = Some(now.saturating_sub(sent_at));
                let reason = match self.state {
                    OverlayState::OnHold => format!(
                        "heartbeats acknowledged again after {:.1} s on hold",
                        now.saturating_sub(self.since) as f64 / 1000.0
                    ),
                    _ => format!("heartbeat of {len} bytes acknowledged"),
                };
                self.change(now, OverlayState::Fastdp, reason)
            }
        }
    }

    /// Runs the timers; a connection whose heartbeats stopped goes on hold.
    pub fn handle_timeout(&mut self, now: u64) -> Option<Transition> {
        // A jumbo heartbeat unanswered for a whole timeout was not carried.
        let timeout = self.cfg.timeout_ms;
        // (Each verdict stands until the next jumbo heartbeat's.)
        let lost = self.outstanding.iter().any(|(_, at, k)| *k == Kind::Jumbo && now.saturating_sub(*at) >= timeout);
        if lost {
            self.jumbo_ok = Some(false);
            self.outstanding.retain(|(_, _, k)| *k != Kind::Jumbo);
        }
        if self.state == OverlayState::OnHold {
            return None;
        }
        let since = self.last_full_ack.unwrap_or(self.started);
        if now.saturating_sub(since) < timeout {
            return None;
        }
        let secs = timeout as f64 / 1000.0;
        let small_ok = self.last_small_ack.is_some_and(|t| now.saturating_sub(t) < timeout);
        let reason = if small_ok {
            format!(
                "heartbeats of {} bytes with don't-fragment are lost but small ones arrive: \
                 the underlay MTU is too small for this overlay MTU; lower --mtu",
                self.full_len
            )
        } else if self.last_full_ack.is_none() {
            format!("no heartbeat acknowledged within {secs:.1} s: is UDP to the peer's VXLAN port blocked?")
        } else {
            format!("no heartbeat acknowledged for {secs:.1} s: is UDP to the peer's VXLAN port blocked?")
        };
        self.change(now, OverlayState::OnHold, reason)
    }

    /// When [`Health::poll_probe`] or [`Health::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> u64 {
        let mut t = self.next_send;
        if self.jumbo.is_some() {
            t = t.min(self.next_jumbo);
        }
        if self.state != OverlayState::OnHold {
            t = t.min(self.last_full_ack.unwrap_or(self.started) + self.cfg.timeout_ms);
        }
        t
    }

    pub fn view(&self, now: u64) -> HealthView {
        HealthView {
            state: self.state,
            for_ms: now.saturating_sub(self.since),
            reason: self.reason.clone(),
            rtt_ms: self.rtt_ms,
            sent: self.sent,
            acked: self.acked,
            jumbo_mtu: match (self.jumbo, self.jumbo_ok) {
                (Some((mtu, _)), Some(true)) => Some(mtu),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig::default()
    }

    /// Drives a connection for `ms`, in 100 ms steps; `carry(len)` says
    /// whether a heartbeat of that length gets through (and is acked at once).
    fn run(h: &mut Health, from: u64, ms: u64, carry: impl Fn(usize) -> bool) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut now = from;
        while now < from + ms {
            while let Some(p) = h.poll_probe(now) {
                if carry(p.len) {
                    out.extend(h.handle_ack(now + 1, p.seq, p.len));
                }
            }
            out.extend(h.handle_timeout(now));
            assert!(h.poll_timeout() > now, "a timer due now was not run");
            now += 100;
        }
        out
    }

    #[test]
    fn healthy_connection_goes_fastdp_and_stays() {
        let mut h = Health::new(0, cfg(), 1376, None);
        assert_eq!(h.state(), OverlayState::Probing);
        let t = run(&mut h, 0, 20_000, |_| true);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, OverlayState::Fastdp);
        assert!(h.usable());
        let v = h.view(20_000);
        assert_eq!(v.rtt_ms, Some(1));
        assert!(v.sent >= 40 && v.acked == v.sent, "{v:?}");
    }

    #[test]
    fn blocked_udp_goes_on_hold_within_the_timeout_and_says_why() {
        let mut h = Health::new(0, cfg(), 1376, None);
        let t = run(&mut h, 0, 10_000, |_| false);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, OverlayState::OnHold);
        assert!(t[0].reason.contains("blocked"), "{}", t[0].reason);
        assert!(!h.usable());
        assert_eq!(h.view(3_000).for_ms, 0);
    }

    #[test]
    fn loss_then_recovery() {
        let mut h = Health::new(0, cfg(), 1376, None);
        let mut t = run(&mut h, 0, 5_000, |_| true);
        t.extend(run(&mut h, 5_000, 5_000, |_| false));
        t.extend(run(&mut h, 10_000, 5_000, |_| true));
        let states: Vec<_> = t.iter().map(|t| t.to).collect();
        assert_eq!(states, vec![OverlayState::Fastdp, OverlayState::OnHold, OverlayState::Fastdp]);
        assert!(t[1].reason.contains("for 3.0 s"), "{}", t[1].reason);
        assert!(t[2].reason.contains("again"), "{}", t[2].reason);
        // On hold within timeout + one interval of the loss.
    }

    #[test]
    fn on_hold_within_timeout_plus_an_interval() {
        let mut h = Health::new(0, cfg(), 1376, None);
        run(&mut h, 0, 5_000, |_| true);
        let mut now = 5_000;
        loop {
            while h.poll_probe(now).is_some() {}
            if h.handle_timeout(now).is_some() {
                break;
            }
            now += 10;
        }
        assert!(now <= 5_000 + 3_000 + 500, "on hold only at {now}");
    }

    #[test]
    fn mtu_problems_are_told_apart_from_blocked_udp() {
        let mut h = Health::new(0, cfg(), 1376, None);
        let t = run(&mut h, 0, 10_000, |len| len < 1000);
        assert_eq!(t.len(), 1);
        assert!(t[0].reason.contains("MTU"), "{}", t[0].reason);
    }

    #[test]
    fn jumbo_is_offered_only_when_carried() {
        let mut h = Health::new(0, cfg(), 1376, Some(9000));
        run(&mut h, 0, 30_000, |_| true);
        assert_eq!(h.view(30_000).jumbo_mtu, Some(8950));
        let mut h = Health::new(0, cfg(), 1376, Some(9000));
        let t = run(&mut h, 0, 30_000, |len| len <= 1390);
        assert_eq!(h.view(30_000).jumbo_mtu, None);
        assert_eq!(t.len(), 1, "a lost jumbo heartbeat does not hurt the connection");
        // An underlay that stops carrying jumbo frames stops being offered them.
        let mut h = Health::new(0, cfg(), 1376, Some(9000));
        run(&mut h, 0, 30_000, |_| true);
        run(&mut h, 30_000, 30_000, |len| len <= 1390);
        assert_eq!(h.view(60_000).jumbo_mtu, None);
        // No candidate when the path MTU leaves no room.
        let mut h = Health::new(0, cfg(), 1376, Some(1426));
        let probes: Vec<_> = std::iter::from_fn(|| h.poll_probe(0)).collect();
        assert!(probes.iter().all(|p| p.len <= 1390));
    }

    #[test]
    fn stray_and_duplicate_acks_are_ignored() {
        let mut h = Health::new(0, cfg(), 1376, None);
        assert_eq!(h.handle_ack(0, 999, 1390), None);
        let p = std::iter::from_fn(|| h.poll_probe(0)).last().unwrap();
        assert!(h.handle_ack(1, p.seq, p.len).is_some());
        assert_eq!(h.handle_ack(2, p.seq, p.len), None);
        assert_eq!(h.view(2).acked, 1);
    }
}
