//! Sealing sleeve datagrams with the connection's session keys
//! ([`SessionKeys`]: one key per direction, from the mesh handshake):
//! ChaCha20-Poly1305 with a 96-bit nonce of four zero bytes and the 64-bit
//! counter, and the 20-byte header as associated data. Each direction has
//! its own key and its own counter, so a nonce never repeats under a key;
//! the receiver authenticates first, then checks the counter against its
//! [`ReplayWindow`], and only then delivers.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use thiserror::Error;

use super::replay::{Replay, ReplayWindow};
use super::wire::{Header, WireError, HEADER_LEN};
use crate::mesh::conn::SessionKeys;

/// Bytes sealing adds to a body.
pub const TAG_LEN: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum OpenError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("datagram for connection {0:#x}, not this one")]
    OtherConnection(u64),
    #[error("datagram is not sealed, but this connection is encrypted")]
    NotSealed,
    #[error("datagram is sealed, but this connection is not encrypted")]
    Sealed,
    #[error("datagram failed authentication")]
    BadAuth,
    #[error("a piece of a datagram is not opened alone")]
    Piece,
    #[error(transparent)]
    Replay(#[from] Replay),
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SealError {
    #[error("the send counter is exhausted: the connection must be re-keyed")]
    Exhausted,
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    // Unique: one counter value per datagram and key (see the module doc).
    Nonce::assume_unique_for_key(n)
}

/// The AEAD, ring's ChaCha20-Poly1305 (hand-written assembly: at the
/// release build's size optimisation, the RustCrypto crate's SIMD helpers
/// were left out of line, and sealing took most of the sleeve's CPU).
fn cipher(key: &[u8; 32]) -> LessSafeKey {
    let k = UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key is a ChaCha20-Poly1305 key");
    LessSafeKey::new(k)
}

/// Our sending half of one connection: sealed with its key, or plain (no
/// password, or a trusted subnet at both ends) with the same header and
/// counter.
pub struct Sealer {
    cipher: Option<LessSafeKey>,
    conn_uid: u64,
    next: u64,
}

impl Sealer {
    pub fn new(keys: &SessionKeys, conn_uid: u64) -> Sealer {
        Sealer { cipher: Some(cipher(&keys.tx)), conn_uid, next: 0 }
    }

    /// A sender that does not encrypt.
    pub fn plain(conn_uid: u64) -> Sealer {
        Sealer { cipher: None, conn_uid, next: 0 }
    }

    /// Whether datagrams are sealed.
    pub fn sealed(&self) -> bool {
        self.cipher.is_some()
    }

    /// Bytes a datagram adds to its body: the header, and the tag when sealed.
    pub fn overhead(&self) -> usize {
        HEADER_LEN + if self.sealed() { TAG_LEN } else { 0 }
    }

    /// A whole data datagram: the header, then the (sealed) body.
    pub fn seal(&mut self, body: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_with(false, false, body)
    }

    /// A whole control datagram (heartbeat, probe).
    pub fn seal_control(&mut self, body: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_with(true, false, body)
    }

    /// A whole GSO datagram (one super-frame, [`super::wire::emit_gso_into`]).
    pub fn seal_gso(&mut self, body: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_with(false, true, body)
    }

    /// Seals a GSO datagram in place: `d` holds [`HEADER_LEN`] bytes for
    /// the header, then the plaintext body; the header is written, the
    /// body encrypted where it is and the tag appended (a buffer the caller
    /// keeps serves every super-frame: no allocation, no copy).
    pub fn seal_gso_in_place(&mut self, d: &mut Vec<u8>) -> Result<(), SealError> {
        self.seal_in_place(false, true, d)
    }

    fn seal_with(&mut self, control: bool, gso: bool, body: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(self.overhead() + body.len());
        out.resize(HEADER_LEN, 0);
        out.extend_from_slice(body);
        self.seal_in_place(control, gso, &mut out)?;
        Ok(out)
    }

    fn seal_in_place(&mut self, control: bool, gso: bool, d: &mut Vec<u8>) -> Result<(), SealError> {
        if self.next == u64::MAX {
            return Err(SealError::Exhausted);
        }
        if d.len() < HEADER_LEN {
            d.resize(HEADER_LEN, 0);
        }
        let h =
            Header { sealed: self.sealed(), control, gso, piece: false, conn_uid: self.conn_uid, counter: self.next };
        self.next += 1;
        d[..HEADER_LEN].copy_from_slice(&h.bytes());
        if let Some(c) = &self.cipher {
            let (aad, body) = d.split_at_mut(HEADER_LEN);
            let tag = c
                .seal_in_place_separate_tag(nonce(h.counter), Aad::from(&*aad), body)
                .map_err(|_| SealError::Exhausted)?;
            d.extend_from_slice(tag.as_ref());
        }
        Ok(())
    }
}

/// An opened datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// A control message (heartbeat, probe) rather than frames.
    pub control: bool,
    /// One GSO super-frame with its virtio_net_hdr.
    pub gso: bool,
    /// The plaintext body.
    pub body: Vec<u8>,
}

/// Our receiving half of one connection, with its counters.
pub struct Opener {
    cipher: Option<LessSafeKey>,
    conn_uid: u64,
    window: ReplayWindow,
    /// Datagrams dropped for failed authentication.
    pub bad_auth: u64,
    /// Datagrams dropped as replays or too old.
    pub replayed: u64,
}

impl Opener {
    pub fn new(keys: &SessionKeys, conn_uid: u64) -> Opener {
        Opener::with(Some(cipher(&keys.rx)), conn_uid)
    }

    /// A receiver for a connection that does not encrypt: it takes plain
    /// datagrams only (duplicates still dropped).
    pub fn plain(conn_uid: u64) -> Opener {
        Opener::with(None, conn_uid)
    }

    fn with(cipher: Option<LessSafeKey>, conn_uid: u64) -> Opener {
        Opener { cipher, conn_uid, window: ReplayWindow::default(), bad_auth: 0, replayed: 0 }
    }

    /// The plaintext body of an authentic, fresh datagram. Anything else is
    /// refused (and counted), never delivered.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Opened, OpenError> {
        let mut d = datagram.to_vec();
        let o = self.open_in_place(&mut d)?;
        Ok(Opened { control: o.control, gso: o.gso, body: o.body.to_vec() })
    }

    /// [`Opener::open`] where the datagram lies (a receive buffer): the
    /// body is decrypted in place and borrowed, not copied.
    pub fn open_in_place<'d>(&mut self, datagram: &'d mut [u8]) -> Result<OpenedIn<'d>, OpenError> {
        let (h, _) = Header::parse(datagram)?;
        if h.conn_uid != self.conn_uid {
            return Err(OpenError::OtherConnection(h.conn_uid));
        }
        // A piece is opened as part of the datagram it was cut from.
        if h.piece {
            return Err(OpenError::Piece);
        }
        if h.sealed != self.cipher.is_some() {
            return Err(if h.sealed { OpenError::Sealed } else { OpenError::NotSealed });
        }
        // Cheap refusal of obvious replays before the AEAD.
        if let Err(e) = self.window.check(h.counter) {
            self.replayed += 1;
            return Err(e.into());
        }
        let (aad, body) = datagram.split_at_mut(HEADER_LEN);
        let plain: &'d [u8] = match &self.cipher {
            Some(c) => {
                if body.len() < TAG_LEN {
                    self.bad_auth += 1;
                    return Err(OpenError::BadAuth);
                }
                // The body is the ciphertext, then the tag; the plaintext
                // is left where the ciphertext was.
                match c.open_in_place(nonce(h.counter), Aad::from(&*aad), body) {
                    Ok(msg) => msg,
                    Err(_) => {
                        self.bad_auth += 1;
                        return Err(OpenError::BadAuth);
                    }
                }
            }
            None => body,
        };
        if let Err(e) = self.window.accept(h.counter) {
            self.replayed += 1;
            return Err(e.into());
        }
        Ok(OpenedIn { control: h.control, gso: h.gso, body: plain })
    }
}

/// A datagram opened in place: its body borrowed from the datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct OpenedIn<'d> {
    pub control: bool,
    pub gso: bool,
    pub body: &'d [u8],
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pair() -> (SessionKeys, SessionKeys) {
        let a = SessionKeys { tx: [1; 32], rx: [2; 32] };
        let b = SessionKeys { tx: [2; 32], rx: [1; 32] };
        (a, b)
    }

    #[test]
    fn round_trip_replay_and_tamper() {
        let (a, b) = pair();
        let mut tx = Sealer::new(&a, 77);
        let mut rx = Opener::new(&b, 77);
        let d0 = tx.seal(b"hello").unwrap();
        let d1 = tx.seal(b"world").unwrap();
        assert!(!d0.windows(5).any(|w| w == b"hello"), "plaintext visible on the wire");
        assert_eq!(rx.open(&d1).unwrap().body, b"world");
        assert_eq!(rx.open(&d0).unwrap().body, b"hello", "reordering within the window is fine");
        assert_eq!(rx.open(&d0), Err(OpenError::Replay(Replay::Duplicate(0))));
        assert_eq!(rx.replayed, 1);
        let mut bad = tx.seal(b"again").unwrap();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(rx.open(&bad), Err(OpenError::BadAuth));
        // The header is authenticated too: a changed counter fails.
        let mut moved = tx.seal(b"x").unwrap();
        moved[19] ^= 0x40;
        assert_eq!(rx.open(&moved), Err(OpenError::BadAuth));
        assert_eq!(rx.bad_auth, 2);
        // Our own datagrams (sealed with our tx key) do not open with it.
        let mut own = Opener::new(&a, 77);
        assert_eq!(own.open(&d0), Err(OpenError::BadAuth));
        assert_eq!(rx.open(&Sealer::new(&a, 78).seal(b"y").unwrap()), Err(OpenError::OtherConnection(78)));
    }

    #[test]
    fn plaintext_datagrams_are_refused_when_encrypted() {
        let (_, b) = pair();
        let mut d = Vec::new();
        Header { sealed: false, control: false, gso: false, piece: false, conn_uid: 5, counter: 0 }.emit(&mut d);
        d.extend_from_slice(b"abc");
        assert_eq!(Opener::new(&b, 5).open(&d), Err(OpenError::NotSealed));
        // And a plain connection takes it, but refuses sealed ones.
        let mut plain = Opener::plain(5);
        assert_eq!(plain.open(&d).unwrap(), Opened { control: false, gso: false, body: b"abc".to_vec() });
        assert!(plain.open(&d).is_err(), "duplicates are dropped on plain connections too");
        let (a, _) = pair();
        assert_eq!(plain.open(&Sealer::new(&a, 5).seal(b"x").unwrap()), Err(OpenError::Sealed));
    }

    #[test]
    fn the_wire_is_the_same_as_the_rustcrypto_aead_made_it() {
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        use chacha20poly1305::{ChaCha20Poly1305, Key, Tag};
        let (a, b) = pair();
        let rc = |k: &[u8; 32]| ChaCha20Poly1305::new(Key::from_slice(k));
        let rc_nonce = |c: u64| {
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&c.to_be_bytes());
            chacha20poly1305::Nonce::from(n)
        };
        let mut tx = Sealer::new(&a, 8);
        let body = b"a frame record, sealed by ring";
        let d = tx.seal(body).unwrap();
        // Opened by the RustCrypto crate with the same key, nonce and header.
        let (aad, rest) = d.split_at(HEADER_LEN);
        let (msg, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut m = msg.to_vec();
        rc(&a.tx).decrypt_in_place_detached(&rc_nonce(0), aad, &mut m, Tag::from_slice(tag)).unwrap();
        assert_eq!(&m, body);
        // And the other way: sealed by it, opened by ours.
        let mut hdr = Vec::new();
        Header { sealed: true, control: false, gso: true, piece: false, conn_uid: 8, counter: 5 }.emit(&mut hdr);
        let mut m = b"a super-frame".to_vec();
        let t = rc(&b.tx).encrypt_in_place_detached(&rc_nonce(5), &hdr, &mut m).unwrap();
        let mut d = hdr.clone();
        d.extend_from_slice(&m);
        d.extend_from_slice(&t);
        let o = Opener::new(&a, 8).open(&d).unwrap();
        assert_eq!((o.gso, &o.body[..]), (true, &b"a super-frame"[..]));
    }

    #[test]
    fn pieces_are_never_opened_alone() {
        let mut d = Vec::new();
        Header { sealed: false, control: false, gso: false, piece: true, conn_uid: 5, counter: 9 }.emit(&mut d);
        d.extend_from_slice(b"piece");
        assert_eq!(Opener::plain(5).open(&d), Err(OpenError::Piece));
        let (_, b) = pair();
        assert_eq!(Opener::new(&b, 5).open(&d), Err(OpenError::Piece));
    }

    #[test]
    fn control_datagrams_keep_their_flag_sealed_or_not() {
        let (a, b) = pair();
        for (mut tx, mut rx) in [(Sealer::new(&a, 9), Opener::new(&b, 9)), (Sealer::plain(9), Opener::plain(9))] {
            let d = tx.seal_control(b"probe").unwrap();
            assert_eq!(d.len(), tx.overhead() + 5);
            assert_eq!(rx.open(&d).unwrap(), Opened { control: true, gso: false, body: b"probe".to_vec() });
            let d = tx.seal_gso(b"super-frame").unwrap();
            assert_eq!(rx.open(&d).unwrap(), Opened { control: false, gso: true, body: b"super-frame".to_vec() });
        }
    }

    #[test]
    fn gso_datagrams_sealed_in_place_open_in_place() {
        let (a, b) = pair();
        for (mut tx, mut rx) in [(Sealer::new(&a, 3), Opener::new(&b, 3)), (Sealer::plain(3), Opener::plain(3))] {
            // One buffer for several datagrams, as the capture keeps it.
            let mut buf = Vec::new();
            for body in [&b"first super-frame"[..], b"second", b"x"] {
                buf.clear();
                buf.resize(HEADER_LEN, 0);
                buf.extend_from_slice(body);
                tx.seal_gso_in_place(&mut buf).unwrap();
                assert_eq!(buf.len(), tx.overhead() + body.len());
                let copy = buf.clone();
                assert_eq!(rx.open_in_place(&mut buf).unwrap(), OpenedIn { control: false, gso: true, body });
                assert_eq!(rx.open(&copy), Err(OpenError::Replay(Replay::Duplicate(copy[19].into()))));
            }
        }
        // Tampered or short, in place too.
        let mut tx = Sealer::new(&a, 3);
        let mut rx = Opener::new(&b, 3);
        let mut d = tx.seal_gso(b"body").unwrap();
        let last = d.len() - 1;
        d[last] ^= 1;
        assert_eq!(rx.open_in_place(&mut d), Err(OpenError::BadAuth));
        let mut short = tx.seal(b"").unwrap();
        short.truncate(HEADER_LEN + 3);
        assert_eq!(rx.open_in_place(&mut short), Err(OpenError::BadAuth));
    }

    proptest! {
        #[test]
        fn any_body_round_trips(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..10)) {
            let (a, b) = pair();
            let mut tx = Sealer::new(&a, 1);
            let mut rx = Opener::new(&b, 1);
            for body in bodies {
                let d = tx.seal(&body).unwrap();
                prop_assert_eq!(rx.open(&d).unwrap().body, body);
            }
        }

        #[test]
        fn garbage_never_opens(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (_, b) = pair();
            let mut rx = Opener::new(&b, u64::from_be_bytes([d.get(4).copied().unwrap_or(0); 8]));
            prop_assert!(rx.open(&d).is_err());
        }
    }
}
