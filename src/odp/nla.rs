//! Netlink attributes (NLAs): the type-length-value encoding every ODP family uses.
//!
//! Contract shared by every wire type in [`crate::odp`]:
//! - `parse` never panics, whatever the input; malformed input is a [`WireError`].
//! - `emit` writes exactly the bytes `parse` reads back: `parse(emit(x)) == x`.
//! - An attribute type we do not know is kept as a [`RawNla`] and re-emitted
//!   byte for byte; it is never an error.
//!
//! Integers inside attributes are in host byte order unless the kernel's header
//! says `be16`/`be32`/`be64`. 64-bit counters are only 4-byte aligned, so every
//! read here copies out of the byte slice instead of casting a pointer.

use thiserror::Error;

/// Set in `nla_type` when the payload is itself a list of attributes.
pub const NLA_F_NESTED: u16 = 1 << 15;
/// Set in `nla_type` when the payload is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
/// The bits of `nla_type` that hold the attribute number.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;

/// Rounds `len` up to the 4-byte netlink alignment.
pub const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A malformed message or attribute.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("{what}: truncated, need {need} bytes, have {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    #[error("{what}: attribute {kind} has length {len}, expected {expected}")]
    BadLength { what: &'static str, kind: u16, len: usize, expected: &'static str },
    #[error("{what}: attribute header claims length {len} with {remaining} bytes left")]
    BadHeader { what: &'static str, len: usize, remaining: usize },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("{what}: required attribute {kind} missing")]
    Missing { what: &'static str, kind: u16 },
}

pub type Result<T> = std::result::Result<T, WireError>;

/// One attribute, borrowed from a message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nla<'a> {
    /// The attribute number, flags removed.
    pub kind: u16,
    /// `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` as they arrived.
    pub flags: u16,
    pub payload: &'a [u8],
}

impl<'a> Nla<'a> {
    /// Copies the attribute out, flags included, for later re-emission.
    pub fn to_raw(&self) -> RawNla {
        RawNla { kind: self.kind | self.flags, payload: self.payload.to_vec() }
    }

    pub fn u8(&self, what: &'static str) -> Result<u8> {
        Ok(self.fixed::<1>(what)?[0])
    }
    pub fn u16(&self, what: &'static str) -> Result<u16> {
        Ok(u16::from_ne_bytes(self.fixed(what)?))
    }
    pub fn be16(&self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.fixed(what)?))
    }
    pub fn u32(&self, what: &'static str) -> Result<u32> {
        Ok(u32::from_ne_bytes(self.fixed(what)?))
    }
    pub fn be32(&self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.fixed(what)?))
    }
    pub fn u64(&self, what: &'static str) -> Result<u64> {
        Ok(u64::from_ne_bytes(self.fixed(what)?))
    }
    pub fn be64(&self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.fixed(what)?))
    }
    /// A flag attribute carries no payload.
    pub fn flag(&self, what: &'static str) -> Result<()> {
        self.fixed::<0>(what).map(|_| ())
    }

    /// The payload as exactly `N` bytes.
    pub fn fixed<const N: usize>(&self, what: &'static str) -> Result<[u8; N]> {
        self.payload.try_into().map_err(|_| WireError::BadLength {
            what,
            kind: self.kind,
            len: self.payload.len(),
            expected: exact_len_name(N),
        })
    }

    /// A NUL-terminated (or unterminated) string, as the kernel sends names.
    pub fn string(&self, what: &'static str) -> Result<String> {
        let end = self.payload.iter().position(|&b| b == 0).unwrap_or(self.payload.len());
        String::from_utf8(self.payload[..end].to_vec())
            .map_err(|_| WireError::Invalid { what, reason: "name is not UTF-8".into() })
    }

    /// An array of host-order u32, e.g. upcall PIDs.
    pub fn u32_array(&self, what: &'static str) -> Result<Vec<u32>> {
        if !self.payload.len().is_multiple_of(4) {
            return Err(WireError::BadLength {
                what,
                kind: self.kind,
                len: self.payload.len(),
                expected: "a multiple of 4",
            });
        }
        Ok(self.payload.chunks_exact(4).map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// A struct of `N` host-order u64 counters (only 4-byte aligned on the wire).
    pub fn u64_fields<const N: usize>(&self, what: &'static str) -> Result<[u64; N]> {
        if self.payload.len() != N * 8 {
            return Err(WireError::BadLength {
                what,
                kind: self.kind,
                len: self.payload.len(),
                expected: exact_len_name(N * 8),
            });
        }
        let mut out = [0u64; N];
        for (o, c) in out.iter_mut().zip(self.payload.chunks_exact(8)) {
            *o = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        }
        Ok(out)
    }

    /// The attributes nested in this one.
    pub fn nested(&self) -> NlaIter<'a> {
        NlaIter::new(self.payload)
    }
}

fn exact_len_name(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2 => "2",
        4 => "4",
        6 => "6",
        8 => "8",
        12 => "12",
        16 => "16",
        24 => "24",
        32 => "32",
        40 => "40",
        64 => "64",
        _ => "a fixed size",
    }
}

/// Iterates the attributes in a buffer. Yields an error (and then stops) on a
/// malformed header.
#[derive(Debug, Clone)]
pub struct NlaIter<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> NlaIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, failed: false }
    }
}

impl<'a> Iterator for NlaIter<'a> {
    type Item = Result<Nla<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let buf = self.buf;
        if buf.len() < NLA_HDRLEN {
            self.failed = true;
            return Some(Err(WireError::Truncated { what: "attribute header", need: NLA_HDRLEN, have: buf.len() }));
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let raw_type = u16::from_ne_bytes([buf[2], buf[3]]);
        if len < NLA_HDRLEN || len > buf.len() {
            self.failed = true;
            return Some(Err(WireError::BadHeader { what: "attribute", len, remaining: buf.len() }));
        }
        let payload = &buf[NLA_HDRLEN..len];
        // The last attribute of a message may arrive without its padding.
        self.buf = &buf[align(len).min(buf.len())..];
        Some(Ok(Nla { kind: raw_type & NLA_TYPE_MASK, flags: raw_type & !NLA_TYPE_MASK, payload }))
    }
}

/// An attribute kept as bytes: an unknown type, re-emitted unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RawNla {
    /// The full `nla_type`, flags included.
    pub kind: u16,
    pub payload: Vec<u8>,
}

impl RawNla {
    pub fn emit(&self, w: &mut NlaWriter) {
        w.put(self.kind, &self.payload);
    }
}

/// Builds a buffer of attributes. Emission cannot fail except for an attribute
/// over 64 KiB, which netlink cannot express; see [`NlaWriter::put`].
#[derive(Debug, Default, Clone)]
pub struct NlaWriter {
    buf: Vec<u8>,
}

impl NlaWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Appends an attribute. A payload longer than netlink's 16-bit length
    /// allows is a programming error in the caller and is truncated in the
    /// length field; callers bound packet sizes well below that.
    pub fn put(&mut self, kind: u16, payload: &[u8]) {
        let len = (NLA_HDRLEN + payload.len()).min(u16::MAX as usize);
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    pub fn put_u8(&mut self, kind: u16, v: u8) {
        self.put(kind, &[v]);
    }
    pub fn put_u16(&mut self, kind: u16, v: u16) {
        self.put(kind, &v.to_ne_bytes());
    }
    pub fn put_be16(&mut self, kind: u16, v: u16) {
        self.put(kind, &v.to_be_bytes());
    }
    pub fn put_u32(&mut self, kind: u16, v: u32) {
        self.put(kind, &v.to_ne_bytes());
    }
    pub fn put_be32(&mut self, kind: u16, v: u32) {
        self.put(kind, &v.to_be_bytes());
    }
    pub fn put_u64(&mut self, kind: u16, v: u64) {
        self.put(kind, &v.to_ne_bytes());
    }
    pub fn put_be64(&mut self, kind: u16, v: u64) {
        self.put(kind, &v.to_be_bytes());
    }
    pub fn put_flag(&mut self, kind: u16) {
        self.put(kind, &[]);
    }
    /// A NUL-terminated string.
    pub fn put_str(&mut self, kind: u16, s: &str) {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.put(kind, &b);
    }
    pub fn put_u64_fields(&mut self, kind: u16, v: &[u64]) {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
        self.put(kind, &b);
    }
    pub fn put_u32_array(&mut self, kind: u16, v: &[u32]) {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_ne_bytes()).collect();
        self.put(kind, &b);
    }

    /// Appends a nested attribute whose payload `f` writes.
    /// `kind` is written as given: OVS's own spaces do not set `NLA_F_NESTED`.
    pub fn nested(&mut self, kind: u16, f: impl FnOnce(&mut NlaWriter)) {
        let mut inner = NlaWriter::new();
        f(&mut inner);
        self.put(kind, &inner.buf);
    }

    fn pad(&mut self) {
        let n = align(self.buf.len()) - self.buf.len();
        self.buf.extend(std::iter::repeat_n(0, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_what_it_writes() {
        let mut w = NlaWriter::new();
        w.put_u32(1, 7);
        w.put_str(2, "weave");
        w.nested(3, |n| {
            n.put_flag(4);
            n.put_be16(5, 6784);
        });
        let bytes = w.into_bytes();
        let attrs: Vec<_> = NlaIter::new(&bytes).collect::<Result<_>>().unwrap();
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[0].u32("t").unwrap(), 7);
        assert_eq!(attrs[1].string("t").unwrap(), "weave");
        let inner: Vec<_> = attrs[2].nested().collect::<Result<_>>().unwrap();
        assert_eq!(inner[0].kind, 4);
        assert_eq!(inner[1].be16("t").unwrap(), 6784);
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(NlaIter::new(&[1, 0]).next().unwrap().is_err());
        // length 2 < header size
        assert!(NlaIter::new(&[2, 0, 1, 0]).next().unwrap().is_err());
        // length beyond the buffer
        assert!(NlaIter::new(&[9, 0, 1, 0, 0, 0, 0, 0]).next().unwrap().is_err());
    }

    #[test]
    fn tolerates_missing_final_padding() {
        let bytes = [5u8, 0, 1, 0, 42];
        let a: Vec<_> = NlaIter::new(&bytes).collect::<Result<_>>().unwrap();
        assert_eq!(a[0].u8("t").unwrap(), 42);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let mut w = NlaWriter::new();
        w.put_u16(1, 3);
        let b = w.into_bytes();
        let a = NlaIter::new(&b).next().unwrap().unwrap();
        assert!(matches!(a.u32("t"), Err(WireError::BadLength { .. })));
    }

    proptest! {
        #[test]
        fn iterating_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for a in NlaIter::new(&bytes).flatten() {
                let _ = a.nested().count();
            }
        }

        #[test]
        fn raw_attributes_round_trip(attrs in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..8)) {
            let mut w = NlaWriter::new();
            for (k, p) in &attrs { w.put(*k, p); }
            let bytes = w.into_bytes();
            let back: Vec<RawNla> = NlaIter::new(&bytes).map(|a| a.unwrap().to_raw()).collect();
            let want: Vec<RawNla> = attrs.into_iter().map(|(kind, payload)| RawNla { kind, payload }).collect();
            prop_assert_eq!(back, want);
        }
    }
}
