//! meshdrop: browser tabs talking directly over WebRTC data channels.
//!
//! The crate is two layers. [`core`] is the whole protocol as a sans-IO state machine
//! (peer roles, negotiation, candidate buffering, message framing, flow control,
//! signaling reconnects) that builds and tests natively. On `wasm32`, a thin browser
//! driver runs it against `RTCPeerConnection` and `WebSocket`, and the `Peer` class is
//! the JavaScript API.
//!
//! Every driver runs the same loop, written once:
//!
//! ```
//! use meshdrop::core::{Input, Mesh, MeshConfig, Millis, Output, SignalingOp};
//!
//! let now = Millis(0);
//! let mut mesh = Mesh::new(MeshConfig::new("lobby", None, "x".repeat(32)), 42, now);
//! // 1. feed an input (a WebSocket frame, a channel event, a timer, ...), e.g.:
//! mesh.handle(now, Input::Timeout);
//! // 2. perform every output until there is none
//! while let Some(output) = mesh.poll_output() {
//!     match output {
//!         Output::Signaling(SignalingOp::Open { server }) => { /* open a WebSocket to URL number `server` */ }
//!         _ => { /* create connections, send frames, read and store files, dispatch events */ }
//!     }
//! }
//! // 3. arm one timer for `mesh.poll_timeout()` and wait for the next input.
//! let _next = mesh.poll_timeout();
//! ```
//!
//! `docs/architecture.md` maps the modules and follows a chat message and a file block
//! through them.
#![warn(missing_docs)]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
pub use api::{FileOffer, Peer, Transfer};
#[cfg(target_arch = "wasm32")]
mod web;

/// Talc instead of Rust's default wasm allocator, dlmalloc: every message path calls
/// `malloc`, so V8 optimises it within the first burst of messages, and dlmalloc's is
/// one 5 KiB wasm function that took V8 ~27 ms of a 2-core machine per tab to optimise
/// then. Talc's is 0.4 KiB, and the gzipped bundle is 2.8 KiB smaller.
#[cfg(all(target_arch = "wasm32", feature = "talc"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
