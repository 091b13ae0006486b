//! End-to-end tests of the web client in a real headless Chromium, driven over WebDriver
//! (`fantoccini` → `chromedriver`), against the real `roomcast` binary.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `apt-get install -y chromium
//! chromium-driver`); without them every test fails with a message saying so. Tests run one at a
//! time (see `support::serial`) and save screenshots in `target/browser-screenshots/`.

mod chat;
mod close_codes;
mod deflate;
mod history;
mod reconnect;
mod semantics;
mod support;
mod tls;
