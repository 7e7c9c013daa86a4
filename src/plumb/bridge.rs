//! Bridge mode, for hosts without an Open vSwitch datapath (the sleeve):
//! a Linux bridge (`weave`) that the containers' host-side veths join, and
//! the capture pair `vethwe-bridge` (a bridge port) ↔ `vethwe-pcap` (not a
//! port), on whose far end weaver captures and injects Ethernet frames.
//!
//! The capture end must see finished frames: whole checksums, none bigger
//! than the MTU. Frames the bridge forwards keep the offload state they
//! arrived with (checksum left to the hardware, 64 KB GSO super-frames from
//! the containers' TCP), and the kernel finishes them only on the way out
//! of a device that cannot do it itself. So [`ensure`] switches the transmit
//! checksum and segmentation offloads off on `vethwe-bridge`, whose transmit
//! path feeds `vethwe-pcap`, and on `vethwe-pcap` too, where weaver injects.

use futures::TryStreamExt;
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};

use super::ethtool::{self, Ethtool, EthtoolError};
use super::veth::{connect, index_of, nl, PlumbError};

/// The bridge's default name.
pub const BRIDGE: &str = "weave";
/// The capture pair's bridge-side end (a port of the bridge).
pub const BRIDGE_PORT: &str = "vethwe-bridge";
/// The capture pair's far end, where weaver captures and injects.
pub const CAPTURE: &str = "vethwe-pcap";

/// What bridge to set up.
#[derive(Debug, Clone)]
pub struct BridgeSpec {
    pub name: String,
    /// MTU of the bridge and both ends of the capture pair.
    pub mtu: u32,
}

impl Default for BridgeSpec {
    fn default() -> Self {
        BridgeSpec { name: BRIDGE.to_string(), mtu: 1376 }
    }
}

/// The bridge as set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub ifindex: u32,
    /// The interface to capture and inject on.
    pub capture_ifname: String,
    pub capture_ifindex: u32,
}

fn other(op: impl Into<String>, msg: impl Into<String>) -> PlumbError {
    PlumbError::Other { op: op.into(), msg: msg.into() }
}

/// The index of `name` and its link kind (`None` for a plain device), if it exists.
async fn link_kind(h: &Handle, name: &str) -> Result<Option<(u32, Option<InfoKind>)>, PlumbError> {
    let Some(index) = index_of(h, name).await? else {
        return Ok(None);
    };
    let mut links = h.link().get().match_index(index).execute();
    let Some(msg) = links.try_next().await.map_err(nl(format!("read {name}")))? else {
        return Ok(None);
    };
    let kind = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.clone()),
            _ => None,
        }),
        _ => None,
    });
    Ok(Some((index, kind)))
}

/// Whether a transmit feature can hand the next device an unfinished frame:
/// a checksum left for the hardware (`tx-checksum-*`) or a segmentation
/// offload (`tx-*-segmentation`, `tx-gso-*`). `tx-generic-segmentation`
/// stays: it only defers segmentation of the device's own sockets' traffic.
pub fn leaves_frames_unfinished(feature: &str) -> bool {
    feature.starts_with("tx-checksum-")
        || feature.starts_with("tx-gso-")
        || (feature.starts_with("tx-") && feature.ends_with("-segmentation") && feature != "tx-generic-segmentation")
}

/// Switches off, on `ifname`, every transmit offload that leaves frames
/// unfinished (see [`leaves_frames_unfinished`]) among those the kernel
/// has for it. Fails if one stays on. Blocking.
pub fn finish_frames_on_transmit(ifname: &str) -> Result<Vec<String>, EthtoolError> {
    let client = Ethtool::connect()?;
    let offending: Vec<ethtool::Feature> = client
        .features(ifname)?
        .into_iter()
        .filter(|f| leaves_frames_unfinished(&f.name) && (f.active || f.wanted))
        .collect();
    if let Some(f) = offending.iter().find(|f| !f.changeable && f.active) {
        return Err(EthtoolError::Fixed { ifname: ifname.to_string(), name: f.name.clone(), active: true });
    }
    let off: Vec<(&str, bool)> = offending.iter().filter(|f| f.changeable).map(|f| (f.name.as_str(), false)).collect();
    if !off.is_empty() {
        let outcome = client.set(ifname, &off)?;
        tracing::debug!(ifname, changed = ?outcome.changed, "transmit offloads off");
    }
    Ok(off.into_iter().map(|(n, _)| n.to_string()).collect())
}

/// Sets up the bridge and the capture pair; idempotent.
///
/// Creates the bridge if it is missing (STP off, the kernel's default;
/// forward delay 0), sets its MTU and brings it up. An interface of that
/// name that is not a bridge is an error. The capture pair is created anew
/// each time (a stale one is removed first), both ends with the spec's MTU
/// and up, `vethwe-bridge` a port of the bridge; then the offloads that
/// leave frames unfinished are switched off on both ends.
pub async fn ensure(spec: &BridgeSpec) -> Result<Bridge, PlumbError> {
    let br_index = ensure_bridge(spec).await?;
    let h = connect().await?;
    remove_capture_pair_with(&h).await?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new().name(CAPTURE.to_string()).mtu(spec.mtu).build();
    h.link()
        .add(
            LinkVeth::new(BRIDGE_PORT, CAPTURE)
                .mtu(spec.mtu)
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .build(),
        )
        .execute()
        .await
        .map_err(nl(format!("create veth {BRIDGE_PORT}/{CAPTURE}")))?;
    let port_index = index_of(&h, BRIDGE_PORT)
        .await?
        .ok_or_else(|| other("create capture pair", format!("{BRIDGE_PORT} vanished")))?;
    let capture_index =
        index_of(&h, CAPTURE).await?.ok_or_else(|| other("create capture pair", format!("{CAPTURE} vanished")))?;
    h.link()
        .set(LinkUnspec::new_with_index(port_index).controller(br_index).up().build())
        .execute()
        .await
        .map_err(nl(format!("add {BRIDGE_PORT} to {}", spec.name)))?;
    h.link()
        .set(LinkUnspec::new_with_index(capture_index).up().build())
        .execute()
        .await
        .map_err(nl(format!("bring {CAPTURE} up")))?;

    for ifname in [BRIDGE_PORT, CAPTURE] {
        let off = tokio::task::spawn_blocking(move || finish_frames_on_transmit(ifname))
            .await
            .map_err(|e| other(format!("switch transmit offloads off on {ifname}"), e.to_string()))??;
        tracing::debug!(ifname, ?off, "capture pair: transmit offloads off");
    }
    tracing::info!(bridge = %spec.name, ifindex = br_index, capture = CAPTURE, mtu = spec.mtu, "bridge ready");
    Ok(Bridge { ifindex: br_index, capture_ifname: CAPTURE.to_string(), capture_ifindex: capture_index })
}

/// Creates the bridge if it is missing (STP off, the kernel's default;
/// forward delay 0), sets its MTU and brings it up: its index. An
/// interface of that name that is not a bridge is an error.
pub async fn ensure_bridge(spec: &BridgeSpec) -> Result<u32, PlumbError> {
    let h = connect().await?;
    let op = format!("ensure bridge {}", spec.name);
    match link_kind(&h, &spec.name).await? {
        Some((_, Some(InfoKind::Bridge))) => tracing::debug!(bridge = %spec.name, "bridge exists"),
        Some((_, kind)) => {
            let what = kind.map(|k| format!("a {k} interface")).unwrap_or_else(|| "a device".into());
            return Err(other(op, format!("{} exists but is {what}, not a bridge", spec.name)));
        }
        None => tracing::info!(bridge = %spec.name, mtu = spec.mtu, "creating the bridge"),
    }
    // RTM_NEWLINK with CREATE but not EXCL: creates the bridge, or updates
    // the existing one (same kind, checked above) in place.
    h.link()
        .add(LinkMessageBuilder::<LinkBridge>::new(&spec.name).forward_delay(0).mtu(spec.mtu).up().build())
        .set_flags(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        .execute()
        .await
        .map_err(nl(op.clone()))?;
    index_of(&h, &spec.name).await?.ok_or_else(|| other(&op, "the bridge vanished"))
}

/// Removes the capture pair (GSO mode captures on a tap instead); what is
/// absent already is fine.
pub async fn remove_capture_pair() -> Result<(), PlumbError> {
    remove_capture_pair_with(&connect().await?).await
}

/// Removing one end removes both; a lone leftover of either name goes too.
async fn remove_capture_pair_with(h: &Handle) -> Result<(), PlumbError> {
    for name in [BRIDGE_PORT, CAPTURE] {
        if let Some(i) = index_of(h, name).await? {
            h.link().del(i).execute().await.map_err(nl(format!("remove stale {name}")))?;
        }
    }
    Ok(())
}

/// The transmit offloads that let TCP super-frames through the capture pair
/// whole (the sleeve's GSO mode): scatter-gather, checksum, TSO and TSO6.
/// Everything else (UDP segmentation, tunnels) stays off, so those frames
/// still arrive cut by the kernel.
pub const SUPER_FRAME_OFFLOADS: [&str; 4] =
    ["tx-scatter-gather", "tx-checksum-ip-generic", "tx-tcp-segmentation", "tx-tcp6-segmentation"];

/// Turns [`SUPER_FRAME_OFFLOADS`] on at both ends of the capture pair: the
/// bridge then hands the capture TCP super-frames whole, and the sleeve's
/// injected super-frames reach the bridge whole.
pub async fn pass_super_frames() -> Result<(), PlumbError> {
    for ifname in [BRIDGE_PORT, CAPTURE] {
        tokio::task::spawn_blocking(move || {
            super::ethtool::set_features(ifname, &SUPER_FRAME_OFFLOADS.map(|n| (n, true)))
        })
        .await
        .map_err(|e| other(format!("switch TSO on on {ifname}"), e.to_string()))??;
    }
    Ok(())
}

/// Makes `ifname` a port of the bridge `bridge`.
pub async fn enslave(ifname: &str, bridge: &str) -> Result<(), PlumbError> {
    let h = connect().await?;
    let op = format!("add {ifname} to {bridge}");
    let br = match link_kind(&h, bridge).await? {
        Some((i, Some(InfoKind::Bridge))) => i,
        Some(_) => return Err(other(op, format!("{bridge} is not a bridge"))),
        None => return Err(other(op, format!("no bridge {bridge}"))),
    };
    let port = index_of(&h, ifname).await?.ok_or_else(|| other(&op, format!("no interface {ifname}")))?;
    h.link().set(LinkUnspec::new_with_index(port).controller(br).build()).execute().await.map_err(nl(op))?;
    tracing::debug!(ifname, bridge, "bridge port added");
    Ok(())
}

/// Removes the capture pair (or tap) and the bridge `name`; what is absent already
/// is fine. An interface called `name` that is not a bridge is left alone
/// and reported.
pub async fn remove(name: &str) -> Result<(), PlumbError> {
    let h = connect().await?;
    for ifname in [BRIDGE_PORT, CAPTURE, super::tap::TAP] {
        if let Some(i) = index_of(&h, ifname).await? {
            h.link().del(i).execute().await.map_err(nl(format!("remove {ifname}")))?;
        }
    }
    match link_kind(&h, name).await? {
        Some((i, Some(InfoKind::Bridge))) => {
            h.link().del(i).execute().await.map_err(nl(format!("remove bridge {name}")))?;
            tracing::info!(bridge = name, "bridge removed");
        }
        Some(_) => return Err(other(format!("remove bridge {name}"), format!("{name} is not a bridge; left alone"))),
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offloads_that_leave_frames_unfinished_are_picked_by_name() {
        for f in [
            "tx-checksum-ip-generic",
            "tx-checksum-ipv4",
            "tx-checksum-sctp",
            "tx-tcp-segmentation",
            "tx-tcp6-segmentation",
            "tx-tcp-ecn-segmentation",
            "tx-tcp-mangleid-segmentation",
            "tx-udp-segmentation",
            "tx-udp_tnl-segmentation",
            "tx-gso-list",
            "tx-gso-partial",
        ] {
            assert!(leaves_frames_unfinished(f), "{f}");
        }
        for f in ["tx-generic-segmentation", "tx-scatter-gather", "tx-lockless", "rx-gro", "rx-checksum", "highdma"] {
            assert!(!leaves_frames_unfinished(f), "{f}");
        }
    }

    #[test]
    fn names_fit_ifnamsiz() {
        for n in [BRIDGE, BRIDGE_PORT, CAPTURE] {
            assert!(n.len() <= 15, "{n}");
        }
    }
}
