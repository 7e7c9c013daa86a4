//! Status for `weavectl status peers` and counters.

use serde::{Deserialize, Serialize};

use super::router::Router;
use super::routes::NextHop;
use super::topology::ConnectionInfo;
use super::types::ConnId;
use crate::mesh::peer::{PeerName, PeerUid, ShortId};

/// Message and byte counts, for the whole router or one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCounters {
    /// Messages queued for sending.
    pub messages_sent: u64,
    /// Bytes of those messages.
    pub bytes_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Bytes of those messages.
    pub bytes_received: u64,
}

/// The router's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages queued for sending.
    pub messages_sent: u64,
    /// Bytes of those messages.
    pub bytes_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Bytes of those messages.
    pub bytes_received: u64,
    /// Topology entries received.
    pub entries_received: u64,
    /// Of those, entries that were new.
    pub entries_new: u64,
    /// Broadcasts received again (zero when all peers agree on the tree).
    pub broadcast_duplicates: u64,
    /// Unicasts without a route or out of hops, and messages for channels
    /// not registered here.
    pub dropped: u64,
    /// Messages refused as malformed or invalid.
    pub malformed: u64,
}

/// One peer of the topology, as seen from here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its name.
    pub name: PeerName,
    /// Its nickname.
    pub nickname: String,
    /// Its UID.
    pub uid: PeerUid,
    /// Its short ID.
    pub short_id: ShortId,
    /// Its entry's version.
    pub version: u64,
    /// Our next hop towards it, if reachable.
    pub next_hop: Option<PeerName>,
    /// Its connections, as it lists them.
    pub connections: Vec<ConnectionInfo>,
}

/// One of our connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The driver's ID.
    pub conn: ConnId,
    /// The remote peer.
    pub remote: PeerName,
    /// The remote's nickname.
    pub nickname: String,
    /// The remote's address.
    pub address: String,
    /// Whether we initiated it.
    pub outbound: bool,
    /// Whether the data path works.
    pub established: bool,
    /// When it came up (the driver's clock, ms).
    pub since: u64,
    /// Its traffic.
    pub counters: LinkCounters,
}

/// Everything `weavectl status peers` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshStatus {
    /// Our name.
    pub name: PeerName,
    /// Our nickname.
    pub nickname: String,
    /// Our UID.
    pub uid: PeerUid,
    /// Our current short ID.
    pub short_id: ShortId,
    /// Our entry's version.
    pub version: u64,
    /// The route epoch.
    pub epoch: u64,
    /// Every peer in the topology, by name (ourselves included).
    pub peers: Vec<PeerStatus>,
    /// Our connections.
    pub connections: Vec<LinkStatus>,
    /// Next hop per reachable destination.
    pub routes: Vec<NextHop>,
    /// Our neighbours in the broadcast tree.
    pub broadcast_neighbours: Vec<PeerName>,
    /// Counters.
    pub counters: Counters,
}

impl Router {
    /// A snapshot for status output.
    pub fn status(&self) -> MeshStatus {
        let routes = self.routes();
        MeshStatus {
            name: self.me.name,
            nickname: self.me.nickname.clone(),
            uid: self.me.uid,
            short_id: self.me.short_id,
            version: self.version,
            epoch: routes.epoch(),
            peers: self
                .topology
                .iter()
                .map(|e| PeerStatus {
                    name: e.name,
                    nickname: e.nickname.clone(),
                    uid: e.uid,
                    short_id: e.short_id,
                    version: e.version,
                    next_hop: routes.next_hop(e.name),
                    connections: e.connections.clone(),
                })
                .collect(),
            connections: self
                .conns
                .iter()
                .map(|(&conn, l)| LinkStatus {
                    conn,
                    remote: l.remote.name,
                    nickname: l.remote.nickname.clone(),
                    address: l.address.clone(),
                    outbound: l.outbound,
                    established: l.established,
                    since: l.since,
                    counters: l.counters,
                })
                .collect(),
            routes: routes.unicast().collect(),
            broadcast_neighbours: routes.broadcast_neighbours().to_vec(),
            counters: self.counters,
        }
    }
}
