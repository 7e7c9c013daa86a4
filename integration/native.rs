//! Native tests on this machine's kernel, which has no openvswitch module:
//! the "no ODP" case. They need root (network namespaces), which CI has.

use std::process::Command;
use std::time::Duration;

fn weavectl(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weavectl")).args(args).output().expect("run weavectl");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

fn host_has_odp() -> bool {
    std::path::Path::new("/sys/module/openvswitch").exists()
}

#[test]
fn probe_reports_sleeve_without_the_module() {
    assert!(!host_has_odp(), "this test is for kernels without openvswitch; the lab covers the other case");
    let (ok, out) = weavectl(&["probe"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "sleeve: kernel has no openvswitch module");
    let (ok, out) = weavectl(&["probe", "--json"]);
    assert!(ok, "{out}");
    assert!(out.contains("\"verdict\": \"no_odp\""), "{out}");
}

#[test]
fn direct_reads_fail_clearly_without_the_module() {
    assert!(!host_has_odp());
    let (ok, out) = weavectl(&["--direct", "dp", "show"]);
    assert!(!ok);
    assert!(out.contains("generic netlink family ovs_datapath not found"), "{out}");
    let (ok, out) = weavectl(&["--direct", "flows", "dump"]);
    assert!(!ok);
    assert!(out.contains("openvswitch kernel module"), "{out}");
}

#[test]
fn bad_flow_text_is_refused_with_a_message() {
    // Parsing happens before any kernel access: the error names the text.
    let (ok, out) = weavectl(&["flows", "add", "--dp", "x", "in_port(1),eth(src=zz)", "1"]);
    assert!(!ok);
    assert!(out.contains("flow key"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn daemon_falls_back_to_sleeve_and_reports_why() {
    assert!(!host_has_odp());
    // Its own namespace: bridge mode creates the `weave` bridge there.
    let ns = format!("wfb{}", std::process::id() % 100000);
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    let dir = std::env::temp_dir().join(format!("weaver-native-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("api.sock");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_weaver")])
        .args(["--api-socket", sock.to_str().unwrap()])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        .spawn()
        .expect("start weaver");
    let up = socket_appears(&sock);
    let status = weavectl(&["--api", sock.to_str().unwrap(), "status"]);
    let dp = weavectl(&["--api", sock.to_str().unwrap(), "dp", "show"]);
    let bridge = Command::new("ip").args(["-n", &ns, "-d", "link", "show", "weave"]).output().unwrap();
    let bridge = String::from_utf8_lossy(&bridge.stdout).into_owned();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let exit = child.wait().expect("wait weaver");
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    assert!(up, "daemon did not create its API socket");
    assert!(status.0, "{}", status.1);
    assert!(status.1.contains("Overlay: sleeve (kernel has no openvswitch module)"), "{}", status.1);
    assert!(status.1.contains(" frames captured, "), "{}", status.1);
    assert!(bridge.contains("bridge"), "bridge mode makes the weave bridge: {bridge}");
    // No datapath through the API; the fallback to the kernel fails clearly too.
    assert!(!dp.0);
    assert!(exit.success(), "daemon exit on SIGTERM: {exit:?}");
    assert!(!sock.exists(), "API socket left behind");
}

#[test]
fn attach_puts_ethwe_with_addresses_into_the_namespace() {
    use weaver::plumb::veth::{attach, detach, host_ifname, netns_path, AttachSpec};
    let ns = format!("wat{}", std::process::id() % 100000);
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    let path = netns_path(&ns);
    let spec = AttachSpec {
        netns: path.clone(),
        addrs: vec!["10.77.0.2/24".parse().unwrap(), "fd77::2/64".parse().unwrap()],
        mtu: 1376,
        host_ifname: host_ifname(&path),
        gso_max_size: Some(60_000),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let res = rt.block_on(attach(&spec));
    // The container announces its IPv4 address: a gratuitous ARP reaches the host end.
    let garp = res.as_ref().ok().map(|a| {
        use weaver::plumb::{garp, packet_socket::PacketSocket};
        let mut cap = PacketSocket::capture(a.host_ifindex, 1 << 16).expect("capture on the host end");
        let sent = rt.block_on(garp::announce(&path, a.mac, vec!["10.77.0.2".parse().unwrap()]));
        let mut bufs = vec![vec![0u8; 2048]; 8];
        let mut got = Vec::new();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(3) {
            let mut out = Vec::new();
            let n = cap.recv_batch(&mut bufs, &mut out).unwrap_or(0);
            got.extend(out.iter().zip(bufs.iter()).take(n).filter_map(|(r, b)| garp::parse(&b[..r.len])));
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (sent, got)
    });
    let show = Command::new("ip").args(["-n", &ns, "addr", "show", "ethwe"]).output().unwrap();
    let show = String::from_utf8_lossy(&show.stdout).into_owned();
    let host = Command::new("ip").args(["link", "show", &spec.host_ifname]).output().unwrap();
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
    let detail = Command::new("ip").args(["-d", "-n", &ns, "link", "show", "ethwe"]).output().unwrap();
    let detail = String::from_utf8_lossy(&detail.stdout).into_owned();
    assert!(detail.contains("gso_max_size 60000"), "the GSO cap was not applied: {detail}");
    // Attaching again is idempotent: the old pair is replaced.
    let again = rt.block_on(attach(&spec));
    let removed = rt.block_on(detach(&spec.host_ifname));
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let a = res.expect("attach");
    assert!(show.contains("inet 10.77.0.2/24"), "{show}");
    assert!(show.contains("inet6 fd77::2/64"), "{show}");
    assert!(show.contains("mtu 1376"), "{show}");
    assert!(show.contains("state UP") || show.contains(",UP"), "{show}");
    assert!(host.contains("mtu 1376"), "{host}");
    assert_ne!(a.mac, [0; 6]);
    let (sent, got) = garp.expect("attached");
    assert_eq!(sent.expect("announce"), 1);
    assert_eq!(got, vec![(a.mac, "10.77.0.2".parse().unwrap())], "the gratuitous ARP did not reach the host end");
    again.expect("second attach");
    assert!(removed.expect("detach"));
}

/// Network namespaces (created here, removed on drop, also when a test
/// fails) and the processes started in them (killed on drop).
struct Namespaces {
    names: Vec<String>,
    children: Vec<std::process::Child>,
}

impl Namespaces {
    fn new(names: &[&str]) -> Namespaces {
        let mut ns = Namespaces { names: Vec::new(), children: Vec::new() };
        for n in names {
            let st = Command::new("ip").args(["netns", "add", n]).status().expect("run ip");
            assert!(st.success(), "ip netns add {n} failed (root needed)");
            ns.names.push(n.to_string());
            sh(&format!("ip -n {n} link set lo up"));
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for c in &mut self.children {
            // Our own children only, by handle.
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("run sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "command failed: {cmd}\n{text}");
    text
}

fn require_tool(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success());
    assert!(matches!(found, Ok(true)), "{tool} is missing: integration/setup.sh installs it");
}

/// What a capture on the capture end showed.
#[derive(Debug)]
struct Capture {
    frames: usize,
    max_frame: usize,
    /// Frames of exactly the limit: full-size TCP segments.
    full_size: usize,
    oversize: usize,
    bad_cksum: usize,
    good_cksum: usize,
    iperf: String,
    text: String,
}

impl Capture {
    fn summary(&self) -> String {
        format!(
            "{} IPv4 frames, largest {} bytes, {} of the limit, {} over it; checksums: {} correct, {} incorrect",
            self.frames, self.max_frame, self.full_size, self.oversize, self.good_cksum, self.bad_cksum
        )
    }
    fn head(&self) -> String {
        self.text.lines().take(30).collect::<Vec<_>>().join("\n")
    }
}

/// Captures TCP on `vethwe-pcap` (in `br`) with tcpdump while iperf3 sends
/// 2 MB from c1 (10.99.0.1) to c2 (10.99.0.2).
fn capture_transfer(ns: &mut Namespaces, br: &str, c1: &str, c2: &str, limit: usize, tag: &str) -> Capture {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out_path = dir.join(format!("brtest-{}-{tag}.txt", std::process::id()));
    let err_path = dir.join(format!("brtest-{}-{tag}.err", std::process::id()));
    let out = std::fs::File::create(&out_path).unwrap();
    let err = std::fs::File::create(&err_path).unwrap();
    // -e: link-level header with the frame's length; -vv: TCP checksums
    // verified ("(correct)" / "(incorrect -> 0x...)"); -s 0: whole frames.
    let tcpdump = Command::new("ip")
        .args(["netns", "exec", br, "tcpdump", "-i", "vethwe-pcap", "-nn", "-e", "-vv", "-t", "-l", "-s", "0"])
        .args(["-c", "20000", "tcp"])
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start tcpdump");
    let tcpdump_pid = tcpdump.id();
    ns.children.push(tcpdump);
    let mut listening = false;
    for _ in 0..100 {
        if std::fs::read_to_string(&err_path).unwrap_or_default().contains("listening on") {
            listening = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(listening, "tcpdump did not start: {}", std::fs::read_to_string(&err_path).unwrap_or_default());

    let server = Command::new("ip")
        .args(["netns", "exec", c2, "iperf3", "-s", "-1", "-B", "10.99.0.2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start iperf3 server");
    ns.children.push(server);
    let mut iperf = String::new();
    let mut sent = false;
    for _ in 0..50 {
        let o = Command::new("ip")
            .args(["netns", "exec", c1, "iperf3", "-c", "10.99.0.2", "-n", "2M"])
            .output()
            .expect("run iperf3");
        iperf = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        if o.status.success() {
            sent = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(sent, "iperf3 from c1 to c2 failed:\n{iperf}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = Command::new("kill").args(["-INT", &tcpdump_pid.to_string()]).status();
    if let Some(c) = ns.children.iter_mut().find(|c| c.id() == tcpdump_pid) {
        for _ in 0..50 {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);

    let lens: Vec<usize> = text
        .lines()
        .filter_map(|l| l.split("ethertype IPv4 (0x0800), length ").nth(1))
        .filter_map(|rest| rest.split(':').next().and_then(|n| n.trim().parse().ok()))
        .collect();
    Capture {
        frames: lens.len(),
        max_frame: lens.iter().copied().max().unwrap_or(0),
        full_size: lens.iter().filter(|&&n| n == limit).count(),
        oversize: lens.iter().filter(|&&n| n > limit).count(),
        bad_cksum: text.matches("incorrect").count() + text.matches("bad cksum").count(),
        good_cksum: text.matches("(correct)").count(),
        iperf,
        text,
    }
}

/// Bridge mode end to end: the bridge and capture pair are set up (twice:
/// idempotent), the offloads are off, and two containers' TCP traffic
/// reaches `vethwe-pcap` as whole frames (none over MTU + 14) with correct
/// checksums. A control run with the offloads back on shows what that
/// prevents (64 KB GSO frames, unfinished checksums).
#[test]
fn bridge_mode_plumbing_delivers_whole_checksummed_frames() {
    use weaver::plumb::bridge::{self, BridgeSpec, BRIDGE_PORT, CAPTURE};
    use weaver::plumb::ethtool;
    use weaver::plumb::netns::block_on_in;
    use weaver::plumb::veth::netns_path;

    require_tool("tcpdump");
    require_tool("iperf3");
    const MTU: u32 = 1400;
    let limit = MTU as usize + 14;
    let br = format!("weaver-brtest-{}", std::process::id());
    let (c1, c2) = (format!("{br}-c1"), format!("{br}-c2"));
    let mut ns = Namespaces::new(&[&br, &c1, &c2]);
    let br_path = netns_path(&br);

    let spec = BridgeSpec { name: "weave".into(), mtu: MTU };
    // A "weave" that is not a bridge is refused by name, and left alone.
    sh(&format!("ip -n {br} link add weave type veth peer name weave-peer"));
    let s = spec.clone();
    let refused = block_on_in(&br_path, move || async move { bridge::ensure(&s).await });
    let msg = format!("{:?}", refused.as_ref().err().map(|e| e.to_string()));
    assert!(msg.contains("weave exists but is a veth interface, not a bridge"), "{msg}");
    sh(&format!("ip -n {br} link del weave"));
    let s = spec.clone();
    let first = block_on_in(&br_path, move || async move { bridge::ensure(&s).await }).expect("first ensure");
    let s = spec.clone();
    let again = block_on_in(&br_path, move || async move { bridge::ensure(&s).await }).expect("second ensure");
    assert_eq!(first.capture_ifname, CAPTURE);
    assert_eq!(again.ifindex, first.ifindex, "the bridge is kept");
    let links = sh(&format!("ip -n {br} -d link show"));
    assert!(links.contains("weave: <BROADCAST,MULTICAST,UP,LOWER_UP>"), "{links}");
    assert!(links.contains(&format!("{BRIDGE_PORT}@{CAPTURE}")) && links.contains("master weave"), "{links}");
    assert!(links.contains("stp_state 0") && links.contains("forward_delay 0"), "{links}");
    assert_eq!(links.matches("mtu 1400").count(), 3, "{links}");

    // The offloads, as the kernel reports them.
    let feats =
        block_on_in(&br_path, || async { Ok((ethtool::get_features(BRIDGE_PORT)?, ethtool::get_active(CAPTURE)?)) })
            .expect("read features");
    let (port_feats, capture_active) = feats;
    // The read-back sees features that are on (the ones that must be).
    assert!(port_feats.iter().any(|f| f.name == "rx-checksum" && f.active), "{port_feats:?}");
    for name in ["tx-checksum-ip-generic", "tx-tcp-segmentation", "tx-tcp6-segmentation"] {
        let f = port_feats.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name} missing: {port_feats:?}"));
        assert!(!f.active && !f.wanted, "{name} still on: {f:?}");
    }
    let still_on: Vec<_> =
        port_feats.iter().filter(|f| bridge::leaves_frames_unfinished(&f.name) && f.active).map(|f| &f.name).collect();
    assert!(still_on.is_empty(), "{BRIDGE_PORT}: {still_on:?}");
    let still_on: Vec<_> =
        capture_active.iter().filter(|(n, on)| *on && bridge::leaves_frames_unfinished(n)).map(|(n, _)| n).collect();
    assert!(still_on.is_empty(), "{CAPTURE}: {still_on:?}");
    // A name the kernel does not know is refused by name.
    let bogus = block_on_in(&br_path, || async { Ok(ethtool::set_features(BRIDGE_PORT, &[("tx-bogus", false)])?) });
    let msg = format!("{:?}", bogus.as_ref().err().map(|e| e.to_string()));
    assert!(msg.contains("tx-bogus") && msg.contains(BRIDGE_PORT), "{msg}");

    // Two containers on the bridge. The bridge floods every frame (no
    // learning: ageing 0), so their traffic also reaches the capture end,
    // as traffic for remote peers does.
    for (i, c) in [(1, &c1), (2, &c2)] {
        sh(&format!(
            "ip link add vc{i} mtu {MTU} netns {br} type veth peer name eth0 mtu {MTU} netns {c} && \
             ip -n {c} addr add 10.99.0.{i}/24 dev eth0 && ip -n {c} link set eth0 up && \
             ip -n {br} link set vc{i} up"
        ));
        let port = format!("vc{i}");
        block_on_in(&br_path, move || async move { bridge::enslave(&port, "weave").await }).expect("enslave");
    }
    sh(&format!("ip -n {br} link set weave type bridge ageing_time 0"));
    let ports = sh(&format!("ip -n {br} link show master weave"));
    assert_eq!(ports.matches("master weave").count(), 3, "{ports}");

    let fixed = capture_transfer(&mut ns, &br, &c1, &c2, limit, "off");
    eprintln!("offloads off: {}", fixed.summary());
    // tcpdump may drop some under load; hundreds of full-size segments are plenty.
    assert!(
        fixed.full_size > 100,
        "too little traffic reached {CAPTURE}: {}\n{}\n{}",
        fixed.summary(),
        fixed.iperf,
        fixed.head()
    );
    assert_eq!(fixed.oversize, 0, "frames over {limit} bytes: {}\n{}", fixed.summary(), fixed.head());
    assert_eq!(fixed.bad_cksum, 0, "unfinished checksums: {}\n{}", fixed.summary(), fixed.head());
    assert_eq!(
        fixed.good_cksum,
        fixed.frames,
        "tcpdump did not verify every checksum: {}\n{}",
        fixed.summary(),
        fixed.head()
    );

    // Control: with the offloads back on, the same transfer reaches the
    // capture end unfinished, so the run above did test something.
    block_on_in(&br_path, || async {
        let on = ["tx-scatter-gather", "tx-checksum-ip-generic", "tx-tcp-segmentation", "tx-tcp6-segmentation"];
        Ok(ethtool::set_features(BRIDGE_PORT, &on.map(|n| (n, true)))?)
    })
    .expect("offloads back on");
    let raw = capture_transfer(&mut ns, &br, &c1, &c2, limit, "on");
    eprintln!("offloads on (control): {}", raw.summary());
    assert!(
        raw.oversize > 0 && raw.bad_cksum > 0,
        "control run: expected GSO frames and unfinished checksums with the offloads on: {}\n{}",
        raw.summary(),
        raw.head()
    );

    block_on_in(&br_path, || async { bridge::remove("weave").await }).expect("remove");
    let left = sh(&format!("ip -n {br} link show"));
    assert!(!left.contains(" weave: ") && !left.contains("vethwe") && !left.contains("master"), "{left}");
}

/// Whether the daemon's API socket appears within 10 s.
fn socket_appears(sock: &std::path::Path) -> bool {
    for _ in 0..100 {
        if sock.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// A veth pair `pa`/`pb`, up, in namespace `name`: their ifindexes.
fn veth_pair_in(name: &str) -> (u32, u32) {
    sh(&format!("ip -n {name} link add pa type veth peer name pb"));
    sh(&format!("ip -n {name} link set pa up && ip -n {name} link set pb up"));
    let index = |dev: &str| -> u32 {
        sh(&format!("ip -n {name} -o link show {dev}"))
            .split(':')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .expect("ifindex")
    };
    (index("pa"), index("pb"))
}

/// The sleeve's packet sockets over a veth pair in a namespace: a batch
/// injected at one end is captured, whole and in order, at the other; the
/// injecting end's own capture never sees its injections (they are
/// outgoing there); frames longer than the buffer are reported cut.
#[test]
fn packet_sockets_capture_what_the_other_end_injects() {
    use weaver::plumb::netns::block_on_in;
    use weaver::plumb::packet_socket::{PacketSocket, Received};
    use weaver::plumb::veth::{netns_path, PlumbError};

    let name = format!("weaver-pkt-{}", std::process::id());
    let _ns = Namespaces::new(&[&name]);
    let (pa, pb) = veth_pair_in(&name);
    let got = block_on_in(&netns_path(&name), move || async move {
        let io = |e: std::io::Error| PlumbError::Other { op: "packet socket".into(), msg: e.to_string() };
        let inject = PacketSocket::injector(pa).map_err(io)?;
        let mut cap_a = PacketSocket::capture(pa, 1 << 20).map_err(io)?;
        let mut cap_b = PacketSocket::capture(pb, 1 << 20).map_err(io)?;
        // 40 frames with a private ethertype and a numbered payload; the
        // last one longer than the capture buffers below.
        let frames: Vec<Vec<u8>> = (0..40u8)
            .map(|i| {
                let mut f = vec![0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa, 0x88, 0xb6];
                f.extend(std::iter::repeat_n(i, if i == 39 { 1500 } else { 60 + usize::from(i) }));
                f
            })
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let (sent, err) = inject.send_batch(&refs);
        assert_eq!((sent, err.map(|e| e.to_string())), (40, None));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut bufs = vec![vec![0u8; 1024]; 64];
        let mut seen = Vec::new();
        let mut ours = Vec::new();
        while cap_b.recv_batch(&mut bufs, &mut seen).map_err(io)? > 0 {
            for (r, b) in seen.iter().zip(&bufs) {
                if b[12..14] == [0x88, 0xb6] {
                    ours.push((*r, b[..r.len].to_vec()));
                }
            }
            seen.clear();
        }
        let mut own = Vec::new();
        cap_a.recv_batch(&mut bufs, &mut own).map_err(io)?;
        let own_ours = own.iter().zip(&bufs).filter(|(r, b)| r.len >= 14 && b[12..14] == [0x88, 0xb6]).count();
        Ok::<_, PlumbError>((frames, ours, own_ours))
    });
    let (frames, ours, own_ours) = got.expect("packet sockets in the namespace");
    assert_eq!(ours.len(), 40, "captured {} of 40 injected frames", ours.len());
    for (i, ((r, bytes), f)) in ours.iter().zip(&frames).enumerate() {
        if i == 39 {
            assert_eq!(*r, Received { len: 1024, truncated: true });
            assert_eq!(bytes[..], f[..1024]);
        } else {
            assert_eq!((r.truncated, &bytes[..]), (false, &f[..]), "frame {i}");
        }
    }
    assert_eq!(own_ours, 0, "the injecting end captured its own injections");
}

/// A capture with a receive ring (the sleeve's): small frames come from
/// the ring's slots, bigger ones from the socket's buffer, where the kernel
/// queues their copies; all of them in the order sent, whole, with and
/// without a virtio_net_hdr, and a frame longer than its buffer reported
/// as cut.
#[test]
fn a_ring_capture_keeps_the_order_of_small_and_big_frames() {
    use weaver::plumb::netns::block_on_in;
    use weaver::plumb::packet_socket::{PacketSocket, Received, VNET_LEN};
    use weaver::plumb::rx_ring::{SLOTS, SLOT_SIZE};
    use weaver::plumb::veth::{netns_path, PlumbError};

    let name = format!("weaver-ring-{}", std::process::id());
    let _ns = Namespaces::new(&[&name]);
    let (pa, pb) = veth_pair_in(&name);
    // Sizes by turns: in a slot, just over one, and MTU-sized; the last
    // longer than the buffers below.
    let frames: Vec<Vec<u8>> = (0..90u8)
        .map(|i| {
            let mut f = vec![0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa, 0x88, 0xb6];
            let n = match (i, i % 3) {
                (89, _) => 1500,
                (_, 0) => 46 + usize::from(i),
                (_, 1) => 200,
                _ => 900 + usize::from(i),
            };
            f.extend(std::iter::repeat_n(i, n));
            f
        })
        .collect();
    let sent = frames.clone();
    let got = block_on_in(&netns_path(&name), move || async move {
        let io = |e: std::io::Error| PlumbError::Other { op: "packet socket".into(), msg: e.to_string() };
        let inject = PacketSocket::injector(pa).map_err(io)?;
        let mut plain = PacketSocket::capture_ring(pb, 1 << 20, false, SLOT_SIZE, SLOTS).map_err(io)?;
        let mut vnet = PacketSocket::capture_ring(pb, 1 << 20, true, SLOT_SIZE, SLOTS).map_err(io)?;
        assert!(plain.has_ring() && vnet.has_ring());
        let refs: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
        let (n, err) = inject.send_batch(&refs);
        assert_eq!((n, err.map(|e| e.to_string())), (90, None));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let read_all = |cap: &mut PacketSocket, skip: usize| -> Result<Vec<(Received, Vec<u8>)>, PlumbError> {
            // Batches of 7: ring reads and copies interleave across calls.
            let mut bufs = vec![vec![0u8; 1024 + skip]; 7];
            let mut ours = Vec::new();
            let mut seen = Vec::new();
            while cap.recv_batch(&mut bufs, &mut seen).map_err(io)? > 0 {
                for (r, b) in seen.iter().zip(&bufs) {
                    if r.len >= skip + 14 && b[skip + 12..skip + 14] == [0x88, 0xb6] {
                        let r = Received { len: r.len - skip, truncated: r.truncated };
                        ours.push((r, b[skip..skip + r.len].to_vec()));
                    } else if r.truncated && r.len == 0 {
                        ours.push((*r, Vec::new()));
                    }
                }
                seen.clear();
            }
            Ok(ours)
        };
        let p = read_all(&mut plain, 0)?;
        let v = read_all(&mut vnet, VNET_LEN)?;
        Ok::<_, PlumbError>((p, v))
    });
    let (plain, vnet) = got.expect("ring captures in the namespace");
    for (what, ours) in [("plain", plain), ("vnet", vnet)] {
        assert_eq!(ours.len(), 90, "{what}: captured {} of 90 injected frames", ours.len());
        for (i, ((r, bytes), f)) in ours.iter().zip(&frames).enumerate() {
            if i == 89 {
                assert_eq!(*r, Received { len: 1024, truncated: true }, "{what}");
                assert_eq!(bytes[..], f[..1024], "{what}");
            } else {
                assert_eq!((r.truncated, &bytes[..]), (false, &f[..]), "{what}: frame {i}");
            }
        }
    }
}

/// The systemd unit (packaging/weaver.service) passes `systemd-analyze
/// verify` (with ExecStart pointed at the binary just built), restarts on
/// failure, keeps its state under /var/lib/weave, and holds the daemon to
/// the capabilities it uses.
#[test]
fn systemd_unit_verifies() {
    require_tool("systemd-analyze");
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/weaver.service"))
        .expect("packaging/weaver.service");
    for line in [
        "ExecStart=/usr/local/bin/weaver $WEAVER_PEERS",
        "Restart=on-failure",
        "StateDirectory=weave",
        "RuntimeDirectory=weave",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_ADMIN CAP_SYS_MODULE",
        "EnvironmentFile=-/etc/default/weaver",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("weaver.service");
    std::fs::write(&file, unit.replace("/usr/local/bin/weaver", env!("CARGO_BIN_EXE_weaver"))).expect("write unit");
    let out = Command::new("systemd-analyze").arg("verify").arg(&file).output().expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// packaging/supervise.sh, the service where systemd is not: it runs the
/// unit's ExecStart with its environment file (`$WEAVER_PEERS` split into
/// words), restarts a daemon that fails after RestartSec, and on SIGTERM
/// stops the daemon and exits with the daemon's own status, even when the
/// daemon exits at once.
#[test]
fn supervisor_restarts_a_failed_daemon_and_stops_on_sigterm() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("supervise-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let d = dir.to_str().unwrap();
    // The first run fails; later runs wait, and exit 0 at once on SIGTERM.
    let fake = format!(
        "#!/bin/bash\necho \"$*\" >> {d}/runs\n[ $(wc -l < {d}/runs) -gt 1 ] || exit 3\ntrap 'kill $!; exit 0' TERM\nsleep 60 > /dev/null 2>&1 & wait\n"
    );
    std::fs::write(dir.join("bin/weaver"), fake).unwrap();
    Command::new("chmod").args(["0755", &format!("{d}/bin/weaver")]).status().unwrap();
    std::fs::write(
        dir.join("weaver.service"),
        "[Service]\nExecStart=/usr/local/bin/weaver $WEAVER_PEERS\nRestart=on-failure\nRestartSec=0.2\n",
    )
    .unwrap();
    std::fs::write(dir.join("env"), "WEAVER_PEERS=\"10.0.0.1 10.0.0.2\"\n").unwrap();
    for round in 0..5 {
        let _ = std::fs::remove_file(dir.join("runs"));
        let mut sup = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/supervise.sh"))
            .args([
                "--unit",
                &format!("{d}/weaver.service"),
                "--env",
                &format!("{d}/env"),
                "--bin-dir",
                &format!("{d}/bin"),
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run supervise.sh");
        let runs = || std::fs::read_to_string(dir.join("runs")).unwrap_or_default();
        let t0 = std::time::Instant::now();
        while runs().lines().count() < 2 && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            runs(),
            "10.0.0.1 10.0.0.2\n10.0.0.1 10.0.0.2\n",
            "round {round}: the failed daemon was not restarted"
        );
        std::thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(sup.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(s) = sup.try_wait().unwrap() {
                break s;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "round {round}: the supervisor ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(sup.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "round {round}: the supervisor exited with {status}: {err}");
        assert!(err.contains("exited with status 3") && err.contains("exited with status 0"), "round {round}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Vagrant lab's Vagrantfile passes `vagrant validate` (no hypervisor
/// needed: providers are not checked), and its provisioning script parses.
#[test]
fn vagrantfile_validates() {
    require_tool("vagrant");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/vagrant");
    // Vagrant's state directory stays out of the checkout.
    let dot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("vagrant-{}", std::process::id()));
    let out = Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(dir)
        .env("VAGRANT_DOTFILE_PATH", &dot)
        .output()
        .expect("vagrant");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("Vagrantfile validated successfully"), "vagrant validate: {text}");
    let syntax = Command::new("bash").args(["-n", &format!("{dir}/provision.sh")]).status().expect("bash");
    assert!(syntax.success(), "vagrant/provision.sh does not parse");
    let _ = std::fs::remove_dir_all(&dot);
}

/// A state store that is no redb file stops the start, naming the file and
/// what to do; the file is left as it was.
#[test]
fn a_corrupt_state_store_stops_the_start_with_a_clear_error() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("corrupt-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("weaver.redb");
    std::fs::write(&store, vec![0x42; 4096]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weaver"))
        .args(["--state-dir", dir.to_str().unwrap(), "--api-socket", dir.join("s.sock").to_str().unwrap()])
        .output()
        .expect("run weaver");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&store.display().to_string()) && err.contains("move it aside"), "{err}");
    assert_eq!(std::fs::read(&store).unwrap(), vec![0x42; 4096], "the store was changed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An invalid setting stops the start with exit status 2, naming it.
#[test]
fn an_invalid_setting_stops_the_start_naming_it() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-mtu-{}", std::process::id()));
    for (args, env, needle) in [
        (&["--mtu", "100"][..], None, "--mtu"),
        (&[][..], Some(("WEAVER_MTU", "abc")), "--mtu"),
        (&["--conn-limit", "0"][..], None, "--conn-limit"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weaver"));
        cmd.args(args).args([
            "--state-dir",
            dir.to_str().unwrap(),
            "--api-socket",
            dir.join("s.sock").to_str().unwrap(),
        ]);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run weaver");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(needle), "{args:?} {env:?}: {err}");
        assert!(!dir.join("s.sock").exists(), "an API socket for a refused start");
    }
    assert!(!dir.exists(), "a refused start made its state directory");
}

/// `--log-format json`: every line the daemon logs is a JSON object with
/// a message. And after SIGTERM in bridge mode the `weave` bridge stays
/// (the containers' veths stay on it, for the next start to take back).
#[test]
fn json_logs_and_the_bridge_outlives_sigterm() {
    assert!(!host_has_odp());
    let ns = format!("wjl{}", std::process::id() % 100000);
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("json-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("api.sock");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_weaver")])
        .args(["--log-format", "json", "--log-level", "debug"])
        .args(["--api-socket", sock.to_str().unwrap()])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start weaver");
    let up = socket_appears(&sock);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().expect("wait weaver");
    let bridge = Command::new("ip").args(["-n", &ns, "-d", "link", "show", "weave"]).output().unwrap();
    let bridge = String::from_utf8_lossy(&bridge.stdout).into_owned();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(up, "daemon did not create its API socket: {err}");
    assert!(out.status.success(), "daemon exit on SIGTERM: {:?}\n{err}", out.status);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.len() >= 3, "too few log lines: {err}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        let message = v["fields"]["message"].as_str().or(v["message"].as_str());
        assert!(message.is_some_and(|m| !m.is_empty()), "no message: {l}");
        assert!(v["level"].is_string(), "no level: {l}");
    }
    assert!(err.contains("overlay selected"), "{err}");
    assert!(bridge.contains("bridge"), "the weave bridge is gone after SIGTERM: {bridge}");
}
