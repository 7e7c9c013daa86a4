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
    let v4 = crate::plumb::garp::ipv4s(&list);
    let ifname = ifname.to_string();
    if !v4.is_empty() {
        tokio::spawn(async move {
            for secs in [2, 5, 15] {
                tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                if let Err(e) = crate::plumb::garp::announce_here(&ifname, &v4) {
                    warn!(error = %e, "could not announce the exposed addresses");
                    return;
                }
            }
        });
    }
}
