//! IPAM natively, in network namespaces: three hosts A, B, C on one
//! underlay switch, each running weaver with the default `--ipalloc-init`
//! (consensus among the three). Needs root (CI runs as root).
//!
//! One test, in phases:
//! 1. containers attached with no address get unique addresses from the
//!    default range, and reach each other;
//! 2. `weavectl status ipam` shows the ring seeded by all three, with each
//!    owner and its free space;
//! 3. bad input changes nothing: an address outside the range, a subnet
//!    with host bits, an address another host's container holds;
//! 4. attach by PID; detach releases the address;
//! 5. a restarted daemon keeps every address;
//! 6. expose: host A gets an overlay address; host and containers reach
//!    each other, and a container reaches the underlay through A's NAT;
//! 7. weaveDNS: a container on B asks A's DNS (at A's exposed address) for
//!    names of containers on C and gets their addresses; several records
//!    under one name all come back; reverse lookups; detach removes a
//!    name everywhere;
//! 8. a container whose namespace goes away loses its address (and name)
//!    after the grace period.
//!
//! A second test runs one host alone (no peers given), whose first request
//! seeds the ring and must be answered at once.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{sh, sh_out, wait_until, weavectl};

const HOSTS: [&str; 3] = ["a", "b", "c"];

struct Lab {
    prefix: String,
    dir: PathBuf,
    daemons: Vec<(String, Child)>,
    sleepers: Vec<Child>,
}

impl Lab {
    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.prefix)
    }

    fn underlay(h: &str) -> String {
        let n = HOSTS.iter().position(|x| *x == h).expect("host") + 1;
        format!("10.93.0.{n}")
    }

    /// `tag` keeps the namespaces of tests that run at once apart.
    fn new(tag: &str) -> Lab {
        let prefix = format!("w{tag}{}-", std::process::id() % 100000);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ipam-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let lab = Lab { prefix, dir, daemons: Vec::new(), sleepers: Vec::new() };
        let sw = lab.ns("sw");
        sh(&format!("ip netns add {sw} && ip -n {sw} link add br0 type bridge && ip -n {sw} link set br0 up"));
        for h in HOSTS {
            let ns = lab.ns(h);
            sh(&format!(
                "ip netns add {ns} && ip -n {ns} link set lo up && \
                 ip link add eth0 netns {ns} type veth peer name p{h} netns {sw} && \
                 ip -n {sw} link set p{h} master br0 up && \
                 ip -n {ns} addr add {}/24 dev eth0 && ip -n {ns} link set eth0 up",
                Lab::underlay(h)
            ));
        }
        lab
    }

    fn sock(&self, h: &str) -> PathBuf {
        self.dir.join(format!("{h}.sock"))
    }

    fn start(&mut self, h: &str) {
        let peers: Vec<String> = HOSTS.iter().filter(|x| **x != h).map(|x| Lab::underlay(x)).collect();
        self.start_with(h, &peers);
    }

    /// Starts `h`'s daemon told about `peers` only.
    fn start_with(&mut self, h: &str, peers: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{h}.log")))
            .expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(h), env!("CARGO_BIN_EXE_weaver")])
            .args(["--nickname", &format!("host-{h}")])
            .args(["--api-socket", self.sock(h).to_str().expect("utf-8")])
            .args(["--state-dir", self.dir.join(format!("state-{h}")).to_str().expect("utf-8")])
            // A serves its API on TCP too, and metrics on their own port.
            .args(if h == "a" {
                &["--api-tcp", "127.0.0.1:6790", "--metrics-address", "127.0.0.1:6791"][..]
            } else {
                &[]
            })
            .args(peers)
            .env("RUST_LOG", "info")
            .env("WEAVER_IPALLOC_RELEASE_GRACE", "3")
            .env("PATH", format!("{}:{}", self.dir.join("bin").display(), std::env::var("PATH").unwrap_or_default()))
            .env_remove("WEAVER_PASSWORD")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weaver");
        self.daemons.push((h.to_string(), child));
        wait_until(&format!("{h}'s API"), Duration::from_secs(20), || self.sock(h).exists());
    }

    fn stop(&mut self, h: &str) {
        let i = self.daemons.iter().position(|(n, _)| n == h).expect("running");
        let (_, mut d) = self.daemons.remove(i);
        let _ = Command::new("kill").args(["-TERM", &d.id().to_string()]).status();
        let t0 = Instant::now();
        while matches!(d.try_wait(), Ok(None)) {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = d.kill();
                panic!("{h} ignored SIGTERM for 10 s\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        HOSTS
            .iter()
            .map(|h| {
                format!(
                    "---- {h}.log\n{}",
                    std::fs::read_to_string(self.dir.join(format!("{h}.log"))).unwrap_or_default()
                )
            })
            .collect()
    }

    fn ctl(&self, h: &str, args: &[&str]) -> Result<String, String> {
        weavectl(&self.sock(h), args)
    }

    fn json(&self, h: &str, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        self.ctl(h, &a).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
    }

    /// A container namespace.
    fn container(&self, name: &str) -> String {
        let ns = self.ns(name);
        sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"));
        ns
    }

    /// The IPv4 addresses on `ethwe` in namespace `ns`.
    fn addrs(ns: &str) -> Vec<String> {
        let (_, out) = sh_out(&format!("ip -n {ns} -4 -o addr show dev ethwe"));
        out.split_whitespace().skip_while(|w| *w != "inet").skip(1).take(1).map(String::from).collect()
    }

    fn attach(&self, h: &str, args: &[&str]) -> Result<String, String> {
        self.ctl(h, &[&["attach"], args].concat())
    }

    /// The MAC `weavectl ps` on `h` shows for `target`, if it lists it.
    fn ps_mac(&self, h: &str, target: &str) -> Option<String> {
        let ps = self.ctl(h, &["ps"]).ok()?;
        let line = ps.lines().find(|l| l.split_whitespace().next() == Some(target))?;
        line.split_whitespace().nth(2).map(String::from)
    }

    /// The host's container veths (`vethwe` and 8 hex digits) in host `h`'s namespace.
    fn host_veths(&self, h: &str) -> BTreeSet<String> {
        let (_, out) = sh_out(&format!("ip -n {} -o link show", self.ns(h)));
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.strip_prefix("vethwe").is_some_and(|x| x.len() == 8))
            .collect()
    }

    /// A process sleeping in namespace `ns`, killed with the lab: its PID.
    fn sleeper(&mut self, ns: &str) -> String {
        let c = Command::new("ip").args(["netns", "exec", ns, "sleep", "600"]).spawn().expect("sleep");
        let pid = c.id().to_string();
        self.sleepers.push(c);
        wait_until("the sleeper in its namespace", Duration::from_secs(5), || {
            let mine =
                std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            let want = std::fs::metadata(format!("/run/netns/{ns}")).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            mine.is_ok() && mine.ok() == want.ok()
        });
        pid
    }
}

/// The interfaces in namespace `ns`.
fn links(ns: &str) -> BTreeSet<String> {
    let (_, out) = sh_out(&format!("ip -n {ns} -o link show"));
    out.lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next().unwrap_or(n).to_string()).collect()
}

/// The value of the metric line that starts with `name` (and its labels).
fn metric(m: &str, name: &str) -> Option<f64> {
    m.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?.split_whitespace().last()?.parse().ok()
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, d) in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        for s in &mut self.sleepers {
            let _ = s.kill();
            let _ = s.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let (_, out) = sh_out("ip netns list");
        for n in out.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| n.starts_with(&self.prefix)) {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ping(from_ns: &str, ip: &str) -> (bool, String) {
    let ip = ip.split('/').next().unwrap_or(ip);
    sh_out(&format!("ip netns exec {from_ns} ping -c 2 -i 0.2 -W 2 {ip}"))
}

#[test]
fn ipam_three_hosts() {
    let mut lab = Lab::new("i");
    for h in HOSTS {
        lab.start(h);
    }
    // 1. No addresses given: IPAM picks them, once the three agree.
    let mut containers: Vec<(String, String, String)> = Vec::new();
    for h in HOSTS {
        for i in 1..=2 {
            let ns = lab.container(&format!("{h}{i}"));
            let out = lab.attach(h, &[&ns]);
            assert!(out.is_ok(), "attach {ns}: {out:?}\n{}", lab.logs());
            let a = Lab::addrs(&ns);
            assert_eq!(a.len(), 1, "{ns}: {a:?}");
            assert!(out.unwrap_or_default().contains(&a[0]), "attach prints the address");
            containers.push((h.to_string(), ns, a[0].clone()));
        }
    }
    let unique: BTreeSet<&String> = containers.iter().map(|c| &c.2).collect();
    assert_eq!(unique.len(), 6, "{containers:?}");
    for (_, _, a) in &containers {
        let net: ipnet::Ipv4Net = a.parse().expect("cidr");
        assert_eq!(net.prefix_len(), 12, "{a}");
        assert!("10.32.0.0/12".parse::<ipnet::Ipv4Net>().unwrap().contains(&net.addr()), "{a}");
    }
    for (_, from, _) in &containers {
        for (_, to, ip) in &containers {
            if from != to {
                let mut last = (false, String::new());
                for _ in 0..10 {
                    last = ping(from, ip);
                    if last.0 {
                        break;
                    }
                }
                assert!(last.0, "{from} -> {to} ({ip}): {}", last.1);
            }
        }
    }

    // weavectl ps: B's two containers, with MAC and address.
    let ps = lab.ctl("b", &["ps"]).expect("ps");
    for (_, ns, a) in containers.iter().filter(|c| c.0 == "b") {
        let line = ps.lines().find(|l| l.starts_with(ns.as_str())).unwrap_or_else(|| panic!("{ns} not in ps: {ps}"));
        let mac = line.split_whitespace().nth(2).unwrap_or_default();
        assert!(mac.len() == 17 && mac.matches(':').count() == 5, "{line}");
        assert!(line.ends_with(a.as_str()), "{line}");
    }
    assert_eq!(ps.lines().count(), 2, "{ps}");

    // 2. The ring, as each host sees it.
    for h in HOSTS {
        wait_until(&format!("{h}'s ring"), Duration::from_secs(30), || {
            let st = lab.json(h, &["status", "ipam"]);
            st["seeds"].as_array().is_some_and(|s| s.len() == 3)
                && st["owners"].as_array().is_some_and(|o| o.len() == 3)
                && st["allocated"] == 2
                && st["errors"].as_array().is_some_and(Vec::is_empty)
        });
    }
    let text = lab.ctl("a", &["status", "ipam"]).expect("status ipam");
    assert!(text.contains("Range: 10.32.0.0/12") && text.contains("consensus=3"), "{text}");
    assert!(text.contains("seeded by 3 peer(s)") && text.contains("REACHABLE"), "{text}");

    // 3. Bad input: a clear error, and nothing attached.
    let x = lab.container("x");
    let taken = containers[2].2.clone(); // one of B's addresses
    for (args, needle) in [
        (vec!["192.168.1.1/24", x.as_str()], "outside the IPAM range"),
        (vec!["net:10.32.1.1/24", x.as_str()], "host bits"),
        (vec!["10.32.0.0/33", x.as_str()], "invalid address"),
        (vec![taken.as_str(), x.as_str()], "in use"),
        (vec!["10.40.0.1/24", "no-such-namespace-anywhere"], "no-such-namespace"),
    ] {
        let out = lab.attach("a", &args);
        let e = out.expect_err(&format!("attach {args:?} must fail"));
        assert!(e.contains(needle), "attach {args:?}: {e}");
        assert!(Lab::addrs(&x).is_empty(), "a failed attach left an address in {x}");
    }
    let st = lab.json("a", &["status", "ipam"]);
    assert_eq!(st["allocated"], 2, "failed attaches kept no address: {st}");
    // A failed attach leaves no veth behind: a namespace with an `ethwe`
    // of its own is refused once the pair is made, and the pair goes.
    let veths = lab.host_veths("a");
    assert_eq!(veths.len(), 2, "{veths:?}");
    sh(&format!("ip -n {x} link add ethwe type bridge"));
    let e = lab.attach("a", &[&x]).expect_err("a namespace with an ethwe of its own");
    assert!(e.contains("already an ethwe"), "{e}");
    assert_eq!(lab.host_veths("a"), veths, "a failed attach left a veth on the host");
    assert_eq!(links(&x), ["ethwe", "lo"].map(String::from).into(), "a failed attach left an interface in {x}");
    assert_eq!(lab.json("a", &["status", "ipam"])["allocated"], 2, "a failed attach kept its address");
    sh(&format!("ip -n {x} link del ethwe"));

    // Attaching what is attached, with no address or the ones it has:
    // nothing changes (same veth, so same MAC; nothing allocated).
    let (_, ns_a1, addr_a1) = containers[0].clone();
    let mac_a1 = lab.ps_mac("a", &ns_a1).expect("a1 in ps");
    let links_a1 = links(&ns_a1);
    for args in [vec![ns_a1.as_str()], vec![addr_a1.as_str(), ns_a1.as_str()], vec!["net:default", ns_a1.as_str()]] {
        let out = lab.attach("a", &args).expect("attach again");
        assert!(out.contains(&mac_a1) && out.contains(&addr_a1), "attach {args:?}: {out}");
        assert_eq!(lab.ps_mac("a", &ns_a1).as_ref(), Some(&mac_a1), "attach {args:?} made a new veth");
        assert_eq!(Lab::addrs(&ns_a1), vec![addr_a1.clone()]);
    }
    assert_eq!(lab.host_veths("a"), veths);
    assert_eq!(lab.json("a", &["status", "ipam"])["allocated"], 2);
    // With other addresses: refused, naming the ones it has; nothing changes.
    for other in ["net:10.32.202.0/24", "10.32.99.99/12"] {
        let e = lab.attach("a", &[other, &ns_a1]).expect_err("attached with other addresses");
        assert!(
            e.contains("409") && e.contains("already attached with") && e.contains(&addr_a1) && e.contains("detach"),
            "{other}: {e}"
        );
        assert_eq!(Lab::addrs(&ns_a1), vec![addr_a1.clone()]);
        assert_eq!(lab.ps_mac("a", &ns_a1).as_ref(), Some(&mac_a1));
    }
    assert_eq!(lab.json("a", &["status", "ipam"])["allocated"], 2, "a refused attach allocated");
    // The same namespace under another target (by the PID of a process in
    // it, or its /proc path): refused, naming the attachment; no veth made.
    let pid_a1 = lab.sleeper(&ns_a1);
    for t in [pid_a1.clone(), format!("/proc/{pid_a1}/ns/net")] {
        let e = lab.attach("a", &[&t]).expect_err("the same namespace again");
        assert!(e.contains("409") && e.contains(&format!("already attached as {ns_a1}")), "{t}: {e}");
        assert_eq!(lab.host_veths("a"), veths, "{t}: a veth was made");
        assert_eq!(links(&ns_a1), links_a1, "{t}: an interface was added");
        assert!(lab.ps_mac("a", &t).is_none(), "{t} listed as attached");
    }
    assert_eq!(lab.json("a", &["status", "ipam"])["allocated"], 2, "a refused attach allocated");

    // 4. By PID; detach releases.
    let p = lab.container("p");
    let sleeper = Command::new("ip").args(["netns", "exec", &p, "sleep", "600"]).spawn().expect("sleep");
    let pid = sleeper.id().to_string();
    lab.sleepers.push(sleeper);
    std::thread::sleep(Duration::from_millis(200));
    let out = lab.attach("c", &["net:10.32.200.0/24", &pid]);
    assert!(out.is_ok(), "attach by PID: {out:?}");
    let a = Lab::addrs(&p);
    assert!(a.len() == 1 && a[0].starts_with("10.32.200."), "{a:?}");
    assert!(a[0].ends_with("/24"));
    assert_eq!(lab.json("c", &["status", "ipam"])["allocated"], 3);
    let (_, from, _) = &containers[0];
    let (ok, out) = ping(from, &a[0]);
    assert!(!ok, "a container in another subnet answered: {out}");
    lab.ctl("c", &["detach", &pid]).expect("detach");
    assert_eq!(lab.json("c", &["status", "ipam"])["allocated"], 2, "detach released the address");
    // Detach is idempotent: a second one reports it, and fails nothing.
    let again = lab.ctl("c", &["detach", &pid]).expect("detach again");
    assert!(again.contains("was not attached"), "{again}");

    // Attach and detach by a /proc/PID/ns/net path.
    let path = format!("/proc/{pid}/ns/net");
    let out = lab.attach("c", &[&path]).expect("attach by /proc path");
    let a = Lab::addrs(&p);
    assert!(a.len() == 1 && out.contains(&a[0]), "{out} / {a:?}");
    assert!(lab.ps_mac("c", &path).is_some(), "ps lists {path}");
    assert_eq!(lab.json("c", &["status", "ipam"])["allocated"], 3);
    let out = lab.ctl("c", &["detach", &path]).expect("detach by /proc path");
    assert!(out.contains("detached"), "{out}");
    assert!(Lab::addrs(&p).is_empty() && !links(&p).contains("ethwe"), "{:?}", links(&p));
    assert_eq!(lab.json("c", &["status", "ipam"])["allocated"], 2);

    // A stale attachment is replaced: the name now names another
    // namespace (the old one lives on in a process, with its veth).
    let re = lab.container("re");
    lab.attach("c", &[&re]).expect("attach re");
    let (re_addr, re_mac) = (Lab::addrs(&re), lab.ps_mac("c", &re).expect("re in ps"));
    let old_re = lab.sleeper(&re);
    sh(&format!("ip netns del {re} && ip netns add {re}"));
    let c_veths = lab.host_veths("c");
    let out = lab.attach("c", &[&re]).expect("attach the new re");
    assert_eq!(Lab::addrs(&re), re_addr, "the new namespace gets the address: {out}");
    let new_mac = lab.ps_mac("c", &re).expect("re in ps");
    assert!(new_mac != re_mac && out.contains(&new_mac), "{out}");
    let (_, old_links) = sh_out(&format!("nsenter --net=/proc/{old_re}/ns/net ip -o link show"));
    assert!(!old_links.contains("ethwe"), "the old namespace keeps its ethwe: {old_links}");
    assert_eq!(lab.host_veths("c"), c_veths, "the old veth is replaced, not kept beside");
    lab.ctl("c", &["detach", &re]).expect("detach re");

    // Detaching addresses only: the interface stays with the others, the
    // removed address is released; then the whole interface, and the
    // container is unreachable.
    let two = lab.container("two");
    lab.attach("c", &["net:default", "net:10.32.201.0/24", &two]).expect("attach with two addresses");
    let v4 = |ns: &str| -> Vec<String> {
        let (_, out) = sh_out(&format!("ip -n {ns} -4 -o addr show dev ethwe"));
        out.lines().filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1).map(String::from)).collect()
    };
    let both = v4(&two);
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(lab.json("c", &["status", "ipam"])["allocated"], 4);
    let drop = both.iter().find(|a| a.starts_with("10.32.201.")).cloned().expect("an address in 10.32.201.0/24");
    let keep = both.iter().find(|a| !a.starts_with("10.32.201.")).cloned().expect("an address in the default subnet");
    let ip_of = |cidr: &str| cidr.split('/').next().unwrap_or_default().to_string();
    let lookup = |n: &str| lab.ctl("c", &["dns-lookup", n]).unwrap_or_default();
    wait_until("both of its addresses under its name", Duration::from_secs(20), || {
        let o = lookup(&two);
        o.contains(&ip_of(&drop)) && o.contains(&ip_of(&keep))
    });
    let out = lab.ctl("c", &["detach", &drop, &two]).expect("detach one address");
    assert!(out.contains(&format!("{drop} removed from")), "{out}");
    wait_until("only the kept address under its name", Duration::from_secs(20), || lookup(&two).trim() == ip_of(&keep));
    assert_eq!(v4(&two), vec![keep.clone()], "only {drop} goes");
    assert_eq!(lab.json("c", &["status", "ipam"])["allocated"], 3, "the detached address is released");
    let ps = lab.ctl("c", &["ps"]).expect("ps");
    assert!(ps.lines().any(|l| l.contains(&keep) && !l.contains(&drop)), "{ps}");
    let out = lab.ctl("c", &["detach", &drop, &two]).expect("detach the same address again");
    assert!(out.contains("has none of those addresses"), "{out}");
    let (_, from, _) = &containers[0];
    let keep_ip = keep.split('/').next().unwrap_or_default().to_string();
    wait_until("A's container reaches C's container", Duration::from_secs(30), || ping(from, &keep_ip).0);
    lab.ctl("c", &["detach", &two]).expect("detach the interface");
    let (_, links) = sh_out(&format!("ip -n {two} -o link show"));
    assert!(!links.contains("ethwe"), "ethwe left behind: {links}");
    assert_eq!(lab.json("c", &["status", "ipam"])["allocated"], 2);
    let (ok, out) = ping(from, &keep_ip);
    assert!(!ok, "a detached container answered: {out}");
    let e = lab.ctl("c", &["detach", "10.32.0.0/33", &two]).expect_err("a bad CIDR");
    assert!(e.contains("invalid address"), "{e}");

    // By Docker name: a stand-in `docker` CLI (no engine) answers inspect.
    let d = lab.container("dockerish");
    let sleeper = Command::new("ip").args(["netns", "exec", &d, "sleep", "600"]).spawn().expect("sleep");
    let dpid = sleeper.id();
    lab.sleepers.push(sleeper);
    let bin = lab.dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::fs::write(
        bin.join("docker"),
        format!(
            "#!/bin/sh\n[ \"$1\" = inspect ] && [ \"$4\" = web ] && {{ echo {dpid}; exit 0; }}\necho \"Error: No such object: $4\" >&2; exit 1\n"
        ),
    )
    .expect("fake docker");
    sh(&format!("chmod +x {}", bin.join("docker").display()));
    let out = lab.attach("c", &["web"]).expect("attach a Docker container by name");
    let a = Lab::addrs(&d);
    assert!(a.len() == 1 && out.contains(&a[0]), "{out} / {a:?}");
    let e = lab.attach("c", &["nosuchcontainer"]).expect_err("unknown container");
    assert!(e.contains("no network namespace or Docker container named \"nosuchcontainer\""), "{e}");
    wait_until("web.weave.local at C", Duration::from_secs(30), || {
        lab.ctl("c", &["dns-lookup", "web"]).is_ok_and(|o| o.trim() == a[0].split('/').next().unwrap_or_default())
    });
    lab.ctl("c", &["detach", "web"]).expect("detach by Docker name");
    assert!(Lab::addrs(&d).is_empty(), "detached");

    // 5. Restart B: every address kept, and its containers taken back as
    // they were, one of them attached by PID.
    let bp = lab.container("bp");
    let bp_pid = lab.sleeper(&bp);
    lab.attach("b", &[&bp_pid]).expect("attach by PID on B");
    let bp_addr = Lab::addrs(&bp);
    let macs: Vec<(String, Option<String>)> = containers
        .iter()
        .filter(|c| c.0 == "b")
        .map(|c| c.1.clone())
        .chain([bp_pid.clone()])
        .map(|t| (t.clone(), lab.ps_mac("b", &t)))
        .collect();
    assert!(macs.iter().all(|(_, m)| m.is_some()), "{macs:?}");
    let log_b = lab.dir.join("b.log");
    let readopted = || std::fs::read_to_string(&log_b).unwrap_or_default().matches("container re-attached").count();
    let before = readopted();
    lab.stop("b");
    lab.start("b");
    for (t, mac) in &macs {
        assert_eq!(&lab.ps_mac("b", t), mac, "{t} after B's restart");
    }
    assert_eq!(readopted(), before + 3, "the log says each container was re-attached\n{}", lab.logs());
    assert_eq!(Lab::addrs(&bp), bp_addr);
    lab.ctl("b", &["detach", &bp_pid]).expect("detach by PID");
    assert!(Lab::addrs(&bp).is_empty());
    for (h, ns, a) in containers.iter().filter(|c| c.0 == "b") {
        assert_eq!(Lab::addrs(ns), vec![a.clone()], "{h}'s container {ns}");
        // Attaching again (as a container runtime would after a restart)
        // gives the same address.
        lab.attach("b", &[ns]).expect("re-attach");
        assert_eq!(Lab::addrs(ns), vec![a.clone()]);
    }
    let st = lab.json("b", &["status", "ipam"]);
    assert_eq!(st["allocated"], 2, "{st}");
    assert_eq!(st["seeds"].as_array().map(Vec::len), Some(3), "{st}");
    let (_, from, _) = &containers[0];
    let (_, _, to) = &containers[3];
    wait_until("A reaches B's container after B's restart", Duration::from_secs(30), || ping(from, to).0);

    // 6. Expose A: host <-> containers, and NAT to the underlay.
    let exposed = lab.ctl("a", &["expose"]).expect("expose");
    let host_a = exposed.trim().to_string();
    assert!(host_a.ends_with("/12") && !unique.contains(&host_a), "{host_a}");
    let host_ip = host_a.split('/').next().unwrap_or_default().to_string();
    let (ok, out) = sh_out(&format!(
        "ip netns exec {} ping -c 2 -W 2 {}",
        lab.ns("a"),
        containers[0].2.split('/').next().unwrap_or_default()
    ));
    assert!(ok, "host A -> its container: {out}");
    let (ok, out) = ping(&containers[4].1, &host_ip);
    assert!(ok, "C's container -> host A: {out}");
    let (_, nat_ns, _) = &containers[0];
    sh(&format!("ip -n {nat_ns} route add default via {host_ip}"));
    let (ok, out) = sh_out(&format!("ip netns exec {nat_ns} ping -c 2 -W 2 {}", Lab::underlay("b")));
    assert!(ok, "container -> the underlay through A's NAT: {out}");
    let (_, rules) = sh_out(&format!("ip netns exec {} iptables -t nat -S POSTROUTING", lab.ns("a")));
    assert!(rules.contains("weaver-expose") && rules.contains("10.32.0.0/12"), "{rules}");
    // The expose survives a restart: taken off while A is down (the bridge
    // stays, so the address would), put back at start.
    lab.stop("a");
    let ns_a = lab.ns("a");
    sh(&format!("ip -n {ns_a} addr del {host_a} dev weave"));
    sh(&format!(
        "ip netns exec {ns_a} iptables -t nat -D POSTROUTING -s 10.32.0.0/12 ! -d 10.32.0.0/12 \
         -m comment --comment weaver-expose -j MASQUERADE"
    ));
    lab.start("a");
    wait_until("A exposed again: address and NAT rule", Duration::from_secs(20), || {
        let (_, addrs) = sh_out(&format!("ip -n {ns_a} -o addr show dev weave"));
        let (_, rules) = sh_out(&format!("ip netns exec {ns_a} iptables -t nat -S POSTROUTING"));
        addrs.contains(&format!("inet {host_a}")) && rules.contains("weaver-expose")
    });
    wait_until("C's container reaches host A after A's restart", Duration::from_secs(30), || {
        ping(&containers[4].1, &host_ip).0
    });
    let (ok, out) = sh_out(&format!("ip netns exec {nat_ns} ping -c 2 -W 2 {}", Lab::underlay("b")));
    assert!(ok, "container -> the underlay through A's NAT, after A's restart: {out}");

    // 7. weaveDNS.
    let dig = |from: &str, args: &str| -> String {
        let (_, out) = sh_out(&format!("ip netns exec {from} dig +short +time=2 +tries=2 @{host_ip} {args}"));
        out
    };
    let (_, b1, _) = &containers[2];
    let (_, c1, c1_addr) = &containers[4];
    let c1_ip = c1_addr.split('/').next().unwrap_or_default();
    let c1_name = format!("{c1}.weave.local");
    wait_until("A's DNS knows C's container", Duration::from_secs(20), || dig(b1, &c1_name).trim() == c1_ip);
    // Several records under one name, added on two hosts.
    let (_, _, b2_addr) = &containers[3];
    let b2_ip = b2_addr.split('/').next().unwrap_or_default();
    lab.ctl("b", &["dns-add", "svc", b2_ip]).expect("dns-add on B");
    lab.ctl("c", &["dns-add", "svc", c1_ip]).expect("dns-add on C");
    wait_until("both svc records at A", Duration::from_secs(20), || {
        let got: BTreeSet<String> = dig(b1, "svc.weave.local").lines().map(String::from).collect();
        got == [b2_ip.to_string(), c1_ip.to_string()].into_iter().collect()
    });
    let lookup = lab.ctl("a", &["dns-lookup", "svc"]).expect("dns-lookup");
    assert!(lookup.contains(b2_ip) && lookup.contains(c1_ip), "{lookup}");
    let rev = dig(b1, &format!("-x {c1_ip}"));
    assert!(rev.contains(&c1_name), "reverse of {c1_ip}: {rev}");
    // NXDOMAIN in our domain; a bad name is refused by the CLI.
    let (_, nx) = sh_out(&format!("ip netns exec {b1} dig +time=2 +tries=1 @{host_ip} nosuch.weave.local"));
    assert!(nx.contains("NXDOMAIN"), "{nx}");
    assert!(lab.ctl("a", &["dns-add", "bad..name", "10.32.0.1"]).is_err());
    // dns-remove on C: only B's record is left.
    lab.ctl("c", &["dns-remove", "svc"]).expect("dns-remove");
    wait_until("svc has only B's record", Duration::from_secs(20), || dig(b1, "svc.weave.local").trim() == b2_ip);
    // Detach: the name goes everywhere.
    lab.ctl("c", &["detach", c1]).expect("detach c1");
    wait_until("c1's name gone at A", Duration::from_secs(20), || {
        lab.ctl("a", &["dns-lookup", c1]).is_err() && dig(b1, &c1_name).trim().is_empty()
    });

    // The API over TCP; its errors are JSON; metrics on their own port.
    let curl = |args: &str| -> String {
        let (_, out) = sh_out(&format!("ip netns exec {} curl -s -m 5 -w ' %{{http_code}}' {args}", lab.ns("a")));
        out
    };
    let st = curl("http://127.0.0.1:6790/v1/ipam");
    assert!(st.contains("\"seeds\"") && st.ends_with(" 200"), "{st}");
    for (body, code) in
        [("{bad", "400"), ("{\"target\": 5}", "422"), ("{\"target\": \"x\", \"cidrs\": [\"10.32.0.0/40\"]}", "400")]
    {
        let out =
            curl(&format!("-X POST -H 'content-type: application/json' -d '{body}' http://127.0.0.1:6790/v1/attach"));
        assert!(out.starts_with("{\"error\":") && out.ends_with(code), "{body}: {out}");
    }
    let out = curl("http://127.0.0.1:6790/v1/nope");
    assert!(out.starts_with("{\"error\":") && out.ends_with(" 404"), "{out}");
    let out = curl("http://127.0.0.1:6790/v1/attach");
    assert!(out.starts_with("{\"error\":") && out.contains("GET") && out.ends_with(" 405"), "GET /v1/attach: {out}");
    for (body, code) in [
        ("{\"target\": \"nosuchcontainer\", \"cidrs\": []}".to_string(), "404"),
        (format!("{{\"target\": \"{x}\", \"cidrs\": [\"{taken}\"]}}"), "409"),
        (format!("{{\"target\": \"{}\", \"cidrs\": [\"net:10.32.203.0/24\"]}}", containers[0].1), "409"),
    ] {
        let out =
            curl(&format!("-X POST -H 'content-type: application/json' -d '{body}' http://127.0.0.1:6790/v1/attach"));
        assert!(out.starts_with("{\"error\":") && out.ends_with(code), "{body}: {out}");
    }
    let needles = [
        "weaver_ipam_addresses{state=\"allocated\"} 3",
        "weaver_dns_records ",
        "weaver_connections{state=\"established\"} 2",
        "weaver_connections_by_overlay{state=\"established\",overlay=\"sleeve\"} 2",
    ];
    // A reconnection (duplicate connections resolved) leaves a path
    // "sleeve (probing)" until its first heartbeat is answered: wait for it.
    let mut m = String::new();
    wait_until("A's metrics show both connections on the sleeve", Duration::from_secs(20), || {
        m = curl("http://127.0.0.1:6791/metrics");
        needles.iter().all(|n| m.contains(n))
    });
    for needle in needles {
        assert!(m.contains(needle), "metrics lack {needle}: {m}");
    }
    // The sleeve carried the pings: frames and bytes each way.
    for dir in ["captured", "injected", "sent", "received"] {
        let packets = metric(&m, &format!("weaver_sleeve_packets_total{{direction=\"{dir}\"}}"));
        let bytes = metric(&m, &format!("weaver_sleeve_bytes_total{{direction=\"{dir}\"}}"));
        assert!(packets.is_some_and(|n| n > 0.0), "sleeve packets {dir}: {packets:?}\n{m}");
        assert!(bytes.zip(packets).is_some_and(|(b, p)| b >= p), "sleeve bytes {dir}: {bytes:?}\n{m}");
    }

    // 8. A's second container goes away without a detach.
    let (_, gone, _) = containers[1].clone();
    sh(&format!("ip netns del {gone}"));
    // A holds its two containers' addresses and its exposed one.
    assert_eq!(lab.json("a", &["status", "ipam"])["allocated"], 3, "released before the grace period");
    wait_until("A releases the address of its vanished container", Duration::from_secs(20), || {
        lab.json("a", &["status", "ipam"])["allocated"] == 2
    });
    wait_until("and its name", Duration::from_secs(20), || lab.ctl("b", &["dns-lookup", &gone]).is_err());
}

/// A host alone (no peers given: the consensus is among one) seeds the
/// ring when the first request comes, in the tick that takes the request:
/// that very request is answered (the claim of an address in the range),
/// and so is the next (an allocation). Each failed with "IPAM is still
/// waiting for space" after 30 s when the request's waiter was registered
/// after the tick that finished it.
#[test]
fn ipam_lone_host_answers_its_first_request() {
    let mut lab = Lab::new("l");
    lab.start_with("a", &[]);
    let c1 = lab.container("c1");
    let out = lab.attach("a", &["10.40.0.7/12", &c1]);
    assert!(out.is_ok(), "the first attach (a claim) failed: {out:?}\n{}", lab.logs());
    assert_eq!(Lab::addrs(&c1), vec!["10.40.0.7/12".to_string()]);
    let c2 = lab.container("c2");
    let out = lab.attach("a", &[&c2]);
    assert!(out.is_ok(), "the allocation failed: {out:?}\n{}", lab.logs());
    let got = Lab::addrs(&c2);
    assert!(got.len() == 1 && got[0] != "10.40.0.7/12" && got[0].ends_with("/12"), "c2 got {got:?}");
    let st = lab.ctl("a", &["status", "ipam"]).unwrap_or_default();
    assert!(st.contains("seeded by 1 peer"), "{st}");
    lab.stop("a");
}
