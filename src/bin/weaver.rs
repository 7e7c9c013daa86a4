//! `weaver`: the per-host daemon. It probes the kernel, owns the datapath
//! when the fast datapath is usable, runs the mesh, and serves the local API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rand::SeedableRng;
use tokio::sync::watch;
use tracing::{info, warn};
use weaver::api::{server, Status};
use weaver::daemon::bridged;
use weaver::daemon::config::Config;
use weaver::daemon::dataplane::{self, DataplaneSettings, SleeveSide};
use weaver::daemon::fastdp::{self, Fastdp};
use weaver::daemon::mesh::{self, FastdpLink, MeshSettings, SleeveLink};
use weaver::daemon::sleeve::{self as sleeve_driver, SleeveSettings, SLEEVE_GSO, SLEEVE_PIECES};
use weaver::fastdp::health::HealthConfig;
use weaver::mesh::conn::ConnConfig;
use weaver::mesh::peer::{Identity, PeerName, PeerUid, ShortId};
use weaver::plumb::bridge::{self, BridgeSpec};
use weaver::sleeve::link::LinkConfig;

/// Logs to stderr (journald takes it as it is): RUST_LOG, when set, else
/// `--log-level` (checked by the configuration); colours only on a terminal.
fn init_logs(format: &str, level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn identity(cfg: &Config) -> Result<Identity> {
    let mut rng = rand::rngs::StdRng::from_entropy();
    let name = match cfg.name {
        Some(n) => n,
        None => peer_name(&cfg.state_dir, &mut rng)?,
    };
    Ok(Identity {
        name,
        nickname: cfg.nickname.clone(),
        uid: PeerUid::random(&mut rng),
        // A first guess from the name; the mesh resolves collisions.
        short_id: ShortId::from_bits((name.as_u64() ^ (name.as_u64() >> 12) ^ (name.as_u64() >> 24)) as u32),
    })
}

/// This peer's name from the store; at first start, from the `peer-name`
/// file of an older version, or a new random one.
fn peer_name(dir: &std::path::Path, rng: &mut impl rand::Rng) -> Result<PeerName> {
    use weaver::daemon::store;
    if let Some(s) = store::load_strict::<String>(dir, "peer_name", "peer name")? {
        return s.parse().map_err(|e| anyhow::anyhow!("the peer name in the state store: {e}"));
    }
    let old = dir.join("peer-name");
    let name = if old.exists() { PeerName::load_or_create(&old, rng)? } else { PeerName::random(rng) };
    store::save(dir, "peer_name", &name.to_string()).context("saving the peer name")?;
    Ok(name)
}

/// How long one step of the shutdown may take before weaver goes on without
/// it: a stop never hangs (systemd's stop timeout would end in SIGKILL, and
/// leave the datapath behind).
const STOP_STEP: Duration = Duration::from_secs(5);

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let r = rt.block_on(run());
    // A blocking call still running (a netlink request the kernel never
    // answered) must not hold the process: dropping the runtime would wait
    // for it forever.
    rt.shutdown_timeout(STOP_STEP);
    r
}

/// Runs one step of the shutdown, bounded by [`STOP_STEP`]; `None` when it
/// did not finish in time (logged, and the shutdown goes on).
async fn stop_step<T>(what: &'static str, f: impl std::future::Future<Output = T>) -> Option<T> {
    tracing::debug!(step = what, "shutdown step");
    match tokio::time::timeout(STOP_STEP, f).await {
        Ok(v) => Some(v),
        Err(_) => {
            let threads = weaver::plumb::threads::kernel_report();
            warn!(step = what, limit_s = STOP_STEP.as_secs(), %threads, "shutdown step did not finish in time; going on without it");
            None
        }
    }
}

async fn run() -> Result<()> {
    use weaver::daemon::config_file::{self, ArgsError};
    let args = match config_file::parse(std::env::args_os().collect()) {
        Ok(a) => a,
        // Bad flags, and --help and --version: clap prints and exits.
        Err(ArgsError::Clap(e)) => e.exit(),
        Err(ArgsError::File(e)) => {
            eprintln!("weaver: invalid configuration: {e}");
            std::process::exit(2);
        }
    };
    let cfg = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weaver: invalid configuration: {e}");
            std::process::exit(2);
        }
    };
    init_logs(&cfg.log_format, &cfg.log_level);
    if cfg.password.is_none() {
        info!("no password set: control and data traffic are not encrypted");
    }

    // A store that cannot be opened stops the start, before anything changes.
    weaver::daemon::store::open(&cfg.state_dir)?;
    let cap = fastdp::probe(&cfg.datapath, cfg.vxlan_port, cfg.no_fastdp).await;
    let overlay = if cap.fastdp() { "fastdp" } else { "sleeve" };
    info!(overlay, reason = %cap.reason(), "overlay selected");
    // Leftovers of the other mode (it ran before, and crashed or was
    // stopped without --reset) hold the names this mode needs.
    if cap.fastdp() {
        if let Err(e) = bridge::remove(bridge::BRIDGE).await {
            tracing::debug!(error = %e, "no bridge of an earlier sleeve run removed");
        }
    } else if let Err(e) = Fastdp::remove_stale(&cfg.datapath) {
        tracing::warn!(error = %e, "could not check for a datapath of an earlier run");
    }
    let dp = if cap.fastdp() { Some(Fastdp::start(&cfg.datapath, cfg.vxlan_port)?) } else { None };

    // Everything that runs until SIGTERM/SIGINT watches this.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let me = identity(&cfg)?;
    let mut conn = ConnConfig::new(me.clone());
    if let Some(p) = &cfg.password {
        conn = conn.with_password(p);
    }
    conn.trusted_subnets = cfg.trusted_subnets.clone();
    // What we offer peers: the fast datapath when it runs here, and the
    // sleeve always (a connection VXLAN cannot cross falls back to it, and
    // sleeve-only peers are reached over it).
    conn.overlays = if dp.is_some() { vec!["fastdp".into(), "sleeve".into()] } else { vec!["sleeve".into()] };
    // Bridge mode may carry TCP super-frames whole, to peers that do too
    // (never a fast-datapath host: its datapath takes finished frames only).
    let gso = dp.is_none() && cfg.sleeve_gso;
    if gso {
        conn.overlays.push(SLEEVE_GSO.into());
        if cfg.sleeve_pieces {
            conn.overlays.push(SLEEVE_PIECES.into());
        }
    }
    let (snap_tx, snap_rx) = watch::channel(None);
    // The sleeve: in bridge mode on the Linux bridge `weave` and its
    // capture port; beside the fast datapath, fed by the datapath's upcalls.
    let mut bridged_plane = None;
    let mut inbound = None;
    let local = if dp.is_none() {
        let spec = BridgeSpec { name: bridge::BRIDGE.into(), mtu: cfg.mtu };
        if gso && cfg.sleeve_capture == sleeve_driver::CaptureKind::Tap {
            // GSO through a tap port of the bridge: no capture pair.
            bridge::ensure_bridge(&spec).await.map_err(|e| anyhow::anyhow!("setting up the bridge: {e}"))?;
            bridge::remove_capture_pair().await.map_err(|e| anyhow::anyhow!("setting up the bridge: {e}"))?;
            let tap = weaver::plumb::tap::create(weaver::plumb::tap::TAP, bridge::BRIDGE, cfg.mtu)
                .await
                .map_err(|e| anyhow::anyhow!("--sleeve-gso: setting up the capture tap: {e}"))?;
            sleeve_driver::LocalSide::Tap(tap)
        } else {
            let b = bridge::ensure(&spec).await.map_err(|e| anyhow::anyhow!("setting up the bridge: {e}"))?;
            if gso {
                bridge::pass_super_frames().await.map_err(|e| anyhow::anyhow!("--sleeve-gso: {e}"))?;
            }
            if gso && cfg.sleeve_capture == sleeve_driver::CaptureKind::Hybrid {
                // Super-frames from peers are injected whole through a tap
                // the bridge never forwards to; the rest as in packet mode.
                // Without a tap (no /dev/net/tun), they are cut and injected
                // through the packet socket.
                match weaver::plumb::tap::create_inject_only(weaver::plumb::tap::TAP, bridge::BRIDGE, cfg.mtu).await {
                    Ok(tap) => sleeve_driver::LocalSide::Hybrid(b.capture_ifname.clone(), tap),
                    Err(e) => {
                        warn!(error = %e, "no tap for injecting super-frames whole: they are cut into frames here");
                        sleeve_driver::LocalSide::Capture(b.capture_ifname.clone(), sleeve_driver::CaptureKind::Packet)
                    }
                }
            } else {
                sleeve_driver::LocalSide::Capture(b.capture_ifname.clone(), cfg.sleeve_capture)
            }
        }
    } else {
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        inbound = Some(rx);
        sleeve_driver::LocalSide::Dataplane(tx)
    };
    let s = SleeveSettings { me: me.name, port: cfg.port, local, mtu: cfg.mtu, gso };
    let (sleeve_handle, events) = sleeve_driver::spawn(s, snap_rx.clone()).context("starting the sleeve")?;
    let sleeve_link =
        SleeveLink { handle: sleeve_handle.clone(), events, port: cfg.port, link: LinkConfig::default(), mtu: cfg.mtu };
    if dp.is_none() {
        let cap = gso.then_some(sleeve_driver::GSO_MAX_SIZE);
        bridged_plane = Some(bridged::spawn(bridge::BRIDGE.into(), cfg.mtu, cfg.state_dir.clone(), cap).await);
    }
    let (dataplane, fastdp_link) = match &dp {
        Some(d) => {
            let s = DataplaneSettings {
                me: me.name,
                short_id: me.short_id,
                vxlan_port: cfg.vxlan_port,
                mtu: cfg.mtu,
                state_dir: cfg.state_dir.clone(),
            };
            let side = inbound.take().map(|inbound| SleeveSide { handle: sleeve_handle.clone(), inbound });
            let (h, seen) = dataplane::spawn(d, s, snap_rx, side)
                .await
                .map_err(|e| anyhow::anyhow!("starting the dataplane: {e}"))?;
            let link = FastdpLink {
                dataplane: h.clone(),
                seen,
                mtu: cfg.mtu,
                vxlan_port: cfg.vxlan_port,
                health: HealthConfig::default(),
                sleeve_peers: cfg.sleeve_peers.clone(),
            };
            (Some(h), Some(link))
        }
        None => (bridged_plane, None),
    };
    let (zone_tx, zone_rx) = watch::channel(std::sync::Arc::new(weaver::dns::Zone::new()));
    let settings = MeshSettings {
        dataplane: Some(snap_tx),
        identity: me,
        conn,
        port: cfg.port,
        peers: cfg.peers.clone(),
        discovery: cfg.discovery,
        conn_limit: cfg.conn_limit,
        state_dir: cfg.state_dir.clone(),
        fastdp: fastdp_link,
        sleeve: Some(sleeve_link),
        ipam: match &cfg.ipam {
            Some(c) => Some((c.clone(), weaver::daemon::ipam::load(&cfg.state_dir).map_err(anyhow::Error::msg)?)),
            None => None,
        },
        ipam_grace: cfg.ipam_grace,
        dns: cfg.dns.as_ref().map(|d| (d.domain.clone(), zone_tx.clone())),
    };
    let (mesh_handle, mesh_task) = mesh::spawn(settings, stopped(stop_rx.clone()))
        .await
        .with_context(|| format!("listening on TCP port {}", cfg.port))?;

    let status = Status {
        version: env!("CARGO_PKG_VERSION").into(),
        overlay: overlay.into(),
        reason: cap.reason(),
        capability: cap,
        datapath: dp.as_ref().map(|d| d.datapath.clone()),
        mesh: None,
        upcalls: None,
        sleeve: None,
    };
    // The host's own interface on the overlay.
    let overlay_ifname = match &dp {
        Some(d) => d.datapath.clone(),
        None => bridge::BRIDGE.to_string(),
    };
    // weaveDNS: the server reads the zone the mesh task publishes.
    let _dns_server = match &cfg.dns {
        None => None,
        Some(d) => {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let upstreams = weaver::dns::resolv::upstreams(&text, d.listen);
            let c = weaver::dns::DnsConfig::new(d.listen, d.domain.clone(), upstreams.clone());
            match weaver::dns::DnsServer::spawn(c, zone_rx).await {
                Ok(s) => {
                    info!(listen = %s.udp_addr(), domain = %d.domain, ?upstreams, "DNS listening");
                    Some(s)
                }
                Err(e) if !d.explicit => {
                    tracing::warn!(error = %e, "DNS server not started (the default address is busy); give --dns-listen-address");
                    None
                }
                Err(e) => return Err(anyhow::anyhow!("--dns-listen-address: {e}")),
            }
        }
    };
    let (stop_req_tx, mut stop_req_rx) = tokio::sync::mpsc::channel::<weaver::api::StopRequest>(1);
    let state = Arc::new(server::AppState {
        status,
        odp: dp.as_ref().map(|d| d.client.clone()),
        datapath: dp.as_ref().map(|d| d.datapath.clone()),
        mesh: Some(mesh_handle.clone()),
        dataplane: dataplane.clone(),
        sleeve: Some(sleeve_handle.clone()),
        stop: stop_req_tx,
        ipam_range: cfg.ipam.as_ref().map(|c| c.range),
        dns_domain: cfg.dns.as_ref().map(|d| d.domain.clone()),
        overlay_ifname: Some(overlay_ifname.clone()),
        state_dir: cfg.state_dir.clone(),
    });
    // What an earlier run exposed, back on the overlay.
    weaver::daemon::expose::restore(&cfg.state_dir, &overlay_ifname).await;

    if let Some(dir) = cfg.api_socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A socket file left by a crash would make bind fail.
    let _ = std::fs::remove_file(&cfg.api_socket);
    let listener = tokio::net::UnixListener::bind(&cfg.api_socket)
        .with_context(|| format!("binding the API socket {}", cfg.api_socket.display()))?;
    info!(socket = %cfg.api_socket.display(), "API listening");
    // The same API on a loopback TCP port, and /metrics on its own address.
    for (addr, what, app) in [
        (cfg.api_tcp, "API", cfg.api_tcp.map(|_| server::router(state.clone()))),
        (cfg.metrics_address, "metrics", cfg.metrics_address.map(|_| server::metrics_router(state.clone()))),
    ] {
        let (Some(addr), Some(app)) = (addr, app) else { continue };
        let l =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the {what} address {addr}"))?;
        info!(%addr, "{what} listening on TCP");
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { axum::serve(l, app).with_graceful_shutdown(stop).await });
    }
    let api_stop = stopped(stop_rx.clone());
    let api =
        tokio::spawn(
            async move { axum::serve(listener, server::router(state)).with_graceful_shutdown(api_stop).await },
        );

    let reset = tokio::select! {
        _ = shutdown_signal() => false,
        Some(r) = stop_req_rx.recv() => {
            info!(reset = r.reset, "stop requested through the API");
            r.reset
        }
    };
    info!("shutting down");
    if reset {
        if let Some(Err(e)) =
            stop_step("hide the host", weaver::daemon::expose::hide(&cfg.state_dir, &overlay_ifname, &[])).await
        {
            tracing::warn!(error = %e, "could not hide the host");
        }
    }
    if reset && cfg.ipam.is_some() {
        // Give the IPAM space to a peer, and let gossip carry that out.
        let handed = stop_step("hand the IPAM space on", mesh_handle.ipam(weaver::daemon::ipam::IpamRequest::Reset));
        if let Some(Ok(Some(_))) = handed.await {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let _ = stop_tx.send(true);
    stop_step("stop the mesh", mesh_task).await;
    if reset {
        // The containers were detached by the API handler; forget the
        // peers and IPAM too.
        for key in ["peers.json", "attachments.json", weaver::daemon::ipam::FILE, weaver::daemon::expose::FILE] {
            if let Err(e) = weaver::daemon::store::remove(&cfg.state_dir, key) {
                tracing::warn!(%key, error = %e, "could not forget");
            }
        }
    }
    // The API server waits for its open requests to finish.
    stop_step("stop the API server", api).await;
    if let Some(h) = &dataplane {
        if stop_step("stop the dataplane", h.shutdown()).await.is_none() {
            warn!(busy_with = %h.activity(), "the dataplane task did not answer");
        }
    }
    sleeve_handle.shutdown();
    match dp {
        Some(d) => {
            stop_step("remove the datapath", tokio::task::spawn_blocking(move || d.stop())).await;
        }
        // The bridge stays (containers keep their links to it) unless the
        // host is being reset.
        None if reset => {
            if let Some(Err(e)) = stop_step("remove the bridge", bridge::remove(bridge::BRIDGE)).await {
                tracing::warn!(error = %e, "could not remove the bridge");
            }
        }
        None => {}
    }
    let _ = std::fs::remove_file(&cfg.api_socket);
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
