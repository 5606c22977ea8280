//! Everything the core asks of a driver, grouped by what performs it: the signaling
//! socket, the peer connections, the files being sent, the storage of files being
//! received — and the events for the user.

use super::discovery::{Hit, QueryId, ShareId};
use super::error::JoinError;
use super::input::FrameId;
use super::path::{FailReason, Path};
use super::request::{RequestError, RequestId};
use super::transfer::{BulkItem, FileMeta, Hash, Progress, TransferError, TransferId};
use super::wire::Payload;
use super::{ConnId, PeerId};
pub use meshdrop_signal::protocol::IceServer;

/// Where the signaling connection stands, as users see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalingState {
    /// Joined; new peers can be met.
    Connected,
    /// Lost; retrying with backoff. Open peer connections are unaffected.
    Reconnecting,
    /// Closed for good: `leave()`, the first join failed, or another connection took
    /// our id over (then open peer connections stay, but no new peer can be met).
    Closed,
}

impl SignalingState {
    /// The state's name in the JS API.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalingState::Connected => "connected",
            SignalingState::Reconnecting => "reconnecting",
            SignalingState::Closed => "closed",
        }
    }
}

/// An SDP's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// `offer`
    Offer,
    /// `answer`
    Answer,
}

/// Things that happened, for the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server welcomed us for the first time.
    Joined {
        /// Our id for the life of this mesh.
        id: PeerId,
    },
    /// The first join failed; the mesh is closed.
    JoinFailed(JoinError),
    /// The signaling connection changed state.
    Signaling {
        /// The new state.
        state: SignalingState,
        /// Why it closed, when it closed for a reason other than `leave()`.
        reason: Option<String>,
    },
    /// We started connecting to this peer; `PeerJoined` or `PeerLeft` follows.
    PeerConnecting {
        /// Who.
        id: PeerId,
        /// Their display name.
        name: Option<String>,
    },
    /// A data channel to this peer opened.
    PeerJoined {
        /// Who.
        id: PeerId,
        /// Their display name.
        name: Option<String>,
    },
    /// The data channel to this peer closed, or an announced attempt was abandoned
    /// because the peer left the room.
    PeerLeft {
        /// Who.
        id: PeerId,
    },
    /// The connection to this peer lost its network path; it is being restored (an ICE
    /// restart) with the session kept: messages wait, transfers pause.
    PeerReconnecting {
        /// Who.
        id: PeerId,
    },
    /// The connection to this peer has a network path again.
    PeerReconnected {
        /// Who.
        id: PeerId,
    },
    /// How the connection to this peer travels, when first known and whenever it changes.
    PeerPath {
        /// Who.
        id: PeerId,
        /// Direct or relayed, over what.
        path: Path,
    },
    /// A connection attempt to this peer failed (it is tried again while the peer is in
    /// the room).
    PeerFailed {
        /// Who.
        id: PeerId,
        /// Why, as a stable code.
        reason: FailReason,
        /// What a user needs to know.
        message: String,
    },
    /// A whole message arrived.
    Message {
        /// Sender.
        from: PeerId,
        /// What they sent.
        payload: Payload,
    },
    /// Something went wrong that needs no action: a peer's bad frame, a refused signal.
    Warning(String),
    /// A peer offers us a file; answer with [`Mesh::accept_file`](super::Mesh::accept_file) or
    /// [`Mesh::reject_file`](super::Mesh::reject_file).
    FileOffer {
        /// The transfer.
        id: TransferId,
        /// Who offers it.
        from: PeerId,
        /// What it is.
        meta: FileMeta,
        /// Its content hash, if the sender knows it already.
        hash: Option<Hash>,
        /// Bytes of it we hold already from an earlier, interrupted download.
        have: u64,
    },
    /// A transfer we receive started without an offer: the same sender came back with
    /// content we were receiving from it before (one of us reloaded).
    TransferStarted {
        /// The transfer.
        id: TransferId,
        /// The sender.
        peer: PeerId,
        /// What it is.
        meta: FileMeta,
    },
    /// The peer left mid-transfer; it continues if the peer comes back in time.
    TransferPaused {
        /// The transfer.
        id: TransferId,
    },
    /// The transfer is (again) moving bytes.
    TransferResumed {
        /// The transfer.
        id: TransferId,
    },
    /// Bytes done so far, at most every 200 ms.
    TransferProgress {
        /// The transfer.
        id: TransferId,
        /// Where it stands.
        progress: Progress,
    },
    /// Sent: the receiver verified and stored it. Received: verified and stored.
    TransferDone {
        /// The transfer.
        id: TransferId,
        /// The content hash.
        hash: Hash,
    },
    /// The transfer (or an offer not yet answered) ended without the file.
    TransferFailed {
        /// The transfer.
        id: TransferId,
        /// Why.
        error: TransferError,
    },
    /// Bytes each holder of a multi-source download served so far (verified), with
    /// each progress report and once more before it ends.
    TransferSources {
        /// The download.
        id: TransferId,
        /// Holders in the order given, with their bytes.
        sources: Vec<(PeerId, u64)>,
    },
    /// A query ended: every asked peer answered (or left), or time ran out.
    FindDone {
        /// The query.
        id: QueryId,
        /// What the peers have, sorted by name, then peer.
        hits: Vec<Hit>,
    },
    /// A peer calls a method we handle; answer with [`Mesh::respond`](super::Mesh::respond).
    Request {
        /// The caller.
        from: PeerId,
        /// The caller's id for it (pass to `respond`).
        id: u64,
        /// The method.
        method: String,
        /// Its argument.
        payload: Payload,
    },
    /// One of our requests ended.
    Response {
        /// The request.
        id: RequestId,
        /// The reply, or why there is none.
        result: Result<Payload, RequestError>,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The signaling WebSocket.
    Signaling(SignalingOp),
    /// Peer connections and their data channels.
    Connection(ConnectionOp),
    /// Files being sent or served.
    File(FileOp),
    /// Storage of files being received.
    Store(StoreOp),
    /// Tell the user.
    Event(Event),
}

/// The signaling WebSocket.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalingOp {
    /// Open it; report [`Input::SignalingOpened`] or [`Input::SignalingClosed`].
    ///
    /// [`Input::SignalingOpened`]: super::Input::SignalingOpened
    /// [`Input::SignalingClosed`]: super::Input::SignalingClosed
    Open {
        /// Which of the driver's signaling URLs (below `MeshConfig::signaling_servers`).
        server: usize,
    },
    /// Send this text frame.
    Send(String),
    /// Close it; no further signaling input is expected from it.
    Close,
}

/// One of a connection's two data channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Messages, requests and transfer control (channel 0).
    Messages,
    /// File data (channel 1).
    Bulk,
}

/// RTCPeerConnections and their two pre-negotiated channels.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionOp {
    /// Create an RTCPeerConnection and its data channels.
    Create {
        /// Remote peer.
        peer: PeerId,
        /// The attempt.
        conn: ConnId,
    },
    /// Create an offer, set it as local description, report
    /// [`Input::LocalDescription`](super::Input::LocalDescription).
    CreateOffer {
        /// The attempt.
        conn: ConnId,
    },
    /// Apply a remote description; report [`Input::ConnectionClosed`] if it is
    /// rejected. `AddIceCandidate`s for the same connection may follow at once: apply
    /// them after it, in order (RTCPeerConnection's operations chain does).
    ///
    /// [`Input::ConnectionClosed`]: super::Input::ConnectionClosed
    SetRemoteDescription {
        /// The attempt.
        conn: ConnId,
        /// Offer or answer.
        kind: SdpKind,
        /// The SDP text.
        sdp: String,
    },
    /// Create an answer, set it as local description, report
    /// [`Input::LocalDescription`](super::Input::LocalDescription). Follows
    /// `SetRemoteDescription` of the offer immediately: perform it after that one in
    /// the browser's order (RTCPeerConnection's operations chain does).
    CreateAnswer {
        /// The attempt.
        conn: ConnId,
    },
    /// Add a remote ICE candidate (JSON of an `RTCIceCandidateInit`).
    AddIceCandidate {
        /// The attempt.
        conn: ConnId,
        /// The candidate.
        candidate: String,
    },
    /// Send one frame on the message channel.
    Transmit {
        /// The attempt.
        conn: ConnId,
        /// The frame.
        frame: Vec<u8>,
        /// `Some(limit)`: the peer takes batches, so this frame may go in one
        /// (`wire::Batch`) with the frames sent around it, at most `limit` bytes.
        batch: Option<usize>,
    },
    /// Send this on the bulk channel.
    TransmitBulk {
        /// The attempt.
        conn: ConnId,
        /// What.
        item: BulkItem,
    },
    /// Set one channel's `bufferedAmountLowThreshold` (its lane's window changed).
    SetLowThreshold {
        /// The attempt.
        conn: ConnId,
        /// Which channel.
        channel: Channel,
        /// The threshold, in bytes.
        bytes: u64,
    },
    /// Close and forget this connection; no further input is expected from it.
    Close {
        /// The attempt.
        conn: ConnId,
    },
    /// Restart ICE on this connection and create a new offer, set it as local
    /// description, report [`Input::LocalDescription`](super::Input::LocalDescription)
    /// (`pc.restartIce()`, then `setLocalDescription()`).
    RestartIce {
        /// The attempt.
        conn: ConnId,
    },
    /// Find out how this connection travels (the selected candidate pair) and report
    /// [`Input::PathObserved`](super::Input::PathObserved).
    ObservePath {
        /// The attempt.
        conn: ConnId,
    },
    /// The signaling server's STUN and TURN servers, for connections from now on (and
    /// `setConfiguration` on open ones: TURN credentials expire). The driver merges them
    /// with the application's own, which win.
    UseIceServers(Vec<IceServer>),
}

/// Where a block to read comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSource {
    /// The file the transfer sends.
    Sending,
    /// A shared file, served to a downloader.
    Shared(ShareId),
}

/// Files being sent or served. The driver keeps the bytes of every block it read for
/// the [`BulkItem::Slice`]s that follow, until it is told to let them go: by the
/// block's `last` slice, or by a release.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOp {
    /// Read bytes `offset..offset + len` of transfer `id`'s file; report
    /// [`Input::BlockRead`](super::Input::BlockRead) or
    /// [`Input::BlockUnreadable`](super::Input::BlockUnreadable).
    Read {
        /// The transfer.
        id: TransferId,
        /// Which file.
        source: FileSource,
        /// The block.
        block: u32,
        /// Where in the file.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// Drop the bytes of one block read (only its hash was needed).
    ReleaseBlock {
        /// The transfer.
        id: TransferId,
        /// The block.
        block: u32,
    },
    /// Drop every block of transfer `id` kept for slices, except `except`, whose
    /// remaining slices are still to be sent (a block half on the wire must be
    /// finished, or the receiver would read what follows as its bytes).
    Release {
        /// The transfer.
        id: TransferId,
        /// A block still being sent.
        except: Option<u32>,
    },
}

/// Storage of files being received. A transfer's operations must be performed in the
/// order given: its writes, commits and finish may follow `Open` before
/// [`Input::StoreOpened`](super::Input::StoreOpened) is reported, and a failed open
/// fails them (the core then fails the transfer).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Look for a partial download stored under `key`; report
    /// [`Input::StoreProbed`](super::Input::StoreProbed).
    Probe {
        /// The transfer.
        id: TransferId,
        /// The content key.
        key: String,
    },
    /// Open storage for the content under `key`: the partial download that `Probe`
    /// reported for this transfer, if any, else a new one; report
    /// [`Input::StoreOpened`](super::Input::StoreOpened). Keep `id`, `from` and `meta`
    /// with it (a later probe reports them). A finished download is final: it is never
    /// reported as a partial or opened again, so nothing writes into a file once
    /// delivered.
    Open {
        /// The transfer.
        id: TransferId,
        /// The content key.
        key: String,
        /// The sender (none for a multi-source download).
        from: Option<PeerId>,
        /// What it is.
        meta: FileMeta,
        /// Whether it must survive a reload, to resume: false for a file of at most one
        /// block, which resumes from nothing (it is never probed for). The driver may
        /// keep such a file in memory.
        durable: bool,
    },
    /// Store the bulk frame the driver named `frame` at `offset` of transfer `id`'s file.
    Write {
        /// The transfer.
        id: TransferId,
        /// Where in the file.
        offset: u64,
        /// The frame, as [`Input::BulkFrame`](super::Input::BulkFrame) named it.
        frame: FrameId,
    },
    /// Store `bytes` at `offset` of transfer `id`'s file: a small file that came whole
    /// with its offer.
    Put {
        /// The transfer.
        id: TransferId,
        /// Where in the file.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Every byte of `block` has been written: record its hash after them; report
    /// [`Input::BlockCommitted`](super::Input::BlockCommitted).
    Commit {
        /// The transfer.
        id: TransferId,
        /// The block.
        block: u32,
        /// Its verified hash.
        hash: Hash,
    },
    /// The file is complete and verified: flush and close its storage, and make it
    /// available; report [`Input::StoreFinished`](super::Input::StoreFinished).
    Finish {
        /// The transfer.
        id: TransferId,
    },
    /// Close the storage of a transfer that ended without the file; `delete` drops
    /// what was stored (it was cancelled), otherwise it stays for a later resume.
    Close {
        /// The transfer.
        id: TransferId,
        /// Remove the partial download.
        delete: bool,
    },
}

/// Queues a warning for the user.
pub(crate) fn warn(out: &mut std::collections::VecDeque<Output>, message: String) {
    out.push_back(Output::Event(Event::Warning(message)));
}
