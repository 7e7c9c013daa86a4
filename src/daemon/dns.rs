//! The mesh task's DNS duties: the records live in the router as the "dns"
//! gossip channel's state; this module changes them for the API (attach,
//! detach, dns-add, dns-remove), answers lookups, collects tombstones, and
//! publishes the live zone to the DNS server after every change.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::mesh::MeshTask;
use crate::dns::{self, Records, Zone, CHANNEL};

/// The container key of records added by hand (`weavectl dns-add`).
pub const MANUAL: &str = "weave:manual";

/// How often tombstones past their grace are collected (ms).
const GC_EVERY_MS: u64 = 60_000;

/// One record, for `weavectl dns-lookup` and the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsEntryView {
    /// The fully qualified name.
    pub name: String,
    /// The address.
    pub addr: Ipv4Addr,
    /// The container (or `weave:manual`).
    pub container: String,
    /// The peer that added it.
    pub origin: String,
}

/// A request the API makes of DNS.
#[derive(Debug)]
pub enum DnsRequest {
    /// Adds `name` → `addrs` for `container`.
    Add { container: String, name: String, addrs: Vec<Ipv4Addr>, tx: oneshot::Sender<Result<usize, String>> },
    /// Removes this peer's records of `name` (only those of `addrs`, if
    /// given), whatever their container.
    Remove { name: String, addrs: Vec<Ipv4Addr>, tx: oneshot::Sender<Result<usize, String>> },
    /// Removes every record of a container, or only those of `only`'s
    /// addresses (detached from it).
    RemoveContainer { container: String, only: Option<Vec<Ipv4Addr>>, tx: oneshot::Sender<usize> },
    /// The records of a name (or all, for an empty name), across the mesh.
    Lookup { name: String, tx: oneshot::Sender<Result<Vec<DnsEntryView>, String>> },
}

/// The mesh task's DNS part.
pub(super) struct DnsDriver {
    domain: Name,
    zone: watch::Sender<Arc<Zone>>,
    next_gc: u64,
}

impl DnsDriver {
    pub(super) fn new(domain: Name, zone: watch::Sender<Arc<Zone>>) -> DnsDriver {
        DnsDriver { domain, zone, next_gc: 0 }
    }
}

/// Record versions and tombstone ages use the wall clock, so that a peer's
/// changes after a restart are newer than those before.
fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl MeshTask {
    fn dns_driver(&self) -> Option<&DnsDriver> {
        self.dns.as_ref()
    }

    /// Changes the records with `f`, then publishes the zone.
    fn with_records<R>(&mut self, f: impl FnOnce(&mut Records, u64) -> R) -> Option<R> {
        let now = self.now();
        let r = self.router.update_channel::<Records, _>(now, CHANNEL, |s| f(s, wall_ms()));
        match r {
            Ok(r) => {
                self.publish_zone();
                Some(r)
            }
            Err(e) => {
                warn!(error = %e, "DNS is not running");
                None
            }
        }
    }

    /// Gives the DNS server the live zone.
    pub(super) fn publish_zone(&self) {
        let (Some(d), Ok(records)) = (self.dns_driver(), self.router.channel::<Records>(CHANNEL)) else { return };
        d.zone.send_replace(records.snapshot());
    }

    /// Collects old tombstones now and then.
    pub(super) fn run_dns(&mut self) {
        let now = self.now();
        match &mut self.dns {
            Some(d) if now >= d.next_gc => d.next_gc = now + GC_EVERY_MS,
            _ => return,
        }
        self.with_records(|s, wall| s.gc(wall));
    }

    /// Removes a container's records (detached, or gone).
    pub(super) fn dns_forget_container(&mut self, container: &str) -> usize {
        if self.dns.is_none() {
            return 0;
        }
        let me = self.router.identity().name;
        self.with_records(|s, wall| s.remove_container(me, container, wall)).unwrap_or(0)
    }

    pub(super) fn on_dns_request(&mut self, req: DnsRequest) {
        let Some(domain) = self.dns_driver().map(|d| d.domain.clone()) else {
            let off = "DNS is off (--dns-listen-address is empty)".to_string();
            match req {
                DnsRequest::Add { tx, .. } | DnsRequest::Remove { tx, .. } => drop(tx.send(Err(off))),
                DnsRequest::Lookup { tx, .. } => drop(tx.send(Err(off))),
                DnsRequest::RemoveContainer { tx, .. } => drop(tx.send(0)),
            }
            return;
        };
        let me = self.router.identity().name;
        match req {
            DnsRequest::Add { container, name, addrs, tx } => {
                let r = dns::name_in(&name, &domain).map_err(|e| e.to_string()).and_then(|n| {
                    let added = self.with_records(|s, wall| {
                        let mut added = 0;
                        for a in &addrs {
                            if s.add(me, &container, &n, *a, wall)? {
                                added += 1;
                            }
                        }
                        Ok::<usize, dns::DnsError>(added)
                    });
                    let added = added.ok_or_else(|| "DNS is not running".to_string())?.map_err(|e| e.to_string())?;
                    info!(name = %n, ?addrs, %container, "DNS records added");
                    Ok(added)
                });
                let _ = tx.send(r);
            }
            DnsRequest::Remove { name, addrs, tx } => {
                let r = dns::name_in(&name, &domain).map_err(|e| e.to_string()).map(|n| {
                    self.with_records(|s, wall| {
                        let mine: Vec<_> = s
                            .entries()
                            .into_iter()
                            .filter(|e| e.origin == me && e.name == n && (addrs.is_empty() || addrs.contains(&e.addr)))
                            .collect();
                        mine.iter().filter(|e| s.remove(me, &e.container, &e.name, e.addr, wall)).count()
                    })
                    .unwrap_or(0)
                });
                let _ = tx.send(r);
            }
            DnsRequest::RemoveContainer { container, only: None, tx } => {
                let _ = tx.send(self.dns_forget_container(&container));
            }
            DnsRequest::RemoveContainer { container, only: Some(addrs), tx } => {
                let me = self.router.identity().name;
                let n =
                    self.with_records(|s, wall| s.remove_container_addrs(me, &container, &addrs, wall)).unwrap_or(0);
                let _ = tx.send(n);
            }
            DnsRequest::Lookup { name, tx } => {
                let r = self.dns_lookup(&name, &domain);
                let _ = tx.send(r);
            }
        }
    }

    fn dns_lookup(&self, name: &str, domain: &Name) -> Result<Vec<DnsEntryView>, String> {
        let records = self.router.channel::<Records>(CHANNEL).map_err(|e| e.to_string())?;
        let want = if name.is_empty() { None } else { Some(dns::name_in(name, domain).map_err(|e| e.to_string())?) };
        let mut out: Vec<DnsEntryView> = records
            .entries()
            .into_iter()
            .filter(|e| want.as_ref().is_none_or(|w| *w == e.name))
            .map(|e| DnsEntryView {
                name: e.name.to_ascii(),
                addr: e.addr,
                container: e.container,
                origin: e.origin.to_string(),
            })
            .collect();
        out.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
        Ok(out)
    }
}
