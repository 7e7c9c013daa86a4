//! The sleeve's forwarding decision, as pure logic: where a frame goes,
//! whether it was captured from the local bridge or arrived from a peer in a
//! sleeve datagram. It learns source MACs (local ones at the bridge, remote
//! ones at the peer that originated the frame) and follows the mesh's
//! routes: the next hop towards a peer, and the children of a broadcast's
//! origin in its broadcast tree.
//!
//! | frame | where it goes |
//! |---|---|
//! | local → multicast or unknown MAC | every child in our tree, as (us, us) |
//! | local → MAC at peer P | next hop towards P, as (us, P) |
//! | local → MAC here | nowhere (the bridge delivers it) |
//! | from a peer, (S, us) | the bridge |
//! | from a peer, (S, S) | the bridge, and S's tree children here |
//! | from a peer, (S, D), D not us | next hop towards D, unchanged |
//!
//! Refused: multicast source MACs, a frame captured locally whose source
//! MAC was seen at another peer within [`Config::remote_guard_ms`] (our own
//! injection looping back, or a bridged loop), frames claiming to come from
//! us, and destinations with no route.

use std::collections::BTreeMap;

use crate::fastdp::mac::{Learned, MacTable};
use crate::fastdp::{Location, RouteTable};
use crate::mesh::peer::PeerName;
use crate::odp::key::Mac;

/// The bridge, as a [`Location`] in the MAC table.
const BRIDGE: Location = Location::Local(0);

/// Tunables, in milliseconds of the caller's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// A learned MAC is forgotten after this long unseen.
    pub mac_timeout_ms: u64,
    /// A MAC seen at a peer this recently is not taken as local when a frame
    /// from it is captured on the bridge.
    pub remote_guard_ms: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config { mac_timeout_ms: 300_000, remote_guard_ms: 10_000 }
    }
}

/// A frame to send in a datagram to `next_hop`, with the record's peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Send {
    pub next_hop: PeerName,
    /// The origin (the record's source).
    pub src: PeerName,
    /// The destination peer; `src` itself for a broadcast.
    pub dst: PeerName,
}

/// Where a frame goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Inject it into the local bridge.
    pub inject: bool,
    pub sends: Vec<Send>,
}

/// Why a frame went nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Shorter than an Ethernet header.
    Runt,
    MulticastSource,
    /// Captured locally with the source MAC of a frame that came from a peer.
    RemoteSource,
    /// A record that names us as its origin came back.
    FromSelf,
    /// No route to the destination peer.
    NoRoute,
    /// Captured locally for a MAC that lives here.
    LocalDestination,
}

impl Drop {
    /// A short name, for counters.
    pub fn kind(self) -> &'static str {
        match self {
            Drop::Runt => "runt",
            Drop::MulticastSource => "multicast_source",
            Drop::RemoteSource => "remote_source",
            Drop::FromSelf => "from_self",
            Drop::NoRoute => "no_route",
            Drop::LocalDestination => "local_destination",
        }
    }
}

/// The sleeve's forwarding state: the MAC table and the routes.
#[derive(Clone, Debug)]
pub struct Forwarder {
    me: PeerName,
    cfg: Config,
    macs: MacTable,
    routes: RouteTable,
    /// Dropped frames, by [`Drop::kind`].
    pub drops: BTreeMap<&'static str, u64>,
}

impl Forwarder {
    pub fn new(me: PeerName, cfg: Config) -> Forwarder {
        let macs = MacTable::new(cfg.mac_timeout_ms);
        Forwarder { me, cfg, macs, routes: RouteTable::default(), drops: BTreeMap::new() }
    }

    /// The mesh's current routes.
    pub fn handle_routes(&mut self, routes: RouteTable) {
        self.routes = routes;
    }

    /// A peer left: the MACs learned at it are forgotten.
    pub fn handle_peer_removed(&mut self, peer: PeerName) {
        self.macs.remove_where(|l| l == Location::Remote(peer));
    }

    /// Time passed: MACs unseen for the timeout are forgotten.
    pub fn handle_timeout(&mut self, now: u64) {
        self.macs.expire(now);
    }

    /// Where `mac` was learned: `None` unknown, `Some(None)` the local
    /// bridge, `Some(Some(peer))` a peer.
    pub fn location(&self, mac: Mac) -> Option<Option<PeerName>> {
        self.macs.get(mac).map(|l| match l {
            Location::Remote(p) => Some(p),
            Location::Local(_) => None,
        })
    }

    fn refuse(&mut self, d: Drop) -> Result<Verdict, Drop> {
        *self.drops.entry(d.kind()).or_default() += 1;
        Err(d)
    }

    fn tree(&self, origin: PeerName, except: Option<PeerName>) -> Vec<Send> {
        self.routes
            .children(origin)
            .iter()
            .filter(|c| Some(**c) != except && **c != origin)
            .map(|c| Send { next_hop: *c, src: origin, dst: origin })
            .collect()
    }

    /// A frame captured from the local bridge.
    pub fn from_local(&mut self, now: u64, frame: &[u8]) -> Result<Verdict, Drop> {
        let Some((dst, src)) = Mac::of_frame(frame) else { return self.refuse(Drop::Runt) };
        if src.is_multicast() {
            return self.refuse(Drop::MulticastSource);
        }
        if let Some(e) = self.macs.entry(src) {
            if matches!(e.location, Location::Remote(_)) && now.saturating_sub(e.seen) < self.cfg.remote_guard_ms {
                return self.refuse(Drop::RemoteSource);
            }
        }
        self.macs.learn(now, src, BRIDGE);
        let me = self.me;
        if dst.is_multicast() {
            return Ok(Verdict { inject: false, sends: self.tree(me, None) });
        }
        match self.macs.get(dst) {
            Some(Location::Remote(p)) => match self.routes.next_hop(p) {
                Some(via) => Ok(Verdict { inject: false, sends: vec![Send { next_hop: via, src: me, dst: p }] }),
                None => self.refuse(Drop::NoRoute),
            },
            Some(Location::Local(_)) => self.refuse(Drop::LocalDestination),
            // Unknown: flooded like a broadcast; the answer teaches us.
            None => Ok(Verdict { inject: false, sends: self.tree(me, None) }),
        }
    }

    /// A frame that arrived from peer `from` (the previous hop) in a record
    /// going from `src` to `dst`.
    pub fn from_peer(
        &mut self,
        now: u64,
        from: PeerName,
        src: PeerName,
        dst: PeerName,
        frame: &[u8],
    ) -> Result<Verdict, Drop> {
        let Some((_, smac)) = Mac::of_frame(frame) else { return self.refuse(Drop::Runt) };
        if src == self.me {
            return self.refuse(Drop::FromSelf);
        }
        if smac.is_multicast() {
            return self.refuse(Drop::MulticastSource);
        }
        if let Learned::Moved(Location::Local(_)) = self.macs.learn(now, smac, Location::Remote(src)) {
            tracing::debug!(mac = %smac, peer = %src, "a MAC seen on the bridge now comes from a peer");
        }
        if dst == src {
            return Ok(Verdict { inject: true, sends: self.tree(src, Some(from)) });
        }
        if dst == self.me {
            return Ok(Verdict { inject: true, sends: vec![] });
        }
        match self.routes.next_hop(dst) {
            Some(via) if via != from => Ok(Verdict { inject: false, sends: vec![Send { next_hop: via, src, dst }] }),
            _ => self.refuse(Drop::NoRoute),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(n: u64) -> PeerName {
        PeerName::from_u64(n)
    }

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0; 46]);
        f
    }

    const BCAST: [u8; 6] = [0xff; 6];
    const A1: [u8; 6] = [2, 0, 0, 0, 0, 0xa1];
    const B1: [u8; 6] = [2, 0, 0, 0, 0, 0xb1];
    const C1: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];

    /// A line A(1) – B(2) – C(3), as seen from `me`.
    fn line(me: u64) -> Forwarder {
        let mut f = Forwarder::new(p(me), Config::default());
        let r = match me {
            1 => RouteTable::new().with_next_hop(p(2), p(2)).with_next_hop(p(3), p(2)).with_children(p(1), [p(2)]),
            2 => RouteTable::new()
                .with_next_hop(p(1), p(1))
                .with_next_hop(p(3), p(3))
                .with_children(p(2), [p(1), p(3)])
                .with_children(p(1), [p(3)])
                .with_children(p(3), [p(1)]),
            _ => RouteTable::new().with_next_hop(p(2), p(2)).with_next_hop(p(1), p(2)).with_children(p(3), [p(2)]),
        };
        f.handle_routes(r);
        f
    }

    #[test]
    fn broadcast_floods_the_tree_and_replies_go_unicast_over_the_relay() {
        let (mut a, mut b, mut c) = (line(1), line(2), line(3));
        // A1 broadcasts (ARP): to B, which injects and relays to C.
        let v = a.from_local(0, &frame(BCAST, A1)).unwrap();
        assert_eq!(v, Verdict { inject: false, sends: vec![Send { next_hop: p(2), src: p(1), dst: p(1) }] });
        let v = b.from_peer(0, p(1), p(1), p(1), &frame(BCAST, A1)).unwrap();
        assert_eq!(v, Verdict { inject: true, sends: vec![Send { next_hop: p(3), src: p(1), dst: p(1) }] });
        let v = c.from_peer(0, p(2), p(1), p(1), &frame(BCAST, A1)).unwrap();
        assert_eq!(v, Verdict { inject: true, sends: vec![] });
        // C1 answers A1: C learned A1 at peer 1, so unicast via B.
        let v = c.from_local(1, &frame(A1, C1)).unwrap();
        assert_eq!(v.sends, vec![Send { next_hop: p(2), src: p(3), dst: p(1) }]);
        let v = b.from_peer(1, p(3), p(3), p(1), &frame(A1, C1)).unwrap();
        assert_eq!(v, Verdict { inject: false, sends: vec![Send { next_hop: p(1), src: p(3), dst: p(1) }] });
        let v = a.from_peer(1, p(2), p(3), p(1), &frame(A1, C1)).unwrap();
        assert_eq!(v, Verdict { inject: true, sends: vec![] });
        // Now A knows C1: direct unicast towards 3 via 2.
        let v = a.from_local(2, &frame(C1, A1)).unwrap();
        assert_eq!(v.sends, vec![Send { next_hop: p(2), src: p(1), dst: p(3) }]);
        assert_eq!(a.location(Mac(C1)), Some(Some(p(3))));
        assert_eq!(a.location(Mac(A1)), Some(None));
    }

    #[test]
    fn refusals_are_counted() {
        let mut a = line(1);
        assert_eq!(a.from_local(0, &[1, 2, 3]), Err(Drop::Runt));
        assert_eq!(a.from_local(0, &frame(B1, BCAST)), Err(Drop::MulticastSource));
        // B1 seen at peer 2; a capture with that source soon after is refused...
        a.from_peer(0, p(2), p(2), p(1), &frame(A1, B1)).unwrap();
        assert_eq!(a.from_local(5, &frame(A1, B1)), Err(Drop::RemoteSource));
        // ...but after the guard time it is a move to the bridge.
        assert!(a.from_local(20_000, &frame(C1, B1)).is_ok());
        assert_eq!(a.location(Mac(B1)), Some(None));
        // A record from ourselves, and a relay with no route onwards.
        assert_eq!(a.from_peer(0, p(2), p(1), p(2), &frame(A1, C1)), Err(Drop::FromSelf));
        assert_eq!(a.from_peer(0, p(2), p(2), p(9), &frame(A1, C1)), Err(Drop::NoRoute));
        // Local destination: the bridge delivers it.
        a.from_local(30_000, &frame(BCAST, A1)).unwrap();
        assert_eq!(a.from_local(30_001, &frame(A1, C1)), Err(Drop::LocalDestination));
        assert_eq!(a.drops.values().sum::<u64>(), 6);
    }

    #[test]
    fn relays_never_send_back_to_the_previous_hop() {
        let mut b = line(2);
        // A record for 1 arriving from 1 would go straight back: refused.
        assert_eq!(b.from_peer(0, p(1), p(3), p(1), &frame(A1, C1)), Err(Drop::NoRoute));
    }

    proptest! {
        /// Whatever arrives, a verdict never sends to the peer a frame came
        /// from, never names us as a relayed record's origin, and never
        /// panics on short or odd frames.
        #[test]
        fn verdicts_respect_the_previous_hop(
            me in 1u64..4, from in 1u64..4, src in 1u64..4, dst in 1u64..4,
            bytes in proptest::collection::vec(any::<u8>(), 0..40),
            local: bool,
        ) {
            let mut f = line(me);
            let r = if local { f.from_local(0, &bytes) } else { f.from_peer(0, p(from), p(src), p(dst), &bytes) };
            if let Ok(v) = r {
                for s in &v.sends {
                    prop_assert_ne!(s.next_hop, p(me));
                    if !local {
                        prop_assert_ne!(s.next_hop, p(from));
                        prop_assert_eq!((s.src, s.dst), (p(src), p(dst)));
                    } else {
                        prop_assert_eq!(s.src, p(me));
                    }
                }
            }
        }
    }
}
