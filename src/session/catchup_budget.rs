//! The server-wide byte budget of resume catch-up pages (`--catchup-budget`), shared fairly by the
//! connections catching up, and giving memory back to the system once they are done.
//!
//! Without it a reconnect avalanche holds a page (about `--max-outbuf`) and a half-drained one per
//! resuming client: 200 clients, 400 MB. With it the pages queued on all connections together stay
//! within the budget:
//!
//! - A connection catching up holds a [`Share`] (one per connection, however many rooms it resumes).
//!   Before it asks the store for a page it [`Share::reserve`]s the page's bytes: its fair share, the
//!   smaller of `--max-outbuf` and the budget divided by the connections catching up (at least one
//!   largest JSON frame, so a page always moves), less what it still has queued. The page is cut to
//!   the reservation ([`Share::queued_page`]); its bytes return to the budget as they are written
//!   ([`Share::written`]), and all of them when the connection goes (the share is dropped).
//! - A connection that finds no budget waits: it is never skipped or closed for it, its catch-up
//!   goes on when budget comes back (the shard retries it at every 250 ms sweep). A connection that
//!   was served yields to waiting ones: with others waiting it waits too before its next page, so no
//!   fast client keeps the budget to itself. A stalled reader holds at most its share, and gives it
//!   back when it is closed (ping timeout, idle timeout), since the share goes with the connection.
//! - When the last share is dropped after a crowd that used at least [`TRIM_AFTER`] bytes, the
//!   freed heap is handed back to the system (`malloc_trim(0)`, glibc only) by a short-lived thread
//!   a second later, so a reconnect avalanche does not leave the process at its peak RSS; no event
//!   loop waits for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::config::Config;

/// Peak budget use after which the end of a crowd gives memory back to the system.
pub(crate) const TRIM_AFTER: usize = 8 << 20;
/// How long after the last catch-up ended the memory is given back (it is skipped if a new crowd
/// started meanwhile).
const TRIM_DELAY: Duration = Duration::from_secs(1);

/// The budget: bytes reserved or queued by every [`Share`] together, at most `limit`.
#[derive(Debug)]
pub(crate) struct CatchupBudget {
    limit: usize,
    /// Largest share: `--max-outbuf` (the page size without a crowd).
    most: usize,
    /// Smallest reservation: one largest frame.
    floor: usize,
    used: AtomicUsize,
    /// Connections holding a share.
    active: AtomicUsize,
    /// Shares that asked and found no budget, not yet served.
    waiting: AtomicUsize,
    /// Most bytes used since the last time memory was given back.
    peak: AtomicUsize,
    /// A trim is scheduled.
    trim_pending: AtomicBool,
}

impl CatchupBudget {
    /// A budget of `limit` bytes; shares of at most `most` (`--max-outbuf`) and reservations of at
    /// least `floor` (one largest frame) bytes.
    pub(crate) fn new(limit: usize, most: usize, floor: usize) -> Self {
        CatchupBudget {
            limit,
            most: most.max(floor),
            floor: floor.min(limit),
            used: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            trim_pending: AtomicBool::new(false),
        }
    }

    /// The budget `--catchup-budget` sets: shares of at most `--max-outbuf`, reservations of at
    /// least one largest JSON frame.
    pub(crate) fn for_config(cfg: &Config) -> Self {
        CatchupBudget::new(cfg.catchup_budget, cfg.max_outbuf, cfg.max_json_frame_bytes())
    }

    /// A share for a connection starting to catch up.
    pub(crate) fn join(self: &Arc<Self>) -> Share {
        self.active.fetch_add(1, Ordering::Relaxed);
        Share { budget: Arc::clone(self), reserved: 0, queued: 0, queued_end: 0, waiting: false, served: false }
    }

    /// Bytes reserved or queued now, by every share.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The fair share of one connection now.
    fn fair_share(&self) -> usize {
        let active = self.active.load(Ordering::Relaxed).max(1);
        (self.limit / active).min(self.most).max(self.floor)
    }

    /// Takes `bytes` if they fit under the limit.
    fn take(&self, bytes: usize) -> bool {
        let taken = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(bytes).filter(|&after| after <= self.limit)
        });
        match taken {
            Ok(before) => {
                self.peak.fetch_max(before + bytes, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    /// The last share is gone: after a crowd, give the freed heap back to the system a little later.
    fn crowd_gone(self: &Arc<Self>) {
        if self.peak.load(Ordering::Relaxed) < TRIM_AFTER || self.trim_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let budget = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("malloc-trim".into()).spawn(move || {
            std::thread::sleep(TRIM_DELAY);
            budget.trim_pending.store(false, Ordering::Release);
            if budget.active.load(Ordering::Relaxed) == 0 {
                budget.peak.store(0, Ordering::Relaxed);
                give_memory_back();
            }
        });
        if spawned.is_err() {
            self.trim_pending.store(false, Ordering::Release);
        }
    }
}

/// Returns the allocator's free memory to the system (glibc: `malloc_trim(0)`, every arena).
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointer.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(released, "catch-up crowd gone: freed heap given back to the system");
    }
}

/// One connection's part of the [`CatchupBudget`]; dropping it gives everything back.
#[derive(Debug)]
pub(crate) struct Share {
    budget: Arc<CatchupBudget>,
    /// Reserved for the page being read.
    reserved: usize,
    /// Bytes of pages queued on the connection and not yet written (an upper bound).
    queued: usize,
    /// Stream position of the connection's output at which everything in `queued` is written.
    queued_end: u64,
    /// Counted in the budget's waiting shares.
    waiting: bool,
    /// Got a reservation before (yields to waiting shares).
    served: bool,
}

impl Share {
    /// Reserves the bytes of the next page (`None`: no budget now; ask again at the next sweep).
    pub(crate) fn reserve(&mut self) -> Option<usize> {
        if self.reserved > 0 {
            return Some(self.reserved);
        }
        let budget = &self.budget;
        if self.served && !self.waiting && budget.waiting.load(Ordering::Relaxed) > 0 {
            // Others wait: let them go first (this share competes with them from the next sweep).
            self.wait();
            return None;
        }
        let want = budget.fair_share().saturating_sub(self.queued).max(budget.floor);
        if !budget.take(want) {
            self.wait();
            return None;
        }
        if std::mem::take(&mut self.waiting) {
            budget.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        self.served = true;
        self.reserved = want;
        Some(want)
    }

    fn wait(&mut self) {
        if !std::mem::replace(&mut self.waiting, true) {
            self.budget.waiting.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The page read with the reservation was not sent (the membership was left, the read failed).
    pub(crate) fn cancel(&mut self) {
        self.budget.give_back(std::mem::take(&mut self.reserved));
    }

    /// `bytes` of the page were queued, ending at stream position `end` of the connection's output;
    /// the rest of the reservation goes back.
    pub(crate) fn queued_page(&mut self, bytes: usize, end: u64) {
        let reserved = std::mem::take(&mut self.reserved);
        if bytes > reserved {
            // One frame larger than the reservation (only a first frame is sent past it; the floor
            // is one largest frame, so this happens only with a budget smaller than that).
            if !self.budget.take(bytes - reserved) {
                self.budget.used.fetch_add(bytes - reserved, Ordering::AcqRel);
            }
        } else {
            self.budget.give_back(reserved - bytes);
        }
        self.queued += bytes;
        self.queued_end = end;
    }

    /// The connection's output was written up to stream position `position`: the pages' bytes
    /// written go back to the budget.
    pub(crate) fn written(&mut self, position: u64) {
        if self.queued == 0 {
            return;
        }
        let left = usize::try_from(self.queued_end.saturating_sub(position)).unwrap_or(usize::MAX).min(self.queued);
        self.budget.give_back(self.queued - left);
        self.queued = left;
    }

    /// Bytes reserved for the page being read (0: none).
    pub(crate) fn reserved(&self) -> usize {
        self.reserved
    }

    /// Nothing reserved, nothing queued.
    pub(crate) fn is_idle(&self) -> bool {
        self.reserved == 0 && self.queued == 0
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.give_back(self.reserved + self.queued);
        if self.waiting {
            self.budget.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        if self.budget.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.budget.crowd_gone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_fair_bounded_and_given_back() {
        let budget = Arc::new(CatchupBudget::new(1000, 400, 100));
        let mut a = budget.join();
        assert_eq!(a.reserve(), Some(400), "alone: at most the largest share");
        let mut b = budget.join();
        let mut c = budget.join();
        assert_eq!(b.reserve(), Some(333), "three catching up: a third each");
        assert_eq!(c.reserve(), None, "only 267 left: c waits");
        assert_eq!(budget.used(), 733);
        a.queued_page(300, 300);
        assert_eq!(budget.used(), 633, "the unused part of a's reservation is back");
        a.written(100);
        assert_eq!(budget.used(), 533, "written bytes are back");
        assert_eq!(a.reserve(), None, "c waits: a, served before, yields");
        assert_eq!(c.reserve(), Some(333), "the waiting one is served");
        drop(b);
        assert_eq!(budget.used(), 533, "b's reservation is back with b");
        a.written(300);
        assert!(a.reserve().is_some(), "nobody waits now");
        drop((a, c));
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.active.load(Ordering::Relaxed), 0);
        assert_eq!(budget.waiting.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_crowd_past_the_limit_gets_the_floor_and_the_limit_holds() {
        let budget = Arc::new(CatchupBudget::new(1000, 400, 300));
        let mut shares: Vec<Share> = (0..10).map(|_| budget.join()).collect();
        let granted: Vec<Option<usize>> = shares.iter_mut().map(Share::reserve).collect();
        assert_eq!(granted.iter().flatten().count(), 3, "three floors fit in the limit");
        assert!(granted.iter().flatten().all(|&g| g == 300));
        assert!(budget.used() <= 1000);
        assert_eq!(budget.waiting.load(Ordering::Relaxed), 7);
        drop(shares);
        assert_eq!((budget.used(), budget.waiting.load(Ordering::Relaxed)), (0, 0));
    }
}
