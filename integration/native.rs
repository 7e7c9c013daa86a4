//! Native tests on this machine's kernel, which has no openvswitch module:
//! the "no ODP" case. They need root (network namespaces), which CI has.

use std::process::Command;

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
    let dir = std::env::temp_dir().join(format!("weaver-native-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("api.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weaver"))
        .args(["--api-socket", sock.to_str().unwrap()])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        // Its own namespace is not needed: a free port is enough.
        .args(["--port", "16783"])
        .spawn()
        .expect("start weaver");
    let mut up = false;
    for _ in 0..100 {
        if sock.exists() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = weavectl(&["--api", sock.to_str().unwrap(), "status"]);
    let dp = weavectl(&["--api", sock.to_str().unwrap(), "dp", "show"]);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let exit = child.wait().expect("wait weaver");
    assert!(up, "daemon did not create its API socket");
    assert!(status.0, "{}", status.1);
    assert!(status.1.contains("Overlay: sleeve (kernel has no openvswitch module)"), "{}", status.1);
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
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let res = rt.block_on(attach(&spec));
    let show = Command::new("ip").args(["-n", &ns, "addr", "show", "ethwe"]).output().unwrap();
    let show = String::from_utf8_lossy(&show.stdout).into_owned();
    let host = Command::new("ip").args(["link", "show", &spec.host_ifname]).output().unwrap();
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
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
    again.expect("second attach");
    assert!(removed.expect("detach"));
}
