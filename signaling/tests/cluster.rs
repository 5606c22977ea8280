//! Several instances sharing rooms through a real `redis-server` (`--redis`): peers on
//! different instances meet, signal in order, fill a room together; an instance killed
//! with SIGKILL loses its peers to the others with their ids; Redis restarting is
//! survived and reported.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use meshdrop_signal::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// How long an instance's peers may outlive it in the others' rooms (PROTOCOL.md).
const DEAD_INSTANCE_BOUND: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Reads a child's output until a line contains `needle`; the rest keeps draining so
/// the child never blocks on a full pipe.
async fn wait_for_line(child: &mut Child, needle: &str) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("the process exited before saying {needle:?}")
    })
    .await
    .unwrap_or_else(|_| panic!("no line with {needle:?} within {WAIT:?}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

/// A `redis-server` of this test's own, without persistence.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    async fn start_on(port: u16) -> Redis {
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is not installed (scripts/ensure-tools.sh installs it)");
        wait_for_line(&mut child, "Ready to accept connections").await;
        Redis { port, child }
    }

    async fn start() -> Redis {
        Redis::start_on(free_port()).await
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

fn clustered(redis: &Redis, max_room_peers: usize) -> Config {
    Config { redis: Some(redis.url()), max_room_peers, max_frames_per_sec: 1000, max_inbound_per_sec: 1000, ..Config::default() }
}

/// An instance as its own process, so it can be killed without a goodbye.
struct Process {
    addr: SocketAddr,
    child: Child,
}

impl Process {
    async fn start(redis: &Redis) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshdrop-signal"))
            .args(["--listen", "127.0.0.1:0", "--redis", &redis.url()])
            .env("NO_COLOR", "1")
            .env("MESHDROP_LOG", "info")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let line = wait_for_line(&mut child, "meshdrop-signal listening").await;
        let addr = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().parse().unwrap();
        Process { addr, child }
    }

    async fn client(&self) -> Ws {
        connect_async(format!("ws://{}/ws", self.addr)).await.unwrap().0
    }
}

async fn join_with(ws: &mut Ws, room: &str, secret: &str) -> (String, Vec<Value>) {
    send(ws, json!({"type": "join", "room": room, "secret": secret})).await;
    let welcome = recv(ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (welcome["id"].as_str().unwrap().to_owned(), welcome["peers"].as_array().unwrap().clone())
}

fn ids(peers: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = peers.iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

/// `GET /metrics` from `addr`.
async fn metrics(addr: SocketAddr) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_two_instances_meet_and_signals_keep_their_order() {
    let redis = Redis::start().await;
    let a = Server::start(clustered(&redis, 20)).await;
    let b = Server::start(clustered(&redis, 20)).await;
    let mut alice = a.client().await;
    let (alice_id, peers) = join(&mut alice, "r", Some("alice")).await;
    assert!(peers.is_empty());
    let mut bob = b.client().await;
    let (bob_id, peers) = join(&mut bob, "r", Some("bob")).await;
    assert_eq!(peers, vec![json!({"id": alice_id, "name": "alice"})], "the welcome lists peers on other instances");
    assert_eq!(recv(&mut alice).await, json!({"type": "peer-joined", "peer": {"id": bob_id, "name": "bob"}}));
    // A room of the same name is still another room: nobody there sees them.
    let mut other = b.client().await;
    let (_, peers) = join(&mut other, "s", None).await;
    assert!(peers.is_empty());

    // Many signals, both ways, each side's in the order sent.
    const N: u64 = 300;
    for seq in 0..N {
        send(&mut alice, json!({"type": "signal", "to": bob_id, "data": {"seq": seq, "pad": "x".repeat(1024)}})).await;
        send(&mut bob, json!({"type": "signal", "to": alice_id, "data": {"seq": seq}})).await;
    }
    for (receiver, from) in [(&mut bob, &alice_id), (&mut alice, &bob_id)] {
        for seq in 0..N {
            let frame = recv(receiver).await;
            assert_eq!(frame["type"], "signal", "{frame}");
            assert_eq!(frame["from"], from.as_str());
            assert_eq!(frame["data"]["seq"], seq, "in order");
        }
    }
    // The same errors as on one instance.
    send(&mut bob, json!({"type": "signal", "to": "0".repeat(32), "data": {}})).await;
    expect_error(&mut bob, "unknown-peer").await;
    // Leaving on one instance is seen on the other.
    drop(alice);
    assert_eq!(recv(&mut bob).await, json!({"type": "peer-left", "id": alice_id}));
    let text = metrics(a.addr).await;
    assert!(metric(&text, "meshdrop_signals_relayed_remote_total") >= N as f64, "{text}");
    assert_eq!(metric(&text, "meshdrop_redis_up"), 1.0);
    assert!(text.contains("meshdrop_redis_rtt_seconds_count"));
    b.stop().await;
    a.stop().await;
}

/// Runs `redis-cli` against the test's Redis; its output.
async fn redis_cli(redis: &Redis, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &redis.port.to_string()]).args(args).output().await.unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_reads_signals_sent_alone_or_batched_and_bursts_from_many_senders_keep_each_order() {
    let redis = Redis::start().await;
    let a = Server::start(clustered(&redis, 20)).await;
    let b = Server::start(clustered(&redis, 20)).await;
    let mut bob = b.client().await;
    let (bob_id, _) = join(&mut bob, "r", None).await;

    // Another instance, played by the test: one signal published alone (as instances
    // before batching publish them), then two in one array, to bob's instance's inbox.
    let listed = redis_cli(&redis, &["HGET", "meshdrop:room:r", &bob_id]).await;
    let instance = listed.lines().next().unwrap().to_owned();
    let inbox = format!("meshdrop:to:{instance}");
    let one = |n: u64| json!({"room": "r", "from": "elsewhere", "to": bob_id, "data": {"n": n}});
    assert_eq!(redis_cli(&redis, &["PUBLISH", &inbox, &one(1).to_string()]).await.trim(), "1");
    assert_eq!(redis_cli(&redis, &["PUBLISH", &inbox, &json!([one(2), one(3)]).to_string()]).await.trim(), "1");
    for n in 1..=3 {
        assert_eq!(recv(&mut bob).await, json!({"type": "signal", "from": "elsewhere", "data": {"n": n}}));
    }

    // Eight senders on instance a burst at bob on b at once: the signals travel in
    // batches, and each sender's arrive complete and in its order.
    const SENDERS: usize = 8;
    const EACH: u64 = 100;
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let mut ws = a.client().await;
        let (id, _) = join(&mut ws, "r", None).await;
        assert_eq!(recv(&mut bob).await["type"], "peer-joined");
        senders.push((ws, id));
    }
    let bursts = senders.iter_mut().map(|(ws, _)| {
        let bob_id = bob_id.clone();
        async move {
            for seq in 0..EACH {
                send(ws, json!({"type": "signal", "to": bob_id, "data": {"seq": seq}})).await;
            }
        }
    });
    futures_util::future::join_all(bursts).await;
    let mut next = std::collections::HashMap::new();
    for _ in 0..SENDERS as u64 * EACH {
        let frame = recv(&mut bob).await;
        assert_eq!(frame["type"], "signal", "{frame}");
        let from = frame["from"].as_str().unwrap().to_owned();
        let expected = next.entry(from.clone()).or_insert(0u64);
        assert_eq!(frame["data"]["seq"], *expected, "{from}'s signals in its order");
        *expected += 1;
    }
    assert!(next.values().all(|&n| n == EACH) && next.len() == SENDERS, "{next:?}");
    let text = metrics(a.addr).await;
    assert_eq!(metric(&text, "meshdrop_signals_relayed_remote_total"), (SENDERS as u64 * EACH) as f64, "{text}");
    // Every signal went in some PUBLISH, and at least one carried several.
    assert_eq!(metric(&text, "meshdrop_remote_batch_signals_sum"), (SENDERS as u64 * EACH) as f64, "{text}");
    assert!(metric(&text, "meshdrop_remote_batch_signals_count") < (SENDERS as u64 * EACH) as f64, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_full_across_three_instances() {
    let redis = Redis::start().await;
    let servers = [Server::start(clustered(&redis, 3)).await, Server::start(clustered(&redis, 3)).await, Server::start(clustered(&redis, 3)).await];
    let mut members = Vec::new();
    for server in &servers {
        let mut ws = server.client().await;
        let (id, _) = join(&mut ws, "r", None).await;
        members.push((ws, id));
    }
    for server in &servers {
        let mut late = server.client().await;
        send(&mut late, json!({"type": "join", "room": "r"})).await;
        expect_error(&mut late, "room-full").await;
    }
    // One leaves (on the second instance): there is room again, on any instance.
    let (ws, gone) = members.remove(1);
    drop(ws);
    for (ws, _) in &mut members {
        loop {
            let frame = recv(ws).await;
            if frame["type"] == "peer-left" {
                assert_eq!(frame["id"], gone.as_str());
                break;
            }
        }
    }
    let mut late = servers[2].client().await;
    let (_, peers) = join(&mut late, "r", None).await;
    assert_eq!(peers.len(), 2);
    for server in servers {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_of_a_killed_instance_move_with_their_ids_and_the_rest_leave_in_bounded_time() {
    let redis = Redis::start().await;
    let mut doomed = Process::start(&redis).await;
    let survivor = Server::start(clustered(&redis, 20)).await;
    let (mover_secret, stayer_secret) = ("m".repeat(40), "s".repeat(40));
    let mut mover = doomed.client().await;
    let (mover_id, _) = join_with(&mut mover, "r", &mover_secret).await;
    let mut stayer = doomed.client().await;
    let (stayer_id, _) = join_with(&mut stayer, "r", &stayer_secret).await;
    let mut watcher = survivor.client().await;
    let (watcher_id, peers) = join(&mut watcher, "r", None).await;
    assert_eq!(ids(&peers), { ids(&[json!({"id": mover_id}), json!({"id": stayer_id})]) });

    let killed = Instant::now();
    doomed.child.start_kill().unwrap();
    // The client sees its connection drop (no close frame: the process is gone)…
    loop {
        match tokio::time::timeout(WAIT, mover.next()).await.unwrap() {
            Some(Ok(Message::Text(_) | Message::Ping(_))) => continue,
            Some(Ok(Message::Close(Some(frame)))) => panic!("a killed process sent a close frame: {frame:?}"),
            _ => break,
        }
    }
    // …and comes back through the other instance, with the same id.
    let mut mover = survivor.client().await;
    let (again, peers) = join_with(&mut mover, "r", &mover_secret).await;
    let moved = killed.elapsed();
    assert_eq!(again, mover_id);
    assert!(ids(&peers).contains(&watcher_id));
    // It can signal at once.
    send(&mut mover, json!({"type": "signal", "to": watcher_id, "data": {"after": "failover"}})).await;
    let signalled = loop {
        let frame = recv(&mut watcher).await;
        if frame["type"] == "signal" {
            assert_eq!(frame["from"], mover_id.as_str());
            assert_eq!(frame["data"]["after"], "failover");
            break killed.elapsed();
        }
        // The move shows as the id leaving and joining again, like any rejoin.
        assert!(frame["id"] == mover_id.as_str() || frame["peer"]["id"] == mover_id.as_str(), "{frame}");
    };
    // The peer that did not come back leaves, within the bound and only once.
    let left = loop {
        let frame = recv(&mut watcher).await;
        if frame["type"] == "peer-left" {
            assert_eq!(frame["id"], stayer_id.as_str(), "only the one that did not come back");
            break killed.elapsed();
        }
    };
    assert!(left <= DEAD_INSTANCE_BOUND, "{left:?}");
    // The mover is still there, for a newcomer too.
    let mut late = survivor.client().await;
    let (_, peers) = join(&mut late, "r", None).await;
    assert_eq!(ids(&peers), ids(&[json!({"id": mover_id}), json!({"id": watcher_id})]));
    println!("instance killed → peer back in {moved:?}, signalling in {signalled:?}; the other's peer-left after {left:?}");
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_instance_tells_its_peers_to_reconnect_and_they_keep_their_ids() {
    let redis = Redis::start().await;
    let draining = Server::start(clustered(&redis, 20)).await;
    let staying = Server::start(clustered(&redis, 20)).await;
    let secret = "d".repeat(40);
    let mut mover = draining.client().await;
    let (id, _) = join_with(&mut mover, "r", &secret).await;
    let mut watcher = staying.client().await;
    join(&mut watcher, "r", None).await;
    let stop = tokio::spawn(draining.stop());
    assert_eq!(expect_close(&mut mover).await, tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Restart);
    let mut mover = staying.client().await;
    assert_eq!(join_with(&mut mover, "r", &secret).await.0, id);
    stop.await.unwrap();
    // The drained instance retired its key: nothing of it remains to expire later.
    let mut late = staying.client().await;
    let (_, peers) = join(&mut late, "r", None).await;
    assert!(ids(&peers).contains(&id));
    staying.stop().await;
}

/// Polls `/metrics` until `redis_up` reads `up` on every server: the instances' own
/// account of losing and regaining Redis.
async fn until_redis_up(addrs: &[SocketAddr], up: bool, since: Instant) -> Duration {
    loop {
        let mut all = true;
        for addr in addrs {
            all &= metric(&metrics(*addr).await, "meshdrop_redis_up") == f64::from(u8::from(up));
        }
        if all {
            return since.elapsed();
        }
        assert!(since.elapsed() < Duration::from_secs(15), "redis_up never became {up}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Redis, two instances sharing it (both connected to it), alice in room "r" on the
/// first and bob on the second, alice told of bob.
struct RoomOnTwo {
    redis: Redis,
    a: Server,
    b: Server,
    alice: Ws,
    alice_id: String,
    bob: Ws,
    bob_id: String,
}

async fn room_on_two_instances() -> RoomOnTwo {
    let redis = Redis::start().await;
    let a = Server::start(clustered(&redis, 20)).await;
    let b = Server::start(clustered(&redis, 20)).await;
    until_redis_up(&[a.addr, b.addr], true, Instant::now()).await;
    let mut alice = a.client().await;
    let (alice_id, _) = join(&mut alice, "r", None).await;
    let mut bob = b.client().await;
    let (bob_id, _) = join(&mut bob, "r", None).await;
    assert_eq!(recv(&mut alice).await["type"], "peer-joined");
    RoomOnTwo { redis, a, b, alice, alice_id, bob, bob_id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_survive_a_redis_restart_and_say_so() {
    let RoomOnTwo { mut redis, a, b, mut alice, alice_id, mut bob, bob_id } = room_on_two_instances().await;

    // Redis dies; the instances notice, and still serve their own peers.
    let killed = Instant::now();
    redis.kill().await;
    let noticed = until_redis_up(&[a.addr, b.addr], false, killed).await;
    let mut carol = a.client().await;
    let (carol_id, peers) = join(&mut carol, "r", None).await;
    assert_eq!(ids(&peers), ids(&[json!({"id": alice_id}), json!({"id": bob_id})]), "known members stay listed");
    send(&mut bob, json!({"type": "signal", "to": alice_id, "data": {"lost": true}})).await;
    expect_error(&mut bob, "unavailable").await;

    // It comes back empty, on the same port: every instance registers its peers again.
    let restarted = Instant::now();
    let _redis = Redis::start_on(redis.port).await;
    let recovered = until_redis_up(&[a.addr, b.addr], true, restarted).await;
    // A newcomer on a third instance, which only knows what Redis holds, sees everyone,
    // carol too (she joined during the outage).
    let c = Server::start(clustered(&redis, 20)).await;
    let mut dave = c.client().await;
    let (_, peers) = join(&mut dave, "r", None).await;
    assert_eq!(ids(&peers), ids(&[json!({"id": alice_id}), json!({"id": bob_id}), json!({"id": carol_id})]));
    // Signals cross again, and nobody was seen to leave.
    send(&mut bob, json!({"type": "signal", "to": alice_id, "data": {"n": 1}})).await;
    let frame = loop {
        let frame = recv(&mut alice).await;
        if frame["type"] == "signal" {
            break frame;
        }
        assert_ne!(frame["type"], "peer-left", "{frame}");
    };
    assert_eq!(frame["from"], bob_id.as_str());
    for server in [&a, &b] {
        let text = metrics(server.addr).await;
        assert!(metric(&text, "meshdrop_redis_failures_total") >= 1.0, "{text}");
    }
    println!("redis killed → instances noticed in {noticed:?}; restarted → recovered in {recovered:?}");
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_left_while_redis_was_down_is_seen_to_leave_once_it_is_back() {
    let RoomOnTwo { mut redis, a, b, mut alice, bob, bob_id, .. } = room_on_two_instances().await;

    // Bob leaves while Redis is down: his instance cannot say so to the others.
    redis.kill().await;
    until_redis_up(&[a.addr, b.addr], false, Instant::now()).await;
    drop(bob);
    let _redis = Redis::start_on(redis.port).await;
    let back = Instant::now();
    until_redis_up(&[a.addr, b.addr], true, back).await;
    // Not at once (his instance might only not have registered him again yet), but
    // within the bound for peers whose instance stopped listing them.
    let left = loop {
        let frame = tokio::time::timeout(DEAD_INSTANCE_BOUND, recv(&mut alice)).await.expect("bob never left");
        if frame["type"] == "peer-left" {
            break frame;
        }
    };
    assert_eq!(left["id"], bob_id.as_str());
    assert!(back.elapsed() < DEAD_INSTANCE_BOUND, "{:?}", back.elapsed());
    b.stop().await;
    a.stop().await;
}
