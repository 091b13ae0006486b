//! One server per database: an exclusive advisory lock (`flock`) on a lock file beside it,
//! `<db>.lock`, taken by [`DbLock::acquire`] before the database is opened and held for as long as
//! the [`Store`](super::Store) lives.
//!
//! Without it two servers on one `--db` both report ready, each holds part of the history, and one
//! lowers the id ceiling the other relies on (ids could repeat). The second server now stops at
//! start, naming the lock file and the pid written in it.
//!
//! Decision: a separate lock file, not a lock on the database file itself:
//! - SQLite holds POSIX (`fcntl`) locks on the database file, and POSIX locks belong to the process:
//!   closing *any* descriptor of that file drops all of them (SQLite's "How To Corrupt An SQLite
//!   Database File", §2.2). Opening the database file a second time for our own lock is exactly that
//!   hazard; a lock file is never opened by SQLite.
//! - On NFS, Linux emulates `flock` with POSIX byte-range locks, which on the database file would
//!   collide with SQLite's own; on a file of its own they cannot.
//! - It can hold the holder's pid for the error message without writing into the database.
//! - `flock` belongs to the open file description, which the kernel closes when the process dies,
//!   however it dies (`kill -9` included): a restart never finds a stale lock. The file itself stays
//!   after exit and is reused; its existence means nothing, only the lock does (do not delete it
//!   while a server runs: a new file would be a new lock).
//!
//! `--no-persist` opens no store and takes no lock.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StoreError;

/// The held lock; released when dropped (the descriptor is closed) or when the process ends.
#[derive(Debug)]
pub(crate) struct DbLock {
    /// The open lock file (the `flock` is on its open file description).
    _file: File,
}

/// The lock file of database `db`: `<db>.lock`.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl DbLock {
    /// Takes the lock of database `db` without waiting, and writes this process's pid into the lock
    /// file.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds it (with the pid it wrote, if readable);
    /// [`StoreError::LockFile`] when the lock file cannot be created, opened or locked.
    pub(crate) fn acquire(db: &Path) -> Result<DbLock, StoreError> {
        let path = lock_path(db);
        let fail = |source| StoreError::LockFile { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(fail)?;
        // SAFETY: `flock` only reads the descriptor, which `file` owns and keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                let mut text = String::new();
                let holder = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                return Err(StoreError::Locked { path, holder });
            }
            return Err(fail(err));
        }
        // Only informational (the lock is what counts), so a full disk does not stop the start.
        let pid = format!("{}\n", std::process::id());
        if let Err(err) = file.set_len(0).and_then(|()| file.write_all_at(pid.as_bytes(), 0)) {
            tracing::warn!(path = %path.display(), %err, "store: could not write the pid into the lock file");
        }
        Ok(DbLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_named_by_its_pid_and_free_again_once_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("x.db");
        let held = DbLock::acquire(&db).expect("free");
        let text = std::fs::read_to_string(lock_path(&db)).expect("lock file");
        assert_eq!(text, format!("{}\n", std::process::id()));
        // A second open file description conflicts, even in the same process.
        match DbLock::acquire(&db) {
            Err(StoreError::Locked { path, holder }) => {
                assert_eq!((path, holder), (lock_path(&db), Some(std::process::id())));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        DbLock::acquire(&db).expect("released on drop");
        assert!(!db.exists(), "the database itself is not touched");
    }
}
