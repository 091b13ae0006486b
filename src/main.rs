//! roomcast binary: load the configuration (flags, environment, `--config` file), set up logging, start
//! the server, wait for SIGINT/SIGTERM (SIGHUP: reload the TLS certificate and key, and read
//! `--api-keys-file` and `--blocklist` again), stop cleanly. `--print-config` prints the effective settings and exits.
//!
//! A start that fails prints one line, `roomcast: <what> (<path or address>): <reason>`, and exits 1:
//! an unreadable or invalid config file, a database directory that is missing or not writable, a
//! database another server holds, an address already in use. A panic on any thread ends the process
//! with status 101 (`logging::exit_on_panic`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use roomcast::config::file::LoadError;
use roomcast::config::{self, load, logging, preflight};
use roomcast::reactor::{Server, ServerError};
use roomcast::store::StoreError;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    // First: a panic on any thread, from here on, ends the process (status 101; docs/DEPLOY.md).
    logging::exit_on_panic();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("roomcast: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error as one line: the start failures that name a path or an address in their own words,
/// anything else as its chain of causes.
fn one_line(err: &anyhow::Error) -> String {
    let text = match err.downcast_ref::<ServerError>() {
        Some(ServerError::Bind { addr, source }) => format!("cannot listen ({addr}): {source}"),
        Some(ServerError::Store(StoreError::Open { path, source })) => {
            format!("cannot open the database ({}): {source}", path.display())
        }
        Some(ServerError::Store(StoreError::Locked { path, holder })) => {
            let holder = holder.map_or_else(|| "pid unknown".to_string(), |pid| format!("pid {pid}"));
            format!("the database is in use ({}): another roomcast process holds it ({holder})", path.display())
        }
        Some(ServerError::Store(StoreError::LockFile { path, source })) => {
            format!("cannot lock the database ({}): {source}", path.display())
        }
        Some(ServerError::Tls(err)) => err.to_string(),
        Some(ServerError::Blocklist(err)) => err.to_string(),
        Some(_) => format!("cannot start the server: {}", causes(err)),
        None => causes(err),
    };
    text.replace('\n', " ")
}

/// The chain of causes joined with `: `, leaving out a cause its parent's message already ends with
/// (errors such as `cannot read config file (PATH): <os error>` print their source themselves).
fn causes(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !parts.last().is_some_and(|parent| parent.ends_with(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// SIGHUP: reads `--api-keys-file` again (a failure keeps the keys in force; never logs a key).
fn reload_api_keys(server: &Server) {
    match server.reload_api_keys() {
        Ok(Some(keys)) => tracing::info!(keys, "SIGHUP: API keys file read again"),
        Ok(None) => tracing::info!("SIGHUP: no --api-keys-file to read"),
        Err(err) => tracing::error!(%err, "SIGHUP: the API keys in force are kept"),
    }
}

/// SIGHUP: reads `--blocklist` again (a bad file keeps the list in force, and says why).
fn reload_blocklist(server: &Server) {
    match server.reload_blocklist() {
        Ok(Some(entries)) => tracing::info!(entries, "SIGHUP: blocklist read again"),
        Ok(None) => {}
        Err(err) => tracing::error!("SIGHUP: the blocklist in force is kept: {err}"),
    }
}

fn run() -> anyhow::Result<()> {
    let fd_limit = config::raise_fd_limit();
    let loaded = match load::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        // --help, --version and command-line mistakes: clap prints and exits as usual.
        Err(LoadError::Cli(err)) => err.exit(),
        // The config file's errors name the file and what is wrong with it.
        Err(err) => return Err(err.into()),
    };
    let print_config = loaded.settings.print_config;
    let cfg = loaded.validate(fd_limit).context("invalid configuration")?;
    if print_config {
        // Written back as settings: automatic values resolved, readable as a `--config` file.
        let text = toml::to_string(&config::Settings::from(&cfg)).context("cannot print the configuration")?;
        print!("{text}");
        std::io::stdout().flush().context("stdout")?;
        return Ok(());
    }
    if !cfg.no_persist {
        preflight::check_database(&cfg.db)?;
    }
    logging::init(&cfg.log_level, cfg.log_format)?;

    // SIGHUP reloads the TLS certificate and key, the API keys file and the blocklist; with none of
    // them configured it keeps its default (ends the process).
    let reloadable = cfg.tls.is_some() || cfg.api_keys_file.is_some() || cfg.blocklist.is_some();
    let hup: &[i32] = if reloadable { &[SIGHUP] } else { &[] };
    let mut signals = Signals::new([SIGINT, SIGTERM].iter().chain(hup)).context("cannot install signal handlers")?;
    let shards = cfg.shards.get();
    let max_connections = cfg.max_connections.get();
    let server = Server::start(cfg)?;
    let addr = server.local_addr();
    tracing::info!(%addr, shards, max_connections, "roomcast ready");
    if let Some(metrics) = server.metrics_addr() {
        // Printed before the `listening on` line, so a reader that waits for that one has both.
        println!("metrics on http://{metrics}");
    }
    // Scripts and tests read the bound address (port 0 picks a free one) from this line.
    let scheme = if server.is_tls() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    std::io::stdout().flush().context("stdout")?;

    for signal in signals.forever() {
        if signal == SIGHUP {
            match server.reload_tls() {
                Ok(false) => {}
                Ok(true) => tracing::info!("SIGHUP: TLS certificate and key reloaded; new connections use them"),
                Err(err) => tracing::error!("SIGHUP: TLS reload refused, the previous certificate stays in use: {err}"),
            }
            reload_api_keys(&server);
            reload_blocklist(&server);
            continue;
        }
        tracing::info!(signal, "shutting down");
        break;
    }
    server.shutdown().context("shutdown")?;
    tracing::info!("bye");
    Ok(())
}
