//! JSON files in the state directory: read leniently, written atomically.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

/// Reads `dir/name`. A missing file is the default value. A malformed one
/// is never lost: it is moved aside to `name.corrupt` (replacing an older
/// one) and reported as an error naming both files and what to do; the
/// daemon then starts without it. An unreadable one is reported and
/// treated as the default.
pub fn load<T: DeserializeOwned + Default>(dir: &Path, name: &str, what: &str) -> T {
    let p = dir.join(name);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            let aside = dir.join(format!("{name}.corrupt"));
            match std::fs::rename(&p, &aside) {
                Ok(()) => tracing::error!(
                    file = %p.display(), kept_as = %aside.display(), error = %e,
                    "the {what} is corrupt: kept aside, starting without it; fix it and move it back while weaver is \
                     stopped, or delete it"
                ),
                Err(re) => tracing::error!(
                    file = %p.display(), error = %e, rename_error = %re,
                    "the {what} is corrupt and could not be kept aside; starting without it"
                ),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_files_are_kept_aside_not_lost() {
        let dir = std::env::temp_dir().join(format!("weaver-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        save(&dir, "x.json", &vec![1u32, 2]).unwrap();
        assert_eq!(load::<Vec<u32>>(&dir, "x.json", "list"), vec![1, 2]);
        std::fs::write(dir.join("x.json"), b"[1, 2").unwrap();
        assert_eq!(load::<Vec<u32>>(&dir, "x.json", "list"), Vec::<u32>::new());
        assert_eq!(std::fs::read(dir.join("x.json.corrupt")).unwrap(), b"[1, 2");
        assert!(!dir.join("x.json").exists());
        assert_eq!(load::<Vec<u32>>(&dir, "missing.json", "list"), Vec::<u32>::new());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
