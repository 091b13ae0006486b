//! Chromium's own permessage-deflate offer is accepted, and compressed messages arrive in the page
//! byte-identical (the web client's messages and a raw `WebSocket` opened in the page).

use serde_json::json;

use crate::support::{Driver, Peer, Server, run};

#[test]
fn chromium_negotiates_deflate_and_messages_arrive_byte_identical() {
    run(async {
        let server = Server::start();
        let mut driver = Driver::start();
        let page = driver.browser("dora", 900, 700).await;
        page.login(&server, "dora", "zip").await;
        assert!(server.metric("roomcast_deflate_connections_total") >= 1.0, "the web client negotiated deflate");

        // Long enough (over --deflate-min-bytes) to be sent compressed, with non-ASCII text.
        let long = "Grüße aus Köln — the quick brown fox jumps over the lazy dog. ".repeat(12);
        let mut peer = Peer::join(&server, "zip", "carol");
        peer.say("zip", &long);
        page.wait_message("zip", &long).await;

        // A raw WebSocket from the page: the browser's own offer, its answer, and the echo.
        let opened = "window.__dz = { ext: null, got: [] };
            const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws/chat?room=zip-raw');
            ws.onopen = () => { window.__dz.ext = ws.extensions; ws.send(arguments[0]); };
            ws.onmessage = (e) => window.__dz.got.push(e.data);
            return true";
        page.js(opened, vec![json!(long)]).await;
        let ext = page.wait_js("the raw socket to open", "return window.__dz.ext", vec![]).await;
        let ext = ext.as_str().unwrap_or_default().to_string();
        assert!(ext.starts_with("permessage-deflate"), "extensions: {ext:?}");
        assert!(ext.contains("client_no_context_takeover"), "extensions: {ext:?}");
        let echo = page.wait_js("the echo", "return window.__dz.got.length > 0 && window.__dz.got[0]", vec![]).await;
        assert_eq!(echo, json!(long), "the echo is byte-identical");
        assert!(server.metric("roomcast_deflate_messages_compressed_total") >= 2.0);
        assert!(server.metric("roomcast_inflated_messages_total") >= 1.0, "Chromium sent it compressed");
    });
}
