//! The daemon's datapath: probed, created at start (replacing a stale one
//! from a crashed run), removed at shutdown.

use std::sync::Arc;

use tracing::{info, warn};

use crate::odp::probe::{self, Capability};
use crate::odp::socket::{DpFeatures, OdpClient, OdpError};
use crate::odp::vport::{VportOptions, VportType};

/// The datapath the daemon owns.
pub struct Fastdp {
    pub client: Arc<OdpClient>,
    pub datapath: String,
}

/// Decides the overlay: the probe's verdict, or sleeve when forced. A
/// datapath of ours left by a run that died (SIGKILL, a crash) is removed
/// first: its VXLAN vport holds the UDP port the probe needs.
pub async fn probe(datapath: &str, vxlan_port: u16, forced_sleeve: bool) -> Capability {
    if forced_sleeve {
        return Capability::Disabled;
    }
    let stale = datapath.to_string();
    let _ = tokio::task::spawn_blocking(move || remove_stale(&stale)).await;
    let dp = format!("{datapath}-probe");
    tokio::task::spawn_blocking(move || probe::probe(&dp, vxlan_port).0)
        .await
        .unwrap_or_else(|e| Capability::ProbeFailed { error: e.to_string() })
}

/// Removes the datapath `name` if it exists (nothing when the kernel has no ODP).
fn remove_stale(name: &str) {
    let Ok(c) = OdpClient::connect() else { return };
    if let Ok(Some(_)) = c.get_datapath(name) {
        warn!(datapath = name, "removing stale datapath from an earlier run");
        if let Err(e) = c.delete_datapath(name) {
            warn!(datapath = name, error = %e, "could not remove the stale datapath");
        }
    }
}

impl Fastdp {
    /// Creates the datapath and its VXLAN vport.
    pub fn start(datapath: &str, vxlan_port: u16) -> Result<Fastdp, OdpError> {
        let c = OdpClient::connect()?;
        if c.get_datapath(datapath)?.is_some() {
            warn!(datapath, "removing stale datapath from an earlier run");
            c.delete_datapath(datapath)?;
        }
        let dp = c.create_datapath(datapath, 0, DpFeatures::weaver_default())?;
        let vx = format!("vxlan-{vxlan_port}");
        c.create_vport(
            dp.dp_ifindex,
            &vx,
            VportType::Vxlan,
            Some(VportOptions { dst_port: Some(vxlan_port), other: vec![] }),
            vec![],
        )?;
        info!(datapath, ifindex = dp.dp_ifindex, vxlan = %vx, "datapath ready");
        Ok(Fastdp { client: Arc::new(c), datapath: datapath.to_string() })
    }

    /// Removes a datapath left by an earlier fast-datapath run (a crash),
    /// before bridge mode takes the name of its internal port. Nothing to do
    /// where the kernel has no datapath at all.
    pub fn remove_stale(datapath: &str) -> Result<bool, OdpError> {
        let c = match OdpClient::connect() {
            Ok(c) => c,
            Err(_) => return Ok(false),
        };
        if c.get_datapath(datapath)?.is_none() {
            return Ok(false);
        }
        warn!(datapath, "removing the datapath of an earlier fast-datapath run");
        c.delete_datapath(datapath)?;
        Ok(true)
    }

    /// Removes the datapath (its ports and flows go with it).
    pub fn stop(&self) {
        if let Err(e) = self.client.delete_datapath(&self.datapath) {
            warn!(error = %e, "could not remove the datapath");
        }
    }
}
