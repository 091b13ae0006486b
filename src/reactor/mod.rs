//! The reactor: threads, polls and tokens. Starts the acceptor and the shards, stops them in order.
//!
//! [`Server::start`] binds the listener, opens the store, builds one `Poll` + `Waker` + inbox per shard,
//! the shared [`Hub`], and spawns the threads; [`Server::shutdown`] stops accepting, tells every shard
//! to close its clients with 1001, joins them, then drains the store.

pub mod acceptor;
mod handshakes;
pub mod shard;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use mio::{Poll, Waker};
use thiserror::Error;

use crate::api::keys::ApiKeys;
use crate::api::{Api, ApiError, KeysError};
pub use crate::auth::AuthConfigError;
use crate::bus::{ShardInbox, ShardMsg, Shards};
pub use crate::cluster::ClusterError;
use crate::cluster::{self, Cluster, ClusterConfig, ClusterInput};
use crate::config::{Config, SyncMode, WebhookUrl};
use crate::conn::tls::TlsAccept;
use crate::limits::per_ip::PerIpLimiter;
pub use crate::moderation::BlocklistError;
use crate::moderation::Moderator;
use crate::room::hub::Hub;
use crate::room::sequence::IdSequence;
use crate::room::sequencer::LocalSequencer;
use crate::room::sink::Sink;
use crate::session::catchup_budget::CatchupBudget;
use crate::session::gate::Gate;
use crate::session::{ShardCtx, Shared};
use crate::store::{self, Store, StoreConfig, StoreError};
use crate::telemetry::Telemetry;
use crate::tls::TlsConfig;
pub use crate::tls::TlsError;
use crate::webhook::{WebhookConfig, Webhooks};
use acceptor::Acceptor;
use shard::Shard;

/// Why the server could not start or stop cleanly.
#[derive(Debug, Error)]
pub enum ServerError {
    /// Binding the listening address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// Creating a poll, waker or thread failed.
    #[error("cannot start the event loop: {0}")]
    Reactor(#[from] io::Error),
    /// The history database could not be opened or drained.
    #[error("history database: {0}")]
    Store(#[from] StoreError),
    /// Authentication could not be set up (unreadable or unusable key).
    #[error("authentication setup failed")]
    Auth(#[from] AuthConfigError),
    /// The TLS certificate or key could not be used (the error names the file).
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// Cluster mode could not be set up.
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    /// The blocklist could not be loaded (the error names the file and the line).
    #[error("{0}")]
    Blocklist(#[from] BlocklistError),
    /// The server API could not be set up (keys file, its state in the database).
    #[error("server API: {0}")]
    Api(#[from] ApiError),
    /// A thread panicked (a bug); the message says which.
    #[error("a {0} thread panicked")]
    Panicked(&'static str),
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    hub: Arc<Hub>,
    shard_router: Arc<Shards>,
    store: Option<Arc<Store>>,
    acceptor: JoinHandle<()>,
    acceptor_waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    shards: Vec<JoinHandle<io::Result<()>>>,
    telemetry: Arc<Telemetry>,
    cluster: Option<Cluster>,
    tls: Option<Arc<TlsConfig>>,
    api: Arc<Api>,
    moderation: Arc<Moderator>,
    webhooks: Option<Webhooks>,
}

impl Server {
    /// Binds, opens the store and starts every thread.
    ///
    /// # Errors
    /// [`ServerError`] naming what could not be set up.
    pub fn start(cfg: Config) -> Result<Server, ServerError> {
        let cfg = Arc::new(cfg);
        let gate = Gate::from_config(&cfg)?;
        // Read before anything is bound: a bad file fails the start naming it.
        let tls = cfg.tls.as_ref().map(|files| TlsConfig::load(&files.cert, &files.key)).transpose()?.map(Arc::new);
        let webhook_tls = cfg
            .webhook_urls
            .iter()
            .any(WebhookUrl::is_tls)
            .then(|| crate::tls::webhook_client_config(cfg.webhook_ca.as_deref()))
            .transpose()?;
        let moderation = Arc::new(Moderator::new(
            cfg.blocklist.as_deref(),
            cfg.blocklist_action,
            cfg.repeat_limit,
            cfg.repeat_window(),
        )?);
        let listener = acceptor::bind(cfg.addr).map_err(|source| ServerError::Bind { addr: cfg.addr, source })?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = match cfg.metrics_addr {
            Some(addr) => Some(acceptor::bind(addr).map_err(|source| ServerError::Bind { addr, source })?),
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().map(mio::net::TcpListener::local_addr).transpose()?;
        let store = open_store(&cfg)?;
        let api_keys = ApiKeys::new(&cfg.api_keys, cfg.api_keys_file.as_deref()).map_err(ApiError::from)?;

        let mut polls = Vec::with_capacity(cfg.shards.get());
        let mut inboxes = Vec::with_capacity(cfg.shards.get());
        for _ in 0..cfg.shards.get() {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), shard::WAKER)?;
            let (inbox, rx) = ShardInbox::new(waker);
            polls.push((poll, rx));
            inboxes.push(inbox);
        }
        let shard_router = Arc::new(Shards::new(inboxes.clone()));
        let (hub, cluster_input) = build_hub(&cfg, Arc::clone(&shard_router), store.as_ref())?;
        let cluster_shared = cluster_input.as_ref().map(ClusterInput::shared);
        // Counted across nodes only with the limit on (else the registry keeps no second count).
        let cluster_shared_conns =
            cluster_shared.as_ref().filter(|c| c.cfg.count_user_conns).map(|c| Arc::clone(&c.user_conns));
        let hub = Arc::new(hub);
        let last_id = store.as_ref().map_or(0, |s| s.max_id());
        let cluster_node = cluster_shared.as_ref().map(|c| c.cfg.node_id.clone());
        let node = cluster_node.clone().or_else(|| cfg.node_id.clone());
        let webhooks = start_webhooks(&cfg, store.as_deref(), node, webhook_tls)?;
        if let Some(webhooks) = &webhooks {
            hub.set_presence_sink(webhooks.sink());
            hub.set_moderation_sink(webhooks.moderation_sink());
        }
        if let Some(store) = &store {
            hub.set_moderation_log(Box::new(store.moderation_log()));
        }
        let cluster = cluster_input.map(|input| Cluster::start(Arc::clone(&hub), input, last_id)).transpose()?;
        let open_conns = Arc::new(AtomicUsize::new(0));
        let ops_conns = Arc::new(AtomicUsize::new(0));
        let telemetry = Telemetry::new(
            cfg.shards.get(),
            store.as_ref(),
            Arc::clone(&hub),
            cluster_shared,
            webhooks.as_ref().map(Webhooks::stats),
        );
        let now = crate::protocol::json::now_millis();
        let user_conns = cluster_shared_conns;
        let api =
            Arc::new(Api::new(api_keys, store.as_deref(), Arc::clone(&shard_router), now, user_conns, cluster_node)?);
        // Moderation from other nodes (cluster mode). Weak: the API's control thread is joined at
        // shutdown when the server drops it, whoever still holds the hub.
        let (api_for_cluster, hub_for_cluster) = (Arc::downgrade(&api), Arc::downgrade(&hub));
        hub.set_control_hook(Box::new(move |payload, kept| {
            if let (Some(api), Some(hub)) = (api_for_cluster.upgrade(), hub_for_cluster.upgrade()) {
                api.on_cluster_event(&hub, payload, kept);
            }
        }));
        // This node's users for the other nodes' listings (the publisher writes them each heartbeat).
        hub.set_users_source(Box::new(ApiUsers { api: Arc::downgrade(&api), hub: Arc::downgrade(&hub) }));

        let shared = Shared {
            hub: Arc::clone(&hub),
            cfg: Arc::clone(&cfg),
            store: store.clone(),
            open_conns: Arc::clone(&open_conns),
            gate,
            telemetry: Arc::clone(&telemetry),
            // Ids restart only with a new database, or at every start without one.
            epoch: Arc::from(format!("{:016x}", store.as_ref().map_or_else(crate::unique::unique_u64, |s| s.epoch()))),
            api: Arc::clone(&api),
            catchup: Arc::new(CatchupBudget::for_config(&cfg)),
            moderation: Arc::clone(&moderation),
        };
        let mut shards = Vec::with_capacity(cfg.shards.get());
        for (index, ((poll, rx), inbox)) in polls.into_iter().zip(inboxes).enumerate() {
            let ctx = ShardCtx::new(index, inbox, &shared);
            let shard_tls = tls.as_ref().map(|t| TlsAccept::new(Arc::clone(t), cfg.tls_max_handshakes.get()));
            let shard = Shard::new(poll, rx, ctx, Arc::clone(&ops_conns)).with_tls(shard_tls);
            shards.push(std::thread::Builder::new().name(format!("shard-{index}")).spawn(move || shard.run())?);
        }

        let (poll, listener, metrics_listener, acceptor_waker) = Acceptor::prepare(listener, metrics_listener)?;
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = Acceptor {
            poll,
            listener,
            metrics_listener,
            shards: Arc::clone(&shard_router),
            open_conns: Arc::clone(&open_conns),
            max_connections: cfg.max_connections.get(),
            ops_conns,
            max_ops_connections: cfg.metrics_max_connections.get(),
            per_ip: PerIpLimiter::new(cfg.max_conns_per_ip),
            stop: Arc::clone(&stop),
            metrics: telemetry.acceptor(),
        };
        let acceptor = std::thread::Builder::new().name("acceptor".into()).spawn(move || acceptor.run())?;
        Ok(Server {
            local_addr,
            metrics_addr,
            hub,
            shard_router,
            store,
            acceptor,
            acceptor_waker,
            stop,
            shards,
            telemetry,
            cluster,
            tls,
            api,
            moderation,
            webhooks,
        })
    }

    /// Whether the main listener speaks TLS (`--tls-cert`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reads the TLS certificate and key again (SIGHUP): connections accepted from now on get the
    /// new pair; open connections keep theirs. `Ok(false)` without TLS.
    ///
    /// # Errors
    /// [`TlsError`] naming the file and the reason; the pair in use is then unchanged.
    pub fn reload_tls(&self) -> Result<bool, TlsError> {
        let Some(tls) = &self.tls else { return Ok(false) };
        tls.reload()?;
        Ok(true)
    }

    /// Reads `--api-keys-file` again (on SIGHUP): the number of keys it now holds (`None`: no file is
    /// configured). On an error the keys read before stay in force.
    ///
    /// # Errors
    /// [`KeysError`] when the file cannot be read.
    pub fn reload_api_keys(&self) -> Result<Option<usize>, KeysError> {
        self.api.keys.reload()
    }

    /// Reads `--blocklist` again (on SIGHUP): the number of entries now in force (`None`: no file is
    /// configured). On an error the list read before stays in force.
    ///
    /// # Errors
    /// [`BlocklistError`] naming the file and the reason.
    pub fn reload_blocklist(&self) -> Result<Option<usize>, BlocklistError> {
        self.moderation.reload()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the `--metrics-addr` listener actually bound, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Graceful stop: no new connections, close 1001 to every client (waiting up to the grace period
    /// for them), then every accepted message is committed to the store and the last id used is
    /// recorded, so the next start continues right after it.
    ///
    /// # Errors
    /// A thread that panicked or a store that could not drain.
    pub fn shutdown(self) -> Result<(), ServerError> {
        self.telemetry.set_draining();
        self.stop.store(true, Ordering::SeqCst);
        self.acceptor_waker.wake()?;
        self.acceptor.join().map_err(|_| ServerError::Panicked("acceptor"))?;
        self.shard_router.broadcast(|| ShardMsg::Shutdown);
        for shard in self.shards {
            shard.join().map_err(|_| ServerError::Panicked("shard"))??;
        }
        if let Some(cluster) = self.cluster {
            cluster.shutdown();
        }
        // Every shard has stopped: every presence change is handed off; written to the outbox here.
        if let Some(webhooks) = self.webhooks {
            webhooks.shutdown();
        }
        // Commits the API's queued changes and stops its control thread.
        drop(self.api);
        // Every shard has stopped: nothing publishes any more, so this is the last id anyone was
        // shown (single node; the store keeps no ceiling in cluster mode and ignores it there).
        let last_id = self.hub.max_id();
        drop(self.hub);
        if let Some(store) = self.store {
            match Arc::try_unwrap(store) {
                Ok(store) => store.shutdown_clean(last_id)?,
                Err(_) => tracing::error!("store still referenced at shutdown; not drained"),
            }
        }
        Ok(())
    }
}

/// This node's users for the cluster's listings: the server API's registry and the rooms (weak
/// references: the hub holds this, and the API holds the hub).
struct ApiUsers {
    api: std::sync::Weak<Api>,
    hub: std::sync::Weak<Hub>,
}

impl crate::room::hub::UsersSource for ApiUsers {
    fn generation(&self) -> u64 {
        match (self.api.upgrade(), self.hub.upgrade()) {
            (Some(api), Some(hub)) => api.users_generation(&hub),
            _ => 0,
        }
    }

    fn users(&self) -> Vec<crate::protocol::api::NodeUser> {
        match (self.api.upgrade(), self.hub.upgrade()) {
            (Some(api), Some(hub)) => api.local_users(&hub),
            _ => Vec::new(),
        }
    }
}

/// The webhook threads `cfg` asks for (`--webhook-url`; validation guarantees a store and a secret).
/// `tls` is the client configuration of `https://` receivers (built before anything else, so a
/// bad `--webhook-ca` stops the start naming the file before the database is opened).
fn start_webhooks(
    cfg: &Config,
    store: Option<&Store>,
    node: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<Option<Webhooks>, StoreError> {
    let (Some(store), Some(secret)) = (store, &cfg.webhook_secret) else { return Ok(None) };
    if cfg.webhook_urls.is_empty() {
        return Ok(None);
    }
    let webhook_cfg = WebhookConfig {
        urls: cfg.webhook_urls.clone(),
        secret: secret.clone(),
        max_rows: cfg.webhook_outbox.get() as u64,
        retry_max: std::time::Duration::from_secs(cfg.webhook_retry_max_secs),
        node,
        tls,
    };
    Webhooks::start(store, webhook_cfg).map(Some)
}

/// The store `cfg` asks for: none with `--no-persist`.
fn open_store(cfg: &Config) -> Result<Option<Arc<Store>>, StoreError> {
    if cfg.no_persist {
        return Ok(None);
    }
    let store = Store::open(StoreConfig {
        path: cfg.db.clone(),
        batch_size: cfg.batch_size.get(),
        flush_interval: cfg.flush_interval(),
        queue_capacity: cfg.queue_capacity.get(),
        sync_full: cfg.sync == SyncMode::Full,
        retain_per_room: cfg.retain_per_room.map(std::num::NonZeroU64::get),
        readers: 2,
        reader_queue: cfg.history_queue.get(),
        // Cluster mode takes its ids from Redis (`cluster::ids`): no ceiling.
        id_block: cfg.redis_url.is_none().then(|| store::id_block(cfg.queue_capacity.get(), cfg.batch_size.get())),
        ..StoreConfig::default()
    })?;
    Ok(Some(Arc::new(store)))
}

/// The publish path over `shards`: ids continuing after the store's (under its durable ceiling),
/// and in cluster mode the hand-off to Redis, whose receiving side is returned for
/// [`Cluster::start`].
fn build_hub(
    cfg: &Config,
    shards: Arc<Shards>,
    store: Option<&Arc<Store>>,
) -> Result<(Hub, Option<ClusterInput>), ServerError> {
    let start_id = store.map_or(0, |s| s.start_id());
    let ids = IdSequence::new(start_id, store.and_then(|s| s.id_ceiling()));
    // The sinks of the ordered log: the store when persistence is on.
    let sinks: Vec<Box<dyn Sink>> = store.map(|s| Box::new(s.writer()) as Box<dyn Sink>).into_iter().collect();
    let Some(redis_url) = &cfg.redis_url else {
        return Ok((Hub::new(shards, ids, Box::new(LocalSequencer), sinks), None));
    };
    let cluster_cfg = ClusterConfig::new(
        redis_url.to_string(),
        cfg.node_id.clone(),
        cfg.redis_stream_maxlen,
        cfg.redis_queue_capacity,
    )?
    .with_user_rate(cfg.user_rate_limit, cfg.user_rate_burst)
    .with_user_conns(cfg.max_conns_per_user > 0);
    let (sink, input) = cluster::channel(cluster_cfg);
    Ok((Hub::new(shards, ids, Box::new(sink), sinks), Some(input)))
}
