//! Raw `AF_PACKET` sockets on one interface: the sleeve's capture (every
//! frame the interface receives, never the ones sent from this host) and
//! its injection, each moving a batch of frames per system call
//! (`recvmmsg`, `sendmmsg`).
//!
//! Frames wait in the socket's receive buffer, which is kernel memory: the
//! daemon's resident set does not grow with it, unlike a mapped packet ring
//! (what libpcap's immediate mode uses).
//!
//! nix wraps the socket, `recvmmsg` and `sendmmsg`; binding to a link-layer
//! address and reading `PACKET_STATISTICS` have no wrapper, and are the two
//! `unsafe` calls here.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// The `virtio_net_hdr` that comes before each frame on a socket with
/// PACKET_VNET_HDR.
pub const VNET_LEN: usize = 10;

/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// One received frame: its length, and whether it was longer than the
/// buffer (and so cut).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub truncated: bool,
}

/// A packet socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    /// Frames carry a `virtio_net_hdr` (PACKET_VNET_HDR): GSO super-frames
    /// and partial checksums pass whole.
    vnet: bool,
    /// Drops the kernel reported so far (its counter resets on each read).
    drops: u64,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    crate::sockopt::set_int(fd.as_raw_fd(), level, name, v)
}

impl PacketSocket {
    /// Opens a raw packet socket for `protocol` (host order), non-blocking,
    /// bound to the interface.
    #[allow(unsafe_code)]
    fn open(ifindex: u32, protocol: u16) -> io::Result<PacketSocket> {
        use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
        let proto = match protocol {
            ETH_P_ALL => SockProtocol::EthAll,
            // Protocol 0: the socket receives nothing.
            _ => SockProtocol::Raw,
        };
        let fd = socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, proto)?;
        // nix has no constructor for a link-layer address: bind(2) by hand.
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol.to_be();
        sll.sll_ifindex = i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `fd` is open; bind(2) reads `size_of::<sockaddr_ll>()`
        // bytes of `sll`, which lives across the call.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket { fd, vnet: false, drops: 0 })
    }

    /// A capture socket: every frame the interface receives, none it sends
    /// (so never our own injections), with a receive buffer of
    /// `rcvbuf` bytes (forced past `rmem_max` where we may).
    pub fn capture(ifindex: u32, rcvbuf: usize) -> io::Result<PacketSocket> {
        let s = PacketSocket::open(ifindex, ETH_P_ALL)?;
        s.finish_capture(rcvbuf)
    }

    /// A capture socket whose frames each start with a `virtio_net_hdr`
    /// ([`VNET_LEN`] bytes): TCP super-frames arrive whole (when the
    /// interface's offloads allow), with their GSO size and partial
    /// checksum described there.
    pub fn capture_vnet(ifindex: u32, rcvbuf: usize) -> io::Result<PacketSocket> {
        let mut s = PacketSocket::open(ifindex, ETH_P_ALL)?;
        s.set_vnet()?;
        s.finish_capture(rcvbuf)
    }

    fn set_vnet(&mut self) -> io::Result<()> {
        setsockopt_int(self.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)?;
        self.vnet = true;
        Ok(())
    }

    fn finish_capture(self, rcvbuf: usize) -> io::Result<PacketSocket> {
        let s = self;
        setsockopt_int(s.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        let size = libc::c_int::try_from(rcvbuf).unwrap_or(libc::c_int::MAX);
        if setsockopt_int(s.fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            setsockopt_int(s.fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
        }
        Ok(s)
    }

    /// An injecting socket: it receives nothing (protocol 0), and its
    /// frames skip the interface's queueing discipline.
    pub fn injector(ifindex: u32) -> io::Result<PacketSocket> {
        PacketSocket::open(ifindex, 0)?.finish_injector()
    }

    fn finish_injector(self) -> io::Result<PacketSocket> {
        let s = self;
        // Best effort: without it frames go through the (empty) qdisc.
        let _ = setsockopt_int(s.fd.as_fd(), libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1);
        Ok(s)
    }

    /// Reads what is queued, up to one frame per buffer, without waiting.
    /// Appends to `out` (in order) and returns how many were read: 0 when
    /// nothing was queued.
    pub fn recv_batch(&self, bufs: &mut [Vec<u8>], out: &mut Vec<Received>) -> io::Result<usize> {
        use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders};
        if bufs.is_empty() {
            return Ok(0);
        }
        let sizes: Vec<usize> = bufs.iter().map(Vec::len).collect();
        let mut headers = MultiHeaders::<()>::preallocate(bufs.len(), None);
        let mut iovs: Vec<[io::IoSliceMut<'_>; 1]> = bufs.iter_mut().map(|b| [io::IoSliceMut::new(b)]).collect();
        // MSG_TRUNC: a frame longer than its buffer reports its real length.
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
        let got = match recvmmsg(self.fd.as_raw_fd(), &mut headers, iovs.iter_mut(), flags, None) {
            Ok(r) => r.map(|m| m.bytes).collect::<Vec<usize>>(),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for (full, size) in got.iter().zip(sizes) {
            out.push(Received { len: (*full).min(size), truncated: *full > size });
        }
        Ok(got.len())
    }

    /// Sends frames, as many per system call as the kernel takes. Returns
    /// how many were sent and the last error, if any (a frame the kernel
    /// refuses is skipped: it is not sent).
    pub fn send_batch(&self, frames: &[&[u8]]) -> (usize, Option<io::Error>) {
        use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders};
        let mut sent = 0;
        let mut err = None;
        let mut rest = frames;
        while !rest.is_empty() {
            let n = rest.len().min(1024);
            let iovs: Vec<[io::IoSlice<'_>; 1]> = rest[..n].iter().map(|f| [io::IoSlice::new(f)]).collect();
            let addrs: Vec<Option<()>> = vec![None; n];
            let mut headers = MultiHeaders::<()>::preallocate(n, None);
            match sendmmsg(self.fd.as_raw_fd(), &mut headers, &iovs, &addrs, [], MsgFlags::empty()) {
                Ok(r) => {
                    let k = r.count();
                    if k == 0 {
                        err = Some(io::Error::from(io::ErrorKind::WouldBlock));
                        rest = &rest[1..];
                        continue;
                    }
                    sent += k;
                    rest = &rest[k.min(rest.len())..];
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    err = Some(e.into());
                    rest = &rest[1..];
                }
            }
        }
        (sent, err)
    }

    /// Whether frames carry a `virtio_net_hdr`.
    pub fn vnet(&self) -> bool {
        self.vnet
    }

    /// Frames the kernel dropped with the receive buffer full, since the
    /// socket was opened.
    #[allow(unsafe_code)]
    pub fn drops(&mut self) -> u64 {
        // SAFETY: tpacket_stats is plain data; all-zero is a valid value.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: getsockopt(2) writes at most `len` bytes into `st`.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if r == 0 {
            self.drops += u64::from(st.tp_drops);
        }
        self.drops
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
