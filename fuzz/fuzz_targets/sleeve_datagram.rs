//! Sleeve datagrams as they arrive on UDP 6783, from anyone: the header and
//! frame parser, and the opener of an encrypted connection; and captured
//! frames too big for the path. Any bytes, never
//! a panic, and nothing unauthenticated is ever delivered.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weaver::mesh::conn::SessionKeys;
use weaver::sleeve::oversize;
use weaver::sleeve::seal::Opener;
use weaver::sleeve::wire::{parse_frames, Header};

fuzz_target!(|data: &[u8]| {
    // Captured frames too big for a path: any bytes, any MTU.
    if let Some((m, frame)) = data.split_first_chunk::<2>() {
        let _ = oversize::handle(frame, u16::from_be_bytes(*m));
    }
    if let Ok((h, body)) = Header::parse(data) {
        if !h.sealed {
            let _ = parse_frames(body);
        }
        let keys = SessionKeys { tx: [3; 32], rx: [4; 32] };
        let mut o = Opener::new(&keys, h.conn_uid);
        // Without the key, forging a tag is infeasible: nothing opens.
        assert!(o.open(data).is_err());
    }
});
