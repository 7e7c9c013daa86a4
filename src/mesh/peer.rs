//! Peer identity: the 48-bit name, the per-start UID, the 12-bit short ID.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A peer's 48-bit name, printed like a MAC address. Stable across restarts.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct PeerName(u64);

/// A random identifier drawn at every process start: a peer that restarted
/// has a new UID, and its old entries are replaced, not merged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize)]
pub struct PeerUid(pub u64);

/// The 12-bit ID used inside VXLAN VNIs (source and destination peer).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize)]
pub struct ShortId(u16);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PeerError {
    #[error("invalid peer name {0:?}: expected six hex octets like 12:34:56:78:9a:bc")]
    BadName(String),
    #[error("short ID {0} is over 12 bits")]
    BadShortId(u32),
    #[error("{path}: {reason}")]
    NameFile { path: String, reason: String },
}

impl PeerName {
    pub const MASK: u64 = (1 << 48) - 1;

    /// The low 48 bits of `v`.
    pub fn from_u64(v: u64) -> Self {
        PeerName(v & Self::MASK)
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// A random name with the locally administered bit set and the multicast bit clear.
    pub fn random(rng: &mut impl rand::Rng) -> Self {
        let v: u64 = rng.gen::<u64>() & Self::MASK;
        // first octet: set bit 1 (local), clear bit 0 (multicast)
        PeerName((v & !(0x01u64 << 40)) | (0x02u64 << 40))
    }

    /// Loads the name persisted at `path`, or creates and persists a new
    /// random one. The write is atomic (temporary file, then rename).
    pub fn load_or_create(path: &Path, rng: &mut impl rand::Rng) -> Result<Self, PeerError> {
        let err = |reason: String| PeerError::NameFile { path: path.display().to_string(), reason };
        match std::fs::read_to_string(path) {
            Ok(s) => s.trim().parse().map_err(|e: PeerError| err(format!("{e}; remove the file to get a new name"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = PeerName::random(rng);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, format!("{name}\n")).map_err(|e| err(e.to_string()))?;
                std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
                Ok(name)
            }
            Err(e) => Err(err(e.to_string())),
        }
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_be_bytes();
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[2], b[3], b[4], b[5], b[6], b[7])
    }
}

impl fmt::Debug for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerName({self})")
    }
}

impl FromStr for PeerName {
    type Err = PeerError;
    fn from_str(s: &str) -> Result<Self, PeerError> {
        let bad = || PeerError::BadName(s.to_string());
        let mut v: u64 = 0;
        let mut n = 0;
        for part in s.split(':') {
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            v = (v << 8) | u64::from(u8::from_str_radix(part, 16).map_err(|_| bad())?);
            n += 1;
        }
        if n != 6 {
            return Err(bad());
        }
        Ok(PeerName(v))
    }
}

impl From<PeerName> for String {
    fn from(p: PeerName) -> String {
        p.to_string()
    }
}

impl TryFrom<String> for PeerName {
    type Error = PeerError;
    fn try_from(s: String) -> Result<Self, PeerError> {
        s.parse()
    }
}

impl ShortId {
    pub const MAX: u16 = (1 << 12) - 1;

    pub fn new(v: u32) -> Result<Self, PeerError> {
        if v > u32::from(Self::MAX) {
            return Err(PeerError::BadShortId(v));
        }
        Ok(ShortId(v as u16))
    }

    /// The low 12 bits of `v`.
    pub fn from_bits(v: u32) -> Self {
        ShortId((v & u32::from(Self::MAX)) as u16)
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl PeerUid {
    pub fn random(rng: &mut impl rand::Rng) -> Self {
        // 0 is reserved for "unknown".
        PeerUid(rng.gen_range(1..=u64::MAX))
    }
}

/// Everything a peer says about itself in a handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: PeerName,
    pub nickname: String,
    pub uid: PeerUid,
    pub short_id: ShortId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        #[test]
        fn names_round_trip_as_text(v: u64) {
            let n = PeerName::from_u64(v);
            prop_assert_eq!(n.to_string().parse::<PeerName>().unwrap(), n);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,30}") {
            let _ = s.parse::<PeerName>();
        }
    }

    #[test]
    fn bad_names_are_refused() {
        for s in ["", "12:34", "12:34:56:78:9a:bc:de", "12:34:56:78:9a:zz", "123:4:56:78:9a:bc"] {
            assert!(s.parse::<PeerName>().is_err(), "{s}");
        }
    }

    #[test]
    fn random_names_are_local_unicast() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let b = PeerName::random(&mut rng).as_u64().to_be_bytes();
            assert_eq!(b[2] & 0x03, 0x02);
        }
    }

    #[test]
    fn short_ids_are_12_bits() {
        assert!(ShortId::new(4095).is_ok());
        assert!(ShortId::new(4096).is_err());
        assert_eq!(ShortId::from_bits(0x1fff).get(), 0xfff);
    }

    #[test]
    fn name_is_persisted() {
        let dir = std::env::temp_dir().join(format!("weaver-peer-{}", std::process::id()));
        let path = dir.join("name");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = PeerName::load_or_create(&path, &mut rng).unwrap();
        let b = PeerName::load_or_create(&path, &mut rng).unwrap();
        assert_eq!(a, b);
        std::fs::write(&path, "garbage").unwrap();
        let e = PeerName::load_or_create(&path, &mut rng).unwrap_err();
        assert!(e.to_string().contains("remove the file"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
