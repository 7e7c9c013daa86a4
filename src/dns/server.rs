//! The DNS driver: UDP and TCP listeners on one address that answer from
//! the latest published [`Zone`] and relay other names to the upstream
//! resolvers.
//!
//! It owns no records: the daemon's mesh task publishes a new
//! `Arc<Zone>` on a `watch` channel after each change, and every query is
//! answered from the snapshot current when it arrived.
//!
//! Forwarding relays the query bytes unchanged (so the client's ID and
//! EDNS options go through) to the upstreams in order, over the transport
//! the query came on, within [`DnsConfig::forward_timeout`] in all (each
//! upstream gets an even share of what is left). If none answers, the client
//! gets SERVFAIL. At most [`MAX_FORWARDS`] forwards and [`MAX_TCP_CONNS`]
//! TCP connections are in flight; past that, queries to forward get SERVFAIL
//! at once and connections wait to be accepted.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tracing::{debug, Instrument};

use super::answer::{answer, servfail, Outcome, Transport};
use super::zone::Zone;
use super::DnsError;

/// The default time allowed to the upstreams for one forwarded query.
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a TCP connection may stay idle between queries.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most forwarded queries in flight at once.
pub const MAX_FORWARDS: usize = 256;

/// The most TCP connections served at once.
pub const MAX_TCP_CONNS: usize = 64;

/// The largest DNS message over UDP or TCP.
const MAX_MESSAGE: usize = 65535;

/// What the server needs to run.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// Where to listen, on both UDP and TCP. With port 0, UDP picks a port
    /// and TCP takes the same one.
    pub listen: SocketAddr,
    /// Our domain, lowercase and fully qualified (see [`super::parse_domain`]).
    pub domain: Name,
    /// The upstream resolvers (see [`super::resolv::upstreams`]).
    pub upstreams: Vec<SocketAddr>,
    /// The time allowed to the upstreams for one query.
    pub forward_timeout: Duration,
    /// Whether to listen on TCP too.
    pub tcp: bool,
}

impl DnsConfig {
    /// A configuration with the default timeout, UDP and TCP.
    pub fn new(listen: SocketAddr, domain: Name, upstreams: Vec<SocketAddr>) -> Self {
        DnsConfig { listen, domain, upstreams, forward_timeout: DEFAULT_FORWARD_TIMEOUT, tcp: true }
    }
}

/// A running server; dropping it stops it.
#[derive(Debug)]
pub struct DnsServer {
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the listener tasks share.
struct Shared {
    config: DnsConfig,
    zone: watch::Receiver<Arc<Zone>>,
    forwards: Arc<Semaphore>,
}

impl DnsServer {
    /// Binds the listeners and spawns their tasks on the current runtime.
    pub async fn spawn(config: DnsConfig, zone: watch::Receiver<Arc<Zone>>) -> Result<DnsServer, DnsError> {
        let io = |op, addr| move |source| DnsError::Io { op, addr, source };
        let udp = UdpSocket::bind(config.listen).await.map_err(io("bind UDP", config.listen))?;
        let udp_addr = udp.local_addr().map_err(io("bind UDP", config.listen))?;
        let tcp = if config.tcp {
            let l = TcpListener::bind(udp_addr).await.map_err(io("bind TCP", udp_addr))?;
            Some(l)
        } else {
            None
        };
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let span = tracing::info_span!("dns", listen = %udp_addr);
        let shared = Arc::new(Shared { config, zone, forwards: Arc::new(Semaphore::new(MAX_FORWARDS)) });
        let mut tasks = vec![tokio::spawn(serve_udp(Arc::new(udp), shared.clone()).instrument(span.clone()))];
        if let Some(l) = tcp {
            tasks.push(tokio::spawn(serve_tcp(l, shared).instrument(span)));
        }
        Ok(DnsServer { udp_addr, tcp_addr, tasks })
    }

    /// The UDP address it listens on.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The TCP address it listens on, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Shared {
    fn answer(&self, query: &[u8], transport: Transport, rng: &mut StdRng) -> Outcome {
        let zone = self.zone.borrow().clone();
        answer(query, &zone, &self.config.domain, transport, rng)
    }
}

async fn serve_udp(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut rng = StdRng::from_entropy();
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (len, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends may surface here; keep
                // serving, but do not spin on an error that persists.
                debug!(error = %e, "UDP receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let query = buf.get(..len).unwrap_or_default();
        match shared.answer(query, Transport::Udp, &mut rng) {
            Outcome::Reply(r) => send(&sock, &r, peer).await,
            Outcome::Drop => {}
            Outcome::Forward => {
                let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
                    if let Some(r) = servfail(query) {
                        send(&sock, &r, peer).await;
                    }
                    continue;
                };
                let (sock, shared, query) = (sock.clone(), shared.clone(), query.to_vec());
                tokio::spawn(
                    async move {
                        let reply = forward_udp(&query, &shared.config).await.or_else(|| servfail(&query));
                        if let Some(r) = reply {
                            send(&sock, &r, peer).await;
                        }
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
        }
    }
}

async fn send(sock: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(e) = sock.send_to(reply, peer).await {
        debug!(error = %e, %peer, "UDP send failed");
    }
}

/// The unspecified address of `upstream`'s family, to bind to.
fn any_of(upstream: SocketAddr) -> SocketAddr {
    match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Whether `reply` answers `query`: a response with the same ID.
fn matches(query: &[u8], reply: &[u8]) -> bool {
    matches!((query, reply), ([a, b, ..], [c, d, flags, ..]) if a == c && b == d && flags & 0x80 != 0)
}

/// Tries the upstreams in order, each with an even share of the time left.
async fn forward_udp(query: &[u8], config: &DnsConfig) -> Option<Vec<u8>> {
    let deadline = Instant::now() + config.forward_timeout;
    for (i, &up) in config.upstreams.iter().enumerate() {
        let share = deadline.saturating_duration_since(Instant::now()) / share_of(config, i);
        match timeout(share, udp_exchange(query, up)).await {
            Ok(Ok(r)) => return Some(r),
            Ok(Err(e)) => debug!(error = %e, upstream = %up, "forward failed"),
            Err(_) => debug!(upstream = %up, "forward timed out"),
        }
    }
    None
}

fn share_of(config: &DnsConfig, i: usize) -> u32 {
    u32::try_from(config.upstreams.len().saturating_sub(i).max(1)).unwrap_or(u32::MAX)
}

async fn udp_exchange(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let sock = UdpSocket::bind(any_of(upstream)).await?;
    sock.connect(upstream).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let len = sock.recv(&mut buf).await?;
        let reply = buf.get(..len).unwrap_or_default();
        if matches(query, reply) {
            return Ok(reply.to_vec());
        }
    }
}

async fn forward_tcp(query: &[u8], config: &DnsConfig) -> Option<Vec<u8>> {
    let deadline = Instant::now() + config.forward_timeout;
    for (i, &up) in config.upstreams.iter().enumerate() {
        let share = deadline.saturating_duration_since(Instant::now()) / share_of(config, i);
        match timeout(share, tcp_exchange(query, up)).await {
            Ok(Ok(r)) if matches(query, &r) => return Some(r),
            Ok(Ok(_)) => debug!(upstream = %up, "forward got a reply to another query"),
            Ok(Err(e)) => debug!(error = %e, upstream = %up, "forward failed"),
            Err(_) => debug!(upstream = %up, "forward timed out"),
        }
    }
    None
}

async fn tcp_exchange(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(upstream).await?;
    write_msg(&mut s, query).await?;
    read_msg(&mut s).await
}

/// Writes one length-prefixed message.
async fn write_msg(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    s.write_all(&framed).await
}

/// Reads one length-prefixed message.
async fn read_msg(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    let conns = Arc::new(Semaphore::new(MAX_TCP_CONNS));
    loop {
        let Ok(permit) = conns.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(
            async move {
                if let Err(e) = serve_conn(stream, &shared).await {
                    debug!(error = %e, %peer, "TCP connection ended");
                }
                drop(permit);
            }
            .in_current_span(),
        );
    }
}

/// Serves one TCP connection, a query at a time, until it goes idle.
async fn serve_conn(mut s: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut rng = StdRng::from_entropy();
    loop {
        let query = match timeout(TCP_IDLE_TIMEOUT, read_msg(&mut s)).await {
            Ok(Ok(q)) => q,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let reply = match shared.answer(&query, Transport::Tcp, &mut rng) {
            Outcome::Reply(r) => Some(r),
            Outcome::Drop => None,
            Outcome::Forward => forward_tcp(&query, &shared.config).await.or_else(|| servfail(&query)),
        };
        match reply {
            Some(r) => write_msg(&mut s, &r).await?,
            // Nothing to say to a peer that sends no DNS: hang up.
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
