//! Readiness (`/readyz`): may a load balancer send traffic here now?
//!
//! Ready means: the history database is writable (the writer thread runs and is not inside a commit
//! failure streak) and the server is not draining for shutdown. A congested queue alone does not make
//! the server unready (backpressure handles it and it clears within flush intervals). Liveness is
//! `/healthz`, which answers 200 as long as a shard loop runs. Cluster mode will add "Redis reachable".

use std::sync::Weak;

use crate::store::Store;

/// The history database's state, as readiness sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreState {
    /// `--no-persist`: nothing to write.
    Disabled,
    /// Commits succeed.
    Ok,
    /// The writer is retrying a failed commit (disk full, read-only file, lock held elsewhere).
    Retrying,
    /// The writer thread is not running (after shutdown began, or a bug).
    WriterDown,
}

impl StoreState {
    /// Reads the state of `store` (`None`: persistence is off).
    pub(crate) fn of(store: Option<&Weak<Store>>) -> StoreState {
        let Some(store) = store else { return StoreState::Disabled };
        let Some(store) = store.upgrade() else { return StoreState::WriterDown };
        if !store.writer_alive() {
            StoreState::WriterDown
        } else if store.stats().retrying {
            StoreState::Retrying
        } else {
            StoreState::Ok
        }
    }

    /// The value shown in the `store` field of `/readyz`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StoreState::Disabled => "disabled",
            StoreState::Ok => "ok",
            StoreState::Retrying => "retrying",
            StoreState::WriterDown => "writer_down",
        }
    }
}

/// The inputs of the readiness decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// The database's state.
    pub(crate) store: StoreState,
    /// Shutdown has begun.
    pub(crate) draining: bool,
}

impl Readiness {
    /// Whether to answer 200.
    pub(crate) fn is_ready(&self) -> bool {
        !self.draining && matches!(self.store, StoreState::Ok | StoreState::Disabled)
    }

    /// HTTP status for `/readyz`: 200 or 503.
    pub(crate) fn status(&self) -> u16 {
        if self.is_ready() { 200 } else { 503 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_a_writable_store_and_no_drain() {
        let r = |store, draining| Readiness { store, draining };
        assert_eq!(r(StoreState::Ok, false).status(), 200);
        assert_eq!(r(StoreState::Disabled, false).status(), 200);
        assert_eq!(r(StoreState::Retrying, false).status(), 503);
        assert_eq!(r(StoreState::WriterDown, false).status(), 503);
        assert_eq!(r(StoreState::Ok, true).status(), 503);
        assert_eq!(StoreState::of(None), StoreState::Disabled);
        assert_eq!(StoreState::of(Some(&Weak::new())), StoreState::WriterDown);
    }
}
