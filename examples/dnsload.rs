//! A DNS load generator for `integration/bench/dns.sh`: A queries over UDP
//! from one socket, with a fixed window of queries outstanding, for a
//! fixed time, against one server; every reply is checked.
//!
//! ```text
//! dnsload --server 127.0.0.1:5353 --hosts FILE [--duration 10] [--window 128]
//! ```
//!
//! `FILE` has one `ADDRESS NAME` a line (`/etc/hosts` syntax, names fully
//! qualified): the names to ask for, in turn, and the address each must
//! resolve to. Before the clock starts it waits (`--wait`) for one correct
//! answer, so a server still starting is not counted as losing queries.
//!
//! A reply counts as answered only if its ID is that of a query in flight,
//! it is a response with NOERROR, not truncated, with that query's question
//! and an A record of the expected address; otherwise it is *wrong* (a DNS
//! message that says something else) or *malformed* (not one). A query with
//! no reply within `--timeout-ms` is *lost*. Replies whose ID is not in
//! flight (late, after their query was counted lost, or duplicated) are
//! *unexpected*. Nothing from the network is trusted: every field is read
//! with bounds checks.
//!
//! Throughput is the replies answered before the end of the run over its
//! duration; queries still in flight at the end get `--timeout-ms` to be
//! answered (not counted in the rate, counted in the latencies). With the
//! window full, latency is mostly queueing: window / rate.
//!
//! It prints a summary on stderr and one JSON object on stdout, and exits
//! non-zero if no correct answer came before the run, none was answered
//! during it, or any reply was wrong or malformed: a fast wrong server must
//! not win. Loss and latency are reported, never judged.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

#[path = "support/hosts.rs"]
mod hosts;
use clap::Parser;
use serde_json::json;

/// How often a blocked receive wakes up to expire lost queries.
const RECV_WAKE: Duration = Duration::from_millis(5);

/// Clock ticks per second of `/proc/*/stat` (USER_HZ: 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Sends A queries with a fixed window outstanding and checks every reply.
#[derive(Parser, Debug)]
struct Args {
    /// The server's UDP address.
    #[arg(long)]
    server: SocketAddr,
    /// `ADDRESS NAME` lines: the names to ask for and their addresses.
    #[arg(long)]
    hosts: PathBuf,
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Queries outstanding at once.
    #[arg(long, default_value_t = 128)]
    window: usize,
    /// Milliseconds after which a query without a reply counts as lost.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Seconds to wait for a first correct answer before the run.
    #[arg(long, default_value_t = 5.0)]
    wait: f64,
    /// A label for the report (the server's name).
    #[arg(long, default_value = "server")]
    label: String,
}

/// A name to ask for: its query (ID bytes to fill in) and its address.
struct Target {
    name: String,
    addr: Ipv4Addr,
    query: Vec<u8>,
}

/// A query in flight, in the slot of its ID.
#[derive(Clone, Copy)]
struct Flight {
    target: usize,
    sent: Instant,
}

/// What a reply says about its query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// NOERROR with the expected address.
    Correct,
    /// A DNS response with another RCODE.
    Rcode(u8),
    /// TC set: the reply did not fit.
    Truncated,
    /// Another question, or no A record of the expected address.
    WrongAnswer,
    /// Not a DNS response.
    Malformed,
}

/// What happened during a run.
#[derive(Debug, Default)]
struct Counts {
    sent: u64,
    answered: u64,
    answered_in_time: u64,
    lost: u64,
    rcode: u64,
    truncated: u64,
    wrong_answer: u64,
    malformed: u64,
    unexpected: u64,
    send_errors: u64,
    recv_errors: u64,
    /// Latency of every answered query, in microseconds.
    latencies_us: Vec<u32>,
}

impl Counts {
    fn wrong(&self) -> u64 {
        self.rcode + self.truncated + self.wrong_answer
    }

    fn record(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Correct => self.answered += 1,
            Verdict::Rcode(_) => self.rcode += 1,
            Verdict::Truncated => self.truncated += 1,
            Verdict::WrongAnswer => self.wrong_answer += 1,
            Verdict::Malformed => self.malformed += 1,
        }
    }
}

/// Reads the hosts file and builds each name's query.
fn targets(path: &Path) -> Result<Vec<Target>> {
    hosts::read(path)?
        .into_iter()
        .map(|h| {
            let query = encode_query(&h.name).with_context(|| format!("{}:{}", path.display(), h.line + 1))?;
            Ok(Target { name: h.name, addr: h.addr, query })
        })
        .collect()
}

/// A standard query for `name`'s A record, recursion desired, ID 0.
fn encode_query(name: &str) -> Result<Vec<u8>> {
    let mut q = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len()).ok().filter(|l| (1..=63).contains(l));
        let Some(len) = len else { bail!("bad label {label:?} in {name:?}") };
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    if q.len() - 12 > 255 {
        bail!("name {name:?} is too long");
    }
    q.extend_from_slice(&[0, 1, 0, 1]); // type A, class IN
    Ok(q)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(b: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *b.get(at)?;
        match len & 0xC0 {
            0xC0 => return b.get(at + 1).map(|_| at + 2),
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            _ => return None,
        }
    }
    None
}

/// Checks `reply` against its query (`question` is the query after the
/// header) and the address it must hold.
fn verify(reply: &[u8], question: &[u8], expected: Ipv4Addr) -> Verdict {
    let (Some(&flags), Some(&rflags), Some(qd), Some(an)) =
        (reply.get(2), reply.get(3), u16_at(reply, 4), u16_at(reply, 6))
    else {
        return Verdict::Malformed;
    };
    if flags & 0x80 == 0 {
        return Verdict::Malformed;
    }
    if flags & 0x02 != 0 {
        return Verdict::Truncated;
    }
    if rflags & 0x0F != 0 {
        return Verdict::Rcode(rflags & 0x0F);
    }
    let end = 12 + question.len();
    let same_question = reply.get(12..end).is_some_and(|q| q.eq_ignore_ascii_case(question));
    if qd != 1 || !same_question {
        return Verdict::WrongAnswer;
    }
    let mut at = end;
    for _ in 0..an {
        let Some(after_name) = skip_name(reply, at) else { return Verdict::Malformed };
        let (Some(kind), Some(class), Some(len)) =
            (u16_at(reply, after_name), u16_at(reply, after_name + 2), u16_at(reply, after_name + 8))
        else {
            return Verdict::Malformed;
        };
        let data = after_name + 10;
        let Some(rdata) = reply.get(data..data + usize::from(len)) else { return Verdict::Malformed };
        if kind == 1 && class == 1 && rdata == expected.octets() {
            return Verdict::Correct;
        }
        at = data + usize::from(len);
    }
    Verdict::WrongAnswer
}

/// This process's CPU time so far (user + system), from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / USER_HZ)
}

/// Asks for the first name until a correct answer comes, for at most `wait`.
fn wait_ready(sock: &UdpSocket, target: &mut Target, wait: Duration) -> Result<()> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let mut last = String::from("no reply");
    let mut id: u16 = 0xBEE0;
    while start.elapsed() < wait {
        id = id.wrapping_add(1);
        target.query[..2].copy_from_slice(&id.to_be_bytes());
        if let Err(e) = sock.send(&target.query) {
            last = format!("send: {e}");
        }
        let round = Instant::now();
        while round.elapsed() < Duration::from_millis(100) {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let reply = &buf[..n];
                    if u16_at(reply, 0) != Some(id) {
                        continue;
                    }
                    match verify(reply, &target.query[12..], target.addr) {
                        Verdict::Correct => return Ok(()),
                        v => last = format!("{v:?} for {}", target.name),
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => {
                    last = format!("receive: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
    bail!("no correct answer within {wait:?} (last: {last})")
}

/// The load itself: keeps `window` queries in flight until `duration` is
/// over, then gives the last ones `timeout` to be answered.
fn run(sock: &UdpSocket, targets: &mut [Target], window: usize, duration: Duration, timeout: Duration) -> Counts {
    let mut c = Counts::default();
    let mut slots: Vec<Option<Flight>> = vec![None; 1 << 16];
    // Queries in the order sent, to expire the lost ones: (ID, sent).
    let mut order: VecDeque<(u16, Instant)> = VecDeque::with_capacity(window * 2);
    let mut in_flight = 0usize;
    let mut next_id: u16 = 1;
    let mut next_target = 0usize;
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let deadline = start + duration;
    loop {
        let now = Instant::now();
        let sending = now < deadline;
        if !sending && (in_flight == 0 || now >= deadline + timeout) {
            break;
        }
        // Expire: the oldest first; entries already answered are skipped.
        while let Some(&(id, sent)) = order.front() {
            let slot = &mut slots[usize::from(id)];
            match slot {
                Some(f) if f.sent == sent => {
                    if now.duration_since(sent) < timeout {
                        break;
                    }
                    *slot = None;
                    in_flight -= 1;
                    c.lost += 1;
                }
                _ => {}
            }
            order.pop_front();
        }
        while sending && in_flight < window {
            while slots[usize::from(next_id)].is_some() {
                next_id = next_id.wrapping_add(1);
            }
            let id = next_id;
            next_id = next_id.wrapping_add(1);
            let t = &mut targets[next_target];
            t.query[..2].copy_from_slice(&id.to_be_bytes());
            let sent = Instant::now();
            if sock.send(&t.query).is_err() {
                c.send_errors += 1;
                break;
            }
            slots[usize::from(id)] = Some(Flight { target: next_target, sent });
            order.push_back((id, sent));
            in_flight += 1;
            c.sent += 1;
            next_target = (next_target + 1) % targets.len();
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                // ICMP port unreachable and the like: the server is gone.
                c.recv_errors += 1;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        let got = Instant::now();
        let reply = &buf[..n];
        let Some(id) = u16_at(reply, 0) else {
            c.malformed += 1;
            continue;
        };
        let Some(flight) = slots[usize::from(id)].take() else {
            c.unexpected += 1;
            continue;
        };
        in_flight -= 1;
        let t = &targets[flight.target];
        let verdict = verify(reply, &t.query[12..], t.addr);
        c.record(verdict);
        if verdict == Verdict::Correct {
            let us = got.duration_since(flight.sent).as_micros();
            c.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            if got < deadline {
                c.answered_in_time += 1;
            }
        }
    }
    c.lost += in_flight as u64;
    c
}

fn percentile(sorted: &[u32], p: f64) -> Option<f64> {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map(|&us| f64::from(us) / 1000.0)
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let mut targets = targets(&args.hosts)?;
    let sock = UdpSocket::bind(if args.server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    sock.connect(args.server).with_context(|| format!("connecting to {}", args.server))?;
    sock.set_read_timeout(Some(RECV_WAKE))?;
    wait_ready(&sock, &mut targets[0], Duration::from_secs_f64(args.wait))
        .with_context(|| format!("{} at {} is not answering correctly", args.label, args.server))?;

    let duration = Duration::from_secs_f64(args.duration);
    let cpu_before = cpu_seconds();
    let mut c = run(&sock, &mut targets, args.window.max(1), duration, Duration::from_millis(args.timeout_ms));
    let cpu = cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);

    c.latencies_us.sort_unstable();
    let ms = |p| percentile(&c.latencies_us, p);
    let qps = c.answered_in_time as f64 / duration.as_secs_f64();
    let lost_pct = if c.sent > 0 { 100.0 * c.lost as f64 / c.sent as f64 } else { 0.0 };
    let report = json!({
        "label": args.label,
        "server": args.server.to_string(),
        "names": targets.len(),
        "window": args.window,
        "duration_s": args.duration,
        "timeout_ms": args.timeout_ms,
        "sent": c.sent,
        "answered": c.answered,
        "qps": qps.round(),
        "lost": c.lost,
        "lost_pct": (lost_pct * 1000.0).round() / 1000.0,
        "wrong_rcode": c.rcode,
        "wrong_truncated": c.truncated,
        "wrong_answer": c.wrong_answer,
        "malformed": c.malformed,
        "unexpected": c.unexpected,
        "send_errors": c.send_errors,
        "recv_errors": c.recv_errors,
        "latency_ms": { "p50": ms(0.5), "p90": ms(0.9), "p99": ms(0.99), "max": ms(1.0) },
        "client_cpu_s": cpu.map(|s| (s * 100.0).round() / 100.0),
    });
    eprintln!(
        "dnsload {}: {:.0} answered/s, {} sent, {} lost, {} wrong, {} malformed, {} unexpected; latency p50 {:.3} ms, p99 {:.3} ms",
        args.label,
        qps,
        c.sent,
        c.lost,
        c.wrong(),
        c.malformed,
        c.unexpected,
        ms(0.5).unwrap_or(f64::NAN),
        ms(0.99).unwrap_or(f64::NAN),
    );
    println!("{report}");
    if c.answered_in_time == 0 || c.wrong() > 0 || c.malformed > 0 {
        eprintln!("dnsload {}: FAILED: no answers, or wrong or malformed replies", args.label);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
