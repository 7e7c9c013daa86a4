//! The handshake: a pure state machine over byte buffers.
//!
//! Feed it what the socket gave with [`Handshake::handle_bytes`], write out
//! whatever [`Handshake::poll_transmit`] returns, and stop when
//! [`Handshake::is_done`] (then [`Handshake::finish`]) or on an error (then
//! still write out `poll_transmit`: it holds a refusal for the remote, so
//! that both logs say why).
//!
//! Both ends run the same steps; the outbound end is the Noise initiator.
//! 1. The raw [`MAGIC`], then a `Hello` frame: version range and whether a
//!    password is set. Both must agree on the latter; the version is the
//!    highest in both ranges.
//! 2. With a password: the three Noise `XXpsk3` messages (see
//!    [`super::crypto`]); the Hellos are its prologue.
//! 3. `Features` (sealed when encrypted). Each end is done when it has the
//!    remote's features and has sent its own.

use std::time::Instant;

use prost::Message;
use zeroize::{Zeroize, Zeroizing};

use super::config::{ConnConfig, VersionRange};
use super::crypto::{self, Sealer, SessionKeys, KEY_MATERIAL_LEN};
use super::error::HandshakeError;
use super::frame::FrameDecoder;
use super::session::Session;
use super::wire::{self, pb, MAGIC, WEAVE_NET_MAGIC};
use crate::mesh::peer::{Identity, PeerName, PeerUid, ShortId};

/// Frame limit before the remote has proved anything: enough for a Noise
/// message or sealed features, small enough that strangers cost little.
pub const MAX_HANDSHAKE_FRAME_LEN: usize = 128 << 10;

/// Most overlays a remote may offer.
const MAX_OVERLAYS: usize = 16;

/// Per-connection inputs, drawn by the caller.
pub struct ConnParams {
    /// We dialed (Noise initiator).
    pub outbound: bool,
    /// Random connection ID.
    pub conn_id: u64,
    /// The remote's address is in our trusted subnets.
    pub trusts_remote: bool,
    /// Random input of the exported session keys (used when encrypted).
    pub key_material: Zeroizing<[u8; KEY_MATERIAL_LEN]>,
}

impl ConnParams {
    /// Fresh random parameters.
    pub fn random(outbound: bool, trusts_remote: bool, rng: &mut (impl rand::RngCore + rand::CryptoRng)) -> Self {
        let mut key_material = Zeroizing::new([0u8; KEY_MATERIAL_LEN]);
        rng.fill_bytes(&mut key_material[..]);
        ConnParams { outbound, conn_id: rng.next_u64(), trusts_remote, key_material }
    }
}

/// What the handshake established about the remote and the connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The remote's identity.
    pub remote: Identity,
    /// The negotiated protocol version.
    pub version: u32,
    /// We dialed.
    pub outbound: bool,
    /// Our random connection ID.
    pub local_conn_id: u64,
    /// The remote's random connection ID.
    pub remote_conn_id: u64,
    /// The overlays the remote offers.
    pub remote_overlays: Vec<String>,
    /// We trust the remote's address (our trusted subnets).
    pub trusts_remote: bool,
    /// The remote trusts our address (its trusted subnets).
    pub trusted_by_remote: bool,
    /// Keys for the data paths, when a password is set.
    pub session_keys: Option<SessionKeys>,
}

impl ConnInfo {
    /// The same value at both ends (XOR of both connection IDs): the mesh
    /// core breaks ties between duplicate connections with it.
    pub fn conn_uid(&self) -> u64 {
        self.local_conn_id ^ self.remote_conn_id
    }

    /// Whether the control connection is encrypted.
    pub fn encrypted(&self) -> bool {
        self.session_keys.is_some()
    }

    /// The keys the data path must use, or `None` when it may send in clear:
    /// no password, or both ends trust each other's subnet.
    pub fn datapath_keys(&self) -> Option<&SessionKeys> {
        self.session_keys.as_ref().filter(|_| !(self.trusts_remote && self.trusted_by_remote))
    }
}

enum Stage {
    Magic,
    Hello,
    Noise(Box<snow::HandshakeState>),
    Features,
    Done,
    Failed(HandshakeError),
}

/// One end of a handshake.
pub struct Handshake {
    cfg: ConnConfig,
    params: ConnParams,
    stage: Stage,
    magic: Vec<u8>,
    decoder: FrameDecoder,
    out: Vec<u8>,
    our_hello: Vec<u8>,
    version: u32,
    sealer: Option<Sealer>,
    handshake_hash: Vec<u8>,
    remote: Option<pb::Features>,
}

impl Handshake {
    /// Starts a handshake; the magic and our Hello are ready to transmit.
    pub fn new(cfg: &ConnConfig, params: ConnParams) -> Self {
        let hello =
            pb::Hello { min_version: cfg.versions.min, max_version: cfg.versions.max, encrypted: cfg.encrypted() };
        let frame = pb::Frame { body: Some(pb::frame::Body::Hello(hello)) };
        let mut out = MAGIC.to_vec();
        out.extend(wire::encode_framed(&frame, MAX_HANDSHAKE_FRAME_LEN).unwrap_or_default());
        Handshake {
            cfg: cfg.clone(),
            params,
            stage: Stage::Magic,
            magic: Vec::with_capacity(MAGIC.len()),
            decoder: FrameDecoder::new(MAX_HANDSHAKE_FRAME_LEN),
            our_hello: frame.encode_to_vec(),
            out,
            version: 0,
            sealer: None,
            handshake_hash: Vec::new(),
            remote: None,
        }
    }

    /// Bytes to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// Whether the handshake succeeded: call [`Handshake::finish`].
    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }

    /// What we are waiting for, for timeout and close messages.
    pub fn waiting_for(&self) -> &'static str {
        match self.stage {
            Stage::Magic | Stage::Hello => "the remote's hello",
            Stage::Noise(_) => "the encrypted handshake",
            Stage::Features => "the remote's features",
            Stage::Done | Stage::Failed(_) => "nothing",
        }
    }

    /// Feeds received bytes. Bytes after the handshake stay buffered for
    /// the session.
    pub fn handle_bytes(&mut self, mut data: &[u8]) -> Result<(), HandshakeError> {
        if let Stage::Failed(e) = &self.stage {
            return Err(e.clone());
        }
        if matches!(self.stage, Stage::Magic) {
            let n = (MAGIC.len() - self.magic.len()).min(data.len());
            self.magic.extend_from_slice(&data[..n]);
            data = &data[n..];
            if let Err(e) = self.check_magic() {
                return Err(self.fail(e));
            }
        }
        self.decoder.push(data);
        while matches!(self.stage, Stage::Hello | Stage::Noise(_) | Stage::Features) {
            let frame = match self.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(self.fail(e.into())),
            };
            if let Err(e) = self.handle_frame(&frame) {
                return Err(self.fail(e));
            }
        }
        Ok(())
    }

    /// The remote closed the stream: the error to report.
    pub fn handle_eof(&mut self) -> HandshakeError {
        let encrypted = matches!(self.stage, Stage::Noise(_)) || self.sealer.is_some();
        let e = HandshakeError::Closed { during: self.waiting_for(), encrypted };
        self.stage = Stage::Failed(e.clone());
        e
    }

    /// The outcome and the session that carries on, once done.
    pub fn finish(mut self, now: Instant) -> Result<(ConnInfo, Session), HandshakeError> {
        let mut remote = match (&self.stage, self.remote.take()) {
            (Stage::Done, Some(r)) => r,
            (Stage::Failed(e), _) => return Err(e.clone()),
            _ => return Err(HandshakeError::Unexpected { expected: "a finished handshake", got: "an unfinished one" }),
        };
        let session_keys = self.sealer.as_ref().map(|_| {
            let (ours, theirs) = (&self.params.key_material[..], &remote.key_material[..]);
            let (i, r) = if self.params.outbound { (ours, theirs) } else { (theirs, ours) };
            crypto::derive_session_keys(&self.handshake_hash, i, r, self.params.outbound)
        });
        remote.key_material.zeroize();
        let info = ConnInfo {
            remote: Identity {
                name: PeerName::from_u64(remote.name),
                nickname: wire::sanitize(&remote.nickname),
                uid: PeerUid(remote.uid),
                short_id: ShortId::from_bits(remote.short_id),
            },
            version: self.version,
            outbound: self.params.outbound,
            local_conn_id: self.params.conn_id,
            remote_conn_id: remote.conn_id,
            remote_overlays: remote.overlays.iter().map(|o| wire::sanitize(o)).collect(),
            trusts_remote: self.params.trusts_remote,
            trusted_by_remote: remote.trusted,
            session_keys,
        };
        self.decoder.set_max_len(self.cfg.max_frame_len);
        let send_max = match remote.max_frame_len as usize {
            0 => self.cfg.max_frame_len,
            theirs => theirs.min(self.cfg.max_frame_len),
        };
        let out = std::mem::take(&mut self.out);
        Ok((info, Session::new(self.decoder, self.sealer, out, send_max, &self.cfg, now)))
    }

    fn fail(&mut self, e: HandshakeError) -> HandshakeError {
        if e.tell_remote() {
            let refusal = pb::Refusal { reason: e.to_string() };
            let frame = pb::Frame { body: Some(pb::frame::Body::Refusal(refusal)) };
            self.out.extend(wire::encode_framed(&frame, MAX_HANDSHAKE_FRAME_LEN).unwrap_or_default());
        }
        self.stage = Stage::Failed(e.clone());
        e
    }

    fn check_magic(&mut self) -> Result<(), HandshakeError> {
        let got = &self.magic[..];
        if got.starts_with(WEAVE_NET_MAGIC) && got.get(WEAVE_NET_MAGIC.len()).is_some_and(|&b| b != MAGIC[5]) {
            return Err(HandshakeError::WeaveNet);
        }
        if !MAGIC.starts_with(got) {
            return Err(HandshakeError::BadMagic { got: got.to_vec() });
        }
        if got.len() == MAGIC.len() {
            self.stage = Stage::Hello;
        }
        Ok(())
    }

    fn handle_frame(&mut self, body: &[u8]) -> Result<(), HandshakeError> {
        use pb::frame::Body;
        let frame = pb::Frame::decode(body)?;
        let body = match (&self.stage, frame.body) {
            (_, Some(Body::Refusal(r))) => return Err(HandshakeError::Refused(wire::sanitize(&r.reason))),
            (Stage::Hello, Some(Body::Hello(h))) => return self.on_hello(body, h),
            (Stage::Noise(_), Some(Body::Noise(m))) => return self.on_noise(&m),
            (Stage::Features, Some(Body::Sealed(s))) if self.sealer.is_some() => self.open(&s)?,
            (Stage::Features, Some(Body::Plain(c))) if self.sealer.is_none() => c,
            (_, body) => return Err(self.unexpected(wire::frame_kind(&pb::Frame { body }))),
        };
        match body.body {
            Some(pb::control::Body::Features(f)) => self.on_features(f),
            body => Err(self.unexpected(wire::control_kind(&pb::Control { body }))),
        }
    }

    fn unexpected(&self, got: &'static str) -> HandshakeError {
        let expected = match (&self.stage, self.sealer.is_some()) {
            (Stage::Hello, _) => "a hello",
            (Stage::Noise(_), _) => "a Noise handshake message",
            (_, true) => "encrypted features",
            (_, false) => "plaintext features",
        };
        HandshakeError::Unexpected { expected, got }
    }

    fn on_hello(&mut self, body: &[u8], h: pb::Hello) -> Result<(), HandshakeError> {
        let theirs = VersionRange { min: h.min_version, max: h.max_version };
        let ours = self.cfg.versions;
        self.version = ours.negotiate(theirs).ok_or(HandshakeError::NoCommonVersion { ours, theirs })?;
        if h.encrypted != self.cfg.encrypted() {
            return Err(HandshakeError::EncryptionMismatch { local_has_password: self.cfg.encrypted() });
        }
        let Some(psk) = &self.cfg.psk else {
            self.send_features()?;
            self.stage = Stage::Features;
            return Ok(());
        };
        let outbound = self.params.outbound;
        let (i, r) = if outbound { (&self.our_hello[..], body) } else { (body, &self.our_hello[..]) };
        let prologue = crypto::prologue(i, r);
        let hs = crypto::noise_handshake(psk, &prologue, outbound).map_err(HandshakeError::Crypto)?;
        self.stage = Stage::Noise(Box::new(hs));
        if outbound {
            self.noise_step()?;
        }
        Ok(())
    }

    fn on_noise(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        let Stage::Noise(hs) = &mut self.stage else { return Err(not_in_noise()) };
        let mut payload = Zeroizing::new(vec![0u8; msg.len()]);
        hs.read_message(msg, &mut payload).map_err(|_| HandshakeError::PasswordMismatch)?;
        self.noise_step()
    }

    /// Writes our next Noise message if it is our turn; enters transport
    /// mode when the pattern is complete.
    fn noise_step(&mut self) -> Result<(), HandshakeError> {
        let Stage::Noise(hs) = &mut self.stage else { return Err(not_in_noise()) };
        if !hs.is_handshake_finished() && hs.is_my_turn() {
            let mut buf = vec![0u8; crypto::NOISE_MAX_MSG];
            let n = hs.write_message(&[], &mut buf).map_err(|e| HandshakeError::Crypto(noise_err(e)))?;
            buf.truncate(n);
            let frame = pb::Frame { body: Some(pb::frame::Body::Noise(buf)) };
            self.out.extend(wire::encode_framed(&frame, MAX_HANDSHAKE_FRAME_LEN)?);
        }
        if !hs.is_handshake_finished() {
            return Ok(());
        }
        let Stage::Noise(hs) = std::mem::replace(&mut self.stage, Stage::Features) else { return Err(not_in_noise()) };
        self.handshake_hash = hs.get_handshake_hash().to_vec();
        let transport = hs.into_transport_mode().map_err(|e| HandshakeError::Crypto(noise_err(e)))?;
        self.sealer = Some(Sealer::new(transport));
        self.send_features()
    }

    fn open(&mut self, sealed: &[u8]) -> Result<pb::Control, HandshakeError> {
        let sealer = self.sealer.as_mut().ok_or(HandshakeError::PasswordMismatch)?;
        let plain = Zeroizing::new(sealer.open(sealed).map_err(|_| HandshakeError::PasswordMismatch)?);
        Ok(pb::Control::decode(&plain[..])?)
    }

    fn send_features(&mut self) -> Result<(), HandshakeError> {
        let me = &self.cfg.identity;
        let f = pb::Features {
            name: me.name.as_u64(),
            nickname: me.nickname.clone(),
            uid: me.uid.0,
            short_id: u32::from(me.short_id.get()),
            conn_id: self.params.conn_id,
            trusted: self.params.trusts_remote,
            overlays: self.cfg.overlays.clone(),
            key_material: if self.sealer.is_some() { self.params.key_material.to_vec() } else { Vec::new() },
            max_frame_len: u32::try_from(self.cfg.max_frame_len).unwrap_or(u32::MAX),
        };
        let control = pb::Control { body: Some(pb::control::Body::Features(f)) };
        let body = match &mut self.sealer {
            None => pb::frame::Body::Plain(control),
            Some(s) => {
                let plain = Zeroizing::new(control.encode_to_vec());
                pb::frame::Body::Sealed(s.seal(&plain).map_err(HandshakeError::Crypto)?)
            }
        };
        self.out.extend(wire::encode_framed(&pb::Frame { body: Some(body) }, MAX_HANDSHAKE_FRAME_LEN)?);
        Ok(())
    }

    fn on_features(&mut self, f: pb::Features) -> Result<(), HandshakeError> {
        let bad = |s: &str| Err(HandshakeError::BadFeatures(s.to_string()));
        if f.name > PeerName::MASK {
            return bad("peer name over 48 bits");
        }
        if f.uid == 0 {
            return bad("peer UID 0");
        }
        if ShortId::new(f.short_id).is_err() {
            return bad("short ID over 12 bits");
        }
        if f.overlays.len() > MAX_OVERLAYS {
            return bad("too many overlays");
        }
        if self.sealer.is_some() && f.key_material.len() != KEY_MATERIAL_LEN {
            return bad("missing session key material");
        }
        let me = &self.cfg.identity;
        if f.name == me.name.as_u64() {
            if f.uid == me.uid.0 {
                return Err(HandshakeError::ConnectToSelf);
            }
            return Err(HandshakeError::NameCollision { name: me.name, local_uid: me.uid, remote_uid: PeerUid(f.uid) });
        }
        self.remote = Some(f);
        self.stage = Stage::Done;
        Ok(())
    }
}

fn noise_err(e: snow::Error) -> crypto::CryptoError {
    crypto::CryptoError::Noise(e.to_string())
}

/// A Noise step outside the Noise stage: cannot happen (handle_frame checks).
fn not_in_noise() -> HandshakeError {
    HandshakeError::Unexpected { expected: "the Noise stage", got: "a Noise step outside it" }
}
