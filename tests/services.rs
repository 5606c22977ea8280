//! Every peer is a server: queries over the mesh, requests to handled methods, and
//! downloads from several holders at once, between 3–10 simulated peers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{pid, World};
use meshdrop::core::discovery::MAX_ANSWER_HITS;
use meshdrop::core::request::MAX_INBOUND_PER_PEER;
use meshdrop::core::transfer::blocks::BLOCK_SIZE;
use meshdrop::core::transfer::{MAX_SERVES_PER_PEER, STALLED_HOLDER_MS};
use meshdrop::core::{Event, Hit, Match, Payload, PeerId, QueryId, RequestError, RequestId, SendError, ShareId, TransferError, TransferId};

const B: usize = BLOCK_SIZE as usize;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(u32::from(seed)) as u8 ^ seed).collect()
}

fn world(n: usize) -> World {
    let labels: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let (w, _) = World::connected("room", &refs);
    w
}

fn find_done(events: &[Event], query: QueryId) -> Option<Vec<Hit>> {
    events.iter().find_map(|e| match e {
        Event::FindDone { id, hits } if *id == query => Some(hits.clone()),
        _ => None,
    })
}

fn find(w: &mut World, n: usize, text: &str, how: Match) -> Vec<Hit> {
    let now = w.now;
    let query = w.nodes[n].mesh.find(now, text, how, 2_000);
    w.settle();
    find_done(&w.nodes[n].take_events(), query).expect("every peer answered, so the query ended without waiting")
}

fn response(events: &[Event], request: RequestId) -> Option<Result<Payload, RequestError>> {
    events.iter().find_map(|e| match e {
        Event::Response { id, result } if *id == request => Some(result.clone()),
        _ => None,
    })
}

fn requests(events: &[Event]) -> Vec<(PeerId, u64, String, Payload)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Request { from, id, method, payload } => Some((from.clone(), *id, method.clone(), payload.clone())),
            _ => None,
        })
        .collect()
}

fn outcome(events: &[Event], transfer: TransferId) -> Option<Result<[u8; 32], TransferError>> {
    events.iter().find_map(|e| match e {
        Event::TransferDone { id, hash } if *id == transfer => Some(Ok(*hash)),
        Event::TransferFailed { id, error } if *id == transfer => Some(Err(error.clone())),
        _ => None,
    })
}

/// The last per-holder byte counts reported for a download.
fn served(events: &[Event], transfer: TransferId) -> Vec<(String, u64)> {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::TransferSources { id, sources } if *id == transfer => Some(sources.iter().map(|(p, b)| (p.as_str().to_owned(), *b)).collect()),
            _ => None,
        })
        .unwrap_or_default()
}

fn holders(hits: &[Hit]) -> Vec<(PeerId, ShareId)> {
    hits.iter().map(|h| (h.peer.clone(), h.id)).collect()
}

fn download(w: &mut World, n: usize, hits: &[Hit]) -> TransferId {
    let now = w.now;
    let first = &hits[0];
    w.nodes[n].mesh.download(now, first.meta.clone(), first.hash, &holders(hits)).expect("download")
}

// -- discovery -----------------------------------------------------------------------

#[test]
fn find_lists_every_holder_and_matches_exactly_or_by_substring() {
    let mut w = world(5);
    let image = pattern(3 * B + 5, 1);
    let a = w.share(1, "image.png", image.clone());
    let b = w.share(3, "image.png", image.clone());
    w.share(4, "image.png", pattern(100, 2)); // same name, other bytes
    w.share(2, "other.txt", pattern(10, 3));
    w.share(2, "image.png.bak", pattern(10, 4));

    let hits = find(&mut w, 0, "image.png", Match::Exact);
    let found: Vec<_> = hits.iter().map(|h| (h.peer.as_str().to_owned(), h.meta.name.clone(), h.meta.size)).collect();
    assert_eq!(
        found,
        vec![
            (World::id_of("p1"), "image.png".to_owned(), image.len() as u64),
            (World::id_of("p3"), "image.png".to_owned(), image.len() as u64),
            (World::id_of("p4"), "image.png".to_owned(), 100),
        ]
    );
    assert_eq!(hits[0].id, a.id);
    assert_eq!(hits[1].id, b.id);
    assert_eq!(hits[0].hash, hits[1].hash, "the same bytes have the same content hash");
    assert_ne!(hits[0].hash, hits[2].hash);

    let hits = find(&mut w, 0, "IMAGE", Match::Substring);
    assert_eq!(hits.len(), 4, "substring ignores case and finds image.png.bak too");
    assert!(find(&mut w, 0, "missing.png", Match::Exact).is_empty());
    // The holder's own files are not asked for.
    assert_eq!(find(&mut w, 1, "image.png", Match::Exact).len(), 2);
}

#[test]
fn find_resolves_at_the_timeout_when_a_peer_never_answers() {
    let mut w = world(4);
    w.share(1, "a.bin", pattern(10, 1));
    w.nodes[2].muted = true;
    let now = w.now;
    let query = w.nodes[0].mesh.find(now, "a.bin", Match::Exact, 2_000);
    w.settle();
    assert!(find_done(&w.nodes[0].take_events(), query).is_none(), "still waiting for the muted peer");
    w.advance(1_999);
    assert!(find_done(&w.nodes[0].take_events(), query).is_none());
    w.advance(1);
    let hits = find_done(&w.nodes[0].take_events(), query).expect("ended at the timeout");
    assert_eq!(hits.len(), 1, "with the answers that did come");
}

#[test]
fn find_ends_early_when_the_silent_peer_leaves() {
    let mut w = world(3);
    w.nodes[2].muted = true;
    let now = w.now;
    let query = w.nodes[0].mesh.find(now, "x", Match::Exact, 60_000);
    w.settle();
    assert!(find_done(&w.nodes[0].take_events(), query).is_none());
    let conn = w.conn_between(0, 2).expect("connected");
    w.break_conn(conn);
    assert_eq!(find_done(&w.nodes[0].take_events(), query), Some(vec![]));
}

#[test]
fn a_repeated_query_is_answered_once_and_answers_are_capped() {
    let mut w = world(3);
    for i in 0..MAX_ANSWER_HITS + 20 {
        w.share(1, &format!("photo-{i:03}.jpg"), pattern(1, i as u8));
    }
    let hits = find(&mut w, 0, "photo", Match::Substring);
    assert_eq!(hits.len(), MAX_ANSWER_HITS);
    assert_eq!(hits[0].meta.name, "photo-000.jpg", "the first names in order");

    // The same query id twice from a peer: one answer. Hand-built: [0x18][1][id][0][len][text].
    let mut query = vec![0x18, 1];
    query.extend_from_slice(&77u64.to_be_bytes());
    query.push(0);
    query.extend_from_slice(&5u16.to_be_bytes());
    query.extend_from_slice(b"a.bin");
    w.nodes[1].service_sent.clear();
    w.inject_frame(0, 1, query.clone());
    w.inject_frame(0, 1, query);
    assert_eq!(w.nodes[1].service_sent, vec![2], "exactly one answer (type 2)");
}

#[test]
fn an_answer_nobody_asked_for_is_ignored() {
    let mut w = world(3);
    let now = w.now;
    let query = w.nodes[0].mesh.find(now, "x", Match::Exact, 2_000);
    // A forged answer for another id and a second answer from a peer are dropped.
    let mut answer = vec![0x18, 2];
    answer.extend_from_slice(&12345u64.to_be_bytes());
    answer.extend_from_slice(&0u16.to_be_bytes());
    w.inject_frame(1, 0, answer);
    let hits = find_done(&w.nodes[0].take_events(), query).expect("real answers ended it");
    assert!(hits.is_empty());
    // Garbage service messages are warnings, not crashes.
    w.inject_frame(1, 0, vec![0x18, 99, 1, 2, 3]);
    w.inject_frame(1, 0, vec![0x18]);
    let warnings = w.nodes[0].take_events().into_iter().filter(|e| matches!(e, Event::Warning(m) if m.contains("bad service message"))).count();
    assert_eq!(warnings, 2);
}

// -- requests ------------------------------------------------------------------------

fn request(w: &mut World, from: usize, to: usize, method: &str, payload: Payload, timeout_ms: u64) -> RequestId {
    let peer = pid(&w.nodes[from], &w.nodes[to].id());
    let now = w.now;
    let id = w.nodes[from].mesh.request(now, &peer, method, payload, timeout_ms).expect("request");
    w.settle();
    id
}

#[test]
fn a_request_reaches_the_handler_and_its_reply_comes_back() {
    let mut w = world(3);
    w.nodes[1].mesh.serve_method("print");
    let text = Payload::Text(r#"{"text":"hello"}"#.into());
    let id = request(&mut w, 0, 1, "print", text.clone(), 5_000);
    let calls = requests(&w.nodes[1].take_events());
    assert_eq!(calls.len(), 1);
    let (from, rid, method, payload) = calls[0].clone();
    assert_eq!((from.as_str(), method.as_str(), payload), (World::id_of("p0").as_str(), "print", text));
    assert!(response(&w.nodes[0].take_events(), id).is_none(), "no reply before the handler answers");
    let now = w.now;
    w.nodes[1].mesh.respond(now, &from, rid, Ok(Payload::Binary(vec![1, 2, 3])));
    w.settle();
    assert_eq!(response(&w.nodes[0].take_events(), id), Some(Ok(Payload::Binary(vec![1, 2, 3]))));
    // A second respond to the same request is ignored.
    w.nodes[1].mesh.respond(now, &from, rid, Ok(Payload::Text("again".into())));
    w.settle();
    assert!(w.nodes[0].take_events().iter().all(|e| !matches!(e, Event::Response { .. })));
}

#[test]
fn every_request_error_is_the_right_one() {
    let mut w = world(3);
    w.nodes[1].mesh.serve_method("print");

    let id = request(&mut w, 0, 1, "fax", Payload::Text("1".into()), 5_000);
    assert_eq!(response(&w.nodes[0].take_events(), id), Some(Err(RequestError::NoSuchMethod("fax".into()))));

    let id = request(&mut w, 0, 1, "print", Payload::Text("1".into()), 5_000);
    let (from, rid, ..) = requests(&w.nodes[1].take_events())[0].clone();
    let now = w.now;
    w.nodes[1].mesh.respond(now, &from, rid, Err("out of paper".into()));
    w.settle();
    assert_eq!(response(&w.nodes[0].take_events(), id), Some(Err(RequestError::Handler("out of paper".into()))));

    let id = request(&mut w, 0, 1, "print", Payload::Text("1".into()), 5_000);
    w.advance(4_999);
    assert!(response(&w.nodes[0].take_events(), id).is_none());
    w.advance(1);
    assert_eq!(response(&w.nodes[0].take_events(), id), Some(Err(RequestError::Timeout(5_000))));

    w.nodes[2].mesh.serve_method("print"); // and never answers
    let id = request(&mut w, 0, 2, "print", Payload::Text("1".into()), 60_000);
    assert_eq!(requests(&w.nodes[2].take_events()).len(), 1);
    let conn = w.conn_between(0, 2).expect("connected");
    w.break_conn(conn);
    assert_eq!(response(&w.nodes[0].take_events(), id), Some(Err(RequestError::PeerLeft)));

    w.nodes[1].mesh.unserve_method("print");
    let id = request(&mut w, 0, 1, "print", Payload::Text("1".into()), 5_000);
    assert_eq!(response(&w.nodes[0].take_events(), id), Some(Err(RequestError::NoSuchMethod("print".into()))));

    let peer = pid(&w.nodes[0], &World::id_of("p1"));
    let now = w.now;
    let big = Payload::Binary(vec![0; 16 * 1024 * 1024 + 1]);
    assert!(matches!(w.nodes[0].mesh.request(now, &peer, "print", big, 1_000), Err(SendError::TooLarge { .. })));
    let stranger = meshdrop::core::PeerId::clone(&peer);
    w.leave_for_good(1);
    assert!(matches!(w.nodes[0].mesh.request(w.now, &stranger, "print", Payload::Text("1".into()), 1_000), Err(SendError::NotConnected(_))));
}

#[test]
fn large_payloads_are_split_and_a_flood_of_requests_gets_busy() {
    let mut w = world(2);
    w.nodes[1].mesh.serve_method("echo");
    let big: Vec<u8> = pattern(3 * 1024 * 1024 + 7, 9);
    let id = request(&mut w, 0, 1, "echo", Payload::Binary(big.clone()), 5_000);
    let (from, rid, _, payload) = requests(&w.nodes[1].take_events())[0].clone();
    assert_eq!(payload, Payload::Binary(big.clone()), "3 MiB arrive whole across many frames");
    let now = w.now;
    w.nodes[1].mesh.respond(now, &from, rid, Ok(payload));
    w.settle();
    assert_eq!(response(&w.nodes[0].take_events(), id), Some(Ok(Payload::Binary(big))));

    let ids: Vec<_> = (0..MAX_INBOUND_PER_PEER + 3).map(|_| request(&mut w, 0, 1, "echo", Payload::Text("1".into()), 60_000)).collect();
    assert_eq!(requests(&w.nodes[1].take_events()).len(), MAX_INBOUND_PER_PEER);
    let events = w.nodes[0].take_events();
    for id in &ids[MAX_INBOUND_PER_PEER..] {
        assert!(matches!(response(&events, *id), Some(Err(RequestError::Busy(_)))));
    }
}

#[test]
fn a_reply_to_a_caller_that_left_goes_nowhere() {
    let mut w = world(3);
    w.nodes[1].mesh.serve_method("print");
    request(&mut w, 0, 1, "print", Payload::Text("1".into()), 60_000);
    let (from, rid, ..) = requests(&w.nodes[1].take_events())[0].clone();
    let conn = w.conn_between(0, 1).expect("connected");
    w.break_conn(conn);
    let now = w.now;
    w.nodes[1].mesh.respond(now, &from, rid, Ok(Payload::Text("late".into())));
    w.settle();
    assert!(w.nodes[1].take_events().iter().all(|e| !matches!(e, Event::Warning(_))));
}

// -- multi-source downloads ------------------------------------------------------------

/// Peers 1..=holders share `bytes` as "image.png"; peer 0 finds them.
fn shared_by(w: &mut World, holders: usize, bytes: &[u8]) -> Vec<Hit> {
    for n in 1..=holders {
        w.share(n, "image.png", bytes.to_vec());
    }
    let hits = find(w, 0, "image.png", Match::Exact);
    assert_eq!(hits.len(), holders);
    hits
}

fn finish(w: &mut World, n: usize, id: TransferId) -> (Vec<u8>, Vec<(String, u64)>) {
    w.settle();
    let events = w.nodes[n].take_events();
    assert!(matches!(outcome(&events, id), Some(Ok(_))), "{:?}", outcome(&events, id));
    (w.nodes[n].delivered.get(&id).cloned().expect("delivered"), served(&events, id))
}

#[test]
fn a_download_takes_blocks_from_every_holder_and_arrives_whole() {
    let mut w = world(4);
    let bytes = pattern(20 * B + 333, 5);
    let hits = shared_by(&mut w, 3, &bytes);
    let id = download(&mut w, 0, &hits);
    let (got, served) = finish(&mut w, 0, id);
    assert!(got == bytes, "byte-identical");
    assert_eq!(served.len(), 3);
    assert!(served.iter().all(|(_, b)| *b > 0), "every holder served: {served:?}");
    assert_eq!(served.iter().map(|(_, b)| b).sum::<u64>(), bytes.len() as u64, "no block twice");
    let sent: u64 = (1..=3).map(|n| w.nodes[n].bulk_data_sent).sum();
    assert_eq!(sent, bytes.len() as u64, "every byte sent once");
}

#[test]
fn faster_holders_serve_more_blocks() {
    let mut w = world(4);
    let bytes = pattern(40 * B, 6);
    let hits = shared_by(&mut w, 3, &bytes);
    let slow = w.conn_between(0, 1).expect("connected");
    w.slow.insert(slow);
    let id = download(&mut w, 0, &hits);
    let (got, served) = finish(&mut w, 0, id);
    assert!(got == bytes);
    let by = |p: &str| served.iter().find(|(id, _)| *id == World::id_of(p)).map(|(_, b)| *b).unwrap_or(0);
    assert!(by("p1") > 0);
    assert!(by("p1") * 2 < by("p2") && by("p1") * 2 < by("p3"), "the slow holder served less: {served:?}");
}

/// Runs the world in 10 ms steps with `frames` bulk frames delivered per step (a
/// link's capacity); returns when `id` ended on node `n`, with the time it took.
fn run_paced(w: &mut World, n: usize, id: TransferId, frames: usize, limit_ms: u64) -> (Result<[u8; 32], TransferError>, u64, Vec<Event>) {
    let start = w.now.0;
    let mut events = Vec::new();
    while w.now.0 - start < limit_ms {
        w.bulk_budget = Some(frames);
        w.advance(10);
        events.extend(w.nodes[n].take_events());
        if let Some(result) = outcome(&events, id) {
            w.bulk_budget = None;
            return (result, w.now.0 - start, events);
        }
    }
    panic!("download {id} did not end within {limit_ms} ms");
}

#[test]
fn in_the_end_game_an_idle_fast_holder_takes_the_slow_holders_last_blocks() {
    let mut w = world(3);
    let bytes = pattern(12 * B, 11);
    let hits = shared_by(&mut w, 2, &bytes);
    // p2's link delivers one frame in eight turns: much slower than p1's.
    let slow = w.conn_between(0, 2).expect("connected");
    w.slow.insert(slow);
    let id = download(&mut w, 0, &hits);
    let (result, ms, events) = run_paced(&mut w, 0, id, 8, 60_000);
    assert!(result.is_ok(), "{result:?}");
    assert!(w.nodes[0].delivered.get(&id) == Some(&bytes), "byte-identical");
    // The downloader told the slow holder to drop blocks it gave the fast one.
    assert!(w.nodes[0].service_sent.contains(&11), "a Drop went out");
    let served = served(&events, id);
    let total: u64 = served.iter().map(|(_, b)| b).sum();
    assert!(total <= bytes.len() as u64, "every block counted once: {served:?}");
    // Without the end game the slow holder's last blocks alone take longer than this.
    assert!(ms < 4_000, "took {ms} ms");
}

#[test]
fn the_end_game_leaves_a_block_with_an_equally_fast_holder_that_has_most_of_it_sent() {
    let mut w = world(3);
    let bytes = pattern(12 * B, 14);
    let hits = shared_by(&mut w, 2, &bytes);
    let id = download(&mut w, 0, &hits);
    let (result, _, _) = run_paced(&mut w, 0, id, 8, 60_000);
    assert!(result.is_ok(), "{result:?}");
    assert!(w.nodes[0].delivered.get(&id) == Some(&bytes), "byte-identical");
    // Moving a block its holder had mostly sent would only start it over elsewhere.
    assert!(!w.nodes[0].service_sent.contains(&11), "no Drop went out");
    let sent: u64 = (1..=2).map(|n| w.nodes[n].bulk_data_sent).sum();
    assert_eq!(sent, bytes.len() as u64, "every byte sent once");
}

#[test]
fn a_holder_that_stops_sending_without_leaving_loses_its_blocks_and_the_download_finishes() {
    let mut w = world(3);
    let bytes = pattern(10 * B, 12);
    let hits = shared_by(&mut w, 2, &bytes);
    w.nodes[2].bulk_muted = true; // connected, answering nothing on its bulk channel
    let id = download(&mut w, 0, &hits);
    let (result, _, _) = run_paced(&mut w, 0, id, 8, 60_000);
    assert!(result.is_ok(), "{result:?}");
    assert!(w.nodes[0].delivered.get(&id) == Some(&bytes));
}

#[test]
fn a_lone_holder_that_stalls_fails_the_download_after_the_stall_timeout() {
    let mut w = world(2);
    let bytes = pattern(6 * B, 13);
    let hits = shared_by(&mut w, 1, &bytes);
    w.nodes[1].bulk_muted = true;
    let id = download(&mut w, 0, &hits);
    let (result, ms, _) = run_paced(&mut w, 0, id, 8, 60_000);
    assert_eq!(result, Err(TransferError::Stalled(STALLED_HOLDER_MS)));
    assert!((STALLED_HOLDER_MS..STALLED_HOLDER_MS + 1_000).contains(&ms), "after {ms} ms");
}

#[test]
fn a_holder_that_leaves_mid_download_loses_its_blocks_to_the_others() {
    let mut w = world(4);
    let bytes = pattern(24 * B + 1, 7);
    let hits = shared_by(&mut w, 3, &bytes);
    w.bulk_budget = Some(60);
    let id = download(&mut w, 0, &hits);
    w.settle();
    w.bulk_budget = None;
    w.leave_for_good(2);
    let (got, served) = finish(&mut w, 0, id);
    assert!(got == bytes);
    let by = |p: &str| served.iter().find(|(id, _)| *id == World::id_of(p)).map(|(_, b)| *b).unwrap_or(0);
    assert!(by("p1") > 0 && by("p3") > 0);
    assert_eq!(served.iter().map(|(_, b)| b).sum::<u64>(), bytes.len() as u64);
}

#[test]
fn a_holder_sending_a_bad_block_is_dropped_and_the_file_still_verifies() {
    let mut w = world(4);
    let bytes = pattern(12 * B, 8);
    let hits = shared_by(&mut w, 3, &bytes);
    // p3 is asked for blocks 8..12 first (four per holder, in order); it flips a byte
    // of block 8 on the wire and leaves the header's hash as it should be.
    w.nodes[3].corrupt_block = Some(8);
    let id = download(&mut w, 0, &hits);
    w.settle();
    let events = w.nodes[0].take_events();
    assert!(matches!(outcome(&events, id), Some(Ok(_))), "{:?}", outcome(&events, id));
    assert!(w.nodes[0].delivered[&id] == bytes, "byte-identical");
    assert!(events.iter().any(|e| matches!(e, Event::Warning(m) if m.contains("does not match its hash"))));
    let served = served(&events, id);
    let by = |p: &str| served.iter().find(|(id, _)| *id == World::id_of(p)).map(|(_, b)| *b).unwrap_or(u64::MAX);
    assert_eq!(by("p3"), 0, "nothing from the bad holder counted: {served:?}");
    assert!(by("p1") > 0 && by("p2") > 0);
    assert_eq!(by("p1") + by("p2"), bytes.len() as u64);
}

#[test]
fn a_holder_whose_file_changed_stops_serving_it() {
    let mut w = world(4);
    let bytes = pattern(12 * B, 9);
    let hits = shared_by(&mut w, 3, &bytes);
    let share = hits.iter().find(|h| h.peer.as_str() == World::id_of("p2")).expect("p2 holds it").id;
    for b in w.nodes[2].shares.get_mut(&share).expect("shared").iter_mut() {
        *b ^= 0x55;
    }
    let id = download(&mut w, 0, &hits);
    let (got, served) = finish(&mut w, 0, id);
    assert!(got == bytes);
    assert_eq!(served.iter().find(|(p, _)| *p == World::id_of("p2")).map(|(_, b)| *b), Some(0));
    assert!(w.nodes[2].mesh.shared().is_empty(), "p2 stopped sharing what it can no longer serve");
    assert_eq!(w.nodes[2].bulk_data_sent, 0, "and sent none of the changed bytes");
}

#[test]
fn every_holder_gone_pauses_and_one_coming_back_finishes_it() {
    let mut w = world(3);
    let bytes = pattern(10 * B, 10);
    let hits = shared_by(&mut w, 2, &bytes);
    w.bulk_budget = Some(30);
    let id = download(&mut w, 0, &hits);
    w.settle();
    w.bulk_budget = None;
    w.drop_in_flight();
    for n in [1, 2] {
        let conn = w.conn_between(0, n).expect("connected");
        w.break_conn(conn);
    }
    let events = w.nodes[0].take_events();
    assert!(events.iter().any(|e| matches!(e, Event::TransferPaused { id: t } if *t == id)));
    assert!(outcome(&events, id).is_none());
    // The connection comes back (the retry after the break).
    w.advance(20_000);
    let events = w.nodes[0].take_events();
    assert!(events.iter().any(|e| matches!(e, Event::TransferResumed { id: t } if *t == id)), "{events:?}");
    assert!(matches!(outcome(&events, id), Some(Ok(_))));
    assert!(w.nodes[0].delivered[&id] == bytes);
}

#[test]
fn a_download_with_every_holder_gone_for_good_fails_after_the_timeout() {
    let mut w = world(2);
    let bytes = pattern(4 * B, 11);
    let hits = shared_by(&mut w, 1, &bytes);
    w.bulk_budget = Some(10);
    let id = download(&mut w, 0, &hits);
    w.settle();
    w.bulk_budget = None;
    w.leave_for_good(1);
    w.advance(120_000);
    assert_eq!(outcome(&w.nodes[0].take_events(), id), Some(Err(TransferError::PeerLeft(120_000))));
}

#[test]
fn only_shared_files_are_served() {
    let mut w = world(3);
    let bytes = pattern(2 * B, 12);
    let hits = shared_by(&mut w, 1, &bytes);
    // A made-up share id: the holder refuses.
    let mut forged = hits.clone();
    forged[0].id = ShareId::parse("00000000000000ff").expect("hex");
    let id = download(&mut w, 0, &forged);
    w.settle();
    match outcome(&w.nodes[0].take_events(), id) {
        Some(Err(TransferError::NotShared(m))) => assert!(m.contains("not shared"), "{m}"),
        other => panic!("expected NotShared, got {other:?}"),
    }
    assert_eq!(w.nodes[1].bulk_data_sent, 0, "not one byte served");

    // Unsharing mid-download ends the serve with the same error.
    let id = download(&mut w, 0, &hits);
    w.bulk_budget = Some(3);
    w.settle();
    let now = w.now;
    assert!(w.nodes[1].mesh.unshare(now, hits[0].id));
    w.bulk_budget = None;
    w.settle();
    assert!(matches!(outcome(&w.nodes[0].take_events(), id), Some(Err(TransferError::NotShared(_)))));
    assert!(find(&mut w, 2, "image.png", Match::Exact).is_empty(), "no longer found");
}

#[test]
fn a_bad_manifest_is_refused_and_another_holder_asked() {
    let mut w = world(3);
    let bytes = pattern(3 * B, 13);
    let hits = shared_by(&mut w, 2, &bytes);
    let now = w.now;
    let first = hits[0].clone();
    let id = w.nodes[0].mesh.download(now, first.meta.clone(), first.hash, &holders(&hits)).expect("download");
    // Before p1's real manifest: a forged one from p1 ([0x18][7][transfer][count][hashes]).
    let mut manifest = vec![0x18, 7];
    manifest.extend_from_slice(&u64::from_str_radix(&id.to_string(), 16).expect("hex").to_be_bytes());
    manifest.extend_from_slice(&3u32.to_be_bytes());
    manifest.extend_from_slice(&[7; 96]);
    w.inject_frame(1, 0, manifest);
    let (got, served) = finish(&mut w, 0, id);
    assert!(got == bytes);
    assert_eq!(served.iter().find(|(p, _)| *p == World::id_of("p1")).map(|(_, b)| *b), Some(0), "p1 was dropped: {served:?}");
}

#[test]
fn a_partial_download_resumes_from_the_blocks_kept() {
    let mut w = world(3);
    let bytes = pattern(16 * B, 14);
    let hits = shared_by(&mut w, 2, &bytes);
    w.bulk_budget = Some(8 * 5); // about 5 of 16 blocks
    download(&mut w, 0, &hits);
    w.settle();
    w.bulk_budget = None;
    w.drop_in_flight();
    w.reload(0);
    w.settle();
    let sent_before: u64 = (1..=2).map(|n| w.nodes[n].bulk_data_sent).sum();
    let hits = find(&mut w, 0, "image.png", Match::Exact);
    let id = download(&mut w, 0, &hits);
    let (got, _) = finish(&mut w, 0, id);
    assert!(got == bytes);
    let resent: u64 = (1..=2).map(|n| w.nodes[n].bulk_data_sent).sum::<u64>() - sent_before;
    assert!(resent < bytes.len() as u64 * 3 / 4, "only the missing blocks: {resent} of {}", bytes.len());
}

#[test]
fn ten_peers_find_and_download_from_eight_holders() {
    let mut w = world(10);
    let bytes = pattern(32 * B + 17, 15);
    for n in 1..=8 {
        w.share(n, "big.iso", bytes.clone());
    }
    w.share(9, "big.iso", pattern(5, 1));
    let hits = find(&mut w, 0, "big.iso", Match::Exact);
    assert_eq!(hits.len(), 9);
    // The hit with other bytes under the same name is left out by the core.
    let mut hits = hits;
    hits.sort_by_key(|h| h.meta.size != bytes.len() as u64);
    let now = w.now;
    let id = w.nodes[0].mesh.download_hits(now, &hits).expect("download");
    let (got, served) = finish(&mut w, 0, id);
    assert!(got == bytes);
    assert_eq!(served.len(), 8);
    assert!(served.iter().all(|(_, b)| *b > 0), "{served:?}");
}

#[test]
fn empty_files_download_too() {
    let mut w = world(2);
    let hits = shared_by(&mut w, 1, &[]);
    let id = download(&mut w, 0, &hits);
    let (got, _) = finish(&mut w, 0, id);
    assert!(got.is_empty());
}

#[test]
fn a_peer_gets_only_so_many_serves_at_once() {
    let mut w = world(2);
    let shared = w.share(1, "a.bin", pattern(3 * B, 16));
    let share = u64::from_str_radix(&shared.id.to_string(), 16).expect("hex");
    // Fetches by hand ([0x18][6][transfer][share][manifest]), never finished.
    for transfer in 1..=MAX_SERVES_PER_PEER as u64 + 1 {
        let mut fetch = vec![0x18, 6];
        fetch.extend_from_slice(&transfer.to_be_bytes());
        fetch.extend_from_slice(&share.to_be_bytes());
        fetch.push(0);
        w.inject_frame(0, 1, fetch);
    }
    // Asking for a block: served under the 16th, refused under the 17th.
    w.nodes[1].take_events();
    for transfer in [MAX_SERVES_PER_PEER as u64, MAX_SERVES_PER_PEER as u64 + 1] {
        let mut get = vec![0x18, 8];
        get.extend_from_slice(&transfer.to_be_bytes());
        get.extend_from_slice(&1u16.to_be_bytes());
        get.extend_from_slice(&0u32.to_be_bytes());
        w.inject_frame(0, 1, get);
    }
    assert_eq!(w.nodes[1].bulk_data_sent, B as u64, "one block, for the 16th");
    let refused = w.nodes[1].take_events().iter().filter(|e| matches!(e, Event::Warning(m) if m.contains("which we do not serve"))).count();
    assert_eq!(refused, 1);
}
