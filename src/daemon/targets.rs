//! The persisted direct peers (`weavectl connect`), a JSON list in the
//! state directory, written atomically.

use std::path::Path;

const FILE: &str = "peers.json";

/// The persisted targets; a missing file is an empty list, an unreadable
/// one is reported and treated as empty (the command-line peers still apply).
pub fn load(dir: &Path) -> Vec<String> {
    super::store::load(dir, FILE, "peer list")
}

/// Writes the targets atomically.
pub fn save(dir: &Path, targets: &[String]) -> std::io::Result<()> {
    super::store::save(dir, FILE, targets)
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
        // A garbled list of an older version (a JSON file): kept aside, not used.
        let old = std::env::temp_dir().join(format!("weaver-targets-old-{}", std::process::id()));
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join(FILE), "not json").unwrap();
        assert!(load(&old).is_empty());
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(old);
    }
}
