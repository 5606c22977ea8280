//! Hostile and broken clients against the real server: each is written here, as raw
//! TCP or WebSocket traffic, and every test ends by itself.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use meshdrop_signal::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async, WebSocketStream};

/// Reads until the server closes the TCP connection (EOF or reset); how long it took.
async fn wait_for_eof(tcp: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.expect("the server never closed the connection") {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => continue,
        }
    }
}

/// The status line of a plain HTTP GET.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_string(&mut response)).await.expect("no answer");
    response.lines().next().unwrap_or_default().to_owned()
}

/// A WebSocket from a chosen local address (127.0.0.2 is as loopback as 127.0.0.1).
async fn client_from(addr: SocketAddr, local: &str) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    client_async(format!("ws://{addr}/ws"), tcp).await.map(|(ws, _)| ws)
}

fn status_of(err: &tokio_tungstenite::tungstenite::Error) -> Option<u16> {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => Some(response.status().as_u16()),
        _ => None,
    }
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_off() {
    let server = Server::start(Config { header_timeout: Duration::from_millis(800), ..Config::default() }).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for byte in head {
        if tcp.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        // Anything read, or EOF, ends the drip: the server answered or gave up.
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await {
            closed = matches!(read, Ok(0) | Err(_));
            assert!(closed, "the server answered a head it should have cut off: {:?}", String::from_utf8_lossy(&buf));
            break;
        }
    }
    assert!(closed, "the slow head was still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3), "cut off only after {:?}", started.elapsed());
    server.stop().await;
}

#[tokio::test]
async fn connections_that_never_send_a_byte_are_closed() {
    let server = Server::start(Config { header_timeout: Duration::from_millis(500), ..Config::default() }).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    for tcp in &mut idle {
        let took = wait_for_eof(tcp).await;
        assert!(took < Duration::from_secs(3), "a silent connection stayed open {took:?}");
    }
    assert!(http_get(server.addr, "/healthz").await.contains("200"));
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_that_never_joins_is_closed_even_if_it_answers_pings() {
    let config = Config { join_timeout: Duration::from_millis(600), ping_interval: Duration::from_millis(100), ..Config::default() };
    let server = Server::start(config).await;
    let mut ws = server.client().await;
    let started = Instant::now();
    // Reading answers the server's pings (tungstenite replies with pongs).
    assert_eq!(expect_close(&mut ws).await, CloseCode::Policy);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(3), "closed after {took:?}");
    // A client that joins in time stays.
    let mut ok = server.client().await;
    join(&mut ok, "r", None).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    send(&mut ok, json!({"type": "signal", "to": "nobody", "data": 1})).await;
    expect_error(&mut ok, "unknown-peer").await;
    server.stop().await;
}

#[tokio::test]
async fn past_the_connection_limit_clients_get_503_and_healthz_still_answers() {
    let server = Server::start(Config { max_connections: 20, ..Config::default() }).await;
    let mut held = Vec::new();
    for i in 0..20 {
        let mut ws = server.client().await;
        join(&mut ws, "r", Some(&format!("c{i}"))).await;
        held.push(ws);
    }
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await.expect_err("a 21st connection was served");
    assert_eq!(status_of(&refused), Some(503), "{refused}");
    assert!(http_get(server.addr, "/healthz").await.contains("200 OK"), "healthz must answer at the limit");
    // A slot comes back when a connection ends.
    let mut gone = held.pop().unwrap();
    gone.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, gone.next()).await {}
    let mut again = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr)).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    join(again.as_mut().expect("the freed slot was never given out"), "r", None).await;
    server.stop().await;
}

#[tokio::test]
async fn one_address_gets_only_its_share_of_connections() {
    let server = Server::start(Config { max_connections_per_ip: 5, ..Config::default() }).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(client_from(server.addr, "127.0.0.1").await.expect("under the per-address limit"));
    }
    let refused = client_from(server.addr, "127.0.0.1").await.expect_err("a 6th connection from one address was served");
    assert_eq!(status_of(&refused), Some(503));
    let mut other = client_from(server.addr, "127.0.0.2").await.expect("another address is not limited by the first");
    other.send(Message::text(json!({"type": "join", "room": "r"}).to_string())).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn pings_count_against_the_rate_limit() {
    let server = Server::start(Config { max_frames_per_sec: 10, ..Config::default() }).await;
    let mut ws = server.client().await;
    join(&mut ws, "r", None).await;
    for _ in 0..5_000 {
        if ws.send(Message::Ping(Default::default())).await.is_err() {
            break;
        }
    }
    let mut pongs = 0;
    let code = loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("never closed") {
            Some(Ok(Message::Pong(_))) => pongs += 1,
            Some(Ok(Message::Close(Some(frame)))) => break frame.code,
            Some(Ok(_)) => {}
            other => panic!("closed without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, CloseCode::Policy, "a ping flood is a flood");
    assert!(pongs < 100, "{pongs} pongs for a ping flood");
    server.stop().await;
}

#[tokio::test]
async fn no_peer_is_sent_more_than_its_inbound_limit_whatever_the_number_of_senders() {
    let server = Server::start(Config { max_frames_per_sec: 1_000, max_inbound_per_sec: 20, max_room_peers: 32, ..Config::default() }).await;
    let mut victim = server.client().await;
    let (victim_id, _) = join(&mut victim, "r", None).await;
    let mut senders = Vec::new();
    for _ in 0..20 {
        let mut s = server.client().await;
        join(&mut s, "r", None).await;
        senders.push(s);
    }
    let started = Instant::now();
    for s in &mut senders {
        for i in 0..20 {
            send(s, json!({"type": "signal", "to": victim_id, "data": i})).await;
        }
    }
    // Everything sent is handled within this window; count what reached the victim.
    let mut signals = 0;
    let deadline = started + Duration::from_millis(1_500);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline.into(), victim.next()).await {
        if let Message::Text(t) = message {
            let v: Value = serde_json::from_str(&t).unwrap();
            signals += usize::from(v["type"] == "signal");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 40.0 + 20.0 * elapsed; // the burst, then the rate
    assert!((signals as f64) <= allowed, "{signals} signals in {elapsed:.1} s to one peer (limit {allowed:.0})");
    assert!(signals >= 30, "the limit let only {signals} through");
    // Senders were told, once a second each at most.
    let mut errors = 0;
    for s in &mut senders {
        while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(50), s.next()).await {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["code"] == "rate-limited" {
                errors += 1;
            }
        }
    }
    assert!((1..=2 * senders.len()).contains(&errors), "{errors} rate-limited errors");
    server.stop().await;
}

#[tokio::test]
async fn a_sustained_flood_just_over_the_rate_gets_one_error() {
    let server = Server::start(Config { max_frames_per_sec: 10, ..Config::default() }).await;
    let mut c = server.client().await;
    let (id, _) = join(&mut c, "r", None).await;
    // Spend the burst allowance, then send at twice the rate for 1.5 s: about half is
    // refused, interleaved with frames that pass.
    let frame = json!({"type": "signal", "to": id, "data": 0}).to_string();
    for _ in 0..19 {
        c.send(Message::text(frame.clone())).await.unwrap();
    }
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..30 {
        tick.tick().await;
        c.send(Message::text(frame.clone())).await.unwrap();
    }
    let mut errors = 0;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(300), c.next()).await {
        match message {
            Message::Text(t) if serde_json::from_str::<Value>(&t).unwrap()["code"] == "rate-limited" => errors += 1,
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
    assert_eq!(errors, 1, "one error for one burst");
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_is_closed_with_1007() {
    let server = Server::start(Config::default()).await;
    let mut c = server.client().await;
    join(&mut c, "r", None).await;
    let frame = Frame::message(vec![0x7b, 0xff, 0xfe, 0x7d], OpCode::Data(Data::Text), true);
    c.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(expect_close(&mut c).await, CloseCode::Invalid);
    server.stop().await;
}

#[tokio::test]
async fn names_that_display_as_something_else_are_refused() {
    let server = Server::start(Config::default()).await;
    let mut c = server.client().await;
    for name in ["\u{202E}ecila", "al\u{200B}ice", "\u{2066}bob\u{2069}"] {
        send(&mut c, json!({"type": "join", "room": "r", "name": name})).await;
        expect_error(&mut c, "bad-name").await;
    }
    server.stop().await;
}

// -- the real binary -------------------------------------------------------------------

/// `meshdrop-signal` as a process on a free port, stopped on drop.
struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshdrop-signal"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("MESHDROP_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start meshdrop-signal");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = strip_ansi(&lines.next().expect("the server exited before listening").expect("read its log"));
            if let Some(at) = line.find("addr=") {
                let addr = line[at + 5..].split_whitespace().next().expect("an address");
                break addr.parse().expect("a socket address");
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process { child, addr }
    }

    /// Resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("a number") * 1024
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log line without terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A reader that never reads, with a small receive buffer so the kernel cannot hide
/// that for long.
async fn stalled_client(addr: SocketAddr) -> (WebSocketStream<TcpStream>, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let (mut ws, _) = client_async(format!("ws://{addr}/ws"), tcp).await.unwrap();
    ws.send(Message::text(json!({"type": "join", "room": "r"}).to_string())).await.unwrap();
    let welcome = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            break serde_json::from_str::<Value>(&t).unwrap();
        }
    };
    (ws, welcome["id"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_its_memory_comes_back() {
    let server = Process::start(&[]);
    let url = format!("ws://{}/ws", server.addr);
    let (mut watcher, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    send(&mut watcher, json!({"type": "join", "room": "r"})).await;
    recv(&mut watcher).await;
    let mut senders = Vec::new();
    for _ in 0..3 {
        let (mut s, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        send(&mut s, json!({"type": "join", "room": "r"})).await;
        recv(&mut s).await;
        senders.push(s);
    }
    for _ in 0..3 {
        recv(&mut watcher).await; // peer-joined
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss();

    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(stalled_client(server.addr).await);
    }
    let victims: Vec<String> = stalled.iter().map(|(_, id)| id.clone()).collect();
    let mut joined = 0;
    while joined < 3 {
        let v = recv(&mut watcher).await;
        joined += usize::from(v["type"] == "peer-joined");
    }
    // Every sender relays 60 KB signals to the stalled clients at the rate limit
    // (50 frames a second each) until the room says they left, for at most 20 s.
    let payload = "x".repeat(60_000);
    let started = Instant::now();
    let mut left = std::collections::HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut turn = 0usize;
    while left.len() < victims.len() && started.elapsed() < Duration::from_secs(20) {
        tick.tick().await;
        let to = &victims[turn % victims.len()];
        if !left.contains(to) {
            let sender = &mut senders[turn % 3];
            let _ = sender.send(Message::text(json!({"type": "signal", "to": to, "data": payload}).to_string())).await;
        }
        turn += 1;
        // The watcher hears who left; the senders' own queues are drained too.
        while let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(1), watcher.next()).await {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "peer-left" {
                left.insert(v["id"].as_str().unwrap().to_owned());
            }
        }
        for s in &mut senders {
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), s.next()).await {}
        }
    }
    let took = started.elapsed();
    assert_eq!(left.len(), victims.len(), "stalled clients still in their room after {took:?}");
    assert!(took < Duration::from_secs(10), "stalled clients were closed only after {took:?}");
    let peak = server.rss();
    eprintln!("stalled clients closed after {took:?}; server memory {} KiB before, {} KiB at the peak", before / 1024, peak / 1024);
    drop(stalled);
    drop(senders);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = server.rss();
    let grown = after.saturating_sub(before);
    eprintln!("server memory after they left: {} KiB", after / 1024);
    assert!(
        grown < 8 << 20,
        "the server kept {} KiB after the stalled clients left (peak {} KiB over)",
        grown / 1024,
        peak.saturating_sub(before) / 1024
    );
    assert!(http_get(server.addr, "/healthz").await.contains("200"));
}
