//! The attached containers, a JSON list in the state directory, written
//! atomically after every attach and detach. A restarted daemon (after a
//! crash or a stop) takes back the containers whose veths still exist.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::plumb::veth;

/// One attached container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// As given to `weavectl attach`: a netns name, PID or path.
    pub target: String,
    /// The host end of its veth.
    pub host_ifname: String,
    pub cidrs: Vec<String>,
    /// The container end's MAC address (empty in lists of older versions).
    #[serde(default)]
    pub mac: String,
}

const FILE: &str = "attachments.json";

/// The recorded attachments; a missing file is an empty list, an unreadable
/// one is reported and treated as empty.
pub fn load(dir: &Path) -> Vec<Saved> {
    super::store::load(dir, FILE, "attachment list")
}

/// Writes the list atomically.
pub fn save(dir: &Path, list: &[Saved]) -> std::io::Result<()> {
    super::store::save(dir, FILE, list)
}

/// The recorded attachments whose host veths still exist (a crash or a
/// restart leaves them); the others are logged and forgotten.
pub async fn surviving(dir: &Path) -> Vec<Saved> {
    let mut out = Vec::new();
    for s in load(dir) {
        match veth::exists(&s.host_ifname).await {
            Ok(true) => out.push(s),
            Ok(false) => info!(target = %s.target, "container gone since the last run; forgotten"),
            Err(e) => warn!(target = %s.target, error = %e, "could not check container veth"),
        }
    }
    out
}

/// The veth to create for an attach request: the namespace, the addresses
/// (refused, naming the bad one, if one does not parse), the MTU.
pub fn attach_spec(r: &crate::api::AttachRequest, mtu: u32) -> Result<veth::AttachSpec, String> {
    let addrs = r
        .cidrs
        .iter()
        .map(|c| c.parse::<ipnet::IpNet>().map_err(|e| format!("invalid address {c:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let netns = veth::netns_path(&r.target);
    Ok(veth::AttachSpec { host_ifname: veth::host_ifname(&netns), netns, addrs, mtu, gso_max_size: None })
}

/// Removes the host ends of container veths (ours by their names) that no
/// attachment owns: left by a run that died mid-attach.
pub async fn remove_unowned_veths(ours: &BTreeSet<&String>) {
    match veth::names_with_prefix(veth::HOST_PREFIX).await {
        Ok(names) => {
            for n in names.iter().filter(|n| veth::is_container_veth(n) && !ours.contains(n)) {
                info!(ifname = %n, "removing a stale container veth");
                if let Err(e) = veth::detach(n).await {
                    warn!(ifname = %n, error = %e, "could not remove stale veth");
                }
            }
        }
        Err(e) => warn!(error = %e, "could not list interfaces"),
    }
}

/// What a whole-interface detach did: `removed` is the attachment's
/// addresses, or `None` when it was not attached.
pub fn detached(target: &str, removed: Option<Vec<String>>) -> crate::api::DetachView {
    crate::api::DetachView {
        target: target.to_string(),
        was_attached: removed.is_some(),
        interface_removed: removed.is_some(),
        removed: removed.unwrap_or_default(),
    }
}

/// Takes `which` off the attached container's `ethwe` (the interface stays)
/// and out of its recorded addresses `recorded` (`None`: not attached).
/// Addresses it does not have are skipped: detaching is idempotent.
pub async fn remove_addresses(
    target: &str,
    recorded: Option<&mut Vec<String>>,
    which: &[ipnet::IpNet],
) -> Result<crate::api::DetachView, String> {
    let Some(recorded) = recorded else { return Ok(detached(target, None)) };
    let netns = veth::netns_path(target);
    veth::del_addresses(&netns, which.to_vec()).await.map_err(|e| e.to_string())?;
    let mut removed = Vec::new();
    recorded.retain(|c| match c.parse::<ipnet::IpNet>() {
        Ok(n) if which.contains(&n) => {
            removed.push(c.clone());
            false
        }
        _ => true,
    });
    info!(%target, removed = ?removed, "addresses detached");
    Ok(crate::api::DetachView { target: target.to_string(), was_attached: true, removed, interface_removed: false })
}

/// Announces the container's IPv4 addresses with gratuitous ARP, once its
/// port is on the bridge or datapath. Best effort: a failure is logged.
pub async fn announce(spec: &veth::AttachSpec, mac: [u8; 6]) {
    let ips = crate::plumb::garp::ipv4s(&spec.addrs);
    match crate::plumb::garp::announce(&spec.netns, mac, ips).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(netns = %spec.netns.display(), sent = n, "gratuitous ARP sent"),
        Err(e) => warn!(netns = %spec.netns.display(), error = %e, "could not send gratuitous ARP"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let dir = std::env::temp_dir().join(format!("weaver-attach-{}", std::process::id()));
        assert!(load(&dir).is_empty());
        let l = vec![Saved {
            target: "c1".into(),
            host_ifname: "vethwe1".into(),
            cidrs: vec!["10.0.0.1/24".into()],
            mac: "02:00:00:00:00:01".into(),
        }];
        save(&dir, &l).unwrap();
        assert_eq!(load(&dir), l);
        // A garbled list of an older version (a JSON file): kept aside, not used.
        let old = std::env::temp_dir().join(format!("weaver-attach-old-{}", std::process::id()));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join(FILE), "[{").unwrap();
        assert!(load(&old).is_empty());
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(old);
    }
}
