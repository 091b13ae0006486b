//! API keys: `--api-key` (repeatable) and `--api-keys-file` (one per line, reloaded on SIGHUP).
//!
//! A request is authorised by `Authorization: Bearer KEY`. The key is compared with every configured
//! key in constant time (`subtle`), all of them, so neither which key matched nor how many bytes of
//! a key matched shows in the answer's timing (the configured keys' lengths may). With no key at all
//! the API is off and every `/api/` path answers 404. Keys are never logged.

use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use subtle::ConstantTimeEq;

/// Why the keys file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read.
    #[error("cannot read the API keys file ({}): {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The configured keys.
#[derive(Debug)]
pub(crate) struct ApiKeys {
    /// From `--api-key` (fixed for the life of the process).
    fixed: Vec<Vec<u8>>,
    /// `--api-keys-file`, if any.
    file: Option<PathBuf>,
    /// The file's keys as last read.
    from_file: RwLock<Vec<Vec<u8>>>,
}

impl ApiKeys {
    /// Keys from `fixed` and the file `file` (read now).
    ///
    /// # Errors
    /// [`KeysError::Read`] when the file cannot be read.
    pub(crate) fn new(fixed: &[String], file: Option<&Path>) -> Result<ApiKeys, KeysError> {
        let from_file = match file {
            Some(path) => read(path)?,
            None => Vec::new(),
        };
        Ok(ApiKeys {
            fixed: fixed.iter().map(|k| k.as_bytes().to_vec()).collect(),
            file: file.map(Path::to_path_buf),
            from_file: RwLock::new(from_file),
        })
    }

    /// Whether any key is configured (the API is on).
    pub(crate) fn enabled(&self) -> bool {
        !self.fixed.is_empty() || !self.from_file.read().is_empty()
    }

    /// Reads the keys file again (SIGHUP); returns how many keys it holds. On an error the keys
    /// read before stay in force.
    ///
    /// # Errors
    /// [`KeysError::Read`].
    pub(crate) fn reload(&self) -> Result<Option<usize>, KeysError> {
        let Some(path) = &self.file else { return Ok(None) };
        let keys = read(path)?;
        let n = keys.len();
        *self.from_file.write() = keys;
        Ok(Some(n))
    }

    /// Whether `authorization` (the header's value) is `Bearer KEY` with a configured key.
    pub(crate) fn authorizes(&self, authorization: Option<&str>) -> bool {
        let Some(presented) = authorization.and_then(bearer) else { return false };
        let presented = presented.as_bytes();
        let from_file = self.from_file.read();
        let mut matched = subtle::Choice::from(0);
        for key in self.fixed.iter().chain(from_file.iter()) {
            matched |= key.as_slice().ct_eq(presented);
        }
        matched.into()
    }
}

/// The credentials of a `Bearer` authorization (scheme case-insensitive, RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|k| !k.is_empty())
}

/// The keys of a file: one per line, blank lines and lines starting with `#` skipped.
fn read(path: &Path) -> Result<Vec<Vec<u8>>, KeysError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read { path: path.to_path_buf(), source })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.as_bytes().to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_keys_are_matched_exactly() {
        let keys = ApiKeys::new(&["k-one-0123456789".into(), "k-two-0123456789".into()], None).expect("keys");
        assert!(keys.enabled());
        assert!(keys.authorizes(Some("Bearer k-one-0123456789")));
        assert!(keys.authorizes(Some("bearer  k-two-0123456789 ")));
        for bad in [
            "Bearer k-one-012345678",
            "Bearer k-one-01234567890",
            "Basic k-one-0123456789",
            "Bearer ",
            "k-one-0123456789",
        ] {
            assert!(!keys.authorizes(Some(bad)), "{bad}");
        }
        assert!(!keys.authorizes(None));
        assert!(!ApiKeys::new(&[], None).expect("none").enabled());
    }

    #[test]
    fn the_file_is_read_again_on_reload() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "# comment\n\nfile-key-0123456789\n").expect("write");
        let keys = ApiKeys::new(&[], Some(&path)).expect("keys");
        assert!(keys.authorizes(Some("Bearer file-key-0123456789")));
        std::fs::write(&path, "other-key-0123456789\n").expect("write");
        assert_eq!(keys.reload().expect("reload"), Some(1));
        assert!(!keys.authorizes(Some("Bearer file-key-0123456789")));
        assert!(keys.authorizes(Some("Bearer other-key-0123456789")));
        std::fs::remove_file(&path).expect("rm");
        assert!(keys.reload().is_err());
        assert!(keys.authorizes(Some("Bearer other-key-0123456789")), "a failed reload keeps the keys");
    }
}
