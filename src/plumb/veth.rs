//! Attaching a container: a veth pair whose inner end is `ethwe` inside the
//! container's network namespace and whose outer end joins the datapath.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::{Handle, LinkUnspec, LinkVeth};
use thiserror::Error;

/// Interface name of the container's end.
pub const CONTAINER_IFNAME: &str = "ethwe";

#[derive(Debug, Error)]
pub enum PlumbError {
    #[error("network namespace {path}: {source}")]
    Netns { path: String, source: std::io::Error },
    #[error("{op}: {source}")]
    Netlink { op: String, source: rtnetlink::Error },
    #[error("{op}: {msg}")]
    Other { op: String, msg: String },
    #[error(transparent)]
    Ethtool(#[from] super::ethtool::EthtoolError),
}

pub(crate) fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> PlumbError {
    let op = op.into();
    move |source| PlumbError::Netlink { op, source }
}

/// What to attach.
#[derive(Debug, Clone)]
pub struct AttachSpec {
    /// The namespace: a path such as `/run/netns/NAME` or `/proc/PID/ns/net`.
    pub netns: PathBuf,
    pub addrs: Vec<IpNet>,
    pub mtu: u32,
    /// Name of the host end (at most 15 bytes).
    pub host_ifname: String,
    /// The largest GSO super-frame the container's TCP may build on
    /// `ethwe`, when it must be smaller than the kernel's default (the
    /// sleeve carries each one in a single UDP datagram).
    pub gso_max_size: Option<u32>,
}

/// The result of an attach.
#[derive(Debug, Clone)]
pub struct Attached {
    pub host_ifname: String,
    pub host_ifindex: u32,
    /// The container end's MAC address.
    pub mac: [u8; 6],
}

/// Resolves a namespace argument: a name under `/run/netns`, or a path.
pub fn netns_path(target: &str) -> PathBuf {
    if target.contains('/') {
        PathBuf::from(target)
    } else if let Ok(pid) = target.parse::<u32>() {
        PathBuf::from(format!("/proc/{pid}/ns/net"))
    } else {
        Path::new("/run/netns").join(target)
    }
}

/// A host-end interface name derived from the namespace, stable and unique enough.
/// The prefix of every host-side container veth this daemon creates.
pub const HOST_PREFIX: &str = "vethwe";

pub fn host_ifname(netns: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    netns.hash(&mut h);
    format!("{HOST_PREFIX}{:08x}", h.finish() as u32)
}

/// Whether `name` is a container's host end as [`host_ifname`] makes them
/// (not `vethwe-bridge` or `vethwe-pcap`, the bridge's capture pair).
pub fn is_container_veth(name: &str) -> bool {
    name.strip_prefix(HOST_PREFIX).is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) async fn connect() -> Result<Handle, PlumbError> {
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|e| PlumbError::Other { op: "netlink socket".into(), msg: e.to_string() })?;
    tokio::spawn(conn);
    Ok(handle)
}

pub(crate) async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, PlumbError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl(format!("look up {name}"))(e)),
    }
}

/// Creates the veth pair, moves the inner end into the namespace as
/// `ethwe` with the addresses and MTU, and brings both ends up.
/// Idempotent: an existing host end is removed first.
pub async fn attach(spec: &AttachSpec) -> Result<Attached, PlumbError> {
    let ns = File::open(&spec.netns)
        .map_err(|source| PlumbError::Netns { path: spec.netns.display().to_string(), source })?;
    let h = connect().await?;
    if let Some(i) = index_of(&h, &spec.host_ifname).await? {
        h.link().del(i).execute().await.map_err(nl(format!("remove stale {}", spec.host_ifname)))?;
    }
    let peer = format!("{}p", &spec.host_ifname[..spec.host_ifname.len().min(14)]);
    h.link()
        .add(LinkVeth::new(&spec.host_ifname, &peer).mtu(spec.mtu).build())
        .execute()
        .await
        .map_err(nl(format!("create veth {}", spec.host_ifname)))?;
    match configure(&h, spec, ns, &peer).await {
        Ok(a) => Ok(a),
        Err(e) => {
            // No half-made pair stays behind: removing the host end takes
            // the container end with it, wherever it is by now.
            if let Ok(Some(i)) = index_of(&h, &spec.host_ifname).await {
                if let Err(d) = h.link().del(i).execute().await {
                    tracing::warn!(ifname = %spec.host_ifname, error = %d, "could not remove a failed attach's veth");
                }
            }
            Err(e)
        }
    }
}

/// The rest of [`attach`], once the pair exists: the container end into
/// the namespace and configured there, both ends up.
async fn configure(h: &Handle, spec: &AttachSpec, ns: File, peer: &str) -> Result<Attached, PlumbError> {
    let peer_index = index_of(h, peer)
        .await?
        .ok_or_else(|| PlumbError::Other { op: "create veth".into(), msg: format!("{peer} vanished") })?;
    h.link()
        .set(LinkUnspec::new_with_index(peer_index).mtu(spec.mtu).setns_by_fd(ns.as_raw_fd()).build())
        .execute()
        .await
        .map_err(nl("move the container end into its namespace"))?;
    let host_index = index_of(h, &spec.host_ifname)
        .await?
        .ok_or_else(|| PlumbError::Other { op: "create veth".into(), msg: format!("{} vanished", spec.host_ifname) })?;
    h.link()
        .set(LinkUnspec::new_with_index(host_index).up().build())
        .execute()
        .await
        .map_err(nl("bring the host end up"))?;

    let (addrs, peer_name, gso) = (spec.addrs.clone(), peer.to_string(), spec.gso_max_size);
    let mac = in_netns(ns, move |h| async move { configure_inner(&h, &peer_name, &addrs, gso).await }).await?;
    Ok(Attached { host_ifname: spec.host_ifname.clone(), host_ifindex: host_index, mac })
}

async fn configure_inner(
    h: &Handle,
    peer: &str,
    addrs: &[IpNet],
    gso_max_size: Option<u32>,
) -> Result<[u8; 6], PlumbError> {
    let idx = match index_of(h, peer).await? {
        Some(i) => i,
        None => index_of(h, CONTAINER_IFNAME).await?.ok_or_else(|| PlumbError::Other {
            op: "configure ethwe".into(),
            msg: "the container end is not in the namespace".into(),
        })?,
    };
    h.link()
        .set(LinkUnspec::new_with_index(idx).name(CONTAINER_IFNAME.to_string()).build())
        .execute()
        .await
        .map_err(nl("rename to ethwe (is there already an ethwe?)"))?;
    if let Some(n) = gso_max_size {
        cap_gso(h, idx, n).await;
    }
    for a in addrs {
        h.address().add(idx, a.addr(), a.prefix_len()).execute().await.map_err(nl(format!("add address {a}")))?;
    }
    h.link().set(LinkUnspec::new_with_index(idx).up().build()).execute().await.map_err(nl("bring ethwe up"))?;
    let mut links = h.link().get().match_index(idx).execute();
    let msg = links
        .try_next()
        .await
        .map_err(nl("read ethwe"))?
        .ok_or_else(|| PlumbError::Other { op: "read ethwe".into(), msg: "gone".into() })?;
    use rtnetlink::packet_route::link::LinkAttribute;
    let mac = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(m) if m.len() == 6 => Some([m[0], m[1], m[2], m[3], m[4], m[5]]),
            _ => None,
        })
        .unwrap_or_default();
    Ok(mac)
}

/// Caps the GSO super-frames the container's TCP builds on `ethwe`.
/// Kernels before 5.19 cannot change it: bigger super-frames are then cut
/// by the sleeve, which is slower but correct.
async fn cap_gso(h: &Handle, idx: u32, n: u32) {
    use rtnetlink::packet_route::link::LinkAttribute;
    let mut m = LinkUnspec::new_with_index(idx).build();
    m.attributes.push(LinkAttribute::GsoMaxSize(n));
    if let Err(e) = h.link().set(m).execute().await {
        tracing::debug!(error = %e, "could not cap ethwe's GSO size");
    }
}

/// Caps the GSO super-frames on the `ethwe` of an attached container (one a
/// previous run attached). Best effort, like at attach.
pub async fn cap_container_gso(netns: &Path, n: u32) -> Result<(), PlumbError> {
    let ns = File::open(netns).map_err(|source| PlumbError::Netns { path: netns.display().to_string(), source })?;
    in_netns(ns, move |h| async move {
        if let Some(idx) = index_of(&h, CONTAINER_IFNAME).await? {
            cap_gso(&h, idx, n).await;
        }
        Ok(())
    })
    .await
}

/// Runs `f` with a netlink handle inside the namespace `ns`, on a thread
/// of its own (entering a namespace changes the calling thread only).
async fn in_netns<F, Fut, T>(ns: File, f: F) -> Result<T, PlumbError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, PlumbError>>,
    T: Send + 'static,
{
    super::netns::run_in(ns, move || async move { f(connect().await?).await }).await
}

/// Takes `addrs` off `ethwe` in the namespace at `netns`; addresses it
/// does not have are skipped.
pub async fn del_addresses(netns: &Path, addrs: Vec<IpNet>) -> Result<(), PlumbError> {
    let ns = File::open(netns).map_err(|source| PlumbError::Netns { path: netns.display().to_string(), source })?;
    in_netns(ns, move |_| async move {
        for a in addrs {
            super::expose::del_address(CONTAINER_IFNAME, a).await?;
        }
        Ok(())
    })
    .await
}

/// Whether an interface of that name exists here.
pub async fn exists(name: &str) -> Result<bool, PlumbError> {
    let h = connect().await?;
    Ok(index_of(&h, name).await?.is_some())
}

/// The names of the interfaces here that start with `prefix`.
pub async fn names_with_prefix(prefix: &str) -> Result<Vec<String>, PlumbError> {
    use rtnetlink::packet_route::link::LinkAttribute;
    let h = connect().await?;
    let mut links = h.link().get().execute();
    let mut out = Vec::new();
    while let Some(l) = links.try_next().await.map_err(nl("list interfaces"))? {
        for a in &l.attributes {
            if let LinkAttribute::IfName(n) = a {
                if n.starts_with(prefix) {
                    out.push(n.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Removes the host end (the container end goes with it).
pub async fn detach(host_ifname: &str) -> Result<bool, PlumbError> {
    let h = connect().await?;
    match index_of(&h, host_ifname).await? {
        Some(i) => {
            h.link().del(i).execute().await.map_err(nl(format!("remove {host_ifname}")))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_to_namespace_paths() {
        assert_eq!(netns_path("c1"), PathBuf::from("/run/netns/c1"));
        assert_eq!(netns_path("1234"), PathBuf::from("/proc/1234/ns/net"));
        assert_eq!(netns_path("/proc/1/ns/net"), PathBuf::from("/proc/1/ns/net"));
    }

    #[test]
    fn only_container_ends_count_as_container_veths() {
        assert!(is_container_veth(&host_ifname(Path::new("/run/netns/c1"))));
        assert!(!is_container_veth("vethwe-bridge"));
        assert!(!is_container_veth("vethwe-pcap"));
        assert!(!is_container_veth("vethwe0123456789"));
    }

    #[test]
    fn host_names_fit_ifnamsiz() {
        let n = host_ifname(Path::new("/run/netns/some-very-long-namespace-name"));
        assert!(n.len() <= 15, "{n}");
        assert_eq!(n, host_ifname(Path::new("/run/netns/some-very-long-namespace-name")));
    }
}
