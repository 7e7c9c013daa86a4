//! The attached containers, a JSON list in the state directory, written
//! atomically after every attach and detach. A restarted daemon (after a
//! crash or a stop) takes back the containers whose veths still exist.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

/// One attached container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// As given to `weavectl attach`: a netns name, PID or path.
    pub target: String,
    /// The host end of its veth.
    pub host_ifname: String,
    pub cidrs: Vec<String>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join("attachments.json")
}

/// The recorded attachments; a missing file is an empty list, an unreadable
/// one is reported and treated as empty.
pub fn load(dir: &Path) -> Vec<Saved> {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            warn!(file = %p.display(), error = %e, "ignoring unreadable attachment list");
            Vec::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            warn!(file = %p.display(), error = %e, "cannot read the attachment list");
            Vec::new()
        }
    }
}

/// Writes the list: a temporary file, then a rename.
pub fn save(dir: &Path, list: &[Saved]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let p = path(dir);
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(list)?)?;
    std::fs::rename(&tmp, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let dir = std::env::temp_dir().join(format!("weaver-attach-{}", std::process::id()));
        assert!(load(&dir).is_empty());
        let l = vec![Saved { target: "c1".into(), host_ifname: "vethwe1".into(), cidrs: vec!["10.0.0.1/24".into()] }];
        save(&dir, &l).unwrap();
        assert_eq!(load(&dir), l);
        std::fs::write(path(&dir), "[{").unwrap();
        assert!(load(&dir).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }
}
