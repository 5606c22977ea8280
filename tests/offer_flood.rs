//! A flood of offers claiming huge files must cost the receiver almost nothing: memory
//! is measured with a counting allocator (this test binary holds only this test, so
//! nothing else allocates while it runs). Native only: the wasm build brings its own
//! allocator.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::World;
use meshdrop::core::transfer::blocks::hash_block;
use meshdrop::core::Event;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call defers to the system allocator with the same arguments; the
// wrapper only counts bytes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `[0x15][1][transfer][size][block size][head][no hash][name][type][nonce]`.
fn offer(id: u64, size: u64) -> Vec<u8> {
    let mut frame = vec![0x15, 1];
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&(1u32 << 20).to_be_bytes());
    frame.extend_from_slice(&[9; 32]);
    frame.push(0);
    frame.extend_from_slice(&5u16.to_be_bytes());
    frame.extend_from_slice(b"x.bin");
    frame.extend_from_slice(&0u16.to_be_bytes());
    frame.extend_from_slice(&id.to_be_bytes());
    frame
}

#[test]
fn floods_of_offers_cost_under_a_mebibyte() {
    let (mut w, n) = World::connected("r", &["victim", "flooder"]);
    let (victim, flooder) = (n[0], n[1]);
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..1_000u64 {
        w.inject_frame(flooder, victim, offer(0xF000 + i, 1 << 40));
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    assert!(grown < 1 << 20, "1,000 offers grew the victim's memory by {grown} bytes");
    let events = w.nodes[victim].take_events();
    let offers = events.iter().filter(|e| matches!(e, Event::FileOffer { .. })).count();
    assert!((1..=16).contains(&offers), "{offers} offers reached the user");
    offers_that_carry_their_file_hold_only_the_few_that_may_wait();
}

/// Part of the test above: one test in this binary, or another's allocations count.
fn offers_that_carry_their_file_hold_only_the_few_that_may_wait() {
    let (mut w, n) = World::connected("r", &["victim", "flooder"]);
    let (victim, flooder) = (n[0], n[1]);
    // Built first: the frames are the flooder's memory, not the victim's.
    let frames: Vec<Vec<u8>> = (0..1_000u64)
        .map(|i| {
            let data = vec![i as u8; 16 * 1024];
            let mut frame = offer(0xE000 + i, data.len() as u64);
            frame[1] = 8; // an offer with its file
            frame[22..54].copy_from_slice(&hash_block(&data));
            frame.extend_from_slice(&data);
            frame
        })
        .collect();
    let before = LIVE.load(Ordering::Relaxed);
    for frame in frames {
        w.inject_frame(flooder, victim, frame);
    }
    let grown = LIVE.load(Ordering::Relaxed) - before;
    // 8 offers from one peer may wait, each with its 16 KiB.
    assert!(grown < 1 << 20, "1,000 offers of 16 KiB grew the victim's memory by {grown} bytes");
    let events = w.nodes[victim].take_events();
    let offers = events.iter().filter(|e| matches!(e, Event::FileOffer { .. })).count();
    assert_eq!(offers, 8, "the first 8 (valid, and waiting) reached the user");
}
