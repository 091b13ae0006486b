//! Building the effective [`Settings`] from their layers: flag > environment variable > file > default.
//!
//! clap resolves flags, `ROOMCAST_*` variables and defaults, and records for every setting where its
//! value came from ([`ArgMatches::value_source`]). A setting whose value came from a flag or the
//! environment is left alone; for every other setting the file's value (checked with the flag's own
//! value parser, so errors name the key) is appended to the arguments as `--key=value`, and clap parses
//! once more. The file therefore only ever fills what flags and the environment left at their defaults,
//! and flag and file values go through the same parsers and the same range checks.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};

use super::file::{self, LoadError};
use super::{Config, Settings};

/// Settings that exist only on the command line (or environment), never in the file.
const NOT_IN_FILE: &[&str] = &["config", "print-config", "help", "version"];

/// The settings as parsed, before validation, with the ones that came from the file.
#[derive(Debug)]
pub struct Loaded {
    /// The merged settings.
    pub settings: Settings,
    /// The file, if one was given.
    pub file: Option<PathBuf>,
    /// Long names of the settings taken from the file.
    pub from_file: BTreeSet<String>,
}

impl Loaded {
    /// Validates the settings into the [`Config`] to run with (see [`Settings::validate`]); an error for
    /// a setting that came from the file says so.
    ///
    /// # Errors
    /// [`LoadError::Invalid`] naming the setting.
    pub fn validate(self, fd_limit: usize) -> Result<Config, LoadError> {
        let Loaded { settings, file, from_file } = self;
        settings.validate(fd_limit).map_err(|setting| {
            let name = setting.setting();
            let origin = match &file {
                Some(path) if from_file.contains(name) => format!(" (set by `{name}` in {})", path.display()),
                _ => String::new(),
            };
            LoadError::Invalid { setting, origin }
        })
    }
}

/// Parses `args` (program name first), the environment and the `--config` file, if any.
///
/// # Errors
/// [`LoadError`] naming the flag, variable or file key at fault.
pub fn load<I, T>(args: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = Settings::command();
    let matches = cmd.clone().try_get_matches_from(&args)?;
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        return Ok(Loaded { settings: Settings::from_arg_matches(&matches)?, file: None, from_file: BTreeSet::new() });
    };
    let table = file::read(&path)?;
    let mut extra = Vec::new();
    let mut from_file = BTreeSet::new();
    for (key, value) in &table {
        let arg =
            settable_arg(&cmd, key).ok_or_else(|| LoadError::UnknownKey { path: path.clone(), key: key.clone() })?;
        if matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let text = file::value_text(&path, key, value)?;
        if let Some(flag) = file_arg(&cmd, arg, key, &text, &path)? {
            extra.push(flag);
        }
        from_file.insert(key.clone());
    }
    let matches = cmd.try_get_matches_from(args.into_iter().chain(extra))?;
    Ok(Loaded { settings: Settings::from_arg_matches(&matches)?, file: Some(path), from_file })
}

/// The argument a file key sets, if it is one the file may set.
fn settable_arg<'c>(cmd: &'c Command, key: &str) -> Option<&'c Arg> {
    if NOT_IN_FILE.contains(&key) {
        return None;
    }
    cmd.get_arguments().find(|a| a.get_long() == Some(key))
}

/// The command-line form of a file value, checked with the argument's parser (`None`: a boolean flag
/// set to `false`, which is its default).
fn file_arg(cmd: &Command, arg: &Arg, key: &str, text: &str, path: &Path) -> Result<Option<OsString>, LoadError> {
    let invalid = |message: String| LoadError::InvalidValue { path: path.to_path_buf(), key: key.to_string(), message };
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match text {
            "true" => Ok(Some(format!("--{key}").into())),
            "false" => Ok(None),
            other => Err(invalid(format!("expected true or false, found {other:?}"))),
        };
    }
    let flag: OsString = format!("--{key}={text}").into();
    // Parse the value alone with the real command: the same parser and possible values as the flag.
    cmd.clone()
        .try_get_matches_from([OsStr::new("roomcast"), flag.as_os_str()])
        .map_err(|e| invalid(clap_reason(&e, text)))?;
    Ok(Some(flag))
}

/// clap's explanation without its `error:` prefix and usage hints.
fn clap_reason(err: &clap::Error, text: &str) -> String {
    let rendered = err.to_string();
    let first = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
    if first.is_empty() { format!("{text:?} is not accepted") } else { first }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("roomcast.toml");
        std::fs::write(&path, text).expect("write");
        path
    }

    fn load_with(args: &[&str]) -> Result<Loaded, LoadError> {
        load(std::iter::once("roomcast").chain(args.iter().copied()))
    }

    #[test]
    fn file_fills_defaults_and_flags_win() {
        let dir = tempfile::tempdir().expect("dir");
        let path = write(&dir, "max-message = 1000\nbatch-size = 7\nsync = \"full\"\nno-persist = true\n");
        let p = path.to_str().expect("utf-8");
        let loaded = load_with(&["--config", p, "--batch-size", "9"]).expect("loads");
        assert_eq!(loaded.settings.max_message, 1000);
        assert_eq!(loaded.settings.batch_size, 9, "the flag wins");
        assert_eq!(loaded.settings.sync, "full");
        assert!(loaded.settings.no_persist);
        assert_eq!(loaded.settings.queue_capacity, 65_536, "default kept");
        assert!(loaded.from_file.contains("max-message") && !loaded.from_file.contains("batch-size"));
    }

    #[test]
    fn bad_file_values_name_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        let cases = [
            ("max-mesage = 5", "`max-mesage`"),
            ("max-message = \"lots\"", "`max-message`"),
            ("sync = \"sometimes\"", "`sync`"),
            ("no-persist = \"yes\"", "`no-persist`"),
            ("shards = [1]", "`shards`"),
            ("print-config = true", "`print-config`"),
            ("max-message = ", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let path = write(&dir, text);
            let err = load_with(&["--config", path.to_str().expect("utf-8")]).expect_err(text);
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
        let path = write(&dir, "max-message = 0");
        let err = load_with(&["--config", path.to_str().expect("utf-8")]).expect("parses").validate(1024);
        let err = err.expect_err("out of range").to_string();
        assert!(err.contains("--max-message") && err.contains("set by `max-message`"), "{err}");
    }

    #[test]
    fn print_config_output_names_every_file_setting_and_reads_back() {
        let cmd = Settings::command();
        // As `main` prints it: the validated configuration written back as settings.
        let print = |config: &Config| toml::to_string(&Settings::from(config)).expect("serialises");
        let config = load_with(&[
            "--static-dir",
            "/srv/web",
            "--jwt-public-key",
            "/etc/roomcast/jwt.pem",
            "--jwt-audience",
            "roomcast",
            "--metrics-addr",
            "127.0.0.1:9100",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin",
            "https://b.example",
            "--redis-url",
            "redis://127.0.0.1:6379/0",
            "--node-id",
            "n1",
            "--sync",
            "full",
            "--retain-per-room",
            "5",
            "--tls-cert",
            "/etc/roomcast/fullchain.pem",
            "--tls-key",
            "/etc/roomcast/key.pem",
            "--api-keys-file",
            "/etc/roomcast/api-keys",
            "--blocklist",
            "/etc/roomcast/blocklist.txt",
        ])
        .expect("defaults")
        .validate(20_000)
        .expect("valid");
        let printed = print(&config);
        let table: toml::Table = printed.parse().expect("valid TOML");
        let settable: BTreeSet<&str> =
            cmd.get_arguments().filter_map(Arg::get_long).filter(|l| !NOT_IN_FILE.contains(l)).collect();
        // The secrets may be set in the file but are never printed (and a webhook URL needs one,
        // and --webhook-ca an https webhook URL).
        let unprinted = ["jwt-secret", "api-key", "webhook-secret", "webhook-url", "webhook-ca"];
        let settable: BTreeSet<&str> = settable.into_iter().filter(|l| !unprinted.contains(l)).collect();
        let printed_keys: BTreeSet<&str> = table.keys().map(String::as_str).collect();
        assert_eq!(printed_keys, settable, "--print-config keys must be exactly the settable flags");
        let dir = tempfile::tempdir().expect("dir");
        let path = write(&dir, &printed);
        let again = load_with(&["--config", path.to_str().expect("utf-8")]).expect("reads back");
        assert_eq!(print(&again.validate(20_000).expect("still valid")), printed);
    }
}
