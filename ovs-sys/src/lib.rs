//! Raw bindings to the kernel's Open vSwitch datapath UAPI, `linux/openvswitch.h`.
//!
//! This crate is the single source of the numbers (family names, commands,
//! attribute, key and action types) and fixed struct layouts (`ovs_header`,
//! `ovs_key_*`, `ovs_flow_stats`, ...). Enum constants come out of bindgen as
//! `c_uint`; callers cast them to the width their wire field uses.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, dead_code)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_are_the_kernels() {
        assert_eq!(OVS_DATAPATH_FAMILY.to_str().unwrap(), "ovs_datapath");
        assert_eq!(OVS_VPORT_FAMILY.to_str().unwrap(), "ovs_vport");
        assert_eq!(OVS_FLOW_FAMILY.to_str().unwrap(), "ovs_flow");
        assert_eq!(OVS_PACKET_FAMILY.to_str().unwrap(), "ovs_packet");
        assert_eq!(OVS_VPORT_MCGROUP.to_str().unwrap(), "ovs_vport");
    }

    #[test]
    fn fixed_struct_sizes_match_the_abi() {
        assert_eq!(std::mem::size_of::<ovs_header>(), 4);
        assert_eq!(std::mem::size_of::<ovs_key_ethernet>(), 12);
        assert_eq!(std::mem::size_of::<ovs_key_ipv4>(), 12);
        assert_eq!(std::mem::size_of::<ovs_key_ipv6>(), 40);
        assert_eq!(std::mem::size_of::<ovs_key_arp>(), 24);
        assert_eq!(std::mem::size_of::<ovs_flow_stats>(), 16);
        assert_eq!(std::mem::size_of::<ovs_dp_stats>(), 32);
        assert_eq!(OVSP_LOCAL, 0);
    }
}
