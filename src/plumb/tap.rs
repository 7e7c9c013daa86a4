//! The sleeve's capture interface in GSO mode: a tap device, a port of the
//! bridge `weave`.
//!
//! What the bridge transmits to the tap, weaver reads from its file
//! descriptor, each frame after a `virtio_net_hdr` (IFF_VNET_HDR): TCP
//! super-frames arrive whole (the tap takes TSO and partial checksums,
//! TUNSETOFFLOAD), with their GSO size and checksum state. What weaver
//! writes (a `virtio_net_hdr` and a frame) the kernel *receives* on the tap
//! (`tun_get_user` → `netif_receive_skb`), so the bridge forwards a
//! super-frame whole to the container's veth, which takes it as it is. A
//! packet socket's injection is a transmit instead, where the kernel drops
//! super-frames (see the notes on `--sleeve-gso`).
//!
//! One frame per `read`/`write`: tun has no batched calls, which costs
//! little when frames are 60 KB.
//!
//! The device is not persistent: it goes away with its file descriptor,
//! when weaver stops or crashes. A leftover of the same name (a persistent
//! tap, or anything else) is removed before the device is made.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{LinkBridgePort, LinkUnspec};

use super::veth::{connect, index_of, nl, PlumbError};

/// The tap's name.
pub const TAP: &str = "weave-tap";
/// The `virtio_net_hdr` before each frame (without `num_buffers`).
pub const VNET_LEN: usize = 10;
/// Frames the kernel queues for us before it drops (tun's default is 500):
/// room for bursts of small frames.
const TX_QUEUE_LEN: u32 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("open /dev/net/tun: {0}")]
    Open(io::Error),
    #[error("{ioctl} on {ifname}: {source}")]
    Ioctl { ioctl: &'static str, ifname: String, source: io::Error },
    #[error("tap name {0:?} is too long")]
    Name(String),
    #[error(transparent)]
    Plumb(#[from] PlumbError),
}

/// An open tap device.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Makes the tap `name` (IFF_TAP, no packet information, a
    /// `virtio_net_hdr` before each frame, TSO and partial checksums
    /// taken), non-blocking. It is down and in no bridge: see [`create`].
    #[allow(unsafe_code)]
    pub fn open(name: &str) -> Result<Tap, TapError> {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::Mode;
        if name.len() >= libc::IFNAMSIZ {
            return Err(TapError::Name(name.to_string()));
        }
        let fd = open("/dev/net/tun", OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| TapError::Open(e.into()))?;
        // SAFETY: `fd` is a file descriptor nix just opened, owned by no one else.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let ioctl_err =
            |ioctl: &'static str| move |source: io::Error| TapError::Ioctl { ioctl, ifname: name.to_string(), source };

        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF reads (and writes back) one ifreq, which lives
        // across the call.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr as *mut libc::ifreq) })
            .map_err(ioctl_err("TUNSETIFF"))?;

        let hdr_len = VNET_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int, which lives across the call.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len as *const libc::c_int) })
            .map_err(ioctl_err("TUNSETVNETHDRSZ"))?;

        let offload = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, offload as libc::c_ulong) })
            .map_err(ioctl_err("TUNSETOFFLOAD"))?;
        Ok(Tap { fd, name: name.to_string() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame (its `virtio_net_hdr` first) into `buf`, without
    /// waiting: its length, or `None` when nothing is queued. A frame
    /// longer than `buf` is cut (the length is then `buf.len()`).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match nix::unistd::read(self.fd.as_raw_fd(), buf) {
                Ok(n) => return Ok(Some(n)),
                Err(nix::errno::Errno::EAGAIN) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes one frame after its `virtio_net_hdr`: the bridge receives it.
    pub fn send(&self, vnet: &[u8; VNET_LEN], frame: &[u8]) -> io::Result<()> {
        let iov = [io::IoSlice::new(vnet), io::IoSlice::new(frame)];
        loop {
            match nix::sys::uio::writev(self.fd.as_fd(), &iov) {
                Ok(n) if n == VNET_LEN + frame.len() => return Ok(()),
                Ok(n) => return Err(io::Error::other(format!("short write: {n} of {}", VNET_LEN + frame.len()))),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Removes the interface `name`, if there is one (a tap left persistent,
/// or anything else holding the name).
pub async fn remove(name: &str) -> Result<(), PlumbError> {
    let h = connect().await?;
    if let Some(i) = index_of(&h, name).await? {
        h.link().del(i).execute().await.map_err(nl(format!("remove {name}")))?;
        tracing::info!(ifname = name, "removed a leftover interface");
    }
    Ok(())
}

/// Makes the tap `name` (a leftover of that name is removed first), with
/// the bridge's MTU, a port of `bridge`, and up.
pub async fn create(name: &str, bridge: &str, mtu: u32) -> Result<Tap, TapError> {
    remove(name).await?;
    let tap = Tap::open(name)?;
    let h = connect().await?;
    let op = format!("set up {name}");
    let other = |msg: String| PlumbError::Other { op: op.clone(), msg };
    let index = index_of(&h, name).await?.ok_or_else(|| other(format!("{name} vanished")))?;
    let br = index_of(&h, bridge).await?.ok_or_else(|| other(format!("no bridge {bridge}")))?;
    let mut msg = LinkUnspec::new_with_index(index).mtu(mtu).controller(br).up().build();
    msg.attributes.push(LinkAttribute::TxQueueLen(TX_QUEUE_LEN));
    h.link().set(msg).execute().await.map_err(nl(op.clone()))?;
    tracing::info!(ifname = name, bridge, mtu, "capture tap ready");
    Ok(tap)
}

/// Makes the tap `name` as [`create`] does, as a port of `bridge` that the
/// bridge never forwards to: no address learning (what is written into the
/// tap does not teach the bridge that its sender is behind the tap) and no
/// unknown-unicast, multicast or broadcast flooding (hybrid mode: the tap
/// only injects super-frames; the capture pair sees all the rest).
pub async fn create_inject_only(name: &str, bridge: &str, mtu: u32) -> Result<Tap, TapError> {
    let tap = create(name, bridge, mtu).await?;
    let h = connect().await?;
    let op = format!("make {name} inject-only");
    let index = index_of(&h, name)
        .await?
        .ok_or_else(|| PlumbError::Other { op: op.clone(), msg: format!("{name} vanished") })?;
    let msg = LinkBridgePort::new(index).learning(false).flood(false).mcast_flood(false).bcast_flood(false).build();
    // RTM_NEWLINK on the port (as `ip link set NAME type bridge_slave`):
    // RTM_SETLINK would ignore the bridge-port attributes.
    h.link().set_port(msg).execute().await.map_err(nl(op))?;
    tracing::info!(ifname = name, bridge, "tap port: no learning, no flooding");
    Ok(tap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_fits_ifnamsiz() {
        assert!(TAP.len() < libc::IFNAMSIZ);
    }

    #[test]
    fn the_vnet_header_is_the_one_segment_parses() {
        assert_eq!(VNET_LEN, crate::sleeve::segment::VnetHdr::LEN);
        assert_eq!(VNET_LEN, crate::plumb::packet_socket::VNET_LEN);
    }

    #[test]
    fn a_long_name_is_refused() {
        assert!(matches!(Tap::open("a-name-far-too-long-for-linux"), Err(TapError::Name(_))));
    }
}
