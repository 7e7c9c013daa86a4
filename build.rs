//! prost code generation for the control-plane messages in `proto/`:
//! every `proto/*.proto` file, each package into its own module.
fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    let mut files: Vec<_> = std::fs::read_dir("proto")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    prost_build::compile_protos(&files, &["proto"])
}
