//! When the network moves under a connection: ICE restarts that keep the session, the
//! path each connection takes, and why a connection could not be made.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{joined, left, pid, World};
use meshdrop::core::transfer::blocks::BLOCK_SIZE;
use meshdrop::core::{CandidateType, Event, FailReason, Failure, Path, Payload, ICE_GRACE_MS};
use meshdrop_signal::protocol::IceServer;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(u32::from(seed)) as u8 ^ seed).collect()
}

fn count(events: &[Event], which: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| which(e)).count()
}

#[test]
fn a_lost_path_is_restarted_and_the_session_kept_with_its_messages_and_transfers() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let bytes = pattern(12 * BLOCK_SIZE as usize, 1);
    let id = w.send_file(n[0], n[1], "f.bin", bytes.clone());
    w.settle();
    w.nodes[n[1]].take_events();
    w.bulk_budget = Some(20);
    let now = w.now;
    w.nodes[n[1]].mesh.accept_file(now, id).unwrap();
    w.settle();
    let sent_before = w.nodes[n[0]].bulk_data_sent;
    let conn = w.conn_between(n[0], n[1]).unwrap();
    w.lose_path(conn, false);
    w.bulk_budget = None;
    // Messages sent while the path is gone wait for it.
    let to_b = pid(&w.nodes[n[0]], &World::id_of("b"));
    let now = w.now;
    w.nodes[n[0]].mesh.send(now, &to_b, &Payload::Text("during the outage".into())).unwrap();
    w.settle();
    assert_eq!(w.nodes[n[0]].ice_restarts, 0, "a short disconnect gets its grace period");
    w.advance(ICE_GRACE_MS + 10);
    assert_eq!(w.nodes[n[0]].ice_restarts, 1, "the offerer (smaller id) restarts ICE");
    assert_eq!(w.nodes[n[1]].ice_restarts, 0);
    w.advance(10_000);
    for node in [n[0], n[1]] {
        let events = w.nodes[node].take_events();
        assert_eq!(count(&events, |e| matches!(e, Event::PeerReconnecting { .. })), 1, "{events:?}");
        assert_eq!(count(&events, |e| matches!(e, Event::PeerReconnected { .. })), 1);
        assert!(left(&events).is_empty(), "no peer-left during a restart");
        assert!(joined(&events).is_empty(), "the same session, not a new one");
        assert!(events.contains(&Event::TransferPaused { id }) && events.contains(&Event::TransferResumed { id }));
        if node == n[1] {
            assert!(events.iter().any(|e| matches!(e, Event::Message { payload: Payload::Text(t), .. } if t == "during the outage")));
            assert!(events.iter().any(|e| matches!(e, Event::TransferDone { id: t, .. } if *t == id)), "the transfer finished");
        }
    }
    assert_eq!(w.nodes[n[1]].delivered.get(&id), Some(&bytes));
    assert_eq!(w.nodes[n[0]].bulk_data_sent - sent_before, bytes.len() as u64 - sent_before, "nothing sent twice: the session went on");
    assert_eq!(w.conn_between(n[0], n[1]), Some(conn), "still the same connection");
}

#[test]
fn a_failed_path_restarts_at_once_and_one_that_never_returns_ends_the_session() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let conn = w.conn_between(n[0], n[1]).unwrap();
    w.unreachable.insert(conn);
    w.lose_path(conn, true);
    assert_eq!(w.nodes[n[0]].ice_restarts, 1, "ICE failed: no grace");
    w.advance(29_000);
    assert!(w.nodes[n[0]].ice_restarts >= 4, "restarts are retried: {}", w.nodes[n[0]].ice_restarts);
    assert!(left(&w.nodes[n[0]].take_events()).is_empty());
    w.advance(1_500);
    let events = w.nodes[n[0]].take_events();
    assert_eq!(left(&events), vec![World::id_of("b")], "given up after reconnectTimeoutMs");
    assert!(events.iter().any(|e| matches!(e, Event::Warning(m) if m.contains("no network path"))));
    // Then the ordinary retry makes a new connection (the test network allows new ones).
    w.advance(20_000);
    assert_eq!(w.nodes[n[0]].peers(), vec![World::id_of("b")]);
}

#[test]
fn the_path_is_reported_when_known_and_when_it_changes() {
    let mut w = World::new();
    let a = w.add("r", "a");
    let b = w.add("r", "b");
    w.settle();
    let events = w.nodes[a].take_events();
    let paths: Vec<_> = events.iter().filter_map(|e| if let Event::PeerPath { path, .. } = e { Some(path.clone()) } else { None }).collect();
    assert_eq!(paths.len(), 1);
    assert!(!paths[0].relayed);
    let conn = w.conn_between(a, b).unwrap();
    let relayed = Path { relayed: true, local: CandidateType::Relay, remote: CandidateType::Srflx, protocol: "tcp".into() };
    w.paths.insert(conn, relayed.clone());
    w.lose_path(conn, true);
    w.advance(1_000);
    let events = w.nodes[a].take_events();
    let paths: Vec<_> = events.iter().filter_map(|e| if let Event::PeerPath { path, .. } = e { Some(path.clone()) } else { None }).collect();
    assert_eq!(paths, vec![relayed.clone()]);
    assert_eq!(w.nodes[a].mesh.path(&pid(&w.nodes[a], &World::id_of("b"))), Some(&relayed));
}

#[test]
fn failures_before_open_say_why() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let conn = w.conn_between(n[0], n[1]).unwrap();
    w.partition(n[0], n[1]);
    w.break_conn(conn);
    w.take_all_events();
    // The retry's attempt fails in ICE, with no TURN server configured.
    w.advance(20_000);
    let attempt = w.pending_conn(n[0], n[1]).expect("a new attempt");
    w.fail_conn(attempt, Failure::Ice { local_candidates: 2, relay_candidates: 0, relay_configured: false });
    let events = w.nodes[n[0]].take_events();
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| if let Event::PeerFailed { reason, message, .. } = e { Some((*reason, message.clone())) } else { None })
        .collect();
    assert!(matches!(failed.as_slice(), [(FailReason::IceFailed, m)] if m.contains("no TURN server configured")), "{events:?}");
    // An attempt that never opens times out, and says so.
    w.advance(40_000);
    let events = w.nodes[n[0]].take_events();
    assert!(events.iter().any(|e| matches!(e, Event::PeerFailed { reason: FailReason::Timeout, .. })), "{events:?}");
}

#[test]
fn ice_servers_from_the_signaling_server_reach_the_driver() {
    let mut w = World::new();
    let turn = IceServer { urls: vec!["turn:203.0.113.1:3478?transport=udp".into()], username: Some("9:x".into()), credential: Some("c".into()) };
    w.ice_servers = vec![turn.clone()];
    let a = w.add("r", "a");
    w.settle();
    assert_eq!(w.nodes[a].ice_servers, vec![turn]);
}
