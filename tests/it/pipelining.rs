//! HTTP keep-alive pipelining against the output bound: a client that writes many requests on one
//! connection and reads nothing must not make the server queue every response (issue 11, defect 1),
//! and a client that pipelines and does read gets every response, in order.
//!
//! Memory is checked with the server's VmRSS against a generous bound (before the fix these floods took
//! it from ~12 MB to 300 MB and 1 GB); a witness in another room keeps chatting throughout; descriptors
//! return to the baseline once the flooding clients are gone.

use std::io::Write;
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::proc::{fd_count, rss_kib};
use crate::support::*;

/// Headroom over the baseline the server's resident memory may use during and after a flood.
const RSS_HEADROOM_KIB: u64 = 64 * 1024;

/// Writes `request` `count` times on a fresh connection and never reads. The writing thread gives up
/// when the server stops taking bytes (TCP pushes back) for a few seconds; the socket stays open until
/// the returned stream is dropped.
fn pipeline_without_reading(server: &Server, request: &str, count: usize) -> (TcpStream, JoinHandle<usize>) {
    let stream = TcpStream::connect(server.addr).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    writer.set_write_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let data = request.repeat(count).into_bytes();
    let handle = std::thread::spawn(move || {
        let mut sent = 0;
        while sent < data.len() {
            match writer.write(&data[sent..(sent + 64 * 1024).min(data.len())]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    (stream, handle)
}

fn chat(witness: &mut Client, n: usize) {
    let line = format!("witness {n}");
    send_text(witness, &line);
    while recv_text(witness) != line {}
}

/// Chats `rounds` times with the witness and returns the largest VmRSS seen meanwhile.
fn chat_and_watch_rss(pid: u32, witness: &mut Client, rounds: usize) -> u64 {
    let mut peak = rss_kib(pid);
    for n in 0..rounds {
        chat(witness, n);
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    peak
}

/// Resets a connection (RST, as a client killed mid-flood would).
fn reset(stream: TcpStream) {
    let socket = socket2::Socket::from(stream);
    let _ = socket.set_linger(Some(Duration::ZERO));
}

#[test]
fn pipelined_metrics_requests_never_read_keep_memory_bounded() {
    // The witness chats faster than the default 20 messages/s.
    let server = Server::start(&["--rate-limit", "0"]);
    let pid = server.pid();
    let mut witness = connect_ws(&server, "/ws/chat?room=witness");
    chat(&mut witness, 0);
    let (baseline_fds, baseline_rss) = (fd_count(pid), rss_kib(pid));

    let (flood, writer) = pipeline_without_reading(&server, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 20_000);
    let peak = chat_and_watch_rss(pid, &mut witness, 100);
    let sent = writer.join().expect("writer");
    assert!(
        peak <= baseline_rss + RSS_HEADROOM_KIB,
        "VmRSS went from {baseline_rss} KiB to {peak} KiB while {sent} bytes of pipelined /metrics were unread"
    );
    reset(flood);
    wait_until("descriptors to return to the baseline", || fd_count(pid) <= baseline_fds);
    chat(&mut witness, 1000);
    let rss = rss_kib(pid);
    assert!(rss <= baseline_rss + RSS_HEADROOM_KIB, "VmRSS {rss} KiB after the flood (baseline {baseline_rss})");
}

#[test]
fn pipelined_history_pages_never_read_keep_memory_bounded() {
    let server = Server::start(&["--rate-limit", "0", "--rate-limit-bytes", "0"]);
    let pid = server.pid();
    // 200 messages of 16,000 bytes: one page of 200 is a response of about 3.3 MB.
    let mut filler = connect_ws(&server, "/ws/chat?room=big");
    let body = "m".repeat(16_000);
    for i in 0..200 {
        send_text(&mut filler, &format!("{i:06}{body}"));
    }
    for _ in 0..200 {
        recv_text(&mut filler);
    }
    wait_until("the 200 messages to be stored", || {
        let (status, _, body) = http_get(&server, "/rooms/big/messages?limit=200");
        status == 200
            && serde_json::from_slice::<serde_json::Value>(&body).map_or(0, |v| v.as_array().map_or(0, Vec::len)) == 200
    });
    let mut witness = connect_ws(&server, "/ws/chat?room=witness");
    chat(&mut witness, 0);
    let (baseline_fds, baseline_rss) = (fd_count(pid), rss_kib(pid));

    let request = "GET /rooms/big/messages?limit=200 HTTP/1.1\r\nHost: x\r\n\r\n";
    let floods: Vec<_> = (0..2).map(|_| pipeline_without_reading(&server, request, 140)).collect();
    let peak = chat_and_watch_rss(pid, &mut witness, 100);
    assert!(
        peak <= baseline_rss + RSS_HEADROOM_KIB,
        "VmRSS went from {baseline_rss} KiB to {peak} KiB with 2 x 140 pipelined history pages unread"
    );
    for (stream, writer) in floods {
        writer.join().expect("writer");
        reset(stream);
    }
    wait_until("descriptors to return to the baseline", || fd_count(pid) <= baseline_fds);
    chat(&mut witness, 1000);
    let rss = rss_kib(pid);
    assert!(rss <= baseline_rss + RSS_HEADROOM_KIB, "VmRSS {rss} KiB after the flood (baseline {baseline_rss})");
}

#[test]
fn a_pipelining_client_that_reads_gets_every_response_in_order() {
    let server = Server::start(&["--rate-limit", "0", "--rate-limit-bytes", "0"]);
    let mut filler = connect_ws(&server, "/ws/chat?room=pages");
    let body = "p".repeat(8_000);
    for i in 0..50 {
        send_text(&mut filler, &format!("{i:04}{body}"));
    }
    for _ in 0..50 {
        recv_text(&mut filler);
    }
    // Alternate small responses and ~400 KB history pages, far more than the output mark, all written
    // before anything is read: the server must come back to the buffered requests as its output drains.
    let mut requests = String::new();
    let mut expected = Vec::new();
    for i in 0..600 {
        if i % 20 == 10 {
            requests.push_str("GET /rooms/pages/messages?limit=50 HTTP/1.1\r\nHost: x\r\n\r\n");
            expected.push("history");
        } else {
            requests.push_str("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            expected.push("healthz");
        }
    }
    requests.push_str("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut raw = Raw::connect(&server);
    let mut writer = raw.stream.try_clone().expect("clone");
    let writing = std::thread::spawn(move || writer.write_all(requests.as_bytes()));
    for (i, kind) in expected.iter().enumerate() {
        let (status, head, body) = raw.read_response();
        assert_eq!(status, 200, "response {i}: {head}");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
        match *kind {
            "history" => assert_eq!(value.as_array().map(Vec::len), Some(50), "response {i}"),
            _ => assert!(value["connections"].is_u64(), "response {i}: {value}"),
        }
    }
    let (status, _, _) = raw.read_response();
    assert_eq!(status, 404);
    assert!(raw.reads_eof(), "closed after Connection: close");
    writing.join().expect("writer").expect("every request written");
}
