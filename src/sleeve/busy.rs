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

#[cfg(test)]
mod tests {
    use super::*;

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
