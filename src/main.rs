//! roomcast binary entry point.
fn main() {}
