//! The tokio driver: runs the handshake over a `TcpStream`, then one task per
//! connection around the [`Session`] core.
//!
//! The task owns the socket and the session. Per wake-up it does bounded
//! work: one read of at most [`READ_BUF`] bytes, at most [`MAX_PENDING`]
//! decoded messages waiting for the owner (reading stops while they wait),
//! at most [`MAX_BATCH`] owner messages taken, and none while more than
//! [`WRITE_HIGH_WATER`] bytes wait for the socket. Reads and writes proceed
//! concurrently, so two peers sending to each other cannot deadlock.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::ReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use super::config::ConnConfig;
use super::error::{CloseReason, ConnError, SessionError};
use super::handshake::{ConnInfo, ConnParams, Handshake};
use super::session::{Payload, Session};

/// Bytes read per wake-up.
pub const READ_BUF: usize = 64 << 10;
/// Decoded messages held for a slow owner before reading stops.
pub const MAX_PENDING: usize = 64;
/// Owner messages taken per wake-up.
pub const MAX_BATCH: usize = 64;
/// Unwritten bytes above which owner messages wait.
pub const WRITE_HIGH_WATER: usize = 1 << 20;
/// How long a read deadline waits for bytes already sent but not yet seen.
pub const STALL_GRACE: Duration = Duration::from_millis(20);
/// How long a closing connection may take to say why.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// A connection whose handshake succeeded, not yet running.
#[derive(Debug)]
pub struct Established {
    /// What the handshake established.
    pub info: ConnInfo,
    /// The remote's TCP address.
    pub remote_addr: SocketAddr,
    stream: TcpStream,
    session: Session,
    capacity: usize,
}

impl Established {
    /// The longest message the connection carries (see [`Session::max_message_len`]).
    pub fn max_message_len(&self) -> usize {
        self.session.max_message_len()
    }
}

/// What a running connection tells its owner.
#[derive(Debug)]
pub enum ConnEvent {
    /// A mesh message from the remote.
    Message(Vec<u8>),
    /// An overlay message from the remote.
    Overlay(Vec<u8>),
    /// The connection ended; nothing follows.
    Closed(CloseReason),
}

/// Asks a running connection to close, telling the remote why.
#[derive(Debug)]
pub struct Closer(Option<oneshot::Sender<String>>);

impl Closer {
    /// Closes the connection (once; later calls do nothing).
    pub fn close(&mut self, reason: impl Into<String>) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(reason.into());
        }
    }
}

/// The owner's side of a running connection. Dropping `tx` closes the
/// connection; `rx` yields messages and, last, [`ConnEvent::Closed`].
#[derive(Debug)]
pub struct ConnHandle {
    /// What the handshake established.
    pub info: ConnInfo,
    /// The remote's TCP address.
    pub remote_addr: SocketAddr,
    /// The longest message `tx` carries; longer ones are dropped with a warning.
    pub max_message_len: usize,
    /// Messages to send.
    pub tx: mpsc::Sender<Payload>,
    /// Messages received, then the close.
    pub rx: mpsc::Receiver<ConnEvent>,
    /// Closes with a reason.
    pub closer: Closer,
    /// The connection's task.
    pub task: JoinHandle<()>,
}

/// Runs the handshake on `stream` (`outbound`: we dialed), within
/// `cfg.handshake_timeout`. On failure the remote is told why when possible,
/// and the error is logged here (warn, in a span naming the remote address).
pub async fn establish(mut stream: TcpStream, cfg: &ConnConfig, outbound: bool) -> Result<Established, ConnError> {
    let remote = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let span = info_span!("handshake", %remote, outbound);
    async {
        let _ = stream.set_nodelay(true);
        let trusts = cfg.trusted_subnets.is_trusted(remote.ip());
        let mut hs = Handshake::new(cfg, ConnParams::random(outbound, trusts, &mut rand::rngs::OsRng));
        let result = tokio::time::timeout(cfg.handshake_timeout, drive(&mut stream, &mut hs, remote)).await;
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => {
                Some(ConnError::HandshakeTimeout { remote, after: cfg.handshake_timeout, during: hs.waiting_for() })
            }
        };
        if let Some(e) = failure {
            warn!(error = %e, "handshake failed");
            close_gracefully(&mut stream, hs.poll_transmit().unwrap_or_default()).await;
            return Err(e);
        }
        let (info, session) = hs.finish(Instant::now()).map_err(|error| ConnError::Handshake { remote, error })?;
        debug!(peer = %info.remote.name, version = info.version, encrypted = info.encrypted(), "handshake done");
        Ok(Established { info, remote_addr: remote, stream, session, capacity: cfg.channel_capacity.max(1) })
    }
    .instrument(span)
    .await
}

async fn drive(stream: &mut TcpStream, hs: &mut Handshake, remote: SocketAddr) -> Result<(), ConnError> {
    let io = |op| move |error| ConnError::Io { remote, op, error };
    let mut buf = vec![0u8; 16 << 10];
    loop {
        if let Some(out) = hs.poll_transmit() {
            stream.write_all(&out).await.map_err(io("handshake write"))?;
        }
        if hs.is_done() {
            return Ok(());
        }
        let n = stream.read(&mut buf).await.map_err(io("handshake read"))?;
        let step = if n == 0 { Err(hs.handle_eof()) } else { hs.handle_bytes(&buf[..n]) };
        step.map_err(|error| ConnError::Handshake { remote, error })?;
    }
}

/// Writes `last` (a refusal or close frame), half-closes, and drains what
/// the remote still sends until it closes too, within [`CLOSE_GRACE`]: a
/// close with unread data would send a reset that can destroy `last`.
async fn close_gracefully(stream: &mut TcpStream, last: Vec<u8>) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if !last.is_empty() {
            stream.write_all(&last).await?;
        }
        stream.shutdown().await?;
        let mut sink = vec![0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Starts the connection's task.
pub fn spawn(est: Established) -> ConnHandle {
    let (tx, from_owner) = mpsc::channel(est.capacity);
    let (to_owner, rx) = mpsc::channel(est.capacity);
    let (close_tx, close_rx) = oneshot::channel();
    let span =
        info_span!("conn", peer = %est.info.remote.name, nick = %est.info.remote.nickname, addr = %est.remote_addr);
    let (info, remote_addr, max_message_len) = (est.info.clone(), est.remote_addr, est.session.max_message_len());
    let task = tokio::spawn(run(est.stream, est.session, from_owner, to_owner, close_rx).instrument(span));
    ConnHandle { info, remote_addr, max_message_len, tx, rx, closer: Closer(Some(close_tx)), task }
}

async fn run(
    mut stream: TcpStream,
    mut session: Session,
    mut from_owner: mpsc::Receiver<Payload>,
    to_owner: mpsc::Sender<ConnEvent>,
    mut close_rx: oneshot::Receiver<String>,
) {
    info!(encrypted = session.encrypted(), "connection established");
    let mut pending = VecDeque::new();
    let mut out = Outbox::default();
    let reason =
        pump(&mut stream, &mut session, &mut pending, &mut out, &mut from_owner, &to_owner, &mut close_rx).await;
    info!(%reason, "connection closed");
    let tell_remote = match &reason {
        CloseReason::Local(r) => Some(r.clone()),
        CloseReason::Session(SessionError::RemoteClosed(_)) | CloseReason::Eof | CloseReason::Io(_) => None,
        CloseReason::Session(e) => Some(e.to_string()),
    };
    if let Some(r) = tell_remote {
        // What is queued goes first: a half-written frame or a skipped
        // nonce would garble the close.
        session.close(&r);
        out.push(session.poll_transmit().unwrap_or_default());
        close_gracefully(&mut stream, out.buf.split_off(out.pos)).await;
    }
    for m in pending {
        if to_owner.send(event(m)).await.is_err() {
            return;
        }
    }
    let _ = to_owner.send(ConnEvent::Closed(reason)).await;
}

/// The main loop; returns why the connection ended.
async fn pump(
    stream: &mut TcpStream,
    session: &mut Session,
    pending: &mut VecDeque<Payload>,
    out: &mut Outbox,
    from_owner: &mut mpsc::Receiver<Payload>,
    to_owner: &mpsc::Sender<ConnEvent>,
    close_rx: &mut oneshot::Receiver<String>,
) -> CloseReason {
    let owner_gone = || CloseReason::Local("the owner dropped the connection".into());
    let (mut rd, mut wr) = stream.split();
    let mut rbuf = vec![0u8; READ_BUF];
    let mut close_open = true;
    loop {
        while pending.len() < MAX_PENDING {
            match session.poll_message() {
                Ok(Some(m)) => pending.push_back(m),
                Ok(None) => break,
                Err(e) => return e.into(),
            }
        }
        let full = pending.len() >= MAX_PENDING;
        session.set_paused(Instant::now(), full);
        if let Some(bytes) = session.poll_transmit() {
            out.push(bytes);
        }
        let deadline = tokio::time::Instant::from_std(session.poll_timeout());
        let take_owner = out.len() < WRITE_HIGH_WATER;
        tokio::select! {
            r = &mut *close_rx, if close_open => match r {
                Ok(reason) => return CloseReason::Local(reason),
                Err(_) => close_open = false,
            },
            r = rd.read(&mut rbuf), if !full => match r {
                Ok(0) => return CloseReason::Eof,
                Ok(n) => session.handle_bytes(Instant::now(), &rbuf[..n]),
                Err(e) => return e.into(),
            },
            r = wr.write(&out.buf[out.pos..]), if out.len() > 0 => match r {
                Ok(0) => return std::io::Error::from(std::io::ErrorKind::WriteZero).into(),
                Ok(n) => out.pos += n,
                Err(e) => return e.into(),
            },
            permit = to_owner.reserve(), if !pending.is_empty() => match permit {
                Ok(p) => {
                    if let Some(m) = pending.pop_front() {
                        p.send(event(m));
                    }
                    if deliver_more(pending, to_owner).is_err() {
                        return owner_gone();
                    }
                }
                Err(_) => return owner_gone(),
            },
            m = from_owner.recv(), if take_owner => match m {
                Some(m) => {
                    send(session, &m);
                    for _ in 1..MAX_BATCH {
                        let Ok(m) = from_owner.try_recv() else { break };
                        send(session, &m);
                    }
                }
                None => return owner_gone(),
            },
            () = tokio::time::sleep_until(deadline) => {
                if let Err(e) = session.handle_timeout(Instant::now()) {
                    // Our own stall (a big message, a busy runtime) may have
                    // left the remote's bytes unread: look once more.
                    match if full { None } else { read_now(&rd, &mut rbuf).await } {
                        Some(Ok(0)) => return CloseReason::Eof,
                        Some(Ok(n)) => session.handle_bytes(Instant::now(), &rbuf[..n]),
                        Some(Err(err)) => return err.into(),
                        None => return e.into(),
                    }
                }
            }
        }
    }
}

/// Bytes waiting for the socket.
#[derive(Default)]
struct Outbox {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    pos: usize,
}

impl Outbox {
    fn len(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn push(&mut self, bytes: Vec<u8>) {
        if self.len() == 0 {
            self.buf = bytes;
            self.pos = 0;
        } else {
            if self.pos > self.buf.len() / 2 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            self.buf.extend_from_slice(&bytes);
        }
    }
}

/// Reads what is already waiting (within [`STALL_GRACE`]), if anything.
async fn read_now(rd: &ReadHalf<'_>, buf: &mut [u8]) -> Option<std::io::Result<usize>> {
    match tokio::time::timeout(STALL_GRACE, rd.readable()).await {
        Ok(Ok(())) => match rd.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            r => Some(r),
        },
        Ok(Err(e)) => Some(Err(e)),
        Err(_) => None,
    }
}

/// Hands pending messages over while the channel has room.
fn deliver_more(pending: &mut VecDeque<Payload>, to_owner: &mpsc::Sender<ConnEvent>) -> Result<(), ()> {
    use mpsc::error::TrySendError;
    while let Some(m) = pending.pop_front() {
        match to_owner.try_send(event(m)) {
            Ok(()) => {}
            Err(TrySendError::Full(ev)) => {
                match ev {
                    ConnEvent::Message(m) => pending.push_front(Payload::Mesh(m)),
                    ConnEvent::Overlay(m) => pending.push_front(Payload::Overlay(m)),
                    ConnEvent::Closed(_) => {}
                }
                return Ok(());
            }
            Err(TrySendError::Closed(_)) => return Err(()),
        }
    }
    Ok(())
}

fn event(p: Payload) -> ConnEvent {
    match p {
        Payload::Mesh(m) => ConnEvent::Message(m),
        Payload::Overlay(m) => ConnEvent::Overlay(m),
    }
}

fn send(session: &mut Session, msg: &Payload) {
    if let Err(e) = session.send_payload(msg) {
        warn!(error = %e, "dropping an outgoing message");
    }
}
