//! Stable 64-bit hashing: the same value on every peer and every build, so
//! fingerprints can be compared across the mesh (std's hashers promise no
//! such stability).

/// The splitmix64 finaliser: a bijective mix of the 64 input bits.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fingerprint of one topology entry's (name, uid, version).
pub fn entry(name: u64, uid: u64, version: u64) -> u64 {
    mix(mix(mix(name) ^ uid) ^ version)
}

/// FNV-1a over `bytes`, then mixed.
pub fn bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_pinned() {
        // Peers compare these across builds: they must never change.
        assert_eq!(mix(0), 0xe220_a839_7b1d_cdaf);
        assert_ne!(entry(1, 2, 3), entry(1, 2, 4));
        assert_ne!(bytes(b"a"), bytes(b"b"));
    }
}
