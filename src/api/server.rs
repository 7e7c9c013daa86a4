//! API routes over what the daemon owns: the datapath and the mesh.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::handle::{MeshGone, MeshHandle};
use super::{
    monotonic_ms, ApiError, AttachError, AttachRequest, AttachView, ConnectRequest, ConnectionView, DatapathView,
    DetachRequest, FlowsView, ForgetRequest, PeerView, Status, StopRequest,
};
use crate::odp::socket::{OdpClient, OdpError};

/// What the handlers read.
pub struct AppState {
    pub status: Status,
    /// The kernel client, present when the daemon runs the fast datapath.
    pub odp: Option<Arc<OdpClient>>,
    pub datapath: Option<String>,
    /// The mesh task, when the daemon runs one.
    pub mesh: Option<MeshHandle>,
    /// The fast-datapath driver, when the kernel datapath is in use.
    pub dataplane: Option<crate::daemon::dataplane::DataplaneHandle>,
    /// The sleeve, when it runs.
    pub sleeve: Option<crate::daemon::sleeve::SleeveHandle>,
    /// Asks the daemon to stop (`weavectl stop`).
    pub stop: tokio::sync::mpsc::Sender<StopRequest>,
    /// IPAM's range, when IPAM is on.
    pub ipam_range: Option<ipnet::Ipv4Net>,
    /// weaveDNS's domain, when DNS is on.
    pub dns_domain: Option<hickory_proto::rr::Name>,
    /// The host's interface on the overlay (where `expose` puts addresses).
    pub overlay_ifname: Option<String>,
    /// The state directory.
    pub state_dir: std::path::PathBuf,
}

struct Failure(StatusCode, String);

/// A JSON request body; a body that is not JSON, or not the request's
/// shape, is answered with a JSON error (400, 415 or 422) naming what is
/// wrong, like every other error.
struct ApiJson<T>(T);

impl<S, T> axum::extract::FromRequest<S> for ApiJson<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(Failure(r.status(), r.body_text())),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<OdpError> for Failure {
    fn from(e: OdpError) -> Self {
        Failure(StatusCode::BAD_GATEWAY, e.to_string())
    }
}

impl From<AttachError> for Failure {
    fn from(e: AttachError) -> Self {
        let code = match &e {
            AttachError::Invalid(_) => StatusCode::BAD_REQUEST,
            AttachError::NotFound(_) => StatusCode::NOT_FOUND,
            AttachError::Conflict(_) => StatusCode::CONFLICT,
            AttachError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AttachError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(code, e.to_string())
    }
}

impl From<MeshGone> for Failure {
    fn from(e: MeshGone) -> Self {
        Failure(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

/// Only `/metrics`, for `--metrics-address`.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { Failure(StatusCode::NOT_FOUND, "only /metrics is served here".into()) })
        .with_state(state)
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/datapath", get(datapath))
        .route("/v1/flows", get(flows))
        .route("/v1/peers", get(peers))
        .route("/v1/connections", get(connections))
        .route("/v1/connect", post(connect))
        .route("/v1/forget", post(forget))
        .route("/v1/attach", post(attach))
        .route("/v1/detach", post(detach))
        .route("/v1/stop", post(stop))
        .route("/v1/ipam", get(ipam_status))
        .route("/v1/rmpeer", post(rmpeer))
        .route("/v1/ps", get(ps))
        .route("/v1/expose", post(expose))
        .route("/v1/hide", post(hide))
        .route("/v1/dns", get(dns_lookup))
        .route("/v1/dns/add", post(dns_add))
        .route("/v1/dns/remove", post(dns_remove))
        .route("/metrics", get(metrics))
        .fallback(|| async { Failure(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            Failure(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
        })
        .with_state(state)
}

fn mesh(s: &AppState) -> Result<&MeshHandle, Failure> {
    s.mesh.as_ref().ok_or_else(|| Failure(StatusCode::CONFLICT, "this daemon runs no mesh".into()))
}

async fn status(State(s): State<Arc<AppState>>) -> Result<Json<Status>, Failure> {
    let mut st = s.status.clone();
    if let Some(m) = &s.mesh {
        st.mesh = Some(m.status().await?);
    }
    let dp = datapath_stats(&s).await;
    st.upcalls = upcall_stats(&s, dp.as_ref());
    st.sleeve = s.sleeve.as_ref().map(|h| h.stats());
    Ok(Json(st))
}

/// The upcall counters, with the kernel's count of upcalls it could not
/// deliver (from the datapath's stats, when there is a datapath).
fn upcall_stats(
    s: &AppState,
    dp: Option<&crate::odp::datapath::DpStats>,
) -> Option<crate::daemon::upcalls::UpcallStatsView> {
    s.dataplane.as_ref()?.upcall_stats(dp.map(|st| st.lost))
}

/// The kernel datapath's lookup and flow counts, in fast-datapath mode.
async fn datapath_stats(s: &AppState) -> Option<crate::odp::datapath::DpStats> {
    let (c, name) = fastdp(s).ok()?;
    tokio::task::spawn_blocking(move || c.get_datapath(&name)).await.ok()?.ok().flatten()?.stats
}

/// Stops the daemon; with `reset`, detaches every container first.
async fn stop(State(s): State<Arc<AppState>>, ApiJson(r): ApiJson<StopRequest>) -> Result<Json<()>, Failure> {
    if r.reset {
        if let Some(d) = &s.dataplane {
            d.detach_all().await;
        }
    }
    s.stop.send(r).await.map_err(|_| Failure(StatusCode::SERVICE_UNAVAILABLE, "already stopping".into()))?;
    Ok(Json(()))
}

async fn peers(State(s): State<Arc<AppState>>) -> Result<Json<Vec<PeerView>>, Failure> {
    Ok(Json(mesh(&s)?.peers().await?))
}

async fn connections(State(s): State<Arc<AppState>>) -> Result<Json<Vec<ConnectionView>>, Failure> {
    Ok(Json(mesh(&s)?.connections().await?))
}

async fn connect(State(s): State<Arc<AppState>>, ApiJson(r): ApiJson<ConnectRequest>) -> Result<Json<()>, Failure> {
    mesh(&s)?.connect(r).await?.map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(()))
}

async fn forget(State(s): State<Arc<AppState>>, ApiJson(r): ApiJson<ForgetRequest>) -> Result<Json<()>, Failure> {
    mesh(&s)?.forget(r).await?.map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(()))
}

fn dataplane(s: &AppState) -> Result<&crate::daemon::dataplane::DataplaneHandle, Failure> {
    s.dataplane.as_ref().ok_or_else(|| {
        Failure(
            StatusCode::CONFLICT,
            format!(
                "this daemon attaches no containers: it runs neither the fast datapath nor the sleeve ({})",
                s.status.reason
            ),
        )
    })
}

async fn attach(
    State(s): State<Arc<AppState>>,
    ApiJson(mut r): ApiJson<AttachRequest>,
) -> Result<Json<AttachView>, Failure> {
    let dp = dataplane(&s)?;
    let bad = |e| Failure(StatusCode::BAD_REQUEST, e);
    let wanted = super::ipam::parse_wanted(&r.cidrs).map_err(bad)?;
    let resolved = super::target::resolve(&r.target).await?;
    // Attached already: the same, nothing to do; else refused, before
    // IPAM allocates anything.
    if let Some(v) = dp.check(resolved.target.clone(), r.cidrs.clone()).await? {
        return Ok(Json(v));
    }
    // The DNS name: given, the Docker container's, or the namespace's name.
    let default = resolved.name.or_else(|| super::dns::default_name(&r.target));
    r.target = resolved.target;
    let dns_name = match (&s.dns_domain, &r.name) {
        (Some(d), Some(n)) => Some(crate::dns::name_in(n, d).map_err(|e| bad(e.to_string()))?.to_ascii()),
        (Some(d), None) => default.and_then(|n| crate::dns::name_in(&n, d).ok()).map(|n| n.to_ascii()),
        (None, _) => None,
    };
    let (cidrs, new) = super::ipam::resolve(s.mesh.as_ref(), s.ipam_range, &r.target, &wanted).await?;
    r.cidrs = cidrs;
    match dp.attach(r.clone()).await {
        Ok(v) => {
            if let (Some(name), Some(m)) = (dns_name, s.mesh.as_ref()) {
                super::dns::register(m, &r.target, &name, &v.cidrs).await;
            }
            Ok(Json(v))
        }
        Err(e) => {
            // Nothing is kept of a failed attach.
            super::ipam::release(s.mesh.as_ref(), &r.target, Some(new)).await;
            Err(e.into())
        }
    }
}

/// Addresses from a request, or a 400 naming the first bad one.
fn parse_cidrs(list: &[String]) -> Result<Vec<ipnet::IpNet>, Failure> {
    list.iter()
        .map(|c| c.parse::<ipnet::IpNet>().map_err(|e| format!("invalid address {c:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e))
}

/// Detaches a container, or only some of its addresses. Idempotent: what
/// is not attached is reported as such, not refused.
async fn detach(
    State(s): State<Arc<AppState>>,
    ApiJson(mut r): ApiJson<DetachRequest>,
) -> Result<Json<super::DetachView>, Failure> {
    let cidrs = parse_cidrs(&r.cidrs)?;
    // A Docker container by its namespace; a namespace already gone as given.
    if let Ok(t) = super::target::resolve(&r.target).await {
        r.target = t.target;
    }
    let v = dataplane(&s)?
        .detach(r.target.clone(), cidrs.clone())
        .await
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    // Its DNS records go with it, or those of the detached addresses.
    let only = if cidrs.is_empty() {
        super::ipam::release(s.mesh.as_ref(), &r.target, None).await;
        None
    } else {
        let v4: Vec<ipnet::Ipv4Net> =
            cidrs.iter().filter_map(|c| if let ipnet::IpNet::V4(n) = c { Some(*n) } else { None }).collect();
        let addrs = v4.iter().map(|n| n.addr()).collect();
        super::ipam::release(s.mesh.as_ref(), &r.target, Some(v4)).await;
        Some(addrs)
    };
    if let (Some(m), Some(_)) = (s.mesh.as_ref(), &s.dns_domain) {
        let container = r.target.clone();
        let _ = m.dns(|tx| crate::daemon::dns::DnsRequest::RemoveContainer { container, only, tx }).await;
    }
    Ok(Json(v))
}

/// The attached containers, as the dataplane last recorded them.
async fn ps(State(s): State<Arc<AppState>>) -> Result<Json<Vec<crate::daemon::attachments::Saved>>, Failure> {
    dataplane(&s)?;
    Ok(Json(crate::daemon::attachments::load(&s.state_dir)))
}

async fn expose(
    State(s): State<Arc<AppState>>,
    ApiJson(r): ApiJson<super::ExposeRequest>,
) -> Result<Json<Vec<String>>, Failure> {
    use crate::daemon::expose::{self, EXPOSE};
    let bad = |e| Failure(StatusCode::BAD_REQUEST, e);
    let ifname = s.overlay_ifname.clone().ok_or_else(|| {
        Failure(StatusCode::CONFLICT, format!("no overlay interface to expose the host on ({})", s.status.reason))
    })?;
    let wanted = super::ipam::parse_wanted(&r.cidrs).map_err(bad)?;
    let (cidrs, new) = super::ipam::resolve(s.mesh.as_ref(), s.ipam_range, EXPOSE, &wanted).await?;
    let addrs: Vec<ipnet::IpNet> = cidrs.iter().filter_map(|c| c.parse().ok()).collect();
    if let Err(e) = expose::expose(&s.state_dir, &ifname, &addrs).await {
        super::ipam::release(s.mesh.as_ref(), EXPOSE, Some(new)).await;
        return Err(Failure(StatusCode::INTERNAL_SERVER_ERROR, e));
    }
    Ok(Json(cidrs))
}

async fn hide(
    State(s): State<Arc<AppState>>,
    ApiJson(r): ApiJson<super::ExposeRequest>,
) -> Result<Json<Vec<String>>, Failure> {
    use crate::daemon::expose::{self, EXPOSE};
    let ifname = s.overlay_ifname.clone().ok_or_else(|| Failure(StatusCode::CONFLICT, "nothing is exposed".into()))?;
    let addrs = parse_cidrs(&r.cidrs)?;
    let gone =
        expose::hide(&s.state_dir, &ifname, &addrs).await.map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let v4: Vec<ipnet::Ipv4Net> = gone
        .iter()
        .filter_map(|a| match a {
            ipnet::IpNet::V4(n) => Some(*n),
            _ => None,
        })
        .collect();
    super::ipam::release(s.mesh.as_ref(), EXPOSE, Some(v4)).await;
    Ok(Json(gone.iter().map(ToString::to_string).collect()))
}

async fn dns_lookup(
    State(s): State<Arc<AppState>>,
    axum::extract::Query(q): axum::extract::Query<super::DnsQuery>,
) -> Result<Json<Vec<crate::daemon::dns::DnsEntryView>>, Failure> {
    let name = q.name.unwrap_or_default();
    let v = mesh(&s)?
        .dns(|tx| crate::daemon::dns::DnsRequest::Lookup { name, tx })
        .await?
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(v))
}

async fn dns_add(
    State(s): State<Arc<AppState>>,
    ApiJson(r): ApiJson<super::DnsChange>,
) -> Result<Json<usize>, Failure> {
    if r.addrs.is_empty() {
        return Err(Failure(StatusCode::BAD_REQUEST, "no address to add".into()));
    }
    let container = r.container.unwrap_or_else(|| crate::daemon::dns::MANUAL.into());
    let n = mesh(&s)?
        .dns(|tx| crate::daemon::dns::DnsRequest::Add { container, name: r.name, addrs: r.addrs, tx })
        .await?
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(n))
}

async fn dns_remove(
    State(s): State<Arc<AppState>>,
    ApiJson(r): ApiJson<super::DnsChange>,
) -> Result<Json<usize>, Failure> {
    let n = mesh(&s)?
        .dns(|tx| crate::daemon::dns::DnsRequest::Remove { name: r.name, addrs: r.addrs, tx })
        .await?
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(n))
}

fn ipam_on(s: &AppState) -> Result<&MeshHandle, Failure> {
    if s.ipam_range.is_none() {
        return Err(Failure(StatusCode::CONFLICT, "IPAM is off (--ipalloc-range is empty)".into()));
    }
    mesh(s)
}

async fn ipam_status(State(s): State<Arc<AppState>>) -> Result<Json<crate::ipam::IpamStatus>, Failure> {
    Ok(Json(ipam_on(&s)?.ipam(crate::daemon::ipam::IpamRequest::Status).await?))
}

async fn rmpeer(
    State(s): State<Arc<AppState>>,
    ApiJson(r): ApiJson<super::RmPeerRequest>,
) -> Result<Json<u64>, Failure> {
    let m = ipam_on(&s)?;
    let n = m
        .ipam(|tx| crate::daemon::ipam::IpamRequest::RmPeer { peer: r.peer, tx })
        .await?
        .map_err(|e| Failure(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(n))
}

/// Prometheus text format.
async fn metrics(State(s): State<Arc<AppState>>) -> Result<Response, Failure> {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    let mut reg = Registry::with_prefix("weaver");
    if let Some(m) = &s.mesh {
        let st = m.status().await?;
        let conns = Family::<Vec<(String, String)>, Gauge>::default();
        for state in ["established", "connecting", "failed"] {
            let n = st.connections.get(state).copied().unwrap_or(0);
            conns.get_or_create(&vec![("state".to_string(), state.to_string())]).set(n as i64);
        }
        reg.register("connections", "Mesh connections by state", conns);
        // By overlay too: what carries each connection's traffic.
        let by = Family::<Vec<(String, String)>, Gauge>::default();
        for c in m.connections().await? {
            by.get_or_create(&vec![("state".to_string(), c.state.clone()), ("overlay".to_string(), c.overlay.clone())])
                .inc();
        }
        reg.register("connections_by_overlay", "Mesh connections by state and overlay", by);
        let peers = Gauge::<i64>::default();
        peers.set(st.peers as i64);
        reg.register("peers", "Peers in the topology, this one included", peers);
    }
    // Asked of the kernel once: the flow and lookup counts, and the upcalls' lost count.
    let dp = datapath_stats(&s).await;
    if let Some(st) = &dp {
        use prometheus_client::metrics::counter::Counter;
        let flows = Gauge::<i64>::default();
        flows.set(i64::try_from(st.flows).unwrap_or(i64::MAX));
        reg.register("datapath_flows", "Flows in the kernel datapath", flows);
        let lookups = Family::<Vec<(String, String)>, Counter>::default();
        for (result, n) in [("hit", st.hit), ("missed", st.missed), ("lost", st.lost)] {
            lookups.get_or_create(&vec![("result".to_string(), result.to_string())]).inc_by(n);
        }
        reg.register(
            "datapath_lookups",
            "Kernel datapath lookups: hit a flow, missed (sent up), lost (could not be sent up)",
            lookups,
        );
    }
    if let Some(u) = upcall_stats(&s, dp.as_ref()) {
        use prometheus_client::metrics::counter::Counter;
        let c = Family::<Vec<(String, String)>, Counter>::default();
        for (result, n) in [
            ("received", u.received),
            ("queue_full", u.queue_full),
            ("rate_limited", u.rate_limited),
            ("malformed", u.malformed),
        ] {
            c.get_or_create(&vec![("result".to_string(), result.to_string())]).inc_by(n);
        }
        reg.register("upcalls", "Upcalls read from the kernel, and those dropped in userspace", c);
        if let Some(l) = u.kernel_lost {
            let g = Counter::<u64>::default();
            g.inc_by(l);
            reg.register("upcalls_kernel_lost", "Upcalls the kernel could not deliver (datapath lost)", g);
        }
    }
    if let Some(h) = &s.sleeve {
        use prometheus_client::metrics::counter::Counter;
        let st = h.stats();
        let pk = Family::<Vec<(String, String)>, Counter>::default();
        let by = Family::<Vec<(String, String)>, Counter>::default();
        for (dir, n, b) in [
            ("captured", st.captured, st.captured_bytes),
            ("injected", st.injected, st.injected_bytes),
            ("sent", st.datagrams_sent, st.bytes_sent),
            ("received", st.datagrams_received, st.bytes_received),
        ] {
            pk.get_or_create(&vec![("direction".to_string(), dir.to_string())]).inc_by(n);
            by.get_or_create(&vec![("direction".to_string(), dir.to_string())]).inc_by(b);
        }
        reg.register("sleeve_packets", "Sleeve frames captured and injected, datagrams sent and received", pk);
        let gso = Family::<Vec<(String, String)>, Counter>::default();
        for (what, n) in [
            ("sent_whole", st.gso_sent),
            ("received_whole", st.gso_received),
            ("injected_whole", st.gso_injected),
            ("cut", st.segmented),
        ] {
            gso.get_or_create(&vec![("what".to_string(), what.to_string())]).inc_by(n);
        }
        reg.register("sleeve_gso_super_frames", "TCP super-frames sent or received whole, and cut here", gso);
        reg.register("sleeve_bytes", "Bytes of the same", by);
        let dr = Family::<Vec<(String, String)>, Counter>::default();
        let mut reasons: Vec<(String, u64)> = st.drops.into_iter().collect();
        reasons.extend([
            ("unknown_connection".to_string(), st.unknown),
            ("malformed".to_string(), st.malformed),
            ("refused".to_string(), st.refused),
            ("no_connection".to_string(), st.no_connection),
            ("capture_ring_full".to_string(), st.capture_dropped),
            ("captured_over_mtu".to_string(), st.capture_truncated),
            ("unfinished".to_string(), st.unfinished_dropped),
            ("udp_socket_full".to_string(), st.udp_dropped),
            ("send_error".to_string(), st.send_errors),
            ("inject_error".to_string(), st.inject_errors),
        ]);
        for (r, n) in reasons {
            dr.get_or_create(&vec![("reason".to_string(), r)]).inc_by(n);
        }
        reg.register("sleeve_drops", "Sleeve frames and datagrams dropped, by reason", dr);
    }
    if let (Some(m), Some(_)) = (&s.mesh, &s.ipam_range) {
        let st = m.ipam(crate::daemon::ipam::IpamRequest::Status).await?;
        let addrs = Family::<Vec<(String, String)>, Gauge>::default();
        addrs.get_or_create(&vec![("state".to_string(), "allocated".to_string())]).set(st.allocated as i64);
        addrs.get_or_create(&vec![("state".to_string(), "free".to_string())]).set(st.free_here as i64);
        reg.register("ipam_addresses", "Addresses this peer owns, allocated and free", addrs);
        for (name, help, v) in [
            ("ipam_pending", "Allocations waiting for space", st.pending),
            ("ipam_owners", "Peers owning part of the range", st.owners.len()),
            ("ipam_unreachable_owners", "Owners of space that cannot be reached", st.unreachable_owners.len()),
            ("ipam_errors", "IPAM problems (split brain, addresses in space owned elsewhere)", st.errors.len()),
        ] {
            let g = Gauge::<i64>::default();
            g.set(v as i64);
            reg.register(name, help, g);
        }
    }
    if let (Some(m), Some(_)) = (&s.mesh, &s.dns_domain) {
        let all = m.dns(|tx| crate::daemon::dns::DnsRequest::Lookup { name: String::new(), tx }).await?;
        let g = Gauge::<i64>::default();
        g.set(all.map(|v| v.len()).unwrap_or(0) as i64);
        reg.register("dns_records", "weaveDNS records known (live, across the mesh)", g);
    }
    let fastdp = Gauge::<i64>::default();
    fastdp.set(i64::from(s.status.overlay == "fastdp"));
    reg.register("fastdp", "1 when the kernel fast datapath is in use", fastdp);
    let mut out = String::new();
    encode(&mut out, &reg).map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

fn fastdp(s: &AppState) -> Result<(Arc<OdpClient>, String), Failure> {
    match (&s.odp, &s.datapath) {
        (Some(c), Some(d)) => Ok((c.clone(), d.clone())),
        _ => Err(Failure(StatusCode::CONFLICT, format!("no fast datapath: {}", s.status.reason))),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn datapath(State(s): State<Arc<AppState>>) -> Result<Json<DatapathView>, Failure> {
    let (c, name) = fastdp(&s)?;
    blocking(move || {
        let dp =
            c.get_datapath(&name)?.ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("datapath {name} is gone")))?;
        let ports = c.dump_vports(dp.dp_ifindex)?;
        Ok(Json(DatapathView { datapath: dp, ports }))
    })
    .await
}

async fn flows(State(s): State<Arc<AppState>>) -> Result<Json<FlowsView>, Failure> {
    let (c, name) = fastdp(&s)?;
    blocking(move || {
        let dp =
            c.get_datapath(&name)?.ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("datapath {name} is gone")))?;
        let flows = c.dump_flows(dp.dp_ifindex)?;
        Ok(Json(FlowsView { datapath: name, now_ms: monotonic_ms(), flows }))
    })
    .await
}
