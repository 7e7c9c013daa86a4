//! The anti-replay window of a sealed sleeve direction: a counter accepted
//! once, and only while it is no older than the window (RFC 6479's sliding
//! bitmap, as WireGuard uses it). Pure; the caller checks a datagram's
//! authenticity before marking its counter seen.

/// How many counters behind the newest one are still accepted.
pub const WINDOW: u64 = 2048;
const WORDS: usize = (WINDOW / 64) as usize;

/// The counters seen on one direction of one connection.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// The highest counter accepted, plus one (0: none yet).
    top: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow { top: 0, bits: [0; WORDS] }
    }
}

/// Why a counter is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Replay {
    #[error("counter {0} was seen before")]
    Duplicate(u64),
    #[error("counter {0} is older than the replay window")]
    TooOld(u64),
    #[error("counter {0} is past the last usable one")]
    Exhausted(u64),
}

impl ReplayWindow {
    fn slot(c: u64) -> (usize, u64) {
        (((c / 64) % WORDS as u64) as usize, 1u64 << (c % 64))
    }

    /// Whether `c` would be accepted now (nothing changes).
    pub fn check(&self, c: u64) -> Result<(), Replay> {
        if c == u64::MAX {
            return Err(Replay::Exhausted(c));
        }
        if c >= self.top {
            return Ok(());
        }
        if self.top - c > WINDOW - 64 {
            // The bitmap holds whole words: keep one spare so that advancing
            // never clears a bit still inside the window.
            return Err(Replay::TooOld(c));
        }
        let (w, b) = Self::slot(c);
        if self.bits[w] & b != 0 {
            return Err(Replay::Duplicate(c));
        }
        Ok(())
    }

    /// Accepts `c` (after its datagram was authenticated): checks, then marks it.
    pub fn accept(&mut self, c: u64) -> Result<(), Replay> {
        self.check(c)?;
        if c >= self.top {
            // Clear the words the window slides onto (at most all of them);
            // with nothing accepted yet, every bit is clear already.
            if self.top > 0 {
                let (cur, new) = ((self.top - 1) / 64, c / 64);
                for i in 1..=(new - cur).min(WORDS as u64) {
                    self.bits[((cur + i) % WORDS as u64) as usize] = 0;
                }
            }
            self.top = c + 1;
        }
        let (w, b) = Self::slot(c);
        self.bits[w] |= b;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_reordered_duplicate_and_old() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(0), Ok(()));
        assert_eq!(w.accept(0), Err(Replay::Duplicate(0)));
        assert_eq!(w.accept(5), Ok(()));
        assert_eq!(w.accept(3), Ok(()));
        assert_eq!(w.accept(3), Err(Replay::Duplicate(3)));
        assert_eq!(w.accept(10_000), Ok(()));
        assert_eq!(w.accept(5), Err(Replay::TooOld(5)));
        assert_eq!(w.accept(10_000 - 100), Ok(()));
        assert_eq!(w.accept(10_000 - 100), Err(Replay::Duplicate(9_900)));
        assert_eq!(w.accept(u64::MAX - 1), Ok(()));
        assert_eq!(w.accept(u64::MAX), Err(Replay::Exhausted(u64::MAX)));
    }

    proptest! {
        /// Against a model (a set of everything accepted): a counter is
        /// accepted iff never accepted before and within the window of the
        /// highest one so far; nothing inside the window is ever forgotten.
        #[test]
        fn matches_a_model(cs in proptest::collection::vec(0u64..6000, 1..400)) {
            let mut w = ReplayWindow::default();
            let mut seen = std::collections::BTreeSet::new();
            let mut top: Option<u64> = None;
            for c in cs {
                let fresh = !seen.contains(&c);
                let recent = top.is_none_or(|t| c > t || t - c < WINDOW - 64);
                let r = w.accept(c);
                if fresh && recent {
                    prop_assert_eq!(r, Ok(()), "counter {} refused", c);
                    seen.insert(c);
                    top = Some(top.map_or(c, |t| t.max(c)));
                } else {
                    prop_assert!(r.is_err(), "counter {} accepted twice or too old", c);
                }
            }
        }
    }
}
