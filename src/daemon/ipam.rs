//! The mesh task's IPAM duties: the allocator lives in the router as the
//! "ipam" gossip channel's state; this module feeds it (ticks, unicasts,
//! reachable peers), answers the API's requests (waiting for allocations
//! that need space from other peers) and saves its state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::mesh::MeshTask;
use crate::ipam::{self, Ipam, IpamEvent, IpamStatus, Saved, CHANNEL};
use crate::mesh::peer::PeerName;

/// The file IPAM's state is saved in, under the state directory.
pub const FILE: &str = "ipam.json";

/// How long an API request waits for an address that needs space from
/// other peers.
pub const WAIT: Duration = Duration::from_secs(30);

/// Reads the saved state. A missing file is a fresh start; a file that
/// cannot be read or parsed is an error naming it and what to do (never
/// silently replaced: the addresses it records are in use).
pub fn load(dir: &Path) -> Result<Option<Saved>, String> {
    super::store::load_strict(dir, FILE, "IPAM state").map_err(|e| {
        format!(
            "{e}; restore the store from a backup, or stop weaver, move the store aside and start IPAM afresh on \
             this peer (its containers' addresses are then forgotten: run `weavectl rmpeer` for this peer's old \
             space on another peer first)"
        )
    })
}

/// A request the API makes of IPAM.
#[derive(Debug)]
pub enum IpamRequest {
    /// An address for a container: `cidr` claims that exact one, otherwise
    /// one from `subnet` (or the default subnet).
    Allocate {
        container: String,
        cidr: Option<Ipv4Net>,
        subnet: Option<Ipv4Net>,
        tx: oneshot::Sender<Result<Ipv4Net, String>>,
    },
    /// Frees a container's addresses (all, or `only`).
    Release { container: String, only: Option<Vec<Ipv4Net>>, tx: oneshot::Sender<Vec<Ipv4Net>> },
    /// Takes over a dead peer's space.
    RmPeer { peer: String, tx: oneshot::Sender<Result<u64, String>> },
    /// The status.
    Status(oneshot::Sender<IpamStatus>),
    /// Gives this peer's space away and forgets its allocations (`weavectl
    /// stop --reset`); answers who got the space.
    Reset(oneshot::Sender<Option<String>>),
    /// The addresses a container holds.
    Addresses { container: String, tx: oneshot::Sender<Vec<Ipv4Net>> },
}

/// How often containers are checked for having gone away (ms).
const REAP_EVERY_MS: u64 = 2_000;

/// The mesh task's IPAM part.
pub(super) struct IpamDriver {
    dir: PathBuf,
    waiters: BTreeMap<String, Vec<oneshot::Sender<Result<Ipv4Net, String>>>>,
    saved: Option<Saved>,
    next_tick: u64,
    /// How long a container's namespace must be gone before its addresses
    /// are released (ms).
    grace_ms: u64,
    /// Containers whose namespace is gone, since when.
    missing: BTreeMap<String, u64>,
    next_reap: u64,
}

impl IpamDriver {
    pub(super) fn new(dir: PathBuf, grace: Duration) -> IpamDriver {
        IpamDriver {
            dir,
            waiters: BTreeMap::new(),
            saved: None,
            next_tick: 0,
            grace_ms: grace.as_millis() as u64,
            missing: BTreeMap::new(),
            next_reap: 0,
        }
    }

    pub(super) fn next_tick(&self) -> u64 {
        self.next_tick
    }
}

impl MeshTask {
    fn with_ipam<R>(&mut self, f: impl FnOnce(&mut Ipam, u64) -> R) -> Option<R> {
        let now = self.now();
        let reach: Vec<PeerName> = self.router.routes().unicast().map(|h| h.dest).collect();
        let out = self.router.update_channel::<Ipam, _>(now, CHANNEL, |s| {
            s.set_reachable(reach);
            let r = f(s, now);
            s.handle_timeout(now);
            let mut unicasts = Vec::new();
            while let Some(u) = s.poll_unicast() {
                unicasts.push(u);
            }
            let mut events = Vec::new();
            while let Some(e) = s.poll_event() {
                events.push(e);
            }
            (r, unicasts, events, s.save())
        });
        let (r, unicasts, events, saved) = match out {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "IPAM is not running");
                return None;
            }
        };
        for (to, bytes) in unicasts {
            if let Err(e) = self.router.unicast(now, to, CHANNEL, bytes) {
                warn!(peer = %to, error = %e, "cannot reach an IPAM peer");
            }
        }
        for ev in events {
            let (container, result) = match ev {
                IpamEvent::Allocated { container, addr } => {
                    info!(%container, %addr, "address allocated");
                    (container, Ok(addr))
                }
                IpamEvent::Failed { container, reason } => {
                    warn!(%container, %reason, "address allocation failed");
                    (container, Err(reason))
                }
            };
            for tx in self.ipam.waiters.remove(&container).unwrap_or_default() {
                let _ = tx.send(result.clone());
            }
        }
        if self.ipam.saved.as_ref() != Some(&saved) {
            if let Err(e) = super::store::save(&self.ipam.dir, FILE, &saved) {
                warn!(error = %e, "cannot save the IPAM state");
            }
            self.ipam.saved = Some(saved);
        }
        self.ipam.next_tick = now + ipam::allocator::TICK_MS;
        Some(r)
    }

    /// Releases the addresses of containers whose network namespace has
    /// been gone for the grace period (the container stopped without a
    /// detach). A namespace that comes back in time keeps them.
    fn reap_gone(&mut self) {
        let now = self.now();
        if now < self.ipam.next_reap {
            return;
        }
        self.ipam.next_reap = now + REAP_EVERY_MS;
        let mut holders: std::collections::BTreeSet<String> = match self.router.channel::<Ipam>(CHANNEL) {
            Ok(ipam) => ipam.allocations().map(|(_, c)| c.to_string()).collect(),
            Err(_) => Default::default(),
        };
        if let Ok(records) = self.router.channel::<crate::dns::Records>(crate::dns::CHANNEL) {
            let me = self.router.identity().name;
            holders.extend(records.entries().into_iter().filter(|e| e.origin == me).map(|e| e.container));
        }
        // Names of ours (`weave:expose`, `weave:manual`) are no containers.
        holders.retain(|c| !c.starts_with("weave:"));
        self.ipam.missing.retain(|c, _| holders.contains(c));
        let mut gone = Vec::new();
        for c in holders {
            if crate::plumb::veth::netns_path(&c).exists() {
                self.ipam.missing.remove(&c);
                continue;
            }
            let since = *self.ipam.missing.entry(c.clone()).or_insert(now);
            if now >= since + self.ipam.grace_ms {
                gone.push(c);
            }
        }
        for c in gone {
            self.ipam.missing.remove(&c);
            let freed =
                if self.ipam_on { self.with_ipam(|s, _| s.release(&c, None)).unwrap_or_default() } else { vec![] };
            let names = self.dns_forget_container(&c);
            info!(container = %c, released = ?freed, dns_records = names, "container gone: its addresses and names are released");
        }
    }

    /// Ticks the allocator when due or when gossip changed its state.
    pub(super) fn run_ipam(&mut self) {
        self.reap_gone();
        if !self.ipam_on {
            return;
        }
        let due = self.now() >= self.ipam.next_tick;
        let attention = self.router.channel::<Ipam>(CHANNEL).is_ok_and(Ipam::needs_attention);
        if due || attention {
            self.with_ipam(|_, _| ());
        }
    }

    /// A unicast on the IPAM channel.
    pub(super) fn on_ipam_message(&mut self, src: PeerName, payload: Vec<u8>) {
        let r = self.with_ipam(|s, now| s.handle_message(now, src, &payload));
        if let Some(Err(e)) = r {
            warn!(peer = %src, error = %e, "bad IPAM message");
        }
    }

    pub(super) fn on_ipam_request(&mut self, req: IpamRequest) {
        match req {
            IpamRequest::Allocate { container, cidr, subnet, tx } => {
                // The waiter goes in first: the tick that takes the request
                // may also finish it (a ring seeded by that very tick, when
                // this peer needs nobody else's consent), and the event it
                // emits must find someone to tell.
                self.ipam.waiters.entry(container.clone()).or_default().push(tx);
                let r = self.with_ipam(|s, now| match cidr {
                    Some(c) => s.claim(now, &container, c),
                    None => s.allocate(now, &container, subnet),
                });
                let answer = match r {
                    Some(Ok(Some(a))) => Ok(a),
                    // Waits for an event (or an event already answered).
                    Some(Ok(None)) => return,
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("IPAM is not running".into()),
                };
                // Ours is the last waiter, unless an event took them all.
                if let Some(list) = self.ipam.waiters.get_mut(&container) {
                    if let Some(tx) = list.pop() {
                        let _ = tx.send(answer);
                    }
                    if list.is_empty() {
                        self.ipam.waiters.remove(&container);
                    }
                }
            }
            IpamRequest::Release { container, only, tx } => {
                let r = self.with_ipam(|s, _| s.release(&container, only.as_deref())).unwrap_or_default();
                if !r.is_empty() {
                    info!(%container, released = ?r, "addresses released");
                }
                let _ = tx.send(r);
            }
            IpamRequest::RmPeer { peer, tx } => {
                let r = self.resolve_peer(&peer).and_then(|name| {
                    self.with_ipam(|s, _| s.rmpeer(name))
                        .ok_or_else(|| "IPAM is not running".to_string())?
                        .map_err(|e| e.to_string())
                });
                let _ = tx.send(r);
            }
            IpamRequest::Reset(tx) => {
                let to = self.with_ipam(|s, _| s.reset()).flatten();
                match to {
                    Some(p) => info!(peer = %p, "IPAM space given away"),
                    None => warn!("no reachable peer to give IPAM space to: it stays owned by this peer's name"),
                }
                let _ = tx.send(to.map(|p| p.to_string()));
            }
            IpamRequest::Addresses { container, tx } => {
                let _ = tx.send(self.with_ipam(|s, _| s.addresses_of(&container)).unwrap_or_default());
            }
            IpamRequest::Status(tx) => {
                if let Some(st) = self.with_ipam(|s, _| s.status()) {
                    let _ = tx.send(st);
                }
            }
        }
    }

    /// A peer by name or nickname, as the topology knows it.
    fn resolve_peer(&self, s: &str) -> Result<PeerName, String> {
        if let Ok(n) = s.parse::<PeerName>() {
            return Ok(n);
        }
        let found: Vec<PeerName> = self.router.topology().iter().filter(|e| e.nickname == s).map(|e| e.name).collect();
        match found[..] {
            [n] => Ok(n),
            [] => Err(format!("no peer named {s:?} (give its name, like 0a:1b:2c:3d:4e:5f, or its nickname)")),
            _ => Err(format!("several peers have the nickname {s:?}; give the peer name")),
        }
    }
}
