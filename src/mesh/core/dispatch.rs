//! Handling of received mesh messages: one handler per message kind.

use super::error::MeshError;
use super::gossip::{differing_buckets, reconcile};
use super::router::Router;
use super::topology::{Merge, BUCKETS};
use super::types::{ConnId, Delivery, MeshEvent};
use super::wire::{self, pb, pb::mesh_message::Body};
use crate::mesh::peer::{PeerName, PeerUid};

impl Router {
    /// A mesh message (an encoded `weaver.mesh.v1.MeshMessage`) arrived on
    /// `conn`. Malformed or invalid input is an error and changes nothing;
    /// the driver may close the connection.
    pub fn handle_message(&mut self, now: u64, conn: ConnId, bytes: &[u8]) -> Result<(), MeshError> {
        let Some(link) = self.conns.get_mut(&conn) else { return Err(MeshError::UnknownConnection(conn)) };
        link.counters.messages_received += 1;
        link.counters.bytes_received += bytes.len() as u64;
        let from = link.remote.name;
        self.counters.messages_received += 1;
        self.counters.bytes_received += bytes.len() as u64;
        let result = match wire::decode(bytes) {
            Ok(Body::Summary(s)) => self.on_summary(conn, s),
            Ok(Body::Versions(v)) => self.on_versions(now, conn, v),
            Ok(Body::Update(u)) => self.on_update(now, conn, u),
            Ok(Body::ChannelDigest(d)) => self.on_channel_digest(conn, d),
            Ok(Body::ChannelState(s)) => self.on_channel_state(now, conn, from, s.channel, s.state, s.reply),
            Ok(Body::ChannelUpdate(u)) => self.on_channel_state(now, conn, from, u.channel, u.delta, false),
            Ok(Body::Broadcast(b)) => self.on_broadcast(conn, b, bytes),
            Ok(Body::Unicast(u)) => self.on_unicast(u),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.counters.malformed += 1;
        }
        result
    }

    /// Anti-entropy step 2: list our versions in the buckets that differ.
    fn on_summary(&mut self, conn: ConnId, s: pb::Summary) -> Result<(), MeshError> {
        if s.buckets.len() != BUCKETS {
            return Err(MeshError::Invalid("summary without 64 buckets"));
        }
        let Some(differ) = differing_buckets(self.topology.buckets(), &s.buckets) else { return Ok(()) };
        let mut v = pb::Versions {
            buckets: (0..BUCKETS as u32).filter(|&b| differ[b as usize]).collect(),
            ..Default::default()
        };
        for (name, uid, version) in self.topology.versions_in(&differ) {
            v.names.push(name.as_u64());
            v.uids.push(uid.0);
            v.versions.push(version);
        }
        self.send(conn, wire::encode(Body::Versions(v)));
        Ok(())
    }

    /// Anti-entropy step 3: send what the peer lacks, ask for what we lack.
    fn on_versions(&mut self, now: u64, conn: ConnId, v: pb::Versions) -> Result<(), MeshError> {
        if v.uids.len() != v.names.len() || v.versions.len() != v.names.len() {
            return Err(MeshError::Invalid("versions lists of different lengths"));
        }
        let mut buckets = [false; BUCKETS];
        for &b in &v.buckets {
            *buckets.get_mut(b as usize).ok_or(MeshError::Invalid("bucket out of range"))? = true;
        }
        let mut theirs = Vec::with_capacity(v.names.len());
        for i in 0..v.names.len() {
            theirs.push((wire::name(v.names[i])?, wire::uid(v.uids[i])?, v.versions[i]));
        }
        let (send, want) =
            reconcile(&self.topology, &buckets, &mut theirs, |n, uid, v| self.wants_entry(now, n, uid, v));
        if send.is_empty() && want.is_empty() {
            return Ok(());
        }
        let entries = send.iter().filter_map(|&n| self.topology.get(n));
        for msg in wire::encode_updates(entries, &want, self.config.max_update_bytes) {
            self.send(conn, msg);
        }
        Ok(())
    }

    /// Topology entries: merge what is new, forward it along the tree, and
    /// answer what the peer wants.
    fn on_update(&mut self, now: u64, conn: ConnId, u: pb::Update) -> Result<(), MeshError> {
        let want = u.want.iter().map(|&n| wire::name(n)).collect::<Result<Vec<_>, _>>()?;
        let mut fresh = Vec::new();
        let mut outbid = None;
        for bytes in &u.entries {
            let (name, uid, version) = wire::peek_header(bytes)?;
            if name == self.me.name {
                // Only we write our entry; one that would beat ours is our
                // previous incarnation (or a namesake): outbid it.
                if (version, uid) > (self.version, self.me.uid) {
                    outbid = outbid.max(Some(version));
                }
            } else if self.wants_entry(now, name, uid, version) {
                fresh.push(wire::decode_entry(bytes)?);
            }
        }
        self.counters.entries_received += u.entries.len() as u64;
        let mut changed = false;
        for e in fresh {
            let (name, uid) = (e.name, e.uid);
            match self.topology.merge(e) {
                Merge::Unchanged => continue,
                Merge::Updated => {}
                Merge::Added => self.peer_added(name, uid),
                Merge::Replaced(old) => {
                    self.events.push_back(MeshEvent::PeerRemoved { name, uid: old });
                    self.peer_added(name, uid);
                }
            }
            self.counters.entries_new += 1;
            self.queue_entry(now, name, Some(conn));
            changed = true;
        }
        if outbid.is_some() {
            self.outbid = self.outbid.max(outbid);
            changed = true;
        }
        if changed {
            self.schedule_routes(now);
        }
        if !want.is_empty() {
            let entries = want.iter().filter_map(|&n| self.topology.get(n));
            for msg in wire::encode_updates(entries, &[], self.config.max_update_bytes) {
                self.send(conn, msg);
            }
        }
        Ok(())
    }

    fn peer_added(&mut self, name: PeerName, uid: PeerUid) {
        let nickname = self.topology.get(name).map(|e| e.nickname.clone()).unwrap_or_default();
        self.events.push_back(MeshEvent::PeerAdded { name, uid, nickname });
    }

    /// A channel digest: if ours differs, send our full state and ask for
    /// theirs.
    fn on_channel_digest(&mut self, conn: ConnId, d: pb::ChannelDigest) -> Result<(), MeshError> {
        let Some(Some(state)) = self.channels.get(&d.channel) else {
            self.counters.dropped += 1;
            return Ok(());
        };
        if state.digest() != d.digest {
            let body = pb::ChannelState { channel: d.channel, state: state.encode_full(), reply: true };
            self.send(conn, wire::encode(Body::ChannelState(body)));
        }
        Ok(())
    }

    /// A channel's full state or delta: merge it, forward what was new, and
    /// answer with our full state if asked.
    fn on_channel_state(
        &mut self,
        now: u64,
        conn: ConnId,
        from: PeerName,
        channel: String,
        bytes: Vec<u8>,
        reply: bool,
    ) -> Result<(), MeshError> {
        let Some(Some(state)) = self.channels.get_mut(&channel) else {
            self.counters.dropped += 1;
            return Ok(());
        };
        let new =
            state.merge(from, &bytes).map_err(|source| MeshError::Channel { channel: channel.clone(), source })?;
        let full = reply.then(|| state.encode_full());
        if let Some(full) = full {
            let body = pb::ChannelState { channel: channel.clone(), state: full, reply: false };
            self.send(conn, wire::encode(Body::ChannelState(body)));
        }
        if let Some(new) = new {
            self.events.push_back(MeshEvent::ChannelUpdated { channel: channel.clone() });
            self.pending_channels.push((channel, new, Some(conn)));
            self.schedule_flush(now);
        }
        Ok(())
    }

    /// A broadcast: deliver it once, and relay the same bytes along the tree.
    fn on_broadcast(&mut self, conn: ConnId, b: pb::ChannelBroadcast, raw: &[u8]) -> Result<(), MeshError> {
        let origin = wire::name(b.origin)?;
        let uid = wire::uid(b.origin_uid)?;
        if origin == self.me.name || !self.seen.entry(origin).or_default().check(uid, b.seq) {
            self.counters.broadcast_duplicates += 1;
            return Ok(());
        }
        for (id, _) in self.forward_targets(Some(conn)) {
            self.send(id, raw.to_vec());
        }
        self.deliver(b.channel, origin, Delivery::Broadcast, b.payload);
        Ok(())
    }

    /// A unicast: deliver it if it is for us, else relay it one hop on.
    fn on_unicast(&mut self, mut u: pb::ChannelUnicast) -> Result<(), MeshError> {
        let src = wire::name(u.src)?;
        let dst = wire::name(u.dst)?;
        if dst == self.me.name {
            self.deliver(u.channel, src, Delivery::Unicast, u.payload);
            return Ok(());
        }
        let next = self.routes.next_hop(dst).and_then(|hop| self.by_name.get(&hop).copied());
        match next {
            Some(id) if u.hops_left > 0 => {
                u.hops_left -= 1;
                self.send(id, wire::encode(Body::Unicast(u)));
            }
            _ => self.counters.dropped += 1,
        }
        Ok(())
    }

    pub(super) fn deliver(&mut self, channel: String, src: PeerName, delivery: Delivery, payload: Vec<u8>) {
        if self.channels.contains_key(&channel) {
            self.events.push_back(MeshEvent::ChannelMessage { channel, src, delivery, payload });
        } else {
            self.counters.dropped += 1;
        }
    }
}
