//! A whole `ovs-dpctl dump-flows` line: `format_dpif_flow` and
//! `dpif_flow_stats_format`.

use std::fmt::Write as _;

use super::action_fmt::fmt_actions;
use super::key_fmt::fmt_keys;
use crate::odp::flow::Flow;

/// Formats a whole `ovs-dpctl dump-flows` line (without the trailing newline):
/// `KEY, packets:N, bytes:N, used:T[, flags:F], actions:ACTIONS`.
///
/// `now_ms` is "now" on the kernel's monotonic clock, in milliseconds, the
/// clock `Flow::used` is on. `used` prints as `never` for a flow never used,
/// else as the age in seconds with three decimals, which is negative if `used`
/// is ahead of `now_ms`. When the caller passes `None` (no clock at hand, as in
/// golden tests), a used flow prints `used:0.000s`: the age is taken as zero.
pub fn format_flow(flow: &Flow, now_ms: Option<u64>) -> String {
    let mut out = String::new();
    fmt_keys(&mut out, &flow.key, flow.mask.as_deref(), false);
    let stats = flow.stats.unwrap_or_default();
    let _ = write!(out, ", packets:{}, bytes:{}, used:", stats.packets, stats.bytes);
    match flow.used {
        Some(used) if used != 0 => {
            let now = now_ms.unwrap_or(used);
            let age_ms = (now as i64).wrapping_sub(used as i64);
            let _ = write!(out, "{:.3}s", age_ms as f64 / 1000.0);
        }
        _ => out.push_str("never"),
    }
    if let Some(flags) = flow.tcp_flags.filter(|f| *f != 0) {
        out.push_str(", flags:");
        fmt_tcp_flag_letters(&mut out, u16::from(flags));
    }
    out.push_str(", actions:");
    fmt_actions(&mut out, flow.actions.as_deref().unwrap_or(&[]));
    out
}

/// `packet_format_tcp_flags`, used for `flags:` in a dump line.
fn fmt_tcp_flag_letters(out: &mut String, f: u16) {
    const LETTERS: [(u16, &str); 12] = [
        (0x002, "S"),
        (0x001, "F"),
        (0x008, "P"),
        (0x004, "R"),
        (0x020, "U"),
        (0x010, "."),
        (0x040, "E"),
        (0x080, "C"),
        (0x100, "N"),
        (0x200, "[200]"),
        (0x400, "[400]"),
        (0x800, "[800]"),
    ];
    if f == 0 {
        out.push_str("none");
        return;
    }
    for (bit, s) in LETTERS {
        if f & bit != 0 {
            out.push_str(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::odp::action::Action;
    use crate::odp::flow::FlowStats;
    use crate::odp::format::tables::{K_CT_LABELS, K_CT_MARK, K_CT_STATE, K_CT_ZONE};
    use crate::odp::key::{self, EthernetKey, Ipv4Key, KeyAttr, Mac};
    use crate::odp::nla::RawNla;

    /// A flow as the 6.1 kernel dumps it: every attribute with its mask,
    /// most of them wildcarded.
    fn kernel_flow() -> Flow {
        let ct = |kind: u16, len: usize| KeyAttr::Other(RawNla { kind, payload: vec![0; len] });
        let eth = EthernetKey { src: Mac([0, 0, 0, 0, 0, 1]), dst: Mac([0, 0, 0, 0, 0, 2]) };
        let ip = Ipv4Key {
            src: Ipv4Addr::new(10, 32, 0, 1),
            dst: Ipv4Addr::new(10, 32, 0, 2),
            proto: 1,
            tos: 0,
            ttl: 64,
            frag: 0,
        };
        let key = vec![
            KeyAttr::RecircId(0),
            KeyAttr::DpHash(0),
            KeyAttr::Priority(0),
            KeyAttr::InPort(2),
            KeyAttr::SkbMark(0),
            ct(K_CT_STATE, 4),
            ct(K_CT_ZONE, 2),
            ct(K_CT_MARK, 4),
            ct(K_CT_LABELS, 16),
            KeyAttr::Ethernet(eth),
            KeyAttr::EthType(0x0800),
            KeyAttr::Ipv4(ip),
            KeyAttr::Icmp(key::IcmpKey { icmp_type: 8, code: 0 }),
        ];
        let z4 = Ipv4Addr::UNSPECIFIED;
        let mask = vec![
            KeyAttr::RecircId(u32::MAX),
            KeyAttr::DpHash(0),
            KeyAttr::Priority(0),
            KeyAttr::InPort(u32::MAX),
            KeyAttr::SkbMark(0),
            ct(K_CT_STATE, 4),
            ct(K_CT_ZONE, 2),
            ct(K_CT_MARK, 4),
            ct(K_CT_LABELS, 16),
            KeyAttr::Ethernet(EthernetKey { src: Mac([0xff; 6]), dst: Mac([0xff; 6]) }),
            KeyAttr::EthType(0xffff),
            KeyAttr::Ipv4(Ipv4Key { src: z4, dst: z4, proto: 0, tos: 0, ttl: 0, frag: 0xff }),
            KeyAttr::Icmp(key::IcmpKey { icmp_type: 0, code: 0 }),
        ];
        Flow {
            key,
            mask: Some(mask),
            actions: Some(vec![Action::Output(3)]),
            stats: Some(FlowStats { packets: 3, bytes: 294 }),
            used: Some(1_000_000),
            ..Flow::default()
        }
    }

    #[test]
    fn dump_flows_line() {
        let want = "recirc_id(0),in_port(2),eth(src=00:00:00:00:00:01,dst=00:00:00:00:00:02),eth_type(0x0800),ipv4(frag=no), packets:3, bytes:294, used:0.052s, actions:3";
        assert_eq!(format_flow(&kernel_flow(), Some(1_000_052)), want);
    }

    #[test]
    fn dump_flows_used_flags_and_drop() {
        let mut f = kernel_flow();
        f.used = None;
        f.actions = Some(vec![]);
        f.tcp_flags = Some(0x12);
        let line = format_flow(&f, Some(5));
        assert!(line.ends_with(", used:never, flags:S., actions:drop"), "{line}");
        f.used = Some(10);
        assert!(format_flow(&f, Some(3)).contains("used:-0.007s"));
        assert!(format_flow(&f, None).contains("used:0.000s"));
        assert!(format_flow(&f, Some(1_234_567)).contains("used:1234.557s"));
    }
}
