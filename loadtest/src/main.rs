//! `roomcast-load` entry point: parses the command line and dispatches to a scenario; exit
//! status 0 = pass, 1 = error, 2 = usage, 3 = a `--fail-if-*` threshold was crossed.

mod accounting;
mod chat;
mod cli;
mod clock;
mod compare;
mod conn;
mod cpu;
mod engine;
mod error;
mod hgrm;
mod http;
mod marker;
mod net;
mod procstat;
mod progress;
mod protocol;
mod reconnect;
mod report;
mod scenario;
mod schedule;
mod sink;
mod spread;
mod stats;
mod svg;
mod target;
mod timer;
mod tls;
mod worker;
mod ws;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let code = match scenario::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("roomcast-load: {e}");
            1
        }
    };
    std::process::exit(code);
}
