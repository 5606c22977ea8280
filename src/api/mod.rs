//! The JavaScript surface: `#[wasm_bindgen]` lives only here. camelCase names,
//! Promises, typed events, and errors with stable `name`s, converted at this boundary.

mod error;
mod events;
mod js;
mod options;
mod peer;
mod services;
mod shapes;
mod transfer;

pub use peer::Peer;
pub use transfer::{FileOffer, Transfer};

/// Runs when the module is instantiated (`init()`): a panic then reaches the console
/// as a message and a stack instead of `RuntimeError: unreachable`, the storage
/// worker starts before a join needs it, and once the page is idle the join path is
/// compiled, the first join's connection made and its identity claimed (then the
/// message path optimised, if no join started meanwhile).
#[wasm_bindgen::prelude::wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
    crate::web::prestart_storage();
    // Each in a task of its own after this one: `init()` is not delayed.
    wasm_bindgen_futures::spawn_local(async {
        gloo_timers::future::TimeoutFuture::new(0).await;
        rehearse_join();
        gloo_timers::future::TimeoutFuture::new(0).await;
        // The first join's connection, unless a join already made its own.
        if !JOIN_STARTED.get() {
            crate::web::SpareConn::premake();
            crate::web::identity::Identity::preclaim();
        }
        // The message path later, and only on a page that has not joined yet: a join
        // under way would wait for it, and for V8's optimising threads it wakes.
        gloo_timers::future::TimeoutFuture::new(MESSAGE_REHEARSAL_DELAY_MS).await;
        if !JOIN_STARTED.get() {
            crate::core::rehearsal::rehearse_with_burst(MESSAGE_REHEARSAL_BURST);
        }
    });
}

/// After `init()`: long enough for the page's own start-up to be over.
const MESSAGE_REHEARSAL_DELAY_MS: u32 = 500;
/// Broadcasts each way: enough for V8 to optimise the message path (5–30 ms of one
/// idle task; a first 4-tab burst of 167 broadcasts each took ~160 ms instead of ~190;
/// 1,000 did no better).
const MESSAGE_REHEARSAL_BURST: usize = 300;

thread_local! {
    /// Set by the first `Peer.join`: from then on real traffic warms the code.
    static JOIN_STARTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub(crate) fn join_started() {
    JOIN_STARTED.set(true);
}

/// V8 compiles each wasm function on its first call, on the main thread, so a first
/// `Peer.join` used to wait for most of meshdrop to compile: its options are read, and
/// the core's part of a join rehearsed in memory (`core::rehearsal`), while the page is
/// idle instead.
fn rehearse_join() {
    let sample = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&sample, &"signalingUrl".into(), &"ws://127.0.0.1/ws".into());
    let _ = js_sys::Reflect::set(&sample, &"room".into(), &"rehearsal".into());
    let _ = options::parse(sample.into());
    crate::web::identity::warm_storage();
    crate::core::rehearsal::rehearse();
    events::ListenerSink::rehearse();
}
