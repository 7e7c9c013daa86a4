//! Helpers shared by the golden and property tests of several files.

use super::key_parse::from_raw;
use super::{format_actions, parse_actions};
use crate::odp::key::{self, Ipv4Key, KeyAttr};

/// An action list, parsed and printed again.
pub(super) fn actions_round_trip(text: &str) -> String {
    let a = parse_actions(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    format_actions(&a)
}

/// Brings a value into the part of the grammar that parses back: frag
/// types OVS can name, 20-bit labels, 12-bit TCP flags.
pub(super) fn printable(a: KeyAttr) -> KeyAttr {
    match a {
        KeyAttr::Ipv4(k) => KeyAttr::Ipv4(Ipv4Key { frag: k.frag % 3, ..k }),
        KeyAttr::Ipv6(k) => KeyAttr::Ipv6(key::Ipv6Key { frag: k.frag % 3, label: k.label & 0xfffff, ..k }),
        KeyAttr::TcpFlags(f) => KeyAttr::TcpFlags(f & 0x0fff),
        other => other,
    }
}

/// A mask OVS can print and read back: `frag` all or nothing, 20-bit
/// label masks, `recirc_id` exact or wildcarded.
fn printable_mask(a: KeyAttr) -> KeyAttr {
    match a {
        KeyAttr::Ipv4(k) => KeyAttr::Ipv4(Ipv4Key { frag: if k.frag & 1 == 1 { 0xff } else { 0 }, ..k }),
        KeyAttr::Ipv6(k) => {
            KeyAttr::Ipv6(key::Ipv6Key { frag: if k.frag & 1 == 1 { 0xff } else { 0 }, label: k.label & 0xfffff, ..k })
        }
        KeyAttr::RecircId(m) => KeyAttr::RecircId(if m & 1 == 1 { u32::MAX } else { 0 }),
        other => other,
    }
}

/// A mask of the same kind: all zeros, all ones or random, per attribute.
pub(super) fn mask_like(a: &KeyAttr, mode: u8, bytes: &[u8]) -> KeyAttr {
    let len = a.fixed_payload().map_or(0, |p| p.len());
    let payload: Vec<u8> = match mode % 3 {
        0 => vec![0; len],
        1 => vec![0xff; len],
        _ => bytes.iter().copied().cycle().take(len).collect(),
    };
    printable_mask(from_raw(a.kind(), payload))
}
