//! roomcast binary: load the configuration (flags, environment, `--config` file), set up logging, start
//! the server, wait for SIGINT/SIGTERM, stop cleanly. `--print-config` prints the effective settings and exits.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use roomcast::config::file::LoadError;
use roomcast::config::{self, load, logging};
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
    let loaded = match load::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        // --help, --version and command-line mistakes: clap prints and exits as usual.
        Err(LoadError::Cli(err)) => err.exit(),
        Err(err) => return Err(err).context("invalid configuration"),
    };
    let cfg = loaded.validate(fd_limit).context("invalid configuration")?;
    if cfg.print_config {
        let text = toml::to_string(&cfg).context("cannot print the configuration")?;
        print!("{text}");
        std::io::stdout().flush().context("stdout")?;
        return Ok(());
    }
    logging::init(&cfg.log_level, cfg.log_format)?;

    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    let shards = cfg.shards;
    let max_connections = cfg.max_connections;
    let server = Server::start(cfg).context("cannot start the server")?;
    let addr = server.local_addr();
    tracing::info!(%addr, shards, max_connections, "roomcast ready");
    if let Some(metrics) = server.metrics_addr() {
        // Printed before the `listening on` line, so a reader that waits for that one has both.
        println!("metrics on http://{metrics}");
    }
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
