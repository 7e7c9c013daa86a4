//! The VM lab: fast-datapath scenarios on a real kernel datapath.
//!
//! This machine's kernel has no openvswitch module, so these tests boot a
//! qemu guest (TCG) on Debian's kernel package, which has it, sharing this
//! machine's userspace and the freshly built binaries over 9p
//! (`integration/lab/`). All single-guest scenarios share one boot; each is
//! reported as its own test. A missing qemu or kernel fails the tests loudly:
//! `integration/setup.sh` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin_dir() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_weavectl"));
    exe.parent().expect("binary has a directory").to_path_buf()
}

/// What one guest run printed, and its verdicts per scenario.
struct Run {
    log: String,
    ok: bool,
}

impl Run {
    fn verdict(&self, scenario: &str) -> Result<(), String> {
        let pass = format!("SCENARIO {scenario} PASS");
        let fail = format!("SCENARIO {scenario} FAIL");
        if self.log.lines().any(|l| l.trim_end().ends_with(&pass) || l.contains(&format!("{pass}\r"))) {
            return Ok(());
        }
        let why =
            if self.log.contains(&fail) { "failed in the guest" } else { "did not report (guest did not run it)" };
        Err(format!(
            "scenario {scenario} {why}; guest exit ok={}; its last lines (whole lab log above):\n{}",
            self.ok,
            self.excerpt(scenario, 80)
        ))
    }

    /// The last `n` lines the guest printed for `scenario`, so that a
    /// failure's cause is in the test's own message.
    fn excerpt(&self, scenario: &str, n: usize) -> String {
        let start = format!("=== scenario {scenario}");
        let lines: Vec<&str> = self.log.lines().collect();
        let Some(from) = lines.iter().position(|l| l.trim_end().ends_with(&start)) else {
            return format!("(the guest never started {scenario})");
        };
        let end = format!("SCENARIO {scenario} ");
        let to = lines[from..].iter().position(|l| l.contains(&end)).map_or(lines.len(), |i| from + i + 1);
        lines[to.saturating_sub(n).max(from)..to].join("\n")
    }
}

fn boot(args: &[&str]) -> Run {
    let bins = bin_dir();
    let bins = bins.to_str().expect("utf-8 path");
    let mut cmd = Command::new("bash");
    cmd.args(args.iter().map(|a| a.replace("{bins}", bins)));
    cmd.current_dir(repo());
    eprintln!("lab: running {:?}", cmd);
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return Run { log: format!("cannot run the lab: {e}"), ok: false },
    };
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    // Shown in the CI log (tests run with --nocapture there).
    println!("----- lab output ({}) -----\n{log}\n----- end of lab output -----", args.join(" "));
    Run { log, ok: out.status.success() }
}

fn check_bins() {
    let b = bin_dir();
    assert!(
        !b.starts_with("/tmp") && !b.starts_with("/run"),
        "binaries are under {}, which the lab guest cannot see; use a target dir inside the checkout",
        b.display()
    );
}

fn single_guest() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        check_bins();
        boot(&["integration/lab/boot.sh", "integration/scenarios/guest-fastdp.sh", "--bin-dir", "{bins}"])
    })
}

macro_rules! scenario {
    ($name:ident) => {
        #[test]
        fn $name() {
            if let Err(e) = single_guest().verdict(stringify!($name)) {
                panic!("{e}");
            }
        }
    };
}

scenario!(probe);
scenario!(dp_ports);
scenario!(flows_weaver_to_ovs);
scenario!(flows_ovs_to_weaver);
scenario!(traffic);
scenario!(vxlan);
scenario!(upcalls);
scenario!(upcalls_per_cpu);
scenario!(vport_events);
scenario!(daemon);
scenario!(fastdp_two_hosts);
scenario!(mesh3_setup);
scenario!(mesh3_pairs);
scenario!(mesh3_steady);
scenario!(mesh3_broadcast);
scenario!(mesh3_mtu);
scenario!(mesh3_udp_blocked);
scenario!(mesh3_multihop);
scenario!(mesh3_partition);
scenario!(mesh3_restart);
scenario!(mesh3_mixed);
scenario!(mesh3_sleeve_peer);
scenario!(mesh3_sleeve_pieces);
scenario!(mesh3_encrypted);
scenario!(mesh3_expose);
scenario!(mesh3_service);
scenario!(mesh3_detach);
scenario!(mesh3_stop);

/// Boots two guests joined over loopback by qemu's UDP netdevs and runs a
/// scenario script in both; `name` is the scenario it reports.
fn two_vms(script: &str, name: &str) {
    check_bins();
    let run = boot(&["integration/lab/boot-multi.sh", "2", script, "--bin-dir", "{bins}"]);
    if let Err(e) = run.verdict(name) {
        panic!("{e}");
    }
    assert!(run.ok, "a guest failed; see the lab log above");
}

/// VXLAN between two VMs, each with its own kernel datapath, flows by hand.
#[test]
fn multi_vm_vxlan() {
    two_vms("integration/scenarios/multi-vxlan.sh", "multi_vm_vxlan");
}

#[test]
fn scenario_scripts_exist() {
    for s in
        ["integration/scenarios/guest-fastdp.sh", "integration/scenarios/multi-vxlan.sh", "integration/lab/boot.sh"]
    {
        assert!(Path::new(&repo().join(s)).is_file(), "{s} missing");
    }
}

/// weaver itself on two VMs: mesh over the VMs' NICs, a container on each,
/// ping through the daemons' fast datapath.
#[test]
fn multi_vm_weaver() {
    two_vms("integration/scenarios/multi-weaver.sh", "multi_vm_weaver");
}

/// A failing scenario's verdict carries its own lines, not its neighbours'.
#[test]
fn verdict_quotes_the_failing_scenario() {
    let log = "=== scenario a\nSCENARIO a PASS\n=== scenario b\nstep 1\nwhy it broke\nSCENARIO b FAIL: exit 1\n=== scenario c\nSCENARIO c PASS\n";
    let run = Run { log: log.into(), ok: false };
    assert!(run.verdict("a").is_ok());
    let e = run.verdict("b").unwrap_err();
    assert!(e.contains("failed in the guest"), "{e}");
    assert!(e.ends_with("=== scenario b\nstep 1\nwhy it broke\nSCENARIO b FAIL: exit 1"), "{e}");
    assert!(
        run.excerpt("b", 2).ends_with("why it broke\nSCENARIO b FAIL: exit 1")
            && !run.excerpt("b", 2).contains("step 1")
    );
    assert!(run.verdict("d").unwrap_err().contains("never started d"));
}
