//! What a transfer is, on both sides and on the wire: ids, metadata, progress, the
//! errors that end one, and the items of the bulk channel.

use std::fmt;

use thiserror::Error;

use super::blocks::Hash;
use super::frame::CancelCode;

/// One transfer, the same on both sides (the sender picks it at random).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub(crate) u64);

impl TransferId {
    /// Parses the 16-hex-digit form that `Display` writes.
    pub fn parse(text: &str) -> Option<Self> {
        crate::core::id::parse_hex_u64(text).map(TransferId)
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We send.
    Send,
    /// We receive.
    Receive,
}

impl Direction {
    /// The direction's name in the JS API.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Send => "send",
            Direction::Receive => "receive",
        }
    }
}

/// What a file is, as offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// File name (display only: never used as a path).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type, possibly empty.
    pub mime: String,
}

/// Bytes done so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Sender: verified and stored by the receiver. Receiver: arrived.
    pub bytes: u64,
    /// The file size.
    pub total: u64,
    /// Over the last two seconds.
    pub bytes_per_second: f64,
}

/// A receiver's earlier, incomplete download of some content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partial {
    /// The peer that was sending it (none for a multi-source download).
    pub from: Option<String>,
    /// The transfer it was stored for, as [`StoreOp::Open`] said.
    ///
    /// [`StoreOp::Open`]: crate::core::StoreOp::Open
    pub transfer: Option<TransferId>,
    /// Blocks already verified and stored, with their hashes.
    pub blocks: Vec<(u32, Hash)>,
}

/// A storage failure reported by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// The quota is exhausted.
    pub full: bool,
    /// What the browser said.
    pub message: String,
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransferError {
    /// The receiver declined the offer.
    #[error("declined: {0}")]
    Declined(String),
    /// Cancelled, by us or by the peer.
    #[error("cancelled by {}{}", if *.by_peer { "the peer" } else { "us" }, if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Cancelled {
        /// The other side cancelled.
        by_peer: bool,
        /// Their words, if any.
        reason: String,
    },
    /// The peer left and did not come back within this many ms (0: an offer whose
    /// sender left before it was answered).
    #[error("peer left{}", if *.0 > 0 { format!(" and did not come back within {} ms", .0) } else { String::new() })]
    PeerLeft(u64),
    /// A block or the whole file did not match its hash; nothing was delivered.
    #[error("hash mismatch: {0}")]
    HashMismatch(String),
    /// The receiver's storage is full.
    #[error("storage full: {0}")]
    StorageFull(String),
    /// The receiver could not store the file.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The sender could not read the file (moved, deleted, or changed while sending).
    #[error("file unreadable: {0}")]
    Unreadable(String),
    /// The peer broke the transfer protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// `leave()` was called.
    #[error("this peer has left the room")]
    Closed,
    /// The holder does not share this file (any more): it never was, or was unshared.
    #[error("not shared: {0}")]
    NotShared(String),
    /// The receiver has too many offers waiting for an answer; offer again later.
    #[error("busy: {0}")]
    Busy(String),
    /// Every holder of a download stopped sending (none for this many ms) without
    /// leaving.
    #[error("the holders sent nothing for {0} ms")]
    Stalled(u64),
}

impl TransferError {
    /// What to tell the other side when this ends a transfer.
    pub(crate) fn wire(&self) -> (CancelCode, String) {
        match self {
            TransferError::HashMismatch(m) => (CancelCode::HashMismatch, m.clone()),
            TransferError::StorageFull(m) => (CancelCode::StorageFull, m.clone()),
            TransferError::Storage(m) => (CancelCode::Storage, m.clone()),
            TransferError::Unreadable(m) => (CancelCode::Unreadable, m.clone()),
            TransferError::Protocol(m) => (CancelCode::Protocol, m.clone()),
            TransferError::NotShared(m) => (CancelCode::NotShared, m.clone()),
            TransferError::Busy(m) => (CancelCode::Busy, m.clone()),
            TransferError::Cancelled { reason, .. } => (CancelCode::Cancelled, reason.clone()),
            TransferError::Declined(m) => (CancelCode::Cancelled, m.clone()),
            TransferError::PeerLeft(_) | TransferError::Closed | TransferError::Stalled(_) => (CancelCode::Cancelled, self.to_string()),
        }
    }

    /// The error the other side reported.
    pub(crate) fn from_wire(code: CancelCode, reason: String) -> Self {
        match code {
            CancelCode::Cancelled => TransferError::Cancelled { by_peer: true, reason },
            CancelCode::HashMismatch => TransferError::HashMismatch(reason),
            CancelCode::StorageFull => TransferError::StorageFull(reason),
            CancelCode::Storage => TransferError::Storage(reason),
            CancelCode::Unreadable => TransferError::Unreadable(reason),
            CancelCode::Protocol => TransferError::Protocol(reason),
            CancelCode::NotShared => TransferError::NotShared(reason),
            CancelCode::Busy => TransferError::Busy(reason),
        }
    }
}

/// What to put on the bulk channel: a frame the core built (a block header or an end),
/// or a slice of a block the driver read and holds (see [`FileOp`]).
///
/// [`FileOp`]: crate::core::FileOp
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkItem {
    /// Send these bytes, of transfer `id`.
    Frame {
        /// The transfer it belongs to.
        id: TransferId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// Send bytes `start..start + len` of block `block` of transfer `id`; after the
    /// `last` slice the driver may drop the block.
    Slice {
        /// The transfer.
        id: TransferId,
        /// The block.
        block: u32,
        /// Offset within the block.
        start: u32,
        /// Bytes.
        len: u32,
        /// No more slices of this block follow.
        last: bool,
    },
}

impl BulkItem {
    /// Bytes on the wire.
    pub fn len(&self) -> u64 {
        match self {
            BulkItem::Frame { bytes, .. } => bytes.len() as u64,
            BulkItem::Slice { len, .. } => u64::from(*len),
        }
    }

    /// Whether it carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The transfer it belongs to.
    pub fn transfer(&self) -> TransferId {
        match self {
            BulkItem::Frame { id, .. } | BulkItem::Slice { id, .. } => *id,
        }
    }
}
