//! The dump-flows grammar parser: any text, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = weaver::odp::format::parse_key(s);
        let _ = weaver::odp::format::parse_actions(s);
    }
});
