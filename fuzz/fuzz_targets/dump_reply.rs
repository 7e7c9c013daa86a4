//! Replies to datapath, vport and flow dumps: the first byte picks the family,
//! the rest is one message's genl/ovs header and attributes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weaver::odp::datapath::Datapath;
use weaver::odp::flow::Flow;
use weaver::odp::frame::OvsFrame;
use weaver::odp::vport::Vport;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(f) = OvsFrame::parse(rest) else { return };
    match which % 3 {
        0 => {
            if let Ok(d) = Datapath::parse(f.dp_ifindex, &f.attrs) {
                assert_eq!(Datapath::parse(d.dp_ifindex, &d.emit_attrs()).expect("re-parse"), d);
            }
        }
        1 => {
            if let Ok(v) = Vport::parse(f.dp_ifindex, &f.attrs) {
                assert_eq!(Vport::parse(v.dp_ifindex, &v.emit_attrs()).expect("re-parse"), v);
            }
        }
        _ => {
            if let Ok(fl) = Flow::parse(f.dp_ifindex, &f.attrs) {
                assert_eq!(Flow::parse(fl.dp_ifindex, &fl.emit_attrs()).expect("re-parse"), fl);
                let _ = weaver::odp::format::format_flow(&fl, Some(0));
            }
        }
    }
});
