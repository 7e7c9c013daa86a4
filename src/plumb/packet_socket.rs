//! Raw `AF_PACKET` sockets on one interface: the sleeve's capture (every
//! frame the interface receives, never the ones sent from this host) and
//! its injection, each moving a batch of frames per system call
//! (`recvmmsg`, `sendmmsg`).
//!
//! Frames wait in the socket's receive buffer, which is kernel memory: the
//! daemon's resident set does not grow with it. A capture can also have a
//! receive ring ([`super::rx_ring`]) for its small frames: those are read
//! from memory shared with the kernel, without a system call, and the rest
//! still wait in the buffer.
//!
//! nix wraps the socket, `recvmmsg` and `sendmmsg`; binding to a link-layer
//! address and reading `PACKET_STATISTICS` have no wrapper, and are the two
//! `unsafe` calls here.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::rx_ring::{classify, RxRing, SlotFrame};

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
    /// The receive ring, when the capture has one.
    ring: Option<RxRing>,
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
    fn open(ifindex: u32, protocol: u16) -> io::Result<PacketSocket> {
        let s = PacketSocket::unbound(protocol)?;
        s.bind(ifindex, protocol)?;
        Ok(s)
    }

    /// A raw packet socket for `protocol` (host order), non-blocking, not
    /// yet bound: with protocol 0 it receives nothing until bound.
    fn unbound(protocol: u16) -> io::Result<PacketSocket> {
        use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
        let proto = match protocol {
            ETH_P_ALL => SockProtocol::EthAll,
            // Protocol 0: the socket receives nothing.
            _ => SockProtocol::Raw,
        };
        let fd = socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, proto)?;
        Ok(PacketSocket { fd, vnet: false, drops: 0, ring: None })
    }

    /// Binds to the interface, receiving `protocol` (host order).
    #[allow(unsafe_code)]
    fn bind(&self, ifindex: u32, protocol: u16) -> io::Result<()> {
        let fd = &self.fd;
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
        Ok(())
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

    /// A capture socket (with a `virtio_net_hdr` before each frame when
    /// `vnet`, as [`PacketSocket::capture_vnet`]) whose small frames come
    /// through a receive ring of `slots` slots of `slot_size` bytes
    /// ([`super::rx_ring`]); bigger ones wait in the receive buffer.
    pub fn capture_ring(
        ifindex: u32,
        rcvbuf: usize,
        vnet: bool,
        slot_size: usize,
        slots: usize,
    ) -> io::Result<PacketSocket> {
        // Unbound until the ring is set up: no frame may wait in the
        // buffer ahead of the ring's first (a copy is matched to its slot
        // by order).
        let mut s = PacketSocket::unbound(0)?;
        if vnet {
            s.set_vnet()?;
        }
        let mut s = s.finish_capture(rcvbuf)?;
        s.ring = Some(RxRing::new(s.fd.as_fd(), slot_size, slots)?);
        s.bind(ifindex, ETH_P_ALL)?;
        Ok(s)
    }

    /// Whether small frames come through a receive ring.
    pub fn has_ring(&self) -> bool {
        self.ring.is_some()
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
    pub fn recv_batch(&mut self, bufs: &mut [Vec<u8>], out: &mut Vec<Received>) -> io::Result<usize> {
        if self.ring.is_some() {
            return self.recv_ring(bufs, out);
        }
        self.recv_queued(bufs.iter_mut(), out)
    }

    /// Reads frames from the ring in order, up to one per buffer; a frame
    /// too big for its slot is read from the receive buffer, where the
    /// kernel queued its copy.
    fn recv_ring(&mut self, bufs: &mut [Vec<u8>], out: &mut Vec<Received>) -> io::Result<usize> {
        let vnet_len = if self.vnet { VNET_LEN } else { 0 };
        let Some(ring) = self.ring.as_mut() else { return Ok(0) };
        let base = out.len();
        // The buffers whose frames wait in the receive buffer, in order
        // (no allocation unless a frame was too big for its slot).
        let mut copied: Vec<usize> = Vec::new();
        let mut n = 0;
        while let (Some(buf), Some(h)) = (bufs.get_mut(n), ring.ready()) {
            out.push(match classify(&h, ring.slot_size(), vnet_len) {
                SlotFrame::InSlot { start, len } => {
                    let k = len.min(buf.len());
                    ring.read(start, &mut buf[..k]);
                    Received { len: k, truncated: len > k }
                }
                SlotFrame::Copied => {
                    copied.push(n);
                    Received { len: 0, truncated: true }
                }
                // Only a frame's start, or nothing usable: reported as cut.
                SlotFrame::Cut { len } => Received { len: 0, truncated: len > 0 },
                SlotFrame::Malformed => Received { len: 0, truncated: true },
            });
            ring.release();
            n += 1;
        }
        if !copied.is_empty() {
            let mut got = Vec::with_capacity(copied.len());
            let mut next = copied.iter().copied().peekable();
            let targets = bufs.iter_mut().enumerate().filter_map(|(i, b)| next.next_if_eq(&i).map(|_| b));
            // Fewer than asked only if the kernel broke its word; those
            // stay reported as cut.
            let _ = self.recv_queued(targets, &mut got)?;
            for (i, r) in copied.into_iter().zip(got) {
                if let Some(o) = out.get_mut(base + i) {
                    *o = r;
                }
            }
        }
        Ok(n)
    }

    /// Reads frames waiting in the receive buffer into the given buffers,
    /// one each, in one system call.
    fn recv_queued<'a>(
        &self,
        bufs: impl Iterator<Item = &'a mut Vec<u8>>,
        out: &mut Vec<Received>,
    ) -> io::Result<usize> {
        use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders};
        let mut sizes = Vec::new();
        let mut iovs: Vec<[io::IoSliceMut<'_>; 1]> = bufs
            .map(|b| {
                sizes.push(b.len());
                [io::IoSliceMut::new(b)]
            })
            .collect();
        if iovs.is_empty() {
            return Ok(0);
        }
        let mut headers = MultiHeaders::<()>::preallocate(iovs.len(), None);
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
