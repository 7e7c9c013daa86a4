//! `weavectl`: inspect and steer a weaver host.
//!
//! Reads go through the daemon's API; when no daemon runs, datapath
//! inspection falls back to reading the kernel directly (for debugging).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use weaver::api::show;
use weaver::api::{
    self, client, AttachRequest, AttachView, ConnectRequest, ConnectionView, DatapathView, DetachRequest, FlowsView,
    ForgetRequest, PeerView, Status, StopRequest,
};
use weaver::odp::flow::Flow;
use weaver::odp::format;
use weaver::odp::probe;
use weaver::odp::socket::{DpFeatures, OdpClient};
use weaver::odp::vport::{VportOptions, VportType};

/// `println!` that ends the program quietly when stdout is closed (as in
/// `weavectl flows dump | head`), instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

/// `print!`, likewise.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let mut o = std::io::stdout().lock();
        if let Err(e) = write!(o, $($arg)*).and_then(|_| o.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

#[derive(Parser)]
#[command(name = "weavectl", version, about = "Inspect and steer a weaver host")]
struct Cli {
    /// The daemon's API socket.
    #[arg(long, env = "WEAVER_API_SOCKET", default_value = api::DEFAULT_SOCKET, global = true)]
    api: PathBuf,
    /// Read the kernel directly even if a daemon runs.
    #[arg(long, global = true)]
    direct: bool,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon's status: overlay in use and why, the mesh; or its peers
    /// (the topology as seen from here) or its connections.
    Status {
        #[arg(value_enum)]
        what: Option<StatusWhat>,
        #[arg(long)]
        json: bool,
    },
    /// Add peers to connect to (persisted by the daemon).
    Connect {
        #[arg(required = true)]
        addrs: Vec<String>,
        /// Replace the current direct peers instead of adding to them.
        #[arg(long)]
        replace: bool,
    },
    /// Attach a container: `weavectl attach [ADDR...] TARGET` (TARGET: a
    /// netns name, a PID, a /proc/PID/ns/net path, or a Docker container's
    /// name or ID, resolved by the daemon with `docker inspect`, which needs
    /// the Docker CLI). ADDR: `CIDR` or `ip:CIDR` (that address), `net:CIDR`
    /// or `net:default` (one from that subnet); none: one from IPAM's
    /// default subnet. Attached already: nothing changes with no ADDR or the
    /// ones it has, and other ones are refused (detach first).
    Attach {
        /// Addresses, then the target last.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
        /// The container's name in weaveDNS (default: the namespace name).
        #[arg(long)]
        name: Option<String>,
    },
    /// The addresses of a name in weaveDNS (every record, without a name).
    DnsLookup {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Add a name to weaveDNS: `weavectl dns-add NAME ADDR...`.
    DnsAdd {
        name: String,
        #[arg(required = true)]
        addrs: Vec<std::net::Ipv4Addr>,
    },
    /// Remove this peer's records of a name (all, or only these addresses).
    DnsRemove { name: String, addrs: Vec<std::net::Ipv4Addr> },
    /// Give the host an address on the overlay, with NAT for containers
    /// going out through it: `weavectl expose [ADDR...]` (as for attach;
    /// none: one from IPAM's default subnet).
    Expose { cidrs: Vec<String> },
    /// Take the host's overlay addresses away (all, or these).
    Hide { cidrs: Vec<String> },
    /// Take over the IPAM space of a peer that is gone for good.
    Rmpeer { peer: String },
    /// Reset this peer: detach every container, give its IPAM space to
    /// another peer, forget peers, and stop (the same as `stop --reset`).
    Reset,
    /// The attached containers: target, MAC, addresses.
    Ps {
        #[arg(long)]
        json: bool,
    },
    /// Detach a container, or only the addresses given (`[CIDR...] TARGET`).
    Detach {
        /// Addresses, then the target last.
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Stop connecting to these peers.
    Forget {
        #[arg(required = true)]
        addrs: Vec<String>,
    },
    /// Stop the daemon: it removes its datapath and exits. Containers stay
    /// attached and are taken back when it starts again, unless `--reset`.
    Stop {
        /// Also detach every container and forget peers and attachments.
        #[arg(long)]
        reset: bool,
    },
    /// Probe this kernel's fast datapath support (creates and removes a scratch datapath).
    Probe {
        #[arg(long)]
        json: bool,
    },
    /// Datapaths.
    Dp {
        #[command(subcommand)]
        cmd: DpCmd,
    },
    /// Datapath ports (direct kernel access, for debugging).
    Port {
        #[command(subcommand)]
        cmd: PortCmd,
    },
    /// Datapath flows.
    Flows {
        #[command(subcommand)]
        cmd: FlowsCmd,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusWhat {
    Peers,
    Connections,
    Ipam,
}

#[derive(Subcommand)]
enum DpCmd {
    /// Datapaths with their ports and statistics.
    Show {
        /// Only this datapath.
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create a datapath (direct).
    Add { name: String },
    /// Delete a datapath (direct).
    Del { name: String },
    /// Receive miss upcalls and print each packet's key (direct; debugging).
    /// Points every port's upcall PID at this command's socket.
    Upcalls {
        #[arg(long, default_value = weaver::DEFAULT_DATAPATH)]
        dp: String,
        /// Stop after this many upcalls.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        /// Execute each missed packet with `output(PORT)`.
        #[arg(long)]
        execute_output: Option<u32>,
        /// Switch the datapath to per-CPU upcall dispatch (kernel 5.12+),
        /// every CPU's upcalls to this socket, instead of per-vport PIDs.
        #[arg(long)]
        per_cpu: bool,
    },
    /// Print vport notifications from the kernel (direct; debugging).
    Events {
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PortType {
    Netdev,
    Internal,
    Vxlan,
}

#[derive(Subcommand)]
enum PortCmd {
    /// Add a vport.
    Add {
        dp: String,
        name: String,
        #[arg(long = "type", value_enum, default_value = "netdev")]
        kind: PortType,
        /// UDP destination port of a VXLAN vport.
        #[arg(long)]
        dst_port: Option<u16>,
    },
    /// Delete a vport by name.
    Del { dp: String, name: String },
}

#[derive(Subcommand)]
enum FlowsCmd {
    /// One line per flow, as `ovs-dpctl dump-flows` prints them.
    Dump {
        #[arg(long, default_value = weaver::DEFAULT_DATAPATH)]
        dp: String,
        #[arg(long)]
        json: bool,
    },
    /// Install a flow from `ovs-dpctl add-flow` text (direct).
    Add {
        #[arg(long, default_value = weaver::DEFAULT_DATAPATH)]
        dp: String,
        key: String,
        actions: String,
    },
    /// Change a flow's actions; `--clear` zeroes its statistics (direct).
    Mod {
        #[arg(long, default_value = weaver::DEFAULT_DATAPATH)]
        dp: String,
        #[arg(long)]
        clear: bool,
        key: String,
        actions: Option<String>,
    },
    /// Show the one flow with this key (direct).
    Get {
        #[arg(long, default_value = weaver::DEFAULT_DATAPATH)]
        dp: String,
        key: String,
    },
    /// Delete the flow with this key (direct).
    Del {
        #[arg(long, default_value = weaver::DEFAULT_DATAPATH)]
        dp: String,
        key: String,
    },
    /// Delete every flow (direct).
    Flush {
        #[arg(long, default_value = weaver::DEFAULT_DATAPATH)]
        dp: String,
    },
}

fn main() {
    let cli = Cli::parse();
    if std::env::var_os("WEAVER_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("WEAVER_LOG"))
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weavectl: cannot start: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("weavectl: {e:#}");
        std::process::exit(1);
    }
}

fn kernel() -> Result<OdpClient> {
    OdpClient::connect().context("cannot reach the kernel datapath")
}

fn dp_index(c: &OdpClient, name: &str) -> Result<i32> {
    match c.get_datapath(name)? {
        Some(d) => Ok(d.dp_ifindex),
        None => bail!("no datapath named {name}"),
    }
}

/// Tries the daemon; `Ok(None)` when none runs, so the caller reads the kernel.
async fn from_daemon<T: serde::de::DeserializeOwned>(cli: &Cli, path: &str) -> Result<Option<T>> {
    if cli.direct {
        return Ok(None);
    }
    match client::get(&cli.api, path).await {
        Ok(v) => Ok(Some(v)),
        Err(client::ClientError::NoDaemon { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Prints an answer as pretty JSON or in its text form.
fn print_view<T: serde::Serialize>(json: bool, v: &T, text: impl Fn(&T) -> String) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(v)?);
    } else {
        out!("{}", text(v));
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match &cli.cmd {
        Command::Status { what: None, json } => {
            let s: Status = client::get(&cli.api, "/v1/status").await?;
            print_view(*json, &s, show::format_status)?;
        }
        Command::Status { what: Some(StatusWhat::Peers), json } => {
            let peers: Vec<PeerView> = client::get(&cli.api, "/v1/peers").await?;
            print_view(*json, &peers, |p| show::format_peers(p))?;
        }
        Command::Status { what: Some(StatusWhat::Connections), json } => {
            let conns: Vec<ConnectionView> = client::get(&cli.api, "/v1/connections").await?;
            print_view(*json, &conns, |c| show::format_connections(c))?;
        }
        Command::Status { what: Some(StatusWhat::Ipam), json } => {
            let s: weaver::ipam::IpamStatus = client::get(&cli.api, "/v1/ipam").await?;
            print_view(*json, &s, show::format_ipam)?;
        }
        Command::Ps { json } => {
            let v: Vec<weaver::daemon::attachments::Saved> = client::get(&cli.api, "/v1/ps").await?;
            print_view(*json, &v, |v| {
                v.iter().map(|a| format!("{} {} {} {}\n", a.target, a.host_ifname, a.mac, a.cidrs.join(" "))).collect()
            })?;
        }
        Command::Expose { cidrs } => {
            let v: Vec<String> =
                client::post(&cli.api, "/v1/expose", &weaver::api::ExposeRequest { cidrs: cidrs.clone() }).await?;
            outln!("{}", v.join(" "));
        }
        Command::Hide { cidrs } => {
            let v: Vec<String> =
                client::post(&cli.api, "/v1/hide", &weaver::api::ExposeRequest { cidrs: cidrs.clone() }).await?;
            outln!("{}", v.join(" "));
        }
        Command::Rmpeer { peer } => {
            let n: u64 =
                client::post(&cli.api, "/v1/rmpeer", &weaver::api::RmPeerRequest { peer: peer.clone() }).await?;
            outln!("{n} addresses taken over from {peer}");
        }
        Command::Connect { addrs, replace } => {
            let r = ConnectRequest { addrs: addrs.clone(), replace: *replace };
            client::post::<_, ()>(&cli.api, "/v1/connect", &r).await?;
        }
        Command::DnsLookup { name, json } => {
            let path = match name {
                Some(n) => format!("/v1/dns?name={}", query_escape(n)),
                None => "/v1/dns".to_string(),
            };
            let v: Vec<weaver::daemon::dns::DnsEntryView> = client::get(&cli.api, &path).await?;
            if name.is_some() && v.is_empty() && !*json {
                anyhow::bail!("no records of {}", name.as_deref().unwrap_or_default());
            }
            print_view(*json, &v, |v| {
                v.iter()
                    .map(|e| {
                        if name.is_some() {
                            format!("{}\n", e.addr)
                        } else {
                            format!("{:<32} {:<16} {:<18} {}\n", e.name, e.addr, e.origin, e.container)
                        }
                    })
                    .collect()
            })?;
        }
        Command::DnsAdd { name, addrs } => {
            let r = weaver::api::DnsChange { name: name.clone(), addrs: addrs.clone(), container: None };
            client::post::<_, usize>(&cli.api, "/v1/dns/add", &r).await?;
        }
        Command::DnsRemove { name, addrs } => {
            let r = weaver::api::DnsChange { name: name.clone(), addrs: addrs.clone(), container: None };
            let n: usize = client::post(&cli.api, "/v1/dns/remove", &r).await?;
            if n == 0 {
                anyhow::bail!("this peer has no records of {name}");
            }
        }
        Command::Attach { args, name } => {
            let (target, cidrs) = args.split_last().context("attach needs a target")?;
            let r = AttachRequest { target: target.clone(), cidrs: cidrs.to_vec(), name: name.clone() };
            let a: AttachView = client::post(&cli.api, "/v1/attach", &r).await?;
            outln!(
                "{} {} port {} {}",
                a.host_ifname,
                a.mac,
                a.port_no.map(|p| p.to_string()).unwrap_or_default(),
                a.cidrs.join(" ")
            );
        }
        Command::Detach { args } => {
            let (target, cidrs) = args.split_last().context("detach needs a target")?;
            let r = DetachRequest { target: target.clone(), cidrs: cidrs.to_vec() };
            let v: weaver::api::DetachView = client::post(&cli.api, "/v1/detach", &r).await?;
            match (v.was_attached, v.interface_removed) {
                (false, _) => outln!("{} was not attached", v.target),
                (true, true) => outln!("{} detached", v.target),
                (true, false) if v.removed.is_empty() => outln!("{} has none of those addresses", v.target),
                (true, false) => outln!("{} removed from {}", v.removed.join(" "), v.target),
            }
        }
        Command::Stop { .. } | Command::Reset => {
            let reset = matches!(cli.cmd, Command::Reset | Command::Stop { reset: true });
            client::post::<_, ()>(&cli.api, "/v1/stop", &StopRequest { reset }).await?;
            // Wait for the daemon to finish: its socket goes away last.
            for _ in 0..100 {
                if !cli.api.exists() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            if cli.api.exists() {
                anyhow::bail!("the daemon did not stop within 10 s");
            }
        }
        Command::Forget { addrs } => {
            client::post::<_, ()>(&cli.api, "/v1/forget", &ForgetRequest { addrs: addrs.clone() }).await?;
        }
        Command::Probe { json } => {
            let (cap, _) = tokio::task::spawn_blocking(|| probe::probe("weaver-probe", 6784)).await?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&cap)?);
            } else {
                let overlay = if cap.fastdp() { "fastdp" } else { "sleeve" };
                outln!("{overlay}: {}", cap.reason());
            }
        }
        Command::Dp { cmd } => dp(&cli, cmd).await?,
        Command::Port { cmd } => port(cmd)?,
        Command::Flows { cmd } => flows(&cli, cmd).await?,
    }
    Ok(())
}

async fn dp(cli: &Cli, cmd: &DpCmd) -> Result<()> {
    match cmd {
        DpCmd::Show { name, json } => {
            let views: Vec<DatapathView> = match from_daemon::<DatapathView>(cli, "/v1/datapath").await? {
                Some(v) if name.as_ref().is_none_or(|n| v.datapath.name.as_ref() == Some(n)) => vec![v],
                _ => {
                    let c = kernel()?;
                    let mut out = Vec::new();
                    for d in c.dump_datapaths()? {
                        if name.is_some() && d.name != *name {
                            continue;
                        }
                        let ports = c.dump_vports(d.dp_ifindex)?;
                        out.push(DatapathView { datapath: d, ports });
                    }
                    if let (Some(n), true) = (name, out.is_empty()) {
                        bail!("no datapath named {n}");
                    }
                    out
                }
            };
            if *json {
                outln!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                for v in &views {
                    out!("{}", weaver::odp::show::format_datapath(&v.datapath, &v.ports));
                }
            }
        }
        DpCmd::Add { name } => {
            kernel()?.create_datapath(name, 0, DpFeatures::weaver_default())?;
        }
        DpCmd::Del { name } => kernel()?.delete_datapath(name)?,
        DpCmd::Upcalls { dp, count, timeout, execute_output, per_cpu } => {
            let (dp, count, timeout, out, per_cpu) = (dp.clone(), *count, *timeout, *execute_output, *per_cpu);
            tokio::task::spawn_blocking(move || upcalls(&dp, count, timeout, out, per_cpu)).await??;
        }
        DpCmd::Events { count, timeout } => {
            let (count, timeout) = (*count, *timeout);
            tokio::task::spawn_blocking(move || events(count, timeout)).await??;
        }
    }
    Ok(())
}

/// Polls `recv` until it has produced `count` items or `timeout_s` passes.
fn poll_until<T>(
    count: usize,
    timeout_s: u64,
    mut recv: impl FnMut() -> Result<Vec<T>>,
    mut each: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
    let mut seen = 0;
    while seen < count {
        let items = recv()?;
        if items.is_empty() {
            if std::time::Instant::now() >= deadline {
                bail!("timed out after {timeout_s}s with {seen} of {count}");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for it in items {
            each(it)?;
            seen += 1;
        }
    }
    Ok(())
}

fn upcalls(dp: &str, count: usize, timeout: u64, execute_output: Option<u32>, per_cpu: bool) -> Result<()> {
    use weaver::odp::action::Action;
    use weaver::odp::packet::UpcallItem;
    use weaver::odp::socket::UpcallSocket;
    let c = kernel()?;
    let ifi = dp_index(&c, dp)?;
    let mut sock = UpcallSocket::open(&c.families())?;
    sock.set_nonblocking(true)?;
    let pid = sock.port_id()?;
    if per_cpu {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut f = DpFeatures::weaver_default();
        f.bits |= weaver::odp::datapath::F_DISPATCH_UPCALL_PER_CPU;
        let d = c.set_datapath(dp, f, Some(vec![pid; cpus]))?;
        if d.user_features.unwrap_or_default() & weaver::odp::datapath::F_DISPATCH_UPCALL_PER_CPU == 0 {
            bail!("kernel did not enable per-CPU upcall dispatch");
        }
    } else {
        for v in c.dump_vports(ifi)? {
            if let Some(p) = v.port_no {
                c.set_vport_upcall_pids(ifi, p, vec![pid])?;
            }
        }
    }
    eprintln!("listening for upcalls on netlink port {pid}");
    poll_until(
        count,
        timeout,
        || {
            let mut v = Vec::new();
            for item in sock.recv()? {
                match item {
                    Ok(UpcallItem::Upcall(u)) => v.push(*u),
                    Ok(other) => eprintln!("ignored: {other:?}"),
                    Err(e) => eprintln!("malformed upcall: {e}"),
                }
            }
            Ok(v)
        },
        |u| {
            outln!("{:?}: {} len:{}", u.kind, format::format_key(&u.msg.key, None), u.msg.packet.len());
            if let Some(port) = execute_output {
                c.execute(ifi, u.msg.packet.clone(), u.msg.key.clone(), vec![Action::Output(port)])?;
            }
            Ok(())
        },
    )
}

fn events(count: usize, timeout: u64) -> Result<()> {
    use weaver::odp::socket::VportEvents;
    let c = kernel()?;
    let mut ev = VportEvents::open(&c.families())?;
    ev.set_nonblocking(true)?;
    eprintln!("listening for vport events");
    poll_until(
        count,
        timeout,
        || Ok(ev.recv()?),
        |e| {
            let cmd = match e.cmd {
                1 => "new",
                2 => "del",
                4 => "set",
                _ => "other",
            };
            let kind = e.vport.kind.map(|k| k.name()).unwrap_or_default();
            outln!(
                "{cmd} port {}: {} ({kind})",
                e.vport.port_no.unwrap_or_default(),
                e.vport.name.as_deref().unwrap_or("?")
            );
            Ok(())
        },
    )
}

fn port(cmd: &PortCmd) -> Result<()> {
    let c = kernel()?;
    match cmd {
        PortCmd::Add { dp, name, kind, dst_port } => {
            let ifi = dp_index(&c, dp)?;
            let (kind, options) = match kind {
                PortType::Netdev => (VportType::Netdev, None),
                PortType::Internal => (VportType::Internal, None),
                PortType::Vxlan => (
                    VportType::Vxlan,
                    Some(VportOptions { dst_port: Some(dst_port.unwrap_or(weaver::DEFAULT_PORT + 1)), other: vec![] }),
                ),
            };
            let v = c.create_vport(ifi, name, kind, options, vec![])?;
            outln!("port {}: {}", v.port_no.unwrap_or_default(), name);
        }
        PortCmd::Del { dp, name } => {
            let ifi = dp_index(&c, dp)?;
            let v = c.get_vport(name)?.with_context(|| format!("no port named {name}"))?;
            if v.dp_ifindex != ifi {
                bail!("port {name} is not on datapath {dp}");
            }
            c.delete_vport(ifi, v.port_no.context("kernel reported a port without a number")?)?;
        }
    }
    Ok(())
}

async fn flows(cli: &Cli, cmd: &FlowsCmd) -> Result<()> {
    match cmd {
        FlowsCmd::Dump { dp, json } => {
            // The daemon serves its own datapath; another one is read directly.
            let view = match from_daemon::<FlowsView>(cli, "/v1/flows").await? {
                Some(v) if v.datapath == *dp => v,
                _ => {
                    let c = kernel()?;
                    let ifi = dp_index(&c, dp)?;
                    FlowsView { datapath: dp.clone(), flows: c.dump_flows(ifi)?, now_ms: api::monotonic_ms() }
                }
            };
            if *json {
                let rows: Vec<_> = view
                    .flows
                    .iter()
                    .map(|f| serde_json::json!({ "flow": f, "text": format::format_flow(f, Some(view.now_ms)) }))
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for f in &view.flows {
                    outln!("{}", format::format_flow(f, Some(view.now_ms)));
                }
            }
        }
        FlowsCmd::Add { dp, key, actions } => {
            // Bad text is refused before the kernel is touched.
            let (key, mask) = format::parse_key(key).context("flow key")?;
            let actions = format::parse_actions(actions).context("flow actions")?;
            let c = kernel()?;
            let f = Flow {
                dp_ifindex: dp_index(&c, dp)?,
                key,
                mask: Some(mask),
                actions: Some(actions),
                ..Default::default()
            };
            c.new_flow(&f)?;
        }
        FlowsCmd::Mod { dp, clear, key, actions } => {
            let (key, mask) = format::parse_key(key).context("flow key")?;
            let actions = actions.as_deref().map(format::parse_actions).transpose().context("flow actions")?;
            let c = kernel()?;
            let f = Flow {
                dp_ifindex: dp_index(&c, dp)?,
                key,
                mask: Some(mask),
                actions,
                clear: *clear,
                ..Default::default()
            };
            c.set_flow(&f)?;
        }
        FlowsCmd::Get { dp, key } => {
            let (key, _) = format::parse_key(key).context("flow key")?;
            let c = kernel()?;
            match c.get_flow(dp_index(&c, dp)?, key, None)? {
                Some(f) => outln!("{}", format::format_flow(&f, Some(api::monotonic_ms()))),
                None => bail!("no such flow"),
            }
        }
        FlowsCmd::Del { dp, key } => {
            let (key, _) = format::parse_key(key).context("flow key")?;
            let c = kernel()?;
            c.del_flow(dp_index(&c, dp)?, key, None)?;
        }
        FlowsCmd::Flush { dp } => {
            let c = kernel()?;
            c.flush_flows(dp_index(&c, dp)?)?;
        }
    }
    Ok(())
}

/// Escapes a DNS name for a query string (names are letters, digits,
/// hyphens and dots; anything else is percent-encoded).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
