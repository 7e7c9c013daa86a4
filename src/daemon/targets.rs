//! The persisted direct peers (`weavectl connect`), a JSON list in the
//! state directory, written atomically.

use std::path::{Path, PathBuf};

use tracing::warn;

fn path(dir: &Path) -> PathBuf {
    dir.join("peers.json")
}

/// The persisted targets; a missing file is an empty list, an unreadable
/// one is reported and treated as empty (the command-line peers still apply).
pub fn load(dir: &Path) -> Vec<String> {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            warn!(file = %p.display(), error = %e, "ignoring unreadable peer list; fix or remove the file");
            Vec::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            warn!(file = %p.display(), error = %e, "cannot read the peer list");
            Vec::new()
        }
    }
}

/// Writes the targets: a temporary file, then a rename.
pub fn save(dir: &Path, targets: &[String]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let p = path(dir);
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(targets)?)?;
    std::fs::rename(&tmp, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let dir = std::env::temp_dir().join(format!("weaver-targets-{}", std::process::id()));
        assert!(load(&dir).is_empty());
        save(&dir, &["10.0.0.1:6783".to_string()]).unwrap();
        assert_eq!(load(&dir), vec!["10.0.0.1:6783".to_string()]);
        std::fs::write(path(&dir), "not json").unwrap();
        assert!(load(&dir).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
