//! The core's errors. Messages are short and lowercase; the JS layer maps each kind to
//! an `Error` with a stable `name`.

use thiserror::Error;

use super::PeerId;

/// Why a message could not be queued for a peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// No open data channel with that peer.
    #[error("no open connection to peer {0}")]
    NotConnected(PeerId),
    /// The message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Too much is already waiting to be sent to that peer.
    #[error("send queue to peer {0} is full; wait for earlier messages to drain")]
    QueueFull(PeerId),
    /// `leave()` was called.
    #[error("this peer has left the room")]
    Closed,
}

/// Why joining failed before the server welcomed us.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JoinError {
    /// The WebSocket closed (or never opened) before a welcome.
    #[error("signaling server unreachable or closed the connection before welcoming us")]
    Unreachable,
    /// The server refused the join.
    #[error("signaling server refused to join: {code}: {message}")]
    Refused {
        /// The server's error code, e.g. `room-full`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// `leave()` was called before the join completed.
    #[error("left before the join completed")]
    Cancelled,
}
