//! Two people chat; rooms, unread counters and presence; hostile text stays text.

use serde_json::json;

use crate::support::{Driver, Peer, Server, run};

/// Alice (desktop window) and Bob (phone-sized window) see each other's messages; Alice's own
/// message is marked as hers and confirmed; a message in a room she is not looking at raises its
/// unread counter, which clears when she switches to it.
#[test]
fn two_browsers_chat_and_see_each_other() {
    run(async {
        let server = Server::start();
        let mut driver = Driver::start();
        let alice = driver.browser("alice", 1100, 680).await;
        let bob = driver.browser("bob", 390, 760).await;

        alice.login(&server, "alice", "lobby").await;
        bob.login(&server, "bob", "lobby").await;
        alice
            .wait_js(
                "bob in alice's member list",
                "return [...document.querySelectorAll('#people li')].some(li => li.textContent === 'bob')",
                vec![],
            )
            .await;

        alice.say("hello from alice").await;
        bob.wait_message("lobby", "hello from alice").await;
        bob.say("hi alice, bob here").await;
        alice.wait_message("lobby", "hi alice, bob here").await;
        alice.wait_message("lobby", "hello from alice").await;

        for (who, page) in [("alice", &alice), ("bob", &bob)] {
            let shown = page.messages("lobby").await;
            let texts: Vec<(&str, &str)> = shown.iter().map(|m| (m.user.as_str(), m.content.as_str())).collect();
            assert_eq!(texts, [("alice", "hello from alice"), ("bob", "hi alice, bob here")], "{who} sees {shown:?}");
            assert!(shown.iter().all(|m| m.id.is_some() && !m.pending), "{who}: all confirmed: {shown:?}");
            assert!(shown[0].id < shown[1].id, "{who}: ids increase: {shown:?}");
            assert_eq!(shown.iter().map(|m| m.mine).collect::<Vec<_>>(), [who == "alice", who == "bob"], "{who}: own");
        }

        // A second room over the same socket: join it, go back to the lobby, get a message there.
        let join = alice.client.find(fantoccini::Locator::Id("join-room")).await.expect("join field");
        join.send_keys(&format!("random{}", crate::support::ENTER)).await.expect("join random");
        alice.wait_js("joined random", "return document.getElementById('room-title').textContent === 'random' && !document.getElementById('text').disabled", vec![]).await;
        alice
            .js("document.querySelector('li.room[data-room=\"lobby\"] .room-open').click(); return true", vec![])
            .await;
        let mut carol = Peer::join(&server, "random", "carol");
        carol.say("random", "anyone in random?");
        carol.say("random", "the standup moved to 10:30");
        let badge = "const b = document.querySelector('li.room[data-room=\"random\"] .badge'); return !b.hidden && b.textContent";
        let unread = alice.wait_js("unread counter on random", &format!("{badge} === '2'"), vec![]).await;
        assert_eq!(unread, json!(true));
        bob.say("see you there").await;
        alice.wait_message("lobby", "see you there").await;

        // The README screenshot: two rooms, an unread counter, presence, own and others' messages.
        alice.screenshot("readme").await;
        bob.screenshot("chat-bob-phone").await;

        alice
            .js("document.querySelector('li.room[data-room=\"random\"] .room-open').click(); return true", vec![])
            .await;
        alice.wait_message("random", "the standup moved to 10:30").await;
        let hidden =
            alice.js("return document.querySelector('li.room[data-room=\"random\"] .badge').hidden", vec![]).await;
        assert_eq!(hidden, json!(true), "switching to a room clears its unread counter");
        alice.screenshot("chat-alice-random").await;
        carol.close();

        // Server errors are shown in the conversation, not swallowed: send a command the server
        // does not know on the page's own socket and look for the error line.
        alice.js("roomcastApp.state.client.send({ type: 'dance' }); return true", vec![]).await;
        let error = alice
            .wait_js(
                "the server error shown inline",
                "const e = document.querySelector('ol.log[data-room=\"random\"] li.error[role=alert]');\
                 return e && e.textContent",
                vec![],
            )
            .await;
        assert!(error.as_str().is_some_and(|e| e.starts_with("unknown_type: ")), "{error}");

        // Leaving a room: its tab goes, the lobby is shown again, the socket stays up.
        alice
            .js("document.querySelector('li.room[data-room=\"random\"] .room-leave').click(); return true", vec![])
            .await;
        alice
            .wait_js(
                "random left",
                "return !document.querySelector('li.room[data-room=\"random\"]')\
                 && !document.querySelector('ol.log[data-room=\"random\"]')\
                 && document.getElementById('room-title').textContent === 'lobby'",
                vec![],
            )
            .await;
        bob.say("still here after you left random").await;
        alice.wait_message("lobby", "still here after you left random").await;

        alice.finish(&[]).await;
        bob.finish(&[]).await;
    });
}

/// Markup in messages and nicknames is shown as literal text: no element is created from it and
/// no script runs, whether it was typed in the page or sent by another client.
#[test]
fn hostile_text_is_shown_literally() {
    run(async {
        let server = Server::start();
        let mut driver = Driver::start();
        let page = driver.browser("xss", 1000, 700).await;
        page.login(&server, "alice", "xss").await;

        let typed = "<img src=x onerror=alert(1)>";
        let from_peer =
            ["<script>window.__pwned = 1; alert(2)</script>", "<img src=x onerror=\"window.__pwned = 3\"><b>bold?</b>"];
        let mallory_nick = "<b>mallory</b>";
        let mut mallory = Peer::join(&server, "xss", mallory_nick);
        page.say(typed).await;
        for text in from_peer {
            mallory.say("xss", text);
        }
        for text in [typed].into_iter().chain(from_peer) {
            page.wait_message("xss", text).await;
        }

        let shown = page.messages("xss").await;
        let texts: Vec<(&str, &str)> = shown.iter().map(|m| (m.user.as_str(), m.content.as_str())).collect();
        assert_eq!(texts, [("alice", typed), (mallory_nick, from_peer[0]), (mallory_nick, from_peer[1])]);

        let dom = page
            .js(
                "return {\
               imgs: document.querySelectorAll('img').length,\
               scripts: [...document.querySelectorAll('script')].map(s => s.getAttribute('src')),\
               bolds: document.querySelectorAll('#chat b').length,\
               pwned: typeof window.__pwned,\
               people: [...document.querySelectorAll('#people li')].map(li => li.textContent).sort(),\
             }",
                vec![],
            )
            .await;
        assert_eq!(dom["imgs"], 0, "no <img> was created: {dom}");
        assert_eq!(dom["scripts"], json!(["/static/app.js"]), "only the app's own script exists: {dom}");
        assert_eq!(dom["bolds"], 0, "no <b> was created: {dom}");
        assert_eq!(dom["pwned"], "undefined", "no injected script ran: {dom}");
        assert_eq!(dom["people"], json!([mallory_nick, "alice"]), "nicknames are text too: {dom}");
        assert!(page.client.get_alert_text().await.is_err(), "no alert() dialog is open");
        page.screenshot("hostile-text").await;

        mallory.close();
        page.finish(&[]).await;
    });
}

/// Where a line's substring `arguments[1]` is drawn: its bounding box, found in the text nodes of
/// the first system line of room `arguments[0]` whose text contains `arguments[2]`.
const SUBSTRING_BOX: &str = "\
    const log = [...document.querySelectorAll('ol.log')].find(l => l.dataset.room === arguments[0]);\
    const li = log && [...log.querySelectorAll('li.system')].find(li => li.textContent.includes(arguments[2]));\
    if (!li) return null;\
    const walker = document.createTreeWalker(li, NodeFilter.SHOW_TEXT);\
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {\
      const i = node.data.indexOf(arguments[1]);\
      if (i < 0) continue;\
      const range = document.createRange();\
      range.setStart(node, i);\
      range.setEnd(node, i + arguments[1].length);\
      const r = range.getBoundingClientRect();\
      return { left: r.left, right: r.right };\
    }\
    return null;";

/// Names with bidirectional controls are refused by the page (and by the server), and whatever
/// user text the page is handed anyway (from an older server, or a stored name) cannot reorder the
/// text around it: a presence line for `"\u{202e}evil"` still reads name first, then "joined",
/// left to right. Before, the override ran to the end of the line ("denioj live").
#[test]
fn bidi_controls_cannot_spoof_names_or_reorder_lines() {
    run(async {
        let server = Server::start();
        let mut driver = Driver::start();
        let page = driver.browser("bidi", 1000, 700).await;
        page.client.goto(&server.url()).await.expect("open the page");
        page.client.wait().for_element(fantoccini::Locator::Id("nick")).await.expect("nickname field");
        let refused = page
            .js(
                "document.getElementById('nick').value = '\\u202enimda';\
                 document.getElementById('login').requestSubmit();\
                 return document.getElementById('login-error').textContent;",
                vec![],
            )
            .await;
        assert!(refused.as_str().is_some_and(|t| t.contains("bidirectional")), "the form refuses it: {refused}");
        // The server refuses it too, for clients that do not check.
        let nick = crate::support::encode("\u{202e}nimda");
        let url = format!("ws://{}/ws?format=json&room=bidi&nick={nick}", server.addr);
        let stream = std::net::TcpStream::connect(server.addr).expect("connect");
        match tungstenite::client::client(url, stream) {
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => assert_eq!(resp.status(), 400),
            other => panic!("the handshake must be refused with 400, got {:?}", other.map(|_| ())),
        }

        page.login(&server, "alice", "bidi").await;
        page.js(
            "roomcastApp.handlers.presence({room: 'bidi', user: '\\u202eevil', event: 'join', self: false});",
            vec![],
        )
        .await;
        let name =
            page.wait_js("the presence line", SUBSTRING_BOX, vec![json!("bidi"), json!("evil"), json!("evil")]).await;
        let verb = page.js(SUBSTRING_BOX, vec![json!("bidi"), json!("joined"), json!("evil")]).await;
        let (name_right, verb_left) = (name["right"].as_f64().expect("box"), verb["left"].as_f64().expect("box"));
        assert!(verb_left >= name_right - 0.5, "\"joined\" is drawn after the name: name {name}, verb {verb}");
        page.screenshot("bidi-isolated").await;
        page.finish(&[]).await;
    });
}
