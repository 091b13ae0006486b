//! One sans-IO pass per event kind through the whole ordered log: rendered live for every variant,
//! persisted by the real store, read back as a history page, rendered as a resume page and as the
//! REST body. A new [`EventKind`] fails to compile in [`sample`] until it gets a case here, and
//! then every stage has to handle it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::json;
use crate::render::{self, Variant};
use crate::store::{HistoryPage, HistoryQuery, Store, StoreConfig};
use crate::types::{Delete, Edit, Event, EventKind, Format, Origin, Read, Revision, Sequenced};

/// An event of `kind` as a client would send it; edits and deletes refer to message 1.
fn sample(kind: EventKind, id: u64) -> Sequenced {
    let user: Arc<str> = Arc::from("ann");
    let event = match kind {
        EventKind::Message => Event::message(user, Arc::from("line one\nü \"quoted\" <b>")),
        EventKind::Edit => Event::Edit(Edit { user, target: 1, content: Arc::from("fixed ✓") }),
        EventKind::Delete => Event::Delete(Delete { user, target: 1 }),
        EventKind::Read => Event::Read(Read { user, upto: 1 }),
    };
    Sequenced { idempotency_key: None, id, room: Arc::from("log"), at_ms: 1_700_000_000_000 + id as i64, event }
}

fn read_page(store: &Store, after: u64, whole_log: bool) -> HistoryPage {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let query = HistoryQuery {
        room: "log".into(),
        before_id: None,
        after_id: Some(after),
        limit: 50,
        visible_seq: store.enqueued_seq(),
        whole_log,
    };
    store.query(query, Box::new(move |page| drop(tx.send(page))));
    rx.recv_timeout(Duration::from_secs(60)).expect("a reply").expect("a page")
}

fn enqueue(store: &Store, seq: &Sequenced) {
    let writer = store.writer();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rec = Arc::new(seq.clone());
    while let Err(back) = writer.try_enqueue(rec) {
        assert!(Instant::now() < deadline, "the store took the event");
        rec = back;
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn revision(seq: &Sequenced) -> Option<(Revision, &str)> {
    match &seq.event {
        Event::Message(msg) => Some((msg.revision, &*msg.content)),
        Event::Edit(_) | Event::Delete(_) | Event::Read(_) => None,
    }
}

#[test]
fn every_event_kind_goes_through_render_store_history_and_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(StoreConfig { path: dir.path().join("log.db"), ..StoreConfig::default() }).expect("open");
    let events: Vec<Sequenced> =
        EventKind::ALL.iter().enumerate().map(|(i, &kind)| sample(kind, i as u64 + 1)).collect();
    let mut scratch = Vec::new();
    for seq in &events {
        let sender = Origin { format: Format::Json, client_id: Some(Arc::from("c-1")) };
        let json = render::sequenced_frame(seq, &sender, Variant::plain(Format::Json), &mut scratch);
        assert!(json.is_some_and(|f| f.len() > 2), "{:?} renders for JSON members", seq.event.kind());
        enqueue(&store, seq);
        // The message as history shows it after each event.
        let now = read_page(&store, 0, false);
        assert_eq!(now.messages.len(), 1, "history pages hold messages only");
        let expected = match seq.event.kind() {
            EventKind::Message => (Revision::Original, "line one\nü \"quoted\" <b>"),
            EventKind::Edit => (Revision::Edited { at_ms: seq.at_ms }, "fixed ✓"),
            EventKind::Delete | EventKind::Read => (Revision::Deleted, ""),
        };
        assert_eq!(revision(&now.messages[0]), Some(expected), "after {:?}", seq.event.kind());
    }
    let page = read_page(&store, 0, true);
    let ids: Vec<(u64, EventKind)> = page.messages.iter().map(|s| (s.id, s.event.kind())).collect();
    let sent: Vec<(u64, EventKind)> =
        events.iter().filter(|s| s.event.kind() != EventKind::Read).map(|s| (s.id, s.event.kind())).collect();
    assert_eq!(ids, sent, "a resume page is the whole log, in order (read markers are state, not log)");
    match &page.messages[1].event {
        Event::Edit(edit) => {
            assert_eq!((edit.target, &*edit.content), (1, ""), "a deleted message's edits lose their words")
        }
        other => panic!("expected the edit, got {other:?}"),
    }
    assert_eq!(page.messages[2], events[2], "a delete reads back as it was written");
    for stored in &page.messages {
        let resumed = render::stored_frame(stored, Format::Json, &mut scratch).expect("json");
        let body: serde_json::Value = serde_json::from_slice(&resumed[2..]).expect("json");
        let own_id = if stored.event.target().is_some() { &body["seq"] } else { &body["id"] };
        assert_eq!(*own_id, stored.id);
        assert!(body.get("client_id").is_none(), "a resume page carries no client id");
    }
    let rest: serde_json::Value = serde_json::from_slice(&json::history_array(&page.messages)).expect("json");
    assert_eq!(rest.as_array().map(Vec::len), Some(1), "REST history lists messages, not their edits");
    assert_eq!(rest[0]["deleted"], true);
    store.shutdown().expect("shutdown");
}
