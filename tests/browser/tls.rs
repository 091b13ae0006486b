//! The web client over `https://` and `wss://`: roomcast with `--tls-cert`/`--tls-key` (a
//! self-signed certificate made at test time; Chromium runs with `--ignore-certificate-errors`).

use crate::support::{Driver, Server, run};

/// Two browsers load the page over https, the client connects with wss (it picks the scheme from
/// the page's), and they chat.
#[test]
fn two_browsers_chat_over_https() {
    run(async {
        let server = Server::start_tls();
        assert!(server.url().starts_with("https://"));
        let mut driver = Driver::start();
        let alice = driver.browser("alice-tls", 1100, 680).await;
        let bob = driver.browser("bob-tls", 390, 760).await;
        alice.login(&server, "alice", "secure").await;
        bob.login(&server, "bob", "secure").await;
        let protocol = alice.js("return location.protocol", vec![]).await;
        assert_eq!(protocol, serde_json::json!("https:"));
        alice.say("hello over TLS").await;
        bob.wait_message("secure", "hello over TLS").await;
        bob.say("encrypted both ways").await;
        alice.wait_message("secure", "encrypted both ways").await;
        let shown = alice.messages("secure").await;
        let texts: Vec<&str> = shown.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["hello over TLS", "encrypted both ways"], "{shown:?}");
    });
}
