//! The listing thread (`redis-list`): reads the other nodes' users from Redis (`super::user_rows`)
//! for the server API's cluster-wide listings, on a Redis connection of its own, so a large listing
//! never delays a publish and no shard ever waits for Redis. Jobs come on a bounded channel
//! ([`QUEUE`]; a full one is refused at once: the API answers 503) and each job's answer is handed
//! to its callback on this thread, which answers the HTTP connection through its shard's inbox.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::ClusterShared;
use super::redis_link::RedisLink;
use crate::protocol::api::NodeUser;
use crate::room::sequencer::UsersDone;

/// Listings waiting for the thread at most.
pub(crate) const QUEUE: usize = 64;

/// How often an idle thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);

/// One listing to read: `user`'s rows only, or everyone's.
pub(crate) struct ListingJob {
    pub(crate) user: Option<Arc<str>>,
    pub(crate) done: UsersDone,
}

/// The thread's state.
pub(crate) struct Listing {
    shared: Arc<ClusterShared>,
    client: redis::Client,
    rx: Receiver<ListingJob>,
    stop: Arc<AtomicBool>,
    link: Option<RedisLink>,
}

impl Listing {
    pub(crate) fn new(
        shared: Arc<ClusterShared>,
        client: redis::Client,
        rx: Receiver<ListingJob>,
        stop: Arc<AtomicBool>,
    ) -> Listing {
        Listing { shared, client, rx, stop, link: None }
    }

    /// Serves jobs until the stop flag is set.
    pub(crate) fn run(mut self) {
        while !self.stop.load(Ordering::SeqCst) {
            match self.rx.recv_timeout(STOP_POLL) {
                Ok(job) => {
                    let result = self.read(job.user.as_deref());
                    (job.done)(result);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// The other nodes' rows; a kept connection that fails (Redis restarted, idle connection
    /// closed) is replaced once before giving up.
    fn read(&mut self, user: Option<&str>) -> Result<Vec<NodeUser>, String> {
        let origin = Arc::clone(&self.shared.origin);
        if let Some(mut link) = self.link.take()
            && let Ok(rows) = link.read_user_rows(&origin, user)
        {
            self.link = Some(link);
            return Ok(rows);
        }
        let mut link = RedisLink::connect(&self.client).map_err(|e| format!("cannot reach redis: {e}"))?;
        let rows = link.read_user_rows(&origin, user).map_err(|e| format!("redis: {e}"))?;
        self.link = Some(link);
        Ok(rows)
    }
}
