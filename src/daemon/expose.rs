//! `weavectl expose` / `hide`: the host's addresses on the overlay, with
//! their NAT rules, kept in `exposed.json` and put back at start.

use std::path::Path;

use ipnet::IpNet;
use tracing::{info, warn};

use crate::plumb::expose as plumb;

/// The file the exposed addresses are kept in.
pub const FILE: &str = "exposed.json";

/// The IPAM container key of the host's own addresses.
pub const EXPOSE: &str = "weave:expose";

/// The addresses exposed, as saved.
pub fn load(dir: &Path) -> Vec<IpNet> {
    let v: Vec<String> = super::store::load(dir, FILE, "list of exposed addresses");
    v.iter().filter_map(|s| s.parse().ok()).collect()
}

fn save(dir: &Path, list: &[IpNet]) -> Result<(), String> {
    let v: Vec<String> = list.iter().map(IpNet::to_string).collect();
    super::store::save(dir, FILE, &v).map_err(|e| format!("saving {}: {e}", dir.join(FILE).display()))
}

/// Puts `addrs` on `ifname` with their NAT rules, and records them.
pub async fn expose(dir: &Path, ifname: &str, addrs: &[IpNet]) -> Result<(), String> {
    for a in addrs {
        plumb::add_address(ifname, *a).await.map_err(|e| e.to_string())?;
        if let IpNet::V4(n) = a {
            plumb::add_nat(n.trunc()).map_err(|e| e.to_string())?;
        }
        info!(addr = %a, interface = ifname, "host exposed on the overlay");
    }
    // Announced: neighbours that cached another MAC for the address (the
    // interface is made anew at a restart) learn this one at once.
    let v4 = crate::plumb::garp::ipv4s(addrs);
    if !v4.is_empty() {
        if let Err(e) = crate::plumb::garp::announce_here(ifname, &v4) {
            warn!(error = %e, "could not announce the exposed addresses");
        }
    }
    let mut all = load(dir);
    for a in addrs {
        if !all.contains(a) {
            all.push(*a);
        }
    }
    save(dir, &all)
}

/// Takes `addrs` (all, if empty) off `ifname` with their NAT rules.
/// Returns what was hidden.
pub async fn hide(dir: &Path, ifname: &str, addrs: &[IpNet]) -> Result<Vec<IpNet>, String> {
    let all = load(dir);
    let (gone, keep): (Vec<IpNet>, Vec<IpNet>) = all.into_iter().partition(|a| addrs.is_empty() || addrs.contains(a));
    for a in &gone {
        plumb::del_address(ifname, *a).await.map_err(|e| e.to_string())?;
        // The NAT rule stays while another exposed address is in the subnet.
        if let IpNet::V4(n) = a {
            if !keep.iter().any(|k| matches!(k, IpNet::V4(k) if k.trunc() == n.trunc())) {
                plumb::del_nat(n.trunc()).map_err(|e| e.to_string())?;
            }
        }
        info!(addr = %a, interface = ifname, "host hidden from the overlay");
    }
    save(dir, &keep)?;
    Ok(gone)
}

/// The IPv4 addresses of `restored` that `now` still lists.
fn still_exposed_v4(restored: &[IpNet], now: &[IpNet]) -> Vec<std::net::Ipv4Addr> {
    let kept: Vec<IpNet> = restored.iter().filter(|a| now.contains(a)).copied().collect();
    crate::plumb::garp::ipv4s(&kept)
}

/// Puts back what an earlier run exposed.
pub async fn restore(dir: &Path, ifname: &str) {
    let list = load(dir);
    if list.is_empty() {
        return;
    }
    if let Err(e) = expose(dir, ifname, &list).await {
        warn!(error = %e, "could not expose the host again");
        return;
    }
    // At start the peer connections are not up yet, so the announcement
    // above reaches nobody: announce again once they have had time to come up.
    // Only what is still exposed then: a hidden address must not be claimed.
    if crate::plumb::garp::ipv4s(&list).is_empty() {
        return;
    }
    let (dir, ifname) = (dir.to_path_buf(), ifname.to_string());
    tokio::spawn(async move {
        for secs in [2, 5, 15] {
            tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
            let v4 = still_exposed_v4(&list, &load(&dir));
            if v4.is_empty() {
                return;
            }
            if let Err(e) = crate::plumb::garp::announce_here(&ifname, &v4) {
                warn!(error = %e, "could not announce the exposed addresses");
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_announces_only_what_is_still_exposed() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        let restored = [n("10.32.0.1/12"), n("fd00::1/64"), n("10.40.0.1/24")];
        assert_eq!(
            still_exposed_v4(&restored, &restored),
            vec!["10.32.0.1".parse::<std::net::Ipv4Addr>().unwrap(), "10.40.0.1".parse().unwrap()]
        );
        // Hidden since: not announced again.
        assert_eq!(
            still_exposed_v4(&restored, &[n("10.40.0.1/24")]),
            vec!["10.40.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert!(still_exposed_v4(&restored, &[]).is_empty());
        // Exposed again with another prefix: another address, not this one.
        assert!(still_exposed_v4(&[n("10.40.0.1/24")], &[n("10.40.0.1/16")]).is_empty());
    }
}
