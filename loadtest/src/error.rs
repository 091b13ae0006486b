//! Typed errors of the generator: configuration, socket, handshake and protocol failures.

use thiserror::Error;

/// Anything that stops a run or a connection.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("invalid argument: {0}")]
    BadArg(String),
    #[error(
        "--conns {needed} needs about {needed_fds} file descriptors but RLIMIT_NOFILE is {limit}; raise it (ulimit -n) or lower --conns"
    )]
    FdLimit { needed: usize, needed_fds: u64, limit: u64 },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("report error: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no connection could be established ({0})")]
    NoConnections(String),
    #[error("{0}")]
    Other(String),
}

/// Why a WebSocket handshake was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("HTTP status {0} instead of 101")]
    Status(u16),
    #[error("malformed HTTP response")]
    Malformed,
    #[error("response headers too large")]
    TooLarge,
    #[error("missing or wrong Upgrade header")]
    NoUpgrade,
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
}

/// A violation of the framing protocol by the peer.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame header invalid")]
    BadHeader,
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(u64),
    #[error("continuation frame without a started message")]
    UnexpectedContinuation,
    #[error("fragmented control frame")]
    FragmentedControl,
    #[error("compressed frame (RSV1) without permessage-deflate, or on a continuation or control frame")]
    UnexpectedCompression,
    #[error("compressed message does not inflate")]
    BadDeflate,
}
