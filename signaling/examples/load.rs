//! Load generator for `bench/signal.mjs` (not a test): drives a running signaling
//! server over real WebSockets, speaking its protocol — meshdrop-signal, PeerServer
//! (npm `peer`) or matchbox_server — so all three get the same load from the same
//! client.
//!
//! ```text
//! load idle  <proto> <url>[,<url>…] <connections>
//!     open and join that many (pairs of peers per room), print "opened <n> <ms>",
//!     then hold them (answering pings) until killed
//! load relay <proto> <url-a> <url-b> <pairs> <rate> <seconds> <bytes>
//!     pairs (one peer on each URL) relay signals of about <bytes> from a to b at
//!     <rate> per second in total; prints "start", "stop", then one JSON line with
//!     sent, received, p50/p99/max latency in µs
//! ```
//! `<proto>` is `meshdrop`, `peerjs` or `matchbox`; `<url>` the server's base
//! (`ws://127.0.0.1:PORT`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool fails loudly

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, SplitSink};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async_with_config;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Meshdrop,
    PeerJs,
    Matchbox,
}

/// Connects like a browser: Nagle off (Chromium sets TCP_NODELAY), and buffers sized for
/// signaling. tungstenite's defaults (128 KiB read buffer, zeroed per connection) made
/// the client spend most of opening 10k connections in page faults and memset, so the
/// client, not the server, set the time to open them.
async fn connect(url: String) -> Ws {
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    connect_async_with_config(url, Some(config), true).await.expect("connect").0
}

/// Connections being opened at once: like many clients arriving, without a SYN flood.
const IN_FLIGHT: usize = 64;

fn text_of(msg: &Message) -> Option<&str> {
    match msg {
        Message::Text(t) => Some(t.as_str()),
        _ => None,
    }
}

/// The string value of `"key":"…"` in a small JSON frame.
fn field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let at = frame.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = &frame[at..];
    Some(&rest[..rest.find('"')?])
}

/// Connects peer number `n` (in room `room`) and waits until the server has accepted
/// it; its id.
async fn open(proto: Proto, base: &str, room: &str, n: usize) -> (Ws, String) {
    match proto {
        Proto::Meshdrop => {
            let mut ws = connect(format!("{base}/ws")).await;
            ws.send(Message::text(format!(r#"{{"type":"join","room":"{room}"}}"#))).await.expect("join");
            loop {
                let msg = ws.next().await.expect("open").expect("frame");
                if let Some(id) = text_of(&msg).filter(|t| t.contains(r#""type":"welcome""#)).and_then(|t| field(t, "id")) {
                    let id = id.to_owned();
                    return (ws, id);
                }
            }
        }
        Proto::PeerJs => {
            let id = format!("p{n}");
            let mut ws = connect(format!("{base}/peerjs?key=peerjs&id={id}&token=t{n}")).await;
            loop {
                let msg = ws.next().await.expect("open").expect("frame");
                if text_of(&msg).is_some_and(|t| t.contains(r#""type":"OPEN""#)) {
                    return (ws, id);
                }
            }
        }
        Proto::Matchbox => {
            let mut ws = connect(format!("{base}/{room}")).await;
            loop {
                let msg = ws.next().await.expect("open").expect("frame");
                if let Some(id) = text_of(&msg).and_then(|t| field(t, "IdAssigned")) {
                    let id = id.to_owned();
                    return (ws, id);
                }
            }
        }
    }
}

/// Reads until the server has told `ws` about `other` (rooms spanning instances learn
/// of a newcomer a moment later); PeerServer has no rooms.
async fn until_known(proto: Proto, ws: &mut Ws, other: &str) {
    let needle = match proto {
        Proto::PeerJs => return,
        Proto::Meshdrop => format!(r#""type":"peer-joined","peer":{{"id":"{other}""#),
        Proto::Matchbox => format!(r#"{{"NewPeer":"{other}"}}"#),
    };
    loop {
        let msg = ws.next().await.expect("open").expect("frame");
        if text_of(&msg).is_some_and(|t| t.contains(&needle)) {
            return;
        }
    }
}

/// A signal frame to `to` carrying the send time and padding to about `bytes`.
fn signal(proto: Proto, to: &str, sent_us: u64, pad: &str) -> String {
    let data = format!(r#"{{"t":{sent_us},"candidate":"{pad}"}}"#);
    match proto {
        Proto::Meshdrop => format!(r#"{{"type":"signal","to":"{to}","data":{data}}}"#),
        Proto::PeerJs => format!(r#"{{"type":"CANDIDATE","dst":"{to}","payload":{data}}}"#),
        Proto::Matchbox => format!(r#"{{"Signal":{{"receiver":"{to}","data":{data}}}}}"#),
    }
}

fn sent_time(frame: &str) -> Option<u64> {
    // Not necessarily first: matchbox_server re-serializes the data with sorted keys.
    let at = frame.find("\"t\":")? + 4;
    let digits = &frame[at..];
    digits[..digits.find(|c: char| !c.is_ascii_digit())?].parse().ok()
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `bases`: one URL, or several (comma-separated) taken in turn, so the two peers of a
/// room are on different instances.
async fn idle(proto: Proto, bases: String, n: usize) {
    let bases: Vec<String> = bases.split(',').map(str::to_owned).collect();
    let started = Instant::now();
    let mut held = Vec::with_capacity(n);
    let mut pending = FuturesUnordered::new();
    let mut next = 0;
    while held.len() < n {
        while next < n && pending.len() < IN_FLIGHT {
            let base = bases[next % bases.len()].clone();
            pending.push(async move { open(proto, &base, &format!("idle-{}", next / 2), next).await.0 });
            next += 1;
        }
        held.push(pending.next().await.expect("pending"));
    }
    println!("opened {n} {}", started.elapsed().as_millis());
    // Keep reading so pings are answered and the server sees live, idle clients.
    let mut streams = futures_util::stream::select_all(held.into_iter().map(StreamExt::boxed));
    while streams.next().await.is_some() {}
}

#[allow(clippy::too_many_arguments)]
async fn relay(proto: Proto, url_a: String, url_b: String, pairs: usize, rate: u64, seconds: u64, bytes: usize) {
    let pad = "x".repeat(bytes.saturating_sub(80));
    let mut senders: Vec<(SplitSink<Ws, Message>, String)> = Vec::with_capacity(pairs);
    let latencies: Rc<RefCell<Vec<u32>>> = Rc::default();
    let clock = Instant::now();
    let local = tokio::task::LocalSet::new();
    for p in 0..pairs {
        let room = format!("relay-{p}");
        let (mut a, _) = open(proto, &url_a, &room, 2 * p).await;
        let (b, b_id) = open(proto, &url_b, &room, 2 * p + 1).await;
        until_known(proto, &mut a, &b_id).await;
        let (a_tx, mut a_rx) = a.split();
        senders.push((a_tx, b_id));
        local.spawn_local(async move { while a_rx.next().await.is_some() {} });
        let latencies = latencies.clone();
        let (_b_tx, mut b_rx) = b.split();
        local.spawn_local(async move {
            let _keep = _b_tx;
            while let Some(Ok(msg)) = b_rx.next().await {
                if let Some(sent) = text_of(&msg).and_then(sent_time) {
                    let now = clock.elapsed().as_micros() as u64;
                    latencies.borrow_mut().push(u32::try_from(now.saturating_sub(sent)).unwrap_or(u32::MAX));
                }
            }
        });
    }
    let total = rate * seconds;
    // How long sending took: past what one client thread can send, longer than asked.
    let sending = std::cell::Cell::new(Duration::ZERO);
    local
        .run_until(async {
            println!("start");
            let begun = Instant::now();
            let mut sent = 0u64;
            let mut next = 0usize;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while sent < total {
                tick.tick().await;
                // Paced by the clock, not by ticks: a late tick sends what is due.
                let due = ((begun.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                let mut touched = Vec::new();
                while sent < due {
                    let (sink, to) = &mut senders[next];
                    let frame = signal(proto, to, clock.elapsed().as_micros() as u64, &pad);
                    if sink.feed(Message::text(frame)).await.is_err() {
                        eprintln!("a sender's connection closed");
                        return;
                    }
                    touched.push(next);
                    next = (next + 1) % senders.len();
                    sent += 1;
                }
                for i in touched {
                    let _ = senders[i].0.flush().await;
                }
            }
            sending.set(begun.elapsed());
            println!("stop");
            // Stragglers: up to 2 s for every signal to arrive.
            let drain = Instant::now();
            while latencies.borrow().len() < total as usize && drain.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    let mut all = latencies.borrow().clone();
    all.sort_unstable();
    println!(
        r#"{{"sent":{total},"send_ms":{},"received":{},"p50_us":{},"p99_us":{},"max_us":{}}}"#,
        sending.get().as_millis(),
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: load idle <proto> <url> <n> | load relay <proto> <url-a> <url-b> <pairs> <rate> <seconds> <bytes>";
    let arg = |i: usize| args.get(i).expect(usage).clone();
    let proto = match arg(2).as_str() {
        "meshdrop" => Proto::Meshdrop,
        "peerjs" => Proto::PeerJs,
        "matchbox" => Proto::Matchbox,
        other => panic!("unknown protocol {other}: {usage}"),
    };
    match arg(1).as_str() {
        "idle" => idle(proto, arg(3), arg(4).parse().expect("n")).await,
        "relay" => {
            let num = |i: usize| arg(i).parse::<u64>().expect(usage);
            relay(proto, arg(3), arg(4), num(5) as usize, num(6), num(7), num(8) as usize).await;
        }
        _ => panic!("{usage}"),
    }
}
