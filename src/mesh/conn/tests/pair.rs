//! Two handshake machines (then sessions) wired back to back in memory.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use zeroize::Zeroizing;

use crate::mesh::conn::wire::{self, pb, MAGIC};
use crate::mesh::conn::*;
use crate::mesh::peer::{Identity, PeerName, PeerUid, ShortId};

pub(super) fn identity(n: u64) -> Identity {
    Identity {
        name: PeerName::from_u64(n),
        nickname: format!("peer{n}"),
        uid: PeerUid(1000 + n),
        short_id: ShortId::from_bits(n as u32),
    }
}

pub(super) fn cfg(n: u64, password: Option<&str>) -> ConnConfig {
    let c = ConnConfig::new(identity(n));
    match password {
        Some(p) => c.with_password(p.as_bytes()),
        None => c,
    }
}

fn params(outbound: bool, seed: u8) -> ConnParams {
    ConnParams {
        outbound,
        conn_id: 0x1111 * u64::from(seed) + u64::from(outbound),
        trusts_remote: false,
        key_material: Zeroizing::new([seed ^ u8::from(outbound); 32]),
    }
}

/// One end: handshaking, then up; or failed.
pub(super) struct End {
    hs: Option<Handshake>,
    up: Option<(ConnInfo, Session)>,
    err: Option<HandshakeError>,
    got: Vec<Vec<u8>>,
    /// Sent as soon as this end is up, before the other may be.
    first: Option<Vec<u8>>,
    now: Instant,
}

impl End {
    pub(super) fn new(cfg: &ConnConfig, params: ConnParams) -> End {
        let now = Instant::now();
        End { hs: Some(Handshake::new(cfg, params)), up: None, err: None, got: Vec::new(), first: None, now }
    }

    fn transmit(&mut self) -> Option<Vec<u8>> {
        match (&mut self.hs, &mut self.up) {
            (Some(h), _) => h.poll_transmit(),
            (None, Some((_, s))) => s.poll_transmit(),
            _ => None,
        }
    }

    fn receive(&mut self, bytes: &[u8], chunk: usize) {
        for c in bytes.chunks(chunk.max(1)) {
            if self.err.is_some() {
                return;
            }
            if let Some(h) = &mut self.hs {
                if let Err(e) = h.handle_bytes(c) {
                    self.err = Some(e);
                    return;
                }
                if h.is_done() {
                    let h = self.hs.take().expect("checked");
                    let (info, mut session) = h.finish(self.now).expect("done");
                    if let Some(m) = self.first.take() {
                        session.send_message(&m).expect("small");
                    }
                    self.up = Some((info, session));
                }
            } else if let Some((_, s)) = &mut self.up {
                s.handle_bytes(self.now, c);
            }
            if let Some((_, s)) = &mut self.up {
                while let Some(m) = s.poll_message().expect("valid session traffic") {
                    let Payload::Mesh(m) = m else { panic!("unexpected overlay message") };
                    self.got.push(m);
                }
            }
        }
    }

    /// The remote closed: an end still handshaking fails.
    fn see_eof(&mut self) {
        if let (Some(h), None) = (&mut self.hs, &self.err) {
            self.err = Some(h.handle_eof());
        }
    }

    pub(super) fn info(&self) -> &ConnInfo {
        &self.up.as_ref().unwrap_or_else(|| panic!("not up: {:?}", self.err)).0
    }

    fn session(&mut self) -> &mut Session {
        &mut self.up.as_mut().expect("up").1
    }

    pub(super) fn err(&self) -> String {
        self.err.as_ref().map(|e| e.to_string()).unwrap_or_else(|| "no error".into())
    }
}

/// Runs both ends until quiet, delivering in chunks of `chunk` bytes; a
/// failed end then "closes", so a waiting end sees EOF.
pub(super) fn run(a: &mut End, b: &mut End, chunk: usize) {
    for _ in 0..100 {
        let (x, y) = (a.transmit(), b.transmit());
        if x.is_none() && y.is_none() {
            break;
        }
        if let Some(x) = x {
            b.receive(&x, chunk);
        }
        if let Some(y) = y {
            a.receive(&y, chunk);
        }
    }
    let (a_failed, b_failed) = (a.err.is_some(), b.err.is_some());
    if a_failed {
        b.see_eof();
    }
    if b_failed {
        a.see_eof();
    }
}

fn pair(ca: &ConnConfig, cb: &ConnConfig, chunk: usize) -> (End, End) {
    let (mut a, mut b) = (End::new(ca, params(true, 1)), End::new(cb, params(false, 2)));
    run(&mut a, &mut b, chunk);
    (a, b)
}

/// Moves one side's pending bytes to the other side's session.
fn carry(from: &mut End, to: &mut End) {
    if let Some(bytes) = from.transmit() {
        to.receive(&bytes, usize::MAX);
    }
}

#[test]
fn plaintext_handshake_establishes() {
    let (a, b) = pair(&cfg(1, None), &cfg(2, None), usize::MAX);
    assert_eq!(a.info().remote, identity(2));
    assert_eq!(b.info().remote, identity(1));
    assert_eq!(a.info().version, 1);
    assert_eq!(a.info().conn_uid(), b.info().conn_uid());
    assert_eq!(a.info().remote_conn_id, b.info().local_conn_id);
    assert!(a.info().outbound && !b.info().outbound);
    assert!(a.info().session_keys.is_none() && a.info().datapath_keys().is_none());
    assert_eq!(b.info().remote_overlays, vec!["fastdp", "sleeve"]);
}

#[test]
fn same_password_establishes_with_mirrored_keys_and_carries_messages() {
    let (mut a, mut b) = pair(&cfg(1, Some("s3cret")), &cfg(2, Some("s3cret")), usize::MAX);
    let (ka, kb) = (a.info().session_keys.clone().unwrap(), b.info().session_keys.clone().unwrap());
    assert_eq!(ka.tx, kb.rx);
    assert_eq!(ka.rx, kb.tx);
    assert_ne!(ka.tx, ka.rx);
    assert!(a.info().encrypted() && a.info().datapath_keys().is_some());

    a.session().send_message(b"topology gossip").unwrap();
    let wire = a.transmit().unwrap();
    assert!(!wire.windows(8).any(|w| w == b"topology"), "plaintext on the wire");
    b.receive(&wire, 3);
    b.session().send_message(b"reply").unwrap();
    carry(&mut b, &mut a);
    assert_eq!(b.got, vec![b"topology gossip".to_vec()]);
    assert_eq!(a.got, vec![b"reply".to_vec()]);
}

#[test]
fn session_keys_differ_per_connection() {
    let c = (cfg(1, Some("pw")), cfg(2, Some("pw")));
    let (a1, _) = pair(&c.0, &c.1, usize::MAX);
    let (a2, _) = pair(&c.0, &c.1, usize::MAX);
    assert_ne!(a1.info().session_keys, a2.info().session_keys, "same params, fresh Noise keys");
}

#[test]
fn different_passwords_fail_on_both_ends_clearly() {
    let (a, b) = pair(&cfg(1, Some("one")), &cfg(2, Some("two")), usize::MAX);
    assert!(a.up.is_none() && b.up.is_none());
    assert_eq!(b.err(), "password mismatch or corrupted handshake");
    assert_eq!(a.err(), "refused by the remote: password mismatch or corrupted handshake");
}

#[test]
fn password_on_one_end_only_fails_on_both_ends() {
    let (a, b) = pair(&cfg(1, Some("pw")), &cfg(2, None), usize::MAX);
    assert_eq!(a.err(), "encryption mismatch: we have a password set but the remote has none");
    assert_eq!(b.err(), "encryption mismatch: the remote has a password set but we have none");
}

#[test]
fn versions_without_overlap_fail_naming_both_ranges() {
    let mut ca = cfg(1, None);
    ca.versions = VersionRange { min: 2, max: 3 };
    let (a, b) = pair(&ca, &cfg(2, None), usize::MAX);
    assert_eq!(a.err(), "no common protocol version: ours 2..=3, the remote's 1..=1");
    assert_eq!(b.err(), "no common protocol version: ours 1..=1, the remote's 2..=3");
}

#[test]
fn the_highest_common_version_wins() {
    let (mut ca, mut cb) = (cfg(1, Some("pw")), cfg(2, Some("pw")));
    ca.versions = VersionRange { min: 1, max: 3 };
    cb.versions = VersionRange { min: 2, max: 5 };
    let (a, b) = pair(&ca, &cb, usize::MAX);
    assert_eq!((a.info().version, b.info().version), (3, 3));
}

#[test]
fn connecting_to_ourself_is_refused_for_good() {
    let c = cfg(1, Some("pw"));
    let (a, b) = pair(&c, &c, usize::MAX);
    assert_eq!(a.err(), "cannot connect to ourself");
    assert_eq!(b.err(), "cannot connect to ourself");
    assert!(a.err.as_ref().unwrap().is_permanent());
}

#[test]
fn a_remote_with_our_name_and_another_uid_is_a_collision() {
    let mut cb = cfg(1, None);
    cb.identity.uid = PeerUid(77);
    let (a, _) = pair(&cfg(1, None), &cb, usize::MAX);
    assert!(a.err().starts_with("peer name collision"), "{}", a.err());
    assert!(a.err.as_ref().unwrap().is_permanent());
}

#[test]
fn byte_at_a_time_delivery_establishes() {
    for pw in [None, Some("pw")] {
        let (a, b) = pair(&cfg(1, pw), &cfg(2, pw), 1);
        assert_eq!((a.info().remote.name, b.info().remote.name), (identity(2).name, identity(1).name));
    }
}

#[test]
fn messages_sent_right_after_the_handshake_are_not_lost() {
    for pw in [None, Some("pw")] {
        let (mut a, mut b) = (End::new(&cfg(1, pw), params(true, 1)), End::new(&cfg(2, pw), params(false, 2)));
        a.first = Some(b"from a".to_vec());
        b.first = Some(b"from b".to_vec());
        run(&mut a, &mut b, usize::MAX);
        assert_eq!(a.got, vec![b"from b".to_vec()], "{pw:?}");
        assert_eq!(b.got, vec![b"from a".to_vec()], "{pw:?}");
    }
}

#[test]
fn trust_flags_travel_and_decide_datapath_encryption() {
    let (ca, cb) = (cfg(1, Some("pw")), cfg(2, Some("pw")));
    let mut pa = params(true, 1);
    pa.trusts_remote = true;
    let (mut a, mut b) = (End::new(&ca, pa), End::new(&cb, params(false, 2)));
    run(&mut a, &mut b, usize::MAX);
    assert!(a.info().trusts_remote && !a.info().trusted_by_remote);
    assert!(b.info().trusted_by_remote && !b.info().trusts_remote);
    assert!(a.info().datapath_keys().is_some(), "trust must be mutual");

    let (mut pa, mut pb) = (params(true, 1), params(false, 2));
    pa.trusts_remote = true;
    pb.trusts_remote = true;
    let (mut a, mut b) = (End::new(&ca, pa), End::new(&cb, pb));
    run(&mut a, &mut b, usize::MAX);
    assert!(a.info().datapath_keys().is_none() && b.info().datapath_keys().is_none());
    assert!(a.info().session_keys.is_some(), "still exported");
}

#[test]
fn a_tampered_hello_breaks_the_encrypted_handshake() {
    let mut ca = cfg(1, Some("pw"));
    ca.versions = VersionRange { min: 1, max: 2 };
    let (mut a, mut b) = (End::new(&ca, params(true, 1)), End::new(&cfg(2, Some("pw")), params(false, 2)));
    // A man in the middle rewrites A's range to 1..=1: still compatible, but
    // the Noise prologues now differ.
    let _ = a.transmit().unwrap();
    let forged = pb::Hello { min_version: 1, max_version: 1, encrypted: true };
    let frame = pb::Frame { body: Some(pb::frame::Body::Hello(forged)) };
    let mut bytes = MAGIC.to_vec();
    bytes.extend(wire::encode_framed(&frame, 1000).unwrap());
    b.receive(&bytes, usize::MAX);
    run(&mut a, &mut b, usize::MAX);
    assert!(a.up.is_none() && b.up.is_none());
    assert!(a.err().contains("password mismatch or corrupted handshake"), "{}", a.err());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut e = End::new(&cfg(1, None), params(false, 1));
    e.receive(b"GET / HTTP/1.1\r\n\r\n", usize::MAX);
    assert_eq!(e.err(), "not a weaver peer: the connection opened with [47, 45, 54, 20, 2f, 20, 48, 54]");
    let mut e = End::new(&cfg(1, None), params(false, 1));
    e.receive(b"weave\x01\x02", 2);
    assert_eq!(e.err(), "the remote speaks Weave Net's protocol, not weaver's");
    let mut e = End::new(&cfg(1, None), params(false, 1));
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
    e.receive(&bytes, usize::MAX);
    assert!(e.err().starts_with("malformed frame"), "{}", e.err());
    let mut e = End::new(&cfg(1, None), params(false, 1));
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&[0xff, 0, 0, 0]);
    e.receive(&bytes, usize::MAX);
    assert!(e.err().contains("exceeds the limit"), "{}", e.err());
    // The refusal is queued for the remote.
    let refusal = e.transmit().unwrap();
    assert!(refusal.windows(6).any(|w| w == b"exceed"));
}

#[test]
fn plaintext_injected_into_an_encrypted_session_is_refused() {
    let (_, mut b) = pair(&cfg(1, Some("pw")), &cfg(2, Some("pw")), usize::MAX);
    let frame = wire::plain(pb::control::Body::Message(b"forged".to_vec()));
    let bytes = wire::encode_framed(&frame, 1000).unwrap();
    let s = b.session();
    s.handle_bytes(Instant::now(), &bytes);
    assert_eq!(s.poll_message(), Err(SessionError::Unexpected("a plaintext control message")));
}

#[test]
fn heartbeats_flow_and_silence_times_out() {
    let (mut a, mut b) = pair(&cfg(1, Some("pw")), &cfg(2, Some("pw")), usize::MAX);
    let t0 = a.now;
    let s = a.session();
    assert_eq!(s.poll_timeout(), t0 + Duration::from_secs(10));
    s.handle_timeout(t0 + Duration::from_secs(10)).unwrap();
    let hb = s.poll_transmit().expect("a heartbeat");
    let bs = b.session();
    bs.handle_bytes(t0, &hb);
    assert_eq!(bs.poll_message(), Ok(None), "heartbeats are not delivered");
    // Paused, the deadline is suspended; resumed, it restarts from then.
    let s = a.session();
    s.set_paused(t0, true);
    assert!(s.handle_timeout(t0 + Duration::from_secs(60)).is_ok());
    s.set_paused(t0 + Duration::from_secs(60), false);
    assert!(s.handle_timeout(t0 + Duration::from_secs(89)).is_ok());
    assert_eq!(
        s.handle_timeout(t0 + Duration::from_secs(90)),
        Err(SessionError::HeartbeatTimeout(Duration::from_secs(30)))
    );
}

#[test]
fn oversized_messages_are_refused_and_the_limit_is_exact() {
    for pw in [None, Some("pw")] {
        let (mut ca, mut cb) = (cfg(1, pw), cfg(2, pw));
        ca.max_frame_len = 400_000;
        cb.max_frame_len = 200_000;
        let (mut a, mut b) = pair(&ca, &cb, usize::MAX);
        let max = a.session().max_message_len();
        assert!(max > 190_000 && max < 200_000, "the smaller limit wins: {max}");
        assert_eq!(b.session().max_message_len(), max);
        assert_eq!(a.session().send_message(&vec![1; max + 1]), Err(TooLarge { len: max + 1, max }));
        a.session().send_message(&vec![1; max]).unwrap();
        carry(&mut a, &mut b);
        assert_eq!(b.got.len(), 1);
        assert_eq!(b.got[0].len(), max);
    }
}

#[test]
fn a_close_frame_reports_the_reason() {
    let (mut a, mut b) = pair(&cfg(1, Some("pw")), &cfg(2, Some("pw")), usize::MAX);
    a.session().close("duplicate connection\n");
    a.session().send_message(b"ignored").unwrap();
    let bytes = a.transmit().unwrap();
    let s = b.session();
    s.handle_bytes(Instant::now(), &bytes);
    assert_eq!(s.poll_message(), Err(SessionError::RemoteClosed("duplicate connection?".into())));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_after_the_magic_never_panic(data in prop::collection::vec(any::<u8>(), 0..600), pw in any::<bool>()) {
        let c = cfg(1, pw.then_some("pw"));
        for outbound in [false, true] {
            let mut h = Handshake::new(&c, params(outbound, 1));
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&data);
            let _ = h.handle_bytes(&bytes);
            let _ = h.poll_transmit();
            let _ = h.handle_eof();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_chunk_size_establishes(chunk in 1usize..300, pw in any::<bool>()) {
        let p = pw.then_some("pw");
        let (a, b) = pair(&cfg(1, p), &cfg(2, p), chunk);
        prop_assert_eq!(a.info().conn_uid(), b.info().conn_uid());
    }
}
