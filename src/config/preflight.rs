//! Checks of the machine a configuration needs, run by `main` before the server starts, so that a
//! database that cannot be written is refused up front with the operating system's reason.
//!
//! SQLite alone gives poor answers here: a missing directory is "unable to open database file" with no
//! path, and a history file the process may not write is opened read-only without complaint (and every
//! later commit fails). The history also needs its directory writable for the `-wal` and `-shm` files.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

/// Why the history database cannot be used. Displayed as `<what> (<path>): <os error>`.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The directory that should hold the database does not exist or cannot be looked at.
    #[error("database directory is missing ({}): {source}", dir.display())]
    DirMissing {
        /// The directory of `--db`.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The directory exists but a file cannot be created in it (permissions, read-only filesystem,
    /// not a directory).
    #[error("database directory is not writable ({}): {source}", dir.display())]
    DirNotWritable {
        /// The directory of `--db`.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The database file exists but cannot be opened for writing.
    #[error("database file is not writable ({}): {source}", path.display())]
    FileNotWritable {
        /// The `--db` path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Checks that the history database at `db` can be created or written: its directory exists and
/// accepts new files (a probe file is created and removed), and an existing file opens for writing.
///
/// # Errors
/// The first [`PreflightError`] found.
pub fn check_database(db: &Path) -> Result<(), PreflightError> {
    let dir = match db.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::metadata(&dir).map_err(|source| PreflightError::DirMissing { dir: dir.clone(), source })?;
    let probe = dir.join(format!(".roomcast-write-check-{}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            // Best effort: a leftover probe is harmless and is replaced by the next start's own.
            let _ = std::fs::remove_file(&probe);
        }
        Err(source) => return Err(PreflightError::DirNotWritable { dir, source }),
    }
    match OpenOptions::new().write(true).open(db) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PreflightError::FileNotWritable { path: db.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_passes_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("dir");
        check_database(&dir.path().join("roomcast.db")).expect("writable");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0, "the probe file is removed");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("nope");
        let err = check_database(&missing.join("roomcast.db")).expect_err("missing");
        assert!(matches!(err, PreflightError::DirMissing { .. }), "{err}");
        assert!(err.to_string().contains(&format!("({})", missing.display())), "{err}");
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_not_writable() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").expect("write");
        let err = check_database(&file.join("roomcast.db")).expect_err("not a directory");
        assert!(matches!(err, PreflightError::DirNotWritable { .. }), "{err}");
    }
}
