//! `roomcast-baseline`: the idiomatic server a Rust user would write instead of roomcast —
//! tokio + tokio-tungstenite, speaking the seed text protocol on `/ws/chat` (and any path):
//! every text frame is broadcast verbatim, via `tokio::sync::broadcast`, to every connected
//! client including the sender. Used as a reference point next to roomcast in the same run.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;

struct Args {
    addr: SocketAddr,
    capacity: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut addr: SocketAddr = "127.0.0.1:8000".parse().map_err(|_| "default addr")?;
    let mut capacity = 65_536;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--addr" => addr = it.next().ok_or("--addr needs a value")?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--capacity" => {
                capacity =
                    it.next().ok_or("--capacity needs a value")?.parse().map_err(|e| format!("--capacity: {e}"))?
            }
            "-h" | "--help" => {
                println!(
                    "roomcast-baseline [--addr 127.0.0.1:8000] [--capacity 65536]\n  tokio-tungstenite broadcast server: every text frame goes to every client"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args { addr, capacity })
}

async fn client(stream: TcpStream, tx: Arc<broadcast::Sender<Utf8Bytes>>) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let mut rx = tx.subscribe();
    loop {
        tokio::select! {
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(t))) => { let _ = tx.send(t); }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                // tungstenite answers pings itself on the next write/flush.
                Some(Ok(_)) => { if sink.flush().await.is_err() { break; } }
            },
            out = rx.recv() => match out {
                Ok(t) => { if sink.send(Message::Text(t)).await.is_err() { break; } }
                // A slow client skips what it missed rather than stalling everyone.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Listens with a 4096-connection backlog (tokio's default 1024 overflows under connect storms).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("roomcast-baseline: {e}");
            std::process::exit(2);
        }
    };
    let listener = match listen(args.addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("roomcast-baseline: cannot listen on {}: {e}", args.addr);
            std::process::exit(1);
        }
    };
    println!("roomcast-baseline listening on {}", listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
    let (tx, _) = broadcast::channel::<Utf8Bytes>(args.capacity);
    let tx = Arc::new(tx);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(client(stream, tx.clone()));
            }
            Err(e) => {
                eprintln!("roomcast-baseline: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
