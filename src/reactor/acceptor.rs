//! The acceptor thread: owns the listening socket, accepts, and hands connections to shards.
//!
//! Connections go to shards round-robin: that keeps shards balanced even when a few clients open many
//! connections (SO_REUSEPORT hashes by address and port), and one accepting thread is far from this
//! machine's accept ceiling (see ARCHITECTURE.md for what was and was not measured). Over `max_connections` a connection is still handed to a
//! shard, which answers 503; past a further slack it is closed at once so descriptors stay bounded.
//! With `--metrics-addr` the same thread also accepts on that second listener and tags its connections
//! `ops_only` (served `/metrics`, `/healthz`, `/readyz` only; see `session::http_session`).
//!
//! Each listener has its own budget: the main one `--max-connections` (and `--max-conns-per-ip`),
//! counted in `open_conns`; the metrics one `--metrics-max-connections`, counted in `ops_conns`, with
//! the same 503-then-close rule and no per-address slot. A main port full of clients therefore leaves
//! health checks and scrapes answered, and connections to the metrics port cannot lock clients out.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::bus::{ShardMsg, Shards};
use crate::limits::per_ip::{IpSlot, PerIpLimiter};
use crate::metrics::AcceptorMetrics;

/// Token of the listening socket.
const LISTENER: Token = Token(0);
/// Token of the acceptor's waker (used to stop it).
pub(crate) const WAKER: Token = Token(1);
/// Token of the `--metrics-addr` listener.
const METRICS_LISTENER: Token = Token(2);
/// Connections accepted past a listener's limit only to be told 503; beyond this they are closed unread.
const OVER_CAPACITY_SLACK: usize = crate::config::OVER_CAPACITY_SLACK;

/// Creates the listening socket with a deep backlog (connect storms) and SO_REUSEADDR (fast restarts).
///
/// # Errors
/// The OS's refusal to create, bind or listen.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// The acceptor loop's state.
pub(crate) struct Acceptor {
    /// Its poll (the listener and the waker are registered in it).
    pub(crate) poll: Poll,
    /// The listening socket.
    pub(crate) listener: TcpListener,
    /// The `--metrics-addr` listening socket: its connections are served the operations endpoints only.
    pub(crate) metrics_listener: Option<TcpListener>,
    /// The shards' inboxes (connections are handed over round-robin).
    pub(crate) shards: Arc<Shards>,
    /// Open connections of the main listener across shards.
    pub(crate) open_conns: Arc<AtomicUsize>,
    /// Connection limit of the main listener (`--max-connections`).
    pub(crate) max_connections: usize,
    /// Open connections of the `--metrics-addr` listener across shards.
    pub(crate) ops_conns: Arc<AtomicUsize>,
    /// Connection limit of the `--metrics-addr` listener (`--metrics-max-connections`).
    pub(crate) max_ops_connections: usize,
    /// Connections per client address (`--max-conns-per-ip`).
    pub(crate) per_ip: Arc<PerIpLimiter>,
    /// Set to stop the loop (then wake it).
    pub(crate) stop: Arc<AtomicBool>,
    /// Accepted and refused counts (this thread is their only writer).
    pub(crate) metrics: Arc<AcceptorMetrics>,
}

impl Acceptor {
    /// Creates the poll and waker for the listeners (`metrics`: the `--metrics-addr` one, if any).
    ///
    /// # Errors
    /// The OS refusing epoll or the eventfd.
    pub(crate) fn prepare(
        mut listener: TcpListener,
        mut metrics: Option<TcpListener>,
    ) -> io::Result<(Poll, TcpListener, Option<TcpListener>, Arc<Waker>)> {
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(metrics) = metrics.as_mut() {
            poll.registry().register(metrics, METRICS_LISTENER, Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok((poll, listener, metrics, waker))
    }

    /// Accepts until stopped.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(64);
        let mut turn = Turn { next_shard: [0, 0], refusing: false };
        let mut backoff: Option<Duration> = None;
        loop {
            if let Err(err) = self.poll.poll(&mut events, backoff)
                && err.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(%err, "acceptor poll failed; no longer accepting");
                return;
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            // Edge-triggered: drain both listeners whatever woke us (cheap: one WouldBlock each).
            let main = self.accept_all(false, &mut turn);
            let ops = self.accept_all(true, &mut turn);
            backoff = main.or(ops);
        }
    }

    /// Accepts every pending connection of the main listener (or, with `ops_only`, of the metrics
    /// listener) and hands each to a shard. Returns a retry delay when `accept` failed for want of
    /// descriptors or buffers.
    fn accept_all(&self, ops_only: bool, turn: &mut Turn) -> Option<Duration> {
        let (listener, open_conns, limit) = if ops_only {
            (self.metrics_listener.as_ref()?, &self.ops_conns, self.max_ops_connections)
        } else {
            (&self.listener, &self.open_conns, self.max_connections)
        };
        let n_shards = self.shards.len();
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.metrics.accepted.inc();
                    let open = open_conns.fetch_add(1, Ordering::Relaxed) + 1;
                    if open > limit + OVER_CAPACITY_SLACK {
                        open_conns.fetch_sub(1, Ordering::Relaxed);
                        self.metrics.refused.inc();
                        if !turn.refusing {
                            turn.refusing = true;
                            tracing::warn!(
                                open,
                                limit,
                                metrics_listener = ops_only,
                                "over the connection limit: closing new connections unread"
                            );
                        }
                        drop(stream);
                        continue;
                    }
                    turn.refusing = false;
                    let _ = stream.set_nodelay(true);
                    crate::limits::keepalive::enable(&stream);
                    let over_capacity = open > limit;
                    // The metrics listener's budget is its own: its connections take no per-address
                    // slot, so a scraper cannot crowd out clients from its address, nor they it.
                    let ip_slot = if ops_only { IpSlot::untracked() } else { self.per_ip.acquire(peer.ip()) };
                    let msg = ShardMsg::Accept { stream, peer, over_capacity, ops_only, ip_slot };
                    let next = &mut turn.next_shard[usize::from(ops_only)];
                    self.shards.send(*next, msg);
                    *next = (*next + 1) % n_shards;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // EMFILE/ENFILE/ENOBUFS: the pending connection stays queued; retry shortly
                    // (edge-triggered polling would not report it again).
                    tracing::warn!(%err, "accept failed; retrying in 50 ms");
                    return Some(Duration::from_millis(50));
                }
            }
        }
    }
}

/// What the accept loop carries from one connection to the next.
struct Turn {
    /// Shard the next connection of the main listener (`[0]`) and of the metrics listener (`[1]`)
    /// goes to: round-robin per listener, so scrapes do not skew how clients spread over shards.
    next_shard: [usize; 2],
    /// Inside a streak of connections closed unread for being over the limit (logged once per streak).
    refusing: bool,
}
