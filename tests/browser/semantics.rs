//! Edits, deletes, typing and read markers in the web client: two people, one fixes and removes a
//! message, the other sees both live and after a reload; a typing line that shows and clears; a read
//! in one tab clears the unread badge in another tab of the same user.

use serde_json::json;

use crate::support::{Driver, ENTER, Peer, Server, run};

/// WebDriver's key codes.
const ARROW_UP: &str = "\u{E013}";

const STATE_OF: &str = "const log = [...document.querySelectorAll('ol.log')].find(l => l.dataset.room === arguments[0]);\
     const li = log && [...log.querySelectorAll('li.msg[data-id]')].find(li => li.dataset.id === String(arguments[1]));\
     if (!li) return null;\
     return { content: li.querySelector('.content').textContent, edited: !!li.querySelector('.edited'),\
              deleted: li.classList.contains('deleted') };";

#[test]
fn one_edits_and_deletes_the_other_sees_it_live_and_after_a_reload_and_typing_shows_and_clears() {
    run(async {
        let server = Server::start();
        let mut driver = Driver::start();
        let alice = driver.browser("alice", 1100, 680).await;
        let bob = driver.browser("bob", 1100, 680).await;
        alice.login(&server, "alice", "lobby").await;
        bob.login(&server, "bob", "lobby").await;

        alice.say("helo wrold").await;
        alice.say("a second thought").await;
        bob.wait_message("lobby", "a second thought").await;
        alice.wait_message("lobby", "a second thought").await;
        let ids: Vec<u64> = alice.messages("lobby").await.iter().filter_map(|m| m.id).collect();
        let (typo, second) = (ids[0], ids[1]);

        // Up arrow in the empty composer edits the last own message; here the first one, by its button.
        let text = alice.client.find(fantoccini::Locator::Id("text")).await.expect("message box");
        text.send_keys(ARROW_UP).await.expect("up arrow");
        let editing = alice.js("return document.getElementById('text').value", vec![]).await;
        assert_eq!(editing, json!("a second thought"), "the Up arrow picked the last own message");
        alice.js("document.getElementById('text').dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'})); return true", vec![]).await;
        alice
            .js(
                "const li = document.querySelector(`li.msg[data-id=\"${arguments[0]}\"]`); li.querySelector('.edit').click(); return true",
                vec![json!(typo)],
            )
            .await;
        text.clear().await.expect("clear");
        text.send_keys(&format!("hello world{ENTER}")).await.expect("type the fix");
        for page in [&alice, &bob] {
            page.wait_js(
                "the edit shown in place",
                &format!("const s = (() => {{ {STATE_OF} }})(); return !!s && s.content === 'hello world' && s.edited"),
                vec![json!("lobby"), json!(typo)],
            )
            .await;
        }
        alice
            .js(
                "document.querySelector(`li.msg[data-id=\"${arguments[0]}\"] .delete`).click(); return true",
                vec![json!(second)],
            )
            .await;
        for page in [&alice, &bob] {
            page.wait_js(
                "the delete shown in place",
                &format!(
                    "const s = (() => {{ {STATE_OF} }})(); return !!s && s.deleted && s.content === 'message deleted'"
                ),
                vec![json!("lobby"), json!(second)],
            )
            .await;
        }
        let no_buttons_for_others = bob.js("return document.querySelectorAll('li.msg .actions').length", vec![]).await;
        assert_eq!(no_buttons_for_others, json!(0), "bob cannot edit alice's messages");

        // After a reload bob sees the same: the edit and the tombstone come from history.
        bob.login(&server, "bob", "lobby").await;
        for (id, content, edited, deleted) in
            [(typo, "hello world", true, false), (second, "message deleted", false, true)]
        {
            bob.wait_js(
                "history shows each message as it is now",
                &format!(
                    "const s = (() => {{ {STATE_OF} }})(); return !!s && s.content === {content:?} && s.edited === {edited} && s.deleted === {deleted}"
                ),
                vec![json!("lobby"), json!(id)],
            )
            .await;
        }

        // Typing: bob types, alice sees it; bob's message clears it.
        let bob_text = bob.client.find(fantoccini::Locator::Id("text")).await.expect("message box");
        bob_text.send_keys("t").await.expect("type");
        alice
            .wait_js(
                "bob is typing",
                "return document.getElementById('typing').textContent === 'bob is typing…'",
                vec![],
            )
            .await;
        bob_text.send_keys(&format!("hi{ENTER}")).await.expect("send");
        alice.wait_message("lobby", "thi").await;
        alice
            .wait_js("the typing line cleared", "return document.getElementById('typing').textContent === ''", vec![])
            .await;
        alice.screenshot("edits-deletes-typing").await;
        alice.finish(&[]).await;
        bob.finish(&[]).await;
    });
}

#[test]
fn a_read_in_one_tab_clears_the_badge_in_another_tab_of_the_same_user() {
    run(async {
        let server = Server::start();
        let mut driver = Driver::start();
        let tab1 = driver.browser("alice-tab-1", 900, 640).await;
        let tab2 = driver.browser("alice-tab-2", 900, 640).await;
        for tab in [&tab1, &tab2] {
            tab.login(&server, "alice", "lobby").await;
            let join = tab.client.find(fantoccini::Locator::Id("join-room")).await.expect("join field");
            join.send_keys(&format!("random{ENTER}")).await.expect("join random");
            tab.wait_js("joined random", "return document.getElementById('room-title').textContent === 'random' && !document.getElementById('text').disabled", vec![]).await;
            tab.js("document.querySelector('li.room[data-room=\"lobby\"] .room-open').click(); return true", vec![])
                .await;
        }
        let mut carol = Peer::join(&server, "random", "carol");
        carol.say("random", "news in random");
        let badge = "const b = document.querySelector('li.room[data-room=\"random\"] .badge'); return !b.hidden && b.textContent";
        for tab in [&tab1, &tab2] {
            tab.wait_js("unread counter on random", &format!("{badge} === '1'"), vec![]).await;
        }
        // Reading random in tab 1 clears the badge in tab 2.
        tab1.js("document.querySelector('li.room[data-room=\"random\"] .room-open').click(); return true", vec![])
            .await;
        let hidden = "return document.querySelector('li.room[data-room=\"random\"] .badge').hidden";
        tab2.wait_js("the badge cleared by the other tab's read", hidden, vec![]).await;
        carol.close();
        tab1.finish(&[]).await;
        tab2.finish(&[]).await;
    });
}

#[test]
fn a_direct_message_reaches_its_two_users_and_is_invisible_to_a_third() {
    run(async {
        let server = Server::start();
        let mut driver = Driver::start();
        let alice = driver.browser("alice-dm", 900, 640).await;
        let bob = driver.browser("bob-dm", 900, 640).await;
        let carol = driver.browser("carol-dm", 900, 640).await;
        for (page, nick) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
            page.login(&server, nick, "lobby").await;
        }
        let join = alice.client.find(fantoccini::Locator::Id("join-room")).await.expect("join field");
        join.send_keys(&format!("@bob{ENTER}")).await.expect("open a conversation");
        alice
            .wait_js("the conversation tab", "return document.querySelector('li.room[data-room=\"dm:alice,bob\"] .room-name')?.textContent === '@bob'", vec![])
            .await;
        alice.say("just between us").await;
        alice.wait_message("dm:alice,bob", "just between us").await;
        // Bob, online in the lobby, gets the conversation in his sidebar and finds the message there.
        bob.wait_js(
            "the conversation appears for bob",
            "return document.querySelector('li.room[data-room=\"dm:alice,bob\"] .room-name')?.textContent === '@alice'",
            vec![],
        )
        .await;
        bob.js("document.querySelector('li.room[data-room=\"dm:alice,bob\"] .room-open').click(); return true", vec![])
            .await;
        bob.wait_message("dm:alice,bob", "just between us").await;
        bob.say("agreed").await;
        alice.wait_message("dm:alice,bob", "agreed").await;
        // Carol has no such room and cannot join it.
        let seen = carol.js("return !!document.querySelector('li.room[data-room=\"dm:alice,bob\"]') || document.body.textContent.includes('just between us')", vec![]).await;
        assert_eq!(seen, json!(false), "carol sees nothing of it");
        let join = carol.client.find(fantoccini::Locator::Id("join-room")).await.expect("join field");
        join.send_keys(&format!("dm:alice,bob{ENTER}")).await.expect("try to join");
        carol.wait_js("carol is refused", "return document.body.textContent.includes('forbidden')", vec![]).await;
        let seen = carol.js("return document.body.textContent.includes('just between us')", vec![]).await;
        assert_eq!(seen, json!(false), "carol still sees nothing of it");
        alice.finish(&[]).await;
        bob.finish(&[]).await;
        carol.finish(&[]).await;
    });
}
