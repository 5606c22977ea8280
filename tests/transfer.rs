//! File transfers between simulated peers: every byte arrives and matches, errors are
//! the right ones, and resume sends only what is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{pid, World};
use meshdrop::core::transfer::blocks::{content_hash, hash_block, BLOCK_SIZE};
use meshdrop::core::{Event, TransferError, TransferId};

const B: usize = BLOCK_SIZE as usize;
/// The largest file an offer carries whole, to a peer that takes that (every node here).
const INLINE: usize = 16 * 1024;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(u32::from(seed)) as u8 ^ seed).collect()
}

fn offers(events: &[Event]) -> Vec<TransferId> {
    events.iter().filter_map(|e| if let Event::FileOffer { id, .. } = e { Some(*id) } else { None }).collect()
}

fn done(events: &[Event]) -> Vec<(TransferId, [u8; 32])> {
    events.iter().filter_map(|e| if let Event::TransferDone { id, hash } = e { Some((*id, *hash)) } else { None }).collect()
}

fn failed(events: &[Event]) -> Vec<(TransferId, TransferError)> {
    events.iter().filter_map(|e| if let Event::TransferFailed { id, error } = e { Some((*id, error.clone())) } else { None }).collect()
}

fn accept(w: &mut World, n: usize, id: TransferId) {
    let now = w.now;
    w.nodes[n].mesh.accept_file(now, id).expect("accept");
    w.settle();
}

fn expected_hash(bytes: &[u8]) -> [u8; 32] {
    let hashes: Vec<_> = bytes.chunks(B).map(hash_block).collect();
    content_hash(bytes.len() as u64, &hashes)
}

/// Offers `bytes` from a to b and accepts, delivering only `budget` bulk frames (the
/// transfer is then cut off midway); the budget stays in force until the test lifts it.
fn start_cut_short(w: &mut World, a: usize, b: usize, bytes: &[u8], budget: usize) -> TransferId {
    let id = w.send_file(a, b, "x", bytes.to_vec());
    w.settle();
    w.nodes[b].take_events();
    w.bulk_budget = Some(budget);
    accept(w, b, id);
    id
}

/// Sends `bytes` from a to b, accepting the offer; returns the transfer.
fn transfer(w: &mut World, a: usize, b: usize, bytes: &[u8]) -> TransferId {
    let id = w.send_file(a, b, "f.bin", bytes.to_vec());
    w.settle();
    let events = w.nodes[b].take_events();
    assert_eq!(offers(&events), vec![id], "{events:?}");
    accept(w, b, id);
    id
}

#[test]
fn files_of_every_edge_size_arrive_intact() {
    for len in [0, 1, INLINE, INLINE + 1, B - 1, B, B + 1, 3 * B, 2 * B + B / 2] {
        let (mut w, n) = World::connected("r", &["a", "b"]);
        let bytes = pattern(len, 3);
        let id = transfer(&mut w, n[0], n[1], &bytes);
        assert_eq!(w.nodes[n[1]].delivered.get(&id), Some(&bytes), "size {len}");
        let hash = expected_hash(&bytes);
        assert_eq!(done(&w.nodes[n[1]].take_events()), vec![(id, hash)], "size {len}");
        assert_eq!(done(&w.nodes[n[0]].take_events()), vec![(id, hash)], "size {len}");
        // Every byte sent once: with the offer if the file is small, else on the bulk channel.
        let inline = (1..=INLINE).contains(&len);
        assert_eq!(w.nodes[n[0]].bulk_data_sent, if inline { 0 } else { len as u64 }, "size {len}");
        assert_eq!(w.nodes[n[1]].puts, usize::from(inline), "size {len}");
    }
}

#[test]
fn progress_is_reported_with_the_total() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let id = transfer(&mut w, n[0], n[1], &pattern(4 * B, 1));
    for node in [n[0], n[1]] {
        let events = w.nodes[node].take_events();
        let last = events.iter().rev().find_map(|e| match e {
            Event::TransferProgress { id: t, progress } if *t == id => Some(*progress),
            _ => None,
        });
        let last = last.expect("progress reported");
        assert_eq!((last.bytes, last.total), (4 * BLOCK_SIZE, 4 * BLOCK_SIZE));
    }
}

#[test]
fn declining_fails_the_sender_with_the_reason() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let id = w.send_file(n[0], n[1], "x", pattern(10, 1));
    w.settle();
    assert_eq!(offers(&w.nodes[n[1]].take_events()), vec![id]);
    let now = w.now;
    w.nodes[n[1]].mesh.reject_file(now, id, "not now");
    w.settle();
    assert_eq!(failed(&w.nodes[n[0]].take_events()), vec![(id, TransferError::Declined("not now".into()))]);
    assert!(w.nodes[n[1]].store.is_empty());
}

#[test]
fn cancel_from_either_side_at_any_point() {
    // (who cancels, bulk frames delivered before the cancel)
    for (canceller, after) in [(0, 0), (0, 3), (0, 20), (1, 0), (1, 7), (1, 25)] {
        let (mut w, n) = World::connected("r", &["a", "b"]);
        let id = w.send_file(n[0], n[1], "x", pattern(8 * B, 2));
        w.settle();
        w.nodes[n[1]].take_events();
        w.bulk_budget = Some(after);
        accept(&mut w, n[1], id);
        let now = w.now;
        w.nodes[n[canceller]].mesh.cancel_transfer(now, id, "changed my mind");
        w.bulk_budget = None;
        w.settle();
        let other = n[1 - canceller];
        let theirs = failed(&w.nodes[other].take_events());
        assert_eq!(theirs, vec![(id, TransferError::Cancelled { by_peer: true, reason: "changed my mind".into() })], "{canceller} after {after}");
        let ours = failed(&w.nodes[n[canceller]].take_events());
        assert!(matches!(ours.as_slice(), [(_, TransferError::Cancelled { by_peer: false, .. })]));
        assert!(w.nodes[n[1]].delivered.is_empty());
        assert!(w.nodes[n[1]].store.is_empty(), "a cancelled download is deleted");
        // Late frames of the cancelled transfer are dropped without harm.
        w.advance(1_000);
    }
}

#[test]
fn a_corrupted_block_fails_the_transfer_and_delivers_nothing() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    w.nodes[n[0]].corrupt_block = Some(2);
    let id = transfer(&mut w, n[0], n[1], &pattern(5 * B, 4));
    assert!(w.nodes[n[1]].delivered.is_empty());
    let theirs = failed(&w.nodes[n[1]].take_events());
    assert!(matches!(theirs.as_slice(), [(t, TransferError::HashMismatch(m))] if *t == id && m.contains("block 2")), "{theirs:?}");
    let ours = failed(&w.nodes[n[0]].take_events());
    assert!(matches!(ours.as_slice(), [(_, TransferError::HashMismatch(_))]), "{ours:?}");
    // The verified blocks stay for a later resume; the bad one is not among them.
    let stored = w.nodes[n[1]].store.values().next().expect("partial kept");
    assert!(stored.hashes.contains_key(&0) && !stored.hashes.contains_key(&2));
}

#[test]
fn receiver_reload_resumes_by_itself_and_resends_only_what_is_missing() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let bytes = pattern(10 * B, 5);
    let id = w.send_file(n[0], n[1], "v.mp4", bytes.clone());
    w.settle();
    w.nodes[n[1]].take_events();
    w.bulk_budget = Some(30); // about six blocks
    accept(&mut w, n[1], id);
    let kept = w.nodes[n[1]].store.values().next().expect("partial stored").hashes.len() as u64;
    let sent_before = w.nodes[n[0]].bulk_data_sent;
    w.reload(n[1]);
    w.bulk_budget = None;
    let paused = w.nodes[n[0]].take_events();
    assert!(paused.contains(&Event::TransferPaused { id }), "{paused:?}");
    w.advance(30_000);
    let events = w.nodes[n[1]].take_events();
    assert!(events.iter().any(|e| matches!(e, Event::TransferStarted { id: t, .. } if *t == id)), "no auto-resume: {events:?}");
    assert!(offers(&events).is_empty(), "the user was asked again");
    assert_eq!(w.nodes[n[1]].delivered.get(&id), Some(&bytes));
    let resent = w.nodes[n[0]].bulk_data_sent - sent_before;
    assert!(kept >= 4, "kept {kept} blocks");
    assert_eq!(resent, (10 - kept) * BLOCK_SIZE, "only the missing blocks are sent again");
    assert_eq!(done(&w.nodes[n[0]].take_events()).len(), 1);
}

#[test]
fn a_dropped_connection_pauses_then_resumes() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let bytes = pattern(12 * B, 6);
    let id = start_cut_short(&mut w, n[0], n[1], &bytes, 25);
    let kept = w.nodes[n[1]].store.values().next().expect("partial stored").hashes.len() as u64;
    let sent_before = w.nodes[n[0]].bulk_data_sent;
    let conn = w.conn_between(n[0], n[1]).unwrap();
    w.drop_in_flight();
    w.bulk_budget = None;
    w.break_conn(conn);
    for node in [n[0], n[1]] {
        assert!(w.nodes[node].take_events().contains(&Event::TransferPaused { id }));
    }
    w.advance(30_000);
    assert_eq!(w.nodes[n[1]].delivered.get(&id), Some(&bytes));
    let events = w.nodes[n[1]].take_events();
    assert!(events.contains(&Event::TransferResumed { id }) && done(&events).len() == 1, "{events:?}");
    assert_eq!(w.nodes[n[0]].bulk_data_sent - sent_before, (12 - kept) * BLOCK_SIZE);
}

#[test]
fn a_peer_that_never_returns_fails_both_sides_after_the_timeout() {
    let (mut w, n) = World::connected("r", &["a", "b", "c"]);
    let id = start_cut_short(&mut w, n[0], n[1], &pattern(6 * B, 7), 8);
    w.bulk_budget = None;
    let conn = w.conn_between(n[0], n[1]).unwrap();
    w.partition(n[0], n[1]);
    w.break_conn(conn);
    w.advance(119_000);
    assert!(failed(&w.nodes[n[0]].take_events()).is_empty());
    w.advance(2_000);
    assert_eq!(failed(&w.nodes[n[0]].take_events()), vec![(id, TransferError::PeerLeft(120_000))]);
    assert_eq!(failed(&w.nodes[n[1]].take_events()), vec![(id, TransferError::PeerLeft(120_000))]);
}

#[test]
fn the_same_content_from_another_peer_sends_only_missing_blocks() {
    let (mut w, n) = World::connected("r", &["a", "b", "c"]);
    let bytes = pattern(10 * B, 8);
    let first = start_cut_short(&mut w, n[0], n[1], &bytes, 35);
    let now = w.now;
    w.nodes[n[0]].mesh.cancel_transfer(now, first, "");
    // Cancelled by the sender: the receiver deletes it. Interrupt differently: the
    // sender's tab closes, and the receiver keeps its partial.
    w.bulk_budget = None;
    w.settle();
    assert!(w.nodes[n[1]].store.is_empty());

    start_cut_short(&mut w, n[0], n[1], &bytes, 35);
    w.reload(n[0]);
    w.bulk_budget = None;
    w.settle();
    let kept = w.nodes[n[1]].store.values().next().expect("partial kept").hashes.len();
    assert!(kept >= 3, "kept {kept} blocks");

    let second = w.send_file(n[2], n[1], "copy of x", bytes.clone());
    w.settle();
    let events = w.nodes[n[1]].take_events();
    let have = events.iter().find_map(|e| if let Event::FileOffer { id, have, .. } = e { (*id == second).then_some(*have) } else { None });
    assert_eq!(have, Some(kept as u64 * BLOCK_SIZE), "the offer says how much is here already");
    accept(&mut w, n[1], second);
    assert_eq!(w.nodes[n[1]].delivered.get(&second), Some(&bytes));
    assert_eq!(w.nodes[n[2]].bulk_data_sent, (10 - kept as u64) * BLOCK_SIZE);
}

#[test]
fn a_partial_of_different_content_under_the_same_key_is_repaired() {
    // Same size and first block, different tail: the key matches, the blocks do not.
    let (mut w, n) = World::connected("r", &["a", "b", "c"]);
    let old = pattern(6 * B, 9);
    let mut new = old.clone();
    new[4 * B + 17] ^= 1;
    start_cut_short(&mut w, n[0], n[1], &old, 30);
    w.reload(n[0]);
    w.bulk_budget = None;
    w.settle();
    assert!(w.nodes[n[1]].store.values().next().unwrap().hashes.contains_key(&4));
    let second = w.send_file(n[2], n[1], "x", new.clone());
    w.settle();
    w.nodes[n[1]].take_events();
    accept(&mut w, n[1], second);
    assert_eq!(w.nodes[n[1]].delivered.get(&second), Some(&new));
}

#[test]
fn two_transfers_to_one_peer_share_the_channel() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let x = pattern(24 * B, 10);
    let y = pattern(24 * B + 5, 11);
    let ix = w.send_file(n[0], n[1], "x", x.clone());
    let iy = w.send_file(n[0], n[1], "y", y.clone());
    w.settle();
    w.nodes[n[1]].take_events();
    let now = w.now;
    w.nodes[n[1]].mesh.accept_file(now, ix).unwrap();
    w.nodes[n[1]].mesh.accept_file(now, iy).unwrap();
    w.settle();
    assert_eq!(w.nodes[n[1]].delivered.get(&ix), Some(&x));
    assert_eq!(w.nodes[n[1]].delivered.get(&iy), Some(&y));
    assert_eq!(done(&w.nodes[n[1]].take_events()).len(), 2);
    // Fair: once both are accepted, their blocks alternate on the channel (the first
    // may run ahead by its window before the second accept arrives).
    let order = &w.nodes[n[0]].data_blocks_sent;
    assert_eq!(order.len(), 49);
    let second = order.iter().position(|t| *t != order[0]).expect("both sent");
    assert!(second <= 8, "the second transfer waited for {second} blocks");
    let both = &order[second..second + 24];
    let longest_run = both.chunk_by(|a, b| a == b).map(<[u64]>::len).max().unwrap_or(0);
    assert!(longest_run <= 2, "one transfer hogged the channel: {order:?}");
}

#[test]
fn storage_full_is_reported_to_both_sides() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    w.nodes[n[1]].storage_full = true;
    let id = transfer(&mut w, n[0], n[1], &pattern(B, 12));
    assert!(matches!(failed(&w.nodes[n[1]].take_events()).as_slice(), [(t, TransferError::StorageFull(_))] if *t == id));
    assert!(matches!(failed(&w.nodes[n[0]].take_events()).as_slice(), [(t, TransferError::StorageFull(_))] if *t == id));
}

#[test]
fn sending_to_a_stranger_or_after_leaving_is_an_error() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let stranger = pid(&w.nodes[n[0]], &w.nodes[n[1]].id());
    let now = w.now;
    let meta = meshdrop::core::FileMeta { name: "x".into(), size: 1, mime: String::new() };
    w.nodes[n[0]].mesh.leave(now);
    assert_eq!(w.nodes[n[0]].mesh.send_file(now, &stranger, meta), Err(meshdrop::core::SendError::Closed));
}

/// A hostile peer: raw frames on both channels, lies about sizes, acks for nothing.
#[test]
fn hostile_transfer_frames_are_errors_not_panics() {
    use meshdrop::core::transfer::blocks::BLOCK_SIZE;
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let id = 0x1234_u64.to_be_bytes();
    let mut offer = vec![0x15, 1];
    offer.extend_from_slice(&id);
    offer.extend_from_slice(&(u64::MAX).to_be_bytes()); // a size no one has
    offer.extend_from_slice(&(BLOCK_SIZE as u32).to_be_bytes());
    offer.extend_from_slice(&[0; 32]);
    offer.push(0);
    offer.extend_from_slice(&[0, 1, b'x', 0, 0]);
    offer.extend_from_slice(&7u64.to_be_bytes()); // nonce
    w.inject_frame(n[0], n[1], offer);
    let events = w.nodes[n[1]].take_events();
    assert!(offers(&events).is_empty() && events.iter().any(|e| matches!(e, Event::Warning(m) if m.contains("larger than"))), "{events:?}");
    // Garbage control frames, acks for unknown transfers, truncated offers.
    for frame in [vec![0x15], vec![0x15, 4, 0, 0], vec![0x15, 9, 0, 0, 0, 0, 0, 0, 0, 1], vec![0x15, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]] {
        w.inject_frame(n[0], n[1], frame);
    }
    assert!(w.nodes[n[1]].take_events().iter().all(|e| matches!(e, Event::Warning(_))));
    // A real transfer survives a peer lying in the middle of it.
    let bytes = pattern(3 * B, 13);
    let t = transfer(&mut w, n[0], n[1], &bytes);
    assert_eq!(w.nodes[n[1]].delivered.get(&t), Some(&bytes));
    assert_eq!(w.nodes[n[0]].open_conns(), 1);
}

/// The signaling server could hand a reloaded receiver's id to someone else: that
/// impostor gets the offer again, but cannot prove it accepted before, so no bytes go
/// to it; the real receiver, back with its key, resumes.
#[test]
fn only_the_receiver_that_accepted_can_resume() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let bytes = pattern(8 * B, 14);
    let id = start_cut_short(&mut w, n[0], n[1], &bytes, 15);
    let b = n[1];
    w.leave_for_good(b);
    w.bulk_budget = None;
    w.settle();
    let sent_before = w.nodes[n[0]].bulk_data_sent;
    // The impostor has b's secret (the server sees it) but not b's local key.
    let impostor = w.add_with_key("r", "b", [0x66; 32]);
    w.advance(10_000);
    let events = w.nodes[impostor].take_events();
    let offered = offers(&events);
    assert_eq!(offered, vec![id], "the sender re-offers to the id: {events:?}");
    accept(&mut w, impostor, id);
    w.advance(1_000);
    assert_eq!(w.nodes[n[0]].bulk_data_sent, sent_before, "bytes went to an impostor");
    let failures = failed(&w.nodes[n[0]].take_events());
    assert!(matches!(failures.as_slice(), [(t, TransferError::Protocol(m))] if *t == id && m.contains("not the one that accepted")), "{failures:?}");
    assert!(w.nodes[impostor].delivered.is_empty());
}

/// Cancelling one transfer mid-block must not desynchronise the shared bulk channel:
/// the other transfer to the same peer still arrives intact.
#[test]
fn cancelling_one_of_two_transfers_leaves_the_other_intact() {
    for after in [1, 2, 3, 6, 11] {
        let (mut w, n) = World::connected("r", &["a", "b"]);
        let x = pattern(12 * B, 15);
        let y = pattern(12 * B + 9, 16);
        let ix = w.send_file(n[0], n[1], "x", x);
        let iy = w.send_file(n[0], n[1], "y", y.clone());
        w.settle();
        w.nodes[n[1]].take_events();
        let now = w.now;
        w.nodes[n[1]].mesh.accept_file(now, ix).unwrap();
        w.nodes[n[1]].mesh.accept_file(now, iy).unwrap();
        w.bulk_budget = Some(after);
        w.settle();
        let now = w.now;
        w.nodes[n[0]].mesh.cancel_transfer(now, ix, "");
        w.bulk_budget = None;
        w.settle();
        assert_eq!(w.nodes[n[1]].delivered.get(&iy), Some(&y), "cancel after {after} frames");
        let warnings: Vec<_> = w.nodes[n[1]].take_events().into_iter().filter(|e| matches!(e, Event::Warning(_))).collect();
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

/// An offer still waiting for an answer must not hold up another transfer to the same
/// peer.
#[test]
fn an_unanswered_offer_does_not_stall_an_accepted_one() {
    for seed in 0..8u8 {
        let (mut w, n) = World::connected("r", &["a", "b"]);
        let waiting = w.send_file(n[0], n[1], "later", pattern(B, seed));
        w.settle();
        assert_eq!(offers(&w.nodes[n[1]].take_events()), vec![waiting]);
        let bytes = pattern(10 * B, seed.wrapping_add(100));
        let id = transfer(&mut w, n[0], n[1], &bytes);
        assert_eq!(w.nodes[n[1]].delivered.get(&id), Some(&bytes), "seed {seed}");
        assert!(!w.nodes[n[1]].delivered.contains_key(&waiting));
    }
}

#[test]
fn a_one_block_file_is_read_once_and_offers_hold_at_most_eight_blocks_meanwhile() {
    // Read to hash it for the offer, the block goes out on accept without a second read.
    let (mut w, n) = World::connected("r", &["a", "b", "c"]);
    let bytes = pattern(INLINE + 1, 9);
    let id = transfer(&mut w, n[0], n[1], &bytes);
    assert_eq!(w.nodes[n[1]].delivered.get(&id), Some(&bytes));
    assert_eq!(w.nodes[n[0]].reads, vec![(id, 0)]);
    assert_eq!(w.held_bytes(n[0]), 0, "let go once sent");
    // Ten unanswered one-block offers: the driver keeps eight blocks, no more; the other
    // two are read again when accepted. Every file arrives intact.
    w.nodes[n[0]].reads.clear();
    let files: Vec<_> = (0..10u8).map(|i| (n[1 + usize::from(i % 2)], pattern(B - usize::from(i), i))).collect();
    let ids: Vec<_> = files.iter().map(|(to, bytes)| w.send_file(n[0], *to, "f", bytes.clone())).collect();
    w.settle();
    let held = w.held_bytes(n[0]);
    assert!(held <= 8 * B && held > 7 * B, "{held} bytes held");
    for (id, (to, _)) in ids.iter().zip(&files) {
        accept(&mut w, *to, *id);
    }
    for (id, (to, bytes)) in ids.iter().zip(&files) {
        assert_eq!(w.nodes[*to].delivered.get(id), Some(bytes));
    }
    assert_eq!(w.nodes[n[0]].reads.len(), 12, "10 for the offers, 2 again: {:?}", w.nodes[n[0]].reads);
    assert_eq!(w.held_bytes(n[0]), 0);
    // An offer declined lets its block go too.
    let id = w.send_file(n[0], n[1], "no", pattern(INLINE + 100, 1));
    w.settle();
    assert_eq!(w.held_bytes(n[0]), INLINE + 100);
    let now = w.now;
    w.nodes[n[1]].mesh.reject_file(now, id, "no thanks");
    w.settle();
    assert_eq!(w.held_bytes(n[0]), 0);
}

#[test]
fn a_small_file_comes_with_its_offer_and_is_there_the_moment_it_is_accepted() {
    let (mut w, n) = World::connected("r", &["a", "b"]);
    let bytes = pattern(INLINE, 4);
    let id = w.send_file(n[0], n[1], "note.txt", bytes.clone());
    w.settle();
    assert_eq!(offers(&w.nodes[n[1]].take_events()), vec![id]);
    assert_eq!(w.held_bytes(n[0]), 0, "the offer carries it: the sender keeps nothing");
    // Accepted, it is stored and done without a byte on the bulk channel.
    let now = w.now;
    w.nodes[n[1]].mesh.accept_file(now, id).expect("accept");
    let events = w.nodes[n[1]].take_events();
    assert!(done(&events).is_empty(), "the store reports first: {events:?}");
    w.settle();
    let hash = expected_hash(&bytes);
    assert_eq!(w.nodes[n[1]].delivered.get(&id), Some(&bytes));
    assert_eq!(done(&w.nodes[n[1]].take_events()), vec![(id, hash)]);
    assert_eq!(done(&w.nodes[n[0]].take_events()), vec![(id, hash)], "the sender is done on the receiver's word");
    assert_eq!((w.nodes[n[0]].bulk_data_sent, w.nodes[n[0]].reads.len()), (0, 1), "read once, to hash and offer it");
}
