//! Configuration layers with the real binary: flag > `ROOMCAST_*` variable > `--config` file > default,
//! `--print-config`, file values rejected with a message naming the key, and start failures (config
//! file unreadable, database directory missing or not writable, address in use) reported as one line
//! `roomcast: <what> (<path or address>): <reason>` with exit status 1.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use crate::support::*;

/// The binary with no inherited `ROOMCAST_*` variables.
pub(crate) fn roomcast() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomcast"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("ROOMCAST_")) {
        cmd.env_remove(key);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Runs to exit (killed and failed after `PATIENCE`).
pub(crate) fn run(mut cmd: Command) -> Output {
    let child = cmd.spawn().expect("spawn roomcast");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let _ = rx.recv_timeout(PATIENCE);
            panic!("roomcast did not exit");
        }
    }
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("roomcast.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn printed(output: &Output) -> toml::Table {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).parse().expect("--print-config prints TOML")
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_config(
        &dir,
        "max-message = 1000\nmax-outbuf = 8192\nbatch-size = 7\nflush-interval-ms = 20\nsync = \"full\"\n",
    );
    let mut cmd = roomcast();
    cmd.arg("--config").arg(&path).args(["--batch-size", "9", "--flush-interval-ms", "30", "--print-config"]);
    cmd.env("ROOMCAST_MAX_OUTBUF", "16384").env("ROOMCAST_BATCH_SIZE", "8");
    let config = printed(&run(cmd));
    let int = |key: &str| config.get(key).and_then(toml::Value::as_integer).unwrap_or_else(|| panic!("{key}"));
    assert_eq!(int("max-message"), 1000, "file beats default");
    assert_eq!(int("max-outbuf"), 16384, "env beats file");
    assert_eq!(int("batch-size"), 9, "flag beats env and file");
    assert_eq!(int("flush-interval-ms"), 30, "flag beats file");
    assert_eq!(int("queue-capacity"), 65536, "default when nobody sets it");
    assert_eq!((int("metrics-max-connections"), int("metrics-idle-timeout")), (64, 5), "documented defaults");
    assert_eq!(config.get("sync").and_then(toml::Value::as_str), Some("full"));

    // The config file can also come from the environment, and the printout is itself a valid file.
    let again_path = dir.path().join("printed.toml");
    std::fs::write(&again_path, toml::to_string(&config).expect("toml")).expect("write");
    let mut cmd = roomcast();
    cmd.arg("--print-config").env("ROOMCAST_CONFIG", &again_path);
    assert_eq!(printed(&run(cmd)), config);
}

#[test]
fn invalid_file_values_are_rejected_naming_the_key() {
    let dir = tempfile::tempdir().expect("dir");
    for (text, key) in [
        ("max-message = \"lots\"", "`max-message`"),
        ("max-message = 0", "max-message"),
        ("sync = \"sometimes\"", "`sync`"),
        ("max-mesage = 100", "`max-mesage`"),
    ] {
        let path = write_config(&dir, text);
        let mut cmd = roomcast();
        cmd.arg("--config").arg(&path).args(["--addr", "127.0.0.1:0", "--no-persist"]);
        let output = run(cmd);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text}: must not start");
        assert!(stderr.contains(key), "{text}: {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{text}: names the file: {stderr}");
        assert!(output.stdout.is_empty(), "{text}: never started listening");
    }
}

#[test]
fn the_server_runs_with_the_file_settings() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_config(&dir, "max-message = 1234\nmax-rooms-per-conn = 3\n");
    let path = path.to_str().expect("utf-8 path");
    let server = Server::start(&["--config", path]);
    let mut ws = connect_ws(&server, "/ws?format=json&room=cfg&nick=cfg");
    let welcome = recv_json(&mut ws);
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["limits"]["max_message_bytes"], 1234, "{welcome}");
    assert_eq!(welcome["limits"]["max_rooms"], 3, "{welcome}");
}

#[test]
fn metrics_addr_comes_from_the_flag_the_environment_or_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_config(&dir, "metrics-addr = \"127.0.0.1:9101\"\n");
    let addr = |cmd: Command| printed(&run(cmd)).get("metrics-addr").and_then(|v| v.as_str().map(str::to_string));
    let mut cmd = roomcast();
    cmd.arg("--print-config");
    assert_eq!(addr(cmd), None, "unset by default");
    let mut cmd = roomcast();
    cmd.arg("--config").arg(&path).arg("--print-config");
    assert_eq!(addr(cmd).as_deref(), Some("127.0.0.1:9101"), "file");
    let mut cmd = roomcast();
    cmd.arg("--config").arg(&path).arg("--print-config").env("ROOMCAST_METRICS_ADDR", "127.0.0.1:9102");
    assert_eq!(addr(cmd).as_deref(), Some("127.0.0.1:9102"), "environment beats file");
    let mut cmd = roomcast();
    cmd.args(["--metrics-addr", "127.0.0.1:9103", "--print-config"]).env("ROOMCAST_METRICS_ADDR", "127.0.0.1:9102");
    assert_eq!(addr(cmd).as_deref(), Some("127.0.0.1:9103"), "flag beats environment");
    let mut cmd = roomcast();
    cmd.args(["--metrics-addr", "nowhere", "--print-config"]);
    let output = run(cmd);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--metrics-addr"));
}

#[test]
fn deflate_comes_from_the_flag_the_environment_or_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_config(&dir, "deflate = false\ndeflate-min-bytes = 64\n");
    let deflate = |cmd: Command| printed(&run(cmd)).get("deflate").and_then(toml::Value::as_bool);
    let mut cmd = roomcast();
    cmd.arg("--print-config");
    assert_eq!(deflate(cmd), Some(true), "on by default");
    let mut cmd = roomcast();
    cmd.arg("--config").arg(&path).arg("--print-config");
    let table = printed(&run(cmd));
    assert_eq!(table.get("deflate").and_then(toml::Value::as_bool), Some(false), "file");
    assert_eq!(table.get("deflate-min-bytes").and_then(toml::Value::as_integer), Some(64), "file");
    let mut cmd = roomcast();
    cmd.arg("--config").arg(&path).arg("--print-config").env("ROOMCAST_DEFLATE", "true");
    assert_eq!(deflate(cmd), Some(true), "environment beats file");
    let mut cmd = roomcast();
    cmd.args(["--deflate", "false", "--print-config"]).env("ROOMCAST_DEFLATE", "true");
    assert_eq!(deflate(cmd), Some(false), "flag beats environment");
    for bad in [["--deflate-level", "0"], ["--deflate-level", "10"], ["--deflate", "maybe"]] {
        let mut cmd = roomcast();
        cmd.args(bad).arg("--print-config");
        let output = run(cmd);
        assert!(!output.status.success(), "{bad:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains(bad[0]), "{bad:?}");
    }
}

/// The one line a failed start prints: exit status 1, nothing on stdout, exactly one line on stderr.
pub(crate) fn start_failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit status; stderr: {stderr}");
    assert!(output.stdout.is_empty(), "never started listening: {}", String::from_utf8_lossy(&output.stdout));
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(lines[0].starts_with("roomcast: "), "{stderr}");
    assert!(lines[0].matches("(os error").count() <= 1, "the reason is given once: {stderr}");
    lines[0].to_string()
}

#[test]
fn an_unreadable_or_invalid_config_file_is_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("missing.toml");
    let not_toml = write_config(&dir, "max-message = 1000\nsync = \n");
    for (path, expected) in [
        (missing.as_path(), format!("roomcast: cannot read config file ({}): No such file", missing.display())),
        // A directory cannot be read as a file even by root (chmod 000 would not stop root).
        (dir.path(), format!("roomcast: cannot read config file ({}): Is a directory", dir.path().display())),
        (not_toml.as_path(), format!("roomcast: config file is not valid TOML ({}): ", not_toml.display())),
    ] {
        let mut cmd = roomcast();
        cmd.arg("--config").arg(path).args(["--addr", "127.0.0.1:0", "--no-persist"]);
        let line = start_failure(&run(cmd));
        assert!(line.starts_with(&expected), "expected {expected:?}, got {line:?}");
    }
    let mut cmd = roomcast();
    cmd.arg("--config").arg(&not_toml).args(["--addr", "127.0.0.1:0", "--no-persist"]);
    let line = start_failure(&run(cmd));
    assert!(line.contains(" at line 2, column "), "says where: {line}");
}

#[test]
fn a_database_directory_missing_or_not_a_directory_is_one_line() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("no-such-dir");
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, b"not a directory").expect("write");
    for (parent, expected) in [
        (&missing, format!("roomcast: database directory is missing ({}): No such file", missing.display())),
        (&plain, format!("roomcast: database directory is not writable ({}): Not a directory", plain.display())),
    ] {
        let mut cmd = roomcast();
        cmd.args(["--addr", "127.0.0.1:0", "--db"]).arg(parent.join("roomcast.db"));
        let line = start_failure(&run(cmd));
        assert!(line.starts_with(&expected), "expected {expected:?}, got {line:?}");
    }
    assert!(!missing.exists(), "nothing was created");
}

#[test]
fn a_database_directory_without_write_permission_is_one_line() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;

    let dir = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).expect("mkdir");
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let mut cmd = roomcast();
    cmd.args(["--addr", "127.0.0.1:0", "--db"]).arg(read_only.join("roomcast.db"));
    // Root may write anywhere: run the server as `nobody` then (the directory belongs to root).
    if std::fs::metadata("/proc/self").expect("/proc/self").uid() == 0 {
        cmd.uid(65534).gid(65534);
    }
    let line = start_failure(&run(cmd));
    let expected = format!("roomcast: database directory is not writable ({}): Permission denied", read_only.display());
    assert!(line.starts_with(&expected), "expected {expected:?}, got {line:?}");
    assert_eq!(std::fs::read_dir(&read_only).expect("list").count(), 0, "nothing was created");
}

#[test]
fn an_address_in_use_is_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let mut cmd = roomcast();
    cmd.arg("--addr").arg(addr.to_string()).arg("--no-persist");
    let line = start_failure(&run(cmd));
    let expected = format!("roomcast: cannot listen ({addr}): Address already in use");
    assert!(line.starts_with(&expected), "expected {expected:?}, got {line:?}");
}

/// The rows of the settings table in docs/CONFIG.md, as cells (flag, range, ...).
fn config_md_rows() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(repo_path("docs/CONFIG.md")).expect("docs/CONFIG.md");
    let mut lines = text.lines().skip_while(|l| !l.starts_with("| setting (file key) |"));
    let header: Vec<&str> = lines.next().expect("the settings table").split(" | ").collect();
    assert_eq!(header.get(4).copied(), Some("range"), "column 5 is the range: {header:?}");
    lines
        .skip(1)
        .take_while(|l| l.starts_with("| "))
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect())
        .collect()
}

/// The long flags `--help` lists.
fn flags_in_help() -> std::collections::BTreeSet<String> {
    let mut cmd = roomcast();
    cmd.arg("--help");
    let output = run(cmd);
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.trim_start().split([' ', ',', '=']).find(|w| w.starts_with("--")).map(str::to_string))
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

#[test]
fn every_flag_is_documented_in_config_md() {
    let documented: std::collections::BTreeSet<String> =
        config_md_rows().iter().filter_map(|row| row.get(1)?.split('`').nth(1).map(str::to_string)).collect();
    let flags = flags_in_help();
    assert!(flags.len() > 40, "read the flags from --help: {flags:?}");
    let undocumented: Vec<_> = flags.difference(&documented).collect();
    assert!(undocumented.is_empty(), "flags missing from docs/CONFIG.md: {undocumented:?}");
    let unknown: Vec<_> = documented.difference(&flags).collect();
    assert!(unknown.is_empty(), "docs/CONFIG.md documents flags that do not exist: {unknown:?}");
}

#[test]
fn every_range_in_config_md_is_the_one_enforced() {
    let mut ranged = Vec::new();
    for row in config_md_rows() {
        let flag = row[1].split('`').nth(1).expect("flag").to_string();
        if let Some((lo, hi)) = row[4].split_once('–')
            && let (Ok(_), Ok(hi)) = (lo.parse::<u64>(), hi.parse::<u64>())
        {
            ranged.push((flag, hi));
        }
    }
    assert!(ranged.len() >= 25, "ranges found in docs/CONFIG.md: {ranged:?}");
    // Every maximum at once is accepted ...
    let mut cmd = roomcast();
    cmd.arg("--print-config");
    for (flag, hi) in &ranged {
        cmd.arg(flag).arg(hi.to_string());
    }
    let config = printed(&run(cmd));
    for (flag, hi) in &ranged {
        let key = flag.trim_start_matches("--");
        let value = config.get(key).unwrap_or_else(|| panic!("{key} printed"));
        let value = value.as_integer().map(|v| v as f64).or_else(|| value.as_float()).expect("a number");
        assert_eq!(value, *hi as f64, "{key}");
    }
    // ... and one more than it is refused at start, naming the flag and the documented range.
    for (flag, hi) in &ranged {
        let mut cmd = roomcast();
        cmd.args(["--addr", "127.0.0.1:0", "--no-persist"]).arg(flag).arg((hi + 1).to_string());
        let line = start_failure(&run(cmd));
        assert!(line.contains(&format!("{flag} must be between ")), "{line}");
        assert!(line.contains(&format!(" and {hi} (got {})", hi + 1)), "{line}");
    }
}

#[test]
fn huge_values_that_used_to_panic_or_exhaust_memory_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    for (flag, value, rule) in [
        // Overflowed the first handshake deadline: the shard thread died, the process kept the port.
        ("--handshake-timeout", "18446744073709551615", "between 1 and 3600"),
        // Overflowed the shutdown deadline on SIGTERM.
        ("--shutdown-grace", "18446744073709551615", "between 0 and 3600"),
        // Allocated up front: 289 MB idle, and SIGABRT.
        ("--queue-capacity", "4000000", "between 1024 and 1048576"),
        ("--queue-capacity", "1000000000000", "between 1024 and 1048576"),
        ("--history-queue", "1000000000000", "between 1 and 65536"),
    ] {
        let mut cmd = roomcast();
        cmd.args(["--addr", "127.0.0.1:0", "--db"]).arg(dir.path().join("roomcast.db")).args([flag, value]);
        let line = start_failure(&run(cmd));
        assert_eq!(line, format!("roomcast: invalid configuration: {flag} must be {rule} (got {value})"));
    }
    assert!(!dir.path().join("roomcast.db").exists(), "refused before the database was touched");
}

#[test]
fn print_config_never_prints_a_secret_and_its_output_never_starts_without_one() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = crate::support::tokens::SECRET;
    let mut cmd = roomcast();
    cmd.arg("--print-config")
        .env("ROOMCAST_JWT_SECRET", secret)
        .env("ROOMCAST_REDIS_URL", "redis://roomcast:hunter2@127.0.0.1:6399/3");
    let output = run(cmd);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let config = printed(&output);
    assert!(!text.contains(secret) && !text.contains("hunter2"), "a secret was printed: {text}");
    assert_eq!(config.get("jwt-secret").and_then(toml::Value::as_str), Some("***"), "{text}");
    assert_eq!(
        config.get("redis-url").and_then(toml::Value::as_str),
        Some("redis://roomcast:***@127.0.0.1:6399/3"),
        "only the password is replaced"
    );

    // The printout used as a file refuses to start, for each secret, saying what to set.
    let both = write_config(&dir, &text);
    let mut only_redis = config.clone();
    only_redis.remove("jwt-secret");
    let only_redis_path = dir.path().join("only-redis.toml");
    std::fs::write(&only_redis_path, toml::to_string(&only_redis).expect("toml")).expect("write");
    for (path, setting, variable) in
        [(&both, "--jwt-secret", "ROOMCAST_JWT_SECRET"), (&only_redis_path, "--redis-url", "ROOMCAST_REDIS_URL")]
    {
        let mut cmd = roomcast();
        cmd.arg("--config").arg(path).args(["--addr", "127.0.0.1:0", "--db"]).arg(dir.path().join("a.db"));
        let line = start_failure(&run(cmd));
        assert!(line.contains(setting) && line.contains("placeholder") && line.contains(variable), "{line}");
        assert!(line.contains(&path.display().to_string()), "names the file: {line}");
    }

    // With the real secret in the environment the same file starts, and with auth on.
    let mut only_jwt = config.clone();
    only_jwt.remove("redis-url");
    let only_jwt_path = dir.path().join("only-jwt.toml");
    std::fs::write(&only_jwt_path, toml::to_string(&only_jwt).expect("toml")).expect("write");
    let mut cmd = roomcast();
    cmd.arg("--config").arg(&only_jwt_path).args(["--addr", "127.0.0.1:0", "--db"]).arg(dir.path().join("b.db"));
    cmd.env("ROOMCAST_JWT_SECRET", secret);
    let mut child = cmd.spawn().expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on http://") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx.recv_timeout(PATIENCE);
    let status = addr.as_ref().ok().map(|addr| {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        std::io::Write::write_all(
            &mut stream,
            b"GET /ws?room=r HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("write");
        let mut head = [0u8; 12];
        std::io::Read::read_exact(&mut stream, &mut head).expect("response");
        String::from_utf8_lossy(&head).into_owned()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status.as_deref(), Some("HTTP/1.1 401"), "started, and a client without a token is refused");
}

#[test]
fn a_second_server_on_the_same_database_exits_1_naming_the_lock_and_its_holder() {
    let first = Server::start(&[]);
    let db = first.db_path();
    let mut cmd = roomcast();
    cmd.args(["--addr", "127.0.0.1:0", "--db"]).arg(&db);
    let line = start_failure(&run(cmd));
    let expected = format!(
        "roomcast: the database is in use ({}.lock): another roomcast process holds it (pid {})",
        db.display(),
        first.pid()
    );
    assert_eq!(line, expected);
    // Without persistence the database is not touched, so nothing is locked either.
    let relay = Server::start_logged(&db, &["--no-persist"]);
    drop(relay);
    // The lock goes with the process, however it dies: a restart after kill -9 starts.
    let dir = first.kill9();
    let again = Server::start_in(dir, &[]);
    let mut ws = connect_json(&again, "r", "back");
    send_json(&mut ws, serde_json::json!({"type": "message", "room": "r", "content": "after kill -9"}));
    assert_eq!(recv_event(&mut ws, "message")["content"], "after kill -9");
}
