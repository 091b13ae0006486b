//! Command-line flags, `ROOMCAST_*` environment variables and an optional TOML file: what they say
//! ([`Settings`]), and the [`Config`] that validation makes of it.
//!
//! Two types so that nothing after start-up handles a setting that was not checked: [`Settings`] is what
//! was parsed (sentinels and all: `shards = 0`, `redis-url = ""`), [`Settings::validate`] is the only way
//! to a [`Config`] (defined in [`valid`]), whose fields cannot hold the refused states (`SyncMode`,
//! `Option<RedisUrl>`, `NonZero` counts). Every `Settings` field documents its default and when to change
//! it; `main` turns a validation error into a message naming the setting. Precedence (flag > env > file > default) is implemented in [`load`];
//! the file format in [`file`]; `docs/CONFIG.md` lists every setting. The file key of a setting is its
//! long flag name without the dashes (`max-message = 1000`), which is also how `--print-config` prints it.

pub mod file;
pub mod load;
pub mod logging;
pub mod preflight;
pub mod valid;

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

pub use logging::LogFormat;
pub use valid::{Config, RedisUrl, SyncMode, TlsFiles, WebhookUrl};

/// Frame bytes allowed beyond the content: the JSON envelope (type, room, client_id, whitespace).
pub const ENVELOPE_BYTES: usize = 4096;
/// Worst-case growth of JSON-escaped content: `\u0001` is 6 bytes for 1.
pub const JSON_ESCAPE_FACTOR: usize = 6;

/// File descriptors kept free for the listener, the database, log files and the waker eventfds.
pub const FD_RESERVE: usize = 64;

// This doc comment is also `--help`'s long description, kept as it was. As parsed, before validation
// (automatic values still `0` or empty, ranges unchecked): only `Settings::validate` makes the `Config`
// the server runs with, and `--print-config` prints `Settings::from(&config)`, automatic values resolved.
/// The server's configuration (flags override environment variables, which override the file).
///
/// Serialised (kebab-case keys, as in the file) by `--print-config`.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "roomcast", version = crate::build_info::VERSION_LINE, about = "Real-time WebSocket chat server")]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Read settings from this TOML file (keys are the long flag names: `max-message = 1000`). Flags and
    /// environment variables override it.
    #[arg(long, env = "ROOMCAST_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML (usable as a `--config` file) and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Address to listen on. Use 0.0.0.0:8000 to accept from other machines (behind a TLS proxy).
    #[arg(long, env = "ROOMCAST_ADDR", default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,

    /// Serve `/metrics` on this separate address only (e.g. a private interface or loopback), and answer
    /// 404 for it on `--addr`. `/healthz` and `/readyz` are served on both. Unset (default): `/metrics`
    /// is served on `--addr`, to anyone who can reach it.
    #[arg(long, env = "ROOMCAST_METRICS_ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,

    /// Open connections to `--metrics-addr` at most (1–1024); its own budget, apart from
    /// `--max-connections` and `--max-conns-per-ip`, so a full main port leaves health checks and
    /// scrapes answered and idle connections here cannot lock clients out. Over it: 503.
    #[arg(long, env = "ROOMCAST_METRICS_MAX_CONNECTIONS", default_value_t = 64)]
    pub metrics_max_connections: usize,

    /// Seconds a connection to `--metrics-addr` may take over a request, and stay open idle between
    /// keep-alive requests, before it is closed (1–3600). Short: scrapers and health checks send at
    /// once, and an idle connection holds one of the few `--metrics-max-connections` slots.
    #[arg(long = "metrics-idle-timeout", env = "ROOMCAST_METRICS_IDLE_TIMEOUT", default_value_t = 5)]
    #[serde(rename = "metrics-idle-timeout")]
    pub metrics_idle_timeout_secs: u64,

    /// Event-loop threads; 0 means one per CPU core but one (at least one): the remaining core is left
    /// to the kernel's network processing, the store writer and whatever shares the machine.
    #[arg(long, env = "ROOMCAST_SHARDS", default_value_t = 0)]
    pub shards: usize,

    /// SQLite database file for history.
    #[arg(long, env = "ROOMCAST_DB", default_value = "roomcast.db")]
    pub db: PathBuf,

    /// Do not store messages (no history, no resume); for pure relay and load-test baselines.
    #[arg(long, env = "ROOMCAST_NO_PERSIST")]
    pub no_persist: bool,

    /// Largest chat message content, in bytes (after JSON unescaping). Text-format frames may carry up
    /// to this plus 4 KiB, JSON frames up to six times this (every byte written as a `\u00XX` escape)
    /// plus 4 KiB of envelope; larger frames close the connection with 1009.
    #[arg(long, env = "ROOMCAST_MAX_MESSAGE", default_value_t = 16 * 1024)]
    pub max_message: usize,

    /// Per-connection output queue soft bound, in bytes. A client whose queue stays over it for
    /// `--outbuf-grace` seconds, or passes `--max-outbuf-hard`, is a slow consumer and is closed with
    /// 1013. Raise it for clients on slow links with bursty rooms.
    #[arg(long, env = "ROOMCAST_MAX_OUTBUF", default_value_t = 1024 * 1024)]
    pub max_outbuf: usize,

    /// Per-connection output queue hard bound, in bytes; 0 (default) means 8 times `--max-outbuf`. A
    /// client whose queue would pass it is closed with 1013 at once, whatever the grace. Output
    /// memory is bounded by this times the connections.
    #[arg(long, env = "ROOMCAST_MAX_OUTBUF_HARD", default_value_t = 0)]
    pub max_outbuf_hard: usize,

    /// Seconds a client's output queue may stay over `--max-outbuf` (while it reads, and under
    /// `--max-outbuf-hard`) before it is closed as a slow consumer (0–3600; 0 closes it at the next
    /// 250 ms sweep).
    #[arg(long = "outbuf-grace", env = "ROOMCAST_OUTBUF_GRACE", default_value_t = 5)]
    #[serde(rename = "outbuf-grace")]
    pub outbuf_grace_secs: u64,

    /// Bytes of resume catch-up pages queued on all connections together (one budget for the whole
    /// server, shared fairly among the clients catching up); a client that finds none waits for its
    /// share (never skipped, never closed for it).
    #[arg(long, env = "ROOMCAST_CATCHUP_BUDGET", default_value_t = 64 * 1024 * 1024)]
    pub catchup_budget: usize,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it (`--deflate false` turns it
    /// off: every connection is then uncompressed).
    #[arg(long, env = "ROOMCAST_DEFLATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub deflate: bool,

    /// Messages smaller than this many bytes go uncompressed to deflate clients too (compressing
    /// them costs CPU and saves next to nothing); messages that do not shrink always do.
    #[arg(long, env = "ROOMCAST_DEFLATE_MIN_BYTES", default_value_t = 256)]
    pub deflate_min_bytes: usize,

    /// zlib compression level of broadcast frames, 1 (fastest) to 9 (smallest). Default 2: with the
    /// zlib-rs backend level 1 writes static Huffman codes only, which barely shrink a short chat
    /// message (291 → 273 bytes, against 215 at level 2; `benches/frame.rs`), and each broadcast is
    /// compressed once for all its recipients, so the extra 5 µs is paid once per message.
    #[arg(long, env = "ROOMCAST_DEFLATE_LEVEL", default_value_t = 2)]
    pub deflate_level: u32,

    /// Most open connections on `--addr`; 0 means the file-descriptor limit minus a reserve of 64 (and
    /// minus `--metrics-max-connections` + 32 with `--metrics-addr`). Connections over it get HTTP 503.
    #[arg(long, env = "ROOMCAST_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Most rooms one JSON connection may be in at once.
    #[arg(long, env = "ROOMCAST_MAX_ROOMS_PER_CONN", default_value_t = 64)]
    pub max_rooms_per_conn: usize,

    /// Largest HTTP request head, in bytes (larger: 431).
    #[arg(long, env = "ROOMCAST_MAX_HEADER_BYTES", default_value_t = 8 * 1024)]
    pub max_header_bytes: usize,

    /// Seconds a client may take to complete its HTTP request / handshake before it is dropped.
    #[arg(long = "handshake-timeout", env = "ROOMCAST_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    #[serde(rename = "handshake-timeout")]
    pub handshake_timeout_secs: u64,

    /// Speak TLS only on `--addr` (`wss://` and `https://`) with this PEM certificate chain, leaf
    /// first (ECDSA P-256, Ed25519 or RSA). Needs `--tls-key`. SIGHUP reads both files again for new
    /// connections. `--metrics-addr` stays plain.
    #[arg(long, env = "ROOMCAST_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1). Needs `--tls-cert`.
    #[arg(long, env = "ROOMCAST_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,

    /// TLS handshakes in progress per shard at most (1–65536), so a reconnecting crowd cannot starve
    /// connected clients of the shard's time. A new TLS connection over it waits unread for a slot
    /// while fewer than 16 times as many wait (within `--handshake-timeout`), else it is closed at once and
    /// counted (`roomcast_tls_handshake_failures_total{reason="overloaded"}`).
    #[arg(long, env = "ROOMCAST_TLS_MAX_HANDSHAKES", default_value_t = 256)]
    pub tls_max_handshakes: usize,

    /// Serve the web client from this directory instead of the copy embedded in the binary.
    #[arg(long, env = "ROOMCAST_STATIC_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_dir: Option<PathBuf>,

    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or `RUST_LOG`-style directives).
    #[arg(long, env = "ROOMCAST_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log line format: `text` (human-readable) or `json` (one JSON object per line, for log shippers).
    #[arg(long, env = "ROOMCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// History writer: rows per transaction at most.
    #[arg(long, env = "ROOMCAST_BATCH_SIZE", default_value_t = 512)]
    pub batch_size: usize,

    /// History writer: milliseconds a message may wait for its batch to fill before it is committed.
    #[arg(long = "flush-interval-ms", env = "ROOMCAST_FLUSH_INTERVAL_MS", default_value_t = 10)]
    pub flush_interval_ms: u64,

    /// History writer: queue bound, in messages. When full, clients that send are not read until it
    /// drains (backpressure); nothing is dropped.
    #[arg(long, env = "ROOMCAST_QUEUE_CAPACITY", default_value_t = 65_536)]
    pub queue_capacity: usize,

    /// History reads (REST pages, `history` commands, resume pages) waiting for a reader thread. When
    /// full, a read is refused at once: `history_unavailable` (REST 503), and a resuming client is
    /// closed with 1013 to resume again later (never left with a gap).
    #[arg(long, env = "ROOMCAST_HISTORY_QUEUE", default_value_t = 1024)]
    pub history_queue: usize,

    /// `full` fsyncs every batch (survives power loss); `normal` (default) survives process crashes.
    #[arg(long, env = "ROOMCAST_SYNC", default_value = "normal", value_parser = ["normal", "full"])]
    pub sync: String,

    /// Keep at most this many messages per room (older ones are trimmed); 0 keeps everything.
    #[arg(long, env = "ROOMCAST_RETAIN_PER_ROOM", default_value_t = 0)]
    pub retain_per_room: u64,

    /// Seconds to wait, on SIGINT/SIGTERM, for clients to acknowledge the close before exiting.
    #[arg(long = "shutdown-grace", env = "ROOMCAST_SHUTDOWN_GRACE", default_value_t = 3)]
    #[serde(rename = "shutdown-grace")]
    pub shutdown_grace_secs: u64,

    /// Turns authentication on with HS256 tokens signed with this shared secret (use at least 32
    /// random bytes; shorter ones are accepted with a warning). Prefer the environment variable:
    /// command lines are visible to every local user.
    #[arg(long, env = "ROOMCAST_JWT_SECRET", conflicts_with = "jwt_public_key", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<String>,

    /// Turns authentication on with RS256 (RSA key) or ES256 (P-256 key) tokens verified with this PEM
    /// public key; the key type pins the algorithm.
    #[arg(long, env = "ROOMCAST_JWT_PUBLIC_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,

    /// With authentication on, tokens must carry this `aud`. Without it, tokens carrying any `aud`
    /// are refused (RFC 7519 §4.1.3: a principal that is not named in `aud` must reject the token).
    #[arg(long, env = "ROOMCAST_JWT_AUDIENCE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,

    /// Browser origins allowed to open WebSockets (repeatable; `*` allows any; an empty entry matches
    /// none). Without it, a request's `Origin` must name the host it was sent to (`Host`); requests
    /// without `Origin` (non-browsers) are allowed. Others get 403 `forbidden_origin`.
    #[arg(long = "allowed-origin", env = "ROOMCAST_ALLOWED_ORIGINS", value_delimiter = ',')]
    #[serde(rename = "allowed-origin", skip_serializing_if = "Vec::is_empty", serialize_with = "comma_separated")]
    pub allowed_origins: Vec<String>,

    /// Chat messages a connection may send per second on average; every frame (commands and pings
    /// too) is also held to this plus 10 per second. 0 turns both off (load tests). Over it a message
    /// or frame is refused with `rate_limited`.
    #[arg(long, env = "ROOMCAST_RATE_LIMIT", default_value_t = 20)]
    pub rate_limit: u32,

    /// Chat messages a connection may send in a burst above `--rate-limit` (frames: this plus twice
    /// `--max-rooms-per-conn` plus 16).
    #[arg(long, env = "ROOMCAST_RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,

    /// Payload bytes a connection may send per second on average (bursts up to two seconds' worth);
    /// 0 turns the byte limit off.
    #[arg(long, env = "ROOMCAST_RATE_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub rate_limit_bytes: u64,

    /// Open connections per client IP address; 0 (default) means no limit. Behind a reverse proxy
    /// every client has the proxy's address: leave it off there. Over it: HTTP 429.
    #[arg(long, env = "ROOMCAST_MAX_CONNS_PER_IP", default_value_t = 0)]
    pub max_conns_per_ip: usize,

    /// Open WebSocket connections per verified user (auth on; the token's name) on this node; 0
    /// (default) means no limit. One more is refused at the upgrade with HTTP 429
    /// `too_many_user_connections`. Counted per node, also in cluster mode.
    #[arg(long, env = "ROOMCAST_MAX_CONNS_PER_USER", default_value_t = 0)]
    pub max_conns_per_user: usize,

    /// Seconds a connection whose token reached its `exp` may still `refresh` before it is closed
    /// with 4001 `token_expired` (auth on); 0 closes it at `exp`.
    #[arg(long = "token-grace", env = "ROOMCAST_TOKEN_GRACE", default_value_t = 30)]
    #[serde(rename = "token-grace")]
    pub token_grace_secs: u64,

    /// Seconds a WebSocket client may send no frame at all (pongs count) before it is closed with
    /// 1008; 0 turns it off.
    #[arg(long = "idle-timeout", env = "ROOMCAST_IDLE_TIMEOUT", default_value_t = 300)]
    #[serde(rename = "idle-timeout")]
    pub idle_timeout_secs: u64,

    /// Seconds of client silence after which the server sends a ping; 0 turns heartbeats off.
    #[arg(long = "ping-interval", env = "ROOMCAST_PING_INTERVAL", default_value_t = 30)]
    #[serde(rename = "ping-interval")]
    pub ping_interval_secs: u64,

    /// Seconds a client has to answer a ping (with a pong or any other frame) before it is closed
    /// with 1001 as gone.
    #[arg(long = "ping-timeout", env = "ROOMCAST_PING_TIMEOUT", default_value_t = 10)]
    #[serde(rename = "ping-timeout")]
    pub ping_timeout_secs: u64,

    /// Cluster mode: the Redis every node shares rooms through (`redis://host:port`). Empty (default):
    /// one node, no Redis needed.
    #[arg(long, env = "ROOMCAST_REDIS_URL", default_value = "")]
    pub redis_url: String,

    /// Cluster mode: this node's name; empty (default) picks a random one. Give every node a distinct,
    /// stable one.
    #[arg(long, env = "ROOMCAST_NODE_ID", default_value = "")]
    pub node_id: String,

    /// Cluster mode: messages kept per room stream in Redis (approximately): how far back a node that
    /// was away can catch up.
    #[arg(long, env = "ROOMCAST_REDIS_STREAM_MAXLEN", default_value_t = 100_000)]
    pub redis_stream_maxlen: u64,

    /// Cluster mode: bound of the queue to Redis and of the outage replay queue, in messages. When full,
    /// clients that send are not read until it drains.
    #[arg(long, env = "ROOMCAST_REDIS_QUEUE_CAPACITY", default_value_t = 65_536)]
    pub redis_queue_capacity: usize,

    /// Cluster mode: messages per second a user name may send on average across the whole cluster
    /// (all its connections on every node, counted in Redis); 0 (default) turns it off. Over it a
    /// message is refused with `rate_limited`. Single-node mode ignores it (use `--rate-limit`).
    #[arg(long, env = "ROOMCAST_USER_RATE_LIMIT", default_value_t = 0.0)]
    pub user_rate_limit: f64,

    /// Cluster mode: messages a user name may send in a burst above `--user-rate-limit`.
    #[arg(long, env = "ROOMCAST_USER_RATE_BURST", default_value_t = 40)]
    pub user_rate_burst: u32,

    /// Turns the server API (`/api/…`, docs/API.md) on with this key (repeatable; at least 16
    /// characters, no whitespace). Requests carry `Authorization: Bearer KEY`. Prefer the environment
    /// variable (comma-separated) or `--api-keys-file`: command lines are visible to every local user.
    /// Without any key every `/api/` path answers 404.
    #[arg(long = "api-key", env = "ROOMCAST_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    #[serde(rename = "api-key", skip_serializing_if = "Vec::is_empty", serialize_with = "redacted_list")]
    pub api_keys: Vec<String>,

    /// Server API keys from this file, one per line (blank lines and `#` comments skipped); read
    /// again on SIGHUP (a file that cannot be read then keeps the keys in force).
    #[arg(long, env = "ROOMCAST_API_KEYS_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<PathBuf>,

    /// Largest body of `POST /api/publish` (a batch of up to 1,000 messages), in bytes (1 KiB to
    /// 64 MiB); larger: 413. The single-message route takes `--max-message` + 4 KiB.
    #[arg(long, env = "ROOMCAST_MAX_BATCH_BYTES", default_value_t = 4 << 20)]
    pub max_batch_bytes: usize,

    /// POST room events (`room_occupied`, `room_vacated`, `user_joined`, `user_left`) to this URL
    /// (repeatable, at most 16; `http://host[:port]/path` or `https://host[:port]/path`, the
    /// receiver's certificate verified against `--webhook-ca` or the built-in Mozilla roots; see
    /// docs/WEBHOOKS.md). Needs `--webhook-secret`; not with `--no-persist` (the outbox is in the
    /// database).
    #[arg(long = "webhook-url", env = "ROOMCAST_WEBHOOK_URLS", value_delimiter = ',')]
    #[serde(rename = "webhook-url", skip_serializing_if = "Vec::is_empty", serialize_with = "comma_separated")]
    pub webhook_urls: Vec<String>,

    /// The HMAC-SHA256 key that signs every webhook request (`X-Roomcast-Signature`); required with
    /// `--webhook-url`. Prefer the environment variable: command lines are visible to every local user.
    #[arg(long, env = "ROOMCAST_WEBHOOK_SECRET", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,

    /// Trust only the CA certificates in this PEM file for `https://` webhook receivers (a private
    /// CA), instead of the Mozilla roots built in. Read at start: a file that cannot be read or holds
    /// no certificate stops the start, naming the file.
    #[arg(long, env = "ROOMCAST_WEBHOOK_CA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_ca: Option<PathBuf>,

    /// Webhook requests waiting for delivery, in rows (one per event and URL), at most (1 to 10^7).
    /// When full, the oldest rows are dropped and counted (`roomcast_webhooks_dropped_total`).
    #[arg(long, env = "ROOMCAST_WEBHOOK_OUTBOX", default_value_t = 100_000)]
    pub webhook_outbox: usize,

    /// Longest wait, in seconds, between two attempts of a failing webhook request (1 to 3600): the
    /// wait starts at 1 s (or this, if smaller), doubles per failure up to this, with jitter.
    #[arg(long = "webhook-retry-max", env = "ROOMCAST_WEBHOOK_RETRY_MAX", default_value_t = 60)]
    #[serde(rename = "webhook-retry-max")]
    pub webhook_retry_max_secs: u64,

    /// Blocked words and patterns, one per line (syntax in docs/CONFIG.md "Blocklist"): checked in
    /// every message, direct message, edit and server-API message. Read at start (a bad file stops
    /// the start, naming the file and line) and again on SIGHUP (a bad file then keeps the list in
    /// force). None (default): no filter.
    #[arg(long, env = "ROOMCAST_BLOCKLIST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocklist: Option<PathBuf>,

    /// What a message with a blocklist match gets: `reject` (default: refused with `content_blocked`,
    /// nothing stored or delivered) or `mask` (every matched character replaced by `*`, then stored
    /// and delivered so).
    #[arg(long, env = "ROOMCAST_BLOCKLIST_ACTION", value_enum, default_value_t = BlocklistAction::Reject)]
    pub blocklist_action: BlocklistAction,

    /// Identical messages (case and whitespace aside) a user may send within `--repeat-window`, in
    /// any room, before the next one is refused with `repeated_content`; 0 turns it off. The server
    /// API's messages are not counted.
    #[arg(long, env = "ROOMCAST_REPEAT_LIMIT", default_value_t = 3)]
    pub repeat_limit: u32,

    /// Seconds, from the first of them, during which `--repeat-limit` identical messages count.
    #[arg(long = "repeat-window", env = "ROOMCAST_REPEAT_WINDOW", default_value_t = 30)]
    #[serde(rename = "repeat-window")]
    pub repeat_window_secs: u64,
}

/// `--blocklist-action`: what happens to a message with a blocklist match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlocklistAction {
    /// Refuse it (`content_blocked`; the API answers 422).
    Reject,
    /// Replace every matched character by `*` and publish it.
    Mask,
}

/// What `--print-config` prints in place of a secret (the JWT secret, a Redis URL's password).
/// Validation refuses it, so a printed configuration fed back as a file never starts a server without
/// the secret: with `ROOMCAST_JWT_SECRET` (or `ROOMCAST_REDIS_URL`) set, the environment wins over the
/// file and the placeholder is never read.
pub const REDACTED: &str = "***";

/// Connections accepted past a connection limit only to be told 503; beyond this many more they are
/// closed unread (the acceptor's rule, on both listeners). Counted in the descriptor budget.
pub const OVER_CAPACITY_SLACK: usize = 32;

/// Output bytes TLS may hold per TLS connection (records encrypted from the frame queue and not yet
/// written, with rustls' own output beside them; `conn::tls`); a TLS connection's frame queue is
/// bounded by `--max-outbuf` minus this, so both fit in `--max-outbuf`.
pub const TLS_BUFFER_LIMIT: usize = 32 * 1024;

/// A setting that cannot work, named so the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A numeric setting is out of its range (or a word setting is not one of its words).
    #[error("--{name} must be {rule} (got {value})")]
    OutOfRange {
        /// Flag name.
        name: &'static str,
        /// The rule (`between 1 and 3600`).
        rule: Cow<'static, str>,
        /// The value given.
        value: String,
    },
    /// A text setting does not parse as what it names. The value is not repeated: it may carry a
    /// password (`redis://:secret@host`).
    #[error("--{name} must be {rule}: {reason}")]
    Unparsable {
        /// Flag name.
        name: &'static str,
        /// What it must be.
        rule: &'static str,
        /// The parser's explanation.
        reason: String,
    },
    /// A setting that is useless, or dangerous, without another one.
    #[error("--{name} needs --{other} (give both or neither)")]
    Needs {
        /// Flag name of the one given.
        name: &'static str,
        /// Flag name of the one missing.
        other: &'static str,
    },
    /// A secret is the placeholder [`REDACTED`] that `--print-config` writes in its place.
    #[error(
        "--{name} holds the placeholder \"***\" that --print-config prints instead of a secret; \
         set the real value ({env}, or --{name})"
    )]
    Redacted {
        /// Flag name.
        name: &'static str,
        /// Its environment variable, the place a secret should come from.
        env: &'static str,
    },
}

impl ConfigError {
    /// The long flag name (also the file key) of the setting at fault.
    pub fn setting(&self) -> &'static str {
        match self {
            ConfigError::OutOfRange { name, .. }
            | ConfigError::Unparsable { name, .. }
            | ConfigError::Needs { name, .. }
            | ConfigError::Redacted { name, .. } => name,
        }
    }
}

/// The default shard count on a machine with `cores` cores: one per core but one, at least one.
///
/// Decision (BENCHMARKS.md, issue 12): on the 2-core machine with the load generator beside the
/// server, started in its own session as a service manager runs it, one shard beat two in every
/// round at 2,000 clients / 2M deliveries/s (p50 20–23 ms against 27–36 ms, p99 47–66 ms against
/// 69–352 ms), at the same server CPU. Each shard's write to a client socket wakes a client thread
/// on loopback (and a NIC's softirq work on a real network) that then preempts a shard; with a shard
/// on every core nothing is left for that work, and a shard preempted mid-pass holds back all its
/// connections. `--shards N` still sets any count.
pub fn default_shards(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

/// `Ok` when `ok`, else the out-of-range error naming the setting, its rule and the value given.
fn range(name: &'static str, rule: &'static str, ok: bool, value: String) -> Result<(), ConfigError> {
    if ok { Ok(()) } else { Err(ConfigError::OutOfRange { name, rule: rule.into(), value }) }
}

/// `Ok` when `lo <= value <= hi`, else the range error `--name must be between lo and hi`.
///
/// Every duration and size setting has an upper bound (docs/CONFIG.md, column "range"), so no value
/// that parses can overflow an `Instant` (a panicking shard thread) or allocate a queue of gigabytes
/// up front.
fn within<T: PartialOrd + fmt::Display>(name: &'static str, value: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if lo <= value && value <= hi {
        return Ok(());
    }
    Err(ConfigError::OutOfRange { name, rule: format!("between {lo} and {hi}").into(), value: value.to_string() })
}

/// `value` as a non-zero count when `ok` holds for it, else the range error for `--name`.
fn count(name: &'static str, rule: &'static str, value: usize, ok: bool) -> Result<NonZeroUsize, ConfigError> {
    NonZeroUsize::new(value).filter(|_| ok).ok_or(ConfigError::OutOfRange {
        name,
        rule: rule.into(),
        value: value.to_string(),
    })
}

/// `value` as a count within `lo..=hi` (`lo` at least 1), else the range error for `--name`.
fn count_within(name: &'static str, value: usize, lo: usize, hi: usize) -> Result<NonZeroUsize, ConfigError> {
    within(name, value, lo.max(1), hi)?;
    NonZeroUsize::new(value).ok_or(ConfigError::OutOfRange {
        name,
        rule: format!("between {lo} and {hi}").into(),
        value: value.to_string(),
    })
}

impl Settings {
    /// Checks ranges, resolves automatic values (`shards`, `max_connections`) and sentinels (`sync`,
    /// empty `redis_url` and `node_id`, `retain_per_room = 0`), and returns the [`Config`] to run with.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad setting.
    pub fn validate(self, fd_limit: usize) -> Result<Config, ConfigError> {
        let shards = match self.shards {
            0 => default_shards(std::thread::available_parallelism().map_or(1, |n| n.get())),
            n => n,
        };
        let shards = count("shards", "between 1 and 256", shards, shards <= 256)?;
        self.check_limits()?;
        self.check_durations()?;
        let batch_size = count("batch-size", "between 1 and 65536", self.batch_size, self.batch_size <= 65536)?;
        // Both queues are allocated whole at start (a store record slot is 72 bytes: 75 MB at the top).
        let queue_capacity = count_within("queue-capacity", self.queue_capacity, 1024, 1 << 20)?;
        let history_queue = count_within("history-queue", self.history_queue, 1, 65536)?;
        let sync = match self.sync.as_str() {
            "normal" => SyncMode::Normal,
            "full" => SyncMode::Full,
            other => {
                return Err(ConfigError::OutOfRange {
                    name: "sync",
                    rule: "normal or full".into(),
                    value: other.into(),
                });
            }
        };
        self.check_rates()?;
        self.check_cluster()?;
        let redis_url = match self.redis_url.as_str() {
            "" => None,
            text => Some(RedisUrl::parse(text).map_err(|e| ConfigError::Unparsable {
                name: "redis-url",
                rule: "a Redis URL (redis://host:port[/db] or unix:///path)",
                reason: e.to_string(),
            })?),
        };
        if redis_url.as_ref().is_some_and(RedisUrl::is_redacted) {
            return Err(ConfigError::Redacted { name: "redis-url", env: "ROOMCAST_REDIS_URL" });
        }
        let metrics_max_connections = count_within("metrics-max-connections", self.metrics_max_connections, 1, 1024)?;
        let tls = self.check_tls()?;
        let tls_max_handshakes = count_within("tls-max-handshakes", self.tls_max_handshakes, 1, 65536)?;
        let webhook_urls = self.check_webhooks()?;
        let webhook_outbox = count_within("webhook-outbox", self.webhook_outbox, 1, 10_000_000)?;
        // Descriptors: the main port's connections and slack, the metrics port's (when it exists), and
        // FD_RESERVE for the listeners, the database and the wakers.
        let metrics_fds = self.metrics_addr.map_or(0, |_| metrics_max_connections.get() + OVER_CAPACITY_SLACK);
        let auto = fd_limit.saturating_sub(FD_RESERVE).saturating_sub(metrics_fds).max(1);
        let max_connections = match self.max_connections {
            0 => auto,
            n => n,
        };
        let max_connections = count(
            "max-connections",
            "at most the file-descriptor limit minus 64 (and minus --metrics-max-connections + 32 with --metrics-addr)",
            max_connections,
            max_connections <= auto,
        )?;
        let max_outbuf_hard = match self.max_outbuf_hard {
            0 => self.max_outbuf.saturating_mul(8),
            n => n,
        };
        Ok(Config {
            addr: self.addr,
            metrics_addr: self.metrics_addr,
            metrics_max_connections,
            metrics_idle_timeout_secs: self.metrics_idle_timeout_secs,
            shards,
            db: self.db,
            no_persist: self.no_persist,
            max_message: self.max_message,
            max_outbuf: self.max_outbuf,
            max_outbuf_hard,
            outbuf_grace_secs: self.outbuf_grace_secs,
            catchup_budget: self.catchup_budget,
            deflate: self.deflate,
            deflate_min_bytes: self.deflate_min_bytes,
            deflate_level: self.deflate_level,
            max_connections,
            max_rooms_per_conn: self.max_rooms_per_conn,
            max_header_bytes: self.max_header_bytes,
            handshake_timeout_secs: self.handshake_timeout_secs,
            tls,
            tls_max_handshakes,
            static_dir: self.static_dir,
            log_level: self.log_level,
            log_format: self.log_format,
            batch_size,
            flush_interval_ms: self.flush_interval_ms,
            queue_capacity,
            history_queue,
            sync,
            retain_per_room: NonZeroU64::new(self.retain_per_room),
            shutdown_grace_secs: self.shutdown_grace_secs,
            jwt_secret: self.jwt_secret,
            jwt_public_key: self.jwt_public_key,
            jwt_audience: self.jwt_audience,
            allowed_origins: self.allowed_origins,
            rate_limit: self.rate_limit,
            rate_burst: self.rate_burst,
            rate_limit_bytes: self.rate_limit_bytes,
            max_conns_per_ip: self.max_conns_per_ip,
            max_conns_per_user: self.max_conns_per_user,
            token_grace_secs: self.token_grace_secs,
            idle_timeout_secs: self.idle_timeout_secs,
            ping_interval_secs: self.ping_interval_secs,
            ping_timeout_secs: self.ping_timeout_secs,
            redis_url,
            node_id: (!self.node_id.is_empty()).then_some(self.node_id),
            redis_stream_maxlen: self.redis_stream_maxlen,
            redis_queue_capacity: self.redis_queue_capacity,
            user_rate_limit: self.user_rate_limit,
            user_rate_burst: self.user_rate_burst,
            api_keys: self.api_keys,
            api_keys_file: self.api_keys_file,
            max_batch_bytes: self.max_batch_bytes,
            blocklist: self.blocklist,
            blocklist_action: self.blocklist_action,
            repeat_limit: self.repeat_limit,
            repeat_window_secs: self.repeat_window_secs,
            webhook_urls,
            webhook_secret: self.webhook_secret,
            webhook_ca: self.webhook_ca,
            webhook_outbox,
            webhook_retry_max_secs: self.webhook_retry_max_secs,
            _sealed: valid::Sealed,
        })
    }
}

impl Settings {
    /// The connection, message and memory limits are in range.
    fn check_limits(&self) -> Result<(), ConfigError> {
        within("max-message", self.max_message, 1, 16 << 20)?;
        within("max-outbuf", self.max_outbuf, 4096, 1 << 30)?;
        // A message larger than the output bound could never be delivered to anyone.
        range(
            "max-outbuf",
            "at least --max-message + 4110 (one largest frame must fit)",
            self.max_outbuf >= valid::max_frame_bytes(self.max_message) + 14,
            self.max_outbuf.to_string(),
        )?;
        if self.max_outbuf_hard != 0 {
            range(
                "max-outbuf-hard",
                "0 (8 × --max-outbuf) or between --max-outbuf and 8589934592",
                self.max_outbuf <= self.max_outbuf_hard && self.max_outbuf_hard <= 1 << 33,
                self.max_outbuf_hard.to_string(),
            )?;
        }
        // Below one largest frame, a page still carries one message (see `session::catchup_budget`).
        within("catchup-budget", self.catchup_budget, 1 << 16, 1 << 40)?;
        within("deflate-min-bytes", self.deflate_min_bytes, 0, 16 << 20)?;
        within("deflate-level", self.deflate_level, 1, 9)?;
        within("max-rooms-per-conn", self.max_rooms_per_conn, 1, 4096)?;
        within("max-header-bytes", self.max_header_bytes, 1024, 65536)?;
        within("max-conns-per-ip", self.max_conns_per_ip, 0, 1 << 20)?;
        within("max-conns-per-user", self.max_conns_per_user, 0, 1 << 20)?;
        within("token-grace", self.token_grace_secs, 0, 86_400)?;
        within("retain-per-room", self.retain_per_room, 0, 1_000_000_000)?;
        within("max-batch-bytes", self.max_batch_bytes, 1024, 64 << 20)?;
        within("repeat-limit", self.repeat_limit, 0, 1_000_000)?;
        Ok(())
    }

    /// `--tls-cert` and `--tls-key` come together, and with TLS the output bound leaves room for what
    /// TLS holds ([`TLS_BUFFER_LIMIT`]) beside one largest frame.
    fn check_tls(&self) -> Result<Option<valid::TlsFiles>, ConfigError> {
        let files = match (&self.tls_cert, &self.tls_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => valid::TlsFiles { cert: cert.clone(), key: key.clone() },
            (Some(_), None) => return Err(ConfigError::Needs { name: "tls-cert", other: "tls-key" }),
            (None, Some(_)) => return Err(ConfigError::Needs { name: "tls-key", other: "tls-cert" }),
        };
        range(
            "max-outbuf",
            "at least --max-message + 4110 + 32768 with TLS (one largest frame and what TLS holds must fit)",
            self.max_outbuf >= valid::max_frame_bytes(self.max_message) + 14 + TLS_BUFFER_LIMIT,
            self.max_outbuf.to_string(),
        )?;
        Ok(Some(files))
    }

    /// Every duration is in range: none can overflow a deadline (`Instant + Duration` panics).
    fn check_durations(&self) -> Result<(), ConfigError> {
        within("handshake-timeout", self.handshake_timeout_secs, 1, 3600)?;
        within("metrics-idle-timeout", self.metrics_idle_timeout_secs, 1, 3600)?;
        within("flush-interval-ms", self.flush_interval_ms, 0, 60_000)?;
        within("shutdown-grace", self.shutdown_grace_secs, 0, 3600)?;
        within("outbuf-grace", self.outbuf_grace_secs, 0, 3600)?;
        within("idle-timeout", self.idle_timeout_secs, 0, 86_400)?;
        within("ping-interval", self.ping_interval_secs, 0, 86_400)?;
        // 0 only with heartbeats off (it is then never used).
        within("ping-timeout", self.ping_timeout_secs, u64::from(self.ping_interval_secs > 0), 86_400)?;
        within("repeat-window", self.repeat_window_secs, 1, 86_400)?;
        Ok(())
    }

    /// The rate limits are in range and consistent, and a JWT secret is neither empty nor the
    /// `--print-config` placeholder.
    fn check_rates(&self) -> Result<(), ConfigError> {
        within("rate-limit", self.rate_limit, 0, 1_000_000)?;
        // 0 only with the message limit off.
        within("rate-burst", self.rate_burst, u32::from(self.rate_limit > 0), 1_000_000)?;
        within("rate-limit-bytes", self.rate_limit_bytes, 0, 1 << 30)?;
        for key in &self.api_keys {
            if key == REDACTED {
                return Err(ConfigError::Redacted { name: "api-key", env: "ROOMCAST_API_KEYS" });
            }
            // The key itself is never echoed: only its length.
            range(
                "api-key",
                "at least 16 characters without whitespace",
                key.chars().count() >= 16 && !key.chars().any(char::is_whitespace),
                format!("a key of {} characters", key.chars().count()),
            )?;
        }
        if let Some(secret) = &self.jwt_secret {
            range("jwt-secret", "non-empty", !secret.is_empty(), "an empty string".into())?;
            if secret == REDACTED {
                return Err(ConfigError::Redacted { name: "jwt-secret", env: "ROOMCAST_JWT_SECRET" });
            }
        }
        Ok(())
    }

    /// Webhook URLs parse (http or https, at most 16) and come with a secret, the outbox has a
    /// database to live in, and `--webhook-ca` comes only with webhooks.
    fn check_webhooks(&self) -> Result<Vec<WebhookUrl>, ConfigError> {
        within("webhook-retry-max", self.webhook_retry_max_secs, 1, 3600)?;
        match (&self.webhook_secret, self.webhook_urls.is_empty()) {
            (None, false) => return Err(ConfigError::Needs { name: "webhook-url", other: "webhook-secret" }),
            (Some(_), true) => return Err(ConfigError::Needs { name: "webhook-secret", other: "webhook-url" }),
            (Some(secret), false) => {
                range("webhook-secret", "non-empty", !secret.is_empty(), "an empty string".into())?;
                if secret == REDACTED {
                    return Err(ConfigError::Redacted { name: "webhook-secret", env: "ROOMCAST_WEBHOOK_SECRET" });
                }
            }
            (None, true) if self.webhook_ca.is_some() => {
                return Err(ConfigError::Needs { name: "webhook-ca", other: "webhook-url" });
            }
            (None, true) => return Ok(Vec::new()),
        }
        within("webhook-url", self.webhook_urls.len(), 1, 16)?;
        range(
            "webhook-url",
            "unset with --no-persist (the webhook outbox lives in the database)",
            !self.no_persist,
            "--no-persist".into(),
        )?;
        let mut urls: Vec<WebhookUrl> = Vec::with_capacity(self.webhook_urls.len());
        for text in &self.webhook_urls {
            let url = WebhookUrl::parse(text).map_err(|reason| ConfigError::Unparsable {
                name: "webhook-url",
                rule: "an http:// or https:// URL (http[s]://host[:port]/path)",
                reason,
            })?;
            if urls.iter().any(|u| u.as_str() == url.as_str()) {
                return Err(ConfigError::Unparsable {
                    name: "webhook-url",
                    rule: "given once per URL",
                    reason: format!("{} is given twice", url.as_str()),
                });
            }
            urls.push(url);
        }
        if let Some(ca) = &self.webhook_ca {
            range(
                "webhook-ca",
                "set only with an https:// --webhook-url (it is the trust for https receivers)",
                urls.iter().any(WebhookUrl::is_tls),
                ca.display().to_string(),
            )?;
        }
        Ok(urls)
    }

    /// The cluster-mode settings are in range.
    fn check_cluster(&self) -> Result<(), ConfigError> {
        within("redis-stream-maxlen", self.redis_stream_maxlen, 1, 100_000_000)?;
        // Allocated whole at start, like --queue-capacity.
        within("redis-queue-capacity", self.redis_queue_capacity, 8, 1 << 20)?;
        range(
            "user-rate-limit",
            "a finite number, 0 or more",
            self.user_rate_limit.is_finite() && self.user_rate_limit >= 0.0,
            self.user_rate_limit.to_string(),
        )?;
        within("user-rate-limit", self.user_rate_limit, 0.0, 1_000_000.0)?;
        // 0 only with the per-user limit off.
        within("user-rate-burst", self.user_rate_burst, u32::from(self.user_rate_limit > 0.0), 1_000_000)?;
        Ok(())
    }
}

/// This process's file-descriptor limits (soft, hard), or `None` if the OS does not say.
pub fn fd_limits() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass it.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    ok.then_some((lim.rlim_cur, lim.rlim_max))
}

/// The soft file-descriptor limit of this process, raised to the hard limit first where allowed.
pub fn raise_fd_limit() -> usize {
    let Some((mut soft, hard)) = fd_limits() else { return 1024 };
    if soft < hard {
        let wanted = libc::rlimit { rlim_cur: hard, rlim_max: hard };
        // SAFETY: setrlimit only reads the struct we pass it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            soft = hard;
        }
    }
    usize::try_from(soft).unwrap_or(usize::MAX)
}

/// `--print-config` form of a repeatable secret: the placeholder once per value.
fn redacted_list<S: serde::Serializer>(values: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&vec![REDACTED; values.len()].join(","))
}

/// `--print-config` form of a repeatable flag: one comma-separated string (the file loader splits it).
fn comma_separated<S: serde::Serializer>(values: &[String], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&values.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        Settings::try_parse_from(std::iter::once("roomcast").chain(args.iter().copied())).expect("parses")
    }

    fn validate(args: &[&str]) -> Result<Config, String> {
        let settings = Settings::try_parse_from(std::iter::once("roomcast").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        settings.validate(20_000).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid_and_fill_automatic_values() {
        let cfg = validate(&[]).expect("defaults");
        assert_eq!(cfg.addr.to_string(), "127.0.0.1:8000");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(cfg.shards.get(), default_shards(cores), "--shards 0 is resolved");
        assert_eq!(cfg.max_connections.get(), 20_000 - FD_RESERVE, "--max-connections 0 is resolved");
        let with_metrics = validate(&["--metrics-addr", "127.0.0.1:9100"]).expect("valid");
        assert_eq!(
            with_metrics.max_connections.get(),
            20_000 - FD_RESERVE - 64 - OVER_CAPACITY_SLACK,
            "the metrics listener's budget keeps its descriptors"
        );
        assert!(validate(&["--metrics-addr", "127.0.0.1:9100", "--max-connections", "19900"]).is_err());
        assert_eq!([1, 2, 4, 8].map(default_shards), [1, 1, 3, 7], "one per core but one, at least one");
        assert_eq!(cfg.max_frame_bytes(), 16 * 1024 + 4096);
        assert_eq!((cfg.max_outbuf, cfg.max_outbuf_hard), (1 << 20, 8 << 20), "the hard bound is 8 × the soft one");
        assert_eq!((cfg.outbuf_grace_secs, cfg.catchup_budget), (5, 64 << 20));
        let given = validate(&["--max-outbuf", "65536", "--max-outbuf-hard", "65536"]).expect("hard = soft is valid");
        assert_eq!(given.max_outbuf_hard, 65536);
        assert_eq!(cfg.max_json_frame_bytes(), 6 * 16 * 1024 + 4096);
        assert_eq!(cfg.sync, SyncMode::Normal);
        assert_eq!(cfg.redis_url, None, "empty --redis-url is single-node mode");
        assert_eq!(cfg.node_id, None, "empty --node-id picks a random one later");
        assert_eq!(cfg.retain_per_room, None, "--retain-per-room 0 keeps everything");
        assert_eq!([cfg.batch_size, cfg.queue_capacity, cfg.history_queue].map(NonZeroUsize::get), [512, 65_536, 1024]);
    }

    #[test]
    fn given_values_are_carried_typed() {
        let cfg = validate(&[
            "--shards",
            "3",
            "--max-connections",
            "100",
            "--sync",
            "full",
            "--redis-url",
            "redis://127.0.0.1:6379/2",
            "--node-id",
            "n1",
            "--retain-per-room",
            "7",
        ])
        .expect("valid");
        assert_eq!((cfg.shards.get(), cfg.max_connections.get()), (3, 100));
        assert_eq!(cfg.sync, SyncMode::Full);
        assert_eq!(cfg.redis_url.as_ref().map(RedisUrl::as_str), Some("redis://127.0.0.1:6379/2"));
        assert_eq!(cfg.node_id.as_deref(), Some("n1"));
        assert_eq!(cfg.retain_per_room.map(NonZeroU64::get), Some(7));
        for url in ["redis://:secret@localhost", "redis://h:6380", "unix:///run/redis.sock"] {
            assert!(RedisUrl::parse(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (args, flag) in [
            (&["--shards", "257"][..], "--shards must be between 1 and 256"),
            (&["--max-outbuf", "100"][..], "--max-outbuf"),
            (&["--max-message", "2000000"][..], "--max-outbuf"),
            (&["--max-message", "0"][..], "--max-message"),
            (&["--max-rooms-per-conn", "0"][..], "--max-rooms-per-conn"),
            (&["--max-outbuf-hard", "65536"][..], "--max-outbuf-hard must be 0 (8 × --max-outbuf) or between"),
            (&["--catchup-budget", "65535"][..], "--catchup-budget must be between 65536 and 1099511627776"),
            (&["--max-header-bytes", "100"][..], "--max-header-bytes"),
            (&["--handshake-timeout", "0"][..], "--handshake-timeout"),
            (&["--batch-size", "0"][..], "--batch-size must be between 1 and 65536 (got 0)"),
            (&["--batch-size", "65537"][..], "--batch-size"),
            (&["--max-connections", "30000"][..], "--max-connections"),
            (&["--queue-capacity", "10"][..], "--queue-capacity"),
            (&["--queue-capacity", "0"][..], "--queue-capacity must be between 1024 and 1048576 (got 0)"),
            (&["--history-queue", "0"][..], "--history-queue must be between 1 and 65536 (got 0)"),
            (&["--metrics-max-connections", "0"][..], "--metrics-max-connections must be between 1 and 1024"),
            (&["--metrics-idle-timeout", "0"][..], "--metrics-idle-timeout must be between 1 and 3600"),
            (&["--redis-stream-maxlen", "0"][..], "--redis-stream-maxlen must be between 1 and 100000000"),
            (&["--redis-queue-capacity", "4"][..], "--redis-queue-capacity must be between 8 and 1048576"),
            (&["--ping-timeout", "0"][..], "--ping-timeout must be between 1 and 86400 (got 0)"),
            (&["--ping-timeout", "0"][..], "--ping-timeout"),
            (&["--rate-burst", "0"][..], "--rate-burst"),
            (&["--user-rate-limit", "NaN"][..], "--user-rate-limit"),
            (&["--user-rate-limit", "1", "--user-rate-burst", "0"][..], "--user-rate-burst"),
            (&["--jwt-secret", ""][..], "--jwt-secret"),
            (&["--redis-url", "http://127.0.0.1:6379"][..], "--redis-url must be a Redis URL"),
            (&["--redis-url", "redis://"][..], "--redis-url"),
            (&["--redis-url", " "][..], "--redis-url"),
        ] {
            let err = validate(args).expect_err("invalid");
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        assert!(validate(&["--sync", "sometimes"]).is_err());
        assert!(validate(&["--addr", "nowhere"]).is_err());
        // Off switches that make the checks above moot.
        validate(&["--ping-interval", "0", "--ping-timeout", "0", "--rate-limit", "0", "--rate-burst", "0"])
            .expect("checks apply only when the feature is on");
    }

    #[test]
    fn huge_values_that_parse_are_refused_naming_the_range() {
        let max = u64::MAX.to_string();
        for (flag, rule) in [
            ("--handshake-timeout", "between 1 and 3600"),
            ("--shutdown-grace", "between 0 and 3600"),
            ("--metrics-idle-timeout", "between 1 and 3600"),
            ("--flush-interval-ms", "between 0 and 60000"),
            ("--idle-timeout", "between 0 and 86400"),
            ("--ping-interval", "between 0 and 86400"),
            ("--ping-timeout", "between 1 and 86400"),
            ("--queue-capacity", "between 1024 and 1048576"),
            ("--history-queue", "between 1 and 65536"),
            ("--redis-queue-capacity", "between 8 and 1048576"),
            ("--redis-stream-maxlen", "between 1 and 100000000"),
            ("--max-outbuf", "between 4096 and 1073741824"),
            ("--outbuf-grace", "between 0 and 3600"),
            ("--catchup-budget", "between 65536 and 1099511627776"),
            ("--max-outbuf-hard", "0 (8 × --max-outbuf) or between --max-outbuf and 8589934592"),
            ("--max-rooms-per-conn", "between 1 and 4096"),
            ("--max-conns-per-ip", "between 0 and 1048576"),
            ("--max-conns-per-user", "between 0 and 1048576"),
            ("--token-grace", "between 0 and 86400"),
            ("--retain-per-room", "between 0 and 1000000000"),
            ("--rate-limit-bytes", "between 0 and 1073741824"),
            ("--metrics-max-connections", "between 1 and 1024"),
        ] {
            let err = validate(&[flag, &max]).expect_err(flag);
            assert_eq!(err, format!("{flag} must be {rule} (got {max})"));
        }
        for (flag, value, rule) in [
            ("--rate-limit", "4294967295", "between 0 and 1000000"),
            ("--rate-burst", "4294967295", "between 1 and 1000000"),
            ("--user-rate-limit", "1e300", "between 0 and 1000000"),
            ("--user-rate-burst", "4294967295", "between 0 and 1000000"),
        ] {
            let err = validate(&[flag, value]).expect_err(flag);
            assert!(err.starts_with(&format!("{flag} must be {rule} (got ")), "{err}");
        }
    }

    #[test]
    fn print_config_placeholders_are_refused() {
        let err = settings(&["--api-key", REDACTED]).validate(20_000).expect_err("placeholder");
        assert_eq!(err.setting(), "api-key");
        let err = settings(&["--api-key", "short"]).validate(20_000).expect_err("short");
        assert!(!err.to_string().contains("short"), "the key is not echoed: {err}");
        let cfg = validate(&["--api-key", "k-0123456789abcdef", "--api-key", "k-fedcba9876543210"]).expect("valid");
        let printed = toml::to_string(&Settings::from(&cfg)).expect("toml");
        assert!(printed.contains("api-key = \"***,***\"") && !printed.contains("k-0123"), "{printed}");
        let err = settings(&["--jwt-secret", REDACTED]).validate(20_000).expect_err("placeholder");
        assert_eq!(err.setting(), "jwt-secret");
        assert!(err.to_string().contains("ROOMCAST_JWT_SECRET"), "{err}");
        for url in ["redis://:***@127.0.0.1:6379", "redis://u:%2A%2A%2A@h/1", "unix:///run/redis.sock?pass=***"] {
            let err = settings(&["--redis-url", url]).validate(20_000).expect_err(url);
            assert_eq!(err.setting(), "redis-url", "{url}");
            assert!(err.to_string().contains("ROOMCAST_REDIS_URL"), "{err}");
        }
        // A secret that merely contains stars is a secret.
        validate(&["--jwt-secret", "****"]).expect("not the placeholder");
    }

    #[test]
    fn redis_passwords_are_redacted_and_nothing_else_changes() {
        for (url, printed) in [
            ("redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/2"),
            ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
            ("redis://:hunter2@host:6380/1", "redis://:***@host:6380/1"),
            ("redis://user:hunter2@host", "redis://user:***@host"),
            ("unix:///run/redis.sock?db=1&pass=hunter2", "unix:///run/redis.sock?db=1&pass=***"),
        ] {
            let url = RedisUrl::parse(url).expect("valid");
            assert_eq!(url.redacted(), printed);
            assert_eq!(RedisUrl::parse(printed).expect("valid").is_redacted(), printed.contains("***"), "{printed}");
        }
    }

    #[test]
    fn states_clap_cannot_produce_are_refused_too() {
        // `Settings` is plain data: validation does not rely on clap's value parsers.
        let mut hand_made = settings(&[]);
        hand_made.sync = "sometimes".into();
        let err = hand_made.validate(20_000).expect_err("not a sync mode");
        assert_eq!(err.setting(), "sync");
        assert_eq!(err.to_string(), "--sync must be normal or full (got sometimes)");
    }

    #[test]
    fn webhook_urls_need_a_secret_and_http_or_https() {
        let ok = settings(&["--webhook-url", "http://127.0.0.1:9/hook?x=1", "--webhook-secret", "s"])
            .validate(4096)
            .expect("valid");
        let url = &ok.webhook_urls[0];
        assert_eq!((url.host(), url.port(), url.path()), ("127.0.0.1", 9, "/hook?x=1"));
        let bare = WebhookUrl::parse("http://[::1]").expect("ipv6");
        assert_eq!((bare.host(), bare.port(), bare.path(), bare.host_header().as_str()), ("::1", 80, "/", "[::1]"));
        let refused = |args: &[&str]| settings(args).validate(4096).expect_err("refused").to_string();
        assert!(refused(&["--webhook-url", "http://h/"]).contains("--webhook-url needs --webhook-secret"));
        assert!(refused(&["--webhook-secret", "s"]).contains("--webhook-secret needs --webhook-url"));
        let https = WebhookUrl::parse("HTTPS://h.example/in").expect("https");
        assert!(https.is_tls());
        assert_eq!((https.host(), https.port(), https.host_header().as_str()), ("h.example", 443, "h.example"));
        let https_port = WebhookUrl::parse("https://h:8443").expect("https with a port");
        assert_eq!((https_port.port(), https_port.host_header().as_str()), (8443, "h:8443"));
        assert!(!url.is_tls());
        assert!(refused(&["--webhook-ca", "/ca.pem"]).contains("--webhook-ca needs --webhook-url"));
        let unused_ca = refused(&["--webhook-url", "http://h/", "--webhook-secret", "s", "--webhook-ca", "/ca.pem"]);
        assert!(unused_ca.contains("only with an https://"), "{unused_ca}");
        for bad in [
            "ftp://h/",
            "https://u@h/",
            "https:///p",
            "http://u:p@h/",
            "http://h:0/",
            "http://h:x/",
            "http:///p",
            "http://h/a b",
        ] {
            let text = refused(&["--webhook-url", bad, "--webhook-secret", "s"]);
            assert!(text.starts_with("--webhook-url must be"), "{bad}: {text}");
        }
        let twice = refused(&["--webhook-url", "http://h/", "--webhook-url", "http://h/", "--webhook-secret", "s"]);
        assert!(twice.contains("given twice"), "{twice}");
        let no_db = refused(&["--webhook-url", "http://h/", "--webhook-secret", "s", "--no-persist"]);
        assert!(no_db.contains("--no-persist"), "{no_db}");
        let placeholder = refused(&["--webhook-url", "http://h/", "--webhook-secret", REDACTED]);
        assert!(placeholder.contains("placeholder"), "{placeholder}");
        let printed = Settings::from(&ok);
        assert_eq!(printed.webhook_secret.as_deref(), Some(REDACTED), "never printed");
    }

    #[test]
    fn a_bad_redis_url_is_not_echoed() {
        let err = settings(&["--redis-url", "http://:hunter2@host"]).validate(20_000).expect_err("not Redis");
        assert_eq!(err.setting(), "redis-url");
        assert!(!err.to_string().contains("hunter2"), "the URL may carry a password: {err}");
    }
}
