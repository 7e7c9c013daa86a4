//! prost code generation for the control-plane messages in `proto/`.
fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::compile_protos(&["proto/weaver.proto"], &["proto"])
}
