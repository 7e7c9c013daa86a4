//! The read-only view of the live records that queries are answered from:
//! name → addresses and address → names. [`super::Records`] keeps one up
//! to date; the daemon publishes clones of it to the DNS server.
//!
//! Several records may give the same (name, address) pair (two containers
//! of one peer, or of two peers, under one name with one address, while one
//! replaces the other), so each pair is counted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hickory_proto::rr::Name;

/// The live (name, address) pairs, indexed both ways. Names are kept in
/// their canonical form: lowercase ASCII, fully qualified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    names: BTreeMap<String, BTreeMap<Ipv4Addr, u32>>,
    addrs: BTreeMap<Ipv4Addr, BTreeMap<String, u32>>,
}

/// The canonical text of a name: lowercase ASCII with the final dot.
pub fn canonical(name: &Name) -> String {
    let mut n = name.to_lowercase();
    n.set_fqdn(true);
    n.to_ascii()
}

impl Zone {
    /// An empty zone.
    pub fn new() -> Self {
        Zone::default()
    }

    /// Counts one more record for (`name`, `addr`); `name` is canonical.
    pub(crate) fn insert(&mut self, name: &str, addr: Ipv4Addr) {
        *self.names.entry(name.to_owned()).or_default().entry(addr).or_default() += 1;
        *self.addrs.entry(addr).or_default().entry(name.to_owned()).or_default() += 1;
    }

    /// Counts one record less for (`name`, `addr`).
    pub(crate) fn remove(&mut self, name: &str, addr: Ipv4Addr) {
        let name = name.to_owned();
        decrement(&mut self.names, &name, &addr);
        decrement(&mut self.addrs, &addr, &name);
    }

    /// The addresses of `name` (any case), in increasing order.
    pub fn lookup(&self, name: &Name) -> Vec<Ipv4Addr> {
        self.names.get(&canonical(name)).map(|m| m.keys().copied().collect()).unwrap_or_default()
    }

    /// The names of `addr`, in canonical order.
    pub fn reverse(&self, addr: Ipv4Addr) -> Vec<Name> {
        self.addrs.get(&addr).map(|m| m.keys().filter_map(|n| Name::from_ascii(n).ok()).collect()).unwrap_or_default()
    }

    /// Whether `name` exists: it has addresses, or a name with addresses is
    /// below it (an "empty non-terminal", which is not NXDOMAIN).
    pub fn contains(&self, name: &Name) -> bool {
        let key = canonical(name);
        if self.names.contains_key(&key) {
            return true;
        }
        let suffix = if key == "." { key } else { format!(".{key}") };
        self.names.keys().any(|n| n.ends_with(&suffix))
    }

    /// How many distinct names have addresses.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no name has an address.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

fn decrement<K: Ord, V: Ord>(map: &mut BTreeMap<K, BTreeMap<V, u32>>, outer: &K, inner: &V) {
    let Some(m) = map.get_mut(outer) else { return };
    if let Some(c) = m.get_mut(inner) {
        *c = c.saturating_sub(1);
        if *c == 0 {
            m.remove(inner);
        }
    }
    if m.is_empty() {
        map.remove(outer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    #[test]
    fn pairs_are_counted_and_indexed_both_ways() {
        let mut z = Zone::new();
        let a = Ipv4Addr::new(10, 0, 0, 1);
        z.insert("web.weave.local.", a);
        z.insert("web.weave.local.", a);
        z.insert("db.weave.local.", a);
        assert_eq!(z.lookup(&n("WEB.weave.local.")), vec![a]);
        assert_eq!(z.lookup(&n("web.weave.local")), vec![a]);
        assert_eq!(z.reverse(a), vec![n("db.weave.local."), n("web.weave.local.")]);
        z.remove("web.weave.local.", a);
        assert_eq!(z.lookup(&n("web.weave.local.")), vec![a]);
        z.remove("web.weave.local.", a);
        assert!(z.lookup(&n("web.weave.local.")).is_empty());
        assert_eq!(z.reverse(a), vec![n("db.weave.local.")]);
        z.remove("db.weave.local.", a);
        z.remove("db.weave.local.", a);
        assert!(z.is_empty());
        assert_eq!(z, Zone::new());
    }

    #[test]
    fn empty_non_terminals_exist() {
        let mut z = Zone::new();
        z.insert("a.b.weave.local.", Ipv4Addr::new(10, 0, 0, 1));
        assert!(z.contains(&n("a.b.weave.local.")));
        assert!(z.contains(&n("B.weave.local.")));
        assert!(z.contains(&n("weave.local.")));
        assert!(!z.contains(&n("c.weave.local.")));
        assert!(!z.contains(&n("xb.weave.local.")));
    }
}
