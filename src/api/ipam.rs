//! IPAM over the API: the addresses an attach asks for, resolved through
//! the mesh task's allocator, and the IPAM endpoints.
//!
//! An attach's address list may hold:
//! - nothing: one address from the default subnet;
//! - `net:default` or `net:CIDR`: one address from that subnet;
//! - `ip:CIDR` or `CIDR`: that address, claimed from IPAM (so no other
//!   container gets it); an IPv4 address outside the range is refused
//!   while IPAM is on. IPv6 addresses are used as given.

use ipnet::{IpNet, Ipv4Net};

use super::handle::MeshHandle;
use super::AttachError;
use crate::daemon::ipam::{IpamRequest, WAIT};

/// One entry of an attach's address list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// Any address of a subnet (`None`: the default subnet).
    Subnet(Option<Ipv4Net>),
    /// This address.
    Exact(IpNet),
}

/// Parses an attach's address list; an empty list means one address from
/// the default subnet. Errors name the bad entry.
pub fn parse_wanted(cidrs: &[String]) -> Result<Vec<Wanted>, String> {
    if cidrs.is_empty() {
        return Ok(vec![Wanted::Subnet(None)]);
    }
    cidrs
        .iter()
        .map(|c| {
            let c = c.trim();
            if let Some(net) = c.strip_prefix("net:") {
                if net == "default" {
                    return Ok(Wanted::Subnet(None));
                }
                let n: Ipv4Net = net.parse().map_err(|e| format!("invalid subnet {net:?}: {e}"))?;
                if n != n.trunc() {
                    return Err(format!("invalid subnet {net:?}: host bits set (did you mean {}?)", n.trunc()));
                }
                return Ok(Wanted::Subnet(Some(n)));
            }
            let a = c.strip_prefix("ip:").unwrap_or(c);
            a.parse::<IpNet>().map(Wanted::Exact).map_err(|e| format!("invalid address {a:?}: {e}"))
        })
        .collect()
}

/// The concrete addresses for an attach of `container`, and those newly
/// allocated for it (to release if the attach then fails).
pub async fn resolve(
    mesh: Option<&MeshHandle>,
    range: Option<Ipv4Net>,
    container: &str,
    wanted: &[Wanted],
) -> Result<(Vec<String>, Vec<Ipv4Net>), AttachError> {
    let gone = |e: crate::api::handle::MeshGone| AttachError::Unavailable(e.to_string());
    let held: Vec<Ipv4Net> = match (mesh, range) {
        (Some(m), Some(_)) => {
            m.ipam(|tx| IpamRequest::Addresses { container: container.into(), tx }).await.map_err(gone)?
        }
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    let mut new = Vec::new();
    for w in wanted {
        let (cidr, subnet) = match (*w, range) {
            (Wanted::Exact(IpNet::V4(n)), Some(r)) if r.contains(&n.addr()) => (Some(n), None),
            (Wanted::Exact(IpNet::V4(n)), Some(r)) => {
                return Err(AttachError::Invalid(format!(
                    "address {n} is outside the IPAM range {r}: give one inside it, or run weaver with \
                     --ipalloc-range '' to manage addresses yourself"
                )))
            }
            (Wanted::Exact(n), _) => {
                out.push(n.to_string());
                continue;
            }
            (Wanted::Subnet(s), Some(_)) => (None, s),
            (Wanted::Subnet(_), None) => {
                return Err(AttachError::Invalid(
                    "no address given, and IPAM is off (--ipalloc-range is empty): give CIDRs".into(),
                ))
            }
        };
        let Some(m) = mesh else {
            return Err(AttachError::Unavailable("IPAM runs in the mesh, which is not running".into()));
        };
        let ask = m.ipam(|tx| IpamRequest::Allocate { container: container.into(), cidr, subnet, tx });
        let a = match tokio::time::timeout(WAIT, ask).await {
            Ok(Ok(r)) => r.map_err(|e| classify(&e))?,
            Ok(Err(e)) => return Err(gone(e)),
            Err(_) => {
                return Err(AttachError::Unavailable(format!(
                    "no address within {}s: IPAM is still waiting for space (see `weavectl status ipam`)",
                    WAIT.as_secs()
                )))
            }
        };
        if !held.contains(&a) {
            new.push(a);
        }
        out.push(a.to_string());
    }
    Ok((out, new))
}

/// The kind of an allocator's refusal, which crosses the mesh task as text:
/// an address someone holds is a conflict, space owned by unreachable
/// peers (or IPAM not running) is for later, the rest is the request's.
fn classify(e: &str) -> AttachError {
    if e.contains("already allocated to") || e.contains("is in use") {
        AttachError::Conflict(e.to_string())
    } else if e.contains("unreachable peers") || e.contains("IPAM is not running") {
        AttachError::Unavailable(e.to_string())
    } else {
        AttachError::Invalid(e.to_string())
    }
}

/// Frees addresses of `container` (all when `only` is `None`).
pub async fn release(mesh: Option<&MeshHandle>, container: &str, only: Option<Vec<Ipv4Net>>) -> Vec<Ipv4Net> {
    let Some(m) = mesh else { return Vec::new() };
    m.ipam(|tx| IpamRequest::Release { container: container.into(), only, tx }).await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        assert_eq!(parse_wanted(&[]).unwrap(), vec![Wanted::Subnet(None)]);
        let v = parse_wanted(&[
            "net:10.32.1.0/24".into(),
            "ip:10.32.0.9/12".into(),
            "192.168.0.1/24".into(),
            "net:default".into(),
        ])
        .unwrap();
        assert_eq!(v[0], Wanted::Subnet(Some("10.32.1.0/24".parse().unwrap())));
        assert_eq!(v[1], Wanted::Exact("10.32.0.9/12".parse().unwrap()));
        assert_eq!(v[2], Wanted::Exact("192.168.0.1/24".parse().unwrap()));
        assert_eq!(v[3], Wanted::Subnet(None));
        for (bad, needle) in [
            ("10.32.0.0/33", "invalid address"),
            ("net:10.32.1.1/24", "host bits"),
            ("net:x", "invalid subnet"),
            ("ip:", "invalid address"),
        ] {
            let e = parse_wanted(&[bad.into()]).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn allocator_refusals_by_kind() {
        assert!(matches!(classify("address 10.32.0.5 is in use on peer 0a:00"), AttachError::Conflict(_)));
        assert!(matches!(classify("address 10.32.0.5 is already allocated to c1"), AttachError::Conflict(_)));
        assert!(matches!(
            classify("all the free space for this request is owned by unreachable peers (x)"),
            AttachError::Unavailable(_)
        ));
        assert!(matches!(classify("10.1.0.0/24 is outside the IPAM range 10.32.0.0/12"), AttachError::Invalid(_)));
    }
}
