//! roomcast binary: parse the configuration, start the server, wait for SIGINT/SIGTERM, stop cleanly.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use roomcast::config::{self, Config};
use roomcast::reactor::Server;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("roomcast: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let fd_limit = config::raise_fd_limit();
    let cfg = Config::parse().validate(fd_limit).context("invalid configuration")?;
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .with_context(|| format!("invalid --log-level {:?}: use error, warn, info, debug or trace", cfg.log_level))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    let shards = cfg.shards;
    let max_connections = cfg.max_connections;
    let server = Server::start(cfg).context("cannot start the server")?;
    let addr = server.local_addr();
    tracing::info!(%addr, shards, max_connections, "roomcast ready");
    // Scripts and tests read the bound address (port 0 picks a free one) from this line.
    println!("listening on http://{addr}");
    std::io::stdout().flush().context("stdout")?;

    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "shutting down");
    }
    server.shutdown().context("shutdown")?;
    tracing::info!("bye");
    Ok(())
}
