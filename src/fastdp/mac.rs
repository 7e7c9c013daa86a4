//! The MAC table: where each learned MAC lives, and when it was last seen.

use std::collections::{BTreeSet, HashMap};

use super::op::Location;
use crate::odp::key::Mac;

/// One learned MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacEntry {
    /// Where it lives.
    pub location: Location,
    /// When it was last seen, in the caller's milliseconds.
    pub seen: u64,
}

/// What learning a MAC did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Learned {
    /// It was unknown.
    New,
    /// It was already there; only its time moved.
    Refreshed,
    /// It lived somewhere else.
    Moved(Location),
}

/// Learned MACs with ageing. Expiry is by `seen + timeout <= now`.
#[derive(Clone, Debug)]
pub(crate) struct MacTable {
    entries: HashMap<Mac, MacEntry>,
    by_seen: BTreeSet<(u64, Mac)>,
    timeout: u64,
}

impl MacTable {
    pub(crate) fn new(timeout: u64) -> MacTable {
        MacTable { entries: HashMap::new(), by_seen: BTreeSet::new(), timeout }
    }

    pub(crate) fn get(&self, mac: Mac) -> Option<Location> {
        self.entries.get(&mac).map(|e| e.location)
    }

    pub(crate) fn entry(&self, mac: Mac) -> Option<&MacEntry> {
        self.entries.get(&mac)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Mac, &MacEntry)> + '_ {
        self.entries.iter().map(|(m, e)| (*m, e))
    }

    /// Records that `mac` was seen at `location` at `now`.
    pub(crate) fn learn(&mut self, now: u64, mac: Mac, location: Location) -> Learned {
        let old = self.put(mac, MacEntry { location, seen: now });
        match old {
            None => Learned::New,
            Some(o) if o.location == location => Learned::Refreshed,
            Some(o) => Learned::Moved(o.location),
        }
    }

    /// Moves `mac`'s last-seen time forward to `seen`, if it still lives at
    /// `location` (a flow keyed on it as source was used there). Returns
    /// whether it did.
    pub(crate) fn refresh(&mut self, mac: Mac, location: Location, seen: u64) -> bool {
        match self.entries.get(&mac) {
            Some(e) if e.location == location && e.seen < seen => {
                self.put(mac, MacEntry { location, seen });
                true
            }
            _ => false,
        }
    }

    pub(crate) fn remove(&mut self, mac: Mac) -> Option<MacEntry> {
        let e = self.entries.remove(&mac)?;
        self.by_seen.remove(&(e.seen, mac));
        Some(e)
    }

    /// Forgets every MAC whose location matches; returns them, sorted.
    pub(crate) fn remove_where(&mut self, mut at: impl FnMut(Location) -> bool) -> Vec<Mac> {
        let mut gone: Vec<Mac> = self.entries.iter().filter(|(_, e)| at(e.location)).map(|(m, _)| *m).collect();
        gone.sort_unstable();
        for m in &gone {
            self.remove(*m);
        }
        gone
    }

    /// Forgets the MACs unseen for the timeout; returns them, oldest first.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<Mac> {
        let mut gone = Vec::new();
        while let Some(&(seen, mac)) = self.by_seen.first() {
            if seen.saturating_add(self.timeout) > now {
                break;
            }
            self.remove(mac);
            gone.push(mac);
        }
        gone
    }

    /// When the next MAC expires.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        self.by_seen.first().map(|(seen, _)| seen.saturating_add(self.timeout))
    }

    fn put(&mut self, mac: Mac, e: MacEntry) -> Option<MacEntry> {
        let old = self.entries.insert(mac, e);
        if let Some(o) = old {
            self.by_seen.remove(&(o.seen, mac));
        }
        self.by_seen.insert((e.seen, mac));
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::peer::PeerName;

    fn mac(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn learning_reports_new_refresh_and_move() {
        let mut t = MacTable::new(100);
        assert_eq!(t.learn(0, mac(1), Location::Local(1)), Learned::New);
        assert_eq!(t.learn(5, mac(1), Location::Local(1)), Learned::Refreshed);
        let peer = Location::Remote(PeerName::from_u64(7));
        assert_eq!(t.learn(6, mac(1), peer), Learned::Moved(Location::Local(1)));
        assert_eq!(t.get(mac(1)), Some(peer));
        assert_eq!(t.entry(mac(1)).unwrap().seen, 6);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn entries_age_out_at_exactly_the_timeout() {
        let mut t = MacTable::new(100);
        t.learn(0, mac(1), Location::Local(1));
        t.learn(50, mac(2), Location::Local(2));
        assert_eq!(t.next_expiry(), Some(100));
        assert!(t.expire(99).is_empty());
        assert_eq!(t.expire(100), vec![mac(1)]);
        assert_eq!(t.next_expiry(), Some(150));
        // Seeing it again pushes the expiry back.
        t.learn(120, mac(2), Location::Local(2));
        assert!(t.expire(150).is_empty());
        assert_eq!(t.expire(220), vec![mac(2)]);
        assert_eq!(t.next_expiry(), None);
    }

    #[test]
    fn refresh_only_where_it_lives_and_only_forward() {
        let mut t = MacTable::new(100);
        t.learn(10, mac(1), Location::Local(1));
        assert!(!t.refresh(mac(1), Location::Local(2), 50));
        assert!(!t.refresh(mac(1), Location::Local(1), 5));
        assert!(t.refresh(mac(1), Location::Local(1), 50));
        assert_eq!(t.next_expiry(), Some(150));
        assert!(!t.refresh(mac(9), Location::Local(1), 50));
    }

    #[test]
    fn remove_where_takes_a_port_or_a_peer() {
        let mut t = MacTable::new(100);
        let p = PeerName::from_u64(3);
        t.learn(0, mac(1), Location::Local(1));
        t.learn(0, mac(2), Location::Remote(p));
        t.learn(0, mac(3), Location::Remote(p));
        assert_eq!(t.remove_where(|l| l == Location::Remote(p)), vec![mac(2), mac(3)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(1000), vec![mac(1)]);
    }
}
