//! Mesh messages on the wire (`proto/mesh.proto`, package `weaver.mesh.v1`)
//! and their conversion to and from the core's types.
//!
//! Contract: decoding never panics, on any input; values out of range (a name
//! over 48 bits, a short ID over 12 bits, a zero UID) are errors. Topology
//! entries are encoded straight from [`PeerEntry`] without copying (the
//! encoding is byte-for-byte what prost produces for `pb::PeerEntry`, which
//! a test checks), because a peer sends its whole topology when a new
//! neighbour arrives.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

use super::error::MeshError;
use super::topology::{ConnectionInfo, PeerEntry};
use crate::mesh::peer::{PeerName, PeerUid, ShortId};

/// The generated message types.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/weaver.mesh.v1.rs"));
}

use pb::mesh_message::Body;

/// Encodes a message body.
pub fn encode(body: Body) -> Vec<u8> {
    pb::MeshMessage { body: Some(body) }.encode_to_vec()
}

/// Decodes a message; a message without a body is invalid.
pub fn decode(bytes: &[u8]) -> Result<Body, MeshError> {
    pb::MeshMessage::decode(bytes)?.body.ok_or(MeshError::Invalid("empty mesh message"))
}

/// A peer name from the wire.
pub fn name(v: u64) -> Result<PeerName, MeshError> {
    if v > PeerName::MASK {
        return Err(MeshError::Invalid("peer name over 48 bits"));
    }
    Ok(PeerName::from_u64(v))
}

/// A UID from the wire (0 means "unknown" and is refused).
pub fn uid(v: u64) -> Result<PeerUid, MeshError> {
    if v == 0 {
        return Err(MeshError::Invalid("zero peer UID"));
    }
    Ok(PeerUid(v))
}

/// `(name, uid, version)` of an encoded entry, without decoding the rest.
pub fn peek_header(bytes: &[u8]) -> Result<(PeerName, PeerUid, u64), MeshError> {
    let h = pb::PeerHeader::decode(bytes)?;
    Ok((name(h.name)?, uid(h.uid)?, h.version))
}

/// Decodes and validates an encoded entry.
pub fn decode_entry(bytes: &[u8]) -> Result<PeerEntry, MeshError> {
    let p = pb::PeerEntry::decode(bytes)?;
    let mut connections = p
        .connections
        .into_iter()
        .map(|c| {
            Ok(ConnectionInfo {
                remote: name(c.remote)?,
                address: c.address,
                outbound: c.outbound,
                established: c.established,
            })
        })
        .collect::<Result<Vec<_>, MeshError>>()?;
    connections.shrink_to_fit();
    Ok(PeerEntry {
        name: name(p.name)?,
        uid: uid(p.uid)?,
        version: p.version,
        nickname: p.nickname,
        short_id: ShortId::new(p.short_id).map_err(|_| MeshError::Invalid("short ID over 12 bits"))?,
        connections,
    })
}

fn varint_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

fn put_varint(buf: &mut Vec<u8>, tag: u32, v: u64) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

fn bytes_len(tag: u32, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }
}

fn put_bytes(buf: &mut Vec<u8>, tag: u32, b: &[u8]) {
    if !b.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(b.len() as u64, buf);
        buf.extend_from_slice(b);
    }
}

fn connection_len(c: &ConnectionInfo) -> usize {
    varint_len(1, c.remote.as_u64())
        + bytes_len(2, c.address.len())
        + varint_len(3, c.outbound.into())
        + varint_len(4, c.established.into())
}

/// The encoded length of an entry.
pub fn entry_len(e: &PeerEntry) -> usize {
    let conns: usize = e
        .connections
        .iter()
        .map(|c| key_len(6) + encoded_len_varint(connection_len(c) as u64) + connection_len(c))
        .sum();
    varint_len(1, e.name.as_u64())
        + if e.uid.0 != 0 { key_len(2) + 8 } else { 0 }
        + varint_len(3, e.version)
        + bytes_len(4, e.nickname.len())
        + varint_len(5, e.short_id.get().into())
        + conns
}

/// Appends the encoding of an entry (a `pb::PeerEntry`).
pub fn encode_entry(e: &PeerEntry, buf: &mut Vec<u8>) {
    put_varint(buf, 1, e.name.as_u64());
    if e.uid.0 != 0 {
        encode_key(2, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&e.uid.0.to_le_bytes());
    }
    put_varint(buf, 3, e.version);
    put_bytes(buf, 4, e.nickname.as_bytes());
    put_varint(buf, 5, e.short_id.get().into());
    for c in &e.connections {
        encode_key(6, WireType::LengthDelimited, buf);
        encode_varint(connection_len(c) as u64, buf);
        put_varint(buf, 1, c.remote.as_u64());
        put_bytes(buf, 2, c.address.as_bytes());
        put_varint(buf, 3, c.outbound.into());
        put_varint(buf, 4, c.established.into());
    }
}

/// Encodes `entries` and `want` as `Update` messages of about `max_bytes`
/// each (at least one entry per message; `want` goes in the first).
pub fn encode_updates<'a>(
    entries: impl IntoIterator<Item = &'a PeerEntry>,
    want: &[PeerName],
    max_bytes: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut batch: Vec<(&PeerEntry, usize)> = Vec::new();
    let mut size = 0;
    let mut want = want;
    for e in entries {
        let len = entry_len(e);
        if !batch.is_empty() && size + len > max_bytes {
            out.push(encode_update(&batch, want));
            (batch, size, want) = (Vec::new(), 0, &[]);
        }
        size += len + 8;
        batch.push((e, len));
    }
    if !batch.is_empty() || !want.is_empty() {
        out.push(encode_update(&batch, want));
    }
    out
}

fn encode_update(entries: &[(&PeerEntry, usize)], want: &[PeerName]) -> Vec<u8> {
    let want_len: usize = want.iter().map(|n| encoded_len_varint(n.as_u64())).sum();
    let body_len: usize =
        entries.iter().map(|&(_, len)| key_len(1) + encoded_len_varint(len as u64) + len).sum::<usize>()
            + bytes_len(2, want_len);
    let mut buf = Vec::with_capacity(body_len + 8);
    encode_key(3, WireType::LengthDelimited, &mut buf);
    encode_varint(body_len as u64, &mut buf);
    for &(e, len) in entries {
        encode_key(1, WireType::LengthDelimited, &mut buf);
        encode_varint(len as u64, &mut buf);
        encode_entry(e, &mut buf);
    }
    if want_len > 0 {
        encode_key(2, WireType::LengthDelimited, &mut buf);
        encode_varint(want_len as u64, &mut buf);
        for n in want {
            encode_varint(n.as_u64(), &mut buf);
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry_strategy() -> impl Strategy<Value = PeerEntry> {
        let conn = (any::<u64>(), "[0-9.:]{0,21}", any::<bool>(), any::<bool>()).prop_map(
            |(r, address, outbound, established)| ConnectionInfo {
                remote: PeerName::from_u64(r),
                address,
                outbound,
                established,
            },
        );
        (any::<u64>(), 1..u64::MAX, any::<u64>(), "\\PC{0,12}", 0u32..4096, proptest::collection::vec(conn, 0..5))
            .prop_map(|(n, u, version, nickname, sid, connections)| PeerEntry {
                name: PeerName::from_u64(n),
                uid: PeerUid(u),
                version,
                nickname,
                short_id: ShortId::from_bits(sid),
                connections,
            })
    }

    fn to_pb(e: &PeerEntry) -> pb::PeerEntry {
        pb::PeerEntry {
            name: e.name.as_u64(),
            uid: e.uid.0,
            version: e.version,
            nickname: e.nickname.clone(),
            short_id: e.short_id.get().into(),
            connections: e
                .connections
                .iter()
                .map(|c| pb::Connection {
                    remote: c.remote.as_u64(),
                    address: c.address.clone(),
                    outbound: c.outbound,
                    established: c.established,
                })
                .collect(),
        }
    }

    proptest! {
        #[test]
        fn entries_encode_like_prost(e in entry_strategy()) {
            let mut buf = Vec::new();
            encode_entry(&e, &mut buf);
            prop_assert_eq!(buf.len(), entry_len(&e));
            prop_assert_eq!(&buf, &to_pb(&e).encode_to_vec());
            prop_assert_eq!(decode_entry(&buf).unwrap(), e.clone());
            prop_assert_eq!(peek_header(&buf).unwrap(), (e.name, e.uid, e.version));
        }

        #[test]
        fn updates_encode_like_prost(es in proptest::collection::vec(entry_strategy(), 0..6), want in proptest::collection::vec(0u64..1 << 48, 0..4), max in 1usize..600) {
            let want: Vec<PeerName> = want.into_iter().map(PeerName::from_u64).collect();
            let msgs = encode_updates(es.iter(), &want, max);
            let mut got = Vec::new();
            let mut got_want = Vec::new();
            for m in &msgs {
                let Body::Update(u) = decode(m).unwrap() else { panic!("not an update") };
                got.extend(u.entries.iter().map(|b| decode_entry(b).unwrap()));
                got_want.extend(u.want.iter().map(|&n| PeerName::from_u64(n)));
            }
            prop_assert_eq!(got, es);
            prop_assert_eq!(got_want, want);
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = decode_entry(&bytes);
            let _ = peek_header(&bytes);
        }
    }

    #[test]
    fn out_of_range_values_are_errors() {
        let mut e = to_pb(&PeerEntry {
            name: PeerName::from_u64(1),
            uid: PeerUid(1),
            version: 1,
            nickname: String::new(),
            short_id: ShortId::from_bits(1),
            connections: vec![],
        });
        e.short_id = 4096;
        assert!(matches!(decode_entry(&e.encode_to_vec()), Err(MeshError::Invalid(_))));
        e.short_id = 1;
        e.name = 1 << 48;
        assert!(matches!(decode_entry(&e.encode_to_vec()), Err(MeshError::Invalid(_))));
        e.name = 1;
        e.uid = 0;
        assert!(matches!(decode_entry(&e.encode_to_vec()), Err(MeshError::Invalid(_))));
        assert!(matches!(decode(&[]), Err(MeshError::Invalid(_))));
        assert!(matches!(decode(&[0xff, 0xff]), Err(MeshError::Decode(_))));
    }
}
