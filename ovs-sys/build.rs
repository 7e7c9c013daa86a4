//! bindgen over the kernel's UAPI header `linux/openvswitch.h` (from linux-libc-dev).
use std::{env, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindgen::Builder::default()
        .header("wrapper.h")
        // OVS_*_ATTR_MAX, OVSP_LOCAL and friends are macros over enum values.
        .clang_macro_fallback()
        .generate_cstr(true)
        .allowlist_item("ovs_.*")
        .allowlist_item("OVS_.*")
        .allowlist_item("OVSP_.*")
        // Constants keep their C names: OVS_KEY_ATTR_IN_PORT, not ovs_key_attr_OVS_KEY_ATTR_IN_PORT.
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_eq(true)
        .generate()
        .expect("bindgen failed on linux/openvswitch.h (is linux-libc-dev installed?)")
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs");
}
