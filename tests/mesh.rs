//! Mesh scenarios with simulated peers, server and time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{joined, left, pid, World};
use meshdrop::core::{Event, JoinError, Payload, SendError, SignalingState, LEFT_PROBE_MS, MAX_OFFERS_IN_FLIGHT};

fn messages(events: &[Event]) -> Vec<(String, Payload)> {
    events
        .iter()
        .filter_map(|e| if let Event::Message { from, payload } = e { Some((from.as_str().to_owned(), payload.clone())) } else { None })
        .collect()
}

fn signaling_states(events: &[Event]) -> Vec<SignalingState> {
    events.iter().filter_map(|e| if let Event::Signaling { state, .. } = e { Some(*state) } else { None }).collect()
}

fn warnings(events: &[Event]) -> usize {
    events.iter().filter(|e| matches!(e, Event::Warning(_))).count()
}

#[test]
fn two_peers_meet_and_exchange_messages_of_any_size() {
    let mut w = World::new();
    let a = w.add("lobby", "a");
    let b = w.add("lobby", "b");
    w.settle();
    let (ida, idb) = (World::id_of("a"), World::id_of("b"));
    let ea = w.nodes[a].take_events();
    let eb = w.nodes[b].take_events();
    assert!(matches!(&ea[0], Event::Joined { id } if id.as_str() == ida));
    assert_eq!(signaling_states(&ea), vec![SignalingState::Connected]);
    assert_eq!(joined(&ea), vec![idb.clone()]);
    assert_eq!(joined(&eb), vec![ida.clone()]);
    for (events, other) in [(&ea, &idb), (&eb, &ida)] {
        let connecting = events.iter().position(|e| matches!(e, Event::PeerConnecting { id, .. } if id.as_str() == other));
        let open = events.iter().position(|e| matches!(e, Event::PeerJoined { .. }));
        assert!(connecting.unwrap() < open.unwrap(), "connecting is announced before the channel opens");
    }
    assert_eq!(w.nodes[a].mesh.peers(), vec![(pid(&w.nodes[a], &idb), Some("name-b".into()))]);
    assert_eq!(w.nodes[a].open_conns(), 1, "exactly one connection, no glare");

    let big: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i * 31 % 251) as u8).collect();
    let sent = [Payload::Text("hi ✓".into()), Payload::Binary(vec![]), Payload::Binary(big), Payload::Text("x".repeat(300_000))];
    let to_b = pid(&w.nodes[a], &idb);
    let now = w.now;
    for p in &sent {
        w.nodes[a].mesh.send(now, &to_b, p).unwrap();
    }
    w.settle();
    let got = messages(&w.nodes[b].take_events());
    assert_eq!(got.len(), sent.len());
    for ((from, p), s) in got.iter().zip(&sent) {
        assert_eq!(from, &ida);
        assert_eq!(p, s, "delivered whole and in order");
    }
}

#[test]
fn eight_peers_form_a_full_mesh_and_broadcast_reaches_everyone() {
    let mut w = World::new();
    let labels = ["h", "c", "f", "a", "g", "b", "e", "d"];
    for l in labels {
        w.add("room", l);
    }
    w.settle();
    for n in 0..labels.len() {
        assert_eq!(w.nodes[n].peers().len(), labels.len() - 1, "node {n}");
        assert_eq!(w.nodes[n].open_conns(), labels.len() - 1);
        w.nodes[n].take_events();
    }
    let now = w.now;
    assert_eq!(w.nodes[3].mesh.broadcast(now, &Payload::Text("all".into())).unwrap(), 7);
    w.settle();
    for n in (0..labels.len()).filter(|&n| n != 3) {
        assert_eq!(messages(&w.nodes[n].take_events()), vec![(World::id_of("a"), Payload::Text("all".into()))]);
    }
}

#[test]
fn an_attempt_abandoned_because_the_peer_left_is_reported() {
    let (mut w, n) = World::connected("r", &["a"]);
    let a = n[0];
    let c = w.add("r", "c");
    w.partition(a, c);
    w.advance(5_000);
    let events = w.nodes[a].take_events();
    assert!(
        matches!(&events[..], [Event::PeerConnecting { id, name }] if id.as_str() == World::id_of("c") && name.as_deref() == Some("name-c")),
        "{events:?}"
    );
    // c gives up and leaves before any channel opened: a hears that the attempt is over.
    let now = w.now;
    w.nodes[c].mesh.leave(now);
    w.advance(60_000);
    let events = w.nodes[a].take_events();
    assert_eq!(left(&events), vec![World::id_of("c")]);
    assert!(joined(&events).is_empty());
    assert!(!events.iter().any(|e| matches!(e, Event::PeerConnecting { .. })), "not chased after leaving: {events:?}");
}

#[test]
fn rooms_do_not_mix() {
    let mut w = World::new();
    let a = w.add("one", "a");
    let b = w.add("two", "b");
    w.settle();
    assert!(w.nodes[a].peers().is_empty());
    assert!(w.nodes[b].peers().is_empty());
}

#[test]
fn a_leaving_peer_is_reported_once_and_not_chased() {
    let (mut w, n) = World::connected("r", &["a", "b", "c"]);
    let (a, b, c) = (n[0], n[1], n[2]);
    let now = w.now;
    w.nodes[b].mesh.leave(now);
    w.settle();
    assert_eq!(signaling_states(&w.nodes[b].take_events()), vec![SignalingState::Closed]);
    assert!(w.nodes[b].mesh.is_closed());
    for n in [a, c] {
        assert_eq!(left(&w.nodes[n].take_events()), vec![World::id_of("b")]);
    }
    // A minute later nobody has tried to reach b again.
    w.advance(60_000);
    for n in [a, c] {
        let events = w.nodes[n].take_events();
        assert!(joined(&events).is_empty() && left(&events).is_empty(), "{events:?}");
        assert_eq!(w.nodes[n].peers().len(), 1);
    }
    let now = w.now;
    let c_id = pid(&w.nodes[a], &World::id_of("c"));
    assert_eq!(w.nodes[b].mesh.send(now, &c_id, &Payload::Text("x".into())), Err(SendError::Closed));
    assert_eq!(w.nodes[b].mesh.broadcast(now, &Payload::Text("x".into())), Err(SendError::Closed));
}

#[test]
fn channels_survive_the_server_going_away_and_newcomers_meet_everyone_after_restart() {
    let (mut w, n) = World::connected("r", &["a", "b", "c"]);
    let (a, b, c) = (n[0], n[1], n[2]);
    w.server_stop();
    w.advance(30_000); // reconnect attempts fail for a while
    let now = w.now;
    let to_c = pid(&w.nodes[a], &World::id_of("c"));
    w.nodes[a].mesh.send(now, &to_c, &Payload::Text("still here".into())).unwrap();
    w.settle();
    for n in [a, b, c] {
        let events = w.nodes[n].take_events();
        if n == c {
            assert_eq!(messages(&events), vec![(World::id_of("a"), Payload::Text("still here".into()))]);
        }
        assert_eq!(signaling_states(&events), vec![SignalingState::Reconnecting], "node {n}");
        assert!(left(&events).is_empty(), "no peer lost with the server");
    }

    w.server_start();
    w.advance(15_000); // backoff is capped at 10 s (+25 % jitter)
    for n in [a, b, c] {
        assert_eq!(signaling_states(&w.nodes[n].take_events()), vec![SignalingState::Connected], "node {n}");
        assert_eq!(w.nodes[n].open_conns(), 2, "the old connections were kept, none duplicated");
    }
    let d = w.add("r", "d");
    w.settle();
    assert_eq!(w.nodes[d].peers().len(), 3);
    assert_eq!(w.nodes[d].id(), World::id_of("d"));
    assert_eq!(w.nodes[a].id(), World::id_of("a"), "id unchanged across reconnects");
}

#[test]
fn rejoining_after_an_outage_with_no_connection_never_glares() {
    // Both lose their connection while the server is down, then both rejoin: each
    // learns of the other again, and still exactly one connection results.
    let mut w = World::new();
    let a = w.add("r", "a");
    let b = w.add("r", "b");
    w.settle();
    let conn = w.conn_between(a, b).unwrap();
    w.server_stop();
    w.break_conn(conn);
    w.server_start();
    w.advance(20_000);
    assert_eq!(w.nodes[a].open_conns(), 1);
    assert_eq!(w.nodes[b].open_conns(), 1);
    assert!(w.conn_between(a, b).is_some());
    // A stray hello while connected with an offer in flight changes nothing either.
    w.inject_signal(b, &World::id_of("a"), r#"{"kind":"hello"}"#);
    assert_eq!(w.nodes[a].open_conns(), 1);
    assert_eq!(w.nodes[b].open_conns(), 1);
}

#[test]
fn a_reloaded_answerer_is_reconnected_by_its_hello() {
    let mut w = World::new();
    let a = w.add("r", "a");
    let _b = w.add("r", "b");
    w.settle();
    w.nodes[a].take_events();
    // "b" comes back as a fresh mesh with the same secret (same id) before a noticed
    // anything: the server replaces its connection and b says hello.
    let b2 = w.add("r", "b");
    w.settle();
    assert_eq!(w.nodes[b2].peers(), vec![World::id_of("a")]);
    let ea = w.nodes[a].take_events();
    assert_eq!(left(&ea), vec![World::id_of("b")], "old channel reported gone");
    assert_eq!(joined(&ea), vec![World::id_of("b")], "new channel reported");
    let now = w.now;
    let to_b = pid(&w.nodes[a], &World::id_of("b"));
    w.nodes[a].mesh.send(now, &to_b, &Payload::Text("welcome back".into())).unwrap();
    w.settle();
    assert_eq!(messages(&w.nodes[b2].take_events()).len(), 1);
}

#[test]
fn a_broken_connection_is_retried_while_the_peer_is_listed() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let (a, b) = (n[0], n[1]);
    let conn = w.conn_between(a, b).unwrap();
    w.break_conn(conn);
    assert_eq!(left(&w.nodes[a].take_events()), vec![World::id_of("b")]);
    assert_eq!(left(&w.nodes[b].take_events()), vec![World::id_of("a")]);
    w.advance(3_000);
    assert_eq!(joined(&w.nodes[a].take_events()), vec![World::id_of("b")]);
    assert_eq!(joined(&w.nodes[b].take_events()), vec![World::id_of("a")]);
    assert_ne!(w.conn_between(a, b), Some(conn));
}

#[test]
fn join_failures_are_reported() {
    let mut w = World::new();
    w.server_stop();
    let a = w.add("r", "a");
    w.settle();
    let ea = w.nodes[a].take_events();
    assert!(ea.contains(&Event::JoinFailed(JoinError::Unreachable)), "{ea:?}");
    assert!(w.nodes[a].mesh.is_closed());
    w.advance(60_000);
    assert!(w.nodes[a].take_events().is_empty(), "no retries after a failed first join");

    let mut w = World::with_room_limit(1);
    w.add("r", "a");
    let b = w.add("r", "b");
    w.settle();
    let eb = w.nodes[b].take_events();
    assert!(eb.iter().any(|e| matches!(e, Event::JoinFailed(JoinError::Refused { code, .. }) if code == "room-full")), "{eb:?}");
}

#[test]
fn sending_to_strangers_or_too_much_is_an_error() {
    let mut w = World::new();
    let a = w.add("r", "a");
    let b = w.add("r", "b");
    w.settle();
    let to_b = pid(&w.nodes[a], &World::id_of("b"));
    let now = w.now;
    let too_big = Payload::Binary(vec![0; 16 * 1024 * 1024 + 1]);
    assert!(matches!(w.nodes[a].mesh.send(now, &to_b, &too_big), Err(SendError::TooLarge { .. })));
    w.nodes[b].mesh.leave(now);
    w.settle();
    assert_eq!(w.nodes[a].mesh.send(now, &to_b, &Payload::Text("?".into())), Err(SendError::NotConnected(to_b.clone())));
}

#[test]
fn hostile_signals_and_frames_change_nothing() {
    let (mut w, n) = World::connected("r", &["a", "b", "m"]); // m is the hostile one
    let (a, b, m) = (n[0], n[1], n[2]);
    let ida = World::id_of("a");
    for garbage in [
        r#""just a string""#,
        r#"{"kind":"offer"}"#,
        r#"{"kind":"answer","conn":"0000000000000001","sdp":"v=0"}"#,
        r#"{"kind":"candidate","conn":"0000000000000001","candidate":{"candidate":"x"}}"#,
        r#"{"kind":"candidate","conn":"nothex!!nothex!!","candidate":{}}"#,
        r#"{"kind":"warp","conn":"0000000000000001"}"#,
        r#"[1,2,3]"#,
    ] {
        w.inject_signal(m, &ida, garbage);
    }
    for frame in [vec![], vec![0xff, 1, 2], vec![0x14, 1], vec![0x13, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], vec![0x10, 0xc3]] {
        w.inject_frame(m, a, frame);
    }
    let ea = w.nodes[a].take_events();
    assert!(warnings(&ea) >= 6, "each is reported: {ea:?}");
    assert!(messages(&ea).is_empty(), "nothing bogus delivered");
    assert!(left(&ea).is_empty(), "nobody disconnected");
    // Everything still works.
    let now = w.now;
    let to_a = pid(&w.nodes[b], &ida);
    w.nodes[b].mesh.send(now, &to_a, &Payload::Text("ok".into())).unwrap();
    let to_a = pid(&w.nodes[m], &ida);
    w.nodes[m].mesh.send(now, &to_a, &Payload::Text("me too".into())).unwrap();
    w.settle();
    assert_eq!(messages(&w.nodes[a].take_events()).len(), 2);
}

#[test]
fn thirty_two_peers_connect_fully() {
    let mut w = World::new();
    for i in 0..32 {
        w.add("big", &format!("p{:02}", (i * 17) % 32));
    }
    w.settle();
    for n in 0..32 {
        assert_eq!(w.nodes[n].peers().len(), 31);
    }
}

#[test]
fn a_peer_the_server_says_left_is_kept_while_it_answers() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let (a, b) = (n[0], n[1]);
    let conn = w.conn_between(a, b).expect("connected");
    w.nodes[a].take_events();
    w.drop_socket(b); // b lost the server, not a
    w.advance(LEFT_PROBE_MS * 2);
    assert!(left(&w.nodes[a].take_events()).is_empty(), "b answered the probe");
    assert_eq!(w.conn_between(a, b), Some(conn), "the same channel, never closed");
}

#[test]
fn a_silent_peer_the_server_says_left_is_dropped_after_the_probe() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let (a, b) = (n[0], n[1]);
    w.nodes[a].take_events();
    // Its tab is gone: nothing comes from it on the channel, and it never joins again
    // (a peer that rejoins is present: see network.rs).
    w.nodes[b].muted = true;
    w.server_blackholed = true;
    w.drop_socket(b);
    w.advance(LEFT_PROBE_MS - 1);
    assert!(left(&w.nodes[a].take_events()).is_empty());
    w.advance(1);
    assert_eq!(left(&w.nodes[a].take_events()), vec![World::id_of("b")]);
}

#[test]
fn offers_go_out_a_few_at_a_time_and_the_rest_follow() {
    // "a" sorts first, so it offers to all the others, two more than may be in flight;
    // none of its connections can ever open, so each attempt times out in turn.
    let mut w = World::new();
    let count = MAX_OFFERS_IN_FLIGHT + 2;
    let labels: Vec<String> = (0..count).map(|i| format!("{}", char::from(b'a' + i as u8))).collect();
    let nodes: Vec<usize> = labels.iter().map(|l| w.add("r", l)).collect();
    for &other in &nodes[1..] {
        w.partition(nodes[0], other);
    }
    w.settle();
    assert_eq!(w.unopened(nodes[0]), MAX_OFFERS_IN_FLIGHT, "only a few offers at once");
    for &n in &nodes[1..] {
        assert_eq!(w.nodes[n].peers().len(), count - 2, "the others meshed among themselves");
    }
    // The first attempts time out; the waiting peers get their turn.
    w.advance(60_000);
    let tried: std::collections::HashSet<String> = w.nodes[nodes[0]]
        .take_events()
        .iter()
        .filter_map(|e| match e {
            Event::Warning(m) if m.contains("timed out") => m.split_whitespace().nth(2).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(tried.len(), count - 1, "every peer was tried in the end: {tried:?}");
    assert!(w.unopened(nodes[0]) <= MAX_OFFERS_IN_FLIGHT);
}

/// Two tabs that hold the same identity (a copied browser profile): the server hands
/// the id to the newer connection and closes the older one with a reason. The older
/// one must stop there and say why — reconnecting would take the id back, and the two
/// would kick each other out forever.
#[test]
fn a_tab_whose_identity_is_taken_over_stops_signaling_and_says_why() {
    let mut w = World::new();
    let older = w.add("r", "a");
    let other = w.add("r", "b");
    w.settle();
    let newer = w.add("r", "a");
    w.advance(120_000);
    let id = World::id_of("a");
    let welcome = format!(r#"{{"type":"welcome","id":"{id}""#);
    let welcomes = w.server_log.iter().filter(|(_, f)| f.starts_with(&welcome)).count();
    assert_eq!(welcomes, 2, "the two tabs took the id from each other {welcomes} times");
    let events = w.nodes[older].take_events();
    let closed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Signaling { state: SignalingState::Closed, reason } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(matches!(closed.as_slice(), [Some(reason)] if reason.contains("replaced") || reason.contains("another connection")), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, Event::Warning(m) if m.contains("identity"))));
    assert_eq!(w.nodes[older].mesh.signaling_state(), SignalingState::Closed);
    assert_eq!(w.nodes[newer].mesh.signaling_state(), SignalingState::Connected);
    assert!(w.nodes[other].peers().contains(&id), "the room still has the id, held by the newer tab");
}

#[test]
fn a_burst_of_small_messages_goes_in_batches_and_arrives_whole_and_in_order() {
    let (mut w, n) = World::connected("r", &["a", "b", "c"]);
    let (a, b, c) = (n[0], n[1], n[2]);
    let ida = World::id_of("a");
    let to_b = pid(&w.nodes[a], &World::id_of("b"));
    let sent: Vec<Payload> =
        (0..200).map(|i| if i % 2 == 0 { Payload::Text(format!("{i:04}").repeat(256)) } else { Payload::Binary(vec![i as u8; 1000]) }).collect();
    let before = w.nodes[a].batches_sent;
    let now = w.now;
    for p in &sent {
        w.nodes[a].mesh.send(now, &to_b, p).unwrap();
    }
    assert_eq!(w.nodes[a].mesh.broadcast(now, &Payload::Text("to all".into())).unwrap(), 2);
    w.settle();
    let batches = w.nodes[a].batches_sent - before;
    // ~200 KiB in batches of at most 64 KiB: a few sends, not one per message.
    assert!((3..=8).contains(&batches), "{batches} batches");
    let got = messages(&w.nodes[b].take_events());
    let mut expected: Vec<(String, Payload)> = sent.into_iter().map(|p| (ida.clone(), p)).collect();
    expected.push((ida.clone(), Payload::Text("to all".into())));
    assert_eq!(got, expected, "every message whole and in order");
    assert_eq!(messages(&w.nodes[c].take_events()), vec![(ida, Payload::Text("to all".into()))]);
}

#[test]
fn a_peer_that_does_not_say_it_takes_batches_gets_none() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let (a, b) = (n[0], n[1]);
    // b says it takes no batches, as a peer that never sends its features does.
    w.inject_frame(b, a, vec![0x18, 13, 0]);
    let to_b = pid(&w.nodes[a], &World::id_of("b"));
    let before = w.nodes[a].batches_sent;
    let now = w.now;
    for i in 0..50u8 {
        w.nodes[a].mesh.send(now, &to_b, &Payload::Binary(vec![i; 100])).unwrap();
    }
    w.settle();
    assert_eq!(w.nodes[a].batches_sent, before, "every frame sent alone");
    assert_eq!(messages(&w.nodes[b].take_events()).len(), 50);
}

/// `[0x1a]([len u32][frame])…`: a batch as the wire carries it, built by hand so that it
/// may be malformed.
fn batch_of(frames: &[&[u8]]) -> Vec<u8> {
    let mut batch = vec![0x1a];
    for f in frames {
        batch.extend_from_slice(&(f.len() as u32).to_be_bytes());
        batch.extend_from_slice(f);
    }
    batch
}

#[test]
fn a_malformed_batch_delivers_nothing_and_a_good_one_everything() {
    let (mut w, n) = World::connected("r", &["a", "m"]); // m is the hostile one
    let (a, m) = (n[0], n[1]);
    let idm = World::id_of("m");
    let (x, y) = (&[0x10, b'x'][..], &[0x10, b'y'][..]);
    let nested = batch_of(&[x, &batch_of(&[x, y])]);
    let mut past_end = batch_of(&[x, y]);
    past_end[1..5].copy_from_slice(&100u32.to_be_bytes());
    let mut cut = batch_of(&[x, y]);
    cut.pop();
    for bad in [nested, past_end, cut, batch_of(&[x]), batch_of(&[x, &[]]), vec![0x1a]] {
        w.inject_frame(m, a, bad);
    }
    let events = w.nodes[a].take_events();
    assert_eq!(warnings(&events), 6, "each is reported: {events:?}");
    assert!(messages(&events).is_empty(), "nothing of a bad batch is delivered");
    assert!(left(&events).is_empty(), "nobody disconnected");
    w.inject_frame(m, a, batch_of(&[x, y, &[0x11, 1, 2, 3]]));
    assert_eq!(
        messages(&w.nodes[a].take_events()),
        vec![(idm.clone(), Payload::Text("x".into())), (idm.clone(), Payload::Text("y".into())), (idm, Payload::Binary(vec![1, 2, 3]))]
    );
}

#[test]
fn a_batch_in_place_of_the_binding_is_closed_at_once_as_an_impostors() {
    // No peer may batch before it has the other's `features`, which follow the
    // binding: a batch as the first frame, even one that holds a binding, is refused
    // like any other first frame that is not a binding.
    let x: &[u8] = &[0x10, b'x'];
    type Rewrite = Box<dyn Fn(Vec<u8>) -> Vec<u8>>;
    let cases: [(&str, Rewrite); 3] = [
        ("the binding and a message", Box::new(move |binding| batch_of(&[&binding, x]))),
        ("two bindings", Box::new(|binding| batch_of(&[&binding, &binding]))),
        ("a batch cut short", Box::new(|binding| batch_of(&[&binding, x])[..binding.len() + 6].to_vec())),
    ];
    for (case, rewrite) in cases {
        let mut w = World::new();
        let mut first = true;
        // Node 1 (m) is the hostile one: its first frame goes out rewritten.
        w.hostile_channel = Some(Box::new(move |n, frame| {
            if n != 1 || !std::mem::take(&mut first) {
                return frame;
            }
            rewrite(frame)
        }));
        let a = w.add("r", "a");
        w.add("r", "m");
        w.settle();
        let events = w.nodes[a].take_events();
        let impostor = events
            .iter()
            .any(|e| matches!(e, Event::PeerFailed { reason: meshdrop::core::FailReason::Impostor, id, .. } if id.as_str() == World::id_of("m")));
        assert!(impostor, "{case}: closed as an impostor's: {events:?}");
        assert!(messages(&events).is_empty(), "{case}: nothing delivered");
        assert!(!events.iter().any(|e| matches!(e, Event::PeerJoined { .. })), "{case}: no session opened: {events:?}");
    }
}
