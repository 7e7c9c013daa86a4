//! The daemon's persistent state: one embedded redb database,
//! `weaver.redb` in the state directory (default `/var/lib/weave`).
//!
//! It holds one JSON value per key: the peer name, the direct peers, the
//! IPAM state, the attached containers, the exposed addresses. Each write
//! is one redb transaction: atomic and durable, so a crash leaves either
//! the old value or the new one, and a store left by a crash opens cleanly
//! (redb repairs itself on open).
//!
//! Nothing is silently discarded:
//! - a store that cannot be opened (corrupt, or not a redb file) stops the
//!   start with an error naming the file and what to do ([`open`]);
//! - a value that does not parse is moved aside under `KEY.corrupt` and
//!   reported, and the daemon starts without it ([`load`]), except where
//!   losing it would do harm: the caller then uses [`load_strict`].
//!
//! Values written by versions that kept JSON files (`NAME.json` in the
//! state directory) are taken over on first read, and the file is renamed
//! `NAME.json.migrated`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{error, info};

/// The database file, in the state directory.
pub const FILE: &str = "weaver.redb";

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened or created.
    #[error(
        "cannot open the state store {path}: {reason}. If it is corrupt, stop weaver, move it aside (it holds the \
         peer name, peers, IPAM state, attachments and exposes) and start again: a new store is made, and IPAM \
         must then be recovered as after a lost peer (weavectl rmpeer on another peer)"
    )]
    Open {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A read or write failed.
    #[error("state store {path}: {op} {key}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What was being done.
        op: &'static str,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A value that does not parse.
    #[error("state store {path}: the {what} ({key}) is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What it holds.
        what: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// One open database per state directory in this process (redb allows one).
fn registry() -> &'static Mutex<BTreeMap<PathBuf, Arc<Database>>> {
    static DBS: OnceLock<Mutex<BTreeMap<PathBuf, Arc<Database>>>> = OnceLock::new();
    DBS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Opens (or creates) the store of `dir`. Called at start, so that a bad
/// store stops the daemon before anything else runs.
pub fn open(dir: &Path) -> Result<Arc<Database>, StoreError> {
    let path = dir.join(FILE);
    let mut dbs = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(db) = dbs.get(dir) {
        return Ok(db.clone());
    }
    let fail = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let db = Arc::new(Database::create(&path).map_err(|e| fail(e.to_string()))?);
    dbs.insert(dir.to_path_buf(), db.clone());
    Ok(db)
}

fn io(dir: &Path, op: &'static str, key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io { path: dir.join(FILE).display().to_string(), op, key: key.into(), reason: e.to_string() }
}

fn get_raw(dir: &Path, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let db = open(dir)?;
    let tx = db.begin_read().map_err(|e| io(dir, "read", key, e))?;
    let table = match tx.open_table(TABLE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(io(dir, "read", key, e)),
    };
    Ok(table.get(key).map_err(|e| io(dir, "read", key, e))?.map(|v| v.value().to_vec()))
}

fn put_raw(dir: &Path, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
    let db = open(dir)?;
    let tx = db.begin_write().map_err(|e| io(dir, "write", key, e))?;
    {
        let mut table = tx.open_table(TABLE).map_err(|e| io(dir, "write", key, e))?;
        match value {
            Some(v) => {
                table.insert(key, v).map_err(|e| io(dir, "write", key, e))?;
            }
            None => {
                table.remove(key).map_err(|e| io(dir, "remove", key, e))?;
            }
        }
    }
    tx.commit().map_err(|e| io(dir, "commit", key, e))
}

/// The raw value of `key`, taking over a JSON file of an older version.
fn get_or_migrate(dir: &Path, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    if let Some(v) = get_raw(dir, key)? {
        return Ok(Some(v));
    }
    let old = dir.join(key);
    match std::fs::read(&old) {
        Ok(b) => {
            put_raw(dir, key, Some(&b))?;
            let done = dir.join(format!("{key}.migrated"));
            if std::fs::rename(&old, &done).is_ok() {
                info!(file = %old.display(), "taken over into the state store");
            }
            Ok(Some(b))
        }
        Err(_) => Ok(None),
    }
}

/// Reads `key`: `None` when absent; an error when it does not parse (the
/// value stays where it is).
pub fn load_strict<T: DeserializeOwned>(dir: &Path, key: &str, what: &str) -> Result<Option<T>, StoreError> {
    let Some(b) = get_or_migrate(dir, key)? else { return Ok(None) };
    serde_json::from_slice(&b).map(Some).map_err(|e| StoreError::Corrupt {
        path: dir.join(FILE).display().to_string(),
        what: what.into(),
        key: key.into(),
        reason: e.to_string(),
    })
}

/// Reads `key`, leniently: absent is the default; a value that does not
/// parse is moved aside to `KEY.corrupt`, reported as an error naming it,
/// and the default is used; a store that cannot be read is reported and
/// the default is used.
pub fn load<T: DeserializeOwned + Default>(dir: &Path, key: &str, what: &str) -> T {
    match load_strict(dir, key, what) {
        Ok(v) => v.unwrap_or_default(),
        Err(e @ StoreError::Corrupt { .. }) => {
            let aside = format!("{key}.corrupt");
            let moved = get_raw(dir, key)
                .and_then(|b| put_raw(dir, &aside, b.as_deref()))
                .and_then(|()| put_raw(dir, key, None));
            match moved {
                Ok(()) => {
                    error!(error = %e, kept_as = %aside, "starting without it; the value is kept aside in the store")
                }
                Err(m) => error!(error = %e, move_error = %m, "starting without it"),
            }
            T::default()
        }
        Err(e) => {
            error!(error = %e, "starting without the {what}");
            T::default()
        }
    }
}

/// Writes `key`, atomically.
pub fn save<T: Serialize + ?Sized>(dir: &Path, key: &str, value: &T) -> std::io::Result<()> {
    let b = serde_json::to_vec(value)?;
    put_raw(dir, key, Some(&b)).map_err(std::io::Error::other)
}

/// Removes `key` (and any JSON file of an older version).
pub fn remove(dir: &Path, key: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(dir.join(key));
    put_raw(dir, key, None).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weaver-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn values_round_trip_and_corrupt_ones_are_kept_aside() {
        let d = dir("rt");
        save(&d, "x.json", &vec![1u32, 2]).unwrap();
        assert_eq!(load::<Vec<u32>>(&d, "x.json", "list"), vec![1, 2]);
        put_raw(&d, "x.json", Some(b"[1, 2")).unwrap();
        assert!(matches!(load_strict::<Vec<u32>>(&d, "x.json", "list"), Err(StoreError::Corrupt { .. })));
        assert_eq!(load::<Vec<u32>>(&d, "x.json", "list"), Vec::<u32>::new());
        assert_eq!(get_raw(&d, "x.json.corrupt").unwrap().as_deref(), Some(&b"[1, 2"[..]));
        assert_eq!(get_raw(&d, "x.json").unwrap(), None);
        assert_eq!(load::<Vec<u32>>(&d, "missing", "list"), Vec::<u32>::new());
        save(&d, "y", "v").unwrap();
        remove(&d, "y").unwrap();
        assert_eq!(load_strict::<String>(&d, "y", "y").unwrap(), None);
    }

    #[test]
    fn json_files_of_older_versions_are_taken_over() {
        let d = dir("mig");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("peers.json"), b"[\"10.0.0.1:6783\"]").unwrap();
        assert_eq!(load::<Vec<String>>(&d, "peers.json", "peers"), vec!["10.0.0.1:6783"]);
        assert!(!d.join("peers.json").exists() && d.join("peers.json.migrated").exists());
        assert_eq!(load::<Vec<String>>(&d, "peers.json", "peers"), vec!["10.0.0.1:6783"]);
    }

    #[test]
    fn a_file_that_is_no_store_is_a_clear_error() {
        let d = dir("bad");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(FILE), vec![0x5a; 8192]).unwrap();
        let e = open(&d).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(&d.join(FILE).display().to_string()) && e.contains("move it aside"), "{e}");
    }
}
