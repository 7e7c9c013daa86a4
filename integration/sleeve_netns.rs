//! The sleeve on this machine's kernel (no openvswitch module), natively:
//! three hosts A, B, C in network namespaces on one underlay switch, each
//! running weaver, each with two containers (namespaces) attached. The
//! sleeve is chosen by the daemons themselves. Needs root (CI runs as root).
//!
//! The switch port towards C has MTU 1200 while every host's own interface
//! says 1500: datagrams bigger than 1200 bytes to or from C vanish without
//! an ICMP, so only the sleeve's DF probes can find that path's MTU.
//!
//! One test, in phases (one setup is most of the cost):
//! 1. every container pings every other one; the daemons report "sleeve"
//!    and why; a capture of the underlay shows a known payload in clear;
//! 2. path MTU: A–C's is found below 1200; a large DF ping from A to C gets
//!    ICMP "fragmentation needed" with the MTU; without DF it arrives whole;
//! 3. random datagrams to UDP 6783 are counted and change nothing;
//! 4. multi-hop: UDP between A and C dropped; the A–C path goes down, and
//!    A's containers reach C's through B; unblocked, it comes back;
//! 5. the daemons restart with a password (containers stay attached): all
//!    pairs ping again, and the capture shows no plaintext of the payload;
//! 6. with the underlay as a trusted subnet at every peer, the sleeve does
//!    not seal (the control connection still is encrypted);
//! 7. TCP super-frames go whole, sealed once, in pieces (A to B); a peer
//!    without pieces cuts them where its fragments are dropped (C to A);
//! 8. pieces fit a path narrower than the sender's interface (C to A).
//!
//! A route that refuses UDP GSO (pieces then go one datagram each) cannot
//! be made on kernels from 6.11, which checksum in software instead: the
//! lab's scenario `mesh3_sleeve_pieces` covers it on the lab's 6.1 kernel.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{sh, sh_out, wait_until, weavectl};

const HOSTS: [&str; 3] = ["a", "b", "c"];
/// A payload pattern for ping (`-p`): "weaverknown" in hex, repeated.
const PATTERN_HEX: &str = "7765617665726b6e6f776e";
const PATTERN: &[u8] = b"weaverknown";

struct Lab {
    prefix: String,
    dir: PathBuf,
    daemons: Vec<Child>,
}

impl Lab {
    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.prefix)
    }

    fn container(h: &str, i: u32) -> String {
        format!("{h}{i}")
    }

    /// The overlay address of container `h`,`i`: 10.40.0.(10*host + i).
    fn ip(h: &str, i: u32) -> String {
        let n = HOSTS.iter().position(|x| *x == h).expect("host") as u32 + 1;
        format!("10.40.0.{}", n * 10 + i)
    }

    fn underlay(h: &str) -> String {
        let n = HOSTS.iter().position(|x| *x == h).expect("host") + 1;
        format!("10.92.0.{n}")
    }

    fn new() -> Lab {
        let prefix = format!("ws{}-", std::process::id() % 100000);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sleeve-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let lab = Lab { prefix, dir, daemons: Vec::new() };
        let sw = lab.ns("sw");
        sh(&format!("ip netns add {sw} && ip -n {sw} link set lo up && ip -n {sw} link add br0 type bridge && ip -n {sw} link set br0 up"));
        for h in HOSTS {
            let ns = lab.ns(h);
            sh(&format!(
                "ip netns add {ns} && ip -n {ns} link set lo up && \
                 ip link add eth0 netns {ns} type veth peer name p{h} netns {sw} && \
                 ip -n {sw} link set p{h} master br0 up && \
                 ip -n {ns} addr add {}/24 dev eth0 && ip -n {ns} link set eth0 up",
                Lab::underlay(h)
            ));
            for i in 1..=2 {
                let c = lab.ns(&Lab::container(h, i));
                sh(&format!("ip netns add {c} && ip -n {c} link set lo up"));
            }
        }
        // The switch port towards C carries at most 1200 bytes.
        sh(&format!("ip -n {sw} link set pc mtu 1200"));
        lab
    }

    fn sock(&self, h: &str) -> PathBuf {
        self.dir.join(format!("{h}.sock"))
    }

    fn start(&mut self, h: &str, password: Option<&str>) {
        self.start_with(h, password, "")
    }

    fn start_with(&mut self, h: &str, password: Option<&str>, trusted: &str) {
        self.start_args(h, password, trusted, &[])
    }

    fn start_args(&mut self, h: &str, password: Option<&str>, trusted: &str, extra: &[&str]) {
        let peers: Vec<String> = HOSTS.iter().filter(|x| **x != h).map(|x| Lab::underlay(x)).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{h}.log")))
            .expect("log file");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(h), env!("CARGO_BIN_EXE_weaver")])
            .args(["--nickname", &format!("host-{h}")])
            .args(["--api-socket", self.sock(h).to_str().expect("utf-8")])
            .args(["--state-dir", self.dir.join(format!("state-{h}")).to_str().expect("utf-8")])
            .args(extra)
            .args(&peers)
            .env("RUST_LOG", "info")
            .env("WEAVER_TRUSTED_SUBNETS", trusted)
            .stdout(Stdio::null())
            .stderr(log);
        match password {
            Some(p) => cmd.env("WEAVER_PASSWORD", p),
            None => cmd.env_remove("WEAVER_PASSWORD"),
        };
        self.daemons.push(cmd.spawn().expect("start weaver"));
    }

    /// Stops every daemon with SIGTERM and waits for each to exit.
    fn stop_all(&mut self) {
        for mut d in std::mem::take(&mut self.daemons) {
            let _ = Command::new("kill").args(["-TERM", &d.id().to_string()]).status();
            let t0 = Instant::now();
            while matches!(d.try_wait(), Ok(None)) {
                if t0.elapsed() > Duration::from_secs(10) {
                    let _ = d.kill();
                    panic!("a daemon ignored SIGTERM for 10 s\n{}", self.logs());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn log(&self, h: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{h}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        HOSTS.iter().map(|h| format!("---- {h}.log\n{}", self.log(h))).collect()
    }

    fn ctl(&self, h: &str, args: &[&str]) -> Result<String, String> {
        weavectl(&self.sock(h), args)
    }

    fn json(&self, h: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        self.ctl(h, &a).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
    }

    /// Runs `cmd` in container `c`'s namespace.
    fn in_container(&self, c: &str, cmd: &str) -> (bool, String) {
        sh_out(&format!("ip netns exec {} {cmd}", self.ns(c)))
    }

    fn ping(&self, from: &str, to_ip: &str, extra: &str) -> (bool, String) {
        self.in_container(from, &format!("ping -c 2 -i 0.2 -W 2 {extra} {to_ip}"))
    }

    /// The sleeve view of `h`'s connection to `peer`'s underlay address.
    fn conn(&self, h: &str, peer: &str) -> Value {
        let v = self.json(h, &["status", "connections"]);
        let ip = Lab::underlay(peer);
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .find(|c| c["state"] == "established" && c["addr"].as_str().is_some_and(|s| s.starts_with(&ip)))
                    .cloned()
            })
            .unwrap_or(Value::Null)
    }

    /// Captures UDP 6783 on the switch while `f` runs, until tcpdump has
    /// written at least `big` packets of 250 bytes or more (the test's
    /// pings; heartbeats are smaller); returns the file.
    fn capture(&self, big: usize, f: impl FnOnce()) -> Vec<u8> {
        let file = self.dir.join("underlay.pcap");
        let _ = std::fs::remove_file(&file);
        let mut td = Command::new("ip")
            .args(["netns", "exec", &self.ns("sw"), "tcpdump", "-i", "br0", "-U", "-s", "0", "-w"])
            .arg(&file)
            .args(["udp", "port", "6783"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump (integration/setup.sh installs it)");
        wait_until("tcpdump running", Duration::from_secs(5), || file.exists());
        std::thread::sleep(Duration::from_millis(300));
        f();
        // tcpdump may lag behind the ring under load: SIGINT would drop
        // what it has not read yet.
        let t0 = Instant::now();
        while big_packets(&std::fs::read(&file).unwrap_or_default()) < big && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-INT", &td.id().to_string()]).status();
        let _ = td.wait();
        std::fs::read(&file).expect("capture file")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let mut names = vec!["sw".to_string()];
        for h in HOSTS {
            names.push(h.to_string());
            for i in 1..=2 {
                names.push(Lab::container(h, i));
            }
        }
        for n in names {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(&n)]).status();
        }
    }
}

/// Packets of 250 bytes or more in a pcap file (either byte order).
fn big_packets(pcap: &[u8]) -> usize {
    let Some(magic) = pcap.get(0..4) else { return 0 };
    let le = magic == [0xd4, 0xc3, 0xb2, 0xa1] || magic == [0x4d, 0x3c, 0xb2, 0xa1];
    let u32_at = |i: usize| {
        pcap.get(i..i + 4).map(|b| {
            let a = [b[0], b[1], b[2], b[3]];
            if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        })
    };
    let (mut at, mut n) = (24, 0);
    while let Some(incl) = u32_at(at + 8) {
        if incl >= 250 {
            n += 1;
        }
        at += 16 + incl as usize;
    }
    n
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn all_containers() -> Vec<(String, String)> {
    HOSTS.iter().flat_map(|h| (1..=2).map(move |i| (Lab::container(h, i), Lab::ip(h, i)))).collect()
}

/// Every container pings every other one (first pings may wait for ARP).
fn ping_all(lab: &Lab) {
    let all = all_containers();
    for (from, _) in &all {
        for (to, ip) in &all {
            if from == to {
                continue;
            }
            let mut last = String::new();
            let ok = (0..5).any(|_| {
                let (ok, out) = lab.ping(from, ip, "");
                last = out;
                ok
            });
            assert!(ok, "{from} cannot reach {to} ({ip}):\n{last}\n{}", lab.logs());
        }
    }
}

fn established_sleeve(lab: &Lab, h: &str) -> bool {
    HOSTS.iter().filter(|p| **p != h).all(|p| lab.conn(h, p)["overlay"] == "sleeve")
}

#[test]
fn sleeve_three_hosts() {
    assert!(
        !std::path::Path::new("/sys/module/openvswitch").exists(),
        "this test is for kernels without openvswitch; the lab covers the other case"
    );
    let mut lab = Lab::new();
    for h in HOSTS {
        lab.start(h, None);
    }
    for h in HOSTS {
        wait_until(&format!("{h}'s API"), Duration::from_secs(20), || lab.sock(h).exists());
        for i in 1..=2 {
            let c = lab.ns(&Lab::container(h, i));
            let out = lab.ctl(h, &["attach", &format!("{}/24", Lab::ip(h, i)), &c]);
            assert!(out.is_ok(), "attach {c}: {out:?}\n{}", lab.logs());
        }
    }

    // 1. Sleeve chosen and reported; all pairs ping; the payload is visible.
    for h in HOSTS {
        let st = lab.json(h, &["status"]);
        assert_eq!(st["overlay"], "sleeve", "{st}");
        assert_eq!(st["reason"], "kernel has no openvswitch module", "{st}");
        wait_until(&format!("{h}'s connections on the sleeve"), Duration::from_secs(30), || {
            established_sleeve(&lab, h)
        });
    }
    let text = lab.ctl("a", &["status", "connections"]).unwrap_or_default();
    assert!(text.contains("sleeve"), "{text}");
    ping_all(&lab);
    let clear = lab.capture(4, || {
        let (ok, out) = lab.ping("a1", &Lab::ip("c", 1), &format!("-p {PATTERN_HEX} -s 200"));
        assert!(ok, "{out}");
    });
    assert!(contains(&clear, PATTERN), "without a password the payload crosses the underlay in clear");

    // 2. Path MTU towards C: found by DF probes (the switch drops silently).
    wait_until("A–C path MTU verified", Duration::from_secs(60), || {
        let c = lab.conn("a", "c");
        c["sleeve"]["pmtu"] == "verified" && c["sleeve"]["payload_limit"].as_u64().is_some_and(|l| l <= 1172)
    });
    let limit = lab.conn("a", "c")["sleeve"]["payload_limit"].as_u64().unwrap_or(0);
    assert!(limit >= 1164, "A–C path MTU {limit}: the bisection should land within 8 bytes of 1172");
    wait_until("C–A path MTU verified", Duration::from_secs(60), || {
        lab.conn("c", "a")["sleeve"]["pmtu"] == "verified"
    });
    // Unsealed: header 20, record 14, Ethernet 14.
    let ip_mtu = limit - 48;
    let (_, out) = lab.ping("a1", &Lab::ip("c", 1), "-M do -s 1300");
    assert!(
        out.contains(&format!("mtu = {ip_mtu}")) || out.contains(&format!("mtu={ip_mtu}")),
        "a DF ping too big for the path must be answered with frag-needed (mtu {ip_mtu}):\n{out}"
    );
    let (ok, out) = lab.ping("a2", &Lab::ip("c", 2), "-M dont -s 1300");
    assert!(ok && out.contains("1308 bytes from"), "non-DF large pings must arrive whole:\n{out}");
    // The A–B path is not limited: a large DF ping goes through.
    let (ok, out) = lab.ping("a1", &Lab::ip("b", 1), "-M do -s 1300");
    assert!(ok, "A–B carries full-size frames:\n{out}");

    // 3. Random datagrams to UDP 6783: counted, nothing else.
    let before = lab.json("a", &["status"]);
    let junk = format!(
        "import os, socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range(3000):\n    n = i % 300\n    b = os.urandom(n)\n    \
         if i % 3 == 0 and n >= 20: b = bytes([1, i % 4, 0, 0]) + b[4:]\n    \
         s.sendto(b, ('{}', 6783))\n",
        Lab::underlay("a")
    );
    let script = lab.dir.join("junk.py");
    std::fs::write(&script, junk).expect("write script");
    sh(&format!("ip netns exec {} python3 {}", lab.ns("b"), script.display()));
    std::thread::sleep(Duration::from_millis(500));
    let after = lab.json("a", &["status"]);
    let dropped = |v: &Value| {
        ["unknown", "malformed", "refused"].iter().map(|k| v["sleeve"][k].as_u64().unwrap_or(0)).sum::<u64>()
    };
    let got = |v: &Value| v["sleeve"]["datagrams_received"].as_u64().unwrap_or(0);
    // Every datagram that reached the daemon was counted as junk, but for
    // the few heartbeats of the same half second (a burst may overflow the
    // socket: those never reach it).
    let (n, junk) = (got(&after) - got(&before), dropped(&after) - dropped(&before));
    assert!(
        n >= 1000 && junk + 20 >= n && junk <= n,
        "junk not counted: {n} received, {junk} dropped: {before} -> {after}"
    );
    assert_eq!(after["sleeve"]["injected"], before["sleeve"]["injected"], "junk must never be injected");
    ping_all(&lab);

    // 4. Multi-hop: UDP between A and C dropped (TCP still up).
    let (a_ns, c_ip) = (lab.ns("a"), Lab::underlay("c"));
    sh(&format!(
        "ip netns exec {a_ns} iptables -I OUTPUT -p udp -d {c_ip} -j DROP && \
         ip netns exec {a_ns} iptables -I INPUT -p udp -s {c_ip} -j DROP"
    ));
    wait_until("A–C sleeve path down", Duration::from_secs(15), || lab.conn("a", "c")["sleeve"]["state"] == "down");
    let mut last = String::new();
    let relayed = (0..20).any(|_| {
        let (ok, out) = lab.ping("a1", &Lab::ip("c", 1), "");
        last = out;
        ok
    });
    assert!(relayed, "A must reach C through B:\n{last}\n{}", lab.logs());
    let b = lab.json("b", &["status"]);
    assert!(b["sleeve"]["relayed"].as_u64().unwrap_or(0) > 0, "B relayed nothing: {b}");
    sh(&format!(
        "ip netns exec {a_ns} iptables -D OUTPUT -p udp -d {c_ip} -j DROP && \
         ip netns exec {a_ns} iptables -D INPUT -p udp -s {c_ip} -j DROP"
    ));
    wait_until("A–C sleeve path back", Duration::from_secs(15), || lab.conn("a", "c")["overlay"] == "sleeve");

    // 5. Encrypted: restart with a password; containers stay attached.
    lab.stop_all();
    for h in HOSTS {
        let _ = std::fs::remove_file(lab.sock(h));
        lab.start(h, Some("sleeve-test-secret"));
    }
    for h in HOSTS {
        wait_until(&format!("{h}'s API after restart"), Duration::from_secs(20), || lab.sock(h).exists());
        wait_until(&format!("{h}'s encrypted connections on the sleeve"), Duration::from_secs(30), || {
            established_sleeve(&lab, h)
                && HOSTS.iter().filter(|p| **p != h).all(|p| lab.conn(h, p)["encrypted"] == true)
        });
    }
    ping_all(&lab);
    let sealed = lab.capture(4, || {
        let (ok, out) = lab.ping("a1", &Lab::ip("c", 1), &format!("-p {PATTERN_HEX} -s 200"));
        assert!(ok, "{out}");
    });
    assert!(sealed.len() > 1000, "the capture saw no sleeve traffic ({} bytes)", sealed.len());
    assert!(!contains(&sealed, PATTERN), "with a password, no plaintext of the payload may cross the underlay");
    assert_eq!(lab.conn("a", "c")["sleeve"]["sealed"], true);

    // 6. Trusted subnets: the underlay trusted at every peer, so the data
    //    path is not sealed (the control connection still is).
    lab.stop_all();
    for h in HOSTS {
        let _ = std::fs::remove_file(lab.sock(h));
        lab.start_with(h, Some("sleeve-test-secret"), "10.92.0.0/24");
    }
    for h in HOSTS {
        wait_until(&format!("{h}'s API, trusted"), Duration::from_secs(20), || lab.sock(h).exists());
        wait_until(&format!("{h}'s trusted connections on the sleeve"), Duration::from_secs(30), || {
            established_sleeve(&lab, h)
                && HOSTS.iter().filter(|p| **p != h).all(|p| lab.conn(h, p)["sleeve"]["sealed"] == false)
        });
    }
    assert_eq!(lab.conn("a", "c")["encrypted"], true, "the control connection stays encrypted");
    let trusted = lab.capture(4, || {
        let (ok, out) = lab.ping("a1", &Lab::ip("c", 1), &format!("-p {PATTERN_HEX} -s 200"));
        assert!(ok, "{out}");
    });
    assert!(contains(&trusted, PATTERN), "between trusted subnets the sleeve does not seal");

    // 7. GSO super-frames (on by default), sealed: A's TCP to B travels as
    //    whole super-frames, each sealed once and sent in pieces that fit
    //    the path (one UDP GSO send), put together and injected whole by
    //    B. C sends without pieces (--sleeve-pieces=false), so its
    //    super-frames would go whole only as IPv4 fragments: those are 1500
    //    bytes (its interface's MTU) and its switch port carries 1200, so
    //    the switch drops them, C's fragment checks go unanswered, and C
    //    cuts its super-frames for A. TCP delivers every byte either way,
    //    so the segments' checksums are right. A captures on a tap
    //    (--sleeve-capture tap), B is hybrid (the default): both are
    //    exercised.
    lab.stop_all();
    for h in HOSTS {
        let _ = std::fs::remove_file(lab.sock(h));
        let extra: &[&str] = match h {
            "a" => &["--sleeve-capture", "tap"],
            "b" => &["--sleeve-gso"],
            _ => &["--sleeve-pieces=false"],
        };
        lab.start_args(h, Some("sleeve-test-secret"), "", extra);
    }
    for h in HOSTS {
        wait_until(&format!("{h}'s API, GSO"), Duration::from_secs(20), || lab.sock(h).exists());
        wait_until(&format!("{h}'s connections on the sleeve, GSO"), Duration::from_secs(30), || {
            established_sleeve(&lab, h)
        });
    }
    let fragments = |h: &str, p: &str| lab.conn(h, p)["sleeve"]["fragments"].as_str().unwrap_or("").to_string();
    let pieces = |lab: &Lab, h: &str, p: &str| lab.conn(h, p)["sleeve"]["pieces"].as_bool().unwrap_or(false);
    wait_until("A-B sends super-frames in pieces", Duration::from_secs(20), || {
        pieces(&lab, "a", "b") && pieces(&lab, "b", "a")
    });
    assert!(!pieces(&lab, "a", "c") && !pieces(&lab, "c", "a"), "pieces to a peer that does not take them");
    assert_eq!(fragments("a", "b"), "", "A-B has no fragment check: it sends no fragments");
    wait_until("C's fragments found blocked", Duration::from_secs(20), || {
        fragments("c", "a") == "blocked" && fragments("c", "b") == "blocked"
    });
    let shown = lab.ctl("a", &["status", "connections"]).unwrap_or_default();
    assert!(shown.contains("super-frames whole in pieces"), "{shown}");
    let shown = lab.ctl("c", &["status", "connections"]).unwrap_or_default();
    assert!(shown.contains("fragments blocked: super-frames cut"), "{shown}");
    let (_, link) = lab.in_container("a1", "ip -d link show ethwe");
    assert!(link.contains("gso_max_size 62000"), "A's containers get the GSO cap: {link}");
    let stat = |lab: &Lab, h: &str, k: &str| lab.json(h, &["status"])["sleeve"][k].as_u64().unwrap_or(0);
    let iperf = |lab: &Lab, from: &str, to: &str| {
        let server = lab.ns(to);
        let mut s = Command::new("ip")
            .args(["netns", "exec", &server, "iperf3", "-s", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 (integration/setup.sh installs it)");
        std::thread::sleep(Duration::from_millis(500));
        let ip = Lab::ip(&to[..1], 1);
        let (ok, out) = lab.in_container(from, &format!("timeout 30 iperf3 -c {ip} -n 20M"));
        let _ = s.wait();
        assert!(ok, "iperf3 {from} -> {to}: {out}\n{}", lab.logs());
    };
    // A captures and injects on a tap: no capture pair.
    let (_, tap) = lab.in_container("a", "ip -d link show weave-tap");
    assert!(tap.contains("master weave") && tap.contains("tun type tap"), "A's capture tap: {tap}");
    let (pair, out) = lab.in_container("a", "ip link show vethwe-pcap");
    assert!(!pair, "A kept the capture pair beside the tap: {out}");
    // B is hybrid: it captures on the pair and injects super-frames whole
    // through a tap the bridge never forwards to (the bridge receives them
    // and forwards them whole to b1's veth).
    let (_, tap) = lab.in_container("b", "ip -d link show weave-tap");
    assert!(tap.contains("master weave") && tap.contains("tun type tap"), "B's inject tap: {tap}");
    for flag in ["learning off", "flood off", "mcast_flood off", "bcast_flood off"] {
        assert!(tap.contains(flag), "B's inject tap is a destination of the bridge ({flag}): {tap}");
    }
    let (pair, out) = lab.in_container("b", "ip link show vethwe-pcap");
    assert!(pair, "B has no capture pair beside its tap: {out}");
    iperf(&lab, "a1", "b1");
    let (sent, got) = (stat(&lab, "a", "gso_sent"), stat(&lab, "b", "gso_received"));
    let (in_pieces, put_together) = (stat(&lab, "a", "pieces_sent"), stat(&lab, "b", "pieces_received"));
    let (whole, cut) = (stat(&lab, "b", "gso_injected"), stat(&lab, "b", "segmented"));
    eprintln!(
        "a1 -> b1: A sent {sent} super-frames ({in_pieces} in pieces), B received {got} ({put_together} put together), \
         injected {whole} whole and cut {cut}"
    );
    assert!(sent > 0 && got > 0 && whole > 0, "A-B did not carry super-frames whole: {sent}/{got}/{whole}");
    assert!(
        in_pieces == sent && put_together > 0,
        "A-B's super-frames did not go in pieces: {in_pieces}/{put_together}"
    );
    assert_eq!(cut, 0, "B cut super-frames it could inject whole");
    assert_eq!(stat(&lab, "b", "pieces_refused"), 0, "B refused pieces of an authentic peer");
    let (c_cut0, sent0, a_got0) =
        (stat(&lab, "c", "segmented"), stat(&lab, "c", "gso_sent"), stat(&lab, "a", "gso_received"));
    iperf(&lab, "c1", "a1");
    let (c_cut, a_got) = (stat(&lab, "c", "segmented"), stat(&lab, "a", "gso_received"));
    eprintln!("c1 -> a1: C cut {} super-frames, A received {} whole", c_cut - c_cut0, a_got - a_got0);
    assert!(c_cut > c_cut0, "C did not cut the super-frames for A");
    assert_eq!(a_got, a_got0, "A got super-frames over a path that drops C's fragments");
    assert_eq!(stat(&lab, "c", "gso_sent"), sent0, "C sent super-frames towards A");

    // 8. Pieces over a path narrower than the sender's interface: C again
    //    with the defaults (pieces), sealed. Its pieces must fit the path
    //    MTU it verified (under 1200 bytes, where its interface says 1500:
    //    the switch drops anything bigger without a word), so its TCP to A
    //    arrives whole, in pieces, and nothing is cut.
    lab.stop_all();
    for h in HOSTS {
        let _ = std::fs::remove_file(lab.sock(h));
        lab.start_args(h, Some("sleeve-test-secret"), "", &[]);
    }
    for h in HOSTS {
        wait_until(&format!("{h}'s API, pieces"), Duration::from_secs(20), || lab.sock(h).exists());
        wait_until(&format!("{h}'s connections on the sleeve, pieces"), Duration::from_secs(30), || {
            established_sleeve(&lab, h)
        });
    }
    wait_until("C–A sends pieces over a verified path MTU", Duration::from_secs(60), || {
        let c = lab.conn("c", "a");
        pieces(&lab, "c", "a") && c["sleeve"]["pmtu"] == "verified"
    });
    let limit = lab.conn("c", "a")["sleeve"]["payload_limit"].as_u64().unwrap_or(0);
    // (A veth takes frames up to 4 bytes over its MTU, room for a VLAN tag:
    // from C, 1204-byte packets pass the switch port, 1176 bytes of UDP.)
    assert!(limit > 0 && limit <= 1176, "C–A's payload limit {limit}");
    iperf(&lab, "c1", "a1");
    let (in_pieces, put_together) = (stat(&lab, "c", "pieces_sent"), stat(&lab, "a", "pieces_received"));
    let (whole, cut) = (stat(&lab, "a", "gso_injected"), stat(&lab, "c", "segmented"));
    eprintln!("c1 -> a1 in pieces of at most {limit} bytes: C sent {in_pieces}, A put {put_together} together, injected {whole} whole");
    assert!(
        in_pieces > 0 && put_together > 0 && whole > 0,
        "C–A did not carry pieces: {in_pieces}/{put_together}/{whole}"
    );
    assert_eq!(cut, 0, "C cut super-frames it could send in pieces");
    assert_eq!(stat(&lab, "a", "pieces_refused"), 0, "A refused pieces of an authentic peer");
    lab.stop_all();
    for h in HOSTS {
        let log = lab.log(h);
        assert!(!log.contains("panicked"), "{h} panicked:\n{log}");
    }
}
