//! Many clients: 2,000 connections in one room all receive every message, in one and the same order.

use std::sync::{Arc, Barrier};

use crate::support::*;

#[test]
fn two_thousand_clients_receive_every_message_in_the_same_order() {
    const CLIENTS: usize = 2000;
    const SENDERS: usize = 5;
    const PER_SENDER: usize = 20;
    let server = Server::start(&[]);
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| connect_ws(&server, "/ws/chat?room=big")).collect();
    let senders: Vec<Client> = clients.drain(..SENDERS).collect();

    let start = Arc::new(Barrier::new(SENDERS));
    let send_threads: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(s, mut ws)| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for i in 0..PER_SENDER {
                    send_text(&mut ws, &format!("s{s}-{i}"));
                }
                // Senders are room members too: they receive everything as well.
                (0..SENDERS * PER_SENDER).map(|_| recv_text(&mut ws)).collect::<Vec<_>>()
            })
        })
        .collect();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || (0..SENDERS * PER_SENDER).map(|_| recv_text(&mut ws)).collect::<Vec<_>>())
                .expect("spawn reader")
        })
        .collect();

    let mut sequences: Vec<Vec<String>> = send_threads.into_iter().map(|t| t.join().expect("sender")).collect();
    sequences.extend(readers.into_iter().map(|t| t.join().expect("reader")));
    assert_eq!(sequences.len(), CLIENTS);
    let first = &sequences[0];
    for s in 0..SENDERS {
        let own: Vec<&String> = first.iter().filter(|m| m.starts_with(&format!("s{s}-"))).collect();
        let expected: Vec<String> = (0..PER_SENDER).map(|i| format!("s{s}-{i}")).collect();
        assert_eq!(own, expected.iter().collect::<Vec<_>>(), "sender {s}'s messages, in its order");
    }
    for (i, seq) in sequences.iter().enumerate() {
        assert_eq!(seq, first, "client {i} saw a different order");
    }
}
