//! Moderation of what users post, before it is published: the content filter ([`blocklist`],
//! `--blocklist`, `--blocklist-action`) and repeated-message detection ([`repeat`],
//! `--repeat-limit`, `--repeat-window`).
//!
//! One [`Moderator`] per server, shared by the shards; `session::screen` is the one place the
//! message paths (a text frame, a JSON `message` or `dm`, an `edit`, the API's publish routes) call
//! it, on the shard thread, before the room's lock. The word list is built into its automaton once
//! per (re)load and swapped whole (`RwLock<Arc<Blocklist>>`: a check holds the lock only to clone
//! the `Arc`, so a reload on SIGHUP never waits behind a scan and a scan never sees half a list).

pub mod blocklist;
pub(crate) mod repeat;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

pub use crate::config::BlocklistAction;
pub use blocklist::{Blocklist, BlocklistError};

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Publish it as it is.
    Pass,
    /// Publish this instead (`--blocklist-action mask`).
    Masked(String),
    /// Refused: it contains a blocked word (`--blocklist-action reject`).
    Blocked,
    /// Refused: the user sent it more than `--repeat-limit` times within `--repeat-window`.
    Repeated,
}

/// Whether a text is a fresh message (checked for repeats too) or an edit (the word list only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A message or direct message from a client.
    Message,
    /// An edit's new content, or a message from the server API (a backend may repeat itself).
    Unrepeated,
}

/// Whose messages are compared for repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Author<'a> {
    /// A named user: all its connections, on any shard, in any room.
    User(&'a str),
    /// A connection without a name of its own (no nickname, no token: every such connection is
    /// called `anonymous`, and they are not one user): this connection only.
    Connection(u64),
}

/// The server's moderation state.
#[derive(Debug)]
pub(crate) struct Moderator {
    file: Option<PathBuf>,
    action: BlocklistAction,
    list: RwLock<Arc<Blocklist>>,
    repeats: Option<repeat::Repeats>,
}

impl Moderator {
    /// The moderator for the word list in `file` (read now; none: no filter), refusing repeats past
    /// `repeat_limit` (0: off) within `repeat_window`.
    ///
    /// # Errors
    /// [`BlocklistError`] naming the file and the reason.
    pub(crate) fn new(
        file: Option<&Path>,
        action: BlocklistAction,
        repeat_limit: u32,
        repeat_window: Duration,
    ) -> Result<Moderator, BlocklistError> {
        let list = file.map(Blocklist::load).transpose()?.unwrap_or_default();
        Ok(Moderator {
            file: file.map(Path::to_path_buf),
            action,
            list: RwLock::new(Arc::new(list)),
            repeats: repeat::Repeats::new(repeat_limit, repeat_window),
        })
    }

    /// Reads the word list again (SIGHUP): the number of entries now in force (`None`: no
    /// `--blocklist`). On an error the list in force is kept.
    ///
    /// # Errors
    /// [`BlocklistError`] naming the file and the reason.
    pub(crate) fn reload(&self) -> Result<Option<usize>, BlocklistError> {
        let Some(file) = &self.file else { return Ok(None) };
        let list = Blocklist::load(file)?;
        let entries = list.len();
        *self.list.write() = Arc::new(list);
        Ok(Some(entries))
    }

    /// Judges `content` from `author`: the word list first (a blocked message is not counted as a
    /// repeat), then, for a [`Kind::Message`], the repeats.
    pub(crate) fn screen(&self, author: Author<'_>, content: &str, kind: Kind) -> Verdict {
        let mut verdict = Verdict::Pass;
        // Without `--blocklist` the list is empty for good: no lock and no shared count to touch
        // per message (the default configuration).
        let list = self.file.as_ref().map(|_| Arc::clone(&self.list.read()));
        if let Some(list) = list.filter(|list| !list.is_empty()) {
            match self.action {
                BlocklistAction::Reject if list.matches(content) => return Verdict::Blocked,
                BlocklistAction::Reject => {}
                BlocklistAction::Mask => {
                    if let Some(masked) = list.mask(content) {
                        verdict = Verdict::Masked(masked);
                    }
                }
            }
        }
        if kind == Kind::Message
            && let Some(repeats) = &self.repeats
            && !repeats.admit(author, content, Instant::now())
        {
            return Verdict::Repeated;
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moderator(list: &str, action: BlocklistAction, limit: u32) -> (Moderator, tempfile::NamedTempFile) {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, list.as_bytes()).expect("write");
        let m = Moderator::new(Some(file.path()), action, limit, Duration::from_secs(30)).expect("valid");
        (m, file)
    }

    #[test]
    fn reject_mask_and_repeats() {
        let (m, _file) = moderator("darn\n", BlocklistAction::Reject, 2);
        assert_eq!(m.screen(Author::User("ann"), "oh darn", Kind::Message), Verdict::Blocked);
        assert_eq!(m.screen(Author::User("ann"), "hello", Kind::Message), Verdict::Pass);
        assert_eq!(m.screen(Author::User("ann"), "hello", Kind::Message), Verdict::Pass);
        assert_eq!(m.screen(Author::User("ann"), "Hello", Kind::Message), Verdict::Repeated);
        assert_eq!(m.screen(Author::User("ann"), "hello", Kind::Unrepeated), Verdict::Pass, "edits are not counted");
        let (m, _file) = moderator("darn\n", BlocklistAction::Mask, 0);
        assert_eq!(m.screen(Author::User("ann"), "oh Darn", Kind::Message), Verdict::Masked("oh ****".into()));
    }

    #[test]
    fn a_bad_reload_keeps_the_list() {
        let (m, file) = moderator("darn\n", BlocklistAction::Reject, 0);
        std::fs::write(file.path(), "heck\n").expect("write");
        assert_eq!(m.reload().expect("reloads"), Some(1));
        assert_eq!(m.screen(Author::User("ann"), "oh heck", Kind::Message), Verdict::Blocked);
        assert_eq!(m.screen(Author::User("ann"), "oh darn", Kind::Message), Verdict::Pass);
        std::fs::write(file.path(), "a*b\n").expect("write");
        assert!(m.reload().is_err());
        assert_eq!(m.screen(Author::User("ann"), "oh heck", Kind::Message), Verdict::Blocked);
        let none = Moderator::new(None, BlocklistAction::Reject, 0, Duration::from_secs(1)).expect("no list");
        assert_eq!(none.reload().expect("nothing to read"), None);
    }
}
