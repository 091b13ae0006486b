//! Resume-avalanche probe (issue 23 §4): fills a room with `--messages` × `--size` bytes, then
//! `--clients` clients resume it at once with `since=0` while a witness pair chats in another room;
//! reports the server's RSS before, at peak and after every client closed, the crowd's time, and the
//! witness's message latency. One JSON line on stdout. Blocking tungstenite, one thread per client.
//!
//! Usage: roomcast-resume-crowd --addr 127.0.0.1:PORT --pid SERVER_PID [--clients 200]
//!        [--messages 1300] [--size 16000] [--settle-secs 3]

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hdrhistogram::Histogram;
use tungstenite::{Message, WebSocket};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    addr: String,
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 200)]
    clients: usize,
    #[arg(long, default_value_t = 1300)]
    messages: usize,
    #[arg(long, default_value_t = 16000)]
    size: usize,
    /// Seconds to wait after the last client closed before the final RSS reading.
    #[arg(long, default_value_t = 3)]
    settle_secs: u64,
}

type Ws = WebSocket<TcpStream>;

fn connect(addr: &str, query: &str) -> Ws {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    tungstenite::client::client(format!("ws://{addr}/ws?format=json&{query}"), stream).expect("handshake").0
}

fn text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return t.to_string(),
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn main() {
    let args = Args::parse();
    let addr = args.addr.clone();
    // Fill.
    let mut filler = connect(&addr, "room=crowd&nick=filler");
    let body = "x".repeat(args.size.saturating_sub(8));
    for chunk in (0..args.messages).collect::<Vec<_>>().chunks(32) {
        for i in chunk {
            let msg = serde_json::json!({"type": "message", "room": "crowd", "content": format!("{i:08}{body}")});
            filler.send(Message::text(msg.to_string())).expect("send");
        }
        let mut echoes = 0;
        while echoes < chunk.len() {
            if text(&mut filler).starts_with("{\"type\":\"message\"") {
                echoes += 1;
            }
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = rss_kib(args.pid);

    // Witness in another room.
    let stop = Arc::new(AtomicBool::new(false));
    let witness = {
        let (addr, stop) = (addr.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut talker = connect(&addr, "room=elsewhere&nick=talker");
            let mut witness = connect(&addr, "room=elsewhere&nick=witness");
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            while !stop.load(Ordering::Acquire) {
                let sent = now_us();
                let msg = serde_json::json!({"type": "message", "room": "elsewhere", "content": sent.to_string()});
                talker.send(Message::text(msg.to_string())).expect("send");
                loop {
                    let t = text(&mut witness);
                    if t.contains(&format!("\"content\":\"{sent}\"")) {
                        hist.record(now_us().saturating_sub(sent).max(1)).expect("record");
                        break;
                    }
                }
                // The talker reads its echoes too.
                loop {
                    if text(&mut talker).contains(&format!("\"content\":\"{sent}\"")) {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            hist
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    // RSS sampler.
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (Arc::clone(&peak), Arc::clone(&sampling), args.pid);
        std::thread::spawn(move || {
            while sampling.load(Ordering::Acquire) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // The crowd.
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            let (addr, expected) = (addr.clone(), args.messages);
            std::thread::spawn(move || {
                let mut ws = connect(&addr, &format!("room=crowd&nick=r{c}&since=0"));
                let mut got = 0;
                let mut last_id = 0u64;
                while got < expected {
                    let t = text(&mut ws);
                    if let Some(rest) = t.strip_prefix("{\"type\":\"message\"") {
                        got += 1;
                        if let Some(id) = rest.split("\"id\":").nth(1).and_then(|s| {
                            s.split(|ch: char| !ch.is_ascii_digit()).next().and_then(|d| d.parse::<u64>().ok())
                        }) {
                            assert!(id > last_id, "client {c}: id {id} after {last_id}");
                            last_id = id;
                        }
                    }
                }
                ws
            })
        })
        .collect();
    let mut finished: Vec<Ws> = clients.into_iter().map(|h| h.join().expect("a crowd client")).collect();
    let crowd_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Release);
    let hist = witness.join().expect("witness");
    for ws in &mut finished {
        let _ = ws.close(None);
        let _ = ws.flush();
    }
    drop(finished);
    drop(filler);
    sampling.store(false, Ordering::Release);
    sampler.join().expect("sampler");
    std::thread::sleep(Duration::from_secs(args.settle_secs));
    let rss_after = rss_kib(args.pid);
    let ms = |v: u64| v as f64 / 1000.0;
    println!(
        "{}",
        serde_json::json!({
            "clients": args.clients,
            "missed_mb": (args.messages * args.size) as f64 / 1e6,
            "crowd_secs": (crowd_secs * 100.0).round() / 100.0,
            "rss_before_mb": rss_before / 1024,
            "rss_peak_mb": peak.load(Ordering::Relaxed) / 1024,
            "rss_after_mb": rss_after / 1024,
            "witness_n": hist.len(),
            "witness_p50_ms": ms(hist.value_at_quantile(0.5)),
            "witness_p99_ms": ms(hist.value_at_quantile(0.99)),
            "witness_max_ms": ms(hist.max()),
        })
    );
}
