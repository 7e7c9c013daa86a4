//! IPAM messages on the wire (`proto/ipam.proto`, package `weaver.ipam.v1`)
//! and their conversion to and from the core's types.
//!
//! Contract: decoding never panics, on any input; values out of range (a
//! peer name over 48 bits, a range past 2³², a token outside the range) are
//! errors, and a message with any bad part is refused whole.

use prost::Message;

use super::paxos::{Claim, ProposalId};
use super::ring::{Entry, Ring};
use super::space::Range;
use super::IpamError;
use crate::mesh::peer::PeerName;

/// The generated message types.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/weaver.ipam.v1.rs"));
}

const TOP: u64 = 1 << 32;

fn name(v: u64) -> Result<PeerName, IpamError> {
    if v > PeerName::MASK {
        return Err(IpamError::Wire("peer name over 48 bits"));
    }
    Ok(PeerName::from_u64(v))
}

fn range(start: u32, end: u64) -> Result<Range, IpamError> {
    if end > TOP || end <= u64::from(start) {
        return Err(IpamError::Wire("empty or oversized range"));
    }
    Ok(Range::new(u64::from(start), end))
}

/// A ring and claims, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// The ring (or the part of it in a delta).
    pub ring: Ring,
    /// Paxos claims, by node.
    pub claims: Vec<(PeerName, Claim)>,
}

/// Encodes a ring (whole or a subset) and claims.
pub fn encode_state(ring: &Ring, claims: &[(PeerName, &Claim)]) -> Vec<u8> {
    let r = ring.range();
    pb::State {
        start: r.start as u32,
        end: r.end,
        seeds: ring.seeds().iter().map(|n| n.as_u64()).collect(),
        tokens: ring
            .tokens()
            .map(|(t, e)| pb::Token { token: t as u32, owner: e.owner.as_u64(), version: e.version, free: e.free })
            .collect(),
        claims: claims
            .iter()
            .map(|(n, c)| pb::Claim {
                node: n.as_u64(),
                promise_round: c.promise.round,
                promise_node: c.promise.node,
                accepted_round: c.accepted.round,
                accepted_node: c.accepted.node,
                value: c.value.as_deref().unwrap_or_default().iter().map(|n| n.as_u64()).collect(),
                has_value: c.value.is_some(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Decodes a state.
pub fn decode_state(bytes: &[u8]) -> Result<State, IpamError> {
    let s = pb::State::decode(bytes).map_err(|_| IpamError::Wire("malformed IPAM state"))?;
    let r = range(s.start, s.end)?;
    let seeds = s.seeds.into_iter().map(name).collect::<Result<Vec<_>, _>>()?;
    let mut tokens = Vec::with_capacity(s.tokens.len());
    for t in s.tokens {
        tokens.push((u64::from(t.token), Entry { version: t.version, owner: name(t.owner)?, free: t.free }));
    }
    let ring = Ring::from_parts(r, seeds, tokens).map_err(|_| IpamError::Wire("token outside the range"))?;
    let mut claims = Vec::with_capacity(s.claims.len());
    for c in s.claims {
        let value = if c.has_value {
            let mut v = c.value.into_iter().map(name).collect::<Result<Vec<_>, _>>()?;
            v.sort_unstable();
            v.dedup();
            Some(v)
        } else {
            None
        };
        claims.push((
            name(c.node)?,
            Claim {
                promise: ProposalId { round: c.promise_round, node: c.promise_node },
                accepted: ProposalId { round: c.accepted_round, node: c.accepted_node },
                value,
            },
        ));
    }
    Ok(State { ring, claims })
}

/// A unicast request between allocators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Give me free space in this range.
    Space(Range),
    /// Give me this address.
    Claim(u64),
    /// No space to give in this range.
    Denied(Range),
    /// That address is taken.
    ClaimDenied(u64),
}

/// Encodes a request.
pub fn encode_request(r: Request) -> Vec<u8> {
    use pb::request::Body;
    let space = |r: Range| pb::Space { start: r.start as u32, end: r.end };
    let body = match r {
        Request::Space(r) => Body::Space(space(r)),
        Request::Claim(a) => Body::Claim(a as u32),
        Request::Denied(r) => Body::Denied(space(r)),
        Request::ClaimDenied(a) => Body::ClaimDenied(a as u32),
    };
    pb::Request { body: Some(body) }.encode_to_vec()
}

/// Decodes a request.
pub fn decode_request(bytes: &[u8]) -> Result<Request, IpamError> {
    use pb::request::Body;
    let r = pb::Request::decode(bytes).map_err(|_| IpamError::Wire("malformed IPAM request"))?;
    Ok(match r.body.ok_or(IpamError::Wire("empty IPAM request"))? {
        Body::Space(s) => Request::Space(range(s.start, s.end)?),
        Body::Claim(a) => Request::Claim(u64::from(a)),
        Body::Denied(s) => Request::Denied(range(s.start, s.end)?),
        Body::ClaimDenied(a) => Request::ClaimDenied(u64::from(a)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn state_round_trips(seeds in proptest::collection::vec(1u64..50, 1..5),
                             grants in proptest::collection::vec((0u64..1000, 1u64..50, 1u64..50), 0..10),
                             claims in proptest::collection::vec((1u64..9, 0u64..5, 0u64..5, proptest::option::of(proptest::collection::vec(1u64..9, 0..4))), 0..5)) {
            let mut ring = Ring::new(Range::new(5000, 6000));
            let seeds: Vec<PeerName> = seeds.into_iter().map(PeerName::from_u64).collect();
            ring.seed(&seeds).unwrap();
            for (a, len, to) in grants {
                let start = 5000 + a;
                if let Some(owner) = ring.owner_of(start) {
                    let _ = ring.grant(owner, Range::new(start, (start + len).min(6000)), PeerName::from_u64(to));
                }
            }
            let claims: Vec<(PeerName, Claim)> = claims.into_iter().map(|(n, pr, ar, v)| (PeerName::from_u64(n), Claim {
                promise: ProposalId { round: pr, node: n },
                accepted: ProposalId { round: ar, node: n },
                value: v.map(|v| { let mut v: Vec<PeerName> = v.into_iter().map(PeerName::from_u64).collect(); v.sort_unstable(); v.dedup(); v }),
            })).collect();
            let refs: Vec<(PeerName, &Claim)> = claims.iter().map(|(n, c)| (*n, c)).collect();
            let bytes = encode_state(&ring, &refs);
            let back = decode_state(&bytes).unwrap();
            prop_assert_eq!(back.ring, ring);
            prop_assert_eq!(back.claims, claims);
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_state(&bytes);
            let _ = decode_request(&bytes);
        }
    }

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        for r in [
            Request::Space(Range::new(10, 20)),
            Request::Claim(7),
            Request::Denied(Range::new(0, 1 << 32)),
            Request::ClaimDenied(u64::from(u32::MAX)),
        ] {
            assert_eq!(decode_request(&encode_request(r)).unwrap(), r);
        }
        let bad = pb::Request { body: Some(pb::request::Body::Space(pb::Space { start: 5, end: 5 })) }.encode_to_vec();
        assert!(decode_request(&bad).is_err());
        let bad = pb::State { start: 0, end: (1 << 32) + 1, ..Default::default() }.encode_to_vec();
        assert!(decode_state(&bad).is_err());
        let bad = pb::State {
            start: 10,
            end: 20,
            tokens: vec![pb::Token { token: 30, owner: 1, version: 1, free: 0 }],
            ..Default::default()
        }
        .encode_to_vec();
        assert!(decode_state(&bad).is_err());
        assert!(decode_request(&[]).is_err());
    }
}
