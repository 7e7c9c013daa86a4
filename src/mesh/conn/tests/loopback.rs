//! The tokio driver over real TCP on 127.0.0.1, with short timers.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::pair::{cfg, identity};
use crate::mesh::conn::*;

const WAIT: Duration = Duration::from_secs(5);

fn fast(mut c: ConnConfig) -> ConnConfig {
    c.handshake_timeout = Duration::from_secs(2);
    c.heartbeat_interval = Duration::from_millis(50);
    c.heartbeat_timeout = Duration::from_millis(200);
    c
}

/// Runs `establish` on both ends of a fresh loopback connection: (dialer,
/// acceptor).
async fn connect(a: &ConnConfig, b: &ConnConfig) -> (Result<Established, ConnError>, Result<Established, ConnError>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dial = async { establish(TcpStream::connect(addr).await.unwrap(), a, true).await };
    let accept = async { establish(listener.accept().await.unwrap().0, b, false).await };
    timeout(WAIT, async { tokio::join!(dial, accept) }).await.expect("handshakes end")
}

async fn next(h: &mut ConnHandle) -> ConnEvent {
    timeout(WAIT, h.rx.recv()).await.expect("an event in time").expect("an event before the channel ends")
}

async fn expect_message(h: &mut ConnHandle) -> Vec<u8> {
    match next(h).await {
        ConnEvent::Message(m) => m,
        ConnEvent::Overlay(m) => panic!("unexpected overlay message {m:?}"),
        ConnEvent::Closed(r) => panic!("closed: {r}"),
    }
}

async fn expect_closed(h: &mut ConnHandle) -> CloseReason {
    loop {
        if let ConnEvent::Closed(r) = next(h).await {
            return r;
        }
    }
}

#[tokio::test]
async fn establish_and_exchange_both_ways() {
    for pw in [None, Some("pw")] {
        // Roomy timers: a debug build seals big messages slowly.
        let roomy = |c: ConnConfig| ConnConfig { heartbeat_timeout: Duration::from_secs(5), ..fast(c) };
        let (a, b) = connect(&roomy(cfg(1, pw)), &roomy(cfg(2, pw))).await;
        let (mut a, mut b) = (spawn(a.unwrap()), spawn(b.unwrap()));
        assert_eq!(a.info.remote, identity(2));
        assert_eq!(b.info.remote, identity(1));
        assert_eq!(a.info.conn_uid(), b.info.conn_uid());
        if pw.is_some() {
            let (ka, kb) = (a.info.session_keys.clone().unwrap(), b.info.session_keys.clone().unwrap());
            assert_eq!((ka.tx, ka.rx), (kb.rx, kb.tx));
        }
        for i in 0..200u32 {
            a.tx.send(Payload::Mesh(i.to_be_bytes().to_vec())).await.unwrap();
        }
        b.tx.send(Payload::Mesh(vec![9; 300 << 10])).await.unwrap();
        for i in 0..200u32 {
            assert_eq!(expect_message(&mut b).await, i.to_be_bytes().to_vec());
        }
        assert_eq!(expect_message(&mut a).await.len(), 300 << 10, "a multi-piece message");
        a.closer.close("test over");
        assert!(matches!(expect_closed(&mut a).await, CloseReason::Local(r) if r == "test over"));
        let r = expect_closed(&mut b).await;
        assert_eq!(r.to_string(), "closed by the remote: test over");
    }
}

#[tokio::test]
async fn heartbeats_keep_an_idle_connection_up() {
    let (a, b) = connect(&fast(cfg(1, Some("pw"))), &fast(cfg(2, Some("pw")))).await;
    let (mut a, mut b) = (spawn(a.unwrap()), spawn(b.unwrap()));
    tokio::time::sleep(Duration::from_millis(800)).await; // 4 read deadlines
    assert!(a.rx.try_recv().is_err() && b.rx.try_recv().is_err(), "nothing but heartbeats");
    a.tx.send(Payload::Mesh(b"still here".to_vec())).await.unwrap();
    assert_eq!(expect_message(&mut b).await, b"still here");
}

#[tokio::test]
async fn a_silent_peer_is_timed_out() {
    let (a, b) = connect(&fast(cfg(1, Some("pw"))), &fast(cfg(2, Some("pw")))).await;
    let mut a = spawn(a.unwrap());
    let _silent = b.unwrap(); // holds the socket open, never runs
    let started = std::time::Instant::now();
    let r = expect_closed(&mut a).await;
    assert!(matches!(r, CloseReason::Session(SessionError::HeartbeatTimeout(_))), "{r}");
    assert!(r.to_string().starts_with("heartbeat timeout: nothing from the remote for"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn wrong_password_is_refused_on_both_ends() {
    let (a, b) = connect(&fast(cfg(1, Some("one"))), &fast(cfg(2, Some("two")))).await;
    let (ea, eb) = (a.unwrap_err(), b.unwrap_err());
    let (sa, sb) = (ea.to_string(), eb.to_string());
    assert!(sa.starts_with("handshake with 127.0.0.1:") && sa.contains("password mismatch"), "{sa}");
    assert!(
        sb.starts_with("handshake with 127.0.0.1:") && sb.ends_with("failed: password mismatch or corrupted handshake"),
        "{sb}"
    );
    assert!(!ea.is_permanent() && !eb.is_permanent());
}

#[tokio::test]
async fn password_on_one_end_only_is_refused_on_both_ends() {
    let (a, b) = connect(&fast(cfg(1, None)), &fast(cfg(2, Some("pw")))).await;
    assert!(a.unwrap_err().to_string().contains("the remote has a password set but we have none"));
    assert!(b.unwrap_err().to_string().contains("we have a password set but the remote has none"));
}

#[tokio::test]
async fn connecting_to_ourself_is_refused_for_good() {
    let c = fast(cfg(1, None));
    let (a, b) = connect(&c, &c).await;
    for e in [a.unwrap_err(), b.unwrap_err()] {
        assert!(e.to_string().ends_with("cannot connect to ourself"), "{e}");
        assert!(e.is_permanent());
    }
}

#[tokio::test]
async fn a_mute_remote_times_the_handshake_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = fast(cfg(1, None));
    c.handshake_timeout = Duration::from_millis(200);
    let (r, _mute) =
        tokio::join!(async { establish(TcpStream::connect(addr).await.unwrap(), &c, true).await }, listener.accept());
    let e = r.unwrap_err();
    assert!(matches!(e, ConnError::HandshakeTimeout { .. }), "{e}");
    assert!(e.to_string().ends_with("waiting for the remote's hello"), "{e}");
}

#[tokio::test]
async fn a_non_weaver_client_is_refused_with_a_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = fast(cfg(1, None));
    let client = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        got
    };
    let (r, got) = tokio::join!(async { establish(listener.accept().await.unwrap().0, &c, false).await }, client);
    assert!(r.unwrap_err().to_string().contains("not a weaver peer"));
    assert!(got.starts_with(b"weaver\0\n"), "our magic and hello, then the refusal");
    assert!(got.windows(17).any(|w| w == b"not a weaver peer"));
}

#[tokio::test]
async fn dropping_the_handle_closes_the_remote() {
    let (a, b) = connect(&fast(cfg(1, None)), &fast(cfg(2, None))).await;
    let (a, mut b) = (spawn(a.unwrap()), spawn(b.unwrap()));
    drop(a);
    let r = expect_closed(&mut b).await;
    assert_eq!(r.to_string(), "closed by the remote: the owner dropped the connection");
}
