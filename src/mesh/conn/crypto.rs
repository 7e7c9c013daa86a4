//! The cryptography of a connection. Pure (randomness comes from the caller,
//! except the Noise ephemeral and static keys, which `snow` draws).
//!
//! - **Pattern:** [`NOISE_PARAMS`], `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s`.
//!   The outbound side is the initiator. Static keys are fresh per connection
//!   (peers have no long-term keys; the password is the credential), so the
//!   pattern gives mutual proof of the password, forward secrecy, and no
//!   offline password guessing for a passive observer: the PSK enters only at
//!   the third message, mixed with DH outputs an observer lacks.
//! - **PSK:** [`Psk::from_password`] = HKDF-SHA256(salt = [`PSK_SALT`],
//!   ikm = password, info = [`NOISE_PARAMS`]), 32 bytes.
//! - **Prologue:** [`prologue`] binds both plaintext Hellos (initiator's
//!   first), so tampering with the version range or the encryption flag fails
//!   the handshake.
//! - **Transport:** every control message after the handshake is sealed with
//!   the Noise transport state (ChaCha20-Poly1305, implicit counters): see
//!   [`Sealer`].
//! - **Exported keys:** each side sends 32 random bytes inside its sealed
//!   Features. [`SessionKeys`] = HKDF-SHA256(salt = Noise handshake hash,
//!   ikm = initiator's bytes || responder's bytes, info = [`KEY_LABEL_I2R`] or
//!   [`KEY_LABEL_R2I`]). The bytes never travel in clear and are used for
//!   nothing else, so the keys are independent of the transport keys.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
/// HKDF salt for the PSK: fixed, so one password gives one PSK everywhere.
pub const PSK_SALT: &[u8] = b"weaver/conn/v1 password";
/// HKDF info for the initiator→responder data-path key.
pub const KEY_LABEL_I2R: &[u8] = b"weaver/conn/v1 data key initiator->responder";
/// HKDF info for the responder→initiator data-path key.
pub const KEY_LABEL_R2I: &[u8] = b"weaver/conn/v1 data key responder->initiator";
/// Bytes of key material each side contributes.
pub const KEY_MATERIAL_LEN: usize = 32;

/// Largest Noise message, tag included.
pub const NOISE_MAX_MSG: usize = 65535;
/// Noise's authentication tag.
pub const TAG_LEN: usize = 16;
/// Largest plaintext piece per Noise transport message.
pub const MAX_PIECE: usize = NOISE_MAX_MSG - TAG_LEN;

/// A crypto failure. Deliberately vague: it is either a wrong password or
/// tampering, and the remote learns nothing more from us.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// Authentication failed, or the layout was wrong.
    #[error("decryption failed")]
    Decrypt,
    /// `snow` refused to build or step the handshake (a bug, not input).
    #[error("noise: {0}")]
    Noise(String),
}

/// The pre-shared key derived from the password.
#[derive(Clone)]
pub struct Psk(Zeroizing<[u8; 32]>);

impl Psk {
    /// Derives the PSK from a password (see the module docs).
    pub fn from_password(password: &[u8]) -> Psk {
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(PSK_SALT), password)
            .expand(NOISE_PARAMS.as_bytes(), key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Psk(key)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

/// Per-connection keys for the data paths (sleeve, IPsec), one per
/// direction: `tx` encrypts what we send, `rx` what we receive; the remote
/// holds the same two swapped. Zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Key for traffic from us to the remote.
    pub tx: [u8; 32],
    /// Key for traffic from the remote to us.
    pub rx: [u8; 32],
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.tx.zeroize();
        self.rx.zeroize();
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

/// Derives the data-path keys (see the module docs).
pub fn derive_session_keys(
    handshake_hash: &[u8],
    initiator_material: &[u8],
    responder_material: &[u8],
    we_are_initiator: bool,
) -> SessionKeys {
    let mut ikm = Zeroizing::new(Vec::with_capacity(initiator_material.len() + responder_material.len()));
    ikm.extend_from_slice(initiator_material);
    ikm.extend_from_slice(responder_material);
    let hk = Hkdf::<Sha256>::new(Some(handshake_hash), &ikm);
    let mut i2r = [0u8; 32];
    let mut r2i = [0u8; 32];
    hk.expand(KEY_LABEL_I2R, &mut i2r).expect("valid HKDF length");
    hk.expand(KEY_LABEL_R2I, &mut r2i).expect("valid HKDF length");
    let keys = if we_are_initiator { SessionKeys { tx: i2r, rx: r2i } } else { SessionKeys { tx: r2i, rx: i2r } };
    i2r.zeroize();
    r2i.zeroize();
    keys
}

/// The Noise prologue: a label, then both Hello frame bodies, each with its
/// u32 BE length, the initiator's first.
pub fn prologue(initiator_hello: &[u8], responder_hello: &[u8]) -> Vec<u8> {
    let mut p = b"weaver/conn/v1 prologue".to_vec();
    for h in [initiator_hello, responder_hello] {
        p.extend_from_slice(&(h.len() as u32).to_be_bytes());
        p.extend_from_slice(h);
    }
    p
}

/// Builds the Noise handshake state for one side.
pub fn noise_handshake(psk: &Psk, prologue: &[u8], initiator: bool) -> Result<snow::HandshakeState, CryptoError> {
    let err = |e: snow::Error| CryptoError::Noise(e.to_string());
    let params = NOISE_PARAMS.parse().map_err(err)?;
    let builder = snow::Builder::new(params);
    let static_key = Zeroizing::new(builder.generate_keypair().map_err(err)?.private);
    let builder = builder.local_private_key(&static_key).map_err(err)?.psk(3, psk.bytes()).map_err(err)?;
    let builder = builder.prologue(prologue).map_err(err)?;
    if initiator {
        builder.build_initiator().map_err(err)
    } else {
        builder.build_responder().map_err(err)
    }
}

/// Seals and opens control messages with a Noise transport state.
///
/// Layout of a sealed message: the plaintext `u32 BE length || message` is
/// cut into pieces of at most [`MAX_PIECE`] bytes, and each piece becomes one
/// Noise transport message (piece || tag); they are concatenated. The inner
/// length makes a truncated frame (whose outer length is unauthenticated)
/// fail instead of yielding a shorter message.
pub struct Sealer {
    transport: snow::TransportState,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    /// Wraps a finished handshake.
    pub fn new(transport: snow::TransportState) -> Self {
        Sealer { transport }
    }

    /// Bytes [`Sealer::seal`] produces for a message of `len` bytes.
    pub fn sealed_len(len: usize) -> usize {
        let plain = 4 + len;
        plain + plain.div_ceil(MAX_PIECE) * TAG_LEN
    }

    /// Encrypts one message.
    pub fn seal(&mut self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let len = u32::try_from(msg.len()).map_err(|_| CryptoError::Noise("message over 4 GiB".into()))?;
        let mut plain = Zeroizing::new(Vec::with_capacity(4 + msg.len()));
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(msg);
        let mut out = vec![0u8; Self::sealed_len(msg.len())];
        let mut at = 0;
        for piece in plain.chunks(MAX_PIECE) {
            let n = self
                .transport
                .write_message(piece, &mut out[at..at + piece.len() + TAG_LEN])
                .map_err(|e| CryptoError::Noise(e.to_string()))?;
            at += n;
        }
        debug_assert_eq!(at, out.len());
        Ok(out)
    }

    /// Decrypts one message sealed by the remote's [`Sealer::seal`].
    pub fn open(&mut self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut plain = Vec::with_capacity(sealed.len());
        let mut buf = Zeroizing::new(vec![0u8; MAX_PIECE.min(sealed.len())]);
        for piece in sealed.chunks(NOISE_MAX_MSG) {
            if piece.len() <= TAG_LEN {
                return Err(CryptoError::Decrypt);
            }
            let n = self.transport.read_message(piece, &mut buf).map_err(|_| CryptoError::Decrypt)?;
            plain.extend_from_slice(&buf[..n]);
        }
        let Some((len, body)) = plain.split_first_chunk::<4>() else {
            return Err(CryptoError::Decrypt);
        };
        if u32::from_be_bytes(*len) as usize != body.len() {
            return Err(CryptoError::Decrypt);
        }
        Ok(body.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs XXpsk3 between two PSKs; returns both transports or the
    /// responder's failure on message 3.
    fn pair(a: &Psk, b: &Psk) -> Result<(Sealer, Sealer), snow::Error> {
        let pro = prologue(b"i", b"r");
        let mut i = noise_handshake(a, &pro, true).unwrap();
        let mut r = noise_handshake(b, &pro, false).unwrap();
        let (mut m, mut p) = (vec![0u8; 65535], vec![0u8; 65535]);
        let n = i.write_message(&[], &mut m).unwrap();
        r.read_message(&m[..n], &mut p).unwrap();
        let n = r.write_message(&[], &mut m).unwrap();
        i.read_message(&m[..n], &mut p).unwrap();
        let n = i.write_message(&[], &mut m).unwrap();
        r.read_message(&m[..n], &mut p)?;
        Ok((Sealer::new(i.into_transport_mode()?), Sealer::new(r.into_transport_mode()?)))
    }

    #[test]
    fn psk_is_deterministic_and_depends_on_the_password() {
        assert_eq!(Psk::from_password(b"x").bytes(), Psk::from_password(b"x").bytes());
        assert_ne!(Psk::from_password(b"x").bytes(), Psk::from_password(b"y").bytes());
        assert_eq!(format!("{:?}", Psk::from_password(b"x")), "Psk(<redacted>)");
    }

    #[test]
    fn wrong_psk_fails_at_message_three() {
        assert!(pair(&Psk::from_password(b"a"), &Psk::from_password(b"b")).is_err());
    }

    #[test]
    fn sealing_round_trips_small_and_multi_piece_messages() {
        let psk = Psk::from_password(b"pw");
        let (mut i, mut r) = pair(&psk, &psk).unwrap();
        for len in [0, 1, MAX_PIECE - 4, MAX_PIECE - 3, 3 * MAX_PIECE + 17] {
            let msg: Vec<u8> = (0..len).map(|x| x as u8).collect();
            let sealed = i.seal(&msg).unwrap();
            assert_eq!(sealed.len(), Sealer::sealed_len(len));
            assert_eq!(r.open(&sealed).unwrap(), msg, "len {len}");
            let back = r.seal(&msg).unwrap();
            assert_eq!(i.open(&back).unwrap(), msg);
        }
    }

    #[test]
    fn tampering_truncation_and_replay_fail() {
        let psk = Psk::from_password(b"pw");
        let (mut i, mut r) = pair(&psk, &psk).unwrap();
        let mut sealed = i.seal(b"hello").unwrap();
        sealed[5] ^= 1;
        assert_eq!(r.open(&sealed), Err(CryptoError::Decrypt));

        let (mut i, mut r) = pair(&psk, &psk).unwrap();
        let big = i.seal(&vec![7u8; MAX_PIECE + 10]).unwrap();
        assert_eq!(r.open(&big[..NOISE_MAX_MSG]), Err(CryptoError::Decrypt), "truncated to one piece");

        let (mut i, mut r) = pair(&psk, &psk).unwrap();
        let once = i.seal(b"x").unwrap();
        assert!(r.open(&once).is_ok());
        assert_eq!(r.open(&once), Err(CryptoError::Decrypt), "replay");
        assert_eq!(r.open(&[]), Err(CryptoError::Decrypt));
    }

    #[test]
    fn session_keys_mirror_and_zeroize_debug() {
        let a = derive_session_keys(b"hash", &[1; 32], &[2; 32], true);
        let b = derive_session_keys(b"hash", &[1; 32], &[2; 32], false);
        assert_eq!(a.tx, b.rx);
        assert_eq!(a.rx, b.tx);
        assert_ne!(a.tx, a.rx);
        assert_ne!(a, derive_session_keys(b"hash2", &[1; 32], &[2; 32], true));
        assert_eq!(format!("{a:?}"), "SessionKeys(<redacted>)");
    }
}
