//! The forwarding decision for one missed packet: pure, over a read-only
//! view of the world and the MAC table. Learning happens before, in the
//! forwarder; installing and counting after.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::input::{LocalPeer, Peers, RouteTable};
use super::mac::MacTable;
use super::megaflow::{set_tunnel, KeyError, MatchKey, Upcall};
use super::op::{Dep, DropReason, Location};
use super::sleeve_out::SleeveOut;
use super::vni::Vni;
use crate::mesh::peer::PeerName;
use crate::odp::action::{Action, UserspaceAction};
use crate::odp::key::Mac;

/// Everything but the MAC table that decisions read.
#[derive(Clone, Debug)]
pub(crate) struct World {
    pub(crate) me: LocalPeer,
    pub(crate) ttl: u8,
    pub(crate) tp_dst: Option<u16>,
    pub(crate) peers: Peers,
    pub(crate) routes: RouteTable,
    pub(crate) ports: BTreeSet<u32>,
    /// Next hops reached over the sleeve, not VXLAN, and the netlink port
    /// their frames go up to.
    pub(crate) sleeve: Option<SleeveHops>,
}

/// The peers whose connections carry the sleeve only, and the upcall port
/// that hands their frames to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SleeveHops {
    pub(crate) pid: u32,
    pub(crate) hops: BTreeSet<PeerName>,
}

impl World {
    /// The action that hands a frame to the sleeve, when `hop` is reached
    /// over it.
    fn via_sleeve(&self, hop: PeerName, origin: PeerName, dst: PeerName) -> Option<Action> {
        let s = self.sleeve.as_ref().filter(|s| s.hops.contains(&hop))?;
        let userdata = SleeveOut { origin, dst, next_hop: hop }.userdata();
        Some(Action::Userspace(UserspaceAction { pid: s.pid, userdata: Some(userdata), ..UserspaceAction::default() }))
    }
}

/// How a missed packet entered the datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ingress {
    /// From a local container port.
    Local(u32),
    /// From the VXLAN vport.
    Tunnel {
        /// The peer named by the VNI's source half.
        origin: PeerName,
        /// The VNI, kept when relaying.
        vni: Vni,
        /// The outer source: the previous hop.
        prev: Ipv4Addr,
    },
}

impl Ingress {
    /// Where the packet's source MAC lives.
    pub(crate) fn location(&self) -> Location {
        match *self {
            Ingress::Local(p) => Location::Local(p),
            Ingress::Tunnel { origin, .. } => Location::Remote(origin),
        }
    }
}

/// What to do with a missed packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Install a flow with these actions and execute the packet with them.
    Install { actions: Vec<Action>, deps: BTreeSet<Dep> },
    /// Execute the packet with these actions; install nothing (a flood of
    /// an unknown unicast destination).
    Execute { actions: Vec<Action> },
    /// Drop the packet.
    Refuse(DropReason),
}

/// Works out how the packet came in, and the match its flow would have
/// (tunnel fields only for VXLAN ingress).
pub(crate) fn classify(w: &World, u: &Upcall) -> Result<(Ingress, MatchKey), DropReason> {
    let mut key = u.key;
    if key.eth.src.is_multicast() {
        return Err(DropReason::MulticastSource(key.eth.src));
    }
    if key.in_port == w.me.vxlan_port {
        let t = key.tunnel.ok_or(KeyError::MissingTunnel)?;
        let vni = Vni::from_tun_id(t.id).map_err(KeyError::from)?;
        if vni.src == w.me.short_id {
            return Err(DropReason::FromSelf);
        }
        let origin = w.peers.by_short_id(vni.src).ok_or(DropReason::UnknownSource(vni.src))?.name;
        return Ok((Ingress::Tunnel { origin, vni, prev: t.src }, key));
    }
    if !w.ports.contains(&key.in_port) {
        return Err(DropReason::UnknownInPort(key.in_port));
    }
    key.tunnel = None;
    Ok((Ingress::Local(key.in_port), key))
}

/// Decides what to do with a classified packet.
pub(crate) fn decide(w: &World, macs: &MacTable, key: &MatchKey, ingress: &Ingress) -> Decision {
    let (src, dst) = (key.eth.src, key.eth.dst);
    let mut deps = BTreeSet::from([Dep::Mac(src)]);
    let result = match *ingress {
        Ingress::Local(port) => {
            deps.insert(Dep::Port(port));
            from_local(w, macs, port, dst, &mut deps)
        }
        Ingress::Tunnel { origin, vni, prev } => {
            deps.extend([Dep::Peer(origin), Dep::Peer(w.me.name)]);
            from_tunnel(w, macs, origin, vni, prev, dst, &mut deps)
        }
    };
    match result {
        Ok((actions, true)) => Decision::Install { actions, deps },
        Ok((actions, false)) => Decision::Execute { actions },
        Err(r) => Decision::Refuse(r),
    }
}

/// Actions, and whether to install them.
type Outcome = Result<(Vec<Action>, bool), DropReason>;

fn from_local(w: &World, macs: &MacTable, port: u32, dst: Mac, deps: &mut BTreeSet<Dep>) -> Outcome {
    let me = &w.me;
    if dst.is_multicast() {
        return Ok((flood(w, me.name, Vni::broadcast(me.short_id), Some(port), None, deps), true));
    }
    match macs.get(dst) {
        Some(Location::Local(q)) if q == port => Err(DropReason::Hairpin(port)),
        Some(Location::Local(q)) => {
            deps.extend([Dep::Port(q), Dep::Mac(dst)]);
            Ok((vec![Action::Output(q)], true))
        }
        Some(Location::Remote(peer)) => {
            deps.insert(Dep::Mac(dst));
            Ok((tunnel_to(w, me.name, peer, None, None, deps)?, true))
        }
        None => {
            let mut ignored = BTreeSet::new();
            Ok((flood(w, me.name, Vni::broadcast(me.short_id), Some(port), None, &mut ignored), false))
        }
    }
}

fn from_tunnel(
    w: &World,
    macs: &MacTable,
    origin: PeerName,
    vni: Vni,
    prev: Ipv4Addr,
    dst: Mac,
    deps: &mut BTreeSet<Dep>,
) -> Outcome {
    if vni.is_broadcast() {
        // A flooded unknown unicast is executed, never installed.
        return Ok((flood(w, origin, vni, None, Some(prev), deps), dst.is_multicast()));
    }
    if vni.dst == w.me.short_id {
        if !dst.is_multicast() {
            if let Some(Location::Local(q)) = macs.get(dst) {
                deps.extend([Dep::Port(q), Dep::Mac(dst)]);
                return Ok((vec![Action::Output(q)], true));
            }
        }
        // Multicast for us alone, or a destination we do not know here:
        // every local port; installed only for multicast.
        deps.insert(Dep::LocalPorts);
        return Ok((w.ports.iter().map(|p| Action::Output(*p)).collect(), dst.is_multicast()));
    }
    let dest = w.peers.by_short_id(vni.dst).ok_or(DropReason::UnknownDestination(vni.dst))?.name;
    Ok((tunnel_to(w, origin, dest, Some(vni), Some(prev), deps)?, true))
}

/// `set(tunnel(...)), output(vxlan)` towards the next hop for `dest`, with
/// the given VNI (relays) or `VNI(us, dest)`; a userspace action to the
/// sleeve instead when that hop is reached over it. Refuses loops: a next
/// hop that is us, or the previous hop.
fn tunnel_to(
    w: &World,
    origin: PeerName,
    dest: PeerName,
    vni: Option<Vni>,
    prev: Option<Ipv4Addr>,
    deps: &mut BTreeSet<Dep>,
) -> Result<Vec<Action>, DropReason> {
    let me = &w.me;
    let d = w.peers.get(dest).ok_or(DropReason::UnknownPeer(dest))?;
    let vni = match vni {
        Some(v) => v,
        None if d.short_id == me.short_id || w.peers.by_short_id(d.short_id).is_none() => {
            return Err(DropReason::ShortIdClash(dest))
        }
        None => Vni::unicast(me.short_id, d.short_id),
    };
    let hop = w.routes.next_hop(dest).ok_or(DropReason::NoRoute(dest))?;
    if hop == me.name {
        return Err(DropReason::Loop(me.underlay));
    }
    let h = w.peers.get(hop).ok_or(DropReason::UnknownPeer(hop))?;
    if h.underlay == me.underlay || Some(h.underlay) == prev {
        return Err(DropReason::Loop(h.underlay));
    }
    deps.extend([Dep::Route(dest), Dep::Peer(dest), Dep::Peer(hop), Dep::Peer(me.name)]);
    if let Some(a) = w.via_sleeve(hop, origin, dest) {
        return Ok(vec![a]);
    }
    Ok(vec![set_tunnel(vni.tun_id(), me.underlay, h.underlay, w.ttl, w.tp_dst), Action::Output(me.vxlan_port)])
}

/// A broadcast (or flood) from `origin`: an output per local port but
/// `in_port`, then a set-tunnel/output per child in `origin`'s tree, never to
/// us, the origin, or the previous hop. Children without a known address are
/// skipped, but depended on, so the flow is rebuilt when they become known.
fn flood(
    w: &World,
    origin: PeerName,
    vni: Vni,
    in_port: Option<u32>,
    prev: Option<Ipv4Addr>,
    deps: &mut BTreeSet<Dep>,
) -> Vec<Action> {
    let me = &w.me;
    let mut actions: Vec<Action> =
        w.ports.iter().filter(|p| Some(**p) != in_port).map(|p| Action::Output(*p)).collect();
    deps.extend([Dep::LocalPorts, Dep::Tree(origin), Dep::Peer(me.name)]);
    for &c in w.routes.children(origin) {
        deps.insert(Dep::Peer(c));
        if c == me.name || c == origin {
            continue;
        }
        let Some(info) = w.peers.get(c) else { continue };
        if info.underlay == me.underlay || Some(info.underlay) == prev {
            continue;
        }
        if let Some(a) = w.via_sleeve(c, origin, origin) {
            actions.push(a);
            continue;
        }
        actions.push(set_tunnel(vni.tun_id(), me.underlay, info.underlay, w.ttl, w.tp_dst));
        actions.push(Action::Output(me.vxlan_port));
    }
    actions
}
