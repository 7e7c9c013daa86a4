//! The ODP client: the one module that does generic netlink I/O.
//!
//! Requests and their replies go through neli's [`NlRouter`], which matches
//! replies to requests by sequence number. Upcalls and vport notifications are
//! unsolicited (sequence 0), so they arrive on plain sockets of their own
//! ([`UpcallSocket`], [`VportEvents`]) and are parsed by the pure code in
//! [`super::packet`] and [`super::frame`].
//!
//! Kernel quirks handled here:
//! - Some kernels answer a GET with a `*_CMD_NEW` header; replies are not
//!   required to carry the command that was sent.
//! - Creating an existing datapath or vport fails with EEXIST; callers that
//!   want idempotence use [`OdpClient::ensure_datapath`].
//! - `NLM_F_ECHO` is not used: the kernel echoes through `genl_notify`, whose
//!   unicast copy still carries the multicast group in its source address, so
//!   neli's router files it as a multicast message, not as our reply. Objects
//!   are read back with a GET instead (measured on Debian's 6.1 kernel).

use std::io::Cursor;

use neli::consts::nl::NlmF;
use neli::consts::socket::{Msg, NlFamily};
use neli::err::{DeError, RouterError, SerError};
use neli::nl::NlPayload;
use neli::router::synchronous::NlRouter;
use neli::socket::NlSocket;
use neli::utils::Groups;
use neli::{FromBytesWithInput, Size, ToBytes};
use ovs_sys as sys;
use thiserror::Error;

use super::action::Action;
use super::datapath::{self, Datapath};
use super::flow::Flow;
use super::frame::OvsFrame;
use super::key::KeyAttr;
use super::nla::WireError;
use super::packet::{self, PacketMsg, UpcallItem};
use super::vport::{Vport, VportOptions, VportType};

/// Errors from the ODP client.
#[derive(Debug, Error)]
pub enum OdpError {
    /// A generic netlink family is missing: the openvswitch module is not loaded
    /// (or the kernel was built without it).
    #[error("generic netlink family {0} not found (is the openvswitch kernel module loaded?)")]
    FamilyMissing(&'static str),
    /// The kernel refused an operation.
    #[error("{op}: {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel { op: String, errno: i32 },
    /// A reply we could not parse.
    #[error("{op}: malformed reply: {source}")]
    Wire { op: String, source: WireError },
    /// Socket-level failure.
    #[error("{op}: netlink: {msg}")]
    Netlink { op: String, msg: String },
}

impl OdpError {
    /// The positive errno of a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            OdpError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, OdpError>;

/// neli payload wrapper for [`OvsFrame`]: the genl + ovs headers and raw attributes.
#[derive(Debug, Clone)]
struct Payload(OvsFrame);

impl Size for Payload {
    fn unpadded_size(&self) -> usize {
        self.0.buffer_len()
    }
}

impl ToBytes for Payload {
    fn to_bytes(&self, buffer: &mut Cursor<Vec<u8>>) -> std::result::Result<(), SerError> {
        use std::io::Write;
        let mut b = Vec::with_capacity(self.0.buffer_len());
        self.0.emit(&mut b);
        buffer.write_all(&b)?;
        Ok(())
    }
}

impl FromBytesWithInput for Payload {
    type Input = usize;
    fn from_bytes_with_input(
        buffer: &mut Cursor<impl AsRef<[u8]>>,
        input: usize,
    ) -> std::result::Result<Self, DeError> {
        let start = buffer.position() as usize;
        let all = buffer.get_ref().as_ref();
        let end = start.checked_add(input).filter(|&e| e <= all.len()).ok_or(DeError::InvalidInput(input))?;
        let frame = OvsFrame::parse(&all[start..end]).map_err(|e| DeError::new(e.to_string()))?;
        buffer.set_position(end as u64);
        Ok(Payload(frame))
    }
}

/// Resolved generic netlink family ids.
#[derive(Debug, Clone, Copy)]
pub struct Families {
    pub datapath: u16,
    pub vport: u16,
    pub flow: u16,
    pub packet: u16,
    /// The `ovs_vport` multicast group for vport notifications.
    pub vport_mcgroup: Option<u32>,
}

fn fam_name(c: &std::ffi::CStr) -> &'static str {
    match c.to_str() {
        Ok("ovs_datapath") => "ovs_datapath",
        Ok("ovs_vport") => "ovs_vport",
        Ok("ovs_flow") => "ovs_flow",
        Ok("ovs_packet") => "ovs_packet",
        _ => "ovs_?",
    }
}

fn gone(op: &str) -> OdpError {
    OdpError::Netlink { op: op.to_string(), msg: "object vanished right after the kernel acknowledged it".into() }
}

fn router_err<T: std::fmt::Debug, P: std::fmt::Debug>(op: &str, e: RouterError<T, P>) -> OdpError {
    match e {
        RouterError::Nlmsgerr(m) => OdpError::Kernel { op: op.to_string(), errno: -*m.error() },
        RouterError::De(d) => OdpError::Netlink { op: op.to_string(), msg: format!("decode: {d}") },
        other => OdpError::Netlink { op: op.to_string(), msg: other.to_string() },
    }
}

/// Flags for a datapath create.
#[derive(Debug, Clone, Copy, Default)]
pub struct DpFeatures {
    pub bits: u32,
}

impl DpFeatures {
    /// What weaver asks for: unaligned last attribute and per-vport upcall PIDs.
    pub fn weaver_default() -> Self {
        DpFeatures { bits: datapath::F_UNALIGNED | datapath::F_VPORT_PIDS }
    }
}

/// A client for the four ODP families.
pub struct OdpClient {
    router: NlRouter,
    fams: Families,
}

impl std::fmt::Debug for OdpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdpClient").field("fams", &self.fams).field("pid", &self.router.pid()).finish()
    }
}

const DP_VERSION: u8 = sys::OVS_DATAPATH_VERSION as u8;
const VPORT_VERSION: u8 = sys::OVS_VPORT_VERSION as u8;
const FLOW_VERSION: u8 = sys::OVS_FLOW_VERSION as u8;
const PACKET_VERSION: u8 = sys::OVS_PACKET_VERSION as u8;

/// The four commands every family shares (`*_CMD_NEW/DEL/GET/SET` are 1..4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    New = 1,
    Del = 2,
    Get = 3,
    Set = 4,
}

impl OdpClient {
    /// Opens a generic netlink socket and resolves the ODP families.
    pub fn connect() -> Result<Self> {
        let (router, _mcast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .map_err(|e| OdpError::Netlink { op: "connect".into(), msg: e.to_string() })?;
        let resolve = |c: &std::ffi::CStr| -> Result<u16> {
            let name = c.to_str().unwrap_or_default();
            router.resolve_genl_family(name).map_err(|e| match e {
                RouterError::Nlmsgerr(m) if *m.error() == -libc::ENOENT => OdpError::FamilyMissing(fam_name(c)),
                RouterError::Msg(_) => OdpError::FamilyMissing(fam_name(c)),
                other => router_err("resolve family", other),
            })
        };
        let fams = Families {
            datapath: resolve(sys::OVS_DATAPATH_FAMILY)?,
            vport: resolve(sys::OVS_VPORT_FAMILY)?,
            flow: resolve(sys::OVS_FLOW_FAMILY)?,
            packet: resolve(sys::OVS_PACKET_FAMILY)?,
            vport_mcgroup: router
                .resolve_nl_mcast_group(
                    sys::OVS_VPORT_FAMILY.to_str().unwrap_or_default(),
                    sys::OVS_VPORT_MCGROUP.to_str().unwrap_or_default(),
                )
                .ok(),
        };
        Ok(OdpClient { router, fams })
    }

    pub fn families(&self) -> Families {
        self.fams
    }

    /// Sends one request and collects the payloads of its replies.
    fn request(&self, op: &str, family: u16, flags: NlmF, frame: OvsFrame) -> Result<Vec<OvsFrame>> {
        let recv = self
            .router
            .send::<u16, Payload, u16, Payload>(family, flags, NlPayload::Payload(Payload(frame)))
            .map_err(|e| router_err(op, e))?;
        let mut out = Vec::new();
        for msg in recv {
            let msg = msg.map_err(|e| router_err(op, e))?;
            tracing::trace!(op, kind = *msg.nl_type(), flags = ?msg.nl_flags(), seq = *msg.nl_seq(), payload = ?msg.nl_payload(), "netlink reply");
            if let NlPayload::Payload(p) = msg.nl_payload() {
                // Quirk: the reply's cmd may be *_CMD_NEW for a GET; accept any.
                out.push(p.0.clone());
            }
        }
        Ok(out)
    }

    fn one(&self, op: &str, family: u16, flags: NlmF, frame: OvsFrame) -> Result<OvsFrame> {
        self.request(op, family, flags, frame)?
            .into_iter()
            .next()
            .ok_or_else(|| OdpError::Netlink { op: op.to_string(), msg: "no reply".into() })
    }

    fn wire<T>(op: &str, r: std::result::Result<T, WireError>) -> Result<T> {
        r.map_err(|source| OdpError::Wire { op: op.to_string(), source })
    }

    // ---- datapath ----

    /// Creates a datapath. `upcall_pid` receives misses for ports created
    /// without PIDs of their own.
    pub fn create_datapath(&self, name: &str, upcall_pid: u32, features: DpFeatures) -> Result<Datapath> {
        let req = Datapath {
            name: Some(name.into()),
            upcall_pid: Some(upcall_pid),
            user_features: Some(features.bits),
            ..Default::default()
        };
        let op = format!("create datapath {name}");
        self.request(
            &op,
            self.fams.datapath,
            NlmF::ACK,
            OvsFrame { cmd: Cmd::New as u8, version: DP_VERSION, dp_ifindex: 0, attrs: req.emit_attrs() },
        )?;
        self.get_datapath(name)?.ok_or_else(|| gone(&op))
    }

    /// Sets the user features (and optionally per-CPU upcall PIDs) of a datapath.
    pub fn set_datapath(&self, name: &str, features: DpFeatures, per_cpu_pids: Option<Vec<u32>>) -> Result<Datapath> {
        let req = Datapath {
            name: Some(name.into()),
            user_features: Some(features.bits),
            per_cpu_pids,
            ..Default::default()
        };
        let op = format!("set datapath {name}");
        self.request(
            &op,
            self.fams.datapath,
            NlmF::ACK,
            OvsFrame { cmd: Cmd::Set as u8, version: DP_VERSION, dp_ifindex: 0, attrs: req.emit_attrs() },
        )?;
        self.get_datapath(name)?.ok_or_else(|| gone(&op))
    }

    pub fn delete_datapath(&self, name: &str) -> Result<()> {
        let req = Datapath { name: Some(name.into()), ..Default::default() };
        self.request(
            &format!("delete datapath {name}"),
            self.fams.datapath,
            NlmF::ACK,
            OvsFrame { cmd: Cmd::Del as u8, version: DP_VERSION, dp_ifindex: 0, attrs: req.emit_attrs() },
        )?;
        Ok(())
    }

    /// Gets a datapath by name. `Ok(None)` if there is none (ENODEV).
    pub fn get_datapath(&self, name: &str) -> Result<Option<Datapath>> {
        let req = Datapath { name: Some(name.into()), ..Default::default() };
        let op = format!("get datapath {name}");
        match self.one(
            &op,
            self.fams.datapath,
            NlmF::ACK,
            OvsFrame { cmd: Cmd::Get as u8, version: DP_VERSION, dp_ifindex: 0, attrs: req.emit_attrs() },
        ) {
            Ok(f) => Self::wire(&op, Datapath::parse(f.dp_ifindex, &f.attrs)).map(Some),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn dump_datapaths(&self) -> Result<Vec<Datapath>> {
        let op = "dump datapaths";
        let frames = self.request(
            op,
            self.fams.datapath,
            NlmF::DUMP,
            OvsFrame { cmd: Cmd::Get as u8, version: DP_VERSION, dp_ifindex: 0, attrs: vec![] },
        )?;
        frames.iter().map(|f| Self::wire(op, Datapath::parse(f.dp_ifindex, &f.attrs))).collect()
    }

    /// Returns the datapath `name`, creating it if needed. Per-CPU upcall
    /// dispatch is not requested here; see [`Self::set_datapath`].
    pub fn ensure_datapath(&self, name: &str, upcall_pid: u32, features: DpFeatures) -> Result<Datapath> {
        match self.create_datapath(name, upcall_pid, features) {
            Err(e) if e.errno() == Some(libc::EEXIST) => self.set_datapath(name, features, None),
            r => r,
        }
    }

    // ---- vport ----

    /// Creates a vport. `upcall_pids` may be empty for "no upcalls".
    pub fn create_vport(
        &self,
        dp_ifindex: i32,
        name: &str,
        kind: VportType,
        options: Option<VportOptions>,
        upcall_pids: Vec<u32>,
    ) -> Result<Vport> {
        let mut req = Vport::new(dp_ifindex);
        req.name = Some(name.into());
        req.kind = Some(kind);
        req.options = options;
        req.upcall_pids = Some(if upcall_pids.is_empty() { vec![0] } else { upcall_pids });
        let op = format!("create vport {name}");
        self.request(
            &op,
            self.fams.vport,
            NlmF::ACK,
            OvsFrame { cmd: Cmd::New as u8, version: VPORT_VERSION, dp_ifindex, attrs: req.emit_attrs() },
        )?;
        self.get_vport(name)?.ok_or_else(|| gone(&op))
    }

    pub fn delete_vport(&self, dp_ifindex: i32, port_no: u32) -> Result<()> {
        let mut req = Vport::new(dp_ifindex);
        req.port_no = Some(port_no);
        self.request(
            &format!("delete vport {port_no}"),
            self.fams.vport,
            NlmF::ACK,
            OvsFrame { cmd: Cmd::Del as u8, version: VPORT_VERSION, dp_ifindex, attrs: req.emit_attrs() },
        )?;
        Ok(())
    }

    /// Gets a vport by name (which is global to the namespace).
    pub fn get_vport(&self, name: &str) -> Result<Option<Vport>> {
        let mut req = Vport::new(0);
        req.name = Some(name.into());
        let op = format!("get vport {name}");
        match self.one(
            &op,
            self.fams.vport,
            NlmF::ACK,
            OvsFrame { cmd: Cmd::Get as u8, version: VPORT_VERSION, dp_ifindex: 0, attrs: req.emit_attrs() },
        ) {
            Ok(f) => Self::wire(&op, Vport::parse(f.dp_ifindex, &f.attrs)).map(Some),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn dump_vports(&self, dp_ifindex: i32) -> Result<Vec<Vport>> {
        let op = "dump vports";
        let frames = self.request(
            op,
            self.fams.vport,
            NlmF::DUMP,
            OvsFrame { cmd: Cmd::Get as u8, version: VPORT_VERSION, dp_ifindex, attrs: vec![] },
        )?;
        let mut v: Vec<Vport> =
            frames.iter().map(|f| Self::wire(op, Vport::parse(f.dp_ifindex, &f.attrs))).collect::<Result<_>>()?;
        v.sort_by_key(|p| p.port_no);
        Ok(v)
    }

    /// Sets the upcall PIDs of a port.
    pub fn set_vport_upcall_pids(&self, dp_ifindex: i32, port_no: u32, pids: Vec<u32>) -> Result<Vport> {
        let mut req = Vport::new(dp_ifindex);
        req.port_no = Some(port_no);
        req.upcall_pids = Some(pids);
        let op = format!("set vport {port_no}");
        self.request(
            &op,
            self.fams.vport,
            NlmF::ACK,
            OvsFrame { cmd: Cmd::Set as u8, version: VPORT_VERSION, dp_ifindex, attrs: req.emit_attrs() },
        )?;
        self.get_vport_by_number(dp_ifindex, port_no)?.ok_or_else(|| gone(&op))
    }

    /// Gets a vport by datapath and port number.
    pub fn get_vport_by_number(&self, dp_ifindex: i32, port_no: u32) -> Result<Option<Vport>> {
        let mut req = Vport::new(dp_ifindex);
        req.port_no = Some(port_no);
        let op = format!("get vport {port_no}");
        match self.one(
            &op,
            self.fams.vport,
            NlmF::ACK,
            OvsFrame { cmd: Cmd::Get as u8, version: VPORT_VERSION, dp_ifindex, attrs: req.emit_attrs() },
        ) {
            Ok(f) => Self::wire(&op, Vport::parse(f.dp_ifindex, &f.attrs)).map(Some),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ---- flow ----

    fn flow_op(&self, op: &str, cmd: Cmd, flags: NlmF, flow: &Flow) -> Result<Vec<Flow>> {
        let frames = self.request(
            op,
            self.fams.flow,
            flags,
            OvsFrame { cmd: cmd as u8, version: FLOW_VERSION, dp_ifindex: flow.dp_ifindex, attrs: flow.emit_attrs() },
        )?;
        frames.iter().map(|f| Self::wire(op, Flow::parse(f.dp_ifindex, &f.attrs))).collect()
    }

    /// Installs a new flow (key, optional mask, actions). EEXIST if it exists.
    pub fn new_flow(&self, flow: &Flow) -> Result<()> {
        self.flow_op("new flow", Cmd::New, NlmF::ACK | NlmF::CREATE | NlmF::EXCL, flow).map(|_| ())
    }

    /// Changes a flow's actions and/or clears its statistics (`flow.clear`).
    pub fn set_flow(&self, flow: &Flow) -> Result<()> {
        self.flow_op("set flow", Cmd::Set, NlmF::ACK, flow).map(|_| ())
    }

    /// Deletes the flow with this key (or UFID).
    pub fn del_flow(&self, dp_ifindex: i32, key: Vec<KeyAttr>, ufid: Option<Vec<u8>>) -> Result<()> {
        let f = Flow { dp_ifindex, key, ufid, ..Default::default() };
        self.flow_op("delete flow", Cmd::Del, NlmF::ACK, &f).map(|_| ())
    }

    /// Deletes every flow of the datapath.
    pub fn flush_flows(&self, dp_ifindex: i32) -> Result<()> {
        let f = Flow { dp_ifindex, ..Default::default() };
        self.flow_op("flush flows", Cmd::Del, NlmF::ACK, &f).map(|_| ())
    }

    /// Gets one flow by key (or UFID).
    pub fn get_flow(&self, dp_ifindex: i32, key: Vec<KeyAttr>, ufid: Option<Vec<u8>>) -> Result<Option<Flow>> {
        let f = Flow { dp_ifindex, key, ufid, ..Default::default() };
        match self.flow_op("get flow", Cmd::Get, NlmF::ACK, &f) {
            Ok(v) => Ok(v.into_iter().next()),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn dump_flows(&self, dp_ifindex: i32) -> Result<Vec<Flow>> {
        let f = Flow { dp_ifindex, ..Default::default() };
        self.flow_op("dump flows", Cmd::Get, NlmF::DUMP, &f)
    }

    // ---- packet ----

    /// Runs `actions` on `packet`, with `key` giving its metadata (at least in_port).
    pub fn execute(&self, dp_ifindex: i32, packet: Vec<u8>, key: Vec<KeyAttr>, actions: Vec<Action>) -> Result<()> {
        let msg = PacketMsg { dp_ifindex, packet, key, actions: Some(actions), ..Default::default() };
        self.request(
            "execute packet",
            self.fams.packet,
            NlmF::ACK,
            OvsFrame { cmd: packet::CMD_EXECUTE, version: PACKET_VERSION, dp_ifindex, attrs: msg.emit_attrs() },
        )?;
        Ok(())
    }
}

/// The receive buffer of each upcall socket.
const UPCALL_RCVBUF: usize = 8 << 20;

/// A netlink socket that receives upcalls. Its port id goes into the
/// datapath's and vports' upcall PIDs.
pub struct UpcallSocket {
    sock: NlSocket,
    packet_family: u16,
    buf: Vec<u8>,
}

impl UpcallSocket {
    pub fn open(fams: &Families) -> Result<Self> {
        let err = |e: std::io::Error| OdpError::Netlink { op: "upcall socket".into(), msg: e.to_string() };
        let sock = NlSocket::connect(NlFamily::Generic, None, Groups::empty()).map_err(err)?;
        // A burst of misses must not end the socket's life with ENOBUFS: a
        // full buffer drops upcalls (the kernel counts them as lost, and
        // `dp show` shows them) instead of failing the next read.
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        crate::sockopt::set_int(fd, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1).map_err(err)?;
        // Beyond rmem_max when we may (CAP_NET_ADMIN), else as much as allowed.
        if crate::sockopt::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, UPCALL_RCVBUF as libc::c_int).is_err() {
            sock.set_recv_buffer_size(UPCALL_RCVBUF).map_err(err)?;
        }
        Ok(UpcallSocket { sock, packet_family: fams.packet, buf: vec![0; 1 << 16] })
    }

    /// The socket's netlink port id (not the process id).
    pub fn port_id(&self) -> Result<u32> {
        self.sock.pid().map_err(|e| OdpError::Netlink { op: "upcall socket pid".into(), msg: e.to_string() })
    }

    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        let r = if on { self.sock.nonblock() } else { self.sock.block() };
        r.map_err(|e| OdpError::Netlink { op: "upcall socket".into(), msg: e.to_string() })
    }

    /// Receives one datagram and parses the upcalls in it.
    /// Returns an empty list if a non-blocking socket has nothing.
    pub fn recv(&mut self) -> Result<Vec<std::result::Result<UpcallItem, WireError>>> {
        match self.sock.recv(&mut self.buf[..], Msg::empty()) {
            Ok((n, _)) => Ok(packet::parse_upcalls(&self.buf[..n.min(self.buf.len())], self.packet_family)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(vec![]),
            Err(e) => Err(OdpError::Netlink { op: "receive upcall".into(), msg: e.to_string() }),
        }
    }
}

impl std::os::fd::AsRawFd for UpcallSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }
}

/// A socket for the miss path: flow installs, deletes and packet executes
/// sent without waiting for the kernel, so that handling a miss costs two
/// system calls and no round trip through a router thread. The kernel still
/// answers failures (it sends `NLMSG_ERROR` for an error even without
/// `NLM_F_ACK`); [`OpSocket::drain_errors`] collects them, by sequence
/// number, without blocking.
pub struct OpSocket {
    sock: NlSocket,
    fams: Families,
    pid: u32,
    seq: u32,
    buf: Vec<u8>,
}

impl OpSocket {
    pub fn open(fams: &Families) -> Result<Self> {
        let err = |e: std::io::Error| OdpError::Netlink { op: "operation socket".into(), msg: e.to_string() };
        let sock = NlSocket::connect(NlFamily::Generic, None, Groups::empty()).map_err(err)?;
        sock.nonblock().map_err(err)?;
        let pid = sock.pid().map_err(err)?;
        Ok(OpSocket { sock, fams: *fams, pid, seq: 0, buf: vec![0; 1 << 16] })
    }

    fn send(&mut self, op: &str, family: u16, frame: &OvsFrame) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let flags = u16::from(NlmF::REQUEST);
        let msg = super::frame::emit_message(family, flags, self.seq, self.pid, frame);
        self.sock.send(&msg, Msg::empty()).map_err(|e| OdpError::Netlink { op: op.to_string(), msg: e.to_string() })?;
        Ok(self.seq)
    }

    /// Installs a flow, or replaces the actions of an existing one with the
    /// same key (no `NLM_F_CREATE`/`NLM_F_EXCL`: the kernel updates in place).
    /// Returns the request's sequence number.
    pub fn put_flow(&mut self, flow: &Flow) -> Result<u32> {
        let f = OvsFrame {
            cmd: Cmd::New as u8,
            version: FLOW_VERSION,
            dp_ifindex: flow.dp_ifindex,
            attrs: flow.emit_attrs(),
        };
        self.send("put flow", self.fams.flow, &f)
    }

    /// Deletes the flow with this key.
    pub fn del_flow(&mut self, dp_ifindex: i32, key: Vec<KeyAttr>) -> Result<u32> {
        let flow = Flow { dp_ifindex, key, ..Default::default() };
        let f = OvsFrame { cmd: Cmd::Del as u8, version: FLOW_VERSION, dp_ifindex, attrs: flow.emit_attrs() };
        self.send("delete flow", self.fams.flow, &f)
    }

    /// Executes actions on a packet.
    pub fn execute(
        &mut self,
        dp_ifindex: i32,
        packet: Vec<u8>,
        key: Vec<KeyAttr>,
        actions: Vec<Action>,
    ) -> Result<u32> {
        let msg = PacketMsg { dp_ifindex, packet, key, actions: Some(actions), ..Default::default() };
        let f = OvsFrame { cmd: packet::CMD_EXECUTE, version: PACKET_VERSION, dp_ifindex, attrs: msg.emit_attrs() };
        self.send("execute packet", self.fams.packet, &f)
    }

    /// The failures the kernel reported since the last call: (sequence
    /// number, errno). Never blocks.
    pub fn drain_errors(&mut self) -> Vec<(u32, i32)> {
        let mut out = Vec::new();
        loop {
            let n = match self.sock.recv(&mut self.buf[..], Msg::empty()) {
                Ok((n, _)) => n.min(self.buf.len()),
                Err(_) => return out,
            };
            for m in super::frame::split_messages(&self.buf[..n]).flatten() {
                if m.kind == super::frame::NLMSG_ERROR {
                    if let Ok(code) = m.error_code() {
                        if code != 0 {
                            out.push((m.seq, -code));
                        }
                    }
                }
            }
        }
    }
}

/// A vport change announced on the `ovs_vport` multicast group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VportEvent {
    /// `OVS_VPORT_CMD_NEW`, `_DEL` or `_SET`.
    pub cmd: u8,
    pub vport: Vport,
}

/// Subscribes to vport notifications.
pub struct VportEvents {
    sock: NlSocket,
    vport_family: u16,
    buf: Vec<u8>,
}

impl VportEvents {
    pub fn open(fams: &Families) -> Result<Self> {
        let err = |e: std::io::Error| OdpError::Netlink { op: "vport events".into(), msg: e.to_string() };
        let group = fams.vport_mcgroup.ok_or_else(|| OdpError::Netlink {
            op: "vport events".into(),
            msg: "kernel has no ovs_vport multicast group".into(),
        })?;
        let sock = NlSocket::connect(NlFamily::Generic, None, Groups::empty()).map_err(err)?;
        sock.add_mcast_membership(Groups::new_groups(&[group])).map_err(err)?;
        Ok(VportEvents { sock, vport_family: fams.vport, buf: vec![0; 1 << 16] })
    }

    pub fn set_nonblocking(&self, on: bool) -> Result<()> {
        let r = if on { self.sock.nonblock() } else { self.sock.block() };
        r.map_err(|e| OdpError::Netlink { op: "vport events".into(), msg: e.to_string() })
    }

    /// Receives one datagram of notifications.
    pub fn recv(&mut self) -> Result<Vec<VportEvent>> {
        let n = match self.sock.recv(&mut self.buf[..], Msg::empty()) {
            Ok((n, _)) => n.min(self.buf.len()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(vec![]),
            Err(e) => return Err(OdpError::Netlink { op: "receive vport event".into(), msg: e.to_string() }),
        };
        parse_vport_events(&self.buf[..n], self.vport_family)
            .map_err(|source| OdpError::Wire { op: "vport event".into(), source })
    }
}

/// Parses a datagram of `ovs_vport` notifications; other messages are skipped.
pub fn parse_vport_events(buf: &[u8], vport_family: u16) -> std::result::Result<Vec<VportEvent>, WireError> {
    let mut out = Vec::new();
    for m in super::frame::split_messages(buf) {
        let m = m?;
        if m.kind != vport_family {
            continue;
        }
        let f = OvsFrame::parse(m.payload)?;
        out.push(VportEvent { cmd: f.cmd, vport: Vport::parse(f.dp_ifindex, &f.attrs)? });
    }
    Ok(out)
}
