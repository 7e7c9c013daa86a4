//! Capability probe: can this kernel run the fast datapath?
//!
//! The decision itself ([`decide`]) is pure: it takes what was observed and
//! returns the verdict with a reason for the user. [`probe`] gathers the
//! observations from the running kernel.

use serde::{Deserialize, Serialize};

use super::socket::{DpFeatures, OdpClient, OdpError};
use super::vport::{VportOptions, VportType};

/// Why the fast datapath can or cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Capability {
    /// The ODP works, VXLAN vports included.
    Usable { per_cpu_dispatch: bool },
    /// The generic netlink families are missing.
    NoOdp,
    /// The ODP exists but creating a VXLAN vport fails with EAFNOSUPPORT.
    NoVxlanVport,
    /// Kernels before 3.12 lack what fastdp needs (megaflows, VXLAN vports done right).
    KernelTooOld { release: String },
    /// The probe itself failed for another reason.
    ProbeFailed { error: String },
    /// The operator asked for the sleeve (`--no-fastdp`).
    Disabled,
}

impl Capability {
    pub fn fastdp(&self) -> bool {
        matches!(self, Capability::Usable { .. })
    }

    /// A sentence for `weavectl status` and the logs.
    pub fn reason(&self) -> String {
        match self {
            Capability::Usable { per_cpu_dispatch: true } => "kernel ODP usable, per-CPU upcall dispatch".into(),
            Capability::Usable { per_cpu_dispatch: false } => "kernel ODP usable, per-vport upcall dispatch".into(),
            Capability::NoOdp => "kernel has no openvswitch module".into(),
            Capability::NoVxlanVport => "kernel openvswitch module does not support VXLAN vports".into(),
            Capability::KernelTooOld { release } => format!("kernel {release} is older than 3.12"),
            Capability::ProbeFailed { error } => format!("datapath probe failed: {error}"),
            Capability::Disabled => "fast datapath disabled by --no-fastdp".into(),
        }
    }
}

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observations {
    /// `uname -r`.
    pub release: String,
    /// Result of resolving the families; `Err(None)` means missing.
    pub families: Result<(), Option<String>>,
    /// Result of creating a VXLAN vport on a scratch datapath; errno on failure.
    pub vxlan: Option<Result<(), i32>>,
    /// Whether the kernel accepted per-CPU upcall dispatch.
    pub per_cpu_dispatch: bool,
    /// Other probe failure (datapath creation, ...).
    pub other_error: Option<String>,
}

/// Parses "major.minor" from a kernel release string such as `6.1.0-27-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The pure decision.
pub fn decide(o: &Observations) -> Capability {
    if let Some((maj, min)) = kernel_version(&o.release) {
        if (maj, min) < (3, 12) {
            return Capability::KernelTooOld { release: o.release.clone() };
        }
    }
    match &o.families {
        Err(None) => return Capability::NoOdp,
        Err(Some(e)) => return Capability::ProbeFailed { error: e.clone() },
        Ok(()) => {}
    }
    if let Some(e) = &o.other_error {
        return Capability::ProbeFailed { error: e.clone() };
    }
    match o.vxlan {
        Some(Ok(())) => Capability::Usable { per_cpu_dispatch: o.per_cpu_dispatch },
        Some(Err(errno)) if errno == libc::EAFNOSUPPORT => Capability::NoVxlanVport,
        Some(Err(errno)) => Capability::ProbeFailed {
            error: format!("creating a VXLAN vport: {}", std::io::Error::from_raw_os_error(errno)),
        },
        None => Capability::ProbeFailed { error: "VXLAN vport was not probed".into() },
    }
}

fn release() -> String {
    nix_uname().unwrap_or_default()
}

fn nix_uname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string())
}

/// Probes the running kernel in the current network namespace. It creates a
/// scratch datapath `name` with a VXLAN vport on `vxlan_port`, then removes both.
pub fn probe(scratch_dp: &str, vxlan_port: u16) -> (Capability, Observations) {
    let mut o =
        Observations { release: release(), families: Ok(()), vxlan: None, per_cpu_dispatch: false, other_error: None };
    let client = match OdpClient::connect() {
        Ok(c) => c,
        Err(OdpError::FamilyMissing(_)) => {
            o.families = Err(None);
            return (decide(&o), o);
        }
        Err(e) => {
            o.families = Err(Some(e.to_string()));
            return (decide(&o), o);
        }
    };
    // A leftover scratch datapath from a crashed probe is removed first.
    let _ = client.delete_datapath(scratch_dp);
    match client.create_datapath(scratch_dp, 0, DpFeatures::weaver_default()) {
        Ok(dp) => {
            let vx_name = format!("{scratch_dp}-vx");
            o.vxlan = Some(
                client
                    .create_vport(
                        dp.dp_ifindex,
                        &vx_name,
                        VportType::Vxlan,
                        Some(VportOptions { dst_port: Some(vxlan_port), other: vec![] }),
                        vec![],
                    )
                    .map(|_| ())
                    .map_err(|e| e.errno().unwrap_or(libc::EIO)),
            );
            let per_cpu =
                DpFeatures { bits: DpFeatures::weaver_default().bits | super::datapath::F_DISPATCH_UPCALL_PER_CPU };
            o.per_cpu_dispatch = client.set_datapath(scratch_dp, per_cpu, Some(vec![0])).is_ok();
            let _ = client.delete_datapath(scratch_dp);
        }
        Err(e) => o.other_error = Some(e.to_string()),
    }
    (decide(&o), o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs() -> Observations {
        Observations {
            release: "6.1.0-27-amd64".into(),
            families: Ok(()),
            vxlan: Some(Ok(())),
            per_cpu_dispatch: true,
            other_error: None,
        }
    }

    #[test]
    fn usable() {
        assert_eq!(decide(&obs()), Capability::Usable { per_cpu_dispatch: true });
        assert!(decide(&obs()).fastdp());
    }

    #[test]
    fn module_missing() {
        let o = Observations { families: Err(None), vxlan: None, ..obs() };
        let c = decide(&o);
        assert_eq!(c, Capability::NoOdp);
        assert_eq!(c.reason(), "kernel has no openvswitch module");
        assert!(!c.fastdp());
    }

    #[test]
    fn no_vxlan_vport() {
        let o = Observations { vxlan: Some(Err(libc::EAFNOSUPPORT)), ..obs() };
        assert_eq!(decide(&o), Capability::NoVxlanVport);
    }

    #[test]
    fn old_kernel_wins_over_everything() {
        let o = Observations { release: "3.11.10".into(), ..obs() };
        assert!(matches!(decide(&o), Capability::KernelTooOld { .. }));
        let o = Observations { release: "3.12.0".into(), ..obs() };
        assert!(decide(&o).fastdp());
        let o = Observations { release: "2.6.32-754.el6".into(), families: Err(None), ..obs() };
        assert!(matches!(decide(&o), Capability::KernelTooOld { .. }));
    }

    #[test]
    fn other_vxlan_errors_are_probe_failures() {
        let o = Observations { vxlan: Some(Err(libc::EADDRINUSE)), ..obs() };
        assert!(matches!(decide(&o), Capability::ProbeFailed { .. }));
    }

    #[test]
    fn parses_kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(kernel_version("3.12"), Some((3, 12)));
        assert_eq!(kernel_version("garbage"), None);
    }
}
