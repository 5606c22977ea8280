//! When the network moves under a connection: ICE restarts that keep the session, the
//! path each connection takes, and why a connection could not be made.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{joined, left, pid, World};
use meshdrop::core::transfer::blocks::BLOCK_SIZE;
use meshdrop::core::{
    CandidateType, Event, FailReason, Failure, Gathered, JoinError, Path, Payload, SignalingState, ICE_GRACE_MS, ICE_RESTART_RETRY_MS, LEFT_PROBE_MS,
    PONG_TIMEOUT_MS, SIGNALING_CONNECT_MS, SIGNALING_IDLE_MS,
};
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

/// A NAT that changes its public address takes the signaling connection down with the
/// path, silently: the ICE restart needs signaling, so the client must notice and join
/// again, and the other side must keep the session through the server's leave and join.
fn network_change_with_a_silent_signaling_socket(moving: &str) {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let mover = if moving == "a" { n[0] } else { n[1] };
    let other = if moving == "a" { n[1] } else { n[0] };
    let bytes = pattern(12 * BLOCK_SIZE as usize, 2);
    let id = w.send_file(n[0], n[1], "f.bin", bytes.clone());
    w.settle();
    w.bulk_budget = Some(20);
    let now = w.now;
    w.nodes[n[1]].mesh.accept_file(now, id).unwrap();
    w.settle();
    w.take_all_events();
    w.silence_socket(mover);
    let conn = w.conn_between(n[0], n[1]).unwrap();
    // The new address takes a while to work (restarts fail until then).
    w.unreachable.insert(conn);
    w.lose_path(conn, false);
    w.bulk_budget = None;
    w.advance(PONG_TIMEOUT_MS + 1_000);
    let mut events = w.nodes[mover].take_events();
    assert!(
        events.iter().any(|e| matches!(e, Event::Warning(m) if m.contains("did not answer"))),
        "the dead socket is noticed within the pong timeout: {events:?}"
    );
    assert!(events.contains(&Event::Signaling { state: SignalingState::Connected, reason: None }), "and joined again: {events:?}");
    w.advance(ICE_GRACE_MS + 5_000);
    w.unreachable.remove(&conn);
    w.advance(ICE_RESTART_RETRY_MS + 1_000);
    for node in [mover, other] {
        if node == mover {
            events.extend(w.nodes[node].take_events());
        } else {
            events = w.nodes[node].take_events();
        }
        assert!(left(&events).is_empty(), "{node}: no peer-left: {events:?}");
        assert!(events.iter().any(|e| matches!(e, Event::PeerReconnected { .. })), "{node}: the path came back: {events:?}");
    }
    w.advance(5_000);
    assert_eq!(w.nodes[n[1]].delivered.get(&id), Some(&bytes), "the transfer finished, whole");
    assert_eq!(w.conn_between(n[0], n[1]), Some(conn), "the same connection throughout");
}

#[test]
fn a_network_change_that_kills_signaling_silently_is_survived_by_the_offerer() {
    network_change_with_a_silent_signaling_socket("a");
}

#[test]
fn a_network_change_that_kills_signaling_silently_is_survived_by_the_answerer() {
    network_change_with_a_silent_signaling_socket("b");
}

#[test]
fn the_answerer_asks_the_offerer_to_restart_when_only_it_lost_the_path() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    w.take_all_events();
    let conn = w.conn_between(n[0], n[1]).unwrap();
    w.lose_path_seen_by(n[1], conn);
    w.advance(ICE_GRACE_MS + 10);
    assert_eq!(w.nodes[n[0]].ice_restarts, 1, "the offerer restarted on request");
    let events = w.nodes[n[1]].take_events();
    assert!(events.iter().any(|e| matches!(e, Event::PeerReconnected { .. })), "{events:?}");
    assert!(left(&events).is_empty());
    assert!(w.nodes[n[0]].take_events().iter().all(|e| !matches!(e, Event::PeerLeft { .. } | Event::PeerReconnecting { .. })));
}

/// The offerer's network changes: its ICE restart offer goes out on a signaling
/// connection that died unnoticed, and its own end of the path comes back by itself (ICE
/// followed its new address) while the answerer's stays down. The lost offer is made
/// again once the offerer is back on signaling, long before the answerer gives up.
#[test]
fn a_restart_offer_lost_on_a_dead_signaling_socket_is_made_again() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    w.take_all_events();
    let conn = w.conn_between(n[0], n[1]).unwrap();
    w.silence_socket(n[0]);
    w.lose_path(conn, true);
    assert_eq!(w.nodes[n[0]].ice_restarts, 1, "the offerer restarted at once; its offer is lost");
    w.regain_path_seen_by(n[0], conn);
    w.advance(PONG_TIMEOUT_MS + 1_000);
    assert!(w.nodes[n[0]].take_events().contains(&Event::Signaling { state: SignalingState::Connected, reason: None }));
    w.advance(1_000);
    assert_eq!(w.nodes[n[0]].ice_restarts, 2, "offered again on the new signaling connection");
    let events = w.nodes[n[1]].take_events();
    assert!(events.iter().any(|e| matches!(e, Event::PeerReconnected { .. })), "the answerer's path is back: {events:?}");
    assert!(left(&events).is_empty(), "{events:?}");
    assert!(left(&w.nodes[n[0]].take_events()).is_empty());
    assert_eq!(w.conn_between(n[0], n[1]), Some(conn), "the same connection throughout");
}

/// A restart offer lost on the way (signaling itself stays up): the answerer, still
/// without a path, asks again, and the offerer, whose answer is overdue, offers again.
#[test]
fn an_offerer_whose_restart_answer_is_overdue_offers_again_when_asked() {
    let mut w = World::new();
    let dropped = std::rc::Rc::new(std::cell::Cell::new(0));
    let count = dropped.clone();
    w.hostile_server = Some(common::HostileServer {
        from_node: Box::new(|_, frame| frame),
        // The first restart offer for b never arrives.
        to_node: Box::new(move |n, frame| {
            if n == 1 && frame.contains("v=0 restart") && count.get() == 0 {
                count.set(1);
                return r#"{"type":"pong"}"#.into();
            }
            frame
        }),
    });
    let n = [w.add("r", "a"), w.add("r", "b")];
    w.settle();
    w.take_all_events();
    let conn = w.conn_between(n[0], n[1]).unwrap();
    w.lose_path_seen_by(n[1], conn);
    w.advance(ICE_GRACE_MS + 10);
    assert_eq!((w.nodes[n[0]].ice_restarts, dropped.get()), (1, 1), "restarted on request; that offer was lost");
    w.advance(ICE_RESTART_RETRY_MS);
    assert_eq!(w.nodes[n[0]].ice_restarts, 2, "asked again, with its answer overdue: offered again");
    let events = w.nodes[n[1]].take_events();
    assert!(events.iter().any(|e| matches!(e, Event::PeerReconnected { .. })), "{events:?}");
    assert!(left(&events).is_empty(), "{events:?}");
}

#[test]
fn a_peer_whose_signaling_comes_back_before_its_path_keeps_its_session() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    w.take_all_events();
    // a's network changes: its socket goes silent and a's end of the path goes down; b
    // has not noticed yet, and the new path takes a while to work.
    let conn = w.conn_between(n[0], n[1]).unwrap();
    w.silence_socket(n[0]);
    w.unreachable.insert(conn);
    w.lose_path_seen_by(n[0], conn);
    // a rejoins within the pong timeout; the server tells b "left", then "joined".
    w.advance(PONG_TIMEOUT_MS + 1_000);
    assert!(w.nodes[n[0]].take_events().contains(&Event::Signaling { state: SignalingState::Connected, reason: None }));
    // Longer than a left peer's probe: b must not give up on a peer that is back.
    w.advance(LEFT_PROBE_MS + 3_000);
    w.unreachable.remove(&conn);
    w.advance(ICE_RESTART_RETRY_MS + 1_000);
    for node in [n[0], n[1]] {
        let events = w.nodes[node].take_events();
        assert!(left(&events).is_empty(), "{node}: no peer-left: {events:?}");
    }
    assert_eq!(w.conn_between(n[0], n[1]), Some(conn), "the same connection throughout");
    assert_eq!(w.nodes[n[1]].peers(), vec![World::id_of("a")]);
}

#[test]
fn a_quiet_signaling_link_is_pinged_and_a_dead_one_replaced() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    w.take_all_events();
    // Alive: pinged when quiet, and the pong keeps it.
    w.advance(3 * SIGNALING_IDLE_MS);
    assert!(w.nodes[n[0]].take_events().is_empty());
    // Dead: noticed within one idle period and the pong timeout, and joined again with
    // the same id; the peers stay connected throughout.
    w.silence_socket(n[0]);
    w.advance(SIGNALING_IDLE_MS + PONG_TIMEOUT_MS + 1_000);
    let events = w.nodes[n[0]].take_events();
    assert!(events.contains(&Event::Signaling { state: SignalingState::Reconnecting, reason: None }), "{events:?}");
    assert!(events.contains(&Event::Signaling { state: SignalingState::Connected, reason: None }), "{events:?}");
    assert!(left(&events).is_empty());
    assert!(left(&w.nodes[n[1]].take_events()).is_empty(), "the rejoin does not drop an open connection");
    assert_eq!(w.nodes[n[0]].peers(), vec![World::id_of("b")]);
}

#[test]
fn a_signaling_connect_that_hangs_is_given_up_in_time() {
    // The first join: fails, saying the server is unreachable.
    let mut w = World::new();
    w.server_blackholed = true;
    let a = w.add("r", "a");
    w.advance(SIGNALING_CONNECT_MS - 100);
    assert!(w.nodes[a].take_events().is_empty(), "still trying");
    w.advance(200);
    assert!(w.nodes[a].take_events().contains(&Event::JoinFailed(JoinError::Unreachable)));
    // A rejoin: tried again until the server answers.
    let (mut w, n) = World::connected("r", &["a", "b"]);
    w.take_all_events();
    w.server_blackholed = true;
    w.drop_socket(n[0]);
    w.advance(3 * SIGNALING_CONNECT_MS);
    let events = w.nodes[n[0]].take_events();
    assert!(events.iter().filter(|e| matches!(e, Event::Warning(m) if m.contains("did not welcome us"))).count() >= 2, "{events:?}");
    w.server_blackholed = false;
    w.advance(SIGNALING_CONNECT_MS + 10_000);
    assert!(w.nodes[n[0]].take_events().contains(&Event::Signaling { state: SignalingState::Connected, reason: None }));
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
    w.fail_conn(attempt, Failure::Ice(Gathered { local: 2, relay: 0, relay_configured: false }));
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
    // One whose gathering got nothing from a configured TURN server is ICE failing, and
    // the words point at the credentials — before the browser itself gives up.
    w.advance(20_000);
    let attempt = w.pending_conn(n[0], n[1]).expect("another attempt");
    w.gathered(n[0], attempt, Gathered { local: 3, relay: 0, relay_configured: true });
    w.nodes[n[0]].take_events();
    w.advance(20_000);
    let events = w.nodes[n[0]].take_events();
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| if let Event::PeerFailed { reason, message, .. } = e { Some((*reason, message.clone())) } else { None })
        .collect();
    assert!(matches!(failed.first(), Some((FailReason::IceFailed, m)) if m.contains("credentials")), "{failed:?}");
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

/// The `SignalingOp::Open` outputs pending, by server index.
fn opens(mesh: &mut meshdrop::core::Mesh) -> Vec<usize> {
    let mut servers = Vec::new();
    while let Some(output) = mesh.poll_output() {
        if let meshdrop::core::Output::Signaling(meshdrop::core::SignalingOp::Open { server }) = output {
            servers.push(server);
        }
    }
    servers
}

fn welcome(id: &str) -> String {
    format!(r#"{{"type":"welcome","id":"{id}","peers":[]}}"#)
}

#[test]
fn a_first_join_tries_every_signaling_server_before_it_fails() {
    use meshdrop::core::{Input, Mesh, MeshConfig, Millis};
    let mut config = MeshConfig::new("r", None, "s".repeat(40));
    config.signaling_servers = 3;
    let mut mesh = Mesh::new(config, 7, Millis(0));
    assert_eq!(opens(&mut mesh), vec![0]);
    mesh.handle(Millis(1), Input::SignalingClosed { close: None });
    assert_eq!(opens(&mut mesh), vec![1], "the next server at once");
    // One that accepts the socket and never welcomes counts as failed too.
    mesh.handle(Millis(2), Input::SignalingOpened);
    mesh.handle(Millis(2 + SIGNALING_CONNECT_MS), Input::Timeout);
    assert_eq!(opens(&mut mesh), vec![2]);
    mesh.handle(Millis(3 + SIGNALING_CONNECT_MS), Input::SignalingClosed { close: None });
    let mut failed = None;
    while let Some(output) = mesh.poll_output() {
        if let meshdrop::core::Output::Event(Event::JoinFailed(err)) = output {
            failed = Some(err);
        }
    }
    assert_eq!(failed, Some(JoinError::Unreachable), "all three failed");
}

#[test]
fn a_draining_server_sends_its_peers_to_the_next_one_at_once_with_the_same_id() {
    use meshdrop::core::{Input, Mesh, MeshConfig, Millis};
    let mut config = MeshConfig::new("r", None, "s".repeat(40));
    config.signaling_servers = 2;
    let mut mesh = Mesh::new(config, 7, Millis(0));
    assert_eq!(opens(&mut mesh), vec![0]);
    mesh.handle(Millis(1), Input::SignalingOpened);
    mesh.handle(Millis(2), Input::SignalingFrame(welcome("me").into()));
    assert_eq!(mesh.signaling_state(), SignalingState::Connected);
    // 1012: the instance drains; back at once, to the other one.
    mesh.handle(Millis(1000), Input::SignalingClosed { close: Some((1012, "server restarting: connect again".into())) });
    assert_eq!(mesh.poll_timeout(), Some(Millis(1000)), "no backoff");
    mesh.handle(Millis(1000), Input::Timeout);
    assert_eq!(opens(&mut mesh), vec![1]);
    mesh.handle(Millis(1001), Input::SignalingOpened);
    mesh.handle(Millis(1002), Input::SignalingFrame(welcome("me").into()));
    assert_eq!(mesh.signaling_state(), SignalingState::Connected);
    assert_eq!(mesh.id().map(|id| id.as_str().to_owned()), Some("me".to_owned()));
    // A server that vanished (no close frame): after a backoff, the next one again.
    mesh.handle(Millis(5000), Input::SignalingClosed { close: None });
    let due = mesh.poll_timeout().unwrap();
    assert!(due > Millis(5000), "backs off when nobody asked it to come back");
    mesh.handle(due, Input::Timeout);
    assert_eq!(opens(&mut mesh), vec![0]);
}
