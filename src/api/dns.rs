//! weaveDNS over the API: the name an attached container gets, and its
//! registration.

use std::net::Ipv4Addr;

use super::handle::MeshHandle;
use crate::daemon::dns::DnsRequest;

/// The DNS name of a target by default: a network namespace's name (a PID
/// or a path has none).
pub fn default_name(target: &str) -> Option<String> {
    let t = target.trim();
    (!t.is_empty() && !t.contains('/') && t.parse::<u32>().is_err()).then(|| t.to_string())
}

/// Adds `name` for the IPv4 addresses among `cidrs` of `container`. A
/// failure is logged: the container is attached either way.
pub async fn register(mesh: &MeshHandle, container: &str, name: &str, cidrs: &[String]) {
    let addrs: Vec<Ipv4Addr> = cidrs
        .iter()
        .filter_map(|c| c.parse::<ipnet::IpNet>().ok())
        .filter_map(|n| match n.addr() {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    if addrs.is_empty() {
        return;
    }
    let r = mesh.dns(|tx| DnsRequest::Add { container: container.into(), name: name.into(), addrs, tx }).await;
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(%container, %name, error = %e, "container attached, but not named in DNS"),
        Err(e) => tracing::warn!(%container, error = %e, "container attached, but not named in DNS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_targets() {
        assert_eq!(default_name("web1"), Some("web1".into()));
        assert_eq!(default_name("1234"), None);
        assert_eq!(default_name("/proc/1/ns/net"), None);
        assert_eq!(default_name(" "), None);
    }
}
