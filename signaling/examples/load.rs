//! Load generator for `bench/signal.mjs` (not a test): drives a running
//! meshdrop-signal over real WebSockets.
//!
//! ```text
//! load idle  <ws-url> <connections>          join, print "ready", hold until killed
//! load relay <ws-url> <pairs> <seconds>      pairs relay signals flat out; print msg/s
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn joined(url: &str, room: &str) -> (Ws, String, serde_json::Value) {
    let (mut ws, _) = connect_async(url).await.expect("connect");
    ws.send(Message::text(format!(r#"{{"type":"join","room":"{room}"}}"#))).await.expect("send join");
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            let v: serde_json::Value = serde_json::from_str(&t).expect("json");
            if v["type"] == "welcome" {
                let id = v["id"].as_str().expect("id").to_owned();
                return (ws, id, v);
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: load idle <url> <n> | load relay <url> <pairs> <seconds>";
    let mode = args.get(1).expect(usage).as_str();
    let url = args.get(2).expect(usage).clone();
    match mode {
        "idle" => {
            let n: usize = args.get(3).expect(usage).parse().expect("n");
            let mut held = Vec::with_capacity(n);
            for i in 0..n {
                held.push(joined(&url, &format!("idle-{}", i / 64)).await.0);
            }
            println!("ready {n}");
            // Keep answering pings so the server sees live, idle clients.
            let mut streams = futures_util::stream::select_all(held.into_iter().map(|ws| ws.boxed()));
            while streams.next().await.is_some() {}
        }
        "relay" => {
            let pairs: usize = args.get(3).expect(usage).parse().expect("pairs");
            let seconds: u64 = args.get(4).expect(usage).parse().expect("seconds");
            let received = Arc::new(AtomicU64::new(0));
            let mut ready = Vec::with_capacity(pairs);
            for p in 0..pairs {
                let room = format!("relay-{p}");
                let (a, _, _) = joined(&url, &room).await;
                let (b, b_id, _) = joined(&url, &room).await;
                ready.push((a, b, b_id));
            }
            // The clock starts once every pair is connected.
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for (a, b, b_id) in ready {
                let (mut a_tx, mut a_rx) = a.split();
                let (_b_tx, mut b_rx) = b.split();
                let frame = format!(
                    r#"{{"type":"signal","to":"{b_id}","data":{{"kind":"candidate","conn":"0000000000000001","candidate":{{"candidate":"candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host","sdpMid":"0","sdpMLineIndex":0}}}}}}"#
                );
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        for _ in 0..64 {
                            if a_tx.feed(Message::text(frame.clone())).await.is_err() {
                                return;
                            }
                        }
                        if a_tx.flush().await.is_err() {
                            return;
                        }
                        tokio::task::yield_now().await;
                    }
                }));
                tokio::spawn(async move { while a_rx.next().await.is_some() {} });
                let received = received.clone();
                tasks.push(tokio::spawn(async move {
                    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline.into(), b_rx.next()).await {
                        if msg.is_text() {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            let n = received.load(Ordering::Relaxed);
            println!("relayed {n} in {seconds} s = {:.0} msg/s", n as f64 / seconds as f64);
        }
        _ => panic!("{usage}"),
    }
}
