//! roomcast.js, the client library in `clients/js/`: served at `/roomcast.js` byte for byte, and
//! its Node test suite (`node clients/js/test/run.js`, what `npm test` runs) run against this build's
//! binary, so `cargo test` covers the library too.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn library_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js")
}

/// The same bytes as `clients/js/roomcast.js`, as JavaScript, also when `--static-dir` serves the
/// web client from elsewhere (the library is always the one built in); `HEAD` gets the head only.
#[test]
fn the_library_is_served_at_roomcast_js_byte_for_byte() {
    let library = std::fs::read(library_dir().join("roomcast.js")).expect("read clients/js/roomcast.js");
    let elsewhere = tempfile::tempdir().expect("dir");
    for args in [vec![], vec!["--static-dir", elsewhere.path().to_str().expect("utf8")]] {
        let server = Server::start(&args);
        let (status, head, body) = http_get(&server, "/roomcast.js");
        assert_eq!(status, 200, "{args:?}: {head}");
        assert!(head.contains("Content-Type: text/javascript; charset=utf-8"), "{head}");
        assert!(body == library, "{args:?}: /roomcast.js differs from clients/js/roomcast.js");
        let mut raw = Raw::connect(&server);
        raw.send(
            format!("HEAD /roomcast.js HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr).as_bytes(),
        );
        let (status, head, _) = raw.read_response_head();
        assert_eq!(status, 200);
        assert!(head.contains(&format!("Content-Length: {}", library.len())), "{head}");
        assert!(raw.read_until_eof().is_empty(), "HEAD has no body");
    }
}

/// Whole suite under a deadline: Node runs in a process group of its own, and a hung run is
/// killed group-wide (node and the roomcast processes it started).
#[test]
fn the_node_test_suite_of_roomcast_js_passes() {
    let node = std::env::var("ROOMCAST_NODE").unwrap_or_else(|_| "node".into());
    let log_path = std::env::temp_dir().join(format!("roomcast-js-tests-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("create the log");
    let mut child = Command::new(&node)
        .arg("test/run.js")
        .current_dir(library_dir())
        .env("ROOMCAST_BIN", env!("CARGO_BIN_EXE_roomcast"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{node}` ({e}): the roomcast.js tests need Node.js 20.10+ (scripts/test installs it)")
        });
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-KILL", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    eprintln!("{output}");
    let status = status.unwrap_or_else(|| panic!("the node tests did not finish within 600 s"));
    assert!(status.success(), "node test/run.js failed ({status}); its output is above");
    // The runner's summary: tests ran (a run that found none would also exit 0) and none failed.
    let count = |key: &str| output.lines().find_map(|l| l.strip_prefix(key)).and_then(|n| n.trim().parse::<u32>().ok());
    assert!(count("# pass ").is_some_and(|n| n > 0), "no test ran");
    assert_eq!(count("# fail "), Some(0), "failures");
}
