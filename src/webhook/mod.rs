//! Webhooks: this node's presence changes (`room_occupied`, `room_vacated`, `user_joined`,
//! `user_left`) and moderation decisions (the server API's bans, mutes, disconnects, revocations
//! and deletions; the content filter's refusals and masks), POSTed as signed JSON to every
//! `--webhook-url`, at least once and in order per room, from an outbox in SQLite that survives
//! restarts (docs/WEBHOOKS.md).
//!
//! Threads (none of them a shard):
//! - `webhooks`: drains the hand-off the hub feeds under each room's lock ([`Webhooks::sink`], a
//!   [`crate::deferred`] channel of [`HANDOFF`] changes; full: the change is dropped and counted,
//!   never waited for) and the shards and the store's control thread feed with moderation
//!   decisions ([`Webhooks::moderation_sink`], the same channel and policy), turns each into its
//!   events (an id, the next order number of its room, or of [`USERS`] for a user-wide decision)
//!   and appends one row per event and URL to the outbox in one transaction per batch, dropping the
//!   oldest rows past `--webhook-outbox` (counted).
//! - `webhook-N`, one per URL (at most 16): reads its URL's rows oldest first and POSTs each until
//!   the receiver answers 2xx, then deletes it. A failing row is retried after an exponential
//!   backoff with jitter (1 s doubling to `--webhook-retry-max`) and holds back every later row of
//!   that URL (head-of-line per URL: the simplest way to keep each room's order); other URLs have
//!   threads of their own, so a slow or dead receiver holds only itself.
//!
//! Occupancy is node-local: a room is occupied on this node from its first user's join here to its
//! last user's leave here; in cluster mode every node sends its own events, each naming its
//! `node`.

mod client;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use ring::hmac;

use crate::config::WebhookUrl;
use crate::deferred::{self, DeferredReceiver, DeferredSender, Wake};
use crate::room::sink::{ModerationDecision, ModerationSink, PresenceChange, PresenceSink};
use crate::store::{OutboxReader, OutboxWriter, Store, StoreError};

/// Presence changes and moderation decisions waiting for the `webhooks` thread at most.
pub(crate) const HANDOFF: usize = 65_536;
/// Changes the `webhooks` thread writes per transaction at most.
const BATCH: usize = 1024;
/// Rows a delivery thread reads at once.
const READ_AHEAD: usize = 64;
/// The order stream of user-wide moderation events (`"room": null`) in `webhook_rooms`: not a
/// room name (those have no control characters), so no room shares its numbers.
const USERS: &str = "\u{0}users";
/// First wait after a failed attempt.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Counters of `/metrics` (`roomcast_webhooks_*`), written by the webhook threads.
#[derive(Debug, Default)]
pub(crate) struct WebhookStats {
    /// Rows in the outbox.
    pub(crate) queued: AtomicU64,
    /// Requests a receiver answered with 2xx.
    pub(crate) sent: AtomicU64,
    /// Attempts that failed (no connection, a timeout, a non-2xx answer).
    pub(crate) failed: AtomicU64,
    /// Rows dropped by the outbox bound, and changes dropped because the hand-off was full.
    pub(crate) dropped: AtomicU64,
}

/// What the webhooks need at start.
#[derive(Debug, Clone)]
pub(crate) struct WebhookConfig {
    /// Receivers.
    pub(crate) urls: Vec<WebhookUrl>,
    /// HMAC-SHA256 key.
    pub(crate) secret: String,
    /// Outbox rows at most.
    pub(crate) max_rows: u64,
    /// Longest wait between two attempts.
    pub(crate) retry_max: Duration,
    /// This node's name in the events (`None`: `null`).
    pub(crate) node: Option<String>,
    /// The TLS client configuration of `https://` receivers (`None` when every URL is http).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// The running webhook threads.
pub(crate) struct Webhooks {
    stats: Arc<WebhookStats>,
    sink: HookSink,
    ctrl: Sender<Ctrl>,
    writer: Option<JoinHandle<()>>,
    stop: Option<Sender<()>>,
    deliverers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("urls", &self.deliverers.len()).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
enum Ctrl {
    Wake,
    Stop,
}

/// A change as handed off (with the time it happened).
#[derive(Debug)]
struct Pending {
    what: What,
    at_ms: i64,
}

/// What a hand-off carries.
#[derive(Debug)]
enum What {
    Presence(PresenceChange),
    Moderation(Arc<ModerationDecision>),
}

/// One event, as the outbox stores it.
struct Event {
    id: String,
    kind: &'static str,
    pending: Arc<Pending>,
}

/// The hub's side: offers presence changes without blocking.
#[derive(Clone)]
struct HookSink {
    tx: DeferredSender<Pending>,
    ctrl: Sender<Ctrl>,
    stats: Arc<WebhookStats>,
}

/// Full hand-off: the change is dropped and counted (`dropped`); presence is never worth pausing
/// clients for, and the room's lock must not wait.
impl PresenceSink for HookSink {
    fn offer_locked(&self, change: PresenceChange) -> Wake {
        self.push(What::Presence(change))
    }

    fn wake(&self) {
        // Full: a wake-up is already pending.
        let _ = self.ctrl.try_send(Ctrl::Wake);
    }
}

/// Full hand-off: the decision's event is dropped and counted (`dropped`), as a presence change's;
/// the decision itself stands (a refused message stays refused), only its report is lost.
impl ModerationSink for HookSink {
    fn offer(&self, decision: &Arc<ModerationDecision>) {
        if let Wake::Needed = self.push(What::Moderation(Arc::clone(decision))) {
            PresenceSink::wake(self);
        }
    }
}

impl HookSink {
    fn push(&self, what: What) -> Wake {
        // A decision has its time already (the same in the change feed).
        let at_ms = match &what {
            What::Presence(_) => crate::protocol::json::now_millis(),
            What::Moderation(decision) => decision.at_ms,
        };
        let pending = Pending { what, at_ms };
        self.tx.try_push(pending).unwrap_or_else(|_| {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            Wake::No
        })
    }
}

impl Webhooks {
    /// Opens the outbox on `store`'s database (what it holds is delivered first) and starts the
    /// `webhooks` thread and one delivery thread per URL.
    ///
    /// # Errors
    /// [`StoreError`] opening the outbox or starting a thread.
    pub(crate) fn start(store: &Store, cfg: WebhookConfig) -> Result<Webhooks, StoreError> {
        let urls: Vec<&str> = cfg.urls.iter().map(WebhookUrl::as_str).collect();
        let (outbox, rows) = store.open_outbox(&urls)?;
        if rows > 0 {
            tracing::info!(rows, "webhooks: resuming the outbox");
        }
        let stats = Arc::new(WebhookStats::default());
        stats.queued.store(rows, Ordering::Relaxed);
        let (tx, rx) = deferred::channel(Some(HANDOFF), BATCH);
        let (ctrl, ctrl_rx) = crossbeam_channel::bounded(16);
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let key = Arc::new(hmac::Key::new(hmac::HMAC_SHA256, cfg.secret.as_bytes()));
        let mut notify = Vec::with_capacity(cfg.urls.len());
        let mut deliverers = Vec::with_capacity(cfg.urls.len());
        for (index, url) in cfg.urls.iter().enumerate() {
            let (note, note_rx) = crossbeam_channel::bounded(1);
            notify.push(note);
            let deliverer = Deliverer {
                url: url.clone(),
                client: client::Client::new(url.clone(), url.is_tls().then(|| cfg.tls.clone()).flatten()),
                outbox: store.open_outbox_reader(url.as_str())?,
                key: Arc::clone(&key),
                notify: note_rx,
                stop: stop_rx.clone(),
                stats: Arc::clone(&stats),
                retry_max: cfg.retry_max,
            };
            deliverers.push(spawn(format!("webhook-{index}"), move || deliverer.run())?);
        }
        let writer = Writer {
            rx,
            ctrl: ctrl_rx,
            outbox,
            urls: cfg.urls.iter().map(|u| u.as_str().to_string()).collect(),
            notify,
            stats: Arc::clone(&stats),
            max_rows: cfg.max_rows,
            node: cfg.node,
            boot: crate::unique::unique_u64(),
            next: 0,
            reported_drops: 0,
        };
        let writer = spawn("webhooks".to_string(), move || writer.run())?;
        let sink = HookSink { tx, ctrl: ctrl.clone(), stats: Arc::clone(&stats) };
        Ok(Webhooks { stats, sink, ctrl, writer: Some(writer), stop: Some(stop), deliverers })
    }

    /// The hub's hand-off (give it to `Hub::set_presence_sink`).
    pub(crate) fn sink(&self) -> Box<dyn PresenceSink> {
        Box::new(self.sink.clone())
    }

    /// The hand-off of moderation decisions (give it to `Hub::set_moderation_sink`).
    pub(crate) fn moderation_sink(&self) -> Box<dyn ModerationSink> {
        Box::new(self.sink.clone())
    }

    /// The counters.
    pub(crate) fn stats(&self) -> Arc<WebhookStats> {
        Arc::clone(&self.stats)
    }

    /// Writes every change handed off so far to the outbox, then stops the threads (a request in
    /// flight finishes or times out first, at most [`client::TIMEOUT`] per step). What is not
    /// delivered stays in the outbox for the next start.
    pub(crate) fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        if let Some(writer) = self.writer.take() {
            let _ = self.ctrl.send(Ctrl::Stop);
            if writer.join().is_err() {
                tracing::error!("webhooks thread panicked");
            }
        }
        self.stop = None;
        for deliverer in self.deliverers.drain(..) {
            if deliverer.join().is_err() {
                tracing::error!("webhook delivery thread panicked");
            }
        }
    }
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new().name(name.clone()).spawn(f).map_err(|source| StoreError::Spawn { name, source })
}

/// The `webhooks` thread.
struct Writer {
    rx: DeferredReceiver<Pending>,
    ctrl: Receiver<Ctrl>,
    outbox: OutboxWriter,
    urls: Vec<String>,
    notify: Vec<Sender<()>>,
    stats: Arc<WebhookStats>,
    max_rows: u64,
    node: Option<String>,
    boot: u64,
    next: u64,
    reported_drops: u64,
}

impl Writer {
    fn run(mut self) {
        let mut stopping = false;
        loop {
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                stopping |= self.write(batch, stopping);
                continue;
            }
            if stopping {
                return;
            }
            if self.rx.go_idle() {
                match self.ctrl.recv() {
                    Ok(Ctrl::Wake) => {}
                    Ok(Ctrl::Stop) | Err(_) => stopping = true,
                }
                self.rx.busy();
            }
        }
    }

    /// Appends the events of `batch`, retrying a failed transaction (100 ms doubling to 5 s) until
    /// it commits, or, once stopping, giving up after one more attempt (the events are counted as
    /// dropped). Returns whether a stop arrived meanwhile.
    fn write(&mut self, batch: Vec<Pending>, mut stopping: bool) -> bool {
        let events = self.events(batch);
        let urls: Vec<&str> = self.urls.iter().map(String::as_str).collect();
        let mut wait = Duration::from_millis(100);
        let rows = (events.len() * urls.len()) as u64;
        loop {
            // Counted before the commit: a deliverer may delete a row (and count it off) as soon as
            // it is committed.
            let queued = self.stats.queued.fetch_add(rows, Ordering::Relaxed);
            let node = self.node.as_deref();
            let body = |e: &Event, order: u64| self::body(e, order, node);
            let result = self.outbox.append(&events, event_room, body, &urls, queued, self.max_rows);
            let not_held = match &result {
                Ok(appended) => appended.dropped,
                Err(_) => rows,
            };
            let _ = self
                .stats
                .queued
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(not_held)));
            match result {
                Ok(appended) => {
                    self.stats.dropped.fetch_add(appended.dropped, Ordering::Relaxed);
                    break;
                }
                Err(err) if stopping => {
                    tracing::error!(%err, events = events.len(), "webhooks: events not written at shutdown");
                    self.stats.dropped.fetch_add(rows, Ordering::Relaxed);
                    break;
                }
                Err(err) => {
                    tracing::warn!(%err, retry_in = ?wait, "webhooks: cannot write the outbox");
                    stopping |=
                        matches!(self.ctrl.recv_timeout(wait), Ok(Ctrl::Stop) | Err(RecvTimeoutError::Disconnected));
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        let dropped = self.stats.dropped.load(Ordering::Relaxed);
        if dropped > self.reported_drops {
            // Logged here, not where the hand-off drops (under a room's lock).
            tracing::warn!(total = dropped, "webhooks: events dropped (outbox or hand-off full)");
            self.reported_drops = dropped;
        }
        for note in &self.notify {
            // Full: the deliverer has a notice pending already.
            if let Err(TrySendError::Disconnected(())) = note.try_send(()) {
                tracing::error!("webhooks: a delivery thread is gone");
            }
        }
        stopping
    }

    /// The events of each change: `room_occupied` before the `user_joined` that caused it, and
    /// `room_vacated` after the `user_left`; one for a moderation decision.
    fn events(&mut self, batch: Vec<Pending>) -> Vec<Event> {
        let mut events = Vec::with_capacity(batch.len() + batch.len() / 4);
        for pending in batch {
            let pending = Arc::new(pending);
            let kinds = match &pending.what {
                What::Presence(change) => {
                    let (user, room) =
                        if change.joined { ("user_joined", "room_occupied") } else { ("user_left", "room_vacated") };
                    let mut kinds = vec![user];
                    if change.occupancy_changed {
                        if change.joined { kinds.insert(0, room) } else { kinds.push(room) }
                    }
                    kinds
                }
                What::Moderation(decision) => vec![decision.kind],
            };
            for kind in kinds {
                self.next += 1;
                let id = format!("{:016x}-{}", self.boot, self.next);
                events.push(Event { id, kind, pending: Arc::clone(&pending) });
            }
        }
        events
    }
}

/// The order stream of an event: its room's, or [`USERS`].
fn event_room(event: &Event) -> &str {
    match &event.pending.what {
        What::Presence(change) => &change.room,
        What::Moderation(decision) => decision.room.as_deref().unwrap_or(USERS),
    }
}

/// An event's JSON body (docs/WEBHOOKS.md): a moderation decision's own JSON (the change feed's
/// too) or a presence change's, with the webhook's `id`, `order` and `node`.
fn body(event: &Event, order: u64, node: Option<&str>) -> String {
    let mut body = match &event.pending.what {
        What::Presence(change) => {
            let mut body = serde_json::Map::new();
            body.insert("type".into(), event.kind.into());
            body.insert("room".into(), (*change.room).into());
            body.insert("user".into(), (*change.user).into());
            body.insert("at_ms".into(), event.pending.at_ms.into());
            body
        }
        What::Moderation(decision) => decision.json(),
    };
    body.insert("id".into(), event.id.clone().into());
    body.insert("order".into(), order.into());
    body.insert("node".into(), node.into());
    serde_json::Value::Object(body).to_string()
}

/// The signature header's value for `body` sent at `timestamp` (unix seconds):
/// `sha256=` and the lowercase hex HMAC-SHA256 of `"{timestamp}.{body}"`.
fn signature(key: &hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for byte in tag.as_ref() {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The delivery thread of one URL.
struct Deliverer {
    url: WebhookUrl,
    /// The receiver's client (its kept connection).
    client: client::Client,
    outbox: OutboxReader,
    key: Arc<hmac::Key>,
    notify: Receiver<()>,
    stop: Receiver<()>,
    stats: Arc<WebhookStats>,
    retry_max: Duration,
}

/// How a wait ended.
enum Waited {
    Timeout,
    Stop,
}

impl Deliverer {
    /// Delivers the URL's rows oldest first. After a failed attempt it waits (backoff) and reads the
    /// rows again, so a row the bound dropped meanwhile is not sent.
    fn run(mut self) {
        let mut after = 0i64;
        let mut failures = 0u32;
        loop {
            if self.stop.try_recv().is_err_and(|e| e.is_disconnected()) {
                return;
            }
            let rows = match self.outbox.next(after, READ_AHEAD) {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(%err, url = self.url.as_str(), "webhooks: cannot read the outbox");
                    if let Waited::Stop = self.pause(FIRST_RETRY) {
                        return;
                    }
                    continue;
                }
            };
            if rows.is_empty() {
                crossbeam_channel::select! {
                    recv(self.notify) -> _ => {}
                    recv(self.stop) -> _ => return,
                    default(Duration::from_secs(1)) => {}
                }
                continue;
            }
            for (seq, body) in rows {
                match self.attempt(seq, &body) {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::info!(url = self.url.as_str(), failures, "webhooks: receiver answering again");
                        }
                        failures = 0;
                        after = seq;
                    }
                    Err(err) => {
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(%err, url = self.url.as_str(), "webhooks: delivery failed; retrying with backoff");
                        }
                        if let Waited::Stop = self.pause(backoff(failures, self.retry_max)) {
                            return;
                        }
                        break;
                    }
                }
                if self.stop.try_recv().is_err_and(|e| e.is_disconnected()) {
                    return;
                }
            }
        }
    }

    /// POSTs row `seq` once, signed now; deletes it when answered with 2xx.
    fn attempt(&mut self, seq: i64, body: &str) -> Result<(), client::DeliveryError> {
        let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
        let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)?.as_str().map(str::to_string));
        let (kind, id) = (field("type").unwrap_or_default(), field("id").unwrap_or_default());
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let signature = signature(&self.key, timestamp, body.as_bytes());
        let stamp = timestamp.to_string();
        let headers = [
            ("X-Roomcast-Event", kind.as_str()),
            ("X-Roomcast-Event-Id", id.as_str()),
            ("X-Roomcast-Timestamp", stamp.as_str()),
            ("X-Roomcast-Signature", signature.as_str()),
        ];
        self.client.post(&headers, body.as_bytes())?;
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        match self.outbox.delete(seq) {
            Ok(true) => {
                let _ =
                    self.stats.queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(1)));
            }
            Ok(false) => {}
            // It is sent again after a restart: at least once.
            Err(err) => tracing::warn!(%err, "webhooks: cannot delete a delivered row"),
        }
        Ok(())
    }

    /// Waits `wait` unless told to stop.
    fn pause(&self, wait: Duration) -> Waited {
        match self.stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => Waited::Timeout,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => Waited::Stop,
        }
    }
}

/// The wait after the `failures`-th failure in a row: 1 s doubling per failure up to `max`, then a
/// random point in its upper half (jitter, so receivers coming back are not hit by every sender at
/// once).
fn backoff(failures: u32, max: Duration) -> Duration {
    let full = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(max);
    let half = full / 2;
    let jitter = crate::unique::unique_u64() % (half.as_millis() as u64 + 1);
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_hand_off_drops_and_counts_without_waiting() {
        // Presence changes and moderation decisions alike.
        let (tx, rx) = deferred::channel(Some(1), 1);
        let (ctrl, _ctrl_rx) = crossbeam_channel::bounded(1);
        let stats = Arc::new(WebhookStats::default());
        let sink = HookSink { tx, ctrl, stats: Arc::clone(&stats) };
        let change = |user: &str| PresenceChange {
            room: Arc::from("r"),
            user: Arc::from(user),
            joined: true,
            occupancy_changed: false,
        };
        assert_eq!(sink.offer_locked(change("ann")), Wake::Needed, "a batch of one is ready");
        assert_eq!(sink.offer_locked(change("bob")), Wake::No, "full: dropped");
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        let decision = ModerationDecision::new("user_banned", None, Arc::from("cid"), vec![]);
        ModerationSink::offer(&sink, &Arc::new(decision));
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2, "a moderation decision too");
        let user = |p: Pending| match p.what {
            What::Presence(change) => change.user.to_string(),
            What::Moderation(decision) => decision.user.to_string(),
        };
        assert_eq!(rx.try_recv().map(user), Ok("ann".to_string()));
        sink.wake();
        sink.wake();
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() {
        let max = Duration::from_secs(60);
        for (failures, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
            let wait = backoff(failures, max);
            let full = Duration::from_secs(full);
            assert!(wait >= full / 2 && wait <= full, "{failures}: {wait:?}");
        }
        assert!(backoff(5, Duration::from_secs(1)) <= Duration::from_secs(1));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let sig = signature(&key, 0, b"what do ya want for nothing?");
        // The data signed is "0." + body, so this is not the RFC vector; check it against a second
        // construction instead.
        let direct = hmac::sign(&key, b"0.what do ya want for nothing?");
        let hex: String = direct.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sig, format!("sha256={hex}"));
        let rfc = hmac::sign(&key, b"what do ya want for nothing?");
        let rfc: String = rfc.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(rfc, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
