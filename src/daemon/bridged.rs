//! Bridge mode's containers (no fast datapath): each container's host veth
//! is a port of the Linux bridge `weave`, whose frames for other hosts the
//! sleeve captures. Serves the same requests as the fast datapath's
//! dataplane task ([`DpRequest`]), so the API is the same in both modes;
//! attachments are kept in the same state file and taken back at start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::attachments::{self, Saved};
use super::dataplane::{DataplaneHandle, DpRequest};
use crate::api::{AttachError, AttachRequest, AttachView};
use crate::plumb::bridge;
use crate::plumb::veth;

struct Attached {
    host_ifname: String,
    cidrs: Vec<String>,
    mac: String,
    netns: Option<attachments::NetnsId>,
}

struct Bridged {
    bridge: String,
    mtu: u32,
    state_dir: PathBuf,
    attached: BTreeMap<String, Attached>,
    gso_max_size: Option<u32>,
}

/// Starts the task: first the containers an earlier run attached.
/// `gso_max_size`: the cap on containers' GSO super-frames, when the sleeve
/// carries them whole.
pub async fn spawn(bridge: String, mtu: u32, state_dir: PathBuf, gso_max_size: Option<u32>) -> DataplaneHandle {
    let mut b = Bridged { bridge, mtu, state_dir, attached: BTreeMap::new(), gso_max_size };
    b.readopt().await;
    let (tx, mut rx) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            match req {
                DpRequest::Attach(r, reply) => {
                    let res = b.attach(r).await;
                    let _ = reply.send(res);
                }
                DpRequest::Check(target, cidrs, reply) => {
                    let res = b.check(&target, &cidrs).await.map(|p| match p {
                        attachments::Prior::Same => b.view(&target),
                        _ => None,
                    });
                    let _ = reply.send(res);
                }
                DpRequest::Detach(t, cidrs, reply) => {
                    let res = if cidrs.is_empty() {
                        b.detach(&t).await.map(|removed| attachments::detached(&t, removed))
                    } else {
                        let held = b.attached.get_mut(&t).map(|a| &mut a.cidrs);
                        let r = attachments::remove_addresses(&t, held, &cidrs).await;
                        b.save();
                        r
                    };
                    let _ = reply.send(res);
                }
                DpRequest::DetachAll(reply) => {
                    let targets: Vec<String> = b.attached.keys().cloned().collect();
                    for t in targets {
                        if let Err(e) = b.detach(&t).await {
                            warn!(target = %t, error = %e, "detach failed");
                        }
                    }
                    let _ = reply.send(());
                }
                // Heartbeats are the fast datapath's.
                DpRequest::Heartbeat(_) => {}
                DpRequest::Shutdown(done) => {
                    let _ = done.send(());
                    break;
                }
            }
        }
    });
    DataplaneHandle::without_upcalls(tx)
}

impl Bridged {
    fn records(&self) -> Vec<Saved> {
        self.attached
            .iter()
            .map(|(t, a)| Saved {
                target: t.clone(),
                host_ifname: a.host_ifname.clone(),
                cidrs: a.cidrs.clone(),
                mac: a.mac.clone(),
                netns: a.netns,
            })
            .collect()
    }

    fn save(&self) {
        if let Err(e) = attachments::save(&self.state_dir, &self.records()) {
            warn!(error = %e, "could not record the attached containers");
        }
    }

    async fn readopt(&mut self) {
        for s in attachments::surviving(&self.state_dir).await {
            match bridge::enslave(&s.host_ifname, &self.bridge).await {
                Ok(()) => {
                    if let Some(n) = self.gso_max_size {
                        if let Err(e) = veth::cap_container_gso(&veth::netns_path(&s.target), n).await {
                            warn!(target = %s.target, error = %e, "could not cap the container's GSO size");
                        }
                    }
                    info!(target = %s.target, ifname = %s.host_ifname, "container re-attached");
                    let netns = s.netns.or_else(|| attachments::netns_id(&s.target).ok());
                    let a = Attached { host_ifname: s.host_ifname, cidrs: s.cidrs, mac: s.mac, netns };
                    self.attached.insert(s.target, a);
                }
                Err(e) => warn!(target = %s.target, error = %e, "could not re-attach container"),
            }
        }
        let ours: BTreeSet<&String> = self.attached.values().map(|a| &a.host_ifname).collect();
        attachments::remove_unowned_veths(&ours).await;
        self.save();
    }

    /// What an attach of `target` with `cidrs` finds (see [`attachments::prior`]).
    async fn check(&self, target: &str, cidrs: &[String]) -> Result<attachments::Prior, AttachError> {
        let asked = attachments::asked(cidrs)?;
        attachments::prior(target, asked.as_deref(), &self.records()).await
    }

    /// The attachment of `target`, as an attach answers it.
    fn view(&self, target: &str) -> Option<AttachView> {
        self.attached.get(target).map(|a| AttachView {
            target: target.to_string(),
            host_ifname: a.host_ifname.clone(),
            mac: a.mac.clone(),
            port_no: None,
            cidrs: a.cidrs.clone(),
        })
    }

    /// Attaches a container. Attached already, the same: nothing changes;
    /// attached in a namespace since gone (or its veth gone): replaced.
    async fn attach(&mut self, r: AttachRequest) -> Result<AttachView, AttachError> {
        let mut spec = attachments::attach_spec(&r, self.mtu)?;
        spec.gso_max_size = self.gso_max_size;
        match self.check(&r.target, &r.cidrs).await? {
            attachments::Prior::Same => {
                return self.view(&r.target).ok_or_else(|| AttachError::Failed("attachment vanished".into()))
            }
            attachments::Prior::Stale => {
                info!(target = %r.target, "replacing a stale attachment");
                let _ = self.detach(&r.target).await;
            }
            attachments::Prior::Fresh => {}
        }
        let netns = Some(attachments::netns_id(&r.target)?);
        let a = veth::attach(&spec).await.map_err(|e| AttachError::Failed(e.to_string()))?;
        if let Err(e) = bridge::enslave(&a.host_ifname, &self.bridge).await {
            let _ = veth::detach(&a.host_ifname).await;
            return Err(AttachError::Failed(e.to_string()));
        }
        self.attached.insert(
            r.target.clone(),
            Attached {
                host_ifname: a.host_ifname.clone(),
                cidrs: r.cidrs.clone(),
                mac: crate::odp::key::Mac(a.mac).to_string(),
                netns,
            },
        );
        self.save();
        info!(target = %r.target, ifname = %a.host_ifname, bridge = %self.bridge, "container attached");
        attachments::announce(&spec, a.mac).await;
        Ok(AttachView {
            target: r.target,
            host_ifname: a.host_ifname,
            mac: crate::odp::key::Mac(a.mac).to_string(),
            port_no: None,
            cidrs: r.cidrs,
        })
    }

    /// Removes the container's veth. `Ok(None)`: it was not attached.
    async fn detach(&mut self, target: &str) -> Result<Option<Vec<String>>, String> {
        let Some(a) = self.attached.remove(target) else {
            return Ok(None);
        };
        self.save();
        veth::detach(&a.host_ifname).await.map_err(|e| e.to_string())?;
        info!(%target, "container detached");
        Ok(Some(a.cidrs))
    }
}
