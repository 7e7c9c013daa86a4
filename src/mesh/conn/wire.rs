//! The protobuf messages of `proto/conn.proto` and the small helpers that
//! put them in frames. Pure.

use prost::Message;

use super::frame::{FrameError, LEN_PREFIX};

/// Generated from `proto/conn.proto` (package `weaver.conn.v1`).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/weaver.conn.v1.rs"));
}

/// The 8 raw bytes that open every connection, in both directions.
pub const MAGIC: [u8; 8] = *b"weaver\0\n";

/// Weave Net's own protocol opens with this, then its version bytes (1, 2):
/// worth a clearer error.
pub(crate) const WEAVE_NET_MAGIC: &[u8] = b"weave";

/// Longest remote-supplied text kept for logs (reasons, nicknames).
pub const MAX_TEXT: usize = 256;

/// Encodes `frame` with its length prefix, in one allocation.
pub fn encode_framed(frame: &pb::Frame, max_len: usize) -> Result<Vec<u8>, FrameError> {
    let len = frame.encoded_len();
    if len > max_len || u32::try_from(len).is_err() {
        return Err(FrameError::TooLong { len, max: max_len });
    }
    let mut out = Vec::with_capacity(LEN_PREFIX + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    frame.encode_raw(&mut out);
    Ok(out)
}

/// Decodes a frame body (for tools and fuzzing; never panics).
pub fn decode_frame(body: &[u8]) -> Result<pb::Frame, prost::DecodeError> {
    pb::Frame::decode(body)
}

/// Decodes a control message (for tools and fuzzing; never panics).
pub fn decode_control(body: &[u8]) -> Result<pb::Control, prost::DecodeError> {
    pb::Control::decode(body)
}

/// A frame holding a plaintext control message.
pub fn plain(body: pb::control::Body) -> pb::Frame {
    pb::Frame { body: Some(pb::frame::Body::Plain(pb::Control { body: Some(body) })) }
}

/// The name of a frame's kind, for "expected X, got Y" errors.
pub fn frame_kind(f: &pb::Frame) -> &'static str {
    use pb::frame::Body;
    match &f.body {
        None => "an empty frame",
        Some(Body::Hello(_)) => "a hello",
        Some(Body::Noise(_)) => "a Noise handshake message",
        Some(Body::Refusal(_)) => "a refusal",
        Some(Body::Plain(_)) => "a plaintext control message",
        Some(Body::Sealed(_)) => "an encrypted control message",
    }
}

/// The name of a control message's kind.
pub fn control_kind(c: &pb::Control) -> &'static str {
    use pb::control::Body;
    match &c.body {
        None => "an empty control message",
        Some(Body::Features(_)) => "features",
        Some(Body::Heartbeat(_)) => "a heartbeat",
        Some(Body::Message(_)) => "a mesh message",
        Some(Body::Overlay(_)) => "an overlay message",
        Some(Body::Close(_)) => "a close",
    }
}

/// Remote-supplied text made safe for one log line: control characters
/// replaced, at most [`MAX_TEXT`] characters.
pub fn sanitize(s: &str) -> String {
    s.chars().take(MAX_TEXT).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_encoding_matches_the_generic_framer() {
        let f = plain(pb::control::Body::Message(vec![1, 2, 3]));
        let a = encode_framed(&f, 100).unwrap();
        let mut b = Vec::new();
        super::super::frame::encode_frame(&f.encode_to_vec(), 100, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(encode_framed(&f, 3).is_err());
    }

    #[test]
    fn sanitize_strips_control_characters_and_truncates() {
        assert_eq!(sanitize("a\nb\u{1b}[31m"), "a?b?[31m");
        assert_eq!(sanitize(&"x".repeat(1000)).len(), MAX_TEXT);
    }
}
