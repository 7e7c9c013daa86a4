//! What arrives from peers about the fast datapath: heartbeat frames as the
//! datapath hands them up, and overlay messages (acknowledgements) from the
//! control connection. Any bytes, never a panic; what parses re-emits to
//! the same bytes' meaning.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weaver::fastdp::health::{Health, HealthConfig};
use weaver::fastdp::heartbeat::{Ack, Heartbeat};

fuzz_target!(|data: &[u8]| {
    if let Ok(hb) = Heartbeat::parse(data) {
        let again = hb.emit().expect("a parsed heartbeat has a valid length");
        assert_eq!(Heartbeat::parse(&again), Ok(hb));
    }
    if let Ok(Some(a)) = Ack::decode(data) {
        assert_eq!(Ack::decode(&a.encode()), Ok(Some(a)));
        // Acknowledgements the state machine never asked for change nothing.
        let mut h = Health::new(0, HealthConfig::default(), 1376, Some(9000));
        let _ = h.poll_probe(0);
        let _ = h.handle_ack(1, a.seq, a.len);
        let _ = h.handle_timeout(10_000);
    }
});
