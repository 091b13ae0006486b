//! One sans-IO pass per event kind through the whole ordered log: rendered live for every variant,
//! persisted by the real store, read back as a history page, rendered as a resume page and as the
//! REST body. A new [`EventKind`] fails to compile in [`sample`] until it gets a case here, and
//! then every stage has to handle it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::json;
use crate::render::{self, Variant};
use crate::store::{HistoryPage, HistoryQuery, Store, StoreConfig};
use crate::types::{Event, EventKind, Format, Origin, Sequenced};

/// An event of `kind` as a client would send it.
fn sample(kind: EventKind, id: u64) -> Sequenced {
    let event = match kind {
        EventKind::Message => Event::message(Arc::from("ann"), Arc::from("line one\nü \"quoted\" <b>")),
    };
    Sequenced { id, room: Arc::from("log"), at_ms: 1_700_000_000_000 + id as i64, event }
}

fn read_page(store: &Store, after: u64) -> HistoryPage {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let query = HistoryQuery {
        room: "log".into(),
        before_id: None,
        after_id: Some(after),
        limit: 50,
        visible_seq: store.enqueued_seq(),
    };
    store.query(query, Box::new(move |page| drop(tx.send(page))));
    rx.recv_timeout(Duration::from_secs(60)).expect("a reply").expect("a page")
}

#[test]
fn every_event_kind_goes_through_render_store_history_and_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig { path: dir.path().join("log.db"), ..StoreConfig::default() }).expect("open");
    let writer = store.writer();
    let events: Vec<Sequenced> =
        EventKind::ALL.iter().enumerate().map(|(i, &kind)| sample(kind, i as u64 + 1)).collect();
    let mut scratch = Vec::new();
    for seq in &events {
        let sender = Origin { format: Format::Json, client_id: Some(Arc::from("c-1")) };
        for index in 0..Variant::COUNT {
            let frame = render::sequenced_frame(seq, &sender, Variant::from_index(index), &mut scratch);
            assert!(frame.len() > 2, "{:?} renders for variant {index}", seq.event.kind());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut rec = Arc::new(seq.clone());
        while let Err(back) = writer.try_enqueue(rec) {
            assert!(Instant::now() < deadline, "the store took the event");
            rec = back;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let page = read_page(&store, 0);
    assert_eq!(page.messages, events, "the store gives back exactly what it was given, in order");
    for (stored, original) in page.messages.iter().zip(&events) {
        // A resume page renders a stored event as its live JSON frame minus the client's id.
        let resumed = render::stored_frame(stored, Format::Json, &mut scratch);
        let live = render::sequenced_frame(original, &Origin::STORED, Variant::plain(Format::Json), &mut scratch);
        assert_eq!(resumed, live);
        let body: serde_json::Value = serde_json::from_slice(&resumed[2..]).expect("json");
        assert_eq!(body["id"], stored.id);
    }
    let rest: serde_json::Value = serde_json::from_slice(&json::history_array(&page.messages)).expect("json");
    assert_eq!(rest.as_array().map(Vec::len), Some(events.len()));
    store.shutdown().expect("shutdown");
}
