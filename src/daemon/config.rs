//! The daemon's settings: flags and environment variables, validated at
//! start. Invalid settings are refused with the setting's name and why.

use std::path::PathBuf;

use clap::Parser;
use thiserror::Error;

use crate::api;
use crate::mesh::maker;
use crate::mesh::peer::PeerName;

/// `weaver` command line.
#[derive(Parser, Debug, Clone)]
#[command(name = "weaver", version, about = "weaver overlay network daemon")]
pub struct Args {
    /// Peers to connect to: HOST or HOST:PORT (in WEAVER_PEERS: separated
    /// by spaces or commas).
    #[arg(env = "WEAVER_PEERS")]
    pub peers: Vec<String>,
    /// Settings from a TOML file (keys: these flags' long names); flags and the environment win over it.
    #[arg(long, env = "WEAVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// This peer's name (six hex octets); default: persisted in the state dir, random at first start.
    #[arg(long, env = "WEAVER_NAME")]
    pub name: Option<String>,
    /// Nickname; default: the hostname.
    #[arg(long, env = "WEAVER_NICKNAME")]
    pub nickname: Option<String>,
    /// Password for control and data encryption (prefer WEAVER_PASSWORD or --password-file).
    #[arg(long, env = "WEAVER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// File holding the password (trailing newline ignored).
    #[arg(long, env = "WEAVER_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Subnets whose peers need no data-path encryption, comma-separated CIDRs.
    #[arg(long, env = "WEAVER_TRUSTED_SUBNETS", default_value = "")]
    pub trusted_subnets: String,
    /// Datapath name.
    #[arg(long, env = "WEAVER_DATAPATH", default_value = crate::DEFAULT_DATAPATH)]
    pub datapath: String,
    /// Control-plane TCP port; VXLAN listens on port + 1.
    #[arg(long, env = "WEAVER_PORT", default_value_t = crate::DEFAULT_PORT)]
    pub port: u16,
    /// MTU of the containers' interfaces (the underlay's MTU less 50 bytes
    /// of VXLAN overhead, by default for a 1426-byte path as Weave chose).
    #[arg(long, env = "WEAVER_MTU", default_value_t = 1376)]
    pub mtu: u32,
    /// Path of the API's Unix socket.
    #[arg(long, env = "WEAVER_API_SOCKET", default_value = api::DEFAULT_SOCKET)]
    pub api_socket: PathBuf,
    /// Where the peer name and the connect targets are kept.
    #[arg(long, env = "WEAVER_STATE_DIR", default_value = "/var/lib/weave")]
    pub state_dir: PathBuf,
    /// Use the sleeve overlay even if the kernel datapath works.
    #[arg(long, env = "WEAVER_NO_FASTDP")]
    pub no_fastdp: bool,
    /// Peers to reach over the sleeve even when both ends run the fast
    /// datapath: peer names, nicknames or IP addresses, comma-separated.
    #[arg(long, env = "WEAVER_SLEEVE_PEER", value_delimiter = ',')]
    pub sleeve_peer: Vec<String>,
    /// How bridge mode captures and injects frames: "packet" (raw packet
    /// sockets, batched), "pcap" (libpcap), "tap" (a tap device, a port of
    /// the bridge; needs GSO), "hybrid" (packet sockets, and a tap that only
    /// injects super-frames whole; needs GSO) or "auto" (hybrid with GSO,
    /// else packet).
    #[arg(long, env = "WEAVER_SLEEVE_CAPTURE", default_value = "auto")]
    pub sleeve_capture: String,
    /// Bridge mode: carry TCP super-frames (GSO) whole between sleeve hosts
    /// that both enable it, over paths shown to carry IPv4 fragments,
    /// instead of MTU-sized frames. On unless `--sleeve-gso=false` (or the
    /// pcap capture).
    #[arg(long, env = "WEAVER_SLEEVE_GSO", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sleeve_gso: Option<bool>,
    /// With GSO: send super-frames whole as pieces that fit the path, one
    /// UDP GSO send each, to peers that take pieces too (offered as
    /// `sleeve-pieces`); `--sleeve-pieces=false` sends them as one datagram
    /// the underlay fragments, over paths shown to carry that.
    #[arg(long, env = "WEAVER_SLEEVE_PIECES", default_value_t = true, action = clap::ArgAction::Set)]
    pub sleeve_pieces: bool,
    /// Connect to peers learned from the mesh, not only to the ones given.
    #[arg(long, env = "WEAVER_DISCOVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub discovery: bool,
    /// Most connections at once.
    #[arg(long, env = "WEAVER_CONN_LIMIT", default_value_t = 200)]
    pub conn_limit: usize,
    /// Log format.
    #[arg(long, env = "WEAVER_LOG_FORMAT", default_value = "human", value_parser = ["human", "json"])]
    pub log_format: String,
    /// What to log: a level (error, warn, info, debug, trace) or tracing
    /// directives ("info,weaver::sleeve=debug"). RUST_LOG, when set, wins.
    #[arg(long, env = "WEAVER_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// The range IPAM allocates from; empty to turn IPAM off.
    #[arg(long, env = "WEAVER_IPALLOC_RANGE", default_value = "10.32.0.0/12")]
    pub ipalloc_range: String,
    /// The subnet addresses come from when none is asked for; default: the whole range.
    #[arg(long, env = "WEAVER_IPALLOC_DEFAULT_SUBNET")]
    pub ipalloc_default_subnet: Option<String>,
    /// How the range is first divided: `consensus=N` (N peers agree; default: the peers given plus this one),
    /// `seed=NAME,NAME...` (those peers, by peer name), or `observer` (never; ask others for space).
    #[arg(long, env = "WEAVER_IPALLOC_INIT")]
    pub ipalloc_init: Option<String>,
    /// Also serve the API on this loopback TCP address (IP:PORT; the API has no authentication).
    #[arg(long, env = "WEAVER_API_TCP")]
    pub api_tcp: Option<String>,
    /// Serve Prometheus /metrics on this TCP address (IP:PORT).
    #[arg(long, env = "WEAVER_METRICS_ADDRESS")]
    pub metrics_address: Option<String>,
    /// The domain weaveDNS answers for.
    #[arg(long, env = "WEAVER_DNS_DOMAIN", default_value = crate::dns::DEFAULT_DOMAIN)]
    pub dns_domain: String,
    /// Where weaveDNS listens (UDP and TCP); empty to turn it off. Default 0.0.0.0:53 (a busy port is then
    /// reported and DNS stays off; an address given here must be free).
    #[arg(long, env = "WEAVER_DNS_LISTEN_ADDRESS")]
    pub dns_listen_address: Option<String>,
    /// Seconds a container's network namespace must be gone before its addresses are released.
    #[arg(long, env = "WEAVER_IPALLOC_RELEASE_GRACE", default_value_t = 30)]
    pub ipalloc_release_grace: u64,
}

/// A setting that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("--{setting}: {reason}")]
    Invalid { setting: &'static str, reason: String },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting, reason: reason.into() }
}

/// Settings after validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub peers: Vec<String>,
    pub name: Option<PeerName>,
    pub nickname: String,
    pub password: Option<Vec<u8>>,
    pub trusted_subnets: crate::mesh::conn::trust::TrustedSubnets,
    pub datapath: String,
    pub port: u16,
    pub vxlan_port: u16,
    pub mtu: u32,
    pub api_socket: PathBuf,
    pub state_dir: PathBuf,
    pub no_fastdp: bool,
    /// Peers (names, nicknames or IPs) whose connections use the sleeve.
    pub sleeve_peers: Vec<String>,
    pub sleeve_capture: crate::daemon::sleeve::CaptureKind,
    pub sleeve_gso: bool,
    pub sleeve_pieces: bool,
    pub discovery: bool,
    pub conn_limit: usize,
    pub log_format: String,
    /// The log filter (tracing directives), checked.
    pub log_level: String,
    /// IPAM, unless turned off.
    pub ipam: Option<crate::ipam::IpamConfig>,
    /// `--ipalloc-release-grace`.
    pub ipam_grace: std::time::Duration,
    /// weaveDNS, unless turned off.
    pub dns: Option<DnsSettings>,
    /// `--api-tcp`.
    pub api_tcp: Option<std::net::SocketAddr>,
    /// `--metrics-address`.
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// weaveDNS's settings.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// The domain, fully qualified.
    pub domain: hickory_proto::rr::Name,
    /// Where the server listens.
    pub listen: std::net::SocketAddr,
    /// Whether the address was given (a failure to bind it is then fatal).
    pub explicit: bool,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

impl Config {
    pub fn from_args(a: Args) -> Result<Config, ConfigError> {
        // WEAVER_PEERS is one value: "HOST HOST:PORT" or "HOST,HOST".
        let peers = a
            .peers
            .iter()
            .flat_map(|p| p.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|p| !p.is_empty())
            .map(|p| maker::normalise(p, a.port).map_err(|e| invalid("peers", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let name = a
            .name
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: crate::mesh::peer::PeerError| invalid("name", e.to_string()))?;
        let nickname = a.nickname.clone().unwrap_or_else(hostname);
        if nickname.len() > 64 {
            return Err(invalid("nickname", "longer than 64 bytes"));
        }
        let password = match (&a.password, &a.password_file) {
            (Some(_), Some(_)) => return Err(invalid("password", "give --password or --password-file, not both")),
            (Some(p), None) => Some(p.as_bytes().to_vec()),
            (None, Some(f)) => {
                let s = std::fs::read(f).map_err(|e| invalid("password-file", format!("{}: {e}", f.display())))?;
                let s = s.strip_suffix(b"\n").unwrap_or(&s).to_vec();
                Some(s)
            }
            (None, None) => None,
        };
        if password.as_ref().is_some_and(|p| p.is_empty()) {
            return Err(invalid("password", "empty"));
        }
        let trusted_subnets = crate::mesh::conn::trust::TrustedSubnets::parse_list(&a.trusted_subnets)
            .map_err(|e| invalid("trusted-subnets", e.to_string()))?;
        if a.datapath.is_empty() || a.datapath.len() > 15 {
            return Err(invalid("datapath", "must be 1 to 15 characters (an interface name)"));
        }
        let vxlan_port =
            a.port.checked_add(1).ok_or_else(|| invalid("port", "must be below 65535 (VXLAN uses port + 1)"))?;
        if a.port == 0 {
            return Err(invalid("port", "must not be 0"));
        }
        if !(576..=65485).contains(&a.mtu) {
            return Err(invalid("mtu", "must be between 576 and 65485"));
        }
        let sleeve_peers: Vec<String> =
            a.sleeve_peer.iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
        if let Some(bad) = sleeve_peers.iter().find(|p| p.len() > 64 || p.chars().any(char::is_whitespace)) {
            return Err(invalid("sleeve-peer", format!("{bad:?} is not a peer name, nickname or IP address")));
        }
        use crate::daemon::sleeve::CaptureKind;
        let asked = match a.sleeve_capture.as_str() {
            "auto" => None,
            other => Some(other.parse().map_err(|e: String| invalid("sleeve-capture", e))?),
        };
        // GSO is on by default, except with the pcap capture, which cannot.
        let sleeve_gso = a.sleeve_gso.unwrap_or(asked != Some(CaptureKind::Pcap));
        let sleeve_capture = asked.unwrap_or(if sleeve_gso { CaptureKind::Hybrid } else { CaptureKind::Packet });
        if sleeve_gso && sleeve_capture == CaptureKind::Pcap {
            return Err(invalid("sleeve-gso", "needs the tap or packet-socket capture (--sleeve-capture tap|packet)"));
        }
        if !sleeve_gso && matches!(sleeve_capture, CaptureKind::Tap | CaptureKind::Hybrid) {
            return Err(invalid("sleeve-capture", "the tap and hybrid captures need GSO (not --sleeve-gso=false)"));
        }
        if a.conn_limit == 0 {
            return Err(invalid("conn-limit", "must be at least 1"));
        }
        let log_level = a.log_level.trim().to_string();
        if log_level.is_empty() {
            return Err(invalid("log-level", "must not be empty (error, warn, info, debug or trace)"));
        }
        check_log_level(&log_level).map_err(|e| invalid("log-level", e))?;
        let ipam = ipam_config(&a, peers.len())?;
        let addr = |setting: &'static str, v: &Option<String>| -> Result<Option<std::net::SocketAddr>, ConfigError> {
            match v.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(s) => s.parse().map(Some).map_err(|e| invalid(setting, format!("{s:?} is not IP:PORT: {e}"))),
            }
        };
        let api_tcp = addr("api-tcp", &a.api_tcp)?;
        if api_tcp.is_some_and(|a| !a.ip().is_loopback()) {
            return Err(invalid("api-tcp", "must be a loopback address (the API has no authentication)"));
        }
        let metrics_address = addr("metrics-address", &a.metrics_address)?;
        let dns = match a.dns_listen_address.as_deref().map(str::trim) {
            Some("") => None,
            given => {
                let listen = given
                    .unwrap_or("0.0.0.0:53")
                    .parse()
                    .map_err(|e| invalid("dns-listen-address", format!("{given:?} is not IP:PORT: {e}")))?;
                let domain =
                    crate::dns::parse_domain(&a.dns_domain).map_err(|e| invalid("dns-domain", e.to_string()))?;
                Some(DnsSettings { domain, listen, explicit: given.is_some() })
            }
        };
        Ok(Config {
            peers,
            name,
            nickname,
            password,
            trusted_subnets,
            datapath: a.datapath,
            port: a.port,
            vxlan_port,
            mtu: a.mtu,
            api_socket: a.api_socket,
            state_dir: a.state_dir,
            no_fastdp: a.no_fastdp,
            sleeve_peers,
            sleeve_capture,
            sleeve_gso,
            sleeve_pieces: a.sleeve_pieces,
            discovery: a.discovery,
            conn_limit: a.conn_limit,
            log_format: a.log_format,
            log_level,
            ipam,
            ipam_grace: std::time::Duration::from_secs(a.ipalloc_release_grace),
            dns,
            api_tcp,
            metrics_address,
        })
    }
}

/// `--ipalloc-*`, checked: the range and subnet parse, the subnet lies in
/// the range, the init mode is one of the three.
fn ipam_config(a: &Args, peers: usize) -> Result<Option<crate::ipam::IpamConfig>, ConfigError> {
    use crate::ipam::{Init, IpamConfig};
    if a.ipalloc_range.trim().is_empty() {
        if a.ipalloc_default_subnet.is_some() || a.ipalloc_init.is_some() {
            return Err(invalid("ipalloc-range", "empty (IPAM off), yet other --ipalloc settings are given"));
        }
        return Ok(None);
    }
    let net = |setting: &'static str, s: &str| -> Result<ipnet::Ipv4Net, ConfigError> {
        let n: ipnet::Ipv4Net =
            s.trim().parse().map_err(|e| invalid(setting, format!("{s:?} is not an IPv4 CIDR: {e}")))?;
        if n != n.trunc() {
            return Err(invalid(setting, format!("{n} has host bits set; did you mean {}?", n.trunc())));
        }
        if n.prefix_len() > 30 {
            return Err(invalid(setting, format!("{n} is too small (at most /30)")));
        }
        Ok(n)
    };
    let range = net("ipalloc-range", &a.ipalloc_range)?;
    let default_subnet = match &a.ipalloc_default_subnet {
        Some(s) => net("ipalloc-default-subnet", s)?,
        None => range,
    };
    if !range.contains(&default_subnet) {
        return Err(invalid(
            "ipalloc-default-subnet",
            format!("{default_subnet} is not inside --ipalloc-range {range}"),
        ));
    }
    let init = match a.ipalloc_init.as_deref().map(str::trim) {
        None => Init::Consensus(peers + 1),
        Some("observer") => Init::Observer,
        Some(s) => match s.split_once('=') {
            Some(("consensus", n)) => match n.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Init::Consensus(n),
                _ => {
                    return Err(invalid(
                        "ipalloc-init",
                        format!("consensus={n}: the number of peers must be 1 or more"),
                    ))
                }
            },
            Some(("seed", names)) => {
                let names = names
                    .split(',')
                    .filter(|n| !n.trim().is_empty())
                    .map(|n| n.trim().parse::<PeerName>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        invalid("ipalloc-init", format!("seed=: {e} (give peer names, like aa:bb:cc:dd:ee:ff)"))
                    })?;
                if names.is_empty() {
                    return Err(invalid("ipalloc-init", "seed= needs at least one peer name"));
                }
                Init::Seed(names)
            }
            _ => {
                return Err(invalid(
                    "ipalloc-init",
                    format!("{s:?}: expected consensus=N, seed=NAME,NAME... or observer"),
                ))
            }
        },
    };
    Ok(Some(IpamConfig { range, default_subnet, init }))
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A log filter: comma-separated levels or `TARGET=LEVEL` directives. A
/// bare word that is not a level is refused: tracing would take it as a
/// target to log everything of, so a misspelt level would log nothing.
fn check_log_level(v: &str) -> Result<(), String> {
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let level = part.rsplit_once('=').map_or(part, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{part:?}: {level:?} is not a level ({}); give LEVEL or TARGET=LEVEL",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(v).map(drop).map_err(|e| format!("{v:?} is not a log filter: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Held by every test that parses settings: some set `WEAVER_*`
    /// variables, which every parse reads.
    pub(crate) static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn parse(args: &[&str]) -> Result<Config, String> {
        parse_env(&[], args)
    }

    /// Parses with the environment variables `env` set (and removed after).
    fn parse_env(env: &[(&str, &str)], args: &[&str]) -> Result<Config, String> {
        let _held = ENV_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (k, v) in env {
            std::env::set_var(k, v);
        }
        let r = Args::try_parse_from(std::iter::once("weaver").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
            .and_then(|a| Config::from_args(a).map_err(|e| e.to_string()));
        for (k, _) in env {
            std::env::remove_var(k);
        }
        r
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.port, 6783);
        assert_eq!(c.vxlan_port, 6784);
        assert!(c.peers.is_empty());
        assert!(c.password.is_none());
        assert_eq!(c.sleeve_capture, crate::daemon::sleeve::CaptureKind::Hybrid);
        assert!(c.sleeve_gso, "GSO is on by default");
        assert!(c.sleeve_pieces, "and in pieces");
        assert!(!parse(&["--sleeve-pieces=false"]).unwrap().sleeve_pieces);
    }

    #[test]
    fn gso_is_on_and_hybrid_unless_told_otherwise() {
        use crate::daemon::sleeve::CaptureKind;
        let kind = |args: &[&str]| parse(args).map(|c| (c.sleeve_gso, c.sleeve_capture));
        assert_eq!(kind(&[]).unwrap(), (true, CaptureKind::Hybrid));
        assert_eq!(kind(&["--sleeve-gso"]).unwrap(), (true, CaptureKind::Hybrid));
        assert_eq!(kind(&["--sleeve-gso=true"]).unwrap(), (true, CaptureKind::Hybrid));
        assert_eq!(kind(&["--sleeve-gso=false"]).unwrap(), (false, CaptureKind::Packet));
        assert_eq!(kind(&["--sleeve-capture", "tap"]).unwrap(), (true, CaptureKind::Tap));
        assert_eq!(kind(&["--sleeve-capture", "packet"]).unwrap(), (true, CaptureKind::Packet));
        // The pcap capture cannot: off unless asked for, and then refused.
        assert_eq!(kind(&["--sleeve-capture", "pcap"]).unwrap(), (false, CaptureKind::Pcap));
        assert!(kind(&["--sleeve-capture", "hybrid", "--sleeve-gso=false"]).is_err(), "hybrid needs GSO");
        // A bare flag takes no separate value: what follows is a peer.
        let c = parse(&["--sleeve-gso", "10.0.0.1"]).unwrap();
        assert!(c.sleeve_gso && c.peers == vec!["10.0.0.1:6783"]);
        assert!(parse(&["--sleeve-gso=maybe"]).is_err());
    }

    #[test]
    fn peers_get_the_port() {
        let c = parse(&["--port", "7000", "10.0.0.1", "10.0.0.2:6783"]).unwrap();
        assert_eq!(c.peers, vec!["10.0.0.1:7000", "10.0.0.2:6783"]);
    }

    #[test]
    fn peers_from_the_environment() {
        // Space-separated as in /etc/default/weaver, commas too.
        let c = parse_env(&[("WEAVER_PEERS", " 10.0.0.1  hostb:7000,10.0.0.3 ")], &[]).unwrap();
        assert_eq!(c.peers, vec!["10.0.0.1:6783", "hostb:7000", "10.0.0.3:6783"]);
        assert!(parse_env(&[("WEAVER_PEERS", "")], &[]).unwrap().peers.is_empty());
        // Peers on the command line win.
        let c = parse_env(&[("WEAVER_PEERS", "10.0.0.1 10.0.0.2")], &["10.0.0.9"]).unwrap();
        assert_eq!(c.peers, vec!["10.0.0.9:6783"]);
        let e = parse_env(&[("WEAVER_PEERS", "10.0.0.1 bad:peer")], &[]).unwrap_err();
        assert!(e.contains("--peers") && e.contains("bad:peer"), "{e}");
        // --sleeve-peer's variable is its name upper-cased.
        let c = parse_env(&[("WEAVER_SLEEVE_PEER", "hostb,10.0.0.2")], &[]).unwrap();
        assert_eq!(c.sleeve_peers, vec!["hostb", "10.0.0.2"]);
    }

    #[test]
    fn bad_settings_name_the_setting() {
        for (args, needle) in [
            (vec!["--port", "65535"], "--port"),
            (vec!["--name", "nope"], "--name"),
            (vec!["--trusted-subnets", "10.0.0.0/33"], "--trusted-subnets"),
            (vec!["--datapath", "a-very-long-datapath-name"], "--datapath"),
            (vec!["bad:peer"], "--peers"),
            (vec!["--password", "x", "--password-file", "/nonexistent"], "--password"),
            (vec!["--password-file", "/nonexistent/pw"], "--password-file"),
            (vec!["--sleeve-peer", "host a"], "--sleeve-peer"),
            (vec!["--sleeve-capture", "ring"], "--sleeve-capture"),
            (vec!["--sleeve-capture", "pcap", "--sleeve-gso"], "--sleeve-gso"),
            (vec!["--sleeve-capture", "tap", "--sleeve-gso=false"], "--sleeve-capture"),
            (vec!["--ipalloc-range", "10.32.0.0/33"], "--ipalloc-range"),
            (vec!["--ipalloc-range", "10.32.0.1/12"], "--ipalloc-range"),
            (vec!["--ipalloc-default-subnet", "192.168.0.0/24"], "--ipalloc-default-subnet"),
            (vec!["--ipalloc-init", "consensus=0"], "--ipalloc-init"),
            (vec!["--ipalloc-init", "seed=hosta"], "--ipalloc-init"),
            (vec!["--ipalloc-init", "paxos"], "--ipalloc-init"),
            (vec!["--ipalloc-range", "", "--ipalloc-init", "observer"], "--ipalloc-range"),
            (vec!["--dns-listen-address", "localhost"], "--dns-listen-address"),
            (vec!["--api-tcp", "0.0.0.0:6785"], "--api-tcp"),
            (vec!["--api-tcp", "6785"], "--api-tcp"),
            (vec!["--metrics-address", "x"], "--metrics-address"),
            (vec!["--dns-domain", "a..b"], "--dns-domain"),
            (vec!["--log-level", "loud"], "--log-level"),
            (vec!["--log-level", "weaver=[["], "--log-level"),
            (vec!["--log-level", " "], "--log-level"),
            (vec!["--mtu", "100"], "--mtu"),
            (vec!["--mtu", "65486"], "--mtu"),
            (vec!["--nickname", &"n".repeat(65)], "--nickname"),
            (vec!["--conn-limit", "0"], "--conn-limit"),
        ] {
            let e = parse(&args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        // The limits themselves are fine.
        assert!(parse(&["--mtu", "576", "--nickname", &"n".repeat(64), "--conn-limit", "1"]).is_ok());
        // A variable's value is refused naming its flag too.
        for (var, value, needle) in
            [("WEAVER_MTU", "abc", "--mtu"), ("WEAVER_MTU", "100", "--mtu"), ("WEAVER_CONN_LIMIT", "0", "--conn-limit")]
        {
            let e = parse_env(&[(var, value)], &[]).unwrap_err();
            assert!(e.contains(needle), "{var}={value}: {e}");
        }
    }

    #[test]
    fn ipam_settings() {
        use crate::ipam::Init;
        let c = parse(&["10.0.0.1", "10.0.0.2"]).unwrap().ipam.unwrap();
        assert_eq!(c.range.to_string(), "10.32.0.0/12");
        assert_eq!(c.default_subnet, c.range);
        assert_eq!(c.init, Init::Consensus(3));
        let c = parse(&[
            "--ipalloc-range",
            "10.2.0.0/16",
            "--ipalloc-default-subnet",
            "10.2.3.0/24",
            "--ipalloc-init",
            "seed=aa:bb:cc:dd:ee:01,aa:bb:cc:dd:ee:02",
        ])
        .unwrap()
        .ipam
        .unwrap();
        assert_eq!(c.default_subnet.to_string(), "10.2.3.0/24");
        assert!(matches!(c.init, Init::Seed(ref v) if v.len() == 2));
        assert_eq!(parse(&["--ipalloc-init", "observer"]).unwrap().ipam.unwrap().init, Init::Observer);
        assert!(parse(&["--ipalloc-range", ""]).unwrap().ipam.is_none());
    }

    #[test]
    fn log_level_takes_levels_and_directives() {
        assert_eq!(parse(&[]).unwrap().log_level, "info");
        assert_eq!(parse(&["--log-level", "debug"]).unwrap().log_level, "debug");
        assert_eq!(
            parse(&["--log-level", "info,weaver::sleeve=trace"]).unwrap().log_level,
            "info,weaver::sleeve=trace"
        );
    }

    #[test]
    fn sleeve_peers_are_a_list() {
        let c = parse(&["--sleeve-peer", "hostb, 10.0.0.2", "--sleeve-peer", "aa:bb:cc:dd:ee:ff"]).unwrap();
        assert_eq!(c.sleeve_peers, vec!["hostb", "10.0.0.2", "aa:bb:cc:dd:ee:ff"]);
        assert!(parse(&[]).unwrap().sleeve_peers.is_empty());
    }
}
