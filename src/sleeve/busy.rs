//! Whether the capture is busy: frames arriving faster than
//! [`BUSY_RATE`] a second, measured over windows of [`WINDOW`].
//!
//! A busy capture batches: it sleeps a moment before reading, so that
//! several frames share a datagram and a wake-up. Without this, every small
//! frame woke the capture thread from its poll, and each wake-up (a context
//! switch, an inter-processor interrupt in a VM) cost more than the frame
//! itself. A quiet capture sends every frame at once: a lone ping, or a
//! request/response exchange slower than the rate, is not held back.
//!
//! Sans-I/O: the caller passes the time.

use std::time::{Duration, Instant};

/// The span over which the rate is measured.
pub const WINDOW: Duration = Duration::from_millis(1);
/// Frames a second above which the capture counts as busy: 20 000, a
/// frame every 50 µs (a request/response exchange with a 100 µs round trip
/// stays well below it).
pub const BUSY_RATE: f64 = 20_000.0;

/// The rate of the last complete window.
#[derive(Debug, Default)]
pub struct BusyMeter {
    start: Option<Instant>,
    frames: u64,
    busy: bool,
}

impl BusyMeter {
    /// Counts `frames` read at `now`.
    pub fn record(&mut self, now: Instant, frames: usize) {
        self.roll(now);
        self.frames += frames as u64;
    }

    /// Closes the window if it has run its span by `now`: the capture is
    /// busy if the window's rate reached [`BUSY_RATE`]. A window that ran
    /// long (no frame for a while) counts over its whole span.
    pub fn roll(&mut self, now: Instant) {
        match self.start {
            None => self.start = Some(now),
            Some(s) => {
                let span = now.saturating_duration_since(s);
                if span >= WINDOW {
                    self.busy = self.frames as f64 >= BUSY_RATE * span.as_secs_f64();
                    self.start = Some(now);
                    self.frames = 0;
                }
            }
        }
    }

    pub fn busy(&self) -> bool {
        self.busy
    }
}

/// How long traffic must stay below [`QUIET_BYTES`] before a thread hands
/// its buffers back ([`Quiet`]).
pub const QUIET: Duration = Duration::from_secs(2);
/// Bytes per [`QUIET`] span that still count as quiet (heartbeats, probes,
/// an occasional ping).
pub const QUIET_BYTES: u64 = 64 << 10;
/// Bytes a thread must have moved since it last handed its buffers back
/// before doing it again: buffers that light traffic touched a page of are
/// not worth the system calls.
pub const RELEASE_AFTER: u64 = 1 << 20;

/// When a sleeve thread's buffers may go back to the kernel: after a
/// [`QUIET`] span with less than [`QUIET_BYTES`] of traffic, once more than
/// [`RELEASE_AFTER`] bytes went through them since the last time. Start-up
/// counts as traffic: the first quiet span releases what setting up left.
#[derive(Debug)]
pub struct Quiet {
    start: Option<Instant>,
    in_span: u64,
    since_release: u64,
}

impl Default for Quiet {
    fn default() -> Quiet {
        Quiet { start: None, in_span: 0, since_release: RELEASE_AFTER }
    }
}

impl Quiet {
    /// Counts `bytes` of traffic.
    pub fn record(&mut self, bytes: usize) {
        self.in_span += bytes as u64;
        self.since_release += bytes as u64;
    }

    /// Whether to release the buffers now (true once per quiet spell).
    pub fn due(&mut self, now: Instant) -> bool {
        let Some(s) = self.start else {
            self.start = Some(now);
            return false;
        };
        if now.saturating_duration_since(s) < QUIET {
            return false;
        }
        let quiet = self.in_span < QUIET_BYTES;
        self.start = Some(now);
        self.in_span = 0;
        if quiet && self.since_release >= RELEASE_AFTER {
            self.since_release = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_go_back_once_per_quiet_spell_after_real_traffic() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut q = Quiet::default();
        assert!(!q.due(at(0)));
        // Once after start-up, then never for heartbeats only.
        let mut released = vec![];
        for ms in (0..20_000).step_by(500) {
            q.record(100);
            if q.due(at(ms)) {
                released.push(ms);
            }
        }
        assert_eq!(released, vec![QUIET.as_millis() as u64]);
        // A bulk transfer: not while it runs.
        let mut t = 20_000;
        for _ in 0..10 {
            q.record(50 << 20);
            t += 500;
            assert!(!q.due(at(t)));
        }
        // It stops: released once, within two spans.
        let released: Vec<u64> = (1..=20).map(|i| t + i * 500).filter(|ms| q.due(at(*ms))).collect();
        assert_eq!(released.len(), 1, "{released:?}");
        assert!(released[0] <= t + 2 * QUIET.as_millis() as u64, "{released:?}");
    }

    #[test]
    fn traffic_just_under_the_quiet_level_still_releases() {
        let t0 = Instant::now();
        let mut q = Quiet::default();
        q.due(t0);
        assert!(q.due(t0 + QUIET), "start-up's release");
        let t0 = t0 + QUIET;
        q.record(RELEASE_AFTER as usize);
        assert!(!q.due(t0 + QUIET), "that span was busy");
        q.record(QUIET_BYTES as usize - 1);
        assert!(q.due(t0 + 2 * QUIET));
    }

    fn run(m: &mut BusyMeter, t0: Instant, gap_us: u64, frames: u64) -> Instant {
        let mut t = t0;
        for _ in 0..frames {
            t += Duration::from_micros(gap_us);
            m.record(t, 1);
        }
        t
    }

    #[test]
    fn a_flood_is_busy_and_a_trickle_is_not() {
        let t0 = Instant::now();
        let mut m = BusyMeter::default();
        assert!(!m.busy());
        // 100 000 frames a second.
        let t = run(&mut m, t0, 10, 500);
        assert!(m.busy());
        // Then one every 100 µs (10 000 a second): quiet after a window.
        let t = run(&mut m, t, 100, 30);
        assert!(!m.busy());
        // A lone frame after a long silence is not busy.
        let t = run(&mut m, t, 10, 300);
        assert!(m.busy());
        m.roll(t + Duration::from_millis(50));
        assert!(!m.busy());
        m.record(t + Duration::from_millis(51), 1);
        assert!(!m.busy());
    }

    #[test]
    fn the_threshold_is_the_rate() {
        let t0 = Instant::now();
        // Just above and just below 20 000 a second, in batches of 4.
        for (gap_us, busy) in [(190, true), (210, false)] {
            let mut m = BusyMeter::default();
            let mut t = t0;
            for _ in 0..200 {
                t += Duration::from_micros(gap_us);
                m.record(t, 4);
            }
            assert_eq!(m.busy(), busy, "a batch of 4 every {gap_us} µs");
        }
    }
}
