//! The mesh with real processes: five weaver daemons in five network
//! namespaces on this machine's kernel, joined in a chain A–B–C–D–E by veth
//! links, each told only its neighbours. Needs root (CI runs as root).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{sh, wait_until, weavectl};

const HOSTS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Namespaces and links, removed on drop.
struct Net {
    prefix: String,
    dir: PathBuf,
    /// Every daemon started, killed on drop (also when a test fails).
    pids: std::sync::Mutex<Vec<u32>>,
}

impl Net {
    fn ns(&self, h: &str) -> String {
        format!("{}{h}", self.prefix)
    }

    /// Chain: host i and i+1 share link 10.91.<i+1>.0/24 (.1 on the left, .2 on the right).
    fn chain(tag: &str) -> Net {
        let prefix = format!("wm{tag}{}-", std::process::id() % 10000);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("mesh-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let net = Net { prefix, dir, pids: std::sync::Mutex::new(Vec::new()) };
        for h in HOSTS {
            sh(&format!("ip netns add {0} && ip -n {0} link set lo up", net.ns(h)));
        }
        for i in 0..HOSTS.len() - 1 {
            let (l, r) = (net.ns(HOSTS[i]), net.ns(HOSTS[i + 1]));
            sh(&format!(
                "ip link add x{i} netns {l} type veth peer name y{i} netns {r} && \
                 ip -n {l} addr add 10.91.{n}.1/24 dev x{i} && ip -n {l} link set x{i} up && \
                 ip -n {r} addr add 10.91.{n}.2/24 dev y{i} && ip -n {r} link set y{i} up",
                n = i + 1
            ));
        }
        net
    }

    fn sock(&self, h: &str) -> PathBuf {
        self.dir.join(format!("{h}.sock"))
    }

    /// Starts weaver in host `h`'s namespace, pointed at its chain neighbours.
    fn start(&self, h: &str, password: Option<&str>) -> Child {
        let i = HOSTS.iter().position(|x| *x == h).unwrap();
        let mut peers = vec![];
        if i > 0 {
            peers.push(format!("10.91.{i}.1"));
        }
        if i + 1 < HOSTS.len() {
            peers.push(format!("10.91.{}.2", i + 1));
        }
        let log = std::fs::File::create(self.dir.join(format!("{h}.log"))).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(h), env!("CARGO_BIN_EXE_weaver")])
            .args(["--nickname", &format!("host-{h}")])
            .args(["--api-socket", self.sock(h).to_str().unwrap()])
            .args(["--state-dir", self.dir.join(format!("state-{h}")).to_str().unwrap()])
            .args(["--no-fastdp"])
            .args(&peers)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(p) = password {
            cmd.env("WEAVER_PASSWORD", p);
        }
        let child = cmd.spawn().expect("start weaver");
        self.pids.lock().unwrap().push(child.id());
        child
    }

    fn log(&self, h: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{h}.log"))).unwrap_or_default()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for pid in self.pids.lock().map(|p| p.clone()).unwrap_or_default() {
            // Only if that PID is still one of ours (PIDs are reused).
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&self.dir.display().to_string()) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
        // Logs are kept when a test fails.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        for h in HOSTS {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(h)]).status();
        }
    }
}

/// The peer nicknames `h` sees.
fn seen(net: &Net, h: &str) -> Vec<String> {
    let Ok(out) = weavectl(&net.sock(h), &["status", "peers", "--json"]) else { return vec![] };
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let mut names: Vec<String> = v
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["nickname"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn nicks(hs: &[&str]) -> Vec<String> {
    hs.iter().map(|h| format!("host-{h}")).collect()
}

fn stop(mut c: Child) {
    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    let _ = c.wait();
}

#[test]
fn chain_of_five_converges_splits_and_heals() {
    let net = Net::chain("c");
    let mut procs: Vec<Option<Child>> = HOSTS.iter().map(|h| Some(net.start(h, None))).collect();
    let all = nicks(&HOSTS);
    for h in HOSTS {
        wait_until(&format!("{h} to see all five peers"), Duration::from_secs(60), || seen(&net, h) == all);
    }
    // The chain, as A sees it: each peer connected only to its neighbours.
    let peers: Value =
        serde_json::from_str(&weavectl(&net.sock("a"), &["status", "peers", "--json"]).unwrap()).unwrap();
    for p in peers.as_array().unwrap() {
        let me = p["nickname"].as_str().unwrap().trim_start_matches("host-");
        let i = HOSTS.iter().position(|x| *x == me).unwrap();
        let mut want: Vec<&str> = vec![];
        if i > 0 {
            want.push(HOSTS[i - 1]);
        }
        if i + 1 < HOSTS.len() {
            want.push(HOSTS[i + 1]);
        }
        let mut got: Vec<String> = p["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["established"].as_bool() == Some(true))
            .map(|c| c["nickname"].as_str().unwrap_or("").trim_start_matches("host-").to_string())
            .collect();
        got.sort();
        assert_eq!(got, want, "connections of {me}");
    }
    let text = weavectl(&net.sock("a"), &["status", "peers"]).unwrap();
    println!("{text}");
    assert!(text.contains("(host-c)"), "{text}");

    // Killing C splits the mesh into A–B and D–E.
    let c = procs[2].take().unwrap();
    let mut c = c;
    let _ = c.kill();
    let _ = c.wait();
    wait_until("A–B to lose C, D, E", Duration::from_secs(60), || seen(&net, "a") == nicks(&["a", "b"]));
    wait_until("D–E to lose A, B, C", Duration::from_secs(60), || seen(&net, "e") == nicks(&["d", "e"]));

    // Restarting C heals it.
    procs[2] = Some(net.start("c", None));
    for h in HOSTS {
        wait_until(&format!("{h} to see all five again"), Duration::from_secs(90), || seen(&net, h) == all);
    }
    let st = weavectl(&net.sock("c"), &["status"]).unwrap();
    assert!(st.contains("Peers: 5"), "{st}");
    // Discovery may also be trying addresses C cannot reach; two are up.
    assert!(st.contains("(2 established"), "{st}");
    for p in procs.into_iter().flatten() {
        stop(p);
    }
}

#[test]
fn wrong_password_is_refused_with_a_clear_message() {
    let net = Net::chain("p");
    // Only A and B matter here: B has the wrong password.
    let a = net.start("a", Some("correct horse"));
    let b = net.start("b", Some("battery staple"));
    wait_until("both ends to log the refusal", Duration::from_secs(30), || {
        let (la, lb) = (net.log("a"), net.log("b"));
        la.contains("password") && lb.contains("password")
    });
    assert_eq!(seen(&net, "a"), nicks(&["a"]));
    assert_eq!(seen(&net, "b"), nicks(&["b"]));
    let conns = weavectl(&net.sock("a"), &["status", "connections"]).unwrap();
    println!("{conns}");
    stop(a);
    stop(b);
    for h in ["a", "b"] {
        assert!(!net.log(h).contains("panicked"), "{}", net.log(h));
    }
}

#[test]
fn connect_and_forget_are_persisted_and_metrics_count_connections() {
    let net = Net::chain("k");
    let a = net.start("a", None);
    let b = net.start("b", None);
    wait_until("A and B to meet", Duration::from_secs(30), || seen(&net, "a") == nicks(&["a", "b"]));
    // A target nobody answers: it is listed, and failing attempts back off.
    weavectl(&net.sock("a"), &["connect", "10.91.1.77"]).unwrap();
    let targets = |h| -> String { weavectl(&net.sock(h), &["status", "--json"]).unwrap() };
    assert!(targets("a").contains("10.91.1.77:6783"), "{}", targets("a"));
    // Bad input is refused with a message, not a crash.
    let e = weavectl(&net.sock("a"), &["connect", "not an address"]).unwrap_err();
    assert!(e.contains("invalid peer address"), "{e}");
    // Persisted across a restart.
    stop(a);
    let a = net.start("a", None);
    wait_until("A back", Duration::from_secs(30), || seen(&net, "a") == nicks(&["a", "b"]));
    assert!(targets("a").contains("10.91.1.77:6783"));
    weavectl(&net.sock("a"), &["forget", "10.91.1.77"]).unwrap();
    assert!(!targets("a").contains("10.91.1.77"));
    // Prometheus metrics on the API socket.
    let out = Command::new("curl")
        .args(["-sf", "--unix-socket", net.sock("a").to_str().unwrap(), "http://weaver/metrics"])
        .output()
        .expect("curl");
    let m = String::from_utf8_lossy(&out.stdout);
    println!("{m}");
    assert!(m.contains("weaver_connections{state=\"established\"} 1"), "{m}");
    assert!(m.contains("weaver_peers 2"), "{m}");
    stop(a);
    stop(b);
}
