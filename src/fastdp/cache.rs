//! The flow cache: every flow the forwarder installed, what it depends on,
//! and when it was last used. Indexed by match key, by dependency and by
//! last use, so that invalidation and idle expiry touch only the flows they
//! delete.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::megaflow::MatchKey;
use super::op::{Dep, Epoch, Location};
use crate::odp::action::Action;

/// One installed flow, as the forwarder remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEntry {
    /// Its match.
    pub key: MatchKey,
    /// Its actions.
    pub actions: Vec<Action>,
    /// What its match and actions were derived from.
    pub deps: BTreeSet<Dep>,
    /// Where its source MAC was learned: the in_port, or the VNI's source.
    pub source: Location,
    /// The epoch of the latest install op issued for it.
    pub epoch: Epoch,
    /// When it was (last) installed.
    pub installed: u64,
    /// When it was last used: its install, or a later `used` time reported
    /// by the datapath.
    pub used: u64,
}

/// Installed flows, indexed.
#[derive(Clone, Debug, Default)]
pub(crate) struct FlowCache {
    next_id: u64,
    flows: BTreeMap<u64, FlowEntry>,
    by_key: HashMap<MatchKey, u64>,
    by_dep: HashMap<Dep, BTreeSet<u64>>,
    by_used: BTreeSet<(u64, u64)>,
}

impl FlowCache {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    /// The flows in installation order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &FlowEntry> + '_ {
        self.flows.values()
    }

    pub(crate) fn get(&self, key: &MatchKey) -> Option<&FlowEntry> {
        self.flows.get(self.by_key.get(key)?)
    }

    /// Adds a flow, replacing (and returning) any with the same key.
    pub(crate) fn insert(&mut self, e: FlowEntry) -> Option<FlowEntry> {
        let old = self.remove(&e.key);
        let id = self.next_id;
        self.next_id += 1;
        for d in &e.deps {
            self.by_dep.entry(*d).or_default().insert(id);
        }
        self.by_used.insert((e.used, id));
        self.by_key.insert(e.key, id);
        self.flows.insert(id, e);
        old
    }

    pub(crate) fn remove(&mut self, key: &MatchKey) -> Option<FlowEntry> {
        let id = self.by_key.remove(key)?;
        let e = self.flows.remove(&id)?;
        self.by_used.remove(&(e.used, id));
        for d in &e.deps {
            if let Some(set) = self.by_dep.get_mut(d) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_dep.remove(d);
                }
            }
        }
        Some(e)
    }

    /// Removes and returns every flow that depends on any of `deps`, in
    /// installation order.
    pub(crate) fn invalidate<'a>(&mut self, deps: impl IntoIterator<Item = &'a Dep>) -> Vec<FlowEntry> {
        let mut ids = BTreeSet::new();
        for d in deps {
            if let Some(set) = self.by_dep.get(d) {
                ids.extend(set.iter().copied());
            }
        }
        let keys: Vec<MatchKey> = ids.iter().filter_map(|id| self.flows.get(id)).map(|e| e.key).collect();
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Records that the flow was used at `used` (never moves backwards).
    pub(crate) fn touch(&mut self, key: &MatchKey, used: u64) -> Option<&FlowEntry> {
        let id = *self.by_key.get(key)?;
        let e = self.flows.get_mut(&id)?;
        if used > e.used {
            self.by_used.remove(&(e.used, id));
            e.used = used;
            self.by_used.insert((used, id));
        }
        Some(e)
    }

    /// Notes that an install op for the flow was issued again.
    pub(crate) fn reinstalled(&mut self, key: &MatchKey, epoch: Epoch) {
        if let Some(e) = self.by_key.get(key).and_then(|id| self.flows.get_mut(id)) {
            e.epoch = epoch;
        }
    }

    /// Removes and returns the flows unused for `idle` as of `now`, least
    /// recently used first.
    pub(crate) fn expire_idle(&mut self, now: u64, idle: u64) -> Vec<FlowEntry> {
        let mut gone = Vec::new();
        while let Some(&(used, id)) = self.by_used.first() {
            if used.saturating_add(idle) > now {
                break;
            }
            let key = self.flows[&id].key;
            gone.extend(self.remove(&key));
        }
        gone
    }

    /// When the least recently used flow goes idle.
    pub(crate) fn next_idle_expiry(&self, idle: u64) -> Option<u64> {
        self.by_used.first().map(|(used, _)| used.saturating_add(idle))
    }

    /// How many flows depend on `dep`.
    #[cfg(test)]
    pub(crate) fn dependents(&self, dep: &Dep) -> usize {
        self.by_dep.get(dep).map_or(0, BTreeSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::peer::PeerName;
    use crate::odp::key::{EthernetKey, Mac};

    fn key(n: u8) -> MatchKey {
        MatchKey { in_port: 1, eth: EthernetKey { src: Mac([2, 0, 0, 0, 0, n]), dst: Mac::BROADCAST }, tunnel: None }
    }

    fn flow(n: u8, used: u64, deps: &[Dep]) -> FlowEntry {
        FlowEntry {
            key: key(n),
            actions: vec![Action::Output(u32::from(n))],
            deps: deps.iter().copied().collect(),
            source: Location::Local(1),
            epoch: Epoch(0),
            installed: used,
            used,
        }
    }

    fn peer(n: u64) -> Dep {
        Dep::Route(PeerName::from_u64(n))
    }

    #[test]
    fn invalidation_removes_exactly_the_dependents() {
        let mut c = FlowCache::default();
        c.insert(flow(1, 0, &[peer(1), Dep::Port(1)]));
        c.insert(flow(2, 0, &[peer(2), Dep::Port(1)]));
        c.insert(flow(3, 0, &[peer(1), peer(2)]));
        let gone: Vec<MatchKey> = c.invalidate(&[peer(1)]).into_iter().map(|e| e.key).collect();
        assert_eq!(gone, vec![key(1), key(3)]);
        assert_eq!(c.len(), 1);
        assert_eq!(c.dependents(&Dep::Port(1)), 1);
        assert_eq!(c.dependents(&peer(2)), 1);
        assert!(c.invalidate(&[peer(1)]).is_empty());
    }

    #[test]
    fn a_union_of_deps_deletes_each_flow_once() {
        let mut c = FlowCache::default();
        c.insert(flow(1, 0, &[peer(1), peer(2)]));
        c.insert(flow(2, 0, &[Dep::LocalPorts]));
        assert_eq!(c.invalidate(&[peer(1), peer(2), Dep::LocalPorts]).len(), 2);
        assert_eq!(c.len(), 0);
        assert_eq!(c.dependents(&peer(1)), 0);
    }

    #[test]
    fn replacing_a_key_drops_the_old_deps() {
        let mut c = FlowCache::default();
        c.insert(flow(1, 0, &[peer(1)]));
        let old = c.insert(flow(1, 5, &[peer(2)])).unwrap();
        assert_eq!(old.deps, [peer(1)].into_iter().collect());
        assert_eq!(c.dependents(&peer(1)), 0);
        assert_eq!(c.next_idle_expiry(10), Some(15));
    }

    #[test]
    fn idle_flows_expire_least_recently_used_first() {
        let mut c = FlowCache::default();
        c.insert(flow(1, 0, &[]));
        c.insert(flow(2, 5, &[]));
        c.insert(flow(3, 7, &[]));
        c.touch(&key(1), 20);
        c.touch(&key(3), 3); // never backwards
        assert_eq!(c.next_idle_expiry(10), Some(15));
        let gone: Vec<MatchKey> = c.expire_idle(17, 10).into_iter().map(|e| e.key).collect();
        assert_eq!(gone, vec![key(2), key(3)]);
        assert_eq!(c.get(&key(1)).unwrap().used, 20);
        assert_eq!(c.next_idle_expiry(10), Some(30));
    }
}
