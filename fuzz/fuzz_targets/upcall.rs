//! Whole datagrams from an upcall socket: nlmsghdr framing, ovs headers,
//! packet attributes, keys and actions. Must never panic; what parses must
//! re-emit to something that parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weaver::odp::packet::{parse_upcalls, PacketMsg, UpcallItem};

fuzz_target!(|data: &[u8]| {
    for item in parse_upcalls(data, 0x1d) {
        if let Ok(UpcallItem::Upcall(u)) = item {
            let again = PacketMsg::parse(u.msg.dp_ifindex, &u.msg.emit_attrs()).expect("re-parse of emitted upcall");
            assert_eq!(again, u.msg);
        }
    }
});
