//! The attached containers, a JSON list in the state store (`weaver.redb`),
//! written atomically after every attach and detach. A restarted daemon
//! (after a crash or a stop) takes back the containers whose veths still
//! exist. And what an attach of an attached container does.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::api::ipam::Wanted;
use crate::api::AttachError;
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
    /// The namespace it was attached in (none in lists of older versions:
    /// filled in when a restart takes the container back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<NetnsId>,
}

/// A network namespace's identity: the device and inode of its file (the
/// same for `/run/netns/NAME` and `/proc/PID/ns/net` of a process in it;
/// a namespace deleted and made again under the same name is another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

/// The identity of the namespace `target` names; a missing one is
/// [`AttachError::NotFound`].
pub fn netns_id(target: &str) -> Result<NetnsId, AttachError> {
    let path = veth::netns_path(target);
    match nix::sys::stat::stat(&path) {
        Ok(st) => Ok(NetnsId { dev: st.st_dev, ino: st.st_ino }),
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ESRCH) => {
            Err(AttachError::NotFound(format!("no network namespace at {} (is {target} gone?)", path.display())))
        }
        Err(e) => Err(AttachError::Failed(format!("network namespace {}: {e}", path.display()))),
    }
}

/// What an attach finds of an earlier attachment of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// None: attach.
    Fresh,
    /// Attached already, alive, in the same namespace, with the addresses
    /// asked: nothing to do.
    Same,
    /// Attached, but its veth is gone or the namespace is another one
    /// now: replace it.
    Stale,
}

/// Decides an attach of `target` against the attachments `held`:
/// `asked` are the addresses asked for (`None`: none asked, any will do).
/// Refused ([`AttachError::Conflict`]) when the target is attached with
/// other addresses, or its namespace is attached under another target.
pub async fn prior(target: &str, asked: Option<&[Wanted]>, held: &[Saved]) -> Result<Prior, AttachError> {
    let id = netns_id(target)?;
    let alive = |s: &Saved| {
        let ifname = s.host_ifname.clone();
        async move { veth::exists(&ifname).await.map_err(|e| AttachError::Failed(e.to_string())) }
    };
    for s in held.iter().filter(|s| s.target != target && s.netns == Some(id)) {
        // A live veth keeps its namespace alive: it is this one.
        if alive(s).await? {
            return Err(AttachError::Conflict(format!(
                "this network namespace is already attached as {}; detach that first (weavectl detach {})",
                s.target, s.target
            )));
        }
    }
    let Some(s) = held.iter().find(|s| s.target == target) else { return Ok(Prior::Fresh) };
    if !alive(s).await? || s.netns.is_some_and(|n| n != id) {
        return Ok(Prior::Stale);
    }
    match asked {
        Some(a) if !same_addresses(a, &s.cidrs) => Err(AttachError::Conflict(format!(
            "{target} is already attached with {}; detach it first (weavectl detach {target}) to attach it with \
             other addresses",
            if s.cidrs.is_empty() { "no address".to_string() } else { s.cidrs.join(", ") }
        ))),
        _ => Ok(Prior::Same),
    }
}

/// Whether the addresses `held` are exactly what `asked` asks for: each
/// address asked is held, each subnet asked has its own held address in
/// it (with its prefix; the default subnet: any IPv4 one), and no other.
pub fn same_addresses(asked: &[Wanted], held: &[String]) -> bool {
    let held: Vec<ipnet::IpNet> = held.iter().filter_map(|c| c.parse().ok()).collect();
    if asked.len() != held.len() {
        return false;
    }
    let mut free = vec![true; held.len()];
    let mut take = |fits: &dyn Fn(&ipnet::IpNet) -> bool| {
        let i = held.iter().zip(&free).position(|(h, f)| *f && fits(h));
        i.map(|i| free[i] = false).is_some()
    };
    let exact = asked.iter().filter_map(|w| if let Wanted::Exact(n) = w { Some(*n) } else { None });
    let exact: Vec<ipnet::IpNet> = exact.collect();
    if !exact.iter().all(|n| take(&|h| h == n)) {
        return false;
    }
    asked.iter().all(|w| match w {
        Wanted::Exact(_) => true,
        Wanted::Subnet(None) => take(&|h| matches!(h, ipnet::IpNet::V4(_))),
        Wanted::Subnet(Some(s)) => take(&|h| match h {
            ipnet::IpNet::V4(h) => h.prefix_len() == s.prefix_len() && s.contains(&h.addr()),
            ipnet::IpNet::V6(_) => false,
        }),
    })
}

/// The addresses an attach asks for: `None` when none are.
pub fn asked(cidrs: &[String]) -> Result<Option<Vec<Wanted>>, AttachError> {
    if cidrs.is_empty() {
        return Ok(None);
    }
    crate::api::ipam::parse_wanted(cidrs).map(Some).map_err(AttachError::Invalid)
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
pub fn attach_spec(r: &crate::api::AttachRequest, mtu: u32) -> Result<veth::AttachSpec, AttachError> {
    let addrs = r
        .cidrs
        .iter()
        .map(|c| c.parse::<ipnet::IpNet>().map_err(|e| AttachError::Invalid(format!("invalid address {c:?}: {e}"))))
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
            netns: Some(NetnsId { dev: 4, ino: 4026532000 }),
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

    #[test]
    fn addresses_asked_against_held() {
        let w = |l: &[&str]| crate::api::ipam::parse_wanted(&l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let held = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let two = held(&["10.32.0.1/12", "10.32.200.5/24"]);
        assert!(same_addresses(&w(&["10.32.200.5/24", "10.32.0.1/12"]).unwrap(), &two));
        assert!(same_addresses(&w(&["net:default", "net:10.32.200.0/24"]).unwrap(), &two));
        assert!(same_addresses(&w(&["net:10.32.200.0/24", "10.32.0.1/12"]).unwrap(), &two));
        // One missing, one more, another address, another prefix.
        assert!(!same_addresses(&w(&["10.32.0.1/12"]).unwrap(), &two));
        assert!(!same_addresses(&w(&["10.32.0.1/12", "10.32.200.5/24", "net:default"]).unwrap(), &two));
        assert!(!same_addresses(&w(&["10.32.0.2/12", "10.32.200.5/24"]).unwrap(), &two));
        assert!(!same_addresses(&w(&["10.32.0.1/16", "10.32.200.5/24"]).unwrap(), &two));
        assert!(!same_addresses(&w(&["net:10.32.201.0/24", "10.32.0.1/12"]).unwrap(), &two));
        // The default subnet cannot take the address already taken by an exact one.
        assert!(!same_addresses(&w(&["10.32.0.1/12", "net:default"]).unwrap(), &held(&["10.32.0.1/12", "fd00::1/64"])));
    }

    #[tokio::test]
    async fn a_missing_namespace_is_not_found() {
        let e = netns_id("/nonexistent/ns/net").unwrap_err();
        assert!(matches!(e, AttachError::NotFound(_)), "{e:?}");
        let e = prior("/nonexistent/ns/net", None, &[]).await.unwrap_err();
        assert!(matches!(e, AttachError::NotFound(_)), "{e:?}");
    }

    #[tokio::test]
    async fn same_namespace_under_another_target_with_its_veth_gone_is_no_conflict() {
        // This process's own namespace, recorded under another name, whose
        // veth does not exist: not alive, so no conflict, and a fresh attach.
        let me = format!("/proc/{}/ns/net", std::process::id());
        let other = Saved {
            target: "other".into(),
            host_ifname: "vethwe-nosuch".into(),
            cidrs: vec![],
            mac: String::new(),
            netns: Some(netns_id(&me).unwrap()),
        };
        assert_eq!(prior(&me, None, &[other]).await.unwrap(), Prior::Fresh);
    }

    #[tokio::test]
    async fn duplicates_by_target_and_by_namespace() {
        // `lo` stands for a live host veth.
        let me = format!("/proc/{}/ns/net", std::process::id());
        let id = netns_id(&me).unwrap();
        let rec = |target: &str, ifname: &str, netns| Saved {
            target: target.into(),
            host_ifname: ifname.into(),
            cidrs: vec!["10.32.0.1/12".into()],
            mac: String::new(),
            netns,
        };
        let e = prior(&me, None, &[rec("c1", "lo", Some(id))]).await.unwrap_err();
        assert!(matches!(&e, AttachError::Conflict(m) if m.contains("already attached as c1")), "{e:?}");
        let same = [rec(&me, "lo", Some(id))];
        assert_eq!(prior(&me, None, &same).await.unwrap(), Prior::Same);
        let w = crate::api::ipam::parse_wanted(&["10.32.0.1/12".into()]).unwrap();
        assert_eq!(prior(&me, Some(&w), &same).await.unwrap(), Prior::Same);
        let w = crate::api::ipam::parse_wanted(&["10.32.0.2/12".into()]).unwrap();
        let e = prior(&me, Some(&w), &same).await.unwrap_err();
        assert!(matches!(&e, AttachError::Conflict(m) if m.contains("already attached with 10.32.0.1/12")), "{e:?}");
        // Another namespace now, or the veth gone: replaced.
        let other_ns = [rec(&me, "lo", Some(NetnsId { dev: id.dev, ino: id.ino + 1 }))];
        assert_eq!(prior(&me, Some(&w), &other_ns).await.unwrap(), Prior::Stale);
        let gone = [rec(&me, "vethwe-nosuch", Some(id))];
        assert_eq!(prior(&me, Some(&w), &gone).await.unwrap(), Prior::Stale);
    }
}
