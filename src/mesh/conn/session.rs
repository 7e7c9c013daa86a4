//! An established connection's core: framing, sealing, heartbeats and the
//! read deadline. Pure; time comes in as `now`.
//!
//! - Inputs: [`Session::handle_bytes`], [`Session::send_message`],
//!   [`Session::close`], [`Session::handle_timeout`].
//! - Outputs: [`Session::poll_message`] (mesh messages, one at a time, so the
//!   caller bounds its work), [`Session::poll_transmit`] (bytes to write),
//!   [`Session::poll_timeout`] (when to call `handle_timeout`).
//!
//! Any bytes from the remote push the read deadline back. While the caller
//! is not reading (its owner is slow: [`Session::set_paused`]) the deadline is
//! suspended, and it restarts when reading resumes.

use std::time::{Duration, Instant};

use prost::Message;
use zeroize::Zeroizing;

use super::config::ConnConfig;
use super::crypto::{Sealer, MAX_PIECE, TAG_LEN};
use super::error::{SessionError, TooLarge};
use super::frame::FrameDecoder;
use super::wire::{self, pb};

/// Protobuf wrapping around a mesh message: Frame and Control tags and
/// lengths (at most 1 + 5 bytes each level, twice, rounded up).
const WRAP_OVERHEAD: usize = 16;

/// What an established connection carries for its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// An opaque mesh message (the router's).
    Mesh(Vec<u8>),
    /// An opaque overlay message (`weaver.overlay.v1`: heartbeat acks).
    Overlay(Vec<u8>),
}

/// The core of one established connection.
#[derive(Debug)]
pub struct Session {
    decoder: FrameDecoder,
    sealer: Option<Sealer>,
    out: Vec<u8>,
    /// Largest frame body we send: the smaller of both ends' limits.
    send_max: usize,
    interval: Duration,
    timeout: Duration,
    next_heartbeat: Instant,
    last_rx: Instant,
    paused: bool,
    closed: bool,
    fatal: Option<SessionError>,
}

impl Session {
    /// `out`: bytes the handshake had not handed out yet; `send_max`: the
    /// frame limit both ends accept.
    pub(crate) fn new(
        decoder: FrameDecoder,
        sealer: Option<Sealer>,
        out: Vec<u8>,
        send_max: usize,
        cfg: &ConnConfig,
        now: Instant,
    ) -> Self {
        Session {
            decoder,
            sealer,
            out,
            send_max,
            interval: cfg.heartbeat_interval,
            timeout: cfg.heartbeat_timeout,
            next_heartbeat: now + cfg.heartbeat_interval,
            last_rx: now,
            paused: false,
            closed: false,
            fatal: None,
        }
    }

    /// Whether control messages are encrypted.
    pub fn encrypted(&self) -> bool {
        self.sealer.is_some()
    }

    /// The longest mesh message [`Session::send_message`] accepts (within
    /// both ends' frame limits).
    pub fn max_message_len(&self) -> usize {
        let max = self.send_max;
        let crypto = if self.encrypted() { 4 + (max / MAX_PIECE + 1) * TAG_LEN } else { 0 };
        max.saturating_sub(WRAP_OVERHEAD + crypto)
    }

    /// Whether anything was decoded and not yet polled, or bytes are buffered.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Feeds bytes read from the socket.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        if !data.is_empty() {
            self.last_rx = now;
        }
        self.decoder.push(data);
    }

    /// The next mesh message, `Ok(None)` when more bytes are needed.
    /// Heartbeats are consumed here. An error ends the connection.
    pub fn poll_message(&mut self) -> Result<Option<Payload>, SessionError> {
        if let Some(e) = &self.fatal {
            return Err(e.clone());
        }
        while let Some(body) = self.decoder.next_frame()? {
            let control = self.unwrap_frame(&body)?;
            match control.body {
                Some(pb::control::Body::Message(m)) => return Ok(Some(Payload::Mesh(m))),
                Some(pb::control::Body::Overlay(m)) => return Ok(Some(Payload::Overlay(m))),
                Some(pb::control::Body::Heartbeat(_)) => {}
                Some(pb::control::Body::Close(c)) => return Err(SessionError::RemoteClosed(wire::sanitize(&c.reason))),
                body => return Err(SessionError::Unexpected(wire::control_kind(&pb::Control { body }))),
            }
        }
        Ok(None)
    }

    fn unwrap_frame(&mut self, body: &[u8]) -> Result<pb::Control, SessionError> {
        use pb::frame::Body;
        match (pb::Frame::decode(body)?.body, &mut self.sealer) {
            (Some(Body::Plain(c)), None) => Ok(c),
            (Some(Body::Sealed(s)), Some(sealer)) => {
                let plain = Zeroizing::new(sealer.open(&s).map_err(|_| SessionError::Decrypt)?);
                Ok(pb::Control::decode(&plain[..])?)
            }
            (Some(Body::Refusal(r)), _) => Err(SessionError::RemoteClosed(wire::sanitize(&r.reason))),
            (body, _) => Err(SessionError::Unexpected(wire::frame_kind(&pb::Frame { body }))),
        }
    }

    /// Queues a mesh message. A message over the limit is refused and the
    /// connection goes on; after [`Session::close`] messages are dropped.
    pub fn send_message(&mut self, msg: &[u8]) -> Result<(), TooLarge> {
        let max = self.max_message_len();
        if msg.len() > max {
            return Err(TooLarge { len: msg.len(), max });
        }
        self.send_control(pb::control::Body::Message(msg.to_vec()));
        Ok(())
    }

    /// Queues a payload of either kind (see [`Session::send_message`]).
    pub fn send_payload(&mut self, p: &Payload) -> Result<(), TooLarge> {
        match p {
            Payload::Mesh(m) => self.send_message(m),
            Payload::Overlay(m) => {
                let max = self.max_message_len();
                if m.len() > max {
                    return Err(TooLarge { len: m.len(), max });
                }
                self.send_control(pb::control::Body::Overlay(m.clone()));
                Ok(())
            }
        }
    }

    /// Queues a close frame with `reason`; nothing is sent after it.
    pub fn close(&mut self, reason: &str) {
        self.send_control(pb::control::Body::Close(pb::Close { reason: reason.to_string() }));
        self.closed = true;
    }

    fn send_control(&mut self, body: pb::control::Body) {
        if self.closed || self.fatal.is_some() {
            return;
        }
        let control = pb::Control { body: Some(body) };
        let frame = match &mut self.sealer {
            None => pb::Frame { body: Some(pb::frame::Body::Plain(control)) },
            Some(sealer) => match sealer.seal(&Zeroizing::new(control.encode_to_vec())) {
                Ok(s) => pb::Frame { body: Some(pb::frame::Body::Sealed(s)) },
                Err(e) => {
                    self.fatal = Some(SessionError::Crypto(e));
                    return;
                }
            },
        };
        // Cannot fail: messages were checked against max_message_len, and
        // heartbeats and closes are small.
        if let Ok(bytes) = wire::encode_framed(&frame, u32::MAX as usize) {
            self.out.extend_from_slice(&bytes);
        }
    }

    /// Bytes to write, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// When [`Session::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        if self.paused {
            self.next_heartbeat
        } else {
            self.next_heartbeat.min(self.last_rx + self.timeout)
        }
    }

    /// Sends a heartbeat when due; fails once the remote is silent too long.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        let silent = now.saturating_duration_since(self.last_rx);
        if !self.paused && silent >= self.timeout {
            return Err(SessionError::HeartbeatTimeout(silent));
        }
        if now >= self.next_heartbeat {
            self.send_control(pb::control::Body::Heartbeat(pb::Heartbeat {}));
            self.next_heartbeat = now + self.interval;
        }
        Ok(())
    }

    /// Suspends (`true`) or restarts the read deadline: while the caller
    /// holds back reading, silence is not the remote's fault.
    pub fn set_paused(&mut self, now: Instant, paused: bool) {
        if self.paused && !paused {
            self.last_rx = now;
        }
        self.paused = paused;
    }
}
