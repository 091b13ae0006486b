//! `roomcast-load`: placeholder entry point; the load generator lands with its own issue.
fn main() {
    eprintln!("roomcast-load: not built yet");
    std::process::exit(2);
}
