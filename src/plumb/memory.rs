//! Handing memory back to the kernel when the sleeve goes quiet.
//!
//! The sleeve's threads keep their receive buffers (up to 64 KB each, a few
//! megabytes in all) for the next burst. The kernel gives them pages only
//! as datagrams and frames fill them, but once traffic has filled them they
//! stay resident: an idle daemon that once carried a bulk transfer held
//! 5 MB more than one that never had. [`release`] returns a buffer's pages
//! (it reads as zeros afterwards, and is paged in again as it is used), and
//! [`trim_heap`] returns what the allocator holds free.

use std::io;

/// Returns the whole pages inside `buf` to the kernel: they read as zeros
/// from now on, and take memory again only when written.
#[allow(unsafe_code)]
pub fn release(buf: &mut [u8]) -> io::Result<()> {
    let page = page_size();
    let start = buf.as_mut_ptr() as usize;
    let first = start.div_ceil(page) * page;
    let end = (start + buf.len()) / page * page;
    if end <= first {
        return Ok(());
    }
    // SAFETY: [first, end) lies inside `buf`, which we borrow mutably, so
    // nothing else reads or writes it meanwhile; it is anonymous private
    // memory (a heap or mmap allocation), for which MADV_DONTNEED only
    // replaces the pages' contents with zeros, a valid value for u8. The
    // allocator's own bookkeeping lives outside a live allocation's bytes.
    let r = unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Returns the allocator's free memory (in every thread's arena) to the
/// kernel. A no-op where the C library is not glibc.
#[allow(unsafe_code)]
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointers; glibc locks each arena itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().map_or(4096, |p| p as usize)
}

/// Resident pages of `buf`, from `mincore` (for tests).
#[cfg(test)]
#[allow(unsafe_code)]
fn resident_pages(buf: &[u8]) -> usize {
    let page = page_size();
    let start = buf.as_ptr() as usize / page * page;
    let len = buf.as_ptr() as usize + buf.len() - start;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: the range covers pages of a live allocation; `vec` has one
    // byte per page, as mincore writes.
    let r = unsafe { libc::mincore(start as *mut libc::c_void, len, vec.as_mut_ptr()) };
    assert_eq!(r, 0, "mincore: {}", io::Error::last_os_error());
    vec.iter().filter(|b| **b & 1 != 0).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_pages_read_as_zeros_and_leave_memory() {
        let mut buf = vec![0u8; 1 << 20];
        buf.fill(0xa5);
        let before = resident_pages(&buf);
        assert!(before >= 255, "a filled megabyte is resident: {before} pages");
        release(&mut buf).unwrap();
        let after = resident_pages(&buf);
        assert!(after <= 2, "only the partial pages at the ends stay: {after}");
        // The bytes outside whole pages keep their value; the rest are 0.
        let page = page_size();
        let head = (buf.as_ptr() as usize).div_ceil(page) * page - buf.as_ptr() as usize;
        assert!(buf[..head].iter().all(|b| *b == 0xa5));
        assert!(buf[head..head + page].iter().all(|b| *b == 0));
        // Usable as before.
        buf[head + 10] = 7;
        assert_eq!(buf[head + 10], 7);
        trim_heap();
    }

    #[test]
    fn small_buffers_are_left_alone() {
        let mut b = [1u8; 100];
        release(&mut b).unwrap();
        assert!(b.iter().all(|x| *x == 1));
    }
}
