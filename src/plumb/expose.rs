//! Exposing the host on the overlay: addresses on the host's own overlay
//! interface (the bridge `weave`, or the datapath's internal port), and a
//! masquerade rule per exposed subnet so containers reach the outside
//! world through the host.
//!
//! The NAT rules go through `iptables` (the nft or legacy backend, whichever
//! the host's `iptables` is), each tagged with the comment
//! [`NAT_COMMENT`] so they can be told from the host's own rules. Every
//! operation is idempotent: adding what exists, or removing what does not,
//! succeeds.

use std::process::Command;

use ipnet::{IpNet, Ipv4Net};
use rtnetlink::LinkUnspec;

use super::veth::{connect, index_of, nl, PlumbError};

/// The comment on every NAT rule weaver adds.
pub const NAT_COMMENT: &str = "weaver-expose";

fn other(op: impl Into<String>, msg: impl Into<String>) -> PlumbError {
    PlumbError::Other { op: op.into(), msg: msg.into() }
}

/// Adds `addr` to interface `ifname` (which must exist) and brings it up.
pub async fn add_address(ifname: &str, addr: IpNet) -> Result<(), PlumbError> {
    let h = connect().await?;
    let op = format!("add {addr} to {ifname}");
    let idx = index_of(&h, ifname).await?.ok_or_else(|| other(&op, "no such interface"))?;
    match h.address().add(idx, addr.addr(), addr.prefix_len()).execute().await {
        Ok(()) => {}
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
        Err(e) => return Err(nl(op)(e)),
    }
    h.link().set(LinkUnspec::new_with_index(idx).up().build()).execute().await.map_err(nl(format!("bring {ifname} up")))
}

/// Removes `addr` from `ifname`; a missing address or interface is fine.
pub async fn del_address(ifname: &str, addr: IpNet) -> Result<(), PlumbError> {
    use futures::TryStreamExt;
    let h = connect().await?;
    let Some(idx) = index_of(&h, ifname).await? else { return Ok(()) };
    let mut list = h.address().get().set_link_index_filter(idx).execute();
    while let Some(msg) = list.try_next().await.map_err(nl(format!("list addresses of {ifname}")))? {
        use rtnetlink::packet_route::address::AddressAttribute;
        let here = msg.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(ip) if *ip == addr.addr()));
        if here && msg.header.prefix_len == addr.prefix_len() {
            h.address().del(msg).execute().await.map_err(nl(format!("remove {addr} from {ifname}")))?;
        }
    }
    Ok(())
}

/// The iptables arguments of the masquerade rule for `subnet`: traffic from
/// it to anywhere outside it.
pub fn nat_rule(subnet: Ipv4Net) -> Vec<String> {
    let s = subnet.trunc().to_string();
    ["POSTROUTING", "-s", &s, "!", "-d", &s, "-m", "comment", "--comment", NAT_COMMENT, "-j", "MASQUERADE"]
        .iter()
        .map(|x| x.to_string())
        .collect()
}

fn iptables(action: &str, rule: &[String]) -> Result<bool, PlumbError> {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", action])
        .args(rule)
        .output()
        .map_err(|e| other("run iptables", format!("{e} (expose needs iptables for its NAT rule)")))?;
    if out.status.success() {
        return Ok(true);
    }
    // -C answers 1 for "no such rule".
    if action == "-C" && out.status.code() == Some(1) {
        return Ok(false);
    }
    Err(other(format!("iptables {action} {}", rule.join(" ")), String::from_utf8_lossy(&out.stderr).trim().to_string()))
}

/// Makes traffic from `subnet` to the outside leave through the host,
/// masqueraded; turns IPv4 forwarding on.
pub fn add_nat(subnet: Ipv4Net) -> Result<(), PlumbError> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| other("turn on IPv4 forwarding", e.to_string()))?;
    let rule = nat_rule(subnet);
    if !iptables("-C", &rule)? {
        iptables("-A", &rule)?;
    }
    Ok(())
}

/// Removes the masquerade rule of `subnet`, if there.
pub fn del_nat(subnet: Ipv4Net) -> Result<(), PlumbError> {
    let rule = nat_rule(subnet);
    while iptables("-C", &rule)? {
        iptables("-D", &rule)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_names_the_subnet_both_ways_and_is_tagged() {
        let r = nat_rule("10.32.0.7/12".parse().unwrap());
        assert_eq!(
            r.join(" "),
            "POSTROUTING -s 10.32.0.0/12 ! -d 10.32.0.0/12 -m comment --comment weaver-expose -j MASQUERADE"
        );
    }
}
