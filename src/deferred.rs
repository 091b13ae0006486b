//! A bounded hand-off whose producers may hold a lock: a push never makes a syscall and never wakes
//! the consumer; it says whether the consumer must be woken ([`Wake::Needed`]), and the producer does
//! that once its lock is released. Used by every consumer of a room's ordered log that runs on a
//! thread of its own (the store writer; the cluster's presence hand-off), so a new one (webhooks, a
//! change feed) gets the same guarantees by construction instead of a copy of them.
//!
//! The consumer never blocks on this channel (a blocked receiver is what makes a send wake it). It
//! blocks elsewhere, on its own control channel or timer, after [`DeferredReceiver::go_idle`] has
//! published that it is about to; the next push then answers [`Wake::Needed`], once. Between the
//! producer's push and the consumer's idle flag there is a `SeqCst` fence on each side: either the
//! consumer sees the item before it blocks, or the producer sees the flag.
//!
//! Bounds: `capacity` items (`None`: unbounded, for hand-offs whose size another bound already
//! limits). [`DeferredSender::is_congested`] is true from 7/8 full: producers pause their input
//! there, so the last eighth is the reserve for what was read already and the queue is not expected
//! to fill; what a full queue means is each owner's policy (its `try_push` gets the item back).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

/// Whether the consumer must be woken after the producer's lock is released.
#[must_use = "a consumer that must be woken and is not only finds the item at its next tick"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// It is busy, or another producer wakes it.
    No,
    /// Wake it.
    Needed,
}

/// Queue length from which producers should pause their input: 7/8 of `capacity`.
pub(crate) fn congestion_threshold(capacity: usize) -> usize {
    capacity - capacity / 8
}

/// A hand-off of `capacity` items (`None`: unbounded); `wake_at`: a push that brings the queue to
/// this length asks for a wake-up even if the consumer is busy (the store: one batch is ready).
pub(crate) fn channel<T>(capacity: Option<usize>, wake_at: usize) -> (DeferredSender<T>, DeferredReceiver<T>) {
    let (tx, rx) = match capacity {
        Some(capacity) => crossbeam_channel::bounded(capacity),
        None => crossbeam_channel::unbounded(),
    };
    let idle = Arc::new(AtomicBool::new(false));
    (DeferredSender { tx, idle: Arc::clone(&idle), wake_at }, DeferredReceiver { rx, idle })
}

/// The producers' side (cheap to clone).
#[derive(Debug)]
pub(crate) struct DeferredSender<T> {
    tx: Sender<T>,
    idle: Arc<AtomicBool>,
    wake_at: usize,
}

impl<T> Clone for DeferredSender<T> {
    fn clone(&self) -> Self {
        DeferredSender { tx: self.tx.clone(), idle: Arc::clone(&self.idle), wake_at: self.wake_at }
    }
}

impl<T> DeferredSender<T> {
    /// Queues `item` without blocking or waking anyone.
    ///
    /// # Errors
    /// The item back when the queue is full or the consumer is gone.
    pub(crate) fn try_push(&self, item: T) -> Result<Wake, T> {
        match self.tx.try_send(item) {
            Ok(()) => {
                let reached = self.tx.len() == self.wake_at;
                // Pairs with the fence in `go_idle`.
                fence(Ordering::SeqCst);
                let idle = self.idle.load(Ordering::SeqCst) && self.idle.swap(false, Ordering::SeqCst);
                Ok(if idle || reached { Wake::Needed } else { Wake::No })
            }
            Err(TrySendError::Full(item) | TrySendError::Disconnected(item)) => Err(item),
        }
    }

    /// Items queued.
    pub(crate) fn len(&self) -> usize {
        self.tx.len()
    }

    /// The bound (`usize::MAX` when unbounded).
    pub(crate) fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(usize::MAX)
    }

    /// Items it still takes once congested (`usize::MAX` when unbounded).
    pub(crate) fn reserve(&self) -> usize {
        self.tx.capacity().map_or(usize::MAX, |capacity| capacity - congestion_threshold(capacity))
    }

    /// Whether producers should pause their input (7/8 full).
    pub(crate) fn is_congested(&self) -> bool {
        self.tx.capacity().is_some_and(|capacity| self.tx.len() >= congestion_threshold(capacity))
    }
}

/// The consumer's side.
#[derive(Debug)]
pub(crate) struct DeferredReceiver<T> {
    rx: Receiver<T>,
    idle: Arc<AtomicBool>,
}

impl<T> DeferredReceiver<T> {
    /// The next item, without blocking.
    ///
    /// # Errors
    /// `Empty`, or `Disconnected` once every sender is gone and the queue is drained.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        self.rx.try_recv()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Publishes that the consumer is about to block (elsewhere). Returns `false`, and stays busy,
    /// when something is queued already: then it must not block.
    pub(crate) fn go_idle(&self) -> bool {
        self.idle.store(true, Ordering::SeqCst);
        // Pairs with the fence in `try_push`.
        fence(Ordering::SeqCst);
        if self.rx.is_empty() {
            return true;
        }
        self.idle.store(false, Ordering::SeqCst);
        false
    }

    /// The consumer is awake again (pushes stop asking for a wake-up).
    pub(crate) fn busy(&self) {
        self.idle.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_asks_for_a_wake_only_when_the_consumer_is_idle_or_a_batch_is_ready() {
        let (tx, rx) = channel(Some(8), 4);
        assert_eq!(tx.try_push(1), Ok(Wake::No), "busy consumer");
        assert!(!rx.go_idle(), "something is queued: do not block");
        assert_eq!(rx.try_recv(), Ok(1));
        assert!(rx.go_idle());
        assert_eq!(tx.try_push(2), Ok(Wake::Needed), "the first push after idle wakes");
        assert_eq!(tx.try_push(3), Ok(Wake::No), "only once");
        assert_eq!(tx.try_push(4), Ok(Wake::No));
        assert_eq!(tx.try_push(5), Ok(Wake::Needed), "a batch is ready");
        assert!(!tx.is_congested());
        for i in 6..=8 {
            assert!(tx.try_push(i).is_ok());
        }
        assert!(tx.is_congested(), "7 of 8");
        assert!(tx.try_push(9).is_ok());
        assert_eq!(tx.try_push(10), Err(10), "full: the item comes back");
        rx.busy();
    }

    #[test]
    fn unbounded_never_congests() {
        let (tx, _rx) = channel(None, usize::MAX);
        for i in 0..10_000 {
            assert!(tx.try_push(i).is_ok());
        }
        assert!(!tx.is_congested());
        assert_eq!(tx.capacity(), usize::MAX);
    }
}
