//! The server restarts; the page reconnects and resumes from the last id it saw.

use serde_json::json;

use crate::support::{Driver, Peer, Server, run};

/// The browser is in a room; the server stops and a replacement starts on the same address and
/// database; a Rust client posts while the page is (most likely) still reconnecting. The page
/// comes back online and shows every message exactly once, in id order: the one from before,
/// the ones sent meanwhile (resumed with `since`) and a live one after.
#[test]
fn page_reconnects_after_a_restart_and_misses_nothing() {
    run(async {
        let mut server = Server::start();
        let mut driver = Driver::start();
        let page = driver.browser("reconnect", 1000, 700).await;
        page.login(&server, "dave", "ops").await;

        let mut eve = Peer::join(&server, "ops", "eve");
        eve.say("ops", "before the restart");
        page.wait_message("ops", "before the restart").await;
        drop(eve);

        server.stop();
        page.wait_offline().await;
        page.screenshot("reconnect-offline").await;

        server.restart();
        let mut eve = Peer::join(&server, "ops", "eve");
        let meanwhile = ["sent while you were away 1", "sent while you were away 2", "sent while you were away 3"];
        for text in meanwhile {
            eve.say("ops", text);
        }
        page.wait_online().await;
        page.wait_message("ops", meanwhile[2]).await;
        eve.say("ops", "after the reconnect");
        page.wait_message("ops", "after the reconnect").await;

        let shown = page.messages("ops").await;
        let texts: Vec<&str> = shown.iter().map(|m| m.content.as_str()).collect();
        let mut expected = vec!["before the restart"];
        expected.extend(meanwhile);
        expected.push("after the reconnect");
        assert_eq!(texts, expected, "each message exactly once, in order: {shown:?}");
        let ids: Vec<u64> = shown.iter().map(|m| m.id.expect("confirmed")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids strictly increase: {ids:?}");
        page.screenshot("reconnect-resumed").await;

        eve.close();
        // While the server was down the browser itself logs failed WebSocket connection attempts.
        page.finish(&["WebSocket connection to"]).await;
    });
}

/// Like the restart test, but the sender leaves before the page is back, so the room is empty
/// (and forgotten by the server) when the page rejoins. Regression for the server bug this test
/// found: a room re-created on join must still resume from `since` (the server now starts
/// re-created rooms at its last assigned id).
#[test]
fn page_catches_up_on_messages_from_someone_who_already_left() {
    run(async {
        let mut server = Server::start();
        let mut driver = Driver::start();
        let page = driver.browser("gap", 1000, 700).await;
        page.login(&server, "dave", "quiet").await;
        let mut eve = Peer::join(&server, "quiet", "eve");
        eve.say("quiet", "first");
        page.wait_message("quiet", "first").await;
        drop(eve);

        server.stop();
        page.wait_offline().await;
        server.restart();
        let mut eve = Peer::join(&server, "quiet", "eve");
        eve.say("quiet", "posted and gone 1");
        eve.say("quiet", "posted and gone 2");
        eve.close();

        page.wait_online().await;
        page.wait_message("quiet", "posted and gone 2").await;
        let shown = page.messages("quiet").await;
        let texts: Vec<&str> = shown.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["first", "posted and gone 1", "posted and gone 2"], "{shown:?}");
        page.finish(&["WebSocket connection to"]).await;
    });
}

/// Per room (in sidebar order): how many "you joined …" / "rejoined …" lines its log shows, and
/// every error line of the page.
const JOIN_LINES: &str = "return {\
      joins: [...document.querySelectorAll('ol.log')].map(log => [...log.querySelectorAll('li.system')]\
        .filter(li => /^(you joined|rejoined) /.test(li.textContent)).length),\
      errors: [...document.querySelectorAll('ol.log li.error')].map(li => li.textContent),\
    };";

/// A page in 60 rooms (default rate limits, `--max-rooms-per-conn` 64) reconnects after a restart
/// and rejoins every one of them at once, each with a `join` and, for rooms it saw nothing in, a
/// `history` request: nothing is refused and live messages arrive in every room. Before the frame
/// budget, joins counted against the 40-message burst: the page was closed with 1008 on every
/// connection and never got back into all its rooms.
#[test]
fn a_page_in_sixty_rooms_rejoins_every_one_after_a_restart() {
    run(async {
        let mut server = Server::start_with(&[]);
        let mut driver = Driver::start();
        let page = driver.browser("sixty-rooms", 1000, 700).await;
        page.login(&server, "dave", "r00").await;
        let rooms: Vec<String> = (0..60).map(|i| format!("r{i:02}")).collect();
        // All at once, through the join form.
        page.js(
            "for (const name of arguments[0]) {\
               document.getElementById('join-room').value = name;\
               document.getElementById('join').requestSubmit();\
             }",
            vec![json!(rooms[1..])],
        )
        .await;
        let joined = |n: u64| {
            format!(
                "const s = (() => {{ {JOIN_LINES} }})();\
                 return s.joins.length === 60 && s.joins.every(j => j >= {n}) ? s : null;"
            )
        };
        let first = page.wait_js("every room joined once", &joined(1), vec![]).await;
        assert_eq!(first["errors"], json!([]), "no refusals: {first}");

        // (No wait for the page to go offline: with the new server up, it may be back before a poll.)
        server.restart();
        let after = page.wait_js("every room rejoined after the restart", &joined(2), vec![]).await;
        assert_eq!(after["errors"], json!([]), "nothing was refused on the reconnect: {after}");

        // Live messages reach the first, a middle and the last room.
        let mut eve = Peer::join(&server, "r00", "eve");
        eve.enter("r30");
        eve.enter("r59");
        for room in ["r00", "r30", "r59"] {
            eve.say(room, &format!("hello {room}"));
        }
        for room in ["r00", "r30", "r59"] {
            page.wait_message(room, &format!("hello {room}")).await;
        }
        let closed = server.metric("roomcast_connections_closed_total{reason=\"rate_limit\"}");
        assert_eq!(closed, 0.0, "no connection was closed for its rate");
        eve.close();
        page.finish(&["WebSocket connection to"]).await;
    });
}

/// The server welcomes the page and closes it about a second later, again and again (here it is
/// `--idle-timeout 1`: the page says nothing after its first history request). Resetting the
/// backoff at every `welcome` made the page reconnect about every 1.5 s for as long as that
/// lasted (20-odd connections in 40 s, measured with the old client); now the backoff starts over
/// only once a connection stayed up for 10 s, so the delays keep growing towards 15 s. Counted
/// on the server over 40 s, with a bound far above what the backoff allows (about 8 expected) and
/// far below what the old client did.
#[test]
fn a_server_that_closes_right_after_welcome_is_not_hammered() {
    run(async {
        let server = Server::start_with(&["--idle-timeout", "1", "--ping-interval", "0"]);
        let mut driver = Driver::start();
        let page = driver.browser("backoff", 1000, 700).await;
        page.login(&server, "dave", "flaky").await;
        let accepted = "roomcast_connections_accepted_total";
        let before = server.metric(accepted);
        tokio::time::sleep(std::time::Duration::from_secs(40)).await;
        // Less the scrape's own connection.
        let attempts = server.metric(accepted) - before - 1.0;
        eprintln!("reconnect attempts in 40 s: {attempts}");
        assert!(attempts >= 2.0, "the page keeps reconnecting ({attempts})");
        assert!(attempts <= 14.0, "the page backs off instead of reconnecting every second ({attempts} in 40 s)");
        page.finish(&["WebSocket connection to"]).await;
    });
}

/// The other half of the backoff rule: once a connection has stayed up for 10 s, the count starts
/// over, so the next outage begins again with short delays. (Read from the page's own state: the
/// delays themselves are random.)
#[test]
fn the_backoff_starts_over_after_ten_seconds_online() {
    run(async {
        let mut server = Server::start();
        let mut driver = Driver::start();
        let page = driver.browser("backoff-reset", 1000, 700).await;
        page.login(&server, "dave", "steady").await;
        server.stop();
        page.wait_offline().await;
        page.wait_js("a few failed attempts", "return roomcastApp.state.client.attempt >= 3", vec![]).await;
        server.restart();
        page.wait_online().await;
        let attempt = page.js("return roomcastApp.state.client.attempt", vec![]).await;
        assert!(attempt.as_u64().is_some_and(|a| a >= 3), "welcome alone does not reset it: {attempt}");
        tokio::time::sleep(std::time::Duration::from_secs(11)).await;
        let attempt = page
            .js("const c = roomcastApp.state.client; return c.state === 'connected' ? c.attempt : null", vec![])
            .await;
        assert_eq!(attempt, serde_json::json!(0), "reset after 10 s online");
        page.finish(&["WebSocket connection to"]).await;
    });
}
