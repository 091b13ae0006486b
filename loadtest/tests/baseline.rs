//! Integration tests: the real `roomcast-load` binary against the real `roomcast-baseline`
//! server on a free loopback port, each scenario briefly, checking that the JSON report is
//! complete and its counts add up. No timing assertions; deadlines are generous.

mod support;

use std::time::{Duration, Instant};
use support::{Server, assert_complete, load, load_json, num, temp_path};

const SMALL: &[&str] = &["--conns", "20", "--threads", "1"];

fn args<'a>(scenario: &'a str, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![scenario, "--url", url];
    v.extend_from_slice(SMALL);
    v.extend_from_slice(extra);
    v
}

#[test]
fn broadcast_delivers_every_message_to_every_client() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let a = args(
        "broadcast",
        &url,
        &["--senders", "4", "--rate", "40", "--duration", "1s", "--warmup", "500ms", "--drain", "20s", "--size", "100"],
    );
    let (code, r, stdout) = load_json(&a);
    assert_eq!(code, 0, "{stdout}");
    assert_complete(&r);
    assert_eq!(r["scenario"], "broadcast");
    assert_eq!(num(&r, "/connections/connected"), 20);
    let sent = num(&r, "/messages/sent");
    assert!(sent > 0);
    assert_eq!(num(&r, "/messages/recipients"), 20);
    assert_eq!(num(&r, "/messages/expected"), sent * 20);
    assert_eq!(num(&r, "/messages/lost"), 0, "{stdout}");
    assert_eq!(num(&r, "/messages/delivered"), sent * 20);
    assert_eq!(num(&r, "/messages/duplicates"), 0);
    assert_eq!(num(&r, "/latency_us/corrected/count"), sent * 20);
    assert_eq!(num(&r, "/latency_us/raw/count"), sent * 20);
    assert_eq!(num(&r, "/latency_us/send_lag/count"), sent);
    assert!(stdout.contains("corrected") && stdout.contains("p99.99"), "{stdout}");
    // Every receiving connection contributes its own p99 to the spread.
    assert_eq!(num(&r, "/per_conn_p99_us/connections"), 20, "{:#}", r["per_conn_p99_us"]);
    let (min, p50, max) =
        (num(&r, "/per_conn_p99_us/min"), num(&r, "/per_conn_p99_us/p50"), num(&r, "/per_conn_p99_us/max"));
    assert!(min <= p50 && p50 <= max, "{:#}", r["per_conn_p99_us"]);
    assert!(stdout.contains("per-conn p99"), "{stdout}");
    // The server saw every send and reports no lag.
    let stats = s.stats();
    assert_eq!(stats["lagged"], 0, "{stats}");
    assert_eq!(stats["messages_in"].as_u64(), Some(sent + num(&r, "/messages/sent_warmup")), "{stats}");
}

#[test]
fn rooms_are_separate_and_named_by_the_room_parameter() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let a = args(
        "broadcast",
        &url,
        &["--rooms", "2", "--senders", "4", "--rate", "40", "--duration", "1s", "--warmup", "300ms", "--drain", "20s"],
    );
    let (code, r, stdout) = load_json(&a);
    assert_eq!(code, 0, "{stdout}");
    let sent = num(&r, "/messages/sent");
    // 10 members per room: each message reaches its own room only.
    assert_eq!(num(&r, "/messages/expected"), sent * 10);
    assert_eq!(num(&r, "/messages/delivered"), sent * 10, "{stdout}");
    assert_eq!(num(&r, "/messages/misrouted"), 0);
    assert_eq!(num(&r, "/messages/lost"), 0);
}

/// A blocking tungstenite client on `/ws/chat?room=lag`.
fn raw_client(port: u16) -> tungstenite::WebSocket<std::net::TcpStream> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let url = format!("ws://127.0.0.1:{port}/ws/chat?room=lag");
    let (ws, _) = tungstenite::client(url.as_str(), stream).expect("handshake");
    ws
}

/// Reads what has arrived within ~100 ms; returns the text frames read.
fn drain(ws: &mut tungstenite::WebSocket<std::net::TcpStream>) -> u64 {
    let mut n = 0;
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(_)) => n += 1,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                return n;
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

#[test]
fn lag_is_counted_as_loss_never_skipped_silently() {
    // Capacity 1: a client that does not read for a while is lapped by the channel. Every message
    // must reach each client or be counted in `lagged`, so received + lagged == sent × clients.
    let s = Server::baseline_with(&["--capacity", "1"]);
    let mut idle = raw_client(s.port);
    let mut sender = raw_client(s.port);
    let deadline = Instant::now() + Duration::from_secs(120);
    while s.stats()["connections"] != 2 {
        assert!(Instant::now() < deadline, "both clients joined: {}", s.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    // 500 × 60 KiB = 30 MB: far more than the kernel buffers and tungstenite's write buffer
    // hold for a client that reads nothing, so both clients' writers stall and are lapped.
    let sent = 500u64;
    let text = "x".repeat(60 * 1024);
    for _ in 0..sent {
        sender.send(tungstenite::Message::text(text.clone())).expect("send");
    }
    while s.stats()["messages_in"] != sent {
        assert!(Instant::now() < deadline, "server read every message: {}", s.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    for ws in [&mut idle, &mut sender] {
        ws.get_mut().set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
    }
    let mut received = 0;
    loop {
        received += drain(&mut idle) + drain(&mut sender);
        let lagged = s.stats()["lagged"].as_u64().expect("lagged is a number");
        if received + lagged == 2 * sent {
            assert!(lagged > 0, "a stalled client with capacity 1 must lag");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "every delivery is received or counted: received {received} + lagged {lagged} != {}",
            2 * sent
        );
    }
}

#[test]
fn broadcast_without_room_param_and_with_source_ips() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let a = args(
        "broadcast",
        &url,
        &[
            "--no-room-param",
            "--source-ips",
            "127.0.0.1-127.0.0.4",
            "--senders",
            "2",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--drain",
            "20s",
        ],
    );
    let (code, r, stdout) = load_json(&a);
    assert_eq!(code, 0, "{stdout}");
    let sent = num(&r, "/messages/sent");
    assert_eq!(num(&r, "/messages/delivered") + num(&r, "/messages/lost"), sent * 20);
    assert_eq!(num(&r, "/messages/lost"), 0);
}

#[test]
fn connect_reports_handshake_latency() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let (code, r, _) = load_json(&args("connect", &url, &[]));
    assert_eq!(code, 0);
    assert_complete(&r);
    assert_eq!(num(&r, "/connections/connected"), 20);
    assert_eq!(num(&r, "/connections/failed"), 0);
    assert_eq!(num(&r, "/latency_us/handshake/count"), 20);
}

#[test]
fn connect_at_a_rate_and_to_a_dead_port() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let (code, r, _) = load_json(&args("connect", &url, &["--connect-rate", "200"]));
    assert_eq!(code, 0);
    assert_eq!(num(&r, "/connections/connected"), 20);
    drop(s);
    let dead = format!("ws://127.0.0.1:{}/ws/chat", support::free_port());
    let (_, r, _) = load_json(&args("connect", &dead, &["--connect-timeout", "5s"]));
    assert_eq!(num(&r, "/connections/connected"), 0);
    assert_eq!(num(&r, "/connections/failed"), 20);
    let errors: u64 = r["errors"].as_object().expect("errors map").values().filter_map(|v| v.as_u64()).sum();
    assert_eq!(errors, 20, "{:#}", r["errors"]);
    // Broadcast cannot run without connections: a clear error and exit status 1.
    let out = load(&[
        "broadcast",
        "--url",
        &dead,
        "--conns",
        "5",
        "--senders",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--connect-timeout",
        "2s",
        "--duration",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connection"));
}

#[test]
fn hold_pings_idle_connections() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let (code, r, _) = load_json(&args("hold", &url, &["--duration", "1500ms", "--ping-interval", "300ms"]));
    assert_eq!(code, 0);
    assert_complete(&r);
    assert_eq!(num(&r, "/connections/connected"), 20);
    assert_eq!(num(&r, "/connections/disconnects"), 0);
    let pings = num(&r, "/ping/sent");
    let pongs = num(&r, "/ping/pongs");
    assert!(pings >= 20, "every connection is pinged at least once");
    assert!(pongs > 0 && pongs <= pings);
    assert_eq!(num(&r, "/latency_us/ping_rtt/count"), pongs);
}

#[test]
fn churn_reconnects_and_accounts_for_every_delivery() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let a = args(
        "churn",
        &url,
        &[
            "--senders",
            "2",
            "--rate",
            "40",
            "--duration",
            "1500ms",
            "--warmup",
            "300ms",
            "--drain",
            "20s",
            "--churn-fraction",
            "0.25",
            "--churn-interval",
            "300ms",
        ],
    );
    let (code, r, stdout) = load_json(&a);
    assert_eq!(code, 0, "{stdout}");
    assert_complete(&r);
    assert!(num(&r, "/connections/reconnects") > 0);
    let sent = num(&r, "/messages/sent");
    assert_eq!(num(&r, "/messages/expected"), sent * 20);
    assert_eq!(num(&r, "/messages/delivered") + num(&r, "/messages/lost"), sent * 20);
    assert_eq!(num(&r, "/messages/duplicates"), 0, "the text protocol never replays");
}

#[test]
fn ramp_steps_up_until_the_bound() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let a = args(
        "ramp",
        &url,
        &[
            "--senders",
            "2",
            "--rate",
            "10",
            "--ramp-step",
            "10",
            "--max-steps",
            "2",
            "--duration",
            "700ms",
            "--warmup",
            "200ms",
            "--drain",
            "20s",
            "--p99-bound",
            "60s",
        ],
    );
    let (code, r, stdout) = load_json(&a);
    assert_eq!(code, 0, "{stdout}");
    let steps = r["ramp"].as_array().expect("ramp steps");
    assert_eq!(steps.len(), 2, "{stdout}");
    assert_eq!(steps[0]["rate"], 10.0);
    assert_eq!(steps[1]["rate"], 20.0);
    assert_eq!(r["ramp_max_sustainable_rate"], 20.0);
}

#[test]
fn thresholds_set_the_exit_code_and_files_are_written() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let hgrm = temp_path("lat.hgrm");
    let svg = temp_path("lat.svg");
    let (h, g) = (hgrm.to_string_lossy().to_string(), svg.to_string_lossy().to_string());
    let a = args(
        "broadcast",
        &url,
        &[
            "--senders",
            "2",
            "--rate",
            "20",
            "--duration",
            "500ms",
            "--warmup",
            "100ms",
            "--drain",
            "20s",
            "--fail-if-p99-over",
            "1us",
            "--fail-if-lost",
            "--hgrm",
            &h,
            "--svg",
            &g,
        ],
    );
    let (code, r, _) = load_json(&a);
    assert_eq!(code, 3, "p99 above 1µs must fail");
    assert!(!r["failures"].as_array().expect("failures").is_empty());
    let text = std::fs::read_to_string(&hgrm).expect("hgrm written");
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    assert!(text.contains("#[Buckets = "));
    let plot = std::fs::read_to_string(&svg).expect("svg written");
    assert!(plot.contains("<svg"));
    let _ = std::fs::remove_file(hgrm);
    let _ = std::fs::remove_file(svg);
}

#[test]
fn compare_prints_ratios_of_two_reports() {
    let s = Server::baseline();
    let url = s.ws_url("/ws/chat");
    let mut files = Vec::new();
    for _ in 0..2 {
        let p = temp_path("cmp.json");
        let ps = p.to_string_lossy().to_string();
        let mut a = args("connect", &url, &["--quiet", "--json"]);
        a.push(&ps);
        assert_eq!(load(&a).status.code(), Some(0));
        files.push(ps);
    }
    let out = load(&["compare", &files[0], &files[1]]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("B/A") && text.contains("handshake p50"), "{text}");
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn history_against_a_server_without_http_counts_errors() {
    let s = Server::baseline();
    let url = format!("http://127.0.0.1:{}", s.port);
    let (_, r, _) = load_json(&["history", "--url", &url, "--rate", "20", "--duration", "500ms", "--connections", "1"]);
    let requests = num(&r, "/http/requests");
    assert!(requests > 0);
    assert_eq!(num(&r, "/http/ok") + num(&r, "/http/non_2xx") + num(&r, "/http/errors"), requests);
}

#[test]
fn roomcast_binary_lookup_does_not_panic() {
    // Finds target/<profile>/roomcast once the server is merged in; absent is fine.
    let _ = support::roomcast_server_bin();
}
