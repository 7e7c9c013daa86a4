//! The `ovs-dpctl dump-flows` text grammar: typed flows to text and back.
//!
//! Weaver prints keys, masks and actions exactly as Open vSwitch 3.1 (the
//! version Debian 12 ships) prints them in `ovs-dpctl dump-flows` without
//! `-m`, and parses what `ovs-dpctl add-flow KEY ACTIONS` accepts into the same
//! key, mask and actions OVS would build. The reference is OVS 3.1.0's
//! `lib/odp-util.c`: `odp_flow_format`, `format_odp_key_attr__`,
//! `format_odp_tun_attr` and `format_odp_action` print; `odp_flow_from_string`
//! (`parse_odp_key_mask_attr__`) and `odp_actions_from_string` parse. The rest
//! of a dump line comes from `format_dpif_flow` in `lib/dpctl.c` and
//! `dpif_flow_stats_format` in `lib/dpif.c`. As in OVS, per-attribute tables
//! (`key_len`, `layout`) drive both directions.
//!
//! # Contract
//! - Formatting never fails and never panics. Bytes OVS cannot decode print the
//!   way OVS prints them (`key40(01 02)`, `bad length 3, expected 4 for: ...`).
//! - Parsing never panics, whatever the input. An error names the byte offset
//!   and quotes the text there.
//! - `format(parse(format(x))) == format(x)` wherever the grammar is lossless.
//!   The tests spell out that domain. Where OVS itself is lossy, weaver is
//!   lossy in the same way rather than "fixing" it.
//!
//! # OVS 3.1 behaviour reproduced on purpose
//! - Non-verbose keys omit every attribute whose mask is all zeros, except
//!   `eth()`, which always prints because it tells Ethernet from L3 packets.
//!   When `eth()` is the first thing printed, OVS forgets the comma after it.
//! - `%#x` prints zero as `0`, so values look like `recirc_id(0)` and
//!   `skb_mark(0x5)`.
//! - `tun_id` is dropped from an unmasked tunnel key unless it is verbose.
//!   This happens in a `-m`-less dump of a flow the kernel returned without a
//!   mask. It is a regression in 3.1's `format_be64`.
//! - `ct_zone()`, `ct_mark()` and `ct_label()` print empty when there is no mask.
//! - A 48-byte userspace `userdata` prints as the OVS cookie it would be
//!   (`sFlow(...)`, `slow_path(...)`, ...). Parsing `userspace(pid=N)` without
//!   userdata builds the 48 zero bytes OVS builds, and short userdata is padded
//!   to 8 bytes.
//! - Raw actions follow OVS 3.1's *userspace* numbering. Past `ADD_MPLS` it has
//!   `tnl_push` (23), `tnl_pop` (24), `drop` (25) and `lb_output` (26), where
//!   the 6.1 kernel has `DEC_TTL` at 23. Any higher number prints as
//!   `bad length N, expected -1 for: actionN(..)`.
//!
//! # Known divergences (see also the tests)
//! - Parsing is stricter about numbers: a value that does not fit its field,
//!   or a negative one, is an error, where OVS silently truncates.
//! - Parsing accepts a little more than OVS: `recirc(0x..)` and `hash(l4(N))`
//!   (OVS prints both but cannot parse them), and `drop` as the whole of an
//!   action list. OVS 3.1 turns `drop` into a userspace-only action that the
//!   6.1 kernel rejects; weaver builds an empty action list instead.
//! - `set(tunnel(...))` always becomes a plain set. OVS makes it a masked set
//!   when the key and mask happen to have the same size, which the kernel
//!   refuses. A masked set of an attribute that weaver keeps raw (`sctp`,
//!   `ct_*`, ...) is an error, because [`Action::SetMasked`](crate::odp::action::Action::SetMasked) can only emit
//!   typed fixed-size attributes.
//! - These are printed generically (`keyN(..)`, `actionN(..)`), not in OVS's
//!   own words: `nsh`, Geneve, ERSPAN and GTP-U tunnel options, the `ct`,
//!   `push_nsh`, `check_pkt_len` and `tnl_push` actions (so also the kernel's
//!   `dec_ttl`), and raw nested attributes that do not decode.
//! - Tunnel attributes `TunnelKey` keeps raw print where it emits them, after
//!   `tp_dst`. For VXLAN options that is the kernel's order too; IPv6 tunnel
//!   addresses, which the kernel sends after `tun_id`, move.
//! - Port names (`in_port(vxlan0)`) are not accepted: `ovs-dpctl` looks them up
//!   in the datapath, and this module does no I/O.
//! - Parsing does not know `mpls`, `nsh`, `nd_ext`, `packet_type`, Geneve,
//!   ERSPAN or GTP-U options, or the `ct`, `push_nsh`, `check_pkt_len`,
//!   `tnl_push`, `tnl_pop` and `lb_output` actions. All of these are
//!   [`FormatError::Unsupported`].
//!
//! # Layout
//! - `tables`: attribute numbers, payload lengths, struct layouts and names.
//! - `print`: printf-alikes and the `field=value[/mask],` printers.
//! - `scan`: the scanner, with `ovs_scan`'s conventions.
//! - `key_fmt` / `key_parse`: keys and masks. `tunnel`: `tunnel(...)`, both ways.
//! - `action_fmt` / `action_parse`: actions.
//! - `flow`: a whole dump line. `error`: [`FormatError`].

mod action_fmt;
mod action_parse;
mod error;
mod flow;
mod key_fmt;
mod key_parse;
mod print;
mod scan;
mod tables;
#[cfg(test)]
mod testing;
mod tunnel;

pub use action_fmt::format_actions;
pub use action_parse::parse_actions;
pub use error::FormatError;
pub use flow::format_flow;
pub use key_fmt::format_key;
pub use key_parse::parse_key;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::testing::actions_round_trip;
    use super::*;

    /// Where weaver knowingly differs from `ovs-dpctl normalize-actions` 3.1.
    #[test]
    fn documented_divergences_from_ovs() {
        // OVS makes a masked set of this (the kernel refuses it) and prints
        // `flags(+key)`; weaver sends a plain set.
        assert_eq!(
            actions_round_trip("set(tunnel(tun_id=0x5,dst=2.2.2.2,ttl=64))"),
            "set(tunnel(tun_id=0x5,dst=2.2.2.2,ttl=64,flags(key)))"
        );
        // OVS cannot parse these, though it prints them.
        assert_eq!(actions_round_trip("recirc(0x5)"), "recirc(0x5)");
        assert_eq!(actions_round_trip("hash(l4(0)),hash(sym_l4(7))"), "hash(l4(0)),hash(sym_l4(7))");
        // OVS 3.1 builds a userspace-only DROP the 6.1 kernel rejects.
        assert_eq!(parse_actions("drop").unwrap(), vec![]);
        // OVS truncates; weaver refuses.
        assert!(matches!(parse_key("in_port(4294967296)"), Err(FormatError::OutOfRange { .. })));
        assert!(matches!(parse_actions("-1"), Err(FormatError::OutOfRange { .. })));
    }

    /// Strings made of the grammar's own pieces, to get past the first byte.
    fn grammar_soup() -> impl Strategy<Value = String> {
        const TOKENS: &[&str] = &[
            "in_port(",
            "eth(",
            "src=",
            "dst=",
            "tunnel(",
            "flags(",
            "+df",
            "-csum",
            "key",
            "|",
            "encap(",
            "vlan(",
            "vid=",
            "ipv4(",
            "ipv6(",
            "::1",
            "frag=no",
            "tcp_flags(",
            "ct_state(",
            "+trk",
            "ct_label(",
            "0x",
            "1",
            "255",
            "99999999999999999999",
            "/",
            ",",
            ")",
            "(",
            "set(",
            "sample(sample=",
            "%,actions(",
            "userspace(pid=",
            ",userdata(",
            "0a",
            ",actions",
            ",sFlow(vid=",
            "push_vlan(",
            "clone(",
            "drop",
            "hash(",
            "l4(",
            "recirc(",
            "meter(",
            "ufid:",
            "-",
            ".",
            ":",
            " ",
            "é",
            "\0",
        ];
        proptest::collection::vec(proptest::sample::select(TOKENS), 0..24).prop_map(|t| t.concat())
    }

    proptest! {
        #[test]
        fn formatting_anything_never_panics(
            k in crate::odp::key::strategy::keys(),
            m in crate::odp::key::strategy::keys(),
            a in crate::odp::action::strategy::actions(),
            f in crate::odp::flow::strategy::flow(),
            now in any::<Option<u64>>(),
        ) {
            let _ = format_key(&k, Some(&m));
            let _ = format_key(&k, None);
            let _ = format_actions(&a);
            let _ = format_flow(&f, now);
        }

        #[test]
        fn parsing_any_string_never_panics(s in ".{0,200}", soup in grammar_soup()) {
            let _ = parse_key(&s);
            let _ = parse_actions(&s);
            let _ = parse_key(&soup);
            let _ = parse_actions(&soup);
        }
    }
}
