//! `roomcast-load` over `wss://` against the TLS baseline (`roomcast-baseline --tls-cert/--tls-key`,
//! tokio-rustls) and against roomcast with `--tls-cert/--tls-key`: a short lossless broadcast with
//! `--ca` (the test's self-signed certificate) and with `--insecure`, and a refusal without either.
//! Certificates are made at test time (rcgen). No timing assertions: only counts.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::{Server, assert_connected_and_sent, free_port, load, load_json, num, roomcast_server_bin, temp_path};

/// A self-signed certificate for 127.0.0.1 and its key, written as PEM files.
struct Pems {
    cert: PathBuf,
    key: PathBuf,
}

impl Pems {
    fn new() -> Pems {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let pems = Pems { cert: temp_path("cert.pem"), key: temp_path("key.pem") };
        std::fs::write(&pems.cert, cert.pem()).expect("write cert");
        std::fs::write(&pems.key, key.serialize_pem()).expect("write key");
        pems
    }
}

impl Drop for Pems {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cert);
        let _ = std::fs::remove_file(&self.key);
    }
}

/// roomcast with TLS, killed and reaped on drop.
struct RoomcastTls {
    child: Child,
    addr: String,
}

impl RoomcastTls {
    fn start(pems: &Pems) -> RoomcastTls {
        RoomcastTls::start_with(pems, &[])
    }

    /// With extra arguments (e.g. `--tls-max-handshakes 1`).
    fn start_with(pems: &Pems, extra: &[&str]) -> RoomcastTls {
        let bin = roomcast_server_bin().expect("target/<profile>/roomcast is missing: `cargo build -p roomcast` first");
        let mut child = Command::new(&bin)
            .args(["--addr", "127.0.0.1:0", "--log-level", "error", "--rate-limit", "0", "--rate-limit-bytes", "0"])
            .args(["--no-persist", "--tls-cert"])
            .arg(&pems.cert)
            .arg("--tls-key")
            .arg(&pems.key)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn roomcast");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on https://") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("roomcast printed `listening on https://`");
        RoomcastTls { child, addr }
    }
}

impl Drop for RoomcastTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CONNS: u64 = 20;

fn broadcast(url: &str, trust: &[&str]) -> (i32, Value, String) {
    let conns = CONNS.to_string();
    let mut args = vec![
        "broadcast",
        "--url",
        url,
        "--conns",
        &conns,
        "--senders",
        "2",
        "--rate",
        "20",
        "--size",
        "100",
        "--threads",
        "2",
        "--warmup",
        "500ms",
        "--duration",
        "2s",
        "--drain",
        "10s",
        "--connect-timeout",
        "30s",
    ];
    args.extend_from_slice(trust);
    load_json(&args)
}

fn assert_lossless(code: i32, v: &Value, stdout: &str) {
    let sent = assert_connected_and_sent(code, v, stdout, CONNS);
    assert_eq!(num(v, "/messages/delivered"), sent * CONNS, "{v:#}");
    assert_eq!(num(v, "/messages/lost"), 0, "{v:#}");
}

#[test]
fn wss_broadcast_through_the_tls_baseline_with_ca_and_insecure() {
    let pems = Pems::new();
    let port = free_port();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_roomcast-baseline"));
    let args: Vec<String> = [
        "--addr".to_string(),
        format!("127.0.0.1:{port}"),
        "--tls-cert".into(),
        pems.cert.display().to_string(),
        "--tls-key".into(),
        pems.key.display().to_string(),
    ]
    .to_vec();
    let _server = Server::start(bin, &args, port);
    let url = format!("wss://127.0.0.1:{port}/ws/chat");
    let ca = pems.cert.display().to_string();
    let (code, v, stdout) = broadcast(&url, &["--ca", &ca]);
    assert_lossless(code, &v, &stdout);
    let (code, v, stdout) = broadcast(&url, &["--insecure"]);
    assert_lossless(code, &v, &stdout);
    // Neither: refused before connecting, saying what is missing.
    let out = load(&["broadcast", "--url", &url, "--conns", "1", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca FILE or --insecure"), "{out:?}");
}

#[test]
fn wss_broadcast_through_roomcast_with_tls() {
    let pems = Pems::new();
    let server = RoomcastTls::start(&pems);
    let url = format!("wss://{}/ws/chat", server.addr);
    let ca = pems.cert.display().to_string();
    let (code, v, stdout) = broadcast(&url, &["--ca", &ca]);
    assert_lossless(code, &v, &stdout);
}

/// An avalanche (`--drop`) over `wss://` against roomcast: every client's first handshake is full,
/// every reconnect resumes its own session (ticket); with `--no-tls-resumption` none resumes.
fn tls_avalanche(url: &str, ca: &str, extra: &[&str]) -> Value {
    let conns = CONNS.to_string();
    let mut args = vec![
        "avalanche",
        "--url",
        url,
        "--ca",
        ca,
        "--format",
        "json",
        "--conns",
        &conns,
        "--rooms",
        "2",
        "--senders",
        "2",
        "--rate",
        "20",
        "--threads",
        "2",
        "--warmup",
        "500ms",
        "--duration",
        "4s",
        "--outage-at",
        "1s",
        "--outage",
        "500ms",
        "--jitter",
        "500ms",
        "--drain",
        "30s",
        "--connect-timeout",
        "30s",
        "--drop",
    ];
    args.extend_from_slice(extra);
    let (code, v, stdout) = load_json(&args);
    assert_eq!(code, 0, "{stdout}\n{v:#}");
    assert_eq!(num(&v, "/avalanche/disconnected"), CONNS, "{v:#}");
    assert_eq!(num(&v, "/avalanche/not_connected_at_end"), 0, "{v:#}");
    v
}

#[test]
fn wss_reconnects_resume_their_tls_session_unless_told_not_to() {
    let pems = Pems::new();
    let server = RoomcastTls::start(&pems);
    let url = format!("wss://{}/ws/chat", server.addr);
    let ca = pems.cert.display().to_string();
    let v = tls_avalanche(&url, &ca, &[]);
    assert_eq!(num(&v, "/wire/tls_full_handshakes"), CONNS, "{v:#}");
    assert_eq!(num(&v, "/wire/tls_resumed_handshakes"), CONNS, "{v:#}");
    let v = tls_avalanche(&url, &ca, &["--no-tls-resumption"]);
    assert_eq!(num(&v, "/wire/tls_full_handshakes"), 2 * CONNS, "{v:#}");
    assert_eq!(num(&v, "/wire/tls_resumed_handshakes"), 0, "{v:#}");
}

/// A TLS server over its bound on handshakes in progress, with 16 per slot waiting for one, closes
/// new connections at once: here one handshake and 16 waiting places per shard, all taken on both
/// shards by 34 connections that send nothing until the server drops them at the 2-s handshake
/// timeout, so every first connect of the avalanche meanwhile is refused. Its clients try again,
/// backing off, so every client is connected and counted when the measured run begins, and the
/// retries are in the report.
#[test]
fn wss_avalanche_first_connects_refused_by_the_handshake_bound_are_retried() {
    let pems = Pems::new();
    let server = RoomcastTls::start_with(&pems, &["--tls-max-handshakes", "1", "--handshake-timeout", "2"]);
    // Accepted in order, handed to the two shards in turn: the slot and the 16 waiting places of each.
    let _silent: Vec<std::net::TcpStream> =
        (0..34).map(|_| std::net::TcpStream::connect(&server.addr).expect("connect")).collect();
    let url = format!("wss://{}/ws/chat", server.addr);
    let ca = pems.cert.display().to_string();
    let v = tls_avalanche(&url, &ca, &[]);
    assert_eq!(num(&v, "/connections/connected"), CONNS, "{v:#}");
    assert_eq!(num(&v, "/connections/failed"), 0, "{v:#}");
    assert_eq!(num(&v, "/avalanche/clients"), CONNS, "{v:#}");
    let retries = num(&v, "/avalanche/first_connect_retries");
    assert!(retries > 0, "no first connect was refused, so nothing was retried: {v:#}");
    let by_kind: u64 = v["avalanche"]["first_connect_retry_errors"]
        .as_object()
        .expect("first_connect_retry_errors")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(by_kind, retries, "{v:#}");
    // Recovery counts from a client's first reconnect attempt, so never less than its catch-up.
    let a = &v["avalanche"];
    assert_eq!(num(a, "/recovery_us/count"), num(a, "/caught_up"), "{v:#}");
    for q in ["p50", "p99", "max"] {
        assert!(num(a, &format!("/recovery_us/{q}")) >= num(a, &format!("/catchup_us/{q}")), "{q}: {v:#}");
    }
    println!("first connects retried: {retries} ({})", v["avalanche"]["first_connect_retry_errors"]);
}
