//! Address arithmetic: IPv4 addresses as integers, half-open ranges, and
//! the free runs left in owned space.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Addresses `[start, end)`, as integers (`end` may be 2³²).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Range {
    /// The first address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
}

impl Range {
    /// `[start, end)`; an inverted range is empty.
    pub fn new(start: u64, end: u64) -> Range {
        Range { start, end: end.max(start) }
    }

    /// The addresses of a CIDR, all of them.
    pub fn of_net(net: Ipv4Net) -> Range {
        let start = u64::from(u32::from(net.network()));
        Range::new(start, start + (1u64 << (32 - net.prefix_len())))
    }

    /// How many addresses.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it holds no address.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `a` is inside.
    pub fn contains(&self, a: u64) -> bool {
        self.start <= a && a < self.end
    }

    /// Whether `r` is inside, whole.
    pub fn covers(&self, r: Range) -> bool {
        self.start <= r.start && r.end <= self.end
    }

    /// The common part.
    pub fn intersect(&self, r: Range) -> Range {
        Range::new(self.start.max(r.start), self.end.min(r.end))
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "{}-", addr(self.start));
        }
        write!(f, "{}-{}", addr(self.start), addr(self.end - 1))
    }
}

/// The address of integer `a` (which must be below 2³²; higher bits are cut).
pub fn addr(a: u64) -> Ipv4Addr {
    Ipv4Addr::from(a as u32)
}

/// The integer of an address.
pub fn int(a: Ipv4Addr) -> u64 {
    u64::from(u32::from(a))
}

/// The addresses of `subnet` a container may get: all but the network and
/// broadcast addresses (for subnets of more than two addresses).
pub fn usable(subnet: Ipv4Net) -> Range {
    let r = Range::of_net(subnet);
    if r.len() > 2 {
        Range::new(r.start + 1, r.end - 1)
    } else {
        r
    }
}

/// A sorted set of used addresses: a set, or a map keyed by address.
pub trait Used {
    /// The used addresses inside `r`, in order.
    fn in_range(&self, r: Range) -> impl DoubleEndedIterator<Item = u64> + '_;
}

impl Used for BTreeSet<u64> {
    fn in_range(&self, r: Range) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.range(r.start..r.end.max(r.start)).copied()
    }
}

impl<V> Used for std::collections::BTreeMap<u64, V> {
    fn in_range(&self, r: Range) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.range(r.start..r.end.max(r.start)).map(|(a, _)| *a)
    }
}

/// A free address of `within`: the one after the highest used one when
/// that is inside (O(log n), the usual case as addresses are given out in
/// order), else the first gap.
pub fn first_free(within: Range, used: &impl Used) -> Option<u64> {
    if within.is_empty() {
        return None;
    }
    match used.in_range(within).next_back() {
        None => Some(within.start),
        Some(last) if last + 1 < within.end => Some(last + 1),
        Some(_) => free_runs(within, used).first().map(|r| r.start),
    }
}

/// The free runs of `within` outside `used`, in order.
pub fn free_runs(within: Range, used: &impl Used) -> Vec<Range> {
    let mut out = Vec::new();
    let mut at = within.start;
    for u in used.in_range(within) {
        if u > at {
            out.push(Range::new(at, u));
        }
        at = u + 1;
    }
    if at < within.end {
        out.push(Range::new(at, within.end));
    }
    out
}

/// How many of `within` are free.
pub fn free_count(within: Range, used: &impl Used) -> u64 {
    within.len() - used.in_range(within).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_runs() {
        let net: Ipv4Net = "10.32.0.0/12".parse().unwrap();
        let r = Range::of_net(net);
        assert_eq!(r.len(), 1 << 20);
        assert_eq!(r.to_string(), "10.32.0.0-10.47.255.255");
        let u = usable("10.32.0.0/30".parse().unwrap());
        assert_eq!((addr(u.start), u.len()), (Ipv4Addr::new(10, 32, 0, 1), 2));
        assert_eq!(usable("10.0.0.8/31".parse().unwrap()).len(), 2);
        let all = Range::of_net("0.0.0.0/0".parse().unwrap());
        assert_eq!(all.end, 1 << 32);
        let used: BTreeSet<u64> = [10, 11, 15, 19].into_iter().collect();
        assert_eq!(free_runs(Range::new(10, 20), &used), vec![Range::new(12, 15), Range::new(16, 19)]);
        assert_eq!(free_count(Range::new(10, 20), &used), 6);
        assert_eq!(first_free(Range::new(10, 20), &used), Some(12));
        assert_eq!(first_free(Range::new(10, 30), &used), Some(20));
        assert_eq!(first_free(Range::new(0, 5), &used), Some(0));
        assert_eq!(first_free(Range::new(10, 12), &used), None);
        assert_eq!(first_free(Range::new(5, 5), &used), None);
        assert_eq!(free_runs(Range::new(0, 5), &used), vec![Range::new(0, 5)]);
        assert_eq!(Range::new(5, 3).len(), 0);
        assert_eq!(Range::new(0, 10).intersect(Range::new(5, 20)), Range::new(5, 10));
        assert!(Range::new(0, 10).intersect(Range::new(15, 20)).is_empty());
    }
}
