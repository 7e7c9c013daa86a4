//! A `TPACKET_V2` receive ring for a capture socket: the kernel writes each
//! frame into a slot of memory it shares with us, so a small frame costs
//! neither a system call to read nor a socket buffer (what a plain packet
//! socket pays per frame: a cloned skb queued, then `recvmmsg` to copy it
//! out).
//!
//! The slots are small ([`SLOT_SIZE`]). A frame that does not fit one is
//! marked `TP_STATUS_COPY`, and the kernel queues a whole copy of it on the
//! socket as well (`PACKET_COPY_THRESH`), read with `recvmmsg` in ring
//! order. So MTU-sized frames and GSO super-frames take the socket path as
//! before, small ones the ring, and the ring ([`SLOTS`] × [`SLOT_SIZE`],
//! 512 KB) is what the daemon's resident set grows by under a flood of
//! small frames.
//!
//! V2, not V3: a V3 block is handed over only when it is full or its timer
//! (1 ms at the least) runs out, which would hold back a lone ping; V2 hands
//! over every frame at once (libpcap's immediate mode picks V2 for this).
//!
//! The slot protocol (`Documentation/networking/packet_mmap.rst`): a slot
//! belongs to userspace once its status has `TP_STATUS_USER`; we read it
//! after an acquire load of the status and give it back by storing
//! `TP_STATUS_KERNEL` with release ordering. Slots are taken in order.
//!
//! [`classify`] reads a slot's header and is pure; [`RxRing`] owns the
//! mapping. The `unsafe` here is the mapping itself, the ring request (a
//! struct socket option) and the reads of shared memory.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes per slot: its `tpacket2_hdr`, the link-layer address, the
/// virtio_net_hdr, and a frame of up to about 180 bytes (a 64-byte UDP
/// payload makes a 106-byte frame).
pub const SLOT_SIZE: usize = 256;
/// Slots in the ring: at 100 000 small frames a second, 20 ms of them.
pub const SLOTS: usize = 2048;

/// `tpacket2_hdr` (32 bytes, aligned to 16) and a `sockaddr_ll` (20): the
/// least offset a frame can have in its slot.
const TPACKET2_HDRLEN: usize = 52;

/// A slot's `tpacket2_hdr`, the fields we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHeader {
    pub status: u32,
    /// The frame's length on the wire.
    pub len: u32,
    /// How much of it is in the slot.
    pub snaplen: u32,
    /// Where the frame starts in the slot.
    pub mac: u16,
}

impl SlotHeader {
    /// The header from the slot's first 16 bytes (native byte order, as the
    /// kernel writes it).
    pub fn parse(b: &[u8; 16]) -> SlotHeader {
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        SlotHeader { status: u32_at(0), len: u32_at(4), snaplen: u32_at(8), mac: u16::from_ne_bytes([b[12], b[13]]) }
    }
}

/// Where a slot's frame is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotFrame {
    /// Whole in the slot: `len` bytes from `start` (the virtio_net_hdr
    /// first, when the socket has one).
    InSlot { start: usize, len: usize },
    /// Too big for a slot: a whole copy waits on the socket.
    Copied,
    /// Too big for a slot, and no copy (the socket's buffer was full):
    /// only its start is here. `len` is the frame's length.
    Cut { len: usize },
    /// A header that does not fit the slot: not what the kernel writes.
    Malformed,
}

/// What a slot of `slot_size` bytes holds, by its header. `vnet_len`: the
/// virtio_net_hdr's length before the frame (0 without one).
pub fn classify(h: &SlotHeader, slot_size: usize, vnet_len: usize) -> SlotFrame {
    if h.status & libc::TP_STATUS_COPY != 0 {
        return SlotFrame::Copied;
    }
    let (mac, snaplen, len) = (usize::from(h.mac), h.snaplen as usize, h.len as usize);
    let Some(start) = mac.checked_sub(vnet_len).filter(|s| *s >= TPACKET2_HDRLEN) else {
        return SlotFrame::Malformed;
    };
    if mac + snaplen > slot_size || snaplen > len {
        return SlotFrame::Malformed;
    }
    if snaplen < len {
        return SlotFrame::Cut { len };
    }
    SlotFrame::InSlot { start, len: vnet_len + snaplen }
}

/// The ring's memory, mapped from the socket, and the next slot to read.
#[derive(Debug)]
pub struct RxRing {
    map: NonNull<u8>,
    map_len: usize,
    slot_size: usize,
    slots: usize,
    head: usize,
}

// SAFETY: the mapping is plain memory owned by this value (unmapped on
// drop); reads and the hand-back go through `&mut self`, and the kernel's
// side of each slot is ordered by its status word.
#[allow(unsafe_code)]
unsafe impl Send for RxRing {}
// SAFETY: as above; `&self` methods read nothing of the mapping.
#[allow(unsafe_code)]
unsafe impl Sync for RxRing {}

/// Page-sized blocks of whole slots.
fn geometry(slot_size: usize, slots: usize) -> io::Result<libc::tpacket_req> {
    let page = 4096usize;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("packet ring: {what}"));
    if slot_size < TPACKET2_HDRLEN + 64 || !slot_size.is_multiple_of(16) || !page.is_multiple_of(slot_size) {
        return Err(bad("the slot size must be a multiple of 16 that divides a page, and hold a header and a frame"));
    }
    let per_block = page / slot_size;
    if slots == 0 || !slots.is_multiple_of(per_block) {
        return Err(bad("the slots must fill whole pages"));
    }
    let n = |v: usize| u32::try_from(v).map_err(|_| bad("too big"));
    Ok(libc::tpacket_req {
        tp_block_size: n(page)?,
        tp_block_nr: n(slots / per_block)?,
        tp_frame_size: n(slot_size)?,
        tp_frame_nr: n(slots)?,
    })
}

impl RxRing {
    /// Sets the socket up for a V2 ring with copies of bigger frames, and
    /// maps the ring. Must come before the socket is bound (and after
    /// PACKET_VNET_HDR, which a ring forbids changing).
    #[allow(unsafe_code)]
    pub fn new(fd: BorrowedFd<'_>, slot_size: usize, slots: usize) -> io::Result<RxRing> {
        let req = geometry(slot_size, slots)?;
        let raw = fd.as_raw_fd();
        crate::sockopt::set_int(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            libc::tpacket_versions::TPACKET_V2 as libc::c_int,
        )?;
        // Any value turns the copies on; the kernel compares it to nothing.
        crate::sockopt::set_int(raw, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, 1)?;
        // SAFETY: `raw` is an open packet socket; setsockopt(2) reads
        // exactly `size_of::<tpacket_req>()` bytes of `req`, which lives
        // across the call.
        let r = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_RX_RING,
                (&req as *const libc::tpacket_req).cast(),
                std::mem::size_of::<libc::tpacket_req>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let map_len = slot_size * slots;
        let len = NonZeroUsize::new(map_len).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        // SAFETY: a fresh shared mapping of the socket's ring, of exactly
        // the size just requested; nothing else refers to it.
        let map =
            unsafe { mmap(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, fd, 0) }?;
        Ok(RxRing { map: map.cast(), map_len, slot_size, slots, head: 0 })
    }

    fn status_word(&self) -> &AtomicU32 {
        // SAFETY: the head slot lies inside the mapping (head < slots) and
        // starts on a page or slot boundary, so its first word is aligned;
        // the kernel writes it only atomically.
        #[allow(unsafe_code)]
        unsafe {
            AtomicU32::from_ptr(self.map.as_ptr().add(self.head * self.slot_size).cast())
        }
    }

    /// The head slot's header, when the kernel has handed the slot over.
    pub fn ready(&self) -> Option<SlotHeader> {
        let status = self.status_word().load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let mut b = [0u8; 16];
        self.read(0, &mut b);
        let mut h = SlotHeader::parse(&b);
        h.status = status;
        Some(h)
    }

    /// Copies `out.len()` bytes from `start` in the head slot.
    pub fn read(&self, start: usize, out: &mut [u8]) {
        let end = start.saturating_add(out.len()).min(self.slot_size);
        let n = end.saturating_sub(start);
        // SAFETY: [start, start + n) lies inside the head slot, which
        // userspace owns (its status said so, read with acquire ordering)
        // until `release`.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(self.head * self.slot_size + start),
                out.as_mut_ptr(),
                n,
            );
        }
    }

    /// Gives the head slot back to the kernel and moves to the next.
    pub fn release(&mut self) {
        self.status_word().store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.head = (self.head + 1) % self.slots;
    }

    pub fn slot_size(&self) -> usize {
        self.slot_size
    }
}

impl Drop for RxRing {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this length, and
        // nothing borrows it past `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.map.cast(), self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(status: u32, len: u32, snaplen: u32, mac: u16) -> SlotHeader {
        SlotHeader { status, len, snaplen, mac }
    }

    #[test]
    fn the_header_is_read_in_native_order() {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&1u32.to_ne_bytes());
        b[4..8].copy_from_slice(&106u32.to_ne_bytes());
        b[8..12].copy_from_slice(&106u32.to_ne_bytes());
        b[12..14].copy_from_slice(&76u16.to_ne_bytes());
        b[14..16].copy_from_slice(&90u16.to_ne_bytes());
        assert_eq!(SlotHeader::parse(&b), header(1, 106, 106, 76));
    }

    #[test]
    fn slots_are_classified_by_their_header() {
        let user = libc::TP_STATUS_USER;
        // A 64-byte UDP payload's frame after a virtio_net_hdr (where the
        // kernel puts it: mac 76).
        assert_eq!(classify(&header(user, 106, 106, 76), 256, 10), SlotFrame::InSlot { start: 66, len: 116 });
        assert_eq!(classify(&header(user, 106, 106, 66), 256, 0), SlotFrame::InSlot { start: 66, len: 106 });
        // Filling the slot exactly.
        assert_eq!(classify(&header(user, 180, 180, 76), 256, 10), SlotFrame::InSlot { start: 66, len: 190 });
        // Too big: copied, or cut when the socket had no room for a copy.
        assert_eq!(classify(&header(user | libc::TP_STATUS_COPY, 1500, 180, 76), 256, 10), SlotFrame::Copied);
        assert_eq!(classify(&header(user, 1500, 180, 76), 256, 10), SlotFrame::Cut { len: 1500 });
        // Headers the kernel does not write.
        assert_eq!(classify(&header(user, 106, 106, 40), 256, 10), SlotFrame::Malformed);
        assert_eq!(classify(&header(user, 106, 106, 5), 256, 10), SlotFrame::Malformed);
        assert_eq!(classify(&header(user, 300, 300, 76), 256, 10), SlotFrame::Malformed);
        assert_eq!(classify(&header(user, 100, 106, 76), 256, 10), SlotFrame::Malformed);
        assert_eq!(classify(&header(user, 106, 106, u16::MAX), 256, 10), SlotFrame::Malformed);
    }

    #[test]
    fn any_header_is_classified_inside_its_slot() {
        // Exhaustive over the offsets and lengths a slot can claim.
        for mac in (0..300u16).step_by(3) {
            for snaplen in (0..300u32).step_by(7) {
                for len in [snaplen, snaplen + 1, 2000] {
                    if let SlotFrame::InSlot { start, len } =
                        classify(&header(libc::TP_STATUS_USER, len, snaplen, mac), 256, 10)
                    {
                        assert!(start >= TPACKET2_HDRLEN && start + len <= 256, "mac {mac} snaplen {snaplen}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_ring_is_whole_pages_of_whole_slots() {
        let r = geometry(SLOT_SIZE, SLOTS).expect("the default geometry");
        assert_eq!((r.tp_block_size, r.tp_block_nr, r.tp_frame_size, r.tp_frame_nr), (4096, 128, 256, 2048));
        assert!(geometry(100, 2048).is_err());
        assert!(geometry(96, 2048).is_err());
        assert!(geometry(256, 2047).is_err());
        assert!(geometry(256, 0).is_err());
        assert!(geometry(8192, 4).is_err());
    }
}
