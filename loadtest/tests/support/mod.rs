//! Test support: free loopback ports, a child-process guard that kills and reaps the server on
//! drop, locating the `roomcast-baseline` / `roomcast` binaries, and running `roomcast-load`.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A running server process, killed and reaped when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    /// Starts `bin` with `args` (which should make it listen on `port`) and waits until it accepts.
    pub fn start(bin: PathBuf, args: &[String], port: u16) -> Server {
        let child = Command::new(&bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut server = Server { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{} exited early: {status}", bin.display());
            }
            assert!(Instant::now() < deadline, "{} did not start accepting on {port}", bin.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The bundled tokio-tungstenite baseline on a free port.
    pub fn baseline() -> Server {
        Server::baseline_with(&[])
    }

    /// The baseline on a free port with extra arguments (e.g. `--capacity 1`).
    pub fn baseline_with(extra: &[&str]) -> Server {
        let port = free_port();
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_roomcast-baseline"));
        let mut args = vec!["--addr".to_string(), format!("127.0.0.1:{port}")];
        args.extend(extra.iter().map(|a| a.to_string()));
        Server::start(bin, &args, port)
    }

    /// The baseline's `GET /stats` counters.
    pub fn stats(&self) -> Value {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect for /stats");
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
        s.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n").expect("send /stats request");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("read /stats reply");
        assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
        let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("/stats body is not JSON ({e}): {reply}"))
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/<profile>/roomcast` next to this test executable's directory, if it was built.
pub fn roomcast_server_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test-exe>
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir.join("roomcast");
    bin.is_file().then_some(bin)
}

/// A unique scratch file path for this test process.
pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("roomcast-load-test-{}-{n}-{name}", std::process::id()))
}

/// Runs `roomcast-load` with `args`; the child is bounded by the scenario's own durations.
pub fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomcast-load"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run roomcast-load")
}

/// Runs `roomcast-load` with `--json` and returns the exit code, the report, and stdout.
pub fn load_json(args: &[&str]) -> (i32, Value, String) {
    let path = temp_path("report.json");
    let mut all: Vec<&str> = args.to_vec();
    let p = path.to_string_lossy().to_string();
    all.extend(["--json", &p, "--quiet"]);
    let out = load(&all);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("no report at {p}: {e}\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    let _ = std::fs::remove_file(&path);
    let v: Value = serde_json::from_str(&text).expect("report is JSON");
    (out.status.code().unwrap_or(-1), v, stdout)
}

/// `v[a][b]...` as u64, panicking with the path if missing.
pub fn num(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or_else(|| panic!("missing numeric field {ptr} in {v:#}"))
}

/// Asserts the fields every report must carry.
/// A run that exited 0 with a complete report, every one of `conns` connections made, and something
/// sent; returns how many messages were sent.
pub fn assert_connected_and_sent(code: i32, v: &Value, stdout: &str, conns: u64) -> u64 {
    assert_eq!(code, 0, "roomcast-load failed: {stdout}\n{v:#}");
    assert_complete(v);
    assert_eq!(num(v, "/connections/connected"), conns, "{v:#}");
    assert_eq!(num(v, "/connections/failed"), 0, "{v:#}");
    let sent = num(v, "/messages/sent");
    assert!(sent > 0, "nothing was sent: {v:#}");
    sent
}

pub fn assert_complete(v: &Value) {
    for key in [
        "tool",
        "version",
        "scenario",
        "run_id",
        "config",
        "connections",
        "messages",
        "latency_us",
        "ping",
        "generator",
        "frames_by_type",
        "errors",
        "failures",
    ] {
        assert!(v.get(key).is_some(), "report lacks {key}: {v:#}");
    }
    for lat in ["corrected", "raw", "send_lag", "handshake", "ping_rtt"] {
        for f in ["count", "min", "mean", "p50", "p90", "p99", "p99_9", "p99_99", "max"] {
            assert!(v.pointer(&format!("/latency_us/{lat}/{f}")).is_some(), "missing latency_us.{lat}.{f}");
        }
    }
}
