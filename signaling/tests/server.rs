//! The real server on an ephemeral port, driven by real WebSocket clients: every frame
//! a client receives is asserted in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use meshdrop_signal::Config;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn healthz_and_presence() {
    let server = Server::start(Config::default()).await;
    let mut http = TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    http.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    http.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let mut a = server.client().await;
    let (a_id, peers) = join(&mut a, "lobby", Some("alice")).await;
    assert!(peers.is_empty());
    assert_eq!(a_id.len(), 32);
    let mut b = server.client().await;
    let (b_id, peers) = join(&mut b, "lobby", None).await;
    assert_ne!(a_id, b_id);
    assert_eq!(peers, vec![json!({"id": a_id, "name": "alice"})]);
    assert_eq!(recv(&mut a).await, json!({"type": "peer-joined", "peer": {"id": b_id}}));

    b.close(None).await.unwrap();
    assert_eq!(recv(&mut a).await, json!({"type": "peer-left", "id": b_id}));
    server.stop().await;
}

#[tokio::test]
async fn relay_stamps_from_and_keeps_data() {
    let server = Server::start(Config::default()).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let (a_id, _) = join(&mut a, "r", None).await;
    let (b_id, _) = join(&mut b, "r", None).await;
    recv(&mut a).await; // peer-joined b
    let data = json!({"kind": "offer", "sdp": "v=0\r\n...", "nested": [1, {"x": null}]});
    // A forged `from` is ignored: the server stamps the real sender.
    send(&mut a, json!({"type": "signal", "to": b_id, "from": "someone-else", "data": data})).await;
    assert_eq!(recv(&mut b).await, json!({"type": "signal", "from": a_id, "data": data}));
    send(&mut b, json!({"type": "signal", "to": a_id, "data": "pong"})).await;
    assert_eq!(recv(&mut a).await, json!({"type": "signal", "from": b_id, "data": "pong"}));
    server.stop().await;
}

#[tokio::test]
async fn ping_gets_pong_before_and_after_join() {
    let server = Server::start(Config::default()).await;
    let mut a = server.client().await;
    send(&mut a, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut a).await, json!({"type": "pong"}));
    let (a_id, _) = join(&mut a, "r", None).await;
    let mut b = server.client().await;
    let (b_id, _) = join(&mut b, "r", None).await;
    assert_eq!(recv(&mut a).await, json!({"type": "peer-joined", "peer": {"id": b_id}}));
    send(&mut a, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut a).await, json!({"type": "pong"}));
    // Still a member: signals flow.
    send(&mut b, json!({"type": "signal", "to": a_id, "data": 1})).await;
    assert_eq!(recv(&mut a).await, json!({"type": "signal", "from": b_id, "data": 1}));
    server.stop().await;
}

#[tokio::test]
async fn every_error_code_and_the_connection_stays_usable() {
    let server = Server::start(Config { max_room_peers: 2, ..Config::default() }).await;
    let mut c = server.client().await;
    c.send(Message::text("{oops")).await.unwrap();
    expect_error(&mut c, "bad-json").await;
    send(&mut c, json!({"type": "teleport"})).await;
    expect_error(&mut c, "unknown-type").await;
    send(&mut c, json!({"room": "r"})).await;
    expect_error(&mut c, "bad-message").await;
    send(&mut c, json!({"type": "signal", "to": "x", "data": 1})).await;
    expect_error(&mut c, "not-joined").await;
    send(&mut c, json!({"type": "join", "room": "no spaces"})).await;
    expect_error(&mut c, "bad-room").await;
    send(&mut c, json!({"type": "join", "room": "r", "name": "x".repeat(65)})).await;
    expect_error(&mut c, "bad-name").await;
    send(&mut c, json!({"type": "join", "room": "r", "secret": "too-short"})).await;
    expect_error(&mut c, "bad-secret").await;
    c.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    expect_error(&mut c, "binary-frame").await;
    // Still usable: a valid join now succeeds.
    let (_, _) = join(&mut c, "r", None).await;
    send(&mut c, json!({"type": "join", "room": "r"})).await;
    expect_error(&mut c, "already-joined").await;
    send(&mut c, json!({"type": "signal", "to": "nobody", "data": 1})).await;
    expect_error(&mut c, "unknown-peer").await;

    let mut d = server.client().await;
    join(&mut d, "r", None).await;
    let mut e = server.client().await;
    send(&mut e, json!({"type": "join", "room": "r"})).await;
    expect_error(&mut e, "room-full").await;
    // The refused client can still join another room.
    join(&mut e, "other", None).await;
    server.stop().await;
}

#[tokio::test]
async fn rooms_are_isolated() {
    let server = Server::start(Config::default()).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let (a_id, _) = join(&mut a, "one", None).await;
    let (_, peers) = join(&mut b, "two", None).await;
    assert!(peers.is_empty(), "b must not learn of a");
    send(&mut b, json!({"type": "signal", "to": a_id, "data": "psst"})).await;
    expect_error(&mut b, "unknown-peer").await;
    // a heard nothing at all: the next frame it gets is the relay from its own room.
    let mut c = server.client().await;
    let (c_id, _) = join(&mut c, "one", None).await;
    assert_eq!(recv(&mut a).await, json!({"type": "peer-joined", "peer": {"id": c_id}}));
    server.stop().await;
}

#[tokio::test]
async fn oversized_frame_gets_error_then_close() {
    let server = Server::start(Config::default()).await;
    let mut c = server.client().await;
    join(&mut c, "r", None).await;
    let big = json!({"type": "signal", "to": "x", "data": "y".repeat(70 * 1024)});
    send(&mut c, big).await;
    expect_error(&mut c, "too-large").await;
    assert_eq!(expect_close(&mut c).await, CloseCode::Size);
    server.stop().await;
}

#[tokio::test]
async fn flood_is_rate_limited_then_closed() {
    let server = Server::start(Config { max_frames_per_sec: 10, ..Config::default() }).await;
    let mut c = server.client().await;
    join(&mut c, "r", None).await;
    let mut peer = server.client().await;
    let (peer_id, _) = join(&mut peer, "r", None).await;
    recv(&mut c).await; // peer-joined
                        // The burst allowance (20) passes; then refusals, one error, and a close.
    for i in 0..200 {
        if c.send(Message::text(json!({"type": "signal", "to": peer_id, "data": i}).to_string())).await.is_err() {
            break;
        }
    }
    let mut relayed = 0;
    loop {
        let v = recv(&mut peer).await;
        assert_eq!(v["type"], "signal", "after {relayed} relayed");
        relayed += 1;
        if relayed >= 19 {
            break;
        }
    }
    expect_error(&mut c, "rate-limited").await;
    assert_eq!(expect_close(&mut c).await, CloseCode::Policy);
    server.stop().await;
}

#[tokio::test]
async fn silent_client_is_dropped_by_ping_timeout() {
    let config = Config { ping_interval: Duration::from_millis(100), idle_timeout: Duration::from_millis(400), ..Config::default() };
    let server = Server::start(config).await;
    let mut a = server.client().await;
    join(&mut a, "r", None).await;
    let mut silent = server.client().await;
    let (silent_id, _) = join(&mut silent, "r", None).await;
    assert_eq!(recv(&mut a).await["type"], "peer-joined");
    // `silent` never reads again, so it never answers pings; `a` reads (and pongs).
    assert_eq!(recv(&mut a).await, json!({"type": "peer-left", "id": silent_id}));
    drop(silent);
    server.stop().await;
}

#[tokio::test]
async fn same_secret_keeps_id_across_restarts_and_replaces_old_connection() {
    let secret = "s3cr3t-".repeat(6);
    let server = Server::start(Config::default()).await;
    let mut a = server.client().await;
    send(&mut a, json!({"type": "join", "room": "r", "secret": secret})).await;
    let first = recv(&mut a).await["id"].as_str().unwrap().to_owned();
    let mut watcher = server.client().await;
    join(&mut watcher, "r", None).await;
    // Same secret again while the first connection is alive: it takes over.
    let mut again = server.client().await;
    send(&mut again, json!({"type": "join", "room": "r", "secret": secret})).await;
    let second = recv(&mut again).await;
    assert_eq!(second["id"], first.as_str());
    assert_eq!(expect_close(&mut a).await, CloseCode::Policy);
    assert_eq!(recv(&mut watcher).await, json!({"type": "peer-left", "id": first}));
    assert_eq!(recv(&mut watcher).await, json!({"type": "peer-joined", "peer": {"id": first}}));
    // Only the secret's owner can hold that id; nobody can claim it without it.
    let other = {
        let mut o = server.client().await;
        join(&mut o, "r", None).await.0
    };
    assert_ne!(other, first);
    server.stop().await;

    // A new server process derives the same id from the same secret.
    let server = Server::start(Config::default()).await;
    let mut b = server.client().await;
    send(&mut b, json!({"type": "join", "room": "r", "secret": secret})).await;
    assert_eq!(recv(&mut b).await["id"], first.as_str());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_clients_with_service_restart() {
    let server = Server::start(Config::default()).await;
    let mut a = server.client().await;
    join(&mut a, "r", None).await;
    server.stop().await;
    // 1012, not 1001: it tells the client to reconnect at once (to another instance).
    assert_eq!(expect_close(&mut a).await, CloseCode::Restart);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_churn_of_200_clients_loses_nothing() {
    const N: usize = 200;
    let server = Server::start(Config { max_room_peers: N, max_frames_per_sec: 1000, ..Config::default() }).await;
    // Everybody joins; each must see exactly the others (from welcome + peer-joined).
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..N {
        let mut c = server.client().await;
        let (id, _) = join(&mut c, "churn", None).await;
        ids.push(id);
        clients.push(c);
    }
    let ids = std::sync::Arc::new(ids);
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            // Peers after me announce themselves to me, in join order.
            for later in &ids[i + 1..] {
                assert_eq!(recv(&mut c).await, json!({"type": "peer-joined", "peer": {"id": later}}));
            }
            // Then everyone signals everyone (ring of 5 neighbours) and every signal arrives.
            for k in 1..=5 {
                let to = &ids[(i + k) % N];
                send(&mut c, json!({"type": "signal", "to": to, "data": {"k": k}})).await;
            }
            let mut got = std::collections::HashSet::new();
            while got.len() < 5 {
                let v = recv(&mut c).await;
                assert_eq!(v["type"], "signal", "{v}");
                let k = v["data"]["k"].as_u64().unwrap() as usize;
                assert_eq!(v["from"], ids[(i + N - k) % N].as_str());
                assert!(got.insert(k), "duplicate signal {v}");
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    // Half of them leave; the other half see exactly those departures.
    let leavers: Vec<_> = clients.drain(N / 2..).collect();
    for mut c in leavers {
        c.close(None).await.unwrap();
    }
    let departed: std::collections::HashSet<_> = ids[N / 2..].iter().cloned().collect();
    for c in clients.iter_mut() {
        let mut seen = std::collections::HashSet::new();
        while seen.len() < departed.len() {
            let v = recv(c).await;
            assert_eq!(v["type"], "peer-left", "{v}");
            assert!(departed.contains(v["id"].as_str().unwrap()));
            assert!(seen.insert(v["id"].as_str().unwrap().to_owned()));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn binary_flood_is_limited_like_text_and_not_amplified() {
    let server = Server::start(Config { max_frames_per_sec: 10, ..Config::default() }).await;
    let mut c = server.client().await;
    join(&mut c, "r", None).await;
    for _ in 0..200 {
        if c.send(Message::binary(vec![0u8; 8])).await.is_err() {
            break;
        }
    }
    let (mut binary_errors, mut rate_limited) = (0, 0);
    let code = loop {
        match tokio::time::timeout(WAIT, c.next()).await.expect("timed out") {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["code"].as_str() {
                    Some("binary-frame") => binary_errors += 1,
                    Some("rate-limited") => rate_limited += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            Some(Ok(Message::Close(Some(frame)))) => break frame.code,
            Some(Ok(_)) => continue,
            other => panic!("closed without a close code: {other:?}"),
        }
    };
    // The burst allowance (20) is answered; the refused rest gets one error, not 180.
    assert!(binary_errors <= 20, "{binary_errors} binary-frame errors");
    assert_eq!(rate_limited, 1);
    assert_eq!(code, CloseCode::Policy);
    server.stop().await;
}

#[tokio::test]
async fn joined_clients_get_turn_credentials_and_fresh_ones_before_they_expire() {
    use meshdrop_signal::ice::{credential, IceConfig};
    let ice = IceConfig {
        stun: vec!["stun:192.0.2.1:3478".into()],
        turn: vec!["turn:192.0.2.1:3478?transport=udp".into(), "turn:192.0.2.1:3478?transport=tcp".into()],
        secret: Some(b"shared with coturn".to_vec()),
        ttl: Duration::from_secs(4),
    };
    let server = Server::start(Config { ice, ..Config::default() }).await;
    let mut c = server.client().await;
    send(&mut c, json!({"type": "join", "room": "r"})).await;
    let welcome = recv(&mut c).await;
    let id = welcome["id"].as_str().unwrap().to_owned();
    let servers = welcome["iceServers"].as_array().unwrap().clone();
    assert_eq!(servers[0], json!({"urls": ["stun:192.0.2.1:3478"]}));
    let check = |server: &Value| -> u64 {
        let username = server["username"].as_str().unwrap();
        let (expiry, peer) = username.split_once(':').unwrap();
        assert_eq!(peer, id, "the username names the peer");
        assert_eq!(server["credential"], credential(b"shared with coturn", username), "coturn's REST password");
        expiry.parse().unwrap()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let first = check(&servers[1]);
    assert!((now + 3..=now + 5).contains(&first), "expires with the TTL: {first} vs {now}");
    // Before the 4 s are over, fresh credentials arrive on the same connection.
    let refresh = recv(&mut c).await;
    assert_eq!(refresh["type"], "ice-servers", "{refresh}");
    let second = check(&refresh["iceServers"][1]);
    assert!(second > first, "the fresh credential lasts longer");
    // A server without ICE servers says nothing of them.
    let plain = Server::start(Config::default()).await;
    let mut d = plain.client().await;
    send(&mut d, json!({"type": "join", "room": "r"})).await;
    assert!(recv(&mut d).await.get("iceServers").is_none());
    plain.stop().await;
    server.stop().await;
}

mod keyed {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use meshdrop_signal::protocol::{id_from_key, join_proof_message, to_hex};

    async fn nonce(ws: &mut Ws) -> String {
        send(ws, json!({"type": "challenge"})).await;
        let frame = recv(ws).await;
        assert_eq!(frame["type"], "challenge", "{frame}");
        frame["nonce"].as_str().unwrap().to_owned()
    }

    fn join_frame(key: &SigningKey, nonce: &str, room: &str) -> Value {
        let proof = key.sign(&join_proof_message(nonce, room));
        json!({"type": "join", "room": room, "key": to_hex(key.verifying_key().as_bytes()), "proof": to_hex(&proof.to_bytes())})
    }

    #[tokio::test]
    async fn a_keyed_join_gets_the_id_of_its_key_and_nothing_else_claims_it() {
        let server = Server::start(Config::default()).await;
        let key = SigningKey::from_bytes(&[7; 32]);
        let expected = id_from_key(key.verifying_key().as_bytes());
        let mut a = server.client().await;
        let n = nonce(&mut a).await;
        let recorded = join_frame(&key, &n, "r");
        send(&mut a, recorded.clone()).await;
        let welcome = recv(&mut a).await;
        assert_eq!(welcome["id"], expected.as_str());

        // A recorded join replayed on another connection (whose nonce differs, or was
        // never asked for) is refused: a server or an eavesdropper cannot reuse it.
        let mut replay = server.client().await;
        send(&mut replay, recorded.clone()).await;
        expect_error(&mut replay, "bad-proof").await;
        let _ = nonce(&mut replay).await;
        send(&mut replay, recorded).await;
        expect_error(&mut replay, "bad-proof").await;

        // Another key cannot take the id; a proof for one room does not join another.
        let mut other = server.client().await;
        let n = nonce(&mut other).await;
        let mut moved = join_frame(&key, &n, "r");
        moved["room"] = json!("s");
        send(&mut other, moved).await;
        expect_error(&mut other, "bad-proof").await;
        // The nonce was spent on that attempt.
        send(&mut other, join_frame(&key, &n, "s")).await;
        expect_error(&mut other, "bad-proof").await;
        let thief = SigningKey::from_bytes(&[8; 32]);
        let n = nonce(&mut other).await;
        let mut forged = join_frame(&thief, &n, "r");
        forged["key"] = json!(to_hex(key.verifying_key().as_bytes()));
        send(&mut other, forged).await;
        expect_error(&mut other, "bad-proof").await;
        // Malformed keys and proofs are refused by shape.
        send(&mut other, json!({"type": "join", "room": "r", "key": "00", "proof": "11"})).await;
        expect_error(&mut other, "bad-proof").await;
        send(&mut other, json!({"type": "join", "room": "r", "key": "0".repeat(64)})).await;
        expect_error(&mut other, "bad-proof").await;

        // The key's holder, from a new connection, takes its id over as with secrets.
        let mut again = server.client().await;
        let n = nonce(&mut again).await;
        send(&mut again, join_frame(&key, &n, "r")).await;
        assert_eq!(recv(&mut again).await["id"], expected.as_str());
        assert_eq!(expect_close(&mut a).await, CloseCode::Policy);
        server.stop().await;
    }

    /// `?challenge=first`: the nonce comes unasked, before the client says anything, so
    /// a keyed join takes one round trip after the socket opens. The request a client
    /// still sends for older servers is answered by that nonce, not by a second one.
    #[tokio::test]
    async fn a_client_that_asks_for_the_challenge_first_gets_it_unasked_and_exactly_once() {
        let server = Server::start(Config::default()).await;
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut a = server.client_at("/ws?v=1&challenge=first").await;
        let pushed = recv(&mut a).await;
        assert_eq!(pushed["type"], "challenge", "{pushed}");
        let n = pushed["nonce"].as_str().unwrap().to_owned();
        send(&mut a, json!({"type": "challenge"})).await;
        send(&mut a, join_frame(&key, &n, "r")).await;
        let welcome = recv(&mut a).await;
        assert_eq!(welcome["type"], "welcome", "no second challenge: {welcome}");
        assert_eq!(welcome["id"], id_from_key(key.verifying_key().as_bytes()).as_str());

        // The pushed nonce serves one attempt like any other; asking again afterwards
        // gets a fresh one.
        let mut b = server.client_at("/ws?challenge=first").await;
        let n = recv(&mut b).await["nonce"].as_str().unwrap().to_owned();
        let other = SigningKey::from_bytes(&[10; 32]);
        let mut moved = join_frame(&other, &n, "r");
        moved["room"] = json!("s");
        send(&mut b, moved).await;
        expect_error(&mut b, "bad-proof").await;
        let fresh = nonce(&mut b).await;
        assert_ne!(fresh, n);
        send(&mut b, join_frame(&other, &fresh, "r")).await;
        assert_eq!(recv(&mut b).await["type"], "welcome");

        // Without the parameter nothing comes before the client speaks.
        let mut c = server.client_at("/ws?challenge=later").await;
        send(&mut c, json!({"type": "join", "room": "r"})).await;
        assert_eq!(recv(&mut c).await["type"], "welcome");
        server.stop().await;
    }
}
