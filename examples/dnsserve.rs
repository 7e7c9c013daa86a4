//! weaveDNS under test, for `integration/bench/dns.sh`: weaver's DNS server
//! ([`DnsServer`], the code the daemon runs) answering from a record store
//! filled from a hosts file, on a single-threaded tokio runtime, so that it
//! uses one core (the benchmark also pins it to one with `taskset`).
//!
//! ```text
//! dnsserve --hosts FILE [--listen 127.0.0.1:5353] [--domain weave.local]
//! ```
//!
//! `FILE` has one `ADDRESS NAME` a line, in `/etc/hosts` syntax (the same
//! file the reference server reads): every name must be in the domain.
//! Each line becomes the record of its own container, as `weavectl
//! dns-add` would make it. It prints `dnsserve: listening on ADDR` once
//! the socket is bound, and serves until SIGTERM or SIGINT. There are no
//! upstreams: names outside the zone get SERVFAIL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

#[path = "support/hosts.rs"]
mod hosts;
use clap::Parser;
use hickory_proto::rr::Name;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use weaver::dns::{self, DnsConfig, DnsServer, Records};
use weaver::mesh::peer::PeerName;

/// Serves a hosts file's names with weaver's DNS server on one core.
#[derive(Parser, Debug)]
struct Args {
    /// `ADDRESS NAME` lines, as in /etc/hosts.
    #[arg(long)]
    hosts: PathBuf,
    /// UDP and TCP address to answer on.
    #[arg(long, default_value = "127.0.0.1:5353")]
    listen: SocketAddr,
    /// The DNS domain, as `--dns-domain`.
    #[arg(long, default_value = dns::DEFAULT_DOMAIN)]
    domain: String,
}

/// Reads `path` into a record store: each line's name and address as the
/// record of container `bench-N` of one peer.
fn load(path: &Path, domain: &Name) -> Result<Records> {
    let origin = PeerName::from_u64(1);
    let mut records = Records::new();
    for h in hosts::read(path)? {
        let at = || format!("{}:{}", path.display(), h.line + 1);
        let name = dns::name_in(&h.name, domain).with_context(at)?;
        records.add(origin, &format!("bench-{}", h.line), &name, h.addr, 0).with_context(at)?;
    }
    if records.zone().is_empty() {
        bail!("{}: no names", path.display());
    }
    Ok(records)
}

async fn serve(args: Args) -> Result<()> {
    let domain = dns::parse_domain(&args.domain)?;
    let records = load(&args.hosts, &domain)?;
    // The daemon publishes a new snapshot after each change; here there is one.
    let (_publish, zone) = watch::channel(records.snapshot());
    let server = DnsServer::spawn(DnsConfig::new(args.listen, domain, Vec::new()), zone).await?;
    println!("dnsserve: {} names, listening on {}", records.zone().len(), server.udp_addr());
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(server);
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    // One thread: the server and its runtime on one core, as dnsmasq is.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(serve(args))
}
