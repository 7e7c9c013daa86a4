//! JSON files in the state directory: read leniently, written atomically.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

/// Reads `dir/name`. A missing file is the default value; an unreadable or
/// malformed one is reported (naming `what`) and treated as the default, so
/// the daemon still starts.
pub fn load<T: DeserializeOwned + Default>(dir: &Path, name: &str, what: &str) -> T {
    let p = dir.join(name);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            warn!(file = %p.display(), error = %e, "ignoring unreadable {what}; fix or remove the file");
            T::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => T::default(),
        Err(e) => {
            warn!(file = %p.display(), error = %e, "cannot read the {what}");
            T::default()
        }
    }
}

/// Writes `dir/name`: a temporary file, then a rename.
pub fn save<T: Serialize + ?Sized>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let p = dir.join(name);
    let tmp = p.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&tmp, &p)
}
