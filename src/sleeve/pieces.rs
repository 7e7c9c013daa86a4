//! Putting a GSO datagram (one TCP super-frame) back together from the
//! pieces it was sent in ([`super::wire::PieceRef`]). A datagram of up to
//! 64 KB goes as pieces that each fit the path MTU, sent at once with UDP
//! GSO (one system call, and one buffer through the kernel where the path
//! takes it whole), instead of whole, which the underlay cuts into IPv4
//! fragments: those cost the kernel a buffer each on the way and a
//! reassembly at the end, and were the sleeve's largest cost for TCP.
//!
//! Pieces carry their datagram's counter, which names it within its
//! connection. They are not authenticated one by one (like the IPv4
//! fragments they replace): the datagram is, once whole, so a forged piece
//! can spoil a datagram, never smuggle anything in. All pieces but the last
//! have one length, so each piece's place is known, and the first one to
//! arrive fixes the layout the others must agree with. Pieces usually
//! arrive in order and are appended as they come (no buffer is cleared
//! first); a late one fills the gap left for it.
//!
//! Pure logic: the receive thread feeds it pieces and a clock in
//! milliseconds.

use thiserror::Error;

use super::wire::{PieceRef, MAX_PIECES};

/// How long the pieces of a super-frame wait for the rest.
pub const TIMEOUT_MS: u64 = 1000;
/// Datagrams being put together at once (each holds up to 64 KB).
pub const MAX_PENDING: usize = 16;
/// Buffers of finished super-frames kept for the next ones.
const SPARE: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PieceError {
    #[error("piece disagrees with the other pieces of its super-frame")]
    Mismatch,
    #[error("piece already received")]
    Duplicate,
}

/// Super-frames in pieces, across connections.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: Vec<Pending>,
    spare: Vec<Vec<u8>>,
    /// Datagrams given up: their pieces did not all come in time.
    pub timed_out: u64,
    /// Datagrams given up to make room for newer ones.
    pub evicted: u64,
}

#[derive(Debug)]
struct Pending {
    conn: u64,
    /// The datagram's counter.
    id: u64,
    count: u16,
    total: u32,
    /// The length of every piece but the last, once a piece has said.
    piece_len: Option<usize>,
    got: u16,
    seen: [u64; 4],
    born_ms: u64,
    buf: Vec<u8>,
}

impl Pending {
    fn seen(&self, i: u16) -> bool {
        self.seen[usize::from(i / 64)] & 1 << (i % 64) != 0
    }

    /// Whether a piece fits the layout the earlier ones fixed (and fixes it
    /// if it is the first).
    fn fits(&mut self, p: &PieceRef<'_>) -> bool {
        let (off, len, total) = (p.offset as usize, p.bytes.len(), self.total as usize);
        let n = usize::from(self.count);
        // The length of every piece but the last, as this piece implies it.
        let l = if n == 1 {
            if off != 0 || len != total {
                return false;
            }
            len
        } else if p.index + 1 == self.count {
            // The last piece ends the body, after n - 1 of the others.
            if off + len != total || off % (n - 1) != 0 {
                return false;
            }
            off / (n - 1)
        } else {
            if off != usize::from(p.index) * len {
                return false;
            }
            len
        };
        // All but the last are l long, and the last 1 to l.
        if l == 0 || (n - 1) * l >= total || total - (n - 1) * l > l {
            return false;
        }
        match self.piece_len {
            Some(k) if k != l => false,
            _ => {
                self.piece_len = Some(l);
                true
            }
        }
    }
}

impl Reassembler {
    /// Takes one piece, from connection `conn`'s peer, of its datagram
    /// numbered `id`. The whole datagram once its last piece is in (hand
    /// the buffer back with [`Reassembler::recycle`]).
    pub fn add(&mut self, now_ms: u64, conn: u64, id: u64, p: PieceRef<'_>) -> Result<Option<Vec<u8>>, PieceError> {
        if p.count == 0 || p.count > MAX_PIECES || p.index >= p.count {
            return Err(PieceError::Mismatch);
        }
        self.expire(now_ms);
        let at = match self.pending.iter().position(|s| s.conn == conn && s.id == id) {
            Some(i) => {
                let s = &self.pending[i];
                if s.count != p.count || s.total != p.total {
                    return Err(PieceError::Mismatch);
                }
                if s.seen(p.index) {
                    return Err(PieceError::Duplicate);
                }
                i
            }
            None => {
                if self.pending.len() >= MAX_PENDING {
                    // The oldest goes: under loss, newer super-frames are
                    // the ones still worth completing.
                    if let Some(old) = self.pending.iter().enumerate().min_by_key(|(_, s)| s.born_ms).map(|(i, _)| i) {
                        let s = self.pending.swap_remove(old);
                        self.evicted += 1;
                        self.recycle(s.buf);
                    }
                }
                let mut buf = self.spare.pop().unwrap_or_default();
                buf.clear();
                buf.reserve(p.total as usize);
                self.pending.push(Pending {
                    conn,
                    id,
                    count: p.count,
                    total: p.total,
                    piece_len: None,
                    got: 0,
                    seen: [0; 4],
                    born_ms: now_ms,
                    buf,
                });
                self.pending.len() - 1
            }
        };
        let s = &mut self.pending[at];
        if !s.fits(&p) {
            let s = self.pending.swap_remove(at);
            self.recycle(s.buf);
            return Err(PieceError::Mismatch);
        }
        let off = p.offset as usize;
        let end = off + p.bytes.len();
        if off >= s.buf.len() {
            // In order (or after a gap, left for a late piece).
            s.buf.resize(off, 0);
            s.buf.extend_from_slice(p.bytes);
        } else if end <= s.buf.len() {
            s.buf[off..end].copy_from_slice(p.bytes);
        } else {
            let (inside, after) = p.bytes.split_at(s.buf.len() - off);
            s.buf[off..].copy_from_slice(inside);
            s.buf.extend_from_slice(after);
        }
        s.seen[usize::from(p.index / 64)] |= 1 << (p.index % 64);
        s.got += 1;
        if s.got < s.count {
            return Ok(None);
        }
        let s = self.pending.swap_remove(at);
        Ok(Some(s.buf))
    }

    /// Gives up datagrams whose pieces have waited too long.
    pub fn expire(&mut self, now_ms: u64) {
        let mut i = 0;
        while i < self.pending.len() {
            if now_ms.saturating_sub(self.pending[i].born_ms) > TIMEOUT_MS {
                let s = self.pending.swap_remove(i);
                self.timed_out += 1;
                self.recycle(s.buf);
            } else {
                i += 1;
            }
        }
    }

    /// Forgets a connection's pieces (it went down).
    pub fn forget(&mut self, conn: u64) {
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|s| s.conn == conn);
        self.pending = kept;
        for s in gone {
            self.recycle(s.buf);
        }
    }

    /// A finished datagram's buffer, for the next one.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE {
            self.spare.push(buf);
        }
    }

    /// Drops the kept buffers (the traffic went quiet).
    pub fn shrink(&mut self) {
        self.spare = Vec::new();
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }

    /// Datagrams waiting for pieces.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::plan_pieces;
    use super::*;
    use proptest::prelude::*;

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// The pieces of `b` in at most `max` bytes each, each with the
    /// datagram's `id`.
    fn cut(b: &[u8], max: usize, id: u64) -> Vec<(u64, PieceRef<'_>)> {
        let ranges: Vec<_> = plan_pieces(b.len(), max).unwrap().collect();
        let count = ranges.len() as u16;
        ranges
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let p =
                    PieceRef { index: i as u16, count, offset: r.start as u32, total: b.len() as u32, bytes: &b[r] };
                (id, p)
            })
            .collect()
    }

    #[test]
    fn in_order_pieces_make_the_body() {
        let b = body(62_024);
        let mut r = Reassembler::default();
        let ps = cut(&b, 1400, 100);
        let n = ps.len();
        for (i, (c, p)) in ps.into_iter().enumerate() {
            let got = r.add(0, 9, c, p).unwrap();
            if i + 1 < n {
                assert_eq!(got, None);
            } else {
                assert_eq!(got.as_deref(), Some(&b[..]));
            }
        }
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn a_single_piece_is_whole_at_once() {
        let b = body(900);
        let mut r = Reassembler::default();
        let (c, p) = cut(&b, 1400, 5)[0];
        assert_eq!(r.add(0, 1, c, p).unwrap().as_deref(), Some(&b[..]));
    }

    #[test]
    fn duplicates_and_mismatches_are_refused() {
        let b = body(5000);
        let mut r = Reassembler::default();
        let ps = cut(&b, 1400, 10);
        assert_eq!(r.add(0, 1, ps[0].0, ps[0].1), Ok(None));
        assert_eq!(r.add(0, 1, ps[0].0, ps[0].1), Err(PieceError::Duplicate));
        let mut other = ps[1].1;
        other.total += 1;
        assert_eq!(r.add(0, 1, ps[1].0, other), Err(PieceError::Mismatch));
        let (_, mut p) = ps[2];
        p.index = 4;
        assert_eq!(r.add(0, 1, 10, p), Err(PieceError::Mismatch), "index beyond the count");
        // A piece whose offset does not follow the layout ends its super-frame.
        let (c1, mut p1) = cut(&b, 1400, 50)[1];
        p1.offset += 1;
        assert_eq!(r.add(0, 1, c1, p1), Err(PieceError::Mismatch));
    }

    #[test]
    fn a_super_frame_missing_a_piece_times_out() {
        let b = body(5000);
        let mut r = Reassembler::default();
        let ps = cut(&b, 1400, 0);
        for (c, p) in &ps[..ps.len() - 1] {
            assert_eq!(r.add(0, 1, *c, *p), Ok(None));
        }
        r.expire(TIMEOUT_MS + 1);
        assert_eq!((r.pending(), r.timed_out), (0, 1));
        // The last piece, late, starts a super-frame that cannot finish.
        let (c, p) = ps[ps.len() - 1];
        assert_eq!(r.add(TIMEOUT_MS + 2, 1, c, p), Ok(None));
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn too_many_at_once_evicts_the_oldest() {
        let b = body(3000);
        let mut r = Reassembler::default();
        for k in 0..=MAX_PENDING as u64 {
            let (c, p) = cut(&b, 1400, k * 10)[0];
            assert_eq!(r.add(k, 1, c, p), Ok(None));
        }
        assert_eq!((r.pending(), r.evicted), (MAX_PENDING, 1));
        // The first (evicted) one cannot finish; the last can.
        let ps = cut(&b, 1400, 0);
        assert_eq!(r.add(20, 1, ps[1].0, ps[1].1), Ok(None));
        let last = MAX_PENDING as u64 * 10;
        let ps = cut(&b, 1400, last);
        assert_eq!(r.add(20, 1, ps[1].0, ps[1].1), Ok(None));
        assert_eq!(r.add(20, 1, ps[2].0, ps[2].1).unwrap().as_deref(), Some(&b[..]));
    }

    #[test]
    fn connections_do_not_mix() {
        let b = body(3000);
        let mut r = Reassembler::default();
        let ps = cut(&b, 1400, 0);
        assert_eq!(r.add(0, 1, ps[0].0, ps[0].1), Ok(None));
        assert_eq!(r.add(0, 2, ps[1].0, ps[1].1), Ok(None));
        assert_eq!(r.pending(), 2);
        r.forget(2);
        assert_eq!(r.add(0, 1, ps[1].0, ps[1].1), Ok(None));
        assert_eq!(r.add(0, 1, ps[2].0, ps[2].1).unwrap().as_deref(), Some(&b[..]));
    }

    proptest! {
        #[test]
        fn any_order_makes_the_body(len in 1usize..20_000, max in 256usize..3000, seed in any::<u64>(), first in 0u64..1000) {
            prop_assume!(len.div_ceil(max) <= usize::from(super::super::wire::MAX_PIECES));
            let b = body(len);
            let mut ps = cut(&b, max, first);
            // A deterministic shuffle from the seed.
            let mut s = seed | 1;
            for i in (1..ps.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                ps.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut r = Reassembler::default();
            let mut done = None;
            for (c, p) in ps {
                prop_assert!(done.is_none());
                done = r.add(0, 3, c, p).unwrap();
            }
            prop_assert_eq!(done.as_deref(), Some(&b[..]));
            prop_assert_eq!(r.pending(), 0);
        }

        #[test]
        fn arbitrary_pieces_never_panic(ps in proptest::collection::vec((0u64..8, 0u16..8, 1u16..8, 0u32..4000, 0u32..4000, 1usize..600), 0..40)) {
            let mut r = Reassembler::default();
            let data = [0x5au8; 600];
            for (c, index, count, offset, total, len) in ps {
                let p = PieceRef { index, count, offset, total, bytes: &data[..len] };
                if let Ok(Some(b)) = r.add(c, 1, c, p) {
                    prop_assert_eq!(b.len(), total as usize);
                }
            }
        }
    }
}
