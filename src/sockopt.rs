//! Integer socket options that no crate wraps: `NETLINK_NO_ENOBUFS` on
//! neli's sockets (which are not `AsFd` for nix), and `IP_MTU_DISCOVER`
//! (path-MTU discovery modes) on UDP sockets.

use std::os::fd::RawFd;

/// Sets an integer socket option.
#[allow(unsafe_code)]
pub(crate) fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: `fd` is an open socket owned by the caller; `value` outlives
    // the call and its exact size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How a UDP socket treats don't-fragment and the kernel's path MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmtuDiscovery {
    /// DF set; sends bigger than the route's known path MTU fail with EMSGSIZE.
    Do,
    /// DF set; the kernel's path MTU is ignored (for probes).
    Probe,
    /// DF clear: the kernel fragments what is bigger than the path.
    Dont,
}

/// Sets `IP_MTU_DISCOVER` on an IPv4 socket.
pub fn set_pmtu_discovery(fd: RawFd, mode: PmtuDiscovery) -> std::io::Result<()> {
    let v = match mode {
        PmtuDiscovery::Do => libc::IP_PMTUDISC_DO,
        PmtuDiscovery::Probe => libc::IP_PMTUDISC_PROBE,
        PmtuDiscovery::Dont => libc::IP_PMTUDISC_DONT,
    };
    set_int(fd, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, v)
}
