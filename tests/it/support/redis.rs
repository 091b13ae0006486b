//! A real `redis-server` per test on a free loopback port, without persistence, killed and reaped in
//! `Drop`. A missing `redis-server` fails the test with the install command instead of skipping it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{PATIENCE, Server, http_get, wait_until};

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port (kept across [`RedisServer::restart`]).
    pub port: u16,
}

impl RedisServer {
    /// Starts Redis on a free port.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut redis = RedisServer { child: None, port };
        redis.spawn();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not on PATH: the cluster tests need it (`scripts/test` installs it, or apt-get install -y redis-server)"
            ),
            Err(err) => panic!("cannot start redis-server: {err}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while !self.ping() {
            assert!(Instant::now() < deadline, "redis-server did not answer PING on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// Kills Redis (SIGKILL) and waits for it; its data is gone (no persistence).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `SIG<sig>` (e.g. `STOP`, `CONT`) to Redis.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis is running").id();
        let status = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().expect("kill");
        assert!(status.success(), "kill -{sig} {pid}");
    }

    /// Starts Redis again on the same port (empty).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped Redis takes SIGKILL too, but continue it first so nothing lingers half-stopped.
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
        self.kill();
    }
}

/// A node on `redis` named `id`, with `extra` flags.
pub fn node_with(redis: &RedisServer, id: &str, extra: &[&str]) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis-url", url.as_str(), "--node-id", id];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    wait_linked(&server);
    server
}

/// The `cluster` object of a node's `/healthz`.
pub fn cluster_health(server: &Server) -> Value {
    let (status, _, body) = http_get(server, "/healthz");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_slice(&body).expect("json");
    health["cluster"].clone()
}

/// Waits until both Redis links of `server` are up and nothing waits for replay.
pub fn wait_linked(server: &Server) {
    wait_until("node linked to redis", || {
        let c = cluster_health(server);
        c["publisher_up"] == true && c["subscriber_up"] == true && c["outbox"] == 0
    });
}
