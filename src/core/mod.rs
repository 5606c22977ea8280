//! The sans-IO protocol core: plain Rust, no browser APIs, no clock. Drivers feed it
//! [`Input`]s ([`Mesh::handle`]), perform what [`Mesh::poll_output`] asks, and feed
//! [`Input::Timeout`] at [`Mesh::poll_timeout`]; see the crate docs for the loop and
//! `docs/architecture.md` for the map.

mod binding;
mod config;
pub mod discovery;
mod error;
mod health;
mod id;
pub mod identity;
mod input;
mod lane;
mod link;
mod mesh;
mod net;
mod order;
mod output;
pub mod path;
mod peers;
pub mod rehearsal;
pub mod request;
pub(crate) mod rng;
mod room_secret;
mod schedule;
pub(crate) mod service;
mod session;
mod signal;
#[cfg(test)]
mod testing;
mod time;
pub mod transfer;
pub mod wire;

pub use config::MeshConfig;
pub use discovery::{Hit, Match, QueryId, ShareId, SharedFile};
pub use error::{JoinError, SendError};
pub use health::{ICE_GRACE_MS, ICE_RESTART_RETRY_MS};
pub use id::{ConnId, PeerId};
pub use identity::Identity;
pub use input::{FrameId, Input};
pub use lane::BUFFERED_LOW_THRESHOLD;
pub use link::{CHALLENGE_REQUEST, PONG_TIMEOUT_MS, SIGNALING_CONNECT_MS, SIGNALING_IDLE_MS};
pub use mesh::Mesh;
pub use output::{Channel, ConnectionOp, Event, FileOp, FileSource, IceServer, Output, SdpKind, SignalingOp, SignalingState, StoreOp};
pub use path::{CandidateStats, CandidateType, FailReason, Failure, Gathered, IceState, Path};
pub use peers::LEFT_PROBE_MS;
pub use request::{RequestError, RequestId};
pub use schedule::MAX_OFFERS_IN_FLIGHT;
pub use time::Millis;
pub use transfer::blocks::Hash;
pub use transfer::{BulkItem, Direction, FileMeta, Partial, Progress, StoreError, TransferError, TransferId};
pub use wire::Payload;
