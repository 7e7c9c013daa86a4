//! The `ovs-dpctl show` style summary of a datapath and its ports.

use std::fmt::Write;

use super::datapath::Datapath;
use super::vport::{Vport, VportType};

/// Formats a datapath like `ovs-dpctl show` does.
pub fn format_datapath(dp: &Datapath, ports: &[Vport]) -> String {
    let mut s = String::new();
    let name = dp.name.as_deref().unwrap_or("?");
    let _ = writeln!(s, "system@{name}:");
    if let Some(st) = dp.stats {
        let _ = writeln!(s, "  lookups: hit:{} missed:{} lost:{}", st.hit, st.missed, st.lost);
        let _ = writeln!(s, "  flows: {}", st.flows);
    }
    if let (Some(m), Some(st)) = (dp.megaflow_stats, dp.stats) {
        let pkts = st.hit + st.missed;
        let per_pkt = if pkts > 0 { m.mask_hit as f64 / pkts as f64 } else { 0.0 };
        let _ = writeln!(s, "  masks: hit:{} total:{} hit/pkt:{:.2}", m.mask_hit, m.masks, per_pkt);
    }
    if let Some(f) = dp.user_features {
        let _ = writeln!(s, "  features: {}", features(f));
    }
    for p in ports {
        let kind = p.kind.unwrap_or(VportType::Unknown(0));
        let mut t = kind.name();
        if kind != VportType::Netdev {
            let mut opts = Vec::new();
            if let Some(port) = p.options.as_ref().and_then(|o| o.dst_port) {
                opts.push(format!("dst_port={port}"));
            }
            if opts.is_empty() {
                t = format!(" ({t})");
            } else {
                t = format!(" ({t}: {})", opts.join(", "));
            }
        } else {
            t.clear();
        }
        let _ = writeln!(s, "  port {}: {}{}", p.port_no.unwrap_or_default(), p.name.as_deref().unwrap_or("?"), t);
        if let Some(st) = p.stats {
            let _ = writeln!(
                s,
                "    RX packets:{} errors:{} dropped:{}  TX packets:{} errors:{} dropped:{}",
                st.rx_packets, st.rx_errors, st.rx_dropped, st.tx_packets, st.tx_errors, st.tx_dropped
            );
        }
    }
    s
}

fn features(f: u32) -> String {
    use super::datapath::*;
    let mut v = Vec::new();
    for (bit, name) in [
        (F_UNALIGNED, "unaligned"),
        (F_VPORT_PIDS, "vport-pids"),
        (F_TC_RECIRC_SHARING, "tc-recirc-sharing"),
        (F_DISPATCH_UPCALL_PER_CPU, "per-cpu-dispatch"),
    ] {
        if f & bit != 0 {
            v.push(name.to_string());
        }
    }
    let rest = f & !(F_UNALIGNED | F_VPORT_PIDS | F_TC_RECIRC_SHARING | F_DISPATCH_UPCALL_PER_CPU);
    if rest != 0 {
        v.push(format!("0x{rest:x}"));
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odp::datapath::DpStats;
    use crate::odp::vport::VportOptions;

    #[test]
    fn shows_ports_and_stats() {
        let dp = Datapath {
            name: Some("weave".into()),
            stats: Some(DpStats { hit: 5, missed: 2, lost: 0, flows: 1 }),
            user_features: Some(3),
            ..Default::default()
        };
        let mut p0 = Vport::new(1);
        p0.port_no = Some(0);
        p0.name = Some("weave".into());
        p0.kind = Some(VportType::Internal);
        let mut p1 = Vport::new(1);
        p1.port_no = Some(1);
        p1.name = Some("vxlan-6784".into());
        p1.kind = Some(VportType::Vxlan);
        p1.options = Some(VportOptions { dst_port: Some(6784), other: vec![] });
        let s = format_datapath(&dp, &[p0, p1]);
        assert_eq!(
            s,
            "system@weave:\n  lookups: hit:5 missed:2 lost:0\n  flows: 1\n  features: unaligned,vport-pids\n  port 0: weave (internal)\n  port 1: vxlan-6784 (vxlan: dst_port=6784)\n"
        );
    }
}
