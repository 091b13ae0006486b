//! Scrolling up loads older history pages (the `history` command with a `before_id` cursor).

use serde_json::json;

use crate::support::{Driver, Peer, Server, run};

/// 120 messages are seeded by a Rust client; the page shows the newest page on joining, and
/// scrolling to the top repeatedly brings in the rest: all 120, in order, each once, then the
/// "beginning of the conversation" marker.
#[test]
fn scrolling_up_loads_older_pages_without_gaps_or_duplicates() {
    run(async {
        let server = Server::start();
        let mut seeder = Peer::join(&server, "archive", "seeder");
        let mut seeded = Vec::new();
        for i in 1..=120 {
            seeded.push((seeder.say("archive", &format!("seed {i:03}")), format!("seed {i:03}")));
        }

        let mut driver = Driver::start();
        let page = driver.browser("history", 1000, 700).await;
        page.login(&server, "reader", "archive").await;
        page.wait_message("archive", "seed 120").await;
        let first = page.messages("archive").await.len();
        assert!(first < 120, "the first screen is one page, not everything ({first} shown)");

        // Scroll to the top on every poll until everything is there and the start marker shows.
        page.wait_js(
            "all 120 messages after scrolling up",
            "const log = document.querySelector('ol.log[data-room=\"archive\"]');\
         log.scrollTop = 0;\
         const n = log.querySelectorAll('li.msg').length;\
         return n >= 120 && log.querySelector('.marker').dataset.state === 'start';",
            vec![],
        )
        .await;

        let shown = page.messages("archive").await;
        let got: Vec<(u64, String)> = shown.iter().map(|m| (m.id.expect("confirmed"), m.content.clone())).collect();
        assert_eq!(got, seeded, "every seeded message once, oldest first");
        assert!(shown.iter().all(|m| m.user == "seeder" && !m.mine));
        let marker =
            page.js("return document.querySelector('ol.log[data-room=\"archive\"] .marker').textContent", vec![]).await;
        assert_eq!(marker, json!("Beginning of the conversation"));
        page.screenshot("history-top").await;

        seeder.close();
        page.finish(&[]).await;
    });
}
