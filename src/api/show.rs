//! Text forms of the API's answers, as `weavectl` prints them.

use std::fmt::Write;

use super::{ConnectionView, PeerView, Status};

/// `weavectl status`.
pub fn format_status(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "        Version: {}", s.version);
    let _ = writeln!(o, "        Overlay: {} ({})", s.overlay, s.reason);
    if let Some(d) = &s.datapath {
        let _ = writeln!(o, "       Datapath: {d}");
    }
    if let Some(m) = &s.mesh {
        let _ = writeln!(o);
        let _ = writeln!(o, "        Service: router");
        let _ = writeln!(o, "           Name: {}({})", m.name, m.nickname);
        let _ = writeln!(o, "       Short ID: {}", m.short_id);
        let _ = writeln!(o, "     Encryption: {}", if m.encryption { "enabled" } else { "disabled" });
        let _ = writeln!(o, "  PeerDiscovery: {}", if m.discovery { "enabled" } else { "disabled" });
        let _ = writeln!(o, "        Targets: {}", m.targets.len());
        let total: usize = m.connections.values().sum();
        let by_state: Vec<String> =
            m.connections.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{n} {k}")).collect();
        let detail = if by_state.is_empty() { String::new() } else { format!(" ({})", by_state.join(", ")) };
        let _ = writeln!(o, "    Connections: {total}{detail}");
        let _ = writeln!(o, "          Peers: {}", m.peers);
    }
    if let Some(u) = &s.upcalls {
        let lost = u.kernel_lost.map(|l| format!(", {l} lost in the kernel")).unwrap_or_default();
        let _ = writeln!(
            o,
            "        Upcalls: {} received by {} handlers ({}); dropped: {} queue full, {} rate-limited{lost}",
            u.received, u.handlers, u.dispatch, u.queue_full, u.rate_limited
        );
    }
    if let Some(v) = &s.sleeve {
        let _ = writeln!(
            o,
            "         Sleeve: {} frames captured, {} injected, {} relayed; {} datagrams sent, {} received",
            v.captured, v.injected, v.relayed, v.datagrams_sent, v.datagrams_received
        );
        if let Some(line) = gso_line(v) {
            let _ = writeln!(o, "            GSO: {line}");
        }
        let mut dropped: Vec<String> = v.drops.iter().map(|(k, n)| format!("{n} {k}")).collect();
        for (k, n) in [
            ("unknown connection", v.unknown),
            ("malformed", v.malformed),
            ("refused (authentication, replay)", v.refused),
            ("no connection", v.no_connection),
            ("capture buffer full", v.capture_dropped),
            ("captured over the MTU", v.capture_truncated),
            ("unfinished (bad offload header)", v.unfinished_dropped),
            ("UDP socket full", v.udp_dropped),
            ("send errors", v.send_errors),
            ("inject errors", v.inject_errors),
        ] {
            if n > 0 {
                dropped.push(format!("{n} {k}"));
            }
        }
        if !dropped.is_empty() {
            let _ = writeln!(o, "        Dropped: {}", dropped.join(", "));
        }
        if v.frag_needed + v.fragmented > 0 {
            let _ = writeln!(o, "      Oversized: {} frag-needed sent, {} fragmented", v.frag_needed, v.fragmented);
        }
    }
    o
}

/// `weavectl status peers`: each peer, then its connections indented.
pub fn format_peers(peers: &[PeerView]) -> String {
    let mut o = String::new();
    for p in peers {
        let _ = writeln!(o, "{}({})", p.name, p.nickname);
        for c in &p.connections {
            let dir = if c.outbound { "->" } else { "<-" };
            let est = if c.established { "established" } else { "pending" };
            let _ = writeln!(o, "   {dir} {:<21} {}({}) {est}", c.addr, c.name, c.nickname);
        }
    }
    o
}

/// `weavectl status connections`: one line per connection.
pub fn format_connections(conns: &[ConnectionView]) -> String {
    let mut o = String::new();
    for c in conns {
        let dir = if c.direction == "outbound" { "->" } else { "<-" };
        let peer = match (&c.peer, &c.nickname) {
            (Some(p), Some(n)) => format!("{p}({n})"),
            (Some(p), None) => p.clone(),
            _ => String::new(),
        };
        let enc = if c.encrypted { "encrypted" } else { "unencrypted" };
        let mtu = c.mtu.map(|m| format!("mtu={m}")).unwrap_or_default();
        let mut info = c.info.clone();
        if let Some(h) = &c.health {
            let mut extra = vec![format!("{:.0}s", h.for_ms as f64 / 1000.0)];
            if let Some(r) = h.rtt_ms {
                extra.push(format!("rtt={r}ms"));
            }
            extra.push(format!("heartbeats={}/{}", h.acked, h.sent));
            if let Some(j) = h.jumbo_mtu {
                extra.push(format!("underlay carries mtu={j} (--mtu {j})"));
            }
            info = format!("[{}] {info}", extra.join(" "));
        } else if let Some(k) = &c.sleeve {
            let mut extra = vec![format!("{:.0}s", k.for_ms as f64 / 1000.0)];
            if let Some(r) = k.rtt_ms {
                extra.push(format!("rtt={r}ms"));
            }
            extra.push(format!("heartbeats={}/{}", k.heartbeats_acked, k.heartbeats_sent));
            // Super-frames go whole in pieces to peers that take those,
            // else only where fragments are carried.
            match k.fragments {
                _ if k.pieces => extra.push("super-frames whole in pieces".into()),
                Some(crate::sleeve::link::Fragments::Carried) => extra.push("super-frames whole".into()),
                Some(f) => extra.push(format!("fragments {f}: super-frames cut")),
                None => {}
            }
            info = format!("[{}] {info}", extra.join(" "));
        }
        let _ = writeln!(
            o,
            "{dir} {:<21} {:<11} {:<16} {enc:<11} {mtu:<8} {peer} {}",
            c.addr,
            c.state,
            c.overlay,
            info.trim_end()
        );
    }
    o
}

/// `weavectl status ipam`.
pub fn format_ipam(s: &crate::ipam::IpamStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "        Range: {}", s.range);
    let _ = writeln!(o, "DefaultSubnet: {}", s.default_subnet);
    let _ = writeln!(o, "         Init: {}", s.init);
    if s.seeds.is_empty() {
        let _ = writeln!(o, "         Ring: not seeded yet");
    } else {
        let _ = writeln!(o, "         Ring: seeded by {} peer(s)", s.seeds.len());
    }
    if let Some(c) = &s.consensus {
        let _ = writeln!(o, "    Consensus: {c}");
    }
    let _ = writeln!(o, "    Allocated: {} here, {} free here, {} waiting", s.allocated, s.free_here, s.pending);
    if !s.owners.is_empty() {
        let _ = writeln!(o, "\n{:<18} {:>10} {:>10}  {:<12} RANGES", "PEER", "SIZE", "FREE", "REACHABLE");
        for p in &s.owners {
            let _ = writeln!(
                o,
                "{:<18} {:>10} {:>10}  {:<12} {}",
                p.peer,
                p.size,
                p.free,
                if p.reachable { "yes" } else { "UNREACHABLE" },
                p.ranges.join(" ")
            );
        }
    }
    if !s.unreachable_owners.is_empty() {
        let _ = writeln!(o, "\nUnreachable owners: {}", s.unreachable_owners.join(", "));
    }
    for e in &s.errors {
        let _ = writeln!(o, "\nERROR: {e}");
    }
    o
}

/// The sleeve's super-frames, when there were any.
fn gso_line(v: &crate::daemon::sleeve::SleeveStatsView) -> Option<String> {
    if v.gso_sent + v.gso_received + v.segmented == 0 {
        return None;
    }
    let pieces = match (v.pieces_sent, v.udp_gso) {
        (0, _) => String::new(),
        (n, true) => format!("; {n} in pieces"),
        (n, false) => format!("; {n} in pieces, one datagram each (no UDP GSO)"),
    };
    Some(format!(
        "{} super-frames sent whole{pieces}, {} received whole ({} injected whole); {} cut here",
        v.gso_sent, v.gso_received, v.gso_injected, v.segmented
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PeerLinkView;

    #[test]
    fn peers_show_the_chain() {
        let p = |n: &str, links: Vec<PeerLinkView>| PeerView {
            name: n.into(),
            nickname: format!("host-{n}"),
            uid: 1,
            short_id: 1,
            version: 1,
            connections: links,
        };
        let l = |n: &str, out: bool| PeerLinkView {
            name: n.into(),
            nickname: format!("host-{n}"),
            addr: "10.0.0.1:6783".into(),
            outbound: out,
            established: true,
        };
        let s = format_peers(&[p("a", vec![l("b", true)]), p("b", vec![l("a", false)])]);
        assert_eq!(
            s,
            "a(host-a)\n   -> 10.0.0.1:6783         b(host-b) established\nb(host-b)\n   <- 10.0.0.1:6783         a(host-a) established\n"
        );
    }

    #[test]
    fn connections_one_line_each() {
        let c = ConnectionView {
            direction: "outbound".into(),
            addr: "10.0.0.2:6783".into(),
            state: "established".into(),
            peer: Some("aa:bb:cc:dd:ee:ff".into()),
            nickname: Some("b".into()),
            overlay: "sleeve".into(),
            encrypted: true,
            mtu: Some(1376),
            info: String::new(),
            health: None,
            sleeve: None,
        };
        let s = format_connections(&[c]);
        assert_eq!(s.lines().count(), 1);
        assert!(
            s.starts_with(
                "-> 10.0.0.2:6783         established sleeve           encrypted   mtu=1376 aa:bb:cc:dd:ee:ff(b)"
            ),
            "{s}"
        );
    }

    #[test]
    fn gso_line_says_how_pieces_leave() {
        use crate::daemon::sleeve::SleeveStatsView;
        assert_eq!(gso_line(&SleeveStatsView::default()), None);
        let v = SleeveStatsView { gso_sent: 5, gso_received: 2, gso_injected: 2, segmented: 1, ..Default::default() };
        assert_eq!(
            gso_line(&v).as_deref(),
            Some("5 super-frames sent whole, 2 received whole (2 injected whole); 1 cut here")
        );
        let v = SleeveStatsView { gso_sent: 5, pieces_sent: 4, udp_gso: true, ..Default::default() };
        assert!(gso_line(&v).is_some_and(|l| l.starts_with("5 super-frames sent whole; 4 in pieces, 0 received")));
        let v = SleeveStatsView { gso_sent: 5, pieces_sent: 4, udp_gso: false, ..Default::default() };
        assert!(gso_line(&v).is_some_and(|l| l.contains("4 in pieces, one datagram each (no UDP GSO)")));
    }
}
