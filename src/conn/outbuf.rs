//! A connection's bounded output queue of encoded frames, written with one vectored write per turn.
//!
//! Frames are `Bytes` handles: a broadcast frame is shared by every recipient, so queuing it costs a
//! reference-count increment, not a copy. The queue keeps its storage while the connection is busy
//! (so a connection written every turn does not reallocate its deque every turn), gives it back at
//! the shard's sweep once drained and either large or given nothing since the sweep before
//! ([`OutBuf::release_if_drained`]), so an idle connection holds no queue storage at all, and
//! refuses frames past the hard bound ([`Bound`]). Past the soft bound it queues on and remembers
//! since when it has been over ([`OutBuf::over_soft_since`]); a write that brings it back under
//! forgets it. The session decides how long a queue may stay over (`--outbuf-grace`).
//!
//! *Paced* frames (history and resume catch-up pages, see `session::catchup`) are queued whatever the
//! bound and are not counted when the bound judges later frames: the server chose to queue them and
//! queues the next page only once the queue has drained below a low-water mark, so they are bounded
//! by the page size, not by the client. The queue remembers which byte ranges of its stream are
//! paced (a page is pushed contiguously, so there are only a few ranges).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::time::Instant;

use bytes::Bytes;

/// Most frames handed to one `writev` call (Linux allows 1024; 64 already amortises the syscall).
const MAX_IOVECS: usize = 64;
/// Slots a drained queue may keep; a larger deque is freed so idle connections hold nothing big.
const KEEP_SLOTS: usize = 8;

/// Result of a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued was written.
    All,
    /// The socket is full; wait for the next writable event.
    WouldBlock,
}

/// The queue was full: the frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The bounds a bounded frame is queued under (`--max-outbuf`, `--max-outbuf-hard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Past it the queue may stay only for a grace period (the caller's rule).
    pub soft: usize,
    /// A frame that would take the queue past it is refused.
    pub hard: usize,
}

/// Bounded queue of frames waiting for the socket.
#[derive(Debug, Default)]
pub struct OutBuf {
    frames: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    front_written: usize,
    /// Bytes queued and not yet written.
    queued: usize,
    /// Bytes ever queued (stream position of the queue's end; the write position is `pushed - queued`).
    pushed: u64,
    /// `pushed` at the last [`OutBuf::release_if_drained`].
    pushed_at_last_look: u64,
    /// Stream ranges `[start, end)` of paced frames not yet completely written, oldest first.
    paced: VecDeque<(u64, u64)>,
    /// The soft bound of the last bounded push.
    soft: usize,
    /// When a bounded push took the queue over `soft` (`None` while under it).
    over_since: Option<Instant>,
}

impl OutBuf {
    /// Queues a frame unless that would take the queue past `bound.hard`; past `bound.soft` it is
    /// queued and the time it went over is remembered ([`OutBuf::over_soft_since`]).
    ///
    /// # Errors
    /// [`Full`] when the frame does not fit: the caller treats the peer as a slow consumer.
    pub fn push(&mut self, frame: Bytes, bound: Bound) -> Result<(), Full> {
        let after = self.bounded_bytes() + frame.len();
        if after > bound.hard {
            return Err(Full);
        }
        self.soft = bound.soft;
        if after > bound.soft && self.over_since.is_none() {
            self.over_since = Some(Instant::now());
        }
        self.push_unbounded(frame);
        Ok(())
    }

    /// Since when the queue has been over its soft bound without a write bringing it back under
    /// (`None`: it is under).
    pub fn over_soft_since(&self) -> Option<Instant> {
        self.over_since
    }

    /// Forgets the time over the soft bound once the queue is back under it.
    fn recheck_soft(&mut self) {
        if self.over_since.is_some() && self.bounded_bytes() <= self.soft {
            self.over_since = None;
        }
    }

    /// Stream positions: bytes written so far and bytes ever queued (the next frame starts there).
    pub fn positions(&self) -> (u64, u64) {
        (self.pushed - self.queued as u64, self.pushed)
    }

    /// Queues a frame regardless of the bound (close frames and HTTP responses, which end a connection).
    pub fn push_unbounded(&mut self, frame: Bytes) {
        self.queued += frame.len();
        self.pushed += frame.len() as u64;
        if self.frames.capacity() == 0 {
            // A queue freed by the sweep starts with one slot, not the four `push_back` would take:
            // an idle connection's occasional frame (a pong, a heartbeat ping) then costs 32 bytes
            // until the next sweep frees it again; a busy queue grows as usual from there.
            self.frames.reserve_exact(1);
        }
        self.frames.push_back(frame);
    }

    /// Queues a paced frame: regardless of the bound, and not counted by it afterwards. The caller
    /// bounds paced frames itself (one page at a time, the next only below a low-water mark).
    pub fn push_paced(&mut self, frame: Bytes) {
        let start = self.pushed;
        self.push_unbounded(frame);
        match self.paced.back_mut() {
            Some(last) if last.1 == start => last.1 = self.pushed,
            _ => self.paced.push_back((start, self.pushed)),
        }
    }

    /// Bytes waiting that the bound counts: everything but the unwritten part of paced frames.
    pub fn bounded_bytes(&self) -> usize {
        if self.paced.is_empty() {
            return self.queued;
        }
        let written = self.pushed - self.queued as u64;
        let paced: u64 = self.paced.iter().map(|&(start, end)| end - start.max(written)).sum();
        self.queued - usize::try_from(paced).unwrap_or(self.queued).min(self.queued)
    }

    /// Drops every frame not yet started, keeping a partly written front frame so the stream stays
    /// well-formed. Used before queuing a close frame for a slow consumer.
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.front_written > 0);
        while self.frames.len() > keep {
            if let Some(frame) = self.frames.pop_back() {
                self.queued -= frame.len();
                self.pushed -= frame.len() as u64;
            }
        }
        let end = self.pushed;
        self.paced.retain_mut(|range| {
            range.1 = range.1.min(end);
            range.0 < range.1
        });
        self.recheck_soft();
    }

    /// Bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Writes as much as the socket takes, coalescing up to 64 frames per `writev`.
    ///
    /// # Errors
    /// The socket's error (other than `WouldBlock`/`Interrupted`); the connection is then dead.
    pub fn flush(&mut self, sock: &mut impl Write) -> io::Result<Flushed> {
        while !self.frames.is_empty() {
            // Most flushes carry one or a few frames: only build as many iovecs as there are frames.
            let result = match self.frames.len() {
                1 => sock.write(&self.frames[0][self.front_written..]),
                2..=4 => self.write_batch::<4>(sock),
                5..=16 => self.write_batch::<16>(sock),
                _ => self.write_batch::<MAX_IOVECS>(sock),
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => self.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flushed::All)
    }

    /// Frees the queue's storage if it is drained and either grew past a few slots or was given
    /// nothing since the last call (the shard's sweep calls this every 250 ms: a busy connection
    /// keeps its few slots, one idle since the last sweep holds no storage at all, which is what
    /// thousands of idle connections cost).
    pub fn release_if_drained(&mut self) {
        let idle = self.pushed == self.pushed_at_last_look;
        self.pushed_at_last_look = self.pushed;
        if self.frames.is_empty() && (idle || self.frames.capacity() > KEEP_SLOTS) {
            self.frames = VecDeque::new();
        }
        if self.paced.is_empty() && (idle || self.paced.capacity() > KEEP_SLOTS) {
            self.paced = VecDeque::new();
        }
    }

    /// One `writev` of up to `N` queued frames.
    fn write_batch<const N: usize>(&self, sock: &mut impl Write) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); N];
        let mut n = 0;
        for (slot, frame) in slices.iter_mut().zip(&self.frames) {
            *slot = IoSlice::new(if n == 0 { &frame[self.front_written..] } else { frame });
            n += 1;
        }
        sock.write_vectored(&slices[..n])
    }

    fn advance(&mut self, mut written: usize) {
        self.queued -= written;
        let position = self.pushed - self.queued as u64;
        while self.paced.front().is_some_and(|&(_, end)| end <= position) {
            self.paced.pop_front();
        }
        while written > 0 {
            let Some(front) = self.frames.front() else { break };
            let left = front.len() - self.front_written;
            if written >= left {
                written -= left;
                self.front_written = 0;
                self.frames.pop_front();
            } else {
                self.front_written += written;
                written = 0;
            }
        }
        self.recheck_soft();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound whose soft limit is its hard one (the queue never is over soft without being full).
    fn hard(bytes: usize) -> Bound {
        Bound { soft: bytes, hard: bytes }
    }

    /// A socket that accepts `budget` bytes per call, then reports `WouldBlock` once `total` is reached.
    struct Trickle {
        out: Vec<u8>,
        per_call: usize,
        total: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let room = self.total.saturating_sub(self.out.len()).min(self.per_call);
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut taken = 0;
            for buf in bufs {
                let n = buf.len().min(room - taken);
                self.out.extend_from_slice(&buf[..n]);
                taken += n;
                if taken == room {
                    break;
                }
            }
            Ok(taken)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_are_coalesced_into_one_write() {
        let mut buf = OutBuf::default();
        for i in 0..10u8 {
            buf.push(Bytes::from(vec![i; 3]), hard(1024)).expect("fits");
        }
        let mut sock = Trickle { out: Vec::new(), per_call: usize::MAX, total: usize::MAX, calls: 0 };
        assert_eq!(buf.flush(&mut sock).expect("ok"), Flushed::All);
        assert_eq!(sock.calls, 1);
        assert_eq!(sock.out.len(), 30);
        assert!(buf.is_empty() && buf.queued_bytes() == 0);
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut buf = OutBuf::default();
        buf.push(Bytes::from_static(b"hello "), hard(100)).expect("fits");
        buf.push(Bytes::from_static(b"world"), hard(100)).expect("fits");
        let mut sock = Trickle { out: Vec::new(), per_call: 4, total: 7, calls: 0 };
        assert_eq!(buf.flush(&mut sock).expect("ok"), Flushed::WouldBlock);
        assert_eq!(buf.queued_bytes(), 4);
        buf.drop_unstarted();
        assert_eq!(buf.queued_bytes(), 4, "the partly written frame is kept");
        sock.total = 100;
        assert_eq!(buf.flush(&mut sock).expect("ok"), Flushed::All);
        assert_eq!(sock.out, b"hello world");
    }

    #[test]
    fn the_bound_refuses_frames_but_not_closing_ones() {
        let mut buf = OutBuf::default();
        buf.push(Bytes::from(vec![0; 60]), hard(100)).expect("fits");
        assert_eq!(buf.push(Bytes::from(vec![0; 41]), hard(100)), Err(Full));
        buf.drop_unstarted();
        assert!(buf.is_empty());
        buf.push_unbounded(Bytes::from(vec![0; 500]));
        assert_eq!(buf.queued_bytes(), 500);
    }

    #[test]
    fn paced_frames_are_not_judged_by_the_bound() {
        let mut buf = OutBuf::default();
        buf.push(Bytes::from(vec![1; 10]), hard(100)).expect("fits");
        buf.push_paced(Bytes::from(vec![2; 300]));
        buf.push_paced(Bytes::from(vec![3; 300]));
        assert_eq!(buf.queued_bytes(), 610);
        assert_eq!(buf.bounded_bytes(), 10, "paced bytes do not count");
        buf.push(Bytes::from(vec![4; 90]), hard(100)).expect("the bound sees 10 + 90");
        assert_eq!(buf.push(Bytes::from(vec![5; 1]), hard(100)), Err(Full));
        // Write into the middle of the paced range: the bound still counts only the unpaced frames.
        let mut sock = Trickle { out: Vec::new(), per_call: 50, total: 360, calls: 0 };
        assert_eq!(buf.flush(&mut sock).expect("ok"), Flushed::WouldBlock);
        assert_eq!(buf.queued_bytes(), 340);
        assert_eq!(buf.bounded_bytes(), 90);
        buf.drop_unstarted();
        assert_eq!(buf.queued_bytes(), 250, "the partly written paced frame stays");
        assert_eq!(buf.bounded_bytes(), 0);
        sock.total = usize::MAX;
        assert_eq!(buf.flush(&mut sock).expect("ok"), Flushed::All);
        assert!(buf.paced.is_empty() && buf.bounded_bytes() == 0);
        buf.push(Bytes::from(vec![6; 100]), hard(100)).expect("an empty queue takes the bound again");
    }

    #[test]
    fn a_drained_queue_gives_back_its_storage_at_the_sweep() {
        let mut buf = OutBuf::default();
        for _ in 0..100 {
            buf.push(Bytes::from_static(b"x"), hard(1000)).expect("fits");
        }
        let mut sock = Trickle { out: Vec::new(), per_call: usize::MAX, total: usize::MAX, calls: 0 };
        buf.flush(&mut sock).expect("ok");
        assert!(buf.frames.capacity() >= 100, "kept while the connection is busy");
        buf.release_if_drained();
        assert_eq!(buf.frames.capacity(), 0);
    }

    #[test]
    fn a_few_slots_are_kept_while_busy_and_freed_once_a_sweep_saw_nothing_queued() {
        let mut buf = OutBuf::default();
        let mut sock = Trickle { out: Vec::new(), per_call: usize::MAX, total: usize::MAX, calls: 0 };
        buf.push(Bytes::from_static(b"x"), hard(1000)).expect("fits");
        buf.flush(&mut sock).expect("ok");
        buf.release_if_drained();
        assert!(buf.frames.capacity() > 0, "written since the last sweep: its few slots stay");
        buf.release_if_drained();
        assert_eq!(buf.frames.capacity(), 0, "nothing queued since the last sweep: freed");
        buf.push(Bytes::from_static(b"y"), hard(1000)).expect("a freed queue takes frames again");
        assert_eq!(buf.queued_bytes(), 1);
        buf.release_if_drained();
        assert!(buf.frames.capacity() > 0, "not drained: kept");
    }

    #[test]
    fn past_the_soft_bound_frames_are_queued_and_the_time_remembered_until_a_write_brings_it_under() {
        let bound = Bound { soft: 100, hard: 400 };
        let mut buf = OutBuf::default();
        buf.push(Bytes::from(vec![1; 100]), bound).expect("fits");
        assert_eq!(buf.over_soft_since(), None, "at the soft bound is not over it");
        buf.push(Bytes::from(vec![2; 200]), bound).expect("under the hard bound");
        let since = buf.over_soft_since().expect("over the soft bound");
        buf.push(Bytes::from(vec![3; 100]), bound).expect("up to the hard bound");
        assert_eq!(buf.over_soft_since(), Some(since), "the first time over is kept");
        assert_eq!(buf.push(Bytes::from(vec![4; 1]), bound), Err(Full), "past the hard bound");
        let mut sock = Trickle { out: Vec::new(), per_call: 150, total: 150, calls: 0 };
        assert_eq!(buf.flush(&mut sock).expect("ok"), Flushed::WouldBlock);
        assert!(buf.over_soft_since().is_some(), "250 bytes left: still over");
        sock.total = 300;
        assert_eq!(buf.flush(&mut sock).expect("ok"), Flushed::WouldBlock);
        assert_eq!(buf.over_soft_since(), None, "100 bytes left: back under, forgotten");
        buf.push(Bytes::from(vec![5; 50]), bound).expect("fits");
        assert!(buf.over_soft_since().is_some_and(|again| again >= since), "over again: a new time");
    }
}
