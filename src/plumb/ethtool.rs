//! Netdev features (offloads) over the kernel's `ethtool` generic netlink
//! family: what `ethtool -k` reads and `ethtool -K` changes, without the
//! `ethtool` binary.
//!
//! Two halves:
//! - pure: request attributes are built ([`features_get_attrs`],
//!   [`features_set_attrs`]) and replies parsed ([`parse_features_reply`],
//!   [`parse_set_reply`]) on the codec of [`crate::odp::nla`]; never panics on input;
//! - I/O: [`Ethtool`] sends them through neli's router, as
//!   [`crate::odp::socket`] does for the Open vSwitch families. Blocking (a
//!   round trip to the kernel); async callers use `spawn_blocking`.
//!
//! Bitsets are read and written in the kernel's verbose form (bits named,
//! `ETHTOOL_A_BITSET_BITS`), never the compact one, so no name table is
//! needed here. A set request carries a mask (no `ETHTOOL_A_BITSET_NOMASK`):
//! only the named features change.

use std::io::Cursor;

use neli::consts::nl::NlmF;
use neli::consts::socket::NlFamily;
use neli::err::{DeError, RouterError, SerError};
use neli::nl::NlPayload;
use neli::router::synchronous::NlRouter;
use neli::utils::Groups;
use neli::{FromBytesWithInput, Size, ToBytes};
use thiserror::Error;

use crate::odp::nla::{NlaIter, NlaWriter, WireError, NLA_F_NESTED};

/// The generic netlink family (`ETHTOOL_GENL_NAME`) and its version.
const FAMILY: &str = "ethtool";
const VERSION: u8 = 1;

// Message types (include/uapi/linux/ethtool_netlink.h). Requests and
// replies are numbered in separate spaces that happen to agree here.
const MSG_FEATURES_GET: u8 = 11;
const MSG_FEATURES_SET: u8 = 12;
const MSG_FEATURES_GET_REPLY: u8 = 11;
const MSG_FEATURES_SET_REPLY: u8 = 12;

// ETHTOOL_A_HEADER_*
const A_HEADER_DEV_NAME: u16 = 2;

// ETHTOOL_A_FEATURES_*
const A_FEATURES_HEADER: u16 = 1;
const A_FEATURES_HW: u16 = 2;
const A_FEATURES_WANTED: u16 = 3;
const A_FEATURES_ACTIVE: u16 = 4;
const A_FEATURES_NOCHANGE: u16 = 5;

// ETHTOOL_A_BITSET_*
const A_BITSET_NOMASK: u16 = 1;
const A_BITSET_BITS: u16 = 3;
const A_BITSET_VALUE: u16 = 4;
// ETHTOOL_A_BITSET_BITS_*
const A_BITSET_BITS_BIT: u16 = 1;
// ETHTOOL_A_BITSET_BIT_*
const A_BITSET_BIT_INDEX: u16 = 1;
const A_BITSET_BIT_NAME: u16 = 2;
const A_BITSET_BIT_VALUE: u16 = 3;

/// Errors from reading or changing features.
#[derive(Debug, Error)]
pub enum EthtoolError {
    #[error("generic netlink family ethtool not found (the kernel predates ethtool over netlink, Linux 5.6)")]
    FamilyMissing,
    /// The kernel refused; `detail` is its extended-ACK message, if any.
    #[error("{op} on {ifname}: {}{}", std::io::Error::from_raw_os_error(*.errno), detail_suffix(.detail))]
    Kernel { op: &'static str, ifname: String, errno: i32, detail: Option<String> },
    #[error("{ifname} has no feature named {name:?}")]
    UnknownFeature { ifname: String, name: String },
    #[error("{ifname}: feature {name} cannot be changed (the driver fixes it {})", on_off(*.active))]
    Fixed { ifname: String, name: String, active: bool },
    /// The kernel took the request but left these features other than asked:
    /// (name, the value asked for).
    #[error("{ifname}: the kernel did not apply {}", list(.features))]
    NotApplied { ifname: String, features: Vec<(String, bool)> },
    #[error("{op} on {ifname}: malformed reply: {source}")]
    Wire { op: &'static str, ifname: String, source: WireError },
    #[error("{op} on {ifname}: netlink: {msg}")]
    Netlink { op: &'static str, ifname: String, msg: String },
}

fn detail_suffix(d: &Option<String>) -> String {
    d.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn list(features: &[(String, bool)]) -> String {
    features.iter().map(|(n, v)| format!("{n} {}", on_off(*v))).collect::<Vec<_>>().join(", ")
}

/// One feature of an interface, as `ETHTOOL_MSG_FEATURES_GET` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// Bit number in the kernel's `netdev_features_t`.
    pub index: u32,
    /// The kernel's name, e.g. `tx-checksum-ip-generic`.
    pub name: String,
    /// The driver lets it be switched (in `hw_features`, not `NETIF_F_NEVER_CHANGE`).
    pub changeable: bool,
    /// Asked for (`wanted_features`).
    pub wanted: bool,
    /// In effect (`features`).
    pub active: bool,
}

/// What a set request did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetOutcome {
    /// Features asked for but not in effect afterwards: (name, value asked for).
    pub unmet: Vec<(String, bool)>,
    /// Features whose state changed, dependencies included: (name, new value).
    pub changed: Vec<(String, bool)>,
}

/// One bit of a verbose bitset.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bit {
    index: Option<u32>,
    name: Option<String>,
    value: bool,
}

// ---- pure: requests ----

fn put_header(w: &mut NlaWriter, ifname: &str) {
    w.nested(A_FEATURES_HEADER | NLA_F_NESTED, |h| h.put_str(A_HEADER_DEV_NAME, ifname));
}

/// The attributes of a `FEATURES_GET` request for `ifname` (verbose bitsets).
pub fn features_get_attrs(ifname: &str) -> Vec<u8> {
    let mut w = NlaWriter::new();
    put_header(&mut w, ifname);
    w.into_bytes()
}

/// The attributes of a `FEATURES_SET` request: the wanted bitset names each
/// feature, with `ETHTOOL_A_BITSET_BIT_VALUE` for on and without it for off;
/// no `NOMASK`, so features not named keep their state.
pub fn features_set_attrs(ifname: &str, features: &[(&str, bool)]) -> Vec<u8> {
    let mut w = NlaWriter::new();
    put_header(&mut w, ifname);
    w.nested(A_FEATURES_WANTED | NLA_F_NESTED, |set| {
        set.nested(A_BITSET_BITS | NLA_F_NESTED, |bits| {
            for (name, on) in features {
                bits.nested(A_BITSET_BITS_BIT | NLA_F_NESTED, |bit| {
                    bit.put_str(A_BITSET_BIT_NAME, name);
                    if *on {
                        bit.put_flag(A_BITSET_BIT_VALUE);
                    }
                });
            }
        });
    });
    w.into_bytes()
}

// ---- pure: replies ----

/// Parses a verbose bitset nest. With a mask, the bits listed are those
/// of the mask, each with `ETHTOOL_A_BITSET_BIT_VALUE` if it is set; without
/// one (`ETHTOOL_A_BITSET_NOMASK`), the bits listed are exactly those set,
/// and carry no value flag. A compact bitset (`ETHTOOL_A_BITSET_VALUE`) is
/// an error: it is only sent when asked for, and this module never asks.
fn parse_bitset(payload: &[u8]) -> Result<Vec<Bit>, WireError> {
    let what = "ethtool bitset";
    let mut nomask = false;
    let mut bits = Vec::new();
    for a in NlaIter::new(payload) {
        let a = a?;
        match a.kind {
            A_BITSET_BITS => {
                for b in a.nested() {
                    let b = b?;
                    if b.kind != A_BITSET_BITS_BIT {
                        continue;
                    }
                    let mut bit = Bit { index: None, name: None, value: false };
                    for f in b.nested() {
                        let f = f?;
                        match f.kind {
                            A_BITSET_BIT_INDEX => bit.index = Some(f.u32(what)?),
                            A_BITSET_BIT_NAME => bit.name = Some(f.string(what)?),
                            A_BITSET_BIT_VALUE => {
                                f.flag(what)?;
                                bit.value = true;
                            }
                            _ => {}
                        }
                    }
                    bits.push(bit);
                }
            }
            A_BITSET_VALUE => {
                return Err(WireError::Invalid {
                    what,
                    reason: "compact bitset where a verbose one was asked for".into(),
                })
            }
            A_BITSET_NOMASK => {
                a.flag(what)?;
                nomask = true;
            }
            // SIZE and anything newer: nothing to keep.
            _ => {}
        }
    }
    if nomask {
        bits.iter_mut().for_each(|b| b.value = true);
    }
    Ok(bits)
}

/// The named bits of a bitset attribute, with their values.
fn named_bits(payload: &[u8]) -> Result<Vec<(Option<u32>, String, bool)>, WireError> {
    parse_bitset(payload)?
        .into_iter()
        .map(|b| match b.name {
            Some(n) => Ok((b.index, n, b.value)),
            None => Err(WireError::Missing { what: "ethtool bitset bit", kind: A_BITSET_BIT_NAME }),
        })
        .collect()
}

/// Parses the attributes of a `FEATURES_GET_REPLY` into every feature the
/// kernel knows, in bit order. `HW` lists all of them (its mask is the full
/// set); `WANTED`, `ACTIVE` and `NOCHANGE` list only the bits that are on.
/// Bits the kernel leaves unnamed (retired features) are skipped.
pub fn parse_features_reply(attrs: &[u8]) -> Result<Vec<Feature>, WireError> {
    let mut hw = None;
    let (mut wanted, mut active, mut nochange) = (Vec::new(), Vec::new(), Vec::new());
    for a in NlaIter::new(attrs) {
        let a = a?;
        match a.kind {
            A_FEATURES_HW => hw = Some(named_bits(a.payload)?),
            A_FEATURES_WANTED => wanted = named_bits(a.payload)?,
            A_FEATURES_ACTIVE => active = named_bits(a.payload)?,
            A_FEATURES_NOCHANGE => nochange = named_bits(a.payload)?,
            _ => {}
        }
    }
    let hw = hw.ok_or(WireError::Missing { what: "ethtool features reply", kind: A_FEATURES_HW })?;
    let on = |set: &[(Option<u32>, String, bool)], name: &str| set.iter().any(|(_, n, v)| n == name && *v);
    let mut out: Vec<Feature> = hw
        .iter()
        .enumerate()
        .filter(|(_, (_, name, _))| !name.is_empty())
        .map(|(i, (index, name, in_hw))| Feature {
            index: index.unwrap_or(i as u32),
            name: name.clone(),
            changeable: *in_hw && !on(&nochange, name),
            wanted: on(&wanted, name),
            active: on(&active, name),
        })
        .collect();
    out.sort_by_key(|f| f.index);
    Ok(out)
}

/// Parses the attributes of a `FEATURES_SET_REPLY`. Its `WANTED` bitset
/// lists the requested features that did not end up as requested (value:
/// as requested); its `ACTIVE` bitset lists every feature that changed
/// (value: the new state).
pub fn parse_set_reply(attrs: &[u8]) -> Result<SetOutcome, WireError> {
    let mut out = SetOutcome::default();
    for a in NlaIter::new(attrs) {
        let a = a?;
        let pairs = || -> Result<Vec<(String, bool)>, WireError> {
            Ok(named_bits(a.payload)?.into_iter().map(|(_, n, v)| (n, v)).collect())
        };
        match a.kind {
            A_FEATURES_WANTED => out.unmet = pairs()?,
            A_FEATURES_ACTIVE => out.changed = pairs()?,
            _ => {}
        }
    }
    Ok(out)
}

// ---- I/O ----

/// A generic netlink message of the ethtool family: `genlmsghdr` and attributes.
#[derive(Debug, Clone)]
struct GenlMsg {
    cmd: u8,
    attrs: Vec<u8>,
}

const GENL_HDRLEN: usize = 4;

impl Size for GenlMsg {
    fn unpadded_size(&self) -> usize {
        GENL_HDRLEN + self.attrs.len()
    }
}

impl ToBytes for GenlMsg {
    fn to_bytes(&self, buffer: &mut Cursor<Vec<u8>>) -> Result<(), SerError> {
        use std::io::Write;
        buffer.write_all(&[self.cmd, VERSION, 0, 0])?;
        buffer.write_all(&self.attrs)?;
        Ok(())
    }
}

impl FromBytesWithInput for GenlMsg {
    type Input = usize;
    fn from_bytes_with_input(buffer: &mut Cursor<impl AsRef<[u8]>>, input: usize) -> Result<Self, DeError> {
        let start = buffer.position() as usize;
        let all = buffer.get_ref().as_ref();
        let end = start.checked_add(input).filter(|&e| e <= all.len()).ok_or(DeError::InvalidInput(input))?;
        let body = &all[start..end];
        if body.len() < GENL_HDRLEN {
            return Err(DeError::InvalidInput(input));
        }
        let msg = GenlMsg { cmd: body[0], attrs: body[GENL_HDRLEN..].to_vec() };
        buffer.set_position(end as u64);
        Ok(msg)
    }
}

/// A connection to the ethtool family (one netlink socket and neli's
/// router thread), in the network namespace of the thread that opened it.
pub struct Ethtool {
    router: NlRouter,
    family: u16,
}

impl std::fmt::Debug for Ethtool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ethtool").field("family", &self.family).finish()
    }
}

impl Ethtool {
    /// Opens a generic netlink socket and resolves the ethtool family.
    pub fn connect() -> Result<Self, EthtoolError> {
        let sock_err = |msg: String| EthtoolError::Netlink { op: "connect", ifname: String::new(), msg };
        let (router, _mcast) =
            NlRouter::connect(NlFamily::Generic, None, Groups::empty()).map_err(|e| sock_err(e.to_string()))?;
        // The kernel's reason for a refusal, when it gives one; optional.
        if let Err(e) = router.enable_ext_ack(true) {
            tracing::debug!(error = %e, "netlink extended ACK unavailable");
        }
        let family = router.resolve_genl_family(FAMILY).map_err(|e| match e {
            RouterError::Nlmsgerr(m) if *m.error() == -libc::ENOENT => EthtoolError::FamilyMissing,
            RouterError::Msg(_) => EthtoolError::FamilyMissing,
            other => sock_err(other.to_string()),
        })?;
        Ok(Ethtool { router, family })
    }

    /// Sends one request (with `NLM_F_ACK`) and returns the attributes of
    /// each reply of type `reply_cmd`.
    fn request(
        &self,
        op: &'static str,
        ifname: &str,
        cmd: u8,
        attrs: Vec<u8>,
        reply_cmd: u8,
    ) -> Result<Vec<Vec<u8>>, EthtoolError> {
        let fail = |e: RouterError<u16, GenlMsg>| match e {
            RouterError::Nlmsgerr(m) => EthtoolError::Kernel {
                op,
                ifname: ifname.to_string(),
                errno: -*m.error(),
                detail: ext_ack_message(m.ext_ack()),
            },
            other => EthtoolError::Netlink { op, ifname: ifname.to_string(), msg: other.to_string() },
        };
        let recv = self
            .router
            .send::<u16, GenlMsg, u16, GenlMsg>(self.family, NlmF::ACK, NlPayload::Payload(GenlMsg { cmd, attrs }))
            .map_err(fail)?;
        let mut out = Vec::new();
        for msg in recv {
            let msg = msg.map_err(fail)?;
            if let NlPayload::Payload(p) = msg.nl_payload() {
                if p.cmd == reply_cmd {
                    out.push(p.attrs.clone());
                } else {
                    tracing::debug!(op, ifname, cmd = p.cmd, "ethtool: reply of another kind skipped");
                }
            }
        }
        Ok(out)
    }

    /// Every feature of `ifname` with its state.
    pub fn features(&self, ifname: &str) -> Result<Vec<Feature>, EthtoolError> {
        let op = "read features";
        let replies = self.request(op, ifname, MSG_FEATURES_GET, features_get_attrs(ifname), MSG_FEATURES_GET_REPLY)?;
        let attrs = replies.first().ok_or_else(|| EthtoolError::Netlink {
            op,
            ifname: ifname.to_string(),
            msg: "the kernel acknowledged without a reply".into(),
        })?;
        parse_features_reply(attrs).map_err(|source| EthtoolError::Wire { op, ifname: ifname.to_string(), source })
    }

    /// Switches the named features of `ifname` on (`true`) or off. Every
    /// name must be one the kernel knows for the interface; one the driver
    /// does not let change is refused unless it is already as asked. Fails
    /// if the kernel leaves any of them other than asked.
    pub fn set(&self, ifname: &str, features: &[(&str, bool)]) -> Result<SetOutcome, EthtoolError> {
        let op = "set features";
        let current = self.features(ifname)?;
        for (name, on) in features {
            let f = current
                .iter()
                .find(|f| f.name == *name)
                .ok_or_else(|| EthtoolError::UnknownFeature { ifname: ifname.to_string(), name: name.to_string() })?;
            if !f.changeable && f.active != *on {
                return Err(EthtoolError::Fixed {
                    ifname: ifname.to_string(),
                    name: name.to_string(),
                    active: f.active,
                });
            }
        }
        let replies =
            self.request(op, ifname, MSG_FEATURES_SET, features_set_attrs(ifname, features), MSG_FEATURES_SET_REPLY)?;
        let mut outcome = SetOutcome::default();
        for attrs in replies {
            let o = parse_set_reply(&attrs).map_err(|source| EthtoolError::Wire {
                op,
                ifname: ifname.to_string(),
                source,
            })?;
            outcome.unmet.extend(o.unmet);
            outcome.changed.extend(o.changed);
        }
        if !outcome.unmet.is_empty() {
            return Err(EthtoolError::NotApplied { ifname: ifname.to_string(), features: outcome.unmet });
        }
        tracing::debug!(ifname, changed = %list(&outcome.changed), "ethtool: features set");
        Ok(outcome)
    }
}

/// The text of an extended ACK (`NLMSGERR_ATTR_MSG`), if there is one.
fn ext_ack_message(
    ext: &neli::types::GenlBuffer<neli::consts::nl::NlmsgerrAttr, neli::types::Buffer>,
) -> Option<String> {
    ext.as_ref().iter().find(|a| *a.nla_type().nla_type() == neli::consts::nl::NlmsgerrAttr::Msg).map(|a| {
        let b: &[u8] = a.nla_payload().as_ref();
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    })
}

/// Every feature of `ifname` with its state (one connection per call).
pub fn get_features(ifname: &str) -> Result<Vec<Feature>, EthtoolError> {
    Ethtool::connect()?.features(ifname)
}

/// The features of `ifname` and whether each is in effect, in bit order.
pub fn get_active(ifname: &str) -> Result<Vec<(String, bool)>, EthtoolError> {
    Ok(get_features(ifname)?.into_iter().map(|f| (f.name, f.active)).collect())
}

/// Switches the named features of `ifname` on or off; see [`Ethtool::set`].
pub fn set_features(ifname: &str, features: &[(&str, bool)]) -> Result<(), EthtoolError> {
    Ethtool::connect()?.set(ifname, features).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attribute, by hand: length (header included, unpadded), type, payload, padding.
    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn get_request_names_the_device_in_a_nested_header() {
        let b = features_get_attrs("eth0");
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &16u16.to_ne_bytes()[..], &0x8001u16.to_ne_bytes(),    // HEADER, nested, 4 + 12
            &9u16.to_ne_bytes(), &2u16.to_ne_bytes(), b"eth0\0", &[0, 0, 0], // DEV_NAME "eth0\0" + pad
        ].concat();
        assert_eq!(b, want);
    }

    #[test]
    fn set_request_bytes_match_the_kernel_layout() {
        let b = features_set_attrs("veth0", &[("tx-tcp-segmentation", false), ("rx-gro", true)]);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            // HEADER (0x8001), len 4 + 12: DEV_NAME (2), len 4 + 6 = 10, padded to 12
            &16u16.to_ne_bytes()[..], &0x8001u16.to_ne_bytes(),
            &10u16.to_ne_bytes(), &2u16.to_ne_bytes(), b"veth0\0", &[0, 0],
            // WANTED (0x8003), len 4 + 52
            &56u16.to_ne_bytes(), &0x8003u16.to_ne_bytes(),
            // BITS (0x8003), len 4 + 28 + 20
            &52u16.to_ne_bytes(), &0x8003u16.to_ne_bytes(),
            // BIT (0x8001): NAME "tx-tcp-segmentation\0" (20 bytes), no VALUE: off
            &28u16.to_ne_bytes(), &0x8001u16.to_ne_bytes(),
            &24u16.to_ne_bytes(), &2u16.to_ne_bytes(), b"tx-tcp-segmentation\0",
            // BIT (0x8001): NAME "rx-gro\0" (7 bytes, padded to 8), VALUE flag (3): on
            &20u16.to_ne_bytes(), &0x8001u16.to_ne_bytes(),
            &11u16.to_ne_bytes(), &2u16.to_ne_bytes(), b"rx-gro\0", &[0],
            &4u16.to_ne_bytes(), &3u16.to_ne_bytes(),
        ].concat();
        // No NOMASK flag (type 1) in the bitset: only the named bits change.
        assert_eq!(b, want);
    }

    fn bit(index: u32, name: &str, on: bool) -> Vec<u8> {
        let mut p = attr(A_BITSET_BIT_INDEX, &index.to_ne_bytes());
        p.extend(attr(A_BITSET_BIT_NAME, format!("{name}\0").as_bytes()));
        if on {
            p.extend(attr(A_BITSET_BIT_VALUE, &[]));
        }
        attr(A_BITSET_BITS_BIT | NLA_F_NESTED, &p)
    }

    /// A verbose bitset as the kernel writes it: with a mask, every bit of
    /// the mask, with the value flag when set; without one (NOMASK), only
    /// the bits that are set, without the flag.
    fn bitset(kind: u16, nomask: bool, bits: &[(u32, &str, bool)]) -> Vec<u8> {
        let mut p = Vec::new();
        if nomask {
            p.extend(attr(A_BITSET_NOMASK, &[]));
        }
        p.extend(attr(2, &64u32.to_ne_bytes())); // SIZE
        let listed: Vec<u8> =
            bits.iter().filter(|b| !nomask || b.2).flat_map(|&(i, n, on)| bit(i, n, on && !nomask)).collect();
        p.extend(attr(A_BITSET_BITS | NLA_F_NESTED, &listed));
        attr(kind | NLA_F_NESTED, &p)
    }

    /// A GET reply as the kernel lays it out (verbose): HW with every bit,
    /// the others with only the bits that are on.
    fn canned_get_reply() -> Vec<u8> {
        let header =
            attr(A_FEATURES_HEADER | NLA_F_NESTED, &[attr(1, &7u32.to_ne_bytes()), attr(2, b"veth0\0")].concat());
        [
            header,
            bitset(
                A_FEATURES_HW,
                false,
                &[
                    (0, "tx-scatter-gather", true),
                    (2, "", false),
                    (3, "tx-checksum-ip-generic", true),
                    (16, "tx-tcp-segmentation", true),
                    (23, "tx-lockless", false),
                    (33, "rx-gro", true),
                ],
            ),
            bitset(A_FEATURES_WANTED, true, &[(0, "tx-scatter-gather", true), (16, "tx-tcp-segmentation", true)]),
            bitset(A_FEATURES_ACTIVE, true, &[(0, "tx-scatter-gather", true), (23, "tx-lockless", true)]),
            bitset(A_FEATURES_NOCHANGE, true, &[(23, "tx-lockless", true), (33, "rx-gro", true)]),
        ]
        .concat()
    }

    #[test]
    fn get_reply_parses_into_every_feature_with_its_state() {
        let f = parse_features_reply(&canned_get_reply()).unwrap();
        let by = |n: &str| f.iter().find(|x| x.name == n).cloned().unwrap();
        assert_eq!(f.len(), 5);
        assert_eq!(f.iter().map(|x| x.index).collect::<Vec<_>>(), [0, 3, 16, 23, 33]);
        assert_eq!(
            by("tx-scatter-gather"),
            Feature { index: 0, name: "tx-scatter-gather".into(), changeable: true, wanted: true, active: true }
        );
        let csum = by("tx-checksum-ip-generic");
        assert!(csum.changeable && !csum.wanted && !csum.active);
        // Wanted but not in effect (a dependency holds it off).
        let tso = by("tx-tcp-segmentation");
        assert!(tso.wanted && !tso.active);
        // Not in hw_features, yet on: fixed.
        let lltx = by("tx-lockless");
        assert!(!lltx.changeable && lltx.active);
        // In hw_features but in NOCHANGE: not changeable.
        assert!(!by("rx-gro").changeable);
    }

    #[test]
    fn set_reply_reports_unmet_requests_and_changes() {
        let reply = [
            attr(A_FEATURES_HEADER | NLA_F_NESTED, &attr(2, b"veth0\0")),
            bitset(A_FEATURES_WANTED, false, &[(16, "tx-tcp-segmentation", true)]),
            bitset(A_FEATURES_ACTIVE, false, &[(3, "tx-checksum-ip-generic", false), (0, "tx-scatter-gather", false)]),
        ]
        .concat();
        let o = parse_set_reply(&reply).unwrap();
        assert_eq!(o.unmet, vec![("tx-tcp-segmentation".to_string(), true)]);
        assert_eq!(
            o.changed,
            vec![("tx-checksum-ip-generic".to_string(), false), ("tx-scatter-gather".to_string(), false)]
        );
        // An empty reply: nothing unmet, nothing changed.
        assert_eq!(parse_set_reply(&attr(A_FEATURES_HEADER | NLA_F_NESTED, &[])).unwrap(), SetOutcome::default());
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let good = canned_get_reply();
        for cut in 0..good.len() {
            let _ = parse_features_reply(&good[..cut]);
            let _ = parse_set_reply(&good[..cut]);
        }
        // No HW bitset: nothing to list the features by.
        assert!(parse_features_reply(&bitset(A_FEATURES_ACTIVE, true, &[(0, "x", true)])).is_err());
        // A compact bitset where a verbose one was asked for.
        let compact = attr(
            A_FEATURES_HW | NLA_F_NESTED,
            &[attr(2, &1u32.to_ne_bytes()), attr(A_BITSET_VALUE, &[1, 0, 0, 0])].concat(),
        );
        assert!(parse_features_reply(&compact).is_err());
        // A bit without a name.
        let nameless = attr(
            A_FEATURES_HW | NLA_F_NESTED,
            &attr(
                A_BITSET_BITS | NLA_F_NESTED,
                &attr(A_BITSET_BITS_BIT | NLA_F_NESTED, &attr(A_BITSET_BIT_INDEX, &1u32.to_ne_bytes())),
            ),
        );
        assert!(parse_features_reply(&nameless).is_err());
    }

    #[test]
    fn errors_name_the_interface_and_feature() {
        let e = EthtoolError::Kernel {
            op: "set features",
            ifname: "vethwe-bridge".into(),
            errno: libc::EPERM,
            detail: Some("bit name not found".into()),
        };
        let s = e.to_string();
        assert!(s.contains("set features on vethwe-bridge") && s.contains("bit name not found"), "{s}");
        let e = EthtoolError::UnknownFeature { ifname: "veth0".into(), name: "tx-bogus".into() };
        assert_eq!(e.to_string(), "veth0 has no feature named \"tx-bogus\"");
        let e =
            EthtoolError::NotApplied { ifname: "veth0".into(), features: vec![("tx-tcp-segmentation".into(), true)] };
        assert_eq!(e.to_string(), "veth0: the kernel did not apply tx-tcp-segmentation on");
    }
}
