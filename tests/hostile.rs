//! Hostile holders, senders and callers against the core: nothing a peer sends may put
//! a wrong byte in a verified download, make a tab allocate by a peer's word, or make
//! it spend more than linear time. Each hostile peer is written here, as raw frames.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::{Duration, Instant};

use common::{pid, World, Write};
use meshdrop::core::transfer::blocks::{hash_block, BLOCK_SIZE};
use meshdrop::core::{Event, FileMeta, Hit, Match, Payload, RequestError, TransferError, TransferId};

const B: usize = BLOCK_SIZE as usize;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(u32::from(seed)) as u8 ^ seed).collect()
}

fn raw(id: TransferId) -> u64 {
    u64::from_str_radix(&id.to_string(), 16).expect("hex id")
}

/// `[0x16][transfer][block][len][flags][hash]`: a block header whose bytes follow.
fn block_header(id: TransferId, block: u32, len: u32, hash: [u8; 32]) -> Vec<u8> {
    let mut frame = vec![0x16];
    frame.extend_from_slice(&raw(id).to_be_bytes());
    frame.extend_from_slice(&block.to_be_bytes());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(1);
    frame.extend_from_slice(&hash);
    frame
}

/// `[0x15][7][transfer][code][reason]`: a cancel control frame.
fn cancel(id: TransferId) -> Vec<u8> {
    let mut frame = vec![0x15, 7];
    frame.extend_from_slice(&raw(id).to_be_bytes());
    frame.push(1);
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame
}

/// A service message split into data-channel frames the way every peer splits them
/// (kind 8 whole, or kind 9 first frame with the total, then kind 4 continuations).
fn service_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    const MAX: usize = 256 * 1024;
    if bytes.len() < MAX {
        let mut frame = vec![0x18];
        frame.extend_from_slice(bytes);
        return vec![frame];
    }
    let mut first = vec![0x19];
    first.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    let room = MAX - first.len();
    first.extend_from_slice(&bytes[..room]);
    let mut frames = vec![first];
    for chunk in bytes[room..].chunks(MAX - 1) {
        let mut frame = vec![0x14];
        frame.extend_from_slice(chunk);
        frames.push(frame);
    }
    frames
}

fn outcome(events: &[Event], transfer: TransferId) -> Option<Result<[u8; 32], TransferError>> {
    events.iter().find_map(|e| match e {
        Event::TransferDone { id, hash } if *id == transfer => Some(Ok(*hash)),
        Event::TransferFailed { id, error } if *id == transfer => Some(Err(error.clone())),
        _ => None,
    })
}

fn find(w: &mut World, n: usize, text: &str) -> Vec<Hit> {
    let now = w.now;
    let query = w.nodes[n].mesh.find(now, text, Match::Exact, 2_000);
    w.settle();
    w.nodes[n]
        .take_events()
        .into_iter()
        .find_map(|e| match e {
            Event::FindDone { id, hits } if id == query => Some(hits),
            _ => None,
        })
        .expect("every peer answered")
}

/// Peers p1..=p3 share `bytes`; p0 starts downloading it from all three, with every
/// bulk frame held back. Holders are asked in id order, four blocks each: p1 gets
/// blocks 0–3, p2 4–7, p3 8–11. A `hostile` p1 sends nothing of its own on its bulk
/// channel: the test speaks for it.
fn download_from_three(bytes: &[u8], hostile: bool) -> (World, TransferId) {
    let (mut w, _) = World::connected("room", &["p0", "p1", "p2", "p3"]);
    for n in 1..=3 {
        w.share(n, "f.bin", bytes.to_vec());
    }
    w.nodes[1].bulk_muted = hostile;
    let hits = find(&mut w, 0, "f.bin");
    assert_eq!(hits.len(), 3);
    w.bulk_budget = Some(0);
    let now = w.now;
    let holders: Vec<_> = hits.iter().map(|h| (h.peer.clone(), h.id)).collect();
    let id = w.nodes[0].mesh.download(now, hits[0].meta.clone(), hits[0].hash, &holders).expect("download");
    w.settle();
    (w, id)
}

/// Lets bulk frames through one at a time until `block` of the download is committed.
fn run_until_committed(w: &mut World, block: u32) {
    for _ in 0..10_000 {
        if w.nodes[0].store.values().any(|s| s.hashes.contains_key(&block)) {
            w.bulk_budget = Some(0);
            return;
        }
        w.bulk_budget = Some(1);
        w.settle();
    }
    panic!("block {block} was never committed");
}

fn finish(w: &mut World, id: TransferId) -> Vec<u8> {
    w.bulk_budget = None;
    w.settle();
    let events = w.nodes[0].take_events();
    assert!(matches!(outcome(&events, id), Some(Ok(_))), "{:?}", outcome(&events, id));
    w.nodes[0].delivered.get(&id).cloned().expect("delivered")
}

fn writes_from(w: &World, n: usize) -> Vec<Write> {
    w.nodes[0].writes.iter().filter(|wr| wr.from == n).copied().collect()
}

/// The finding: a holder sends a real header for its block 0 and junk, cancels, and
/// after block 0 was re-assigned and committed, sends more junk on its bulk channel.
#[test]
fn a_dropped_holders_late_bytes_never_touch_a_verified_block() {
    let bytes = pattern(12 * B, 21);
    let (mut w, id) = download_from_three(&bytes, true);
    let hash0 = hash_block(&bytes[..B]);
    w.inject_bulk(1, 0, &block_header(id, 0, B as u32, hash0));
    w.inject_bulk(1, 0, &[0xAA; 1000]);
    w.inject_frame(1, 0, cancel(id));
    run_until_committed(&mut w, 0);
    let writes_before = writes_from(&w, 1).len();
    w.inject_bulk(1, 0, &[0xBB; 1000]);
    assert_eq!(writes_from(&w, 1).len(), writes_before, "a dropped holder's bytes were written");
    let got = finish(&mut w, id);
    let differing = got.iter().zip(&bytes).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "the verified download differs from the shared file in {differing} bytes");
}

#[test]
fn a_holder_cannot_write_a_block_it_was_never_asked_for() {
    let bytes = pattern(12 * B, 22);
    let (mut w, id) = download_from_three(&bytes, true);
    // Block 5 is p2's: p1 sends its real header and junk.
    w.inject_bulk(1, 0, &block_header(id, 5, B as u32, hash_block(&bytes[5 * B..6 * B])));
    for _ in 0..4 {
        w.inject_bulk(1, 0, &[0xCC; 256 * 1024]);
    }
    assert!(writes_from(&w, 1).is_empty(), "bytes from a holder not asked for that block were written");
    w.inject_frame(1, 0, cancel(id));
    assert!(finish(&mut w, id) == bytes);
}

#[test]
fn a_holder_cannot_write_a_block_already_committed() {
    let bytes = pattern(12 * B, 23);
    let (mut w, id) = download_from_three(&bytes, true);
    run_until_committed(&mut w, 4);
    w.inject_bulk(1, 0, &block_header(id, 4, B as u32, hash_block(&bytes[4 * B..5 * B])));
    w.inject_bulk(1, 0, &[0xDD; 4096]);
    assert!(writes_from(&w, 1).is_empty(), "a committed block was written again");
    w.inject_frame(1, 0, cancel(id));
    assert!(finish(&mut w, id) == bytes);
}

/// An honest holder that unshares mid-block still finishes the block on the wire (the
/// receiver would misread what follows otherwise); from the moment its cancel is
/// handled, none of those bytes may be written.
#[test]
fn after_unshare_the_rest_of_a_block_on_the_wire_is_not_written() {
    let bytes = pattern(12 * B, 24);
    let (mut w, id) = download_from_three(&bytes, false);
    // p1's header and first slice of block 0 arrive; the rest waits on the wire.
    for _ in 0..200 {
        if !writes_from(&w, 1).is_empty() {
            break;
        }
        w.bulk_budget = Some(1);
        w.settle();
    }
    w.bulk_budget = Some(0);
    w.settle();
    assert!(!writes_from(&w, 1).is_empty(), "p1 started sending block 0");
    let share = w.nodes[1].mesh.shared()[0].id;
    let now = w.now;
    assert!(w.nodes[1].mesh.unshare(now, share));
    w.settle(); // the cancel (message channel) arrives; bulk frames are still held
    let before = writes_from(&w, 1).len();
    let got = finish(&mut w, id);
    assert_eq!(writes_from(&w, 1).len(), before, "bytes from a holder that stopped serving were written");
    assert!(got == bytes);
}

/// The same content sent to the same peer a second time is a new file: a new offer and
/// a new verified copy, not a "resume" of the finished one.
#[test]
fn sending_the_same_file_twice_makes_a_second_offer_and_a_second_copy() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let bytes = pattern(3 * B, 25);
    for round in 0..3 {
        let id = w.send_file(n[0], n[1], "same.bin", bytes.clone());
        w.settle();
        let events = w.nodes[n[1]].take_events();
        assert!(
            events.iter().any(|e| matches!(e, Event::FileOffer { id: t, .. } if *t == id)),
            "round {round}: no offer for the second send: {events:?}"
        );
        let now = w.now;
        w.nodes[n[1]].mesh.accept_file(now, id).expect("accept");
        w.settle();
        assert!(matches!(outcome(&w.nodes[n[0]].take_events(), id), Some(Ok(_))), "round {round}: the sender's transfer failed");
        assert_eq!(w.nodes[n[1]].delivered.get(&id), Some(&bytes), "round {round}");
    }
}

/// The sender's tab reloads mid-transfer and the user sends the file again: that is a
/// new transfer, offered to the user (with what is already here), not a resume.
#[test]
fn a_resend_after_the_sender_reloaded_is_offered_with_what_is_kept() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let bytes = pattern(8 * B, 26);
    let first = w.send_file(n[0], n[1], "v.bin", bytes.clone());
    w.settle();
    w.nodes[n[1]].take_events();
    w.bulk_budget = Some(20);
    let now = w.now;
    w.nodes[n[1]].mesh.accept_file(now, first).expect("accept");
    w.settle();
    w.reload(n[0]);
    w.bulk_budget = None;
    w.advance(5_000);
    w.nodes[n[1]].take_events();
    let second = w.send_file(n[0], n[1], "v.bin", bytes.clone());
    w.settle();
    let events = w.nodes[n[1]].take_events();
    let have = events.iter().find_map(|e| if let Event::FileOffer { id, have, .. } = e { (*id == second).then_some(*have) } else { None });
    assert!(have.is_some_and(|h| h > 0), "expected an offer with the kept bytes: {events:?}");
    let now = w.now;
    w.nodes[n[1]].mesh.accept_file(now, second).expect("accept");
    w.settle();
    assert!(matches!(outcome(&w.nodes[n[0]].take_events(), second), Some(Ok(_))));
    assert_eq!(w.nodes[n[1]].delivered.get(&second), Some(&bytes));
}

/// The largest block request the protocol can carry (65,535 blocks) against a 64 GiB
/// share is refused in linear time, and nothing is read.
#[test]
fn the_largest_block_request_is_refused_in_linear_time() {
    let (mut w, _) = World::connected("room", &["p0", "p1"]);
    let size = 64u64 << 30;
    let hashes = vec![[7u8; 32]; (size / BLOCK_SIZE) as usize];
    let shared = w.nodes[1].mesh.share(FileMeta { name: "huge.img".into(), size, mime: String::new() }, hashes).expect("share");
    let transfer = 0x1234_u64;
    let mut fetch = vec![0x18, 6];
    fetch.extend_from_slice(&transfer.to_be_bytes());
    fetch.extend_from_slice(&u64::from_str_radix(&shared.id.to_string(), 16).expect("hex").to_be_bytes());
    fetch.push(0);
    w.inject_frame(0, 1, fetch);
    let mut get = vec![8];
    get.extend_from_slice(&transfer.to_be_bytes());
    get.extend_from_slice(&u16::MAX.to_be_bytes());
    for block in 0..u32::from(u16::MAX) {
        get.extend_from_slice(&block.to_be_bytes());
    }
    let frames = service_frames(&get);
    assert!(frames.len() > 1, "the request spans frames");
    let started = Instant::now();
    for frame in frames {
        w.inject_frame(0, 1, frame);
    }
    let spent = started.elapsed();
    // Linear work is well under a millisecond; the quadratic scan took seconds.
    assert!(spent < Duration::from_secs(1), "a 65,535-block request took {spent:?}");
    assert_eq!(w.nodes[1].bulk_data_sent, 0, "nothing was read or sent");
    // The serve ended: a modest request for the same transfer is no longer served.
    w.nodes[1].take_events();
    let mut again = vec![0x18, 8];
    again.extend_from_slice(&transfer.to_be_bytes());
    again.extend_from_slice(&1u16.to_be_bytes());
    again.extend_from_slice(&0u32.to_be_bytes());
    w.inject_frame(0, 1, again);
    assert!(w.nodes[1].take_events().iter().any(|e| matches!(e, Event::Warning(m) if m.contains("which we do not serve"))));
    assert_eq!(w.nodes[1].bulk_data_sent, 0);
}

/// A caller allowed larger messages than the handler's peer: the handler's peer refuses
/// the payload (`MessageTooLargeError` for the caller) and its handler never runs.
#[test]
fn a_request_over_the_receivers_limit_never_reaches_the_handler() {
    let mut w = World::new();
    let caller = w.add_configured("r", "a", |c| c.max_message_bytes = 32 << 20);
    let callee = w.add("r", "b");
    w.settle();
    w.nodes[callee].mesh.serve_method("echo");
    let peer = pid(&w.nodes[caller], &w.nodes[callee].id());
    let now = w.now;
    let request = w.nodes[caller].mesh.request(now, &peer, "echo", Payload::Binary(vec![1; 24 << 20]), 10_000).expect("sent");
    w.settle();
    assert!(
        !w.nodes[callee].take_events().iter().any(|e| matches!(e, Event::Request { .. })),
        "the handler ran with a payload over its peer's limit"
    );
    let result = w.nodes[caller].take_events().into_iter().find_map(|e| match e {
        Event::Response { id, result } if id == request => Some(result),
        _ => None,
    });
    assert!(matches!(result, Some(Err(RequestError::TooLarge(_)))), "{result:?}");
}

/// Offers nobody answered are capped per sender: the next one fails at once for the
/// sender, with a reason it can show, and the ones waiting are still good.
#[test]
fn offers_past_the_cap_fail_for_the_sender_with_a_reason() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let ids: Vec<_> = (0..9).map(|i| w.send_file(n[0], n[1], &format!("f{i}"), pattern(1000, i as u8))).collect();
    w.settle();
    let offered = w.nodes[n[1]].take_events().iter().filter(|e| matches!(e, Event::FileOffer { .. })).count();
    assert_eq!(offered, 8);
    let events = w.nodes[n[0]].take_events();
    match outcome(&events, ids[8]) {
        Some(Err(TransferError::Busy(m))) => assert!(m.contains("8 offers"), "{m}"),
        other => panic!("expected Busy for the ninth offer, got {other:?}"),
    }
    assert!(ids[..8].iter().all(|id| outcome(&events, *id).is_none()));
    let now = w.now;
    w.nodes[n[1]].mesh.accept_file(now, ids[0]).expect("accept");
    w.settle();
    assert_eq!(w.nodes[n[1]].delivered.get(&ids[0]), Some(&pattern(1000, 0)));
}
