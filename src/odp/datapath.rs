//! The `ovs_datapath` family: a datapath and its statistics.

use ovs_sys as sys;
use serde::{Deserialize, Serialize};

use super::nla::{NlaIter, NlaWriter, RawNla, Result, WireError};

const NAME: u16 = sys::OVS_DP_ATTR_NAME as u16;
const UPCALL_PID: u16 = sys::OVS_DP_ATTR_UPCALL_PID as u16;
const STATS: u16 = sys::OVS_DP_ATTR_STATS as u16;
const MEGAFLOW_STATS: u16 = sys::OVS_DP_ATTR_MEGAFLOW_STATS as u16;
const USER_FEATURES: u16 = sys::OVS_DP_ATTR_USER_FEATURES as u16;
const MASKS_CACHE_SIZE: u16 = sys::OVS_DP_ATTR_MASKS_CACHE_SIZE as u16;
const PER_CPU_PIDS: u16 = sys::OVS_DP_ATTR_PER_CPU_PIDS as u16;
const IFINDEX: u16 = sys::OVS_DP_ATTR_IFINDEX as u16;

/// `OVS_DP_F_*` user features.
pub const F_UNALIGNED: u32 = sys::OVS_DP_F_UNALIGNED;
pub const F_VPORT_PIDS: u32 = sys::OVS_DP_F_VPORT_PIDS;
pub const F_TC_RECIRC_SHARING: u32 = sys::OVS_DP_F_TC_RECIRC_SHARING;
pub const F_DISPATCH_UPCALL_PER_CPU: u32 = sys::OVS_DP_F_DISPATCH_UPCALL_PER_CPU;

/// `struct ovs_dp_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpStats {
    pub hit: u64,
    pub missed: u64,
    pub lost: u64,
    pub flows: u64,
}

/// `struct ovs_dp_megaflow_stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MegaflowStats {
    pub mask_hit: u64,
    pub masks: u32,
    pub cache_hit: u64,
}

/// A datapath as the kernel reports it, or as a request describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datapath {
    pub dp_ifindex: i32,
    pub name: Option<String>,
    pub upcall_pid: Option<u32>,
    pub stats: Option<DpStats>,
    pub megaflow_stats: Option<MegaflowStats>,
    pub user_features: Option<u32>,
    pub masks_cache_size: Option<u32>,
    pub per_cpu_pids: Option<Vec<u32>>,
    pub ifindex: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other: Vec<RawNla>,
}

const WHAT: &str = "datapath";

impl Datapath {
    pub fn parse(dp_ifindex: i32, attrs: &[u8]) -> Result<Self> {
        let mut d = Datapath { dp_ifindex, ..Default::default() };
        for a in NlaIter::new(attrs) {
            let a = a?;
            match a.kind {
                NAME => d.name = Some(a.string(WHAT)?),
                UPCALL_PID => d.upcall_pid = Some(a.u32(WHAT)?),
                STATS => {
                    let [hit, missed, lost, flows] = a.u64_fields::<4>(WHAT)?;
                    d.stats = Some(DpStats { hit, missed, lost, flows });
                }
                MEGAFLOW_STATS => {
                    // u64 n_mask_hit; u32 n_masks; u32 pad0; u64 n_cache_hit; u64 pad1
                    let b = a.fixed::<32>(WHAT)?;
                    let u64_at = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
                    let masks = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                    d.megaflow_stats = Some(MegaflowStats { mask_hit: u64_at(0), masks, cache_hit: u64_at(16) });
                }
                USER_FEATURES => d.user_features = Some(a.u32(WHAT)?),
                MASKS_CACHE_SIZE => d.masks_cache_size = Some(a.u32(WHAT)?),
                PER_CPU_PIDS => d.per_cpu_pids = Some(a.u32_array(WHAT)?),
                IFINDEX => d.ifindex = Some(a.u32(WHAT)?),
                _ => d.other.push(a.to_raw()),
            }
        }
        Ok(d)
    }

    /// The name, which every reply carries.
    pub fn require_name(&self) -> Result<&str> {
        self.name.as_deref().ok_or(WireError::Missing { what: WHAT, kind: NAME })
    }

    pub fn emit_attrs(&self) -> Vec<u8> {
        let mut w = NlaWriter::new();
        if let Some(n) = &self.name {
            w.put_str(NAME, n);
        }
        if let Some(p) = self.upcall_pid {
            w.put_u32(UPCALL_PID, p);
        }
        if let Some(s) = self.stats {
            w.put_u64_fields(STATS, &[s.hit, s.missed, s.lost, s.flows]);
        }
        if let Some(m) = self.megaflow_stats {
            let mut p = m.mask_hit.to_ne_bytes().to_vec();
            p.extend(m.masks.to_ne_bytes());
            p.extend(0u32.to_ne_bytes());
            p.extend(m.cache_hit.to_ne_bytes());
            p.extend(0u64.to_ne_bytes());
            w.put(MEGAFLOW_STATS, &p);
        }
        if let Some(f) = self.user_features {
            w.put_u32(USER_FEATURES, f);
        }
        if let Some(s) = self.masks_cache_size {
            w.put_u32(MASKS_CACHE_SIZE, s);
        }
        if let Some(p) = &self.per_cpu_pids {
            w.put_u32_array(PER_CPU_PIDS, p);
        }
        if let Some(i) = self.ifindex {
            w.put_u32(IFINDEX, i);
        }
        for o in &self.other {
            o.emit(&mut w);
        }
        w.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn datapath() -> impl Strategy<Value = Datapath> {
        (
            (any::<i32>(), proptest::option::of("[a-z][a-z0-9-]{0,14}"), any::<Option<u32>>()),
            proptest::option::of(any::<[u64; 4]>()),
            proptest::option::of((any::<u64>(), any::<u32>(), any::<u64>())),
            (
                any::<Option<u32>>(),
                any::<Option<u32>>(),
                proptest::option::of(proptest::collection::vec(any::<u32>(), 0..8)),
                any::<Option<u32>>(),
            ),
        )
            .prop_map(|((dp_ifindex, name, upcall_pid), s, m, (uf, mcs, pcp, ifi))| Datapath {
                dp_ifindex,
                name,
                upcall_pid,
                stats: s.map(|[hit, missed, lost, flows]| DpStats { hit, missed, lost, flows }),
                megaflow_stats: m.map(|(mask_hit, masks, cache_hit)| MegaflowStats { mask_hit, masks, cache_hit }),
                user_features: uf,
                masks_cache_size: mcs,
                per_cpu_pids: pcp,
                ifindex: ifi,
                other: vec![],
            })
    }

    proptest! {
        #[test]
        fn round_trips(d in datapath()) {
            prop_assert_eq!(Datapath::parse(d.dp_ifindex, &d.emit_attrs()).unwrap(), d);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Datapath::parse(0, &b);
        }
    }

    #[test]
    fn unknown_attributes_survive() {
        let mut w = NlaWriter::new();
        w.put_str(NAME, "weave");
        w.put_u32(99, 5);
        let d = Datapath::parse(3, w.as_bytes()).unwrap();
        assert_eq!(d.other.len(), 1);
        assert_eq!(d.emit_attrs(), w.into_bytes());
    }
}
