//! Length-prefixed framing: a u32 big-endian length, then that many bytes.
//!
//! Pure. [`FrameDecoder`] takes byte chunks of any size (a partial frame, many
//! frames at once) and yields whole frame bodies one at a time. A length over
//! the limit is an error as soon as its four bytes are in, before anything is
//! allocated for the body; the decoder buffers at most what it was given.

use thiserror::Error;

/// Bytes in the length prefix.
pub const LEN_PREFIX: usize = 4;

/// The default limit on a frame body: 8 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 << 20;

/// A framing error. The stream cannot be resynchronised after one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A frame body over the configured limit (sending or receiving).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLong {
        /// The announced or attempted body length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
}

/// Appends `body` with its length prefix to `out`.
pub fn encode_frame(body: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), FrameError> {
    check_len(body.len(), max_len)?;
    out.reserve(LEN_PREFIX + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    Ok(())
}

fn check_len(len: usize, max_len: usize) -> Result<(), FrameError> {
    if len > max_len || u32::try_from(len).is_err() {
        return Err(FrameError::TooLong { len, max: max_len });
    }
    Ok(())
}

/// Reassembles frames from a byte stream.
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    pos: usize,
    max_len: usize,
}

impl std::fmt::Debug for FrameDecoder {
    /// Sizes only: the buffer may hold plaintext messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameDecoder").field("buffered", &self.buffered()).field("max_len", &self.max_len).finish()
    }
}

impl FrameDecoder {
    /// A decoder refusing bodies over `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder { buf: Vec::new(), pos: 0, max_len }
    }

    /// Changes the limit (e.g. from the handshake's to the session's).
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// The limit in force.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= 4096 && self.pos * 2 >= self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame body, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let rest = &self.buf[self.pos..];
        let Some(prefix) = rest.first_chunk::<LEN_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        check_len(len, self.max_len)?;
        let Some(body) = rest.get(LEN_PREFIX..LEN_PREFIX + len) else {
            return Ok(None);
        };
        let body = body.to_vec();
        self.pos += LEN_PREFIX + len;
        Ok(Some(body))
    }

    /// Takes the unread bytes out (for handing the stream to another parser).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.pos);
        self.buf.clear();
        self.pos = 0;
        rest
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode_all(dec: &mut FrameDecoder) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(f) = dec.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn round_trip_and_partial_input() {
        let mut wire = Vec::new();
        encode_frame(b"hello", 100, &mut wire).unwrap();
        encode_frame(b"", 100, &mut wire).unwrap();
        assert_eq!(&wire[..4], &[0, 0, 0, 5]);
        let mut dec = FrameDecoder::new(100);
        dec.push(&wire[..3]);
        assert_eq!(dec.next_frame().unwrap(), None);
        dec.push(&wire[3..7]);
        assert_eq!(dec.next_frame().unwrap(), None);
        dec.push(&wire[7..]);
        assert_eq!(decode_all(&mut dec), vec![b"hello".to_vec(), vec![]]);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let mut dec = FrameDecoder::new(1024);
        dec.push(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(dec.next_frame(), Err(FrameError::TooLong { len: 0xffff_ffff, max: 1024 }));
        let mut out = Vec::new();
        assert!(encode_frame(&[0; 1025], 1024, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn take_buffered_returns_the_unread_tail() {
        let mut wire = Vec::new();
        encode_frame(b"a", 10, &mut wire).unwrap();
        wire.extend_from_slice(b"tail");
        let mut dec = FrameDecoder::new(10);
        dec.push(&wire);
        assert_eq!(dec.next_frame().unwrap(), Some(b"a".to_vec()));
        assert_eq!(dec.take_buffered(), b"tail".to_vec());
        assert_eq!(dec.buffered(), 0);
    }

    proptest! {
        #[test]
        fn any_chunking_reassembles_any_frames(
            frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
            cuts in prop::collection::vec(0usize..64, 0..200),
        ) {
            let mut wire = Vec::new();
            for f in &frames {
                encode_frame(f, 300, &mut wire).unwrap();
            }
            let mut dec = FrameDecoder::new(300);
            let mut got = Vec::new();
            let mut at = 0usize;
            for c in cuts.into_iter().chain(std::iter::once(usize::MAX)) {
                let end = at.saturating_add(c).min(wire.len());
                dec.push(&wire[at..end]);
                at = end;
                got.extend(decode_all(&mut dec));
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(dec.buffered(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000)) {
            let mut dec = FrameDecoder::new(512);
            dec.push(&data);
            while let Ok(Some(f)) = dec.next_frame() {
                prop_assert!(f.len() <= 512);
            }
        }
    }
}
