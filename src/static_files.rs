//! The web client's files: embedded in the binary (one file deploys), or read from `--static-dir`;
//! and the client library `roomcast.js` (clients/js/), always the embedded one: applications that
//! import `/roomcast.js` get the library this server was built with, whatever `--static-dir` holds.
//!
//! Lookups from disk are confined to the directory: the request path must be relative, made of plain
//! names (no `..`, no absolute parts), and its canonical path (symlinks resolved) must stay inside the
//! canonical root. Files are small; reading one on the event loop is bounded by `MAX_FILE_BYTES`.

use std::borrow::Cow;
use std::path::{Component, Path};

use thiserror::Error;

/// Largest file served from `--static-dir`.
pub(crate) const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The embedded client.
const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../static/index.html")),
    ("app.js", include_bytes!("../static/app.js")),
    ("style.css", include_bytes!("../static/style.css")),
];

/// The client library, `clients/js/roomcast.js`, served at `/roomcast.js`.
pub(crate) fn client_library() -> StaticFile {
    StaticFile {
        content_type: content_type("roomcast.js"),
        body: Cow::Borrowed(include_bytes!("../clients/js/roomcast.js")),
    }
}

/// A file to serve.
#[derive(Debug)]
pub(crate) struct StaticFile {
    /// `Content-Type`, from the extension.
    pub(crate) content_type: &'static str,
    /// The bytes.
    pub(crate) body: Cow<'static, [u8]>,
}

/// Why a static file is not served.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum StaticError {
    /// No such file (or a path that tries to leave the root: we do not say which).
    #[error("no such file")]
    NotFound,
    /// The file is larger than `MAX_FILE_BYTES`.
    #[error("file too large to serve")]
    TooLarge,
}

impl StaticError {
    /// HTTP status for the error.
    pub(crate) fn status(&self) -> u16 {
        match self {
            StaticError::NotFound => 404,
            StaticError::TooLarge => 500,
        }
    }

    /// JSON error code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            StaticError::NotFound => "not_found",
            StaticError::TooLarge => "file_too_large",
        }
    }
}

/// Finds `path` (relative to the static root, already percent-decoded) in `dir` or the embedded set.
///
/// # Errors
/// [`StaticError::NotFound`] for missing files and any path that is not a plain relative path inside
/// the root; [`StaticError::TooLarge`] past `MAX_FILE_BYTES`.
pub(crate) fn lookup(dir: Option<&Path>, path: &str) -> Result<StaticFile, StaticError> {
    let rel = Path::new(path);
    if path.is_empty() || path.contains('\0') || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(StaticError::NotFound);
    }
    let content_type = content_type(path);
    let Some(dir) = dir else {
        return EMBEDDED
            .iter()
            .find(|(name, _)| *name == path)
            .map(|(_, body)| StaticFile { content_type, body: Cow::Borrowed(body) })
            .ok_or(StaticError::NotFound);
    };
    let root = dir.canonicalize().map_err(|_| StaticError::NotFound)?;
    let full = root.join(rel).canonicalize().map_err(|_| StaticError::NotFound)?;
    if !full.starts_with(&root) {
        return Err(StaticError::NotFound);
    }
    let meta = std::fs::metadata(&full).map_err(|_| StaticError::NotFound)?;
    if !meta.is_file() {
        return Err(StaticError::NotFound);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(StaticError::TooLarge);
    }
    let body = std::fs::read(&full).map_err(|_| StaticError::NotFound)?;
    Ok(StaticFile { content_type, body: Cow::Owned(body) })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_files_are_served_with_types() {
        let file = lookup(None, "index.html").expect("embedded");
        assert_eq!(file.content_type, "text/html; charset=utf-8");
        assert_eq!(lookup(None, "app.js").expect("embedded").content_type, "text/javascript; charset=utf-8");
        assert_eq!(lookup(None, "nope.txt").err(), Some(StaticError::NotFound));
        assert_eq!(client_library().content_type, "text/javascript; charset=utf-8");
    }

    #[test]
    fn traversal_is_refused() {
        let root = std::env::temp_dir().join(format!("roomcast-static-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("ok.css"), "x").expect("write");
        let outside = root.with_extension("secret");
        std::fs::write(&outside, "secret").expect("write");
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink(&outside, root.join("link.css"));
        assert!(lookup(Some(&root), "ok.css").is_ok());
        for bad in ["../roomcast.secret", "/etc/passwd", "sub/../../x", "link.css", "sub", "", "a\0b"] {
            assert_eq!(lookup(Some(&root), bad).err(), Some(StaticError::NotFound), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_file(&outside);
    }
}
