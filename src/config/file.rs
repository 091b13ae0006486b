//! The optional TOML configuration file: reading it and turning its values into flag values.
//!
//! The file is a flat table whose keys are the long flag names (`max-message = 1000`,
//! `sync = "full"`, `no-persist = true`). Values may be strings, integers, floats or booleans; each is
//! checked with the flag's own parser, so a file value is held to exactly the rules of the flag, and
//! errors name the file and the key. Unknown keys are errors (a typo must not silently fall back to a
//! default).

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::ConfigError;

/// Why the configuration could not be loaded; every variant names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The command line or an environment variable was rejected by clap (also `--help`/`--version`,
    /// which `main` hands back to clap to print and exit).
    #[error("{0}")]
    Cli(#[from] clap::Error),
    /// The file could not be read.
    #[error("cannot read config file ({}): {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file is not valid TOML ({}): {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message with the line and column, on one line.
        message: String,
    },
    /// The file names a setting that does not exist.
    #[error("invalid config file ({}): unknown setting `{key}` (settings are the long flag names, see docs/CONFIG.md)", path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A file value is not acceptable for its setting.
    #[error("invalid config file ({}): invalid value for `{key}`: {message}", path.display())]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A setting is out of range; `origin` says where it was set when that was the file.
    #[error("{setting}{origin}")]
    Invalid {
        /// The range error (names the setting).
        setting: ConfigError,
        /// `" (set by `key` in FILE)"` or empty.
        origin: String,
    },
}

/// Reads and parses the file into its top-level table.
///
/// # Errors
/// [`LoadError::Read`] or [`LoadError::Parse`].
pub fn read(path: &Path) -> Result<Table, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
    text.parse::<Table>().map_err(|e| LoadError::Parse { path: path.to_path_buf(), message: one_line(&e, &text) })
}

/// The TOML parser's message with its position as `line L, column C`, on one line (its `Display` draws
/// the offending line over several lines).
fn one_line(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim().replace('\n', "; ");
    let Some(span) = err.span() else { return message };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{message} at line {line}, column {column}")
}

/// A file value as the text a flag would carry. Booleans come back as `true`/`false`.
///
/// # Errors
/// [`LoadError::InvalidValue`] for arrays, tables and dates, which no setting takes.
pub fn value_text(path: &Path, key: &str, value: &Value) -> Result<String, LoadError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        Value::Array(_) | Value::Table(_) | Value::Datetime(_) => Err(LoadError::InvalidValue {
            path: path.to_path_buf(),
            key: key.to_string(),
            message: format!("expected a string, number or boolean, found {}", value.type_str()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_flag_text_and_structures_are_refused() {
        let p = Path::new("x.toml");
        assert_eq!(value_text(p, "a", &Value::Integer(5)).expect("int"), "5");
        assert_eq!(value_text(p, "a", &Value::String("full".into())).expect("str"), "full");
        assert_eq!(value_text(p, "a", &Value::Boolean(true)).expect("bool"), "true");
        let err = value_text(p, "shards", &Value::Array(vec![])).expect_err("array");
        assert!(err.to_string().contains("`shards`"), "{err}");
    }
}
