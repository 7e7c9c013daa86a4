//! The channel API of the router: registration, broadcast, unicast and
//! access to a channel's gossiped state. See [`super::gossip`] for the
//! semantics.

use std::any::Any;

use super::error::MeshError;
use super::gossip::GossipState;
use super::router::Router;
use super::types::Delivery;
use super::wire::{self, pb, pb::mesh_message::Body};
use crate::mesh::peer::PeerName;

impl Router {
    /// Registers a message-only channel: broadcasts and unicasts on it are
    /// delivered as [`super::MeshEvent::ChannelMessage`]. Messages on
    /// channels not registered here are still relayed, but not delivered.
    pub fn register_channel(&mut self, name: &str) -> Result<(), MeshError> {
        self.add_channel(name, None)
    }

    /// Registers a channel whose replicated state the router gossips.
    pub fn register_gossip_channel(&mut self, name: &str, state: Box<dyn GossipState>) -> Result<(), MeshError> {
        self.add_channel(name, Some(state))
    }

    fn add_channel(&mut self, name: &str, state: Option<Box<dyn GossipState>>) -> Result<(), MeshError> {
        if self.channels.contains_key(name) {
            return Err(MeshError::ChannelExists(name.to_string()));
        }
        self.channels.insert(name.to_string(), state);
        Ok(())
    }

    /// The state of gossip channel `name`, as type `G`.
    pub fn channel<G: GossipState>(&self, name: &str) -> Result<&G, MeshError> {
        let state = self.channels.get(name).ok_or_else(|| MeshError::UnknownChannel(name.to_string()))?;
        let state: &dyn Any = state.as_deref().ok_or_else(|| MeshError::WrongChannelType(name.to_string()))?;
        state.downcast_ref().ok_or_else(|| MeshError::WrongChannelType(name.to_string()))
    }

    /// Changes the state of gossip channel `name` with `f`; the change (the
    /// state's [`GossipState::take_delta`]) then goes to every peer along
    /// the broadcast tree.
    pub fn update_channel<G: GossipState, R>(
        &mut self,
        now: u64,
        name: &str,
        f: impl FnOnce(&mut G) -> R,
    ) -> Result<R, MeshError> {
        let state = self.channels.get_mut(name).ok_or_else(|| MeshError::UnknownChannel(name.to_string()))?;
        let state = state.as_deref_mut().ok_or_else(|| MeshError::WrongChannelType(name.to_string()))?;
        let typed =
            (state as &mut dyn Any).downcast_mut::<G>().ok_or_else(|| MeshError::WrongChannelType(name.to_string()))?;
        let r = f(typed);
        if let Some(delta) = typed.take_delta() {
            self.pending_channels.push((name.to_string(), delta, None));
            self.schedule_flush(now);
        }
        Ok(r)
    }

    /// Sends `payload` to every reachable peer, once each, along the
    /// broadcast tree. We do not receive our own broadcast.
    pub fn broadcast(&mut self, _now: u64, channel: &str, payload: Vec<u8>) -> Result<(), MeshError> {
        if !self.channels.contains_key(channel) {
            return Err(MeshError::UnknownChannel(channel.to_string()));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let body = pb::ChannelBroadcast {
            channel: channel.to_string(),
            origin: self.me.name.as_u64(),
            origin_uid: self.me.uid.0,
            seq,
            payload,
        };
        let bytes = wire::encode(Body::Broadcast(body));
        for (id, _) in self.forward_targets(None) {
            self.send(id, bytes.clone());
        }
        Ok(())
    }

    /// Sends `payload` to `dst`, relayed hop by hop along unicast routes.
    /// A unicast to ourselves is delivered at once.
    pub fn unicast(&mut self, _now: u64, dst: PeerName, channel: &str, payload: Vec<u8>) -> Result<(), MeshError> {
        if !self.channels.contains_key(channel) {
            return Err(MeshError::UnknownChannel(channel.to_string()));
        }
        if dst == self.me.name {
            self.deliver(channel.to_string(), dst, Delivery::Unicast, payload);
            return Ok(());
        }
        let id =
            self.routes.next_hop(dst).and_then(|hop| self.by_name.get(&hop).copied()).ok_or(MeshError::NoRoute(dst))?;
        let body = pb::ChannelUnicast {
            channel: channel.to_string(),
            src: self.me.name.as_u64(),
            dst: dst.as_u64(),
            hops_left: self.config.max_hops,
            payload,
        };
        self.send(id, wire::encode(Body::Unicast(body)));
        Ok(())
    }
}
