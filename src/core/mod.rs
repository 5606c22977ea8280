//! The sans-IO protocol core: plain Rust, no browser APIs, no clock. Drivers feed it
//! inputs (`handle_*`), perform what [`Mesh::poll_output`] asks, and call
//! [`Mesh::handle_timeout`] at [`Mesh::poll_timeout`]; see the crate docs for the loop.

pub mod discovery;
mod error;
mod id;
mod mesh;
pub mod request;
pub(crate) mod rng;
pub(crate) mod service;
mod session;
pub use session::BUFFERED_LOW_THRESHOLD;
mod signal;
mod time;
pub mod transfer;
pub mod wire;

pub use discovery::{Hit, Match, QueryId, ShareId, SharedFile};
pub use error::{JoinError, SendError};
pub use id::{ConnId, PeerId};
pub use mesh::{Event, Mesh, MeshConfig, Output, SdpKind, SignalingState, LEFT_PROBE_MS, MAX_OFFERS_IN_FLIGHT};
pub use request::{RequestError, RequestId};
pub use time::Millis;
pub use transfer::blocks::Hash;
pub use transfer::BulkVerdict;
pub use transfer::{BulkItem, Direction, FileMeta, Partial, Progress, StoreError, TransferError, TransferId};
pub use wire::Payload;
