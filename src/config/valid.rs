//! The validated configuration: [`Config`], made only by [`Settings::validate`], and the types its fields
//! use so that a refused state cannot be written ([`SyncMode`], [`RedisUrl`], `NonZero` counts, `Option`
//! instead of an empty or zero sentinel).
//!
//! Each field's default and when to change it are documented on the [`Settings`] field of the same
//! name (that text is also `--help`); the docs here say what validation guarantees.

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use redis::IntoConnectionInfo;

use super::{BlocklistAction, ENVELOPE_BYTES, JSON_ESCAPE_FACTOR, LogFormat, REDACTED, Settings};

/// A webhook receiver (`--webhook-url`): `http[s]://host[:port][/path]`, parsed once at start.
///
/// `https://` receivers are verified (name and chain) against `--webhook-ca` or the Mozilla roots
/// built in (`webpki-roots`: nothing read from the system, so a fresh machine without a CA bundle
/// works the same). No userinfo (`user:pass@`): a credential in the URL would be printed by
/// `--print-config`; receivers check the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    text: String,
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

impl WebhookUrl {
    /// Parses `text`; the error says what is wrong with it.
    ///
    /// # Errors
    /// A sentence naming the problem (scheme, host, port, userinfo, a character that cannot go on a
    /// request line).
    pub fn parse(text: &str) -> Result<WebhookUrl, String> {
        let (tls, rest) = match (text.get(..7), text.get(..8)) {
            (Some(scheme), _) if scheme.eq_ignore_ascii_case("http://") => (false, &text[7..]),
            (_, Some(scheme)) if scheme.eq_ignore_ascii_case("https://") => (true, &text[8..]),
            _ => return Err("it must start with http:// or https://".into()),
        };
        if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("it contains whitespace or a control character".into());
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], rest[at..].to_string()),
            Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("credentials in the URL (user@host) are not supported".into());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or("the IPv6 address has no closing ]")?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("the port {port:?} is not a number from 1 to 65535")),
            },
        };
        if host.is_empty() {
            return Err("it names no host".into());
        }
        Ok(WebhookUrl { text: text.to_string(), tls, host: host.to_string(), port, path })
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Host name or address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port (80, or 443 for https, when not given).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the receiver speaks TLS (`https://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Path and query for the request line (at least `/`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `Host` header's value.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let default_port = if self.tls { 443 } else { 80 };
        if self.port == default_port { host } else { format!("{host}:{}", self.port) }
    }
}

/// How the history writer commits (`--sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// `normal` (default): survives process crashes.
    Normal,
    /// `full`: fsyncs every batch, survives power loss.
    Full,
}

impl SyncMode {
    /// The word the flag and the file use.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Normal => "normal",
            SyncMode::Full => "full",
        }
    }
}

/// A Redis URL the `redis` crate accepts (`redis://[user][:password@]host[:port][/db]`,
/// `unix:///path/to/socket`; `rediss://` only with a TLS feature of the crate, which this build does not
/// enable), checked with the same parser the cluster client uses, so opening it cannot fail on its form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// Checks `text` as a Redis URL.
    ///
    /// # Errors
    /// The `redis` crate's reason (`Redis URL did not parse`, `Missing hostname`, ...).
    pub fn parse(text: &str) -> Result<RedisUrl, redis::RedisError> {
        text.into_connection_info()?;
        Ok(RedisUrl(text.to_string()))
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with its password (`redis://user:PASSWORD@host`, `unix:///path?pass=PASSWORD`)
    /// replaced by [`REDACTED`]; as given when it has none. What `--print-config` prints.
    pub fn redacted(&self) -> String {
        // Parsed by the same parser that accepted it at validation; should that ever fail, print
        // nothing of it rather than risk the password.
        let Some(mut url) = redis::parse_redis_url(&self.0) else { return REDACTED.to_string() };
        let in_query = url.query_pairs().any(|(key, _)| key == "pass");
        if url.password().is_none() && !in_query {
            return self.0.clone();
        }
        if url.password().is_some() && url.set_password(Some(REDACTED)).is_err() {
            return REDACTED.to_string();
        }
        if in_query {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "pass" { REDACTED.to_string() } else { value.into_owned() };
                    (key.into_owned(), value)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }

    /// Whether its password is the [`REDACTED`] placeholder (a `--print-config` output used as is).
    pub fn is_redacted(&self) -> bool {
        self.0.as_str().into_connection_info().is_ok_and(|info| info.redis_settings().password() == Some(REDACTED))
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The certificate chain and key files of `--tls-cert` and `--tls-key` (read by `tls::TlsConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
}

/// Keeps [`Config`] from being built anywhere but in [`Settings::validate`].
#[derive(Debug, Clone)]
pub(super) struct Sealed;

/// The configuration the server runs with: every range checked, automatic values resolved.
///
/// Made only by [`Settings::validate`]; written back as [`Settings`] (`Settings::from(&config)`) for
/// `--print-config`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`--addr`).
    pub addr: SocketAddr,
    /// The separate `/metrics` listener (`--metrics-addr`); `None`: `/metrics` is served on `addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// Open connections to `metrics_addr` at most, 1 to 1024; a budget of its own
    /// (`--metrics-max-connections`).
    pub metrics_max_connections: NonZeroUsize,
    /// Seconds a `metrics_addr` connection may take over a request or idle between requests, 1 to
    /// 3600 (`--metrics-idle-timeout`; see [`Config::metrics_idle_timeout`]).
    pub metrics_idle_timeout_secs: u64,
    /// Event-loop threads, 1 to 256 (`--shards`, `0` resolved by [`default_shards`](super::default_shards)).
    pub shards: NonZeroUsize,
    /// SQLite history file (`--db`).
    pub db: PathBuf,
    /// Store nothing (`--no-persist`).
    pub no_persist: bool,
    /// Largest message content in bytes, 1 to 16 MiB (`--max-message`).
    pub max_message: usize,
    /// Per-connection output soft bound in bytes, 4096 to 1 GiB and at least one largest frame
    /// (`--max-outbuf`): over it for `outbuf_grace_secs`, a slow consumer.
    pub max_outbuf: usize,
    /// Per-connection output hard bound in bytes, `max_outbuf` to 8 GiB (`--max-outbuf-hard`, `0`
    /// resolved to 8 × `max_outbuf`): a frame that would pass it makes a slow consumer at once.
    pub max_outbuf_hard: usize,
    /// Seconds an output queue may stay over `max_outbuf`, 0 to 3600 (`--outbuf-grace`; see
    /// [`Config::outbuf_grace`]).
    pub outbuf_grace_secs: u64,
    /// Bytes of resume pages queued on all connections together, 64 KiB to 1 TiB
    /// (`--catchup-budget`).
    pub catchup_budget: usize,
    /// Negotiate permessage-deflate with clients that offer it (`--deflate`).
    pub deflate: bool,
    /// Messages below this many bytes go uncompressed to deflate clients, 0 to 16 MiB
    /// (`--deflate-min-bytes`).
    pub deflate_min_bytes: usize,
    /// zlib level of compressed broadcast frames, 1 to 9 (`--deflate-level`).
    pub deflate_level: u32,
    /// Most open connections on `addr`, at most the fd limit minus 64, and minus the metrics listener's
    /// budget plus 32 when it exists (`--max-connections`, `0` resolved to that).
    pub max_connections: NonZeroUsize,
    /// Most rooms per JSON connection, 1 to 4096 (`--max-rooms-per-conn`).
    pub max_rooms_per_conn: usize,
    /// Largest HTTP request head, 1024 to 65536 bytes (`--max-header-bytes`).
    pub max_header_bytes: usize,
    /// Seconds for the request head / handshake, 1 to 3600 (`--handshake-timeout`; see
    /// [`Config::handshake_timeout`]).
    pub handshake_timeout_secs: u64,
    /// TLS on `addr` (`--tls-cert` and `--tls-key`, both or neither); `None`: plain.
    pub tls: Option<TlsFiles>,
    /// TLS handshakes in progress per shard at most, 1 to 65536 (`--tls-max-handshakes`).
    pub tls_max_handshakes: NonZeroUsize,
    /// Web client directory instead of the embedded copy (`--static-dir`).
    pub static_dir: Option<PathBuf>,
    /// Log filter (`--log-level`; checked when logging starts).
    pub log_level: String,
    /// Log line format (`--log-format`).
    pub log_format: LogFormat,
    /// History writer: rows per transaction, 1 to 65536 (`--batch-size`).
    pub batch_size: NonZeroUsize,
    /// History writer: milliseconds a batch may wait, 0 to 60000 (`--flush-interval-ms`; see
    /// [`Config::flush_interval`]).
    pub flush_interval_ms: u64,
    /// History writer: queue bound in messages, 1024 to 2^20 (`--queue-capacity`; allocated at start).
    pub queue_capacity: NonZeroUsize,
    /// History reads waiting for a reader thread, 1 to 65536 (`--history-queue`; allocated at start).
    pub history_queue: NonZeroUsize,
    /// How the history writer commits (`--sync`).
    pub sync: SyncMode,
    /// Messages kept per room, at most 10^9; `None` keeps everything (`--retain-per-room 0`).
    pub retain_per_room: Option<NonZeroU64>,
    /// Seconds to wait for close acknowledgements on shutdown, 0 to 3600 (`--shutdown-grace`).
    pub shutdown_grace_secs: u64,
    /// HS256 shared secret, non-empty and not the placeholder [`REDACTED`] (`--jwt-secret`); never
    /// printed.
    pub jwt_secret: Option<String>,
    /// RS256/ES256 PEM public key (`--jwt-public-key`); exclusive with `jwt_secret`.
    pub jwt_public_key: Option<PathBuf>,
    /// Required `aud` of tokens (`--jwt-audience`).
    pub jwt_audience: Option<String>,
    /// Browser origins allowed to open WebSockets (`--allowed-origin`); empty: same host only.
    pub allowed_origins: Vec<String>,
    /// Messages per second per connection, at most 10^6; 0: off (`--rate-limit`).
    pub rate_limit: u32,
    /// Message burst, at most 10^6 and at least 1 when `rate_limit` is on (`--rate-burst`).
    pub rate_burst: u32,
    /// Payload bytes per second per connection, at most 1 GiB; 0: off (`--rate-limit-bytes`).
    pub rate_limit_bytes: u64,
    /// Open connections per client IP, at most 2^20; 0: no limit (`--max-conns-per-ip`).
    pub max_conns_per_ip: usize,
    /// Open WebSocket connections per verified user on this node, at most 2^20; 0: no limit
    /// (`--max-conns-per-user`).
    pub max_conns_per_user: usize,
    /// Seconds an expired token may still be refreshed before the close, at most 86400
    /// (`--token-grace`; see [`Config::token_grace`]).
    pub token_grace_secs: u64,
    /// Seconds of client silence before closing, at most 86400; 0: off (`--idle-timeout`; see
    /// [`Config::idle_timeout`]).
    pub idle_timeout_secs: u64,
    /// Seconds of client silence before a ping, at most 86400; 0: off (`--ping-interval`; see
    /// [`Config::heartbeat`]).
    pub ping_interval_secs: u64,
    /// Seconds to answer a ping, at most 86400 and at least 1 when pings are on (`--ping-timeout`).
    pub ping_timeout_secs: u64,
    /// Cluster mode's Redis, its password not the placeholder [`REDACTED`]; `None`: one node, no Redis
    /// (`--redis-url`, empty).
    pub redis_url: Option<RedisUrl>,
    /// This node's cluster name; `None`: a random one is picked (`--node-id`, empty).
    pub node_id: Option<String>,
    /// Cluster mode: approximate messages kept per room stream, 1 to 10^8 (`--redis-stream-maxlen`).
    pub redis_stream_maxlen: u64,
    /// Cluster mode: bound of the Redis queue and replay queue, 1024 to 2^20 (`--redis-queue-capacity`).
    pub redis_queue_capacity: usize,
    /// Cluster mode: messages per second per user name, 0 to 10^6; 0: off (`--user-rate-limit`).
    pub user_rate_limit: f64,
    /// Cluster mode: per-user burst, at most 10^6 and at least 1 when `user_rate_limit` is on
    /// (`--user-rate-burst`).
    pub user_rate_burst: u32,
    /// Server API keys, each at least 16 characters, not the placeholder (`--api-key`); never printed.
    pub api_keys: Vec<String>,
    /// Server API keys file, read at start and on SIGHUP (`--api-keys-file`).
    pub api_keys_file: Option<PathBuf>,
    /// Largest `POST /api/publish` body, 1 KiB to 64 MiB (`--max-batch-bytes`).
    pub max_batch_bytes: usize,
    /// The word list of the content filter, read at start and on SIGHUP; `None`: no filter
    /// (`--blocklist`).
    pub blocklist: Option<PathBuf>,
    /// What a blocklist match does (`--blocklist-action`).
    pub blocklist_action: BlocklistAction,
    /// Identical messages per user within the window before refusals, at most 10^6; 0: off
    /// (`--repeat-limit`).
    pub repeat_limit: u32,
    /// The repeat window in seconds, 1 to 86400 (`--repeat-window`; see [`Config::repeat_window`]).
    pub repeat_window_secs: u64,
    /// Where room events are POSTed, at most 16, each once (`--webhook-url`); empty: no webhooks.
    pub webhook_urls: Vec<WebhookUrl>,
    /// The webhooks' HMAC key, non-empty, present exactly when `webhook_urls` is not empty
    /// (`--webhook-secret`); never printed.
    pub webhook_secret: Option<String>,
    /// The only CA certificates trusted for `https://` receivers (`--webhook-ca`); `None`: the
    /// Mozilla roots built in.
    pub webhook_ca: Option<std::path::PathBuf>,
    /// Webhook outbox rows at most, 1 to 10^7 (`--webhook-outbox`).
    pub webhook_outbox: NonZeroUsize,
    /// Longest wait between two webhook attempts, 1 to 3600 s (`--webhook-retry-max`).
    pub webhook_retry_max_secs: u64,
    /// Only [`Settings::validate`] can write this.
    pub(super) _sealed: Sealed,
}

/// Largest frame from a text-format client with `max_message` bytes of content: see
/// [`Config::max_frame_bytes`].
pub(super) fn max_frame_bytes(max_message: usize) -> usize {
    max_message + ENVELOPE_BYTES
}

impl Config {
    /// Largest WebSocket frame or message accepted from a text-format client: the content limit plus
    /// 4 KiB (the content is the payload, verbatim).
    pub fn max_frame_bytes(&self) -> usize {
        max_frame_bytes(self.max_message)
    }

    /// Largest WebSocket frame or message accepted from a JSON client: room for a `max_message` content
    /// written entirely in `\u00XX` escapes (6 bytes per content byte) plus the envelope. The content
    /// limit itself is judged on the unescaped content (`message_too_large`, connection kept).
    pub fn max_json_frame_bytes(&self) -> usize {
        self.max_message.saturating_mul(JSON_ESCAPE_FACTOR).saturating_add(ENVELOPE_BYTES)
    }

    /// How long an output queue may stay over the soft bound (`max_outbuf`) before its client is
    /// closed as a slow consumer.
    pub fn outbuf_grace(&self) -> Duration {
        Duration::from_secs(self.outbuf_grace_secs)
    }

    /// How long a client may take over its request head or handshake.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// How long a connection to the `--metrics-addr` listener may take over a request, or stay idle
    /// between keep-alive requests.
    pub fn metrics_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.metrics_idle_timeout_secs)
    }

    /// How long a connection whose token reached `exp` may still refresh it before it is closed.
    pub fn token_grace(&self) -> Duration {
        Duration::from_secs(self.token_grace_secs)
    }

    /// How long a WebSocket client may send nothing (`None`: no limit).
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_secs > 0).then(|| Duration::from_secs(self.idle_timeout_secs))
    }

    /// Client silence after which a ping is sent, and how long the answer may take (`None`: off).
    pub fn heartbeat(&self) -> Option<(Duration, Duration)> {
        (self.ping_interval_secs > 0)
            .then(|| (Duration::from_secs(self.ping_interval_secs), Duration::from_secs(self.ping_timeout_secs)))
    }

    /// How long identical messages count towards `--repeat-limit`.
    pub fn repeat_window(&self) -> Duration {
        Duration::from_secs(self.repeat_window_secs)
    }

    /// How long the history writer lets a batch wait.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }
}

/// The settings that validate to `config` (automatic values as resolved, `None` as the empty or zero
/// sentinel), secrets replaced by [`REDACTED`]: what `--print-config` prints. Without secrets it reads
/// back as a file to the same configuration; with them it is refused until the real secrets are set
/// (the environment overrides the file's placeholders).
impl From<&Config> for Settings {
    fn from(config: &Config) -> Settings {
        Settings {
            config: None,
            print_config: false,
            addr: config.addr,
            metrics_addr: config.metrics_addr,
            metrics_max_connections: config.metrics_max_connections.get(),
            metrics_idle_timeout_secs: config.metrics_idle_timeout_secs,
            shards: config.shards.get(),
            db: config.db.clone(),
            no_persist: config.no_persist,
            max_message: config.max_message,
            max_outbuf: config.max_outbuf,
            max_outbuf_hard: config.max_outbuf_hard,
            outbuf_grace_secs: config.outbuf_grace_secs,
            catchup_budget: config.catchup_budget,
            deflate: config.deflate,
            deflate_min_bytes: config.deflate_min_bytes,
            deflate_level: config.deflate_level,
            max_connections: config.max_connections.get(),
            max_rooms_per_conn: config.max_rooms_per_conn,
            max_header_bytes: config.max_header_bytes,
            handshake_timeout_secs: config.handshake_timeout_secs,
            tls_cert: config.tls.as_ref().map(|t| t.cert.clone()),
            tls_key: config.tls.as_ref().map(|t| t.key.clone()),
            tls_max_handshakes: config.tls_max_handshakes.get(),
            static_dir: config.static_dir.clone(),
            log_level: config.log_level.clone(),
            log_format: config.log_format,
            batch_size: config.batch_size.get(),
            flush_interval_ms: config.flush_interval_ms,
            queue_capacity: config.queue_capacity.get(),
            history_queue: config.history_queue.get(),
            sync: config.sync.as_str().to_string(),
            retain_per_room: config.retain_per_room.map_or(0, NonZeroU64::get),
            shutdown_grace_secs: config.shutdown_grace_secs,
            // Secrets are never printed: the placeholder refuses to start when read back (see REDACTED).
            jwt_secret: config.jwt_secret.as_ref().map(|_| REDACTED.to_string()),
            jwt_public_key: config.jwt_public_key.clone(),
            jwt_audience: config.jwt_audience.clone(),
            allowed_origins: config.allowed_origins.clone(),
            rate_limit: config.rate_limit,
            rate_burst: config.rate_burst,
            rate_limit_bytes: config.rate_limit_bytes,
            max_conns_per_ip: config.max_conns_per_ip,
            max_conns_per_user: config.max_conns_per_user,
            token_grace_secs: config.token_grace_secs,
            idle_timeout_secs: config.idle_timeout_secs,
            ping_interval_secs: config.ping_interval_secs,
            ping_timeout_secs: config.ping_timeout_secs,
            redis_url: config.redis_url.as_ref().map_or_else(String::new, RedisUrl::redacted),
            node_id: config.node_id.clone().unwrap_or_default(),
            redis_stream_maxlen: config.redis_stream_maxlen,
            redis_queue_capacity: config.redis_queue_capacity,
            user_rate_limit: config.user_rate_limit,
            user_rate_burst: config.user_rate_burst,
            // Secrets are never printed (see REDACTED).
            api_keys: config.api_keys.iter().map(|_| REDACTED.to_string()).collect(),
            api_keys_file: config.api_keys_file.clone(),
            max_batch_bytes: config.max_batch_bytes,
            blocklist: config.blocklist.clone(),
            blocklist_action: config.blocklist_action,
            repeat_limit: config.repeat_limit,
            repeat_window_secs: config.repeat_window_secs,
            webhook_urls: config.webhook_urls.iter().map(|u| u.as_str().to_string()).collect(),
            // Secrets are never printed (see REDACTED).
            webhook_secret: config.webhook_secret.as_ref().map(|_| REDACTED.to_string()),
            webhook_ca: config.webhook_ca.clone(),
            webhook_outbox: config.webhook_outbox.get(),
            webhook_retry_max_secs: config.webhook_retry_max_secs,
        }
    }
}
