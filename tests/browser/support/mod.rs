//! Harness for the browser tests: the real `roomcast` binary, a `chromedriver` process, headless
//! Chromium sessions driven with `fantoccini`, and a blocking Rust WebSocket client.
//!
//! Every child process is killed and waited for in `Drop`. Chromium is started by chromedriver, so
//! it is not our child: each session gets its own temporary `--user-data-dir`, and when the driver
//! is dropped any process whose command line names one of those directories is killed by pid.
//!
//! Waits poll the DOM (or the socket) until a condition holds, with a generous deadline; nothing
//! asserts on timing. A timed-out wait saves a screenshot next to the others before panicking.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// Deadline for anything a test waits for (the machine is shared and may be slow).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Where Debian's `chromium-driver` package puts chromedriver (`ROOMCAST_CHROMEDRIVER` overrides).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where Debian's `chromium` package puts the browser (`ROOMCAST_CHROMIUM` overrides).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// `default`, or the path in the environment variable `var`.
fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// WebDriver "Enter" key.
pub const ENTER: &str = "\u{E007}";

/// One browser test at a time: each starts one or two Chromiums, and the machine has few cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one browser test: waits for its turn (one at a time; a failed test does not poison the
/// lock), then drives `test` to completion on a single-threaded Tokio runtime.
pub fn run(test: impl Future<Output = ()>) {
    let _turn: MutexGuard<'static, ()> = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(test);
}

/// `target/browser-screenshots/`, created on demand.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("local addr").port()
}

// ---- roomcast ---------------------------------------------------------------------------------

/// A running `roomcast` process. Its database lives in a temporary directory that outlives
/// restarts (see [`Server::restart`]).
pub struct Server {
    child: Option<Child>,
    /// Address the server listens on.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// Speaks TLS (`https://`, a self-signed certificate the browsers ignore, see [`Driver::browser`]).
    tls: bool,
}

impl Server {
    /// Starts a server speaking only TLS with a self-signed certificate for 127.0.0.1 made now.
    pub fn start_tls() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        let args: Vec<String> = vec![
            "--rate-limit".into(),
            "0".into(),
            "--tls-cert".into(),
            cert_path.display().to_string(),
            "--tls-key".into(),
            key_path.display().to_string(),
        ];
        let (child, addr) = spawn_server(dir.path(), "127.0.0.1:0", &args).unwrap_or_else(|e| panic!("{e}"));
        Server { child: Some(child), addr, dir, args, tls: true }
    }

    /// Starts a server on a free port with a fresh database, with the rate limits off: the helper
    /// client seeds history faster than the default per-connection rate limit.
    pub fn start() -> Server {
        Self::start_with(&["--rate-limit", "0"])
    }

    /// Starts a server on a free port with a fresh database and exactly `args` besides the address,
    /// log level, shard count and database (so the default rate limits apply unless `args` change
    /// them). Restarts keep the same arguments.
    pub fn start_with(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, addr) = spawn_server(dir.path(), "127.0.0.1:0", &args).unwrap_or_else(|e| panic!("{e}"));
        Server { child: Some(child), addr, dir, args, tls: false }
    }

    /// `GET path` on a fresh connection: the response body (panics unless the status is 200).
    pub fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(self.addr).expect("connect to roomcast");
        stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr).expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read the response");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
        body.to_string()
    }

    /// The value of an unlabelled counter or gauge in `/metrics` (`name` as exposed, e.g.
    /// `roomcast_connections_accepted_total`), or of the sum of its labelled series.
    pub fn metric(&self, name: &str) -> f64 {
        self.get("/metrics")
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    /// Base URL, e.g. `http://127.0.0.1:4321` (`https://` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// Stops the server (SIGTERM, then SIGKILL if it lingers) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child);
        }
    }

    /// Starts a replacement on the same address and database. The old socket may take a moment to
    /// be released, so binding is retried until the deadline.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + PATIENCE;
        loop {
            match spawn_server(self.dir.path(), &self.addr.to_string(), &self.args) {
                Ok((child, addr)) => {
                    assert_eq!(addr, self.addr, "the replacement must listen on the same address");
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart on {} failed, retrying: {e}", self.addr);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("could not restart roomcast on {}: {e}", self.addr),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `roomcast` on `addr` with its database in `dir` and `args`; returns once it prints its
/// address.
fn spawn_server(dir: &Path, addr: &str, args: &[String]) -> Result<(Child, SocketAddr), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--addr", addr, "--log-level", "warn", "--shards", "2"])
        .args(args)
        .arg("--db")
        .arg(dir.join("roomcast.db"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn roomcast: {e}"))?;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) =
                line.strip_prefix("listening on http://").or_else(|| line.strip_prefix("listening on https://"))
            {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    // The reader thread drops `tx` when stdout closes, so an early exit ends the wait too.
    match rx.recv_timeout(PATIENCE) {
        Ok(addr) => Ok((child, addr.parse().expect("address"))),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            Err(format!("roomcast did not start on {addr}: {status:?}"))
        }
    }
}

/// SIGTERM, wait up to the deadline, then SIGKILL; always reaps.
fn stop_child(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---- chromedriver + Chromium ----------------------------------------------------------------

/// A `chromedriver` process on a free port. Sessions opened through it are [`Browser`]s.
pub struct Driver {
    child: Option<Child>,
    port: u16,
    profiles: tempfile::TempDir,
    sessions: usize,
}

impl Driver {
    /// Starts chromedriver. Fails (never skips) when Chromium is not installed.
    pub fn start() -> Driver {
        let chromedriver = tool("ROOMCAST_CHROMEDRIVER", CHROMEDRIVER);
        for (path, what) in
            [(chromedriver.as_str(), "chromedriver"), (&tool("ROOMCAST_CHROMIUM", CHROMIUM), "chromium")]
        {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: the browser tests need {what}. Install it with \
                 `apt-get install -y chromium chromium-driver` (`scripts/test` installs both)."
            );
        }
        let port = free_port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {chromedriver}: {e}"));
        let driver = Driver {
            child: Some(child),
            port,
            profiles: tempfile::Builder::new().prefix("roomcast-chrome-").tempdir().expect("temp dir"),
            sessions: 0,
        };
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// Opens a new headless Chromium session with its own profile, sized `width`×`height`.
    /// Headless windows are at least 500 px wide, so narrower sizes use Chrome's mobile emulation
    /// (a phone-sized viewport with touch, as on a real phone).
    pub async fn browser(&mut self, name: &str, width: u32, height: u32) -> Browser {
        self.sessions += 1;
        let profile = self.profiles.path().join(format!("{}-{name}", self.sessions));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            // The TLS test's server has a self-signed certificate made at test time.
            "--ignore-certificate-errors".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut options = json!({ "binary": tool("ROOMCAST_CHROMIUM", CHROMIUM), "args": args });
        if width < 500 {
            options["mobileEmulation"] =
                json!({ "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "touch": true } });
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("cannot start a Chromium session through chromedriver: {e}"));
        Browser { client, name: name.to_string() }
    }

    /// Kills processes whose command line names one of this driver's profile directories: the
    /// Chromiums of sessions that were not closed (a test failed half-way).
    fn kill_stray_browsers(&self) {
        let marker = self.profiles.path().to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir("/proc") else { return };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            if String::from_utf8_lossy(&cmdline).contains(&marker) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_stray_browsers();
    }
}

/// `POST /session/{id}/se/log` (chromedriver): the browser console since the last call.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "type": "browser" }).to_string()))
    }
}

/// One Chromium session (one page).
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    name: String,
}

/// A message as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Server id (`None` while pending).
    pub id: Option<u64>,
    /// Sender.
    pub user: String,
    /// Text.
    pub content: String,
    /// Styled as our own message.
    pub mine: bool,
    /// Still waiting for the echo.
    pub pending: bool,
}

impl Browser {
    /// Runs `body` (a function body: use `return`) in the page with `args`.
    pub async fn js(&self, body: &str, args: Vec<Value>) -> Value {
        self.client.execute(body, args).await.unwrap_or_else(|e| panic!("[{}] script failed: {e}\n{body}", self.name))
    }

    /// Polls `body` until it returns something other than `null`/`false`, and returns that.
    pub async fn wait_js(&self, what: &str, body: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.js(body, args.clone()).await;
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            if Instant::now() > deadline {
                let shot =
                    self.screenshot(&format!("timeout-{}", what.replace(|c: char| !c.is_alphanumeric(), "-"))).await;
                let text = self.js("return document.body.innerText", vec![]).await;
                panic!(
                    "[{}] timed out waiting for {what}; screenshot {}; page text:\n{text}",
                    self.name,
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Loads the client, picks `nick`, enters `room`, and waits until it is online in the room.
    pub async fn login(&self, server: &Server, nick: &str, room: &str) {
        self.client.goto(&server.url()).await.expect("open the page");
        let nick_input = self.client.wait().for_element(Locator::Id("nick")).await.expect("nickname field");
        nick_input.send_keys(nick).await.expect("type nickname");
        let room_input = self.client.find(Locator::Id("first-room")).await.expect("room field");
        room_input.clear().await.expect("clear room");
        room_input.send_keys(room).await.expect("type room");
        self.client
            .find(Locator::Css("#login button[type=submit]"))
            .await
            .expect("button")
            .click()
            .await
            .expect("click");
        self.wait_online().await;
    }

    /// Waits until the status says online and the message box is usable.
    pub async fn wait_online(&self) {
        self.wait_js(
            "status online",
            "return document.getElementById('status').dataset.state === 'online' \
             && !document.getElementById('text').disabled",
            vec![],
        )
        .await;
    }

    /// Waits until the page shows that it lost its connection (after the server stopped).
    pub async fn wait_offline(&self) {
        self.wait_js(
            "the page noticing the server is gone",
            "return document.getElementById('status').dataset.state !== 'online'",
            vec![],
        )
        .await;
    }

    /// Types `text` into the message box and presses Enter.
    pub async fn say(&self, text: &str) {
        let input = self.client.find(Locator::Id("text")).await.expect("message box");
        input.send_keys(&format!("{text}{ENTER}")).await.expect("type a message");
    }

    /// Messages shown in `room`'s log, top to bottom.
    pub async fn messages(&self, room: &str) -> Vec<Shown> {
        let value = self
            .js(
                "const log = [...document.querySelectorAll('ol.log')].find(l => l.dataset.room === arguments[0]);\
                 if (!log) return [];\
                 return [...log.querySelectorAll('li.msg')].map(li => ({\
                   id: li.dataset.id === undefined ? null : Number(li.dataset.id),\
                   user: li.querySelector('.user').textContent,\
                   content: li.querySelector('.content').textContent,\
                   mine: li.classList.contains('mine'),\
                   pending: li.classList.contains('pending'),\
                 }));",
                vec![json!(room)],
            )
            .await;
        value
            .as_array()
            .expect("array")
            .iter()
            .map(|m| Shown {
                id: m["id"].as_u64(),
                user: m["user"].as_str().unwrap_or_default().to_string(),
                content: m["content"].as_str().unwrap_or_default().to_string(),
                mine: m["mine"].as_bool().unwrap_or_default(),
                pending: m["pending"].as_bool().unwrap_or_default(),
            })
            .collect()
    }

    /// Waits until a confirmed message with exactly `content` is shown in `room`.
    pub async fn wait_message(&self, room: &str, content: &str) {
        self.wait_js(
            &format!("message {content:?} in {room}"),
            "const log = [...document.querySelectorAll('ol.log')].find(l => l.dataset.room === arguments[0]);\
             return !!log && [...log.querySelectorAll('li.msg[data-id]:not(.pending)')]\
               .some(li => li.querySelector('.content').textContent === arguments[1]);",
            vec![json!(room), json!(content)],
        )
        .await;
    }

    /// Saves a PNG of the viewport as `target/browser-screenshots/{name}.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let path = screenshot_dir().join(format!("{name}.png"));
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&path, png).expect("write the screenshot"),
            Err(e) => eprintln!("[{}] screenshot {name} failed: {e}", self.name),
        }
        path
    }

    /// Console entries of level SEVERE since the last call, minus `allowed` substrings (e.g. the
    /// "WebSocket connection … failed" lines the browser itself logs while the server is down).
    pub async fn console_errors(&self, allowed: &[&str]) -> Vec<String> {
        let log = self.client.issue_cmd(BrowserLog).await.unwrap_or_else(|e| panic!("read the console: {e}"));
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_string())
            .filter(|message| !allowed.iter().any(|a| message.contains(a)))
            .collect()
    }

    /// Asserts the console has no errors (except `allowed`), then ends the session.
    pub async fn finish(self, allowed: &[&str]) {
        let errors = self.console_errors(allowed).await;
        let name = self.name.clone();
        self.client.close().await.expect("close the session");
        assert!(errors.is_empty(), "[{name}] console errors: {errors:#?}");
    }
}

// ---- A Rust WebSocket client ----------------------------------------------------------------

/// A blocking JSON-protocol client (tungstenite) with a read timeout.
pub struct Peer {
    ws: WebSocket<TcpStream>,
    seq: u64,
}

impl Peer {
    /// Connects to `room` as `nick` and reads `welcome` and `joined`.
    pub fn join(server: &Server, room: &str, nick: &str) -> Peer {
        let stream = TcpStream::connect(server.addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        let url = format!("ws://{}/ws?format=json&room={}&nick={}", server.addr, encode(room), encode(nick));
        let (ws, _) = tungstenite::client::client(url, stream).expect("websocket handshake");
        let mut peer = Peer { ws, seq: 0 };
        assert_eq!(peer.next_event("welcome")["type"], "welcome");
        peer.next_event("joined");
        peer
    }

    /// Next event of `kind`; other kinds are skipped, `error` panics.
    pub fn next_event(&mut self, kind: &str) -> Value {
        loop {
            let text = match self.ws.read().expect("read from roomcast") {
                Message::Text(text) => text.to_string(),
                Message::Close(frame) => panic!("roomcast closed the connection: {frame:?}"),
                _ => continue,
            };
            let event: Value = serde_json::from_str(&text).expect("JSON event");
            if event["type"] == kind {
                return event;
            }
            assert_ne!(event["type"], "error", "roomcast answered with an error: {event}");
        }
    }

    /// Joins one more room (a `join` command) and waits for `joined`.
    pub fn enter(&mut self, room: &str) {
        let command = json!({ "type": "join", "room": room });
        self.ws.send(Message::text(command.to_string())).expect("send");
        loop {
            if self.next_event("joined")["room"] == room {
                return;
            }
        }
    }

    /// Sends `content` to `room` without waiting; returns the client_id used.
    pub fn send(&mut self, room: &str, content: &str) -> String {
        self.seq += 1;
        let client_id = format!("peer-{}", self.seq);
        let command = json!({ "type": "message", "room": room, "content": content, "client_id": client_id });
        self.ws.send(Message::text(command.to_string())).expect("send");
        client_id
    }

    /// Sends `content` and waits for its echo; returns the message id.
    pub fn say(&mut self, room: &str, content: &str) -> u64 {
        let client_id = self.send(room, content);
        loop {
            let event = self.next_event("message");
            if event["client_id"] == client_id.as_str() {
                return event["id"].as_u64().expect("message id");
            }
        }
    }

    /// Closes the connection politely.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

/// Percent-encodes a query value (letters, digits and `-._~` pass).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
