//! Command-line interface: subcommands per scenario and their shared option groups.

use crate::protocol::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Parser)]
#[command(
    name = "roomcast-load",
    version,
    about = "Load generator and latency meter for WebSocket chat/broadcast servers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Constant-rate broadcast: latency (corrected and raw), loss, duplicates, reordering.
    Broadcast(BroadcastArgs),
    /// Open connections as fast as possible (or at --connect-rate): handshake latency, failures.
    Connect(ConnectArgs),
    /// Hold idle connections for a duration, pinging them.
    Hold(HoldArgs),
    /// HTTP GETs of room history at a constant rate, following cursors.
    History(HistoryArgs),
    /// Raise the broadcast rate in steps until p99 exceeds a bound or loss appears.
    Ramp(RampArgs),
    /// Broadcast while a fraction of clients drop abruptly and reconnect.
    Churn(ChurnArgs),
    /// Drop every client at once (or restart the server); all reconnect with resume (`since`).
    Avalanche(AvalancheArgs),
    /// Compare two --json reports side by side.
    Compare(CompareArgs),
}

/// Options every WebSocket scenario shares.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Server endpoint (ws:// or wss://; wss needs --ca or --insecure).
    #[arg(long, default_value = "ws://127.0.0.1:8000/ws/chat")]
    pub url: String,
    /// wss://: trust the CA certificates in this PEM file.
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    /// wss://: accept any server certificate (handshake signatures are still checked).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// wss://: no TLS session resumption (every handshake in full); by default each client keeps
    /// its own ticket and resumes on reconnect.
    #[arg(long)]
    pub no_tls_resumption: bool,
    /// Number of client connections.
    #[arg(long, default_value_t = 100)]
    pub conns: u32,
    /// Rooms the connections are spread over (connection i joins room-(i % rooms)).
    #[arg(long, default_value_t = 1)]
    pub rooms: u32,
    /// Do not append ?room=...; only valid with --rooms 1 and --format text.
    #[arg(long)]
    pub no_room_param: bool,
    /// Wire protocol: plain text echo (seed) or roomcast JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Offer permessage-deflate (RFC 7692) and inflate compressed server messages; the report says
    /// on how many connections it was negotiated and counts the bytes on the wire both ways.
    #[arg(long)]
    pub deflate: bool,
    /// Worker threads (default: number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Bind client sockets round-robin to these source addresses, e.g. 127.0.0.1-127.0.0.8.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Connections opened per second (default: as fast as possible).
    #[arg(long)]
    pub connect_rate: Option<f64>,
    /// Give up on a connection attempt after this long.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub output: Output,
}

/// Report outputs and CI thresholds.
#[derive(Debug, Args, Clone)]
pub struct Output {
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Write the full report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the main latency histogram as HdrHistogram percentile distribution (ms).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write a latency-by-percentile SVG plot.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Exit with status 3 if the main p99 latency exceeds this (e.g. 5ms).
    #[arg(long, value_parser = duration)]
    pub fail_if_p99_over: Option<Duration>,
    /// Exit with status 3 if any message was lost.
    #[arg(long)]
    pub fail_if_lost: bool,
}

/// Traffic shape of broadcast-like scenarios.
#[derive(Debug, Args, Clone)]
pub struct Traffic {
    /// Connections that send (connections 0..S, spread over the rooms).
    #[arg(long, default_value_t = 10)]
    pub senders: u32,
    /// Total messages per second over all senders.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Message payload size in bytes (the marker is padded to this).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// What pads the marker up to --size: `pad` (`x` repeated) or `chat` (English-like chat
    /// sentences from a built-in word list, the same for the same sender and sequence number: for
    /// measuring permessage-deflate on text like a chat's).
    #[arg(long, value_enum, default_value_t = crate::marker::Text::Pad)]
    pub text: crate::marker::Text,
    /// Measured duration.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// Unmeasured warmup before it.
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub warmup: Duration,
    /// How long to wait for stragglers after the last send.
    #[arg(long, value_parser = duration, default_value = "5s")]
    pub drain: Duration,
    /// `--format json`: this fraction of the scheduled sends (0–1) are `edit`s of the sender's
    /// latest own message instead of new messages; members receive `edited`, measured like a
    /// message and reported apart (latency by kind).
    #[arg(long, default_value_t = 0.0)]
    pub edit_fraction: f64,
    /// `--format json`: connections 0..N also send `typing` every `--typing-interval`; the report
    /// counts the `typing` events received against the server's forwarding limit.
    #[arg(long, default_value_t = 0)]
    pub typists: u32,
    /// How often each typist sends `typing`.
    #[arg(long, value_parser = duration, default_value = "500ms")]
    pub typing_interval: Duration,
}

#[derive(Debug, Args)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub traffic: Traffic,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    #[command(flatten)]
    pub common: Common,
    /// How long to hold the connections.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    /// Ping every connection this often.
    #[arg(long, value_parser = duration, default_value = "1s")]
    pub ping_interval: Duration,
}

#[derive(Debug, Args)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub traffic: Traffic,
    /// Fraction of non-sending clients dropped at each churn tick.
    #[arg(long, default_value_t = 0.1)]
    pub churn_fraction: f64,
    /// Time between churn ticks.
    #[arg(long, value_parser = duration, default_value = "1s")]
    pub churn_interval: Duration,
}

#[derive(Debug, Args)]
pub struct AvalancheArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub traffic: Traffic,
    /// The outage: reset every client's TCP connection at once.
    #[arg(long, conflicts_with = "restart_cmd")]
    pub drop: bool,
    /// The outage: run this shell command (`sh -c`), which restarts the server.
    #[arg(long)]
    pub restart_cmd: Option<String>,
    /// How far into the measured window (--duration) the outage begins.
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub outage_at: Duration,
    /// --drop: how long the clients stay away before reconnecting.
    #[arg(long, value_parser = duration, default_value = "3s")]
    pub outage: Duration,
    /// First reconnect attempts are spread uniformly over this; failed attempts then back off like
    /// the web client (between half and all of min(15 s, 500 ms × 2^n)).
    #[arg(long, value_parser = duration, default_value = "1s")]
    pub jitter: Duration,
    /// A client whose first connect fails (refused, reset, closed before `joined`, timed out: e.g.
    /// a TLS server over its bound on handshakes in progress) tries again up to this many times,
    /// backing off like a reconnect; the report counts the retries (`first_connect_retries`).
    #[arg(long, default_value_t = 8)]
    pub connect_retries: u32,
    /// Sample this server process's CPU and RSS from the outage on.
    #[arg(long, conflicts_with = "server_pid_file")]
    pub server_pid: Option<u32>,
    /// Like --server-pid, re-reading the pid from this file at every sample (follows a restart).
    #[arg(long)]
    pub server_pid_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RampArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub traffic: Traffic,
    /// Messages/s added per step (default: the starting --rate).
    #[arg(long)]
    pub ramp_step: Option<f64>,
    /// Maximum number of steps.
    #[arg(long, default_value_t = 10)]
    pub max_steps: u32,
    /// A step is sustainable while corrected p99 stays under this and nothing is lost.
    #[arg(long, value_parser = duration, default_value = "10ms")]
    pub p99_bound: Duration,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Server base URL (http://).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Room whose history is read.
    #[arg(long, default_value = "room-0")]
    pub room: String,
    /// Requests per second in total.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Page size.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Keep-alive HTTP connections (one thread each).
    #[arg(long, default_value_t = 4)]
    pub connections: u32,
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub duration: Duration,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Baseline report (--json output).
    pub a: PathBuf,
    /// Report compared against it.
    pub b: PathBuf,
}
