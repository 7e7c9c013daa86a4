//! The query handler: query bytes in, an [`Outcome`] out. Sans-I/O: no
//! socket, no clock; the randomness for load balancing is passed in.
//!
//! Contract, for any input bytes:
//! - fewer than 12 bytes (no header), or a response (QR set): [`Outcome::Drop`];
//! - an opcode other than QUERY: NOTIMP;
//! - a message that does not parse (bad labels, a name over 255 bytes, a
//!   label over 63, short records): FORMERR with the query's ID;
//! - not exactly one question: FORMERR; an EDNS version above 0: BADVERS;
//! - a name in our domain: an authoritative answer. A (and ANY) give every
//!   address, shuffled; a name that exists with another type gives NOERROR
//!   and no answer (AAAA included); a name that does not exist, NXDOMAIN;
//!   zone transfers, NOTIMP; a class other than IN, REFUSED;
//! - `d.c.b.a.in-addr.arpa.` for an address we hold: PTR records;
//! - anything else: [`Outcome::Forward`], for the driver to relay upstream.
//!
//! Every reply has RA set and copies the ID, the RD and CD bits and the
//! question. A reply over the transport's limit (512 bytes on UDP, or the
//! query's EDNS payload size up to [`MAX_UDP_PAYLOAD`]) goes out without
//! its answers and with TC set, so the client retries over TCP.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rand::seq::SliceRandom;
use rand::Rng;

use super::zone::Zone;
use super::TTL_SECS;

/// The largest UDP reply we send to an EDNS client, and the payload size we
/// advertise (the DNS flag day 2020 value).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The largest UDP reply to a client without EDNS (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// What to do with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: relay the query to the upstream resolvers.
    Forward,
    /// Send nothing.
    Drop,
}

/// The transport a query came on, which bounds the reply's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes, or the client's EDNS size up to [`MAX_UDP_PAYLOAD`].
    Udp,
    /// TCP: 65535 bytes.
    Tcp,
}

/// Answers `query` from `zone`, authoritative for `domain` (lowercase,
/// fully qualified). See the module documentation.
pub fn answer(query: &[u8], zone: &Zone, domain: &Name, transport: Transport, rng: &mut impl Rng) -> Outcome {
    let Ok(header) = Header::read(&mut BinDecoder::new(query)) else { return Outcome::Drop };
    let meta = header.metadata;
    if meta.message_type == MessageType::Response {
        return Outcome::Drop;
    }
    if meta.op_code != OpCode::Query {
        return bare_error(&meta, ResponseCode::NotImp);
    }
    let Ok(msg) = Message::from_vec(query) else { return bare_error(&meta, ResponseCode::FormErr) };
    let [q] = msg.queries.as_slice() else { return bare_error(&meta, ResponseCode::FormErr) };
    let mut resp = response(&msg, q);
    if msg.edns.as_ref().is_some_and(|e| e.version() > 0) {
        resp.metadata.response_code = ResponseCode::BADVERS;
        return finish(resp, &msg, transport);
    }
    let name = q.name().to_lowercase();
    let resolved = if domain.zone_of(&name) {
        in_domain(q, &name, zone, domain, rng, &mut resp)
    } else {
        match reverse_v4(&name) {
            Some(ip) if !zone.reverse(ip).is_empty() => reverse(q, ip, zone, &mut resp),
            _ => false,
        }
    };
    if !resolved {
        return Outcome::Forward;
    }
    finish(resp, &msg, transport)
}

/// A SERVFAIL reply to `query`, for the driver when forwarding failed;
/// `None` if there is nothing to reply to (see [`answer`]).
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(query)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let mut resp = match Message::from_vec(query) {
        Ok(msg) => {
            let mut r = response(&msg, &Query::new());
            r.queries = msg.queries;
            r
        }
        Err(_) => base(&header.metadata),
    };
    resp.metadata.response_code = ResponseCode::ServFail;
    resp.to_vec().ok()
}

/// Fills `resp` for a question inside our domain; always resolved.
fn in_domain(q: &Query, name: &Name, zone: &Zone, domain: &Name, rng: &mut impl Rng, resp: &mut Message) -> bool {
    resp.metadata.authoritative = true;
    if !matches!(q.query_class(), DNSClass::IN | DNSClass::ANY) {
        resp.metadata.authoritative = false;
        resp.metadata.response_code = ResponseCode::Refused;
        return true;
    }
    let mut addrs = zone.lookup(name);
    let exists = !addrs.is_empty() || name == domain || zone.contains(name);
    resp.metadata.response_code = match q.query_type() {
        RecordType::AXFR | RecordType::IXFR => ResponseCode::NotImp,
        RecordType::OPT => ResponseCode::FormErr,
        RecordType::A | RecordType::ANY if !addrs.is_empty() => {
            addrs.shuffle(rng);
            resp.answers = addrs.into_iter().map(|a| a_record(q.name(), a)).collect();
            ResponseCode::NoError
        }
        _ if exists => ResponseCode::NoError,
        _ => ResponseCode::NXDomain,
    };
    true
}

/// Fills `resp` for the reverse name of an address we hold.
fn reverse(q: &Query, ip: Ipv4Addr, zone: &Zone, resp: &mut Message) -> bool {
    resp.metadata.authoritative = true;
    resp.metadata.response_code = match (q.query_class(), q.query_type()) {
        (DNSClass::IN | DNSClass::ANY, RecordType::PTR | RecordType::ANY) => {
            resp.answers = zone
                .reverse(ip)
                .into_iter()
                .map(|n| Record::from_rdata(q.name().clone(), TTL_SECS, RData::PTR(PTR(n))))
                .collect();
            ResponseCode::NoError
        }
        (DNSClass::IN | DNSClass::ANY, RecordType::AXFR | RecordType::IXFR) => ResponseCode::NotImp,
        (DNSClass::IN | DNSClass::ANY, _) => ResponseCode::NoError,
        _ => {
            resp.metadata.authoritative = false;
            ResponseCode::Refused
        }
    };
    true
}

fn a_record(name: &Name, addr: Ipv4Addr) -> Record {
    Record::from_rdata(name.clone(), TTL_SECS, RData::A(A(addr)))
}

/// The address of `d.c.b.a.in-addr.arpa.`, if `name` is one.
pub fn reverse_v4(name: &Name) -> Option<Ipv4Addr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let [d, c, b, a, in_addr, arpa] = labels.as_slice() else { return None };
    if !in_addr.eq_ignore_ascii_case(b"in-addr") || !arpa.eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let octet = |l: &[u8]| -> Option<u8> {
        if l.is_empty() || l.len() > 3 || !l.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(l).ok()?.parse().ok()
    };
    Some(Ipv4Addr::new(octet(a)?, octet(b)?, octet(c)?, octet(d)?))
}

/// A reply skeleton: ID, opcode, RD and CD from the request, RA set.
fn base(req: &Metadata) -> Message {
    let mut m = Message::response(req.id, req.op_code);
    m.metadata = Metadata::response_from_request(req);
    m.metadata.recursion_available = true;
    m
}

/// A reply to a parsed query: the skeleton, its question, and an OPT
/// record if the query had one.
fn response(msg: &Message, q: &Query) -> Message {
    let mut m = base(&msg.metadata);
    m.add_query(q.clone());
    if msg.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD).set_version(0);
        m.set_edns(edns);
    }
    m
}

/// An error reply to a query whose body did not parse: header only.
fn bare_error(req: &Metadata, code: ResponseCode) -> Outcome {
    let mut m = base(req);
    m.metadata.response_code = code;
    m.to_vec().map_or(Outcome::Drop, Outcome::Reply)
}

/// Encodes a reply within the transport's limit, truncating if needed.
fn finish(mut resp: Message, req: &Message, transport: Transport) -> Outcome {
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => match &req.edns {
            Some(e) => usize::from(e.max_payload().clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD)),
            None => usize::from(CLASSIC_UDP_PAYLOAD),
        },
    };
    if let Ok(bytes) = resp.to_vec() {
        if bytes.len() <= limit {
            return Outcome::Reply(bytes);
        }
    }
    resp.answers.clear();
    resp.authorities.clear();
    resp.additionals.clear();
    resp.metadata.truncation = true;
    resp.to_vec().map_or(Outcome::Drop, Outcome::Reply)
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
