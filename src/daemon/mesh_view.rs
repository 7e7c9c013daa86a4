//! The mesh task's answers to `weavectl status`, `status peers` and
//! `status connections`.

use std::collections::{BTreeMap, HashMap};

use super::mesh::MeshTask;
use crate::api::{ConnectionView, MeshStatus, PeerLinkView, PeerView};
use crate::fastdp::health::OverlayState;
use crate::mesh::maker::TargetState;
use crate::sleeve::link::LinkState;
use crate::sleeve::pmtu::PmtuState;

impl MeshTask {
    pub(super) fn status_view(&self) -> MeshStatus {
        let me = self.router.identity();
        let mut connections: BTreeMap<String, usize> = BTreeMap::new();
        connections.insert("established".into(), self.live.len());
        connections.insert("connecting".into(), self.pending.len());
        let failed = self
            .maker
            .status()
            .iter()
            .filter(|t| matches!(t.state, TargetState::Waiting { .. }) && t.failures > 0)
            .count();
        connections.insert("failed".into(), failed);
        MeshStatus {
            name: me.name.to_string(),
            nickname: me.nickname.clone(),
            short_id: me.short_id.get(),
            encryption: self.encrypted(),
            discovery: self.discovery,
            targets: self.maker.status(),
            connections,
            peers: self.router.topology().len(),
        }
    }

    pub(super) fn peers_view(&self) -> Vec<PeerView> {
        let st = self.router.status();
        let nick: HashMap<_, _> = st.peers.iter().map(|p| (p.name, p.nickname.clone())).collect();
        st.peers
            .iter()
            .map(|p| PeerView {
                name: p.name.to_string(),
                nickname: p.nickname.clone(),
                uid: p.uid.0,
                short_id: p.short_id.get(),
                version: p.version,
                connections: p
                    .connections
                    .iter()
                    .map(|c| PeerLinkView {
                        name: c.remote.to_string(),
                        nickname: nick.get(&c.remote).cloned().unwrap_or_default(),
                        addr: c.address.clone(),
                        outbound: c.outbound,
                        established: c.established,
                    })
                    .collect(),
            })
            .collect()
    }

    pub(super) fn connections_view(&self) -> Vec<ConnectionView> {
        let dir = |outbound: bool| if outbound { "outbound" } else { "inbound" }.to_string();
        let mut out: Vec<ConnectionView> = self
            .live
            .values()
            .map(|l| {
                let now = self.now();
                let health = l.health.as_ref().map(|h| h.view(now));
                let sleeve = l.sleeve.as_ref().map(|k| k.view(now));
                let fastdp_ok = health.as_ref().is_some_and(|h| h.state != OverlayState::OnHold);
                let (overlay, info) = match (&health, &sleeve) {
                    (Some(h), _) if fastdp_ok => (h.state.to_string(), h.reason.clone()),
                    (_, Some(s)) => {
                        let state = match s.state {
                            LinkState::Up => "sleeve".to_string(),
                            st => format!("sleeve ({st})"),
                        };
                        let pmtu = match s.pmtu {
                            PmtuState::Verified => "verified",
                            PmtuState::Searching => "searching",
                        };
                        let sealed = if s.sealed { "sealed" } else { "not sealed" };
                        let mut info = format!("{sealed}; path MTU {} bytes of UDP payload ({pmtu})", s.payload_limit);
                        // Why not the fast datapath, when this host runs it.
                        match &health {
                            Some(h) => info = format!("fastdp on hold: {}; {info}", h.reason),
                            None if self.runs_fastdp() => info = format!("{}; {info}", l.no_health),
                            None => {}
                        }
                        (state, info)
                    }
                    (Some(h), None) => (h.state.to_string(), h.reason.clone()),
                    (None, None) if self.dataplane_active() => ("none".to_string(), l.no_health.to_string()),
                    (None, None) => ("none".to_string(), String::new()),
                };
                ConnectionView {
                    direction: dir(l.outbound),
                    addr: l.addr.clone(),
                    state: "established".into(),
                    peer: Some(l.info.remote.name.to_string()),
                    nickname: Some(l.info.remote.nickname.clone()),
                    overlay,
                    encrypted: l.info.encrypted(),
                    mtu: self.overlay_mtu(),
                    info,
                    health,
                    sleeve,
                }
            })
            .collect();
        out.extend(self.pending.values().map(|p| ConnectionView {
            direction: dir(p.outbound),
            addr: p.addr.clone(),
            state: "connecting".into(),
            peer: None,
            nickname: None,
            overlay: String::new(),
            encrypted: self.encrypted(),
            mtu: None,
            info: String::new(),
            health: None,
            sleeve: None,
        }));
        let live_addrs: Vec<&String> = self.live.values().map(|l| &l.addr).collect();
        out.extend(self.failures.iter().filter(|(a, _, _)| !live_addrs.contains(&a)).map(|(a, outbound, e)| {
            ConnectionView {
                direction: dir(*outbound),
                addr: a.clone(),
                state: "failed".into(),
                peer: None,
                nickname: None,
                overlay: String::new(),
                encrypted: self.encrypted(),
                mtu: None,
                info: e.clone(),
                health: None,
                sleeve: None,
            }
        }));
        out
    }
}
