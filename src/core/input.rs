//! Everything a driver feeds the core, as data: one [`Input`] per browser event, so a
//! session can be recorded, replayed in a native test, and fed to random-input tests.
//! Byte and text payloads borrow where they can ([`Input::into_owned`] keeps one).

use std::borrow::Cow;

use super::output::SdpKind;
use super::path::{Failure, Gathered, IceState, Path};
use super::transfer::{Partial, StoreError, TransferId};
use super::ConnId;

/// A driver's name for a bulk frame it holds while the core decides where its bytes
/// go: an [`StoreOp::Write`](super::StoreOp::Write) names it. A frame no output names
/// by the time the outputs after its input are performed is not needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameId(pub u64);

/// What happened, for the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// The signaling WebSocket opened.
    SignalingOpened,
    /// The signaling WebSocket opened, and the driver already sent
    /// [`CHALLENGE_REQUEST`](super::CHALLENGE_REQUEST) on it: a join's first socket asks
    /// the moment it opens, while the identity is still being claimed, so the nonce is
    /// there when the key is.
    SignalingOpenedAsked,
    /// The signaling WebSocket closed or failed to open; its close code and reason, if a
    /// close frame came.
    SignalingClosed {
        /// Code and reason.
        close: Option<(u16, Cow<'a, str>)>,
    },
    /// A text frame from the signaling server.
    SignalingFrame(Cow<'a, str>),
    /// The browser created and set our local description.
    LocalDescription {
        /// The attempt.
        conn: ConnId,
        /// Offer or answer.
        kind: SdpKind,
        /// The SDP.
        sdp: String,
    },
    /// The browser gathered a local ICE candidate (JSON of `RTCIceCandidateInit`).
    LocalCandidate {
        /// The attempt.
        conn: ConnId,
        /// The candidate.
        candidate: String,
    },
    /// A channel closed, or the connection can no longer be used.
    ConnectionClosed {
        /// The attempt.
        conn: ConnId,
        /// For messages.
        reason: Cow<'a, str>,
    },
    /// The connection's ICE state changed (`iceconnectionstatechange`).
    IceState {
        /// The attempt.
        conn: ConnId,
        /// The new state.
        state: IceState,
    },
    /// Gathering local candidates completed (`icegatheringstatechange` to `complete`).
    CandidatesGathered {
        /// The attempt.
        conn: ConnId,
        /// What it found.
        gathered: Gathered,
    },
    /// The connection failed, with what the browser knows of why.
    ConnectionFailed {
        /// The attempt.
        conn: ConnId,
        /// Why.
        failure: Failure,
    },
    /// How the connection travels, as [`ConnectionOp::ObservePath`](super::ConnectionOp::ObservePath) asked.
    PathObserved {
        /// The attempt.
        conn: ConnId,
        /// The selected candidate pair, classified.
        path: Path,
    },
    /// The data channels opened; `max_message_size` is `pc.sctp.maxMessageSize` (0 if
    /// the browser does not say).
    ChannelOpened {
        /// The attempt.
        conn: ConnId,
        /// The SCTP limit.
        max_message_size: u64,
    },
    /// A frame on the message channel.
    ChannelFrame {
        /// The attempt.
        conn: ConnId,
        /// Its bytes.
        frame: Cow<'a, [u8]>,
    },
    /// The message channel's `bufferedAmount` fell to `buffered` (`bufferedamountlow`).
    ChannelDrained {
        /// The attempt.
        conn: ConnId,
        /// Bytes still buffered.
        buffered: u64,
    },
    /// A frame on the bulk channel; the driver keeps its bytes as `frame`.
    BulkFrame {
        /// The attempt.
        conn: ConnId,
        /// A copy of its bytes, to check.
        bytes: Cow<'a, [u8]>,
        /// The driver's name for the frame, for a write.
        frame: FrameId,
    },
    /// The bulk channel's `bufferedAmount` fell to `buffered`.
    BulkDrained {
        /// The attempt.
        conn: ConnId,
        /// Bytes still buffered.
        buffered: u64,
    },
    /// A block asked for with [`FileOp::Read`](super::FileOp::Read) was read; the driver
    /// keeps its bytes until they are released.
    BlockRead {
        /// The transfer.
        id: TransferId,
        /// The block.
        block: u32,
        /// A copy of its bytes, to hash.
        bytes: Cow<'a, [u8]>,
    },
    /// A block could not be read.
    BlockUnreadable {
        /// The transfer.
        id: TransferId,
        /// What the browser said.
        message: String,
    },
    /// Storage looked for a partial download ([`StoreOp::Probe`](super::StoreOp::Probe)).
    StoreProbed {
        /// The transfer.
        id: TransferId,
        /// What it found.
        partial: Option<Partial>,
    },
    /// Storage opened, or could not.
    StoreOpened {
        /// The transfer.
        id: TransferId,
        /// The outcome.
        result: Result<(), StoreError>,
    },
    /// A block's bytes and hash are stored for good.
    BlockCommitted {
        /// The transfer.
        id: TransferId,
        /// The block.
        block: u32,
    },
    /// Storage closed a finished download, or could not.
    StoreFinished {
        /// The transfer.
        id: TransferId,
        /// The outcome.
        result: Result<(), StoreError>,
    },
    /// Storage failed while receiving (a write or a commit).
    StoreFailed {
        /// The transfer.
        id: TransferId,
        /// What went wrong.
        error: StoreError,
    },
    /// The time [`Mesh::poll_timeout`](super::Mesh::poll_timeout) asked for came (an
    /// early or repeated call does no harm).
    Timeout,
}

impl Input<'_> {
    /// The same input, owning its bytes (to record it).
    pub fn into_owned(self) -> Input<'static> {
        match self {
            Input::SignalingOpened => Input::SignalingOpened,
            Input::SignalingOpenedAsked => Input::SignalingOpenedAsked,
            Input::SignalingClosed { close } => Input::SignalingClosed { close: close.map(|(code, reason)| (code, Cow::Owned(reason.into_owned()))) },
            Input::SignalingFrame(text) => Input::SignalingFrame(Cow::Owned(text.into_owned())),
            Input::LocalDescription { conn, kind, sdp } => Input::LocalDescription { conn, kind, sdp },
            Input::LocalCandidate { conn, candidate } => Input::LocalCandidate { conn, candidate },
            Input::ConnectionClosed { conn, reason } => Input::ConnectionClosed { conn, reason: Cow::Owned(reason.into_owned()) },
            Input::IceState { conn, state } => Input::IceState { conn, state },
            Input::ConnectionFailed { conn, failure } => Input::ConnectionFailed { conn, failure },
            Input::CandidatesGathered { conn, gathered } => Input::CandidatesGathered { conn, gathered },
            Input::PathObserved { conn, path } => Input::PathObserved { conn, path },
            Input::ChannelOpened { conn, max_message_size } => Input::ChannelOpened { conn, max_message_size },
            Input::ChannelFrame { conn, frame } => Input::ChannelFrame { conn, frame: Cow::Owned(frame.into_owned()) },
            Input::ChannelDrained { conn, buffered } => Input::ChannelDrained { conn, buffered },
            Input::BulkFrame { conn, bytes, frame } => Input::BulkFrame { conn, bytes: Cow::Owned(bytes.into_owned()), frame },
            Input::BulkDrained { conn, buffered } => Input::BulkDrained { conn, buffered },
            Input::BlockRead { id, block, bytes } => Input::BlockRead { id, block, bytes: Cow::Owned(bytes.into_owned()) },
            Input::BlockUnreadable { id, message } => Input::BlockUnreadable { id, message },
            Input::StoreProbed { id, partial } => Input::StoreProbed { id, partial },
            Input::StoreOpened { id, result } => Input::StoreOpened { id, result },
            Input::BlockCommitted { id, block } => Input::BlockCommitted { id, block },
            Input::StoreFinished { id, result } => Input::StoreFinished { id, result },
            Input::StoreFailed { id, error } => Input::StoreFailed { id, error },
            Input::Timeout => Input::Timeout,
        }
    }
}
