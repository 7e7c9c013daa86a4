//! `weaver`: the per-host daemon.
//!
//! At this stage it probes the kernel, owns the datapath (created at start,
//! with its VXLAN vport, removed on SIGTERM/SIGINT) and serves the local API.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use tracing::{info, warn};
use weaver::api::{self, server, Status};
use weaver::odp::probe::{self, Capability};
use weaver::odp::socket::{DpFeatures, OdpClient};
use weaver::odp::vport::{VportOptions, VportType};

#[derive(Parser, Debug)]
#[command(name = "weaver", version, about = "weaver overlay network daemon")]
struct Args {
    /// Datapath name.
    #[arg(long, env = "WEAVER_DATAPATH", default_value = weaver::DEFAULT_DATAPATH)]
    datapath: String,
    /// Control-plane TCP port; VXLAN listens on port + 1.
    #[arg(long, env = "WEAVER_PORT", default_value_t = weaver::DEFAULT_PORT)]
    port: u16,
    /// Path of the API's Unix socket.
    #[arg(long, env = "WEAVER_API_SOCKET", default_value = api::DEFAULT_SOCKET)]
    api_socket: PathBuf,
    /// Use the sleeve overlay even if the kernel datapath works.
    #[arg(long, env = "WEAVER_NO_FASTDP")]
    no_fastdp: bool,
    /// Log format.
    #[arg(long, env = "WEAVER_LOG_FORMAT", default_value = "human", value_parser = ["human", "json"])]
    log_format: String,
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    init_logs(&args.log_format);
    let vxlan_port = args.port.checked_add(1).context("--port must be below 65535 (VXLAN uses port + 1)")?;

    let cap = if args.no_fastdp {
        Capability::ProbeFailed { error: "fast datapath disabled by --no-fastdp".into() }
    } else {
        let dp = format!("{}-probe", args.datapath);
        tokio::task::spawn_blocking(move || probe::probe(&dp, vxlan_port).0).await?
    };
    let overlay = if cap.fastdp() { "fastdp" } else { "sleeve" };
    info!(overlay, reason = %cap.reason(), "overlay selected");

    let mut odp = None;
    if cap.fastdp() {
        let c = OdpClient::connect()?;
        // A datapath left by a crashed run is replaced, not reused blindly.
        if c.get_datapath(&args.datapath)?.is_some() {
            warn!(datapath = %args.datapath, "removing stale datapath from an earlier run");
            c.delete_datapath(&args.datapath)?;
        }
        let dp = c.create_datapath(&args.datapath, 0, DpFeatures::weaver_default())?;
        let vx = format!("vxlan-{vxlan_port}");
        c.create_vport(
            dp.dp_ifindex,
            &vx,
            VportType::Vxlan,
            Some(VportOptions { dst_port: Some(vxlan_port), other: vec![] }),
            vec![],
        )?;
        info!(datapath = %args.datapath, ifindex = dp.dp_ifindex, vxlan = %vx, "datapath ready");
        odp = Some(Arc::new(c));
    }

    let status = Status {
        version: env!("CARGO_PKG_VERSION").into(),
        overlay: overlay.into(),
        reason: cap.reason(),
        capability: cap,
        datapath: odp.as_ref().map(|_| args.datapath.clone()),
        mesh: None,
    };
    let state = Arc::new(server::AppState { status, odp: odp.clone(), datapath: Some(args.datapath.clone()), mesh: None });

    if let Some(dir) = args.api_socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A socket file left by a crash would make bind fail.
    let _ = std::fs::remove_file(&args.api_socket);
    let listener = tokio::net::UnixListener::bind(&args.api_socket)
        .with_context(|| format!("binding the API socket {}", args.api_socket.display()))?;
    info!(socket = %args.api_socket.display(), "API listening");

    let serve = axum::serve(listener, server::router(state)).with_graceful_shutdown(shutdown_signal());
    serve.await.context("API server")?;

    info!("shutting down");
    if let Some(c) = odp {
        if let Err(e) = c.delete_datapath(&args.datapath) {
            warn!(error = %e, "could not remove the datapath");
        }
    }
    let _ = std::fs::remove_file(&args.api_socket);
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
