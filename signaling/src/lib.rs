//! meshdrop's signaling server: introduces browser peers to each other by relaying
//! their WebRTC offers, answers and ICE candidates within a room, and nothing else.
//!
//! The wire protocol is in [`protocol`] (shared with the client, always built) and
//! described in `PROTOCOL.md`. With the default `server` feature this crate also
//! provides the server:
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = meshdrop_signal::bind("127.0.0.1:8080".parse().unwrap())?;
//! meshdrop_signal::serve(listener, meshdrop_signal::Config::default(), std::future::pending()).await
//! # }
//! ```
#![warn(missing_docs)]

pub mod json;
pub mod protocol;
#[cfg(feature = "rooms")]
pub mod rooms;

#[cfg(feature = "server")]
mod admission;
#[cfg(feature = "server")]
mod cluster;
#[cfg(feature = "server")]
mod coalesce;
#[cfg(feature = "server")]
pub mod ice;
#[cfg(feature = "server")]
mod identity;
#[cfg(feature = "server")]
mod limit;
#[cfg(feature = "server")]
mod metrics;
#[cfg(feature = "server")]
mod remote;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod ws;

#[cfg(feature = "server")]
pub use server::{bind, serve, Config, ACCEPT_BACKLOG, WWW_CSP};
