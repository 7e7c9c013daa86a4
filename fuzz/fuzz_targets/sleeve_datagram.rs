//! Sleeve datagrams as they arrive on UDP 6783, from anyone: the header and
//! frame parser, and the opener of an encrypted connection; captured
//! frames too big for the path; and GSO super-frames (their body, their
//! virtio_net_hdr, and cutting them into segments); and pieces of GSO
//! datagrams, put together (the input cut into a run of pieces). Any
//! bytes, never a panic, and nothing unauthenticated is ever delivered.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weaver::mesh::conn::SessionKeys;
use weaver::sleeve::oversize;
use weaver::sleeve::pieces::Reassembler;
use weaver::sleeve::seal::{OpenError, Opener};
use weaver::sleeve::segment::{self, VnetHdr};
use weaver::sleeve::wire::{parse_frames, parse_gso, Control, Header, PieceRef, HEADER_LEN, PIECE_HDR};

fuzz_target!(|data: &[u8]| {
    // Captured frames too big for a path: any bytes, any MTU.
    if let Some((m, frame)) = data.split_first_chunk::<2>() {
        let _ = oversize::handle(frame, u16::from_be_bytes(*m));
    }
    // A run of piece datagrams: each a header, a piece header and bytes,
    // its length in the two bytes before it. Whatever comes out whole is
    // as long as its pieces said.
    let mut r = Reassembler::default();
    let mut rest = data;
    let mut now = 0;
    while let Some((len, after)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(after.len());
        let (d, next) = after.split_at(len);
        rest = next;
        now += 100;
        if let (Ok((h, _)), Some(b)) = (Header::parse(d), d.get(HEADER_LEN..)) {
            if let Ok(p) = PieceRef::parse(b) {
                assert!(b.len() > PIECE_HDR);
                if let Ok(Some(whole)) = r.add(now, h.conn_uid, h.counter, p) {
                    assert_eq!(whole.len(), p.total as usize);
                    r.recycle(whole);
                }
            }
        }
    }
    if let Ok((h, body)) = Header::parse(data) {
        if !h.sealed {
            let _ = parse_frames(body);
            let _ = Control::parse(body);
            // A GSO body from a peer: its header, then cut as the
            // receiver would (or refused).
            if let Ok((vnet, f)) = parse_gso(body) {
                if let Ok(v) = VnetHdr::parse(&vnet) {
                    let _ = segment::finish(&v, &f.bytes);
                }
            }
        }
        let keys = SessionKeys { tx: [3; 32], rx: [4; 32] };
        let mut o = Opener::new(&keys, h.conn_uid);
        // Without the key, forging a tag is infeasible: nothing opens.
        assert!(o.open(data).is_err());
        // A plain connection opens only unsealed datagrams (refusing some
        // for their counter, as the window does), and each once.
        let mut p = Opener::plain(h.conn_uid);
        let opened = p.open(data);
        match &opened {
            Ok(_) => assert!(!h.sealed),
            // A piece is only ever opened as part of its whole datagram.
            Err(e) => assert!(h.sealed || h.piece || matches!(e, OpenError::Replay(_)), "{e}"),
        }
        if let Ok(o) = opened {
            assert_eq!(o.control, h.control);
            assert_eq!(o.body, body);
            assert!(p.open(data).is_err(), "a duplicate is dropped");
        }
    }
});
