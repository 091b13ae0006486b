//! The web client follows the application close codes (docs/PROTOCOL.md, "Close codes"): it shows
//! why, reconnects after 4000–4499 and stays offline after 4500–4999. The closes come from the
//! server API's disconnect.

use crate::support::{Driver, Server, run};

const KEY: &str = "browser-api-key-0123456789";

/// `POST /api/users/{user}/disconnect` with `body`; panics unless 200.
fn disconnect(server: &Server, user: &str, body: &str) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect to roomcast");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("read timeout");
    write!(
        stream,
        "POST /api/users/{user}/disconnect HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read the response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn kicked_stays_offline_and_says_why_disconnected_reconnects() {
    run(async {
        let server = Server::start_with(&["--rate-limit", "0", "--api-key", KEY]);
        let mut driver = Driver::start();
        let page = driver.browser("close-codes", 1000, 700).await;
        page.login(&server, "dave", "ops").await;

        // 4000: reconnect allowed; the page comes back online by itself.
        disconnect(&server, "dave", r#"{"reason":"maintenance","reconnect":true}"#);
        // The reconnect may come before a poll could see the page offline: wait for what it said.
        page.wait_js(
            "the page saying why it was closed",
            "return document.body.textContent.includes('closed by the server: disconnected: maintenance')",
            vec![],
        )
        .await;
        page.wait_js("the page back in the room", "return document.body.textContent.includes('rejoined ops')", vec![])
            .await;
        page.wait_online().await;

        // 4500: kicked; the page says why and does not reconnect.
        disconnect(&server, "dave", r#"{"reason":"spam","reconnect":false}"#);
        page.wait_js(
            "the page saying it was kicked",
            "const s = document.getElementById('status'); \
             return s.dataset.state === 'offline' && s.textContent.includes('kicked: spam')",
            vec![],
        )
        .await;
        page.screenshot("close-codes-kicked").await;
        let accepted = "roomcast_connections_accepted_total";
        let before = server.metric(accepted);
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        // Less the first scrape's own connection.
        let attempts = server.metric(accepted) - before - 1.0;
        assert_eq!(attempts, 0.0, "no reconnect after 4500");
        let state = page.js("return roomcastApp.state.connection", vec![]).await;
        assert_eq!(state, serde_json::json!("offline"));
        page.finish(&[]).await;
    });
}
