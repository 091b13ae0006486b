//! TLS on the main listener (`--tls-cert`/`--tls-key`) with real verifying TLS clients (rustls over
//! blocking sockets) and certificates made at test time: wss chat, https pages, certificates the
//! client must refuse, SIGHUP reloads under live traffic, bad input closed and counted, the
//! handshake bound, start errors naming the file. `/metrics` is read on the plain `--metrics-addr`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use tungstenite::Message;

use crate::support::proc::fd_count;
use crate::support::tls::{
    Leaf, TestCa, TlsClient, connect, connect_wss, https_get, served_leaf, try_connect, write_atomically,
};
use crate::support::*;

/// A server speaking TLS with `leaf` (files in its own directory) and a plain metrics listener.
fn tls_server(leaf: &Leaf, extra: &[&str]) -> (Server, tempfile::TempDir) {
    let pem_dir = tempfile::tempdir().expect("pem dir");
    let (cert, key) = leaf.write(pem_dir.path());
    let (cert, key) = (cert.to_string_lossy().to_string(), key.to_string_lossy().to_string());
    let mut args = vec!["--tls-cert", &cert, "--tls-key", &key, "--metrics-addr", "127.0.0.1:0", "--no-persist"];
    args.extend_from_slice(extra);
    let db = pem_dir.path().join("unused.db");
    (Server::start_logged(&db, &args), pem_dir)
}

/// `/metrics` from the plain metrics listener.
fn scrape(server: &Server) -> String {
    let addr = server.metrics_addr.expect("metrics listener");
    let mut raw = Raw::connect_to(addr);
    raw.send(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n");
    let (status, _, body) = raw.read_response();
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8")
}

/// The value of one sample line (`name{labels}`) in a scrape, 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn failures(server: &Server, reason: &str) -> f64 {
    sample(&scrape(server), &format!("roomcast_tls_handshake_failures_total{{reason=\"{reason}\"}}"))
}

fn wait_for_failure(server: &Server, reason: &str, at_least: f64) {
    wait_until(&format!("handshake failure {reason} counted"), || failures(server, reason) >= at_least);
}

fn recv_text_tls(ws: &mut TlsClient) -> String {
    loop {
        match ws.read().expect("read a message") {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Sends `line` from `from` and checks every client in `all` receives exactly it.
fn chat(from: &mut TlsClient, others: &mut [&mut TlsClient], line: &str) {
    from.send(Message::text(line)).expect("send");
    assert_eq!(recv_text_tls(from), line);
    for ws in others.iter_mut() {
        assert_eq!(recv_text_tls(ws), line);
    }
}

/// A stream that reads EOF (or a reset) within the patience: the server closed it.
fn server_closes(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// The first bytes of a real ClientHello (as a client would start sending it).
fn client_hello(ca: &TestCa) -> Vec<u8> {
    let mut conn =
        ClientConnection::new(ca.client_config(), ServerName::try_from("localhost").expect("name")).expect("client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("client hello");
    hello
}

#[test]
fn wss_chat_and_https_pages_over_tls() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (server, _pems) = tls_server(&leaf, &[]);
    let config = ca.client_config();

    let mut alice = connect_wss(&server, &config, "/ws/chat");
    let mut bob = connect_wss(&server, &config, "/ws/chat");
    chat(&mut alice, &mut [&mut bob], "Alice: Hello");

    let (status, head, body) = https_get(&server, &config, "/");
    assert_eq!(status, 200, "{head}");
    assert!(String::from_utf8_lossy(&body).contains("<html"), "the web client over https");
    let (status, _, body) = https_get(&server, &config, "/healthz");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_slice(&body).expect("healthz json");
    assert!(health["connections"].as_u64().is_some(), "{health}");

    // ALPN http/1.1 was agreed, and the handshakes are counted.
    let stream = connect(&server, &config);
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(served_leaf(&stream), leaf.der);
    drop(stream);
    // The server counts a TLS 1.3 handshake when the client's Finished arrives, which may be after
    // the client has moved on: wait for the count rather than read it once.
    wait_until("five TLS handshakes counted", || sample(&scrape(&server), "roomcast_tls_handshakes_total") >= 5.0);
}

#[test]
fn ed25519_keys_work_too() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ED25519);
    let (server, _pems) = tls_server(&leaf, &[]);
    let config = ca.client_config();
    let mut carol = connect_wss(&server, &config, "/ws/chat?room=ed");
    chat(&mut carol, &mut [], "Carol: signed with Ed25519");
}

#[test]
fn rsa_keys_work_too() {
    // ring cannot generate RSA keys: openssl makes one (scripts/test installs openssl).
    let dir = tempfile::tempdir().expect("dir");
    let key_path = dir.path().join("rsa.pem");
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key_path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (scripts/test installs it)");
    assert!(status.success());
    let key_pem = std::fs::read_to_string(&key_path).expect("rsa key");
    let ca = TestCa::new();
    let leaf = ca.leaf_for_key(&["localhost"], &key_pem, &rcgen::PKCS_RSA_SHA256);
    let (server, _pems) = tls_server(&leaf, &[]);
    let config = ca.client_config();
    let mut frank = connect_wss(&server, &config, "/ws/chat?room=rsa");
    chat(&mut frank, &mut [], "Frank: signed with RSA-2048");
}

#[test]
fn a_verifying_client_refuses_an_expired_certificate_and_a_wrong_host_name() {
    let ca = TestCa::new();
    let expired = ca.expired_leaf(&["localhost"]);
    let (server, _pems) = tls_server(&expired, &[]);
    let err = try_connect(server.addr, "localhost", ca.client_config()).map(drop).expect_err("expired refused");
    assert!(err.to_lowercase().contains("expired"), "{err}");

    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (server, _pems) = tls_server(&leaf, &[]);
    let err =
        try_connect(server.addr, "chat.example.org", ca.client_config()).map(drop).expect_err("wrong name refused");
    assert!(err.contains("NotValidForName") || err.to_lowercase().contains("not valid for"), "{err}");
    // The same server is fine for the right name.
    connect(&server, &ca.client_config());
}

#[test]
fn sighup_reloads_the_pair_for_new_connections_and_keeps_open_ones() {
    let ca = TestCa::new();
    let first = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (server, pems) = tls_server(&first, &[]);
    let config = ca.client_config();
    let mut before = connect_wss(&server, &config, "/ws/chat?room=reload");
    let mut witness = connect_wss(&server, &config, "/ws/chat?room=reload");
    chat(&mut before, &mut [&mut witness], "Dave: before the reload");

    let second = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    second.write(pems.path());
    server.signal("HUP");
    wait_until("new connections to get the new certificate", || served_leaf(&connect(&server, &config)) == second.der);
    // The connection made before the reload keeps chatting, and a new one joins it.
    chat(&mut before, &mut [&mut witness], "Dave: after the reload");
    let mut after = connect_wss(&server, &config, "/ws/chat?room=reload");
    chat(&mut after, &mut [&mut before, &mut witness], "Erin: new certificate");

    // A key that does not match the certificate is refused, naming the key file; the pair in use stays.
    let stranger = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let key_path = pems.path().join("key.pem");
    write_atomically(&key_path, stranger.key_pem.as_bytes());
    server.signal("HUP");
    wait_until("the refused reload to be logged", || server.log_text().contains("TLS reload refused"));
    let log = server.log_text();
    let line = log.lines().find(|l| l.contains("TLS reload refused")).expect("log line");
    assert!(line.contains(&key_path.display().to_string()), "names the file: {line}");
    assert!(line.contains("does not match the certificate"), "says why: {line}");
    assert_eq!(served_leaf(&connect(&server, &config)), second.der, "the old pair stays in use");
    chat(&mut after, &mut [&mut before, &mut witness], "Erin: still here");

    // A garbled certificate file is refused the same way.
    let cert_path = pems.path().join("cert.pem");
    write_atomically(&cert_path, b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
    server.signal("HUP");
    wait_until("the second refusal to be logged", || server.log_text().matches("TLS reload refused").count() >= 2);
    assert_eq!(served_leaf(&connect(&server, &config)), second.der);
}

#[test]
fn bad_input_is_closed_and_counted_and_disturbs_nobody() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (server, _pems) = tls_server(&leaf, &["--handshake-timeout", "2"]);
    let config = ca.client_config();
    let mut witness = connect_wss(&server, &config, "/ws/chat?room=w");
    let mut peer = connect_wss(&server, &config, "/ws/chat?room=w");
    chat(&mut witness, &mut [&mut peer], "Witness: before");
    let pid = server.pid();
    let baseline_fds = fd_count(pid);

    // Plain HTTP, and a plain WebSocket upgrade, to the TLS port.
    for request in [
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        "GET /ws/chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_string(),
    ] {
        let mut raw = TcpStream::connect(server.addr).expect("connect");
        raw.write_all(request.as_bytes()).expect("send");
        assert!(server_closes(&mut raw), "plain request closed");
    }
    wait_for_failure(&server, "plaintext", 2.0);

    // A ClientHello that never completes: closed at the handshake timeout.
    let hello = client_hello(&ca);
    let mut stalled = TcpStream::connect(server.addr).expect("connect");
    stalled.write_all(&hello[..hello.len() / 2]).expect("half a hello");
    assert!(server_closes(&mut stalled), "stalled handshake closed");
    wait_for_failure(&server, "timeout", 1.0);

    // A truncated record: half a ClientHello, then the client's end of input.
    let mut truncated = TcpStream::connect(server.addr).expect("connect");
    truncated.write_all(&hello[..hello.len() / 2]).expect("half a hello");
    truncated.shutdown(Shutdown::Write).expect("shutdown");
    assert!(server_closes(&mut truncated), "truncated handshake closed");
    wait_for_failure(&server, "truncated", 1.0);

    // Garbage after a completed handshake: an application-data record that does not decrypt.
    let mut stream = connect(&server, &config);
    let mut garbage = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    garbage.extend((0..0x40u8).map(|i| i.wrapping_mul(37)));
    stream.sock.write_all(&garbage).expect("garbage");
    assert!(server_closes(&mut stream.sock), "garbage closed");
    let series = "roomcast_tls_session_errors_total{reason=\"bad_record\"}";
    wait_until("the bad record to be counted", || sample(&scrape(&server), series) >= 1.0);

    // A client certificate nobody asked for (TLS 1.2, where it travels in the clear).
    unrequested_client_certificate(&server, &ca);
    wait_for_failure(&server, "client_cert", 1.0);

    // Nobody else noticed, and every descriptor was given back.
    chat(&mut witness, &mut [&mut peer], "Witness: after");
    wait_until("descriptors back to the baseline", || fd_count(pid) <= baseline_fds);
    let text = scrape(&server);
    assert_eq!(sample(&text, "roomcast_tls_handshake_failures_total{reason=\"overloaded\"}"), 0.0, "{text}");
}

/// Runs a TLS 1.2 handshake up to the server's ServerHelloDone, then sends a Certificate message
/// instead of the ClientKeyExchange: the server never sent a CertificateRequest. The server must close.
fn unrequested_client_certificate(server: &Server, ca: &TestCa) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).expect("root");
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("tls 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut conn =
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").expect("name")).expect("client");
    let mut sock = TcpStream::connect(server.addr).expect("connect");
    sock.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("hello");
    sock.write_all(&hello).expect("send hello");
    // Read the server's flight until the client has its answer ready (the flight ended with ServerHelloDone).
    while !conn.wants_write() {
        conn.read_tls(&mut sock).expect("server flight");
        conn.process_new_packets().expect("a valid server flight");
    }
    let cert = ca.cert.as_ref();
    let len3 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    let mut body = Vec::new();
    body.extend(len3(cert.len() + 3));
    body.extend(len3(cert.len()));
    body.extend_from_slice(cert);
    let mut handshake = vec![11u8];
    handshake.extend(len3(body.len()));
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x03];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    sock.write_all(&record).expect("send certificate");
    assert!(server_closes(&mut sock), "unrequested certificate closed");
}

#[test]
fn handshakes_over_the_per_shard_bound_wait_for_a_slot_and_beyond_sixteen_per_slot_waiting_are_refused() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (server, _pems) = tls_server(&leaf, &["--tls-max-handshakes", "1", "--handshake-timeout", "60"]);
    let hello = client_hello(&ca);
    // One stalled handshake per shard (two shards, handed out round-robin) fills both bounds ...
    let mut stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr).expect("connect");
            s.write_all(&hello[..10]).expect("part of a hello");
            s
        })
        .collect();
    // Connections are accepted in the order they connected, so the real clients below come after
    // the stalled ones. The waits watch the waiting queue, which only main-listener connections enter
    // (the scrapes are accepted too, on the metrics listener with its own round-robin turn).
    let waiting_now = || sample(&scrape(&server), "roomcast_tls_handshakes_waiting");
    // ... so a real client per shard waits for a slot (its handshake completes later) ...
    let config = ca.client_config();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let (addr, config) = (server.addr, Arc::clone(&config));
            std::thread::spawn(move || try_connect(addr, "localhost", config).map(|_| ()))
        })
        .collect();
    wait_until("the real clients wait for a slot", || waiting_now() == 2.0);
    // ... and once 16 per slot wait (15 silent ones per shard more) ...
    let fillers: Vec<TcpStream> = (0..30).map(|_| TcpStream::connect(server.addr).expect("connect")).collect();
    wait_until("the fillers wait too", || waiting_now() == 32.0);
    // ... the next connection is closed unread and counted.
    let mut refused = TcpStream::connect(server.addr).expect("connect");
    assert!(server_closes(&mut refused), "over the bound with as many waiting: closed");
    wait_for_failure(&server, "overloaded", 1.0);
    // Once the stalled ones are gone, the waiting ones get their slots and complete.
    for s in &mut stalled {
        s.shutdown(Shutdown::Both).expect("shutdown");
    }
    drop(stalled);
    drop(fillers);
    for client in waiting {
        assert_eq!(client.join().expect("client thread"), Ok(()), "a waiting handshake completes");
    }
    assert_eq!(failures(&server, "overloaded"), 1.0, "only the one beyond the waiting bound");
}

/// A client config trusting `ca` that speaks only TLS 1.2.
fn tls12_client(ca: &TestCa) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).expect("root");
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("tls 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[test]
fn a_reconnecting_client_resumes_its_session_with_tls13_and_tls12() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (server, _pems) = tls_server(&leaf, &[]);
    for config in [ca.client_config(), tls12_client(&ca)] {
        // The first connection is a full handshake; reading its response also reads the TLS 1.3
        // tickets the server sent after the handshake.
        let (status, _, _) = https_get(&server, &config, "/healthz");
        assert_eq!(status, 200);
        let mut again = connect(&server, &config);
        assert_eq!(again.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
        again.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("send");
        let mut bytes = Vec::new();
        again.read_to_end(&mut bytes).expect("a clean end with close_notify");
        assert!(bytes.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn messages_larger_than_a_record_cross_in_both_directions() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (server, _pems) = tls_server(&leaf, &["--max-message", "60000"]);
    let config = ca.client_config();
    let mut alice = connect_wss(&server, &config, "/ws/chat?room=big");
    let mut bob = connect_wss(&server, &config, "/ws/chat?room=big");
    // Three records' worth each way (records carry at most 16 KiB), then small ones behind them.
    let big: String = (0..50_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    for line in [big.as_str(), "small after big", big.as_str()] {
        chat(&mut alice, &mut [&mut bob], line);
    }
}

#[test]
fn close_notify_ends_a_connection_closed_by_the_server() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let (server, _pems) = tls_server(&leaf, &[]);
    // A `Connection: close` response ends with close_notify: read_to_end returns Ok (a missing
    // close_notify is an UnexpectedEof error in rustls).
    let mut stream = connect(&server, &ca.client_config());
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("send");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("a clean end with close_notify");
    assert!(bytes.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&bytes));
}

/// The binary with `args`, run to its exit: (status code, stderr).
fn start_error(args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("ROOMCAST_")) {
        cmd.env_remove(key);
    }
    cmd.args(["--addr", "127.0.0.1:0", "--no-persist"]).args(args);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let deadline = std::time::Instant::now() + PATIENCE;
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("roomcast started instead of failing: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).trim().to_string())
}

#[test]
fn start_errors_name_the_file_and_the_reason() {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256).write(dir.path());
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let missing = dir.path().join("missing.pem").display().to_string();
    let garbled = dir.path().join("garbled.pem");
    std::fs::write(&garbled, "this is not a key\n").expect("write");
    let garbled = garbled.display().to_string();

    let (code, err) = start_error(&["--tls-cert", &missing, "--tls-key", &key]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with(&format!("roomcast: cannot load the TLS certificate ({missing}): ")), "{err}");
    assert!(err.contains("No such file"), "{err}");

    let (code, err) = start_error(&["--tls-cert", &cert, "--tls-key", &garbled]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with(&format!("roomcast: cannot load the TLS key ({garbled}): ")), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let (code, err) = start_error(&["--tls-cert", &garbled, "--tls-key", &key]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with(&format!("roomcast: cannot load the TLS certificate ({garbled}): ")), "{err}");

    let (code, err) = start_error(&["--tls-cert", &cert]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
    let (code, err) = start_error(&["--tls-key", &key]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--tls-key needs --tls-cert"), "{err}");
}

#[test]
fn tls_files_come_from_the_environment_and_the_config_file_too() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = leaf.write(dir.path());
    let file = dir.path().join("roomcast.toml");
    std::fs::write(&file, format!("tls-key = {:?}\ntls-max-handshakes = 7\n", key.display().to_string()))
        .expect("config file");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .env("ROOMCAST_TLS_CERT", &cert)
        .arg("--config")
        .arg(&file)
        .arg("--print-config")
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: toml::Table = String::from_utf8_lossy(&output.stdout).parse().expect("toml");
    assert_eq!(printed["tls-cert"].as_str(), Some(cert.display().to_string().as_str()));
    assert_eq!(printed["tls-key"].as_str(), Some(key.display().to_string().as_str()));
    assert_eq!(printed["tls-max-handshakes"].as_integer(), Some(7));
}
