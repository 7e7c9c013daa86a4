//! The connection layer's parsers: any bytes, cut anywhere, never a panic.
//! The frame decoder (every frame also decoded as a protobuf `Frame` and
//! `Control`), then a handshake machine fed the same bytes after the magic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weaver::mesh::conn::wire::{self, MAGIC};
use weaver::mesh::conn::{ConnConfig, ConnParams, FrameDecoder, Handshake};
use weaver::mesh::peer::{Identity, PeerName, PeerUid, ShortId};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, data)) = data.split_first() else { return };
    let chunk = usize::from(ctl & 0x3f) + 1;

    let mut dec = FrameDecoder::new(4096);
    'feed: for c in data.chunks(chunk) {
        dec.push(c);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.len() <= 4096);
                    let _ = wire::decode_frame(&f);
                    let _ = wire::decode_control(&f);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }

    let me = Identity {
        name: PeerName::from_u64(1),
        nickname: "fuzz".into(),
        uid: PeerUid(1),
        short_id: ShortId::from_bits(1),
    };
    let mut cfg = ConnConfig::new(me);
    if ctl & 0x40 != 0 {
        cfg = cfg.with_password(b"fuzz");
    }
    let params =
        ConnParams { outbound: ctl & 0x80 != 0, conn_id: 7, trusts_remote: false, key_material: Default::default() };
    let mut hs = Handshake::new(&cfg, params);
    let _ = hs.handle_bytes(&MAGIC);
    for c in data.chunks(chunk) {
        if hs.handle_bytes(c).is_err() {
            break;
        }
        let _ = hs.poll_transmit();
    }
    let _ = hs.handle_eof();
});
