//! User listeners by event type, the payload objects they receive, and their types.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use web_sys::{File, FilePropertyBag};

use super::js::Listeners;
use super::shapes::{self, to_js, PeerInfo};
use super::transfer::{FileOffer, Transfer, TransferState};
use crate::core::{Direction, Event, Payload, TransferId};
use crate::web::driver::{Delivery, EventSink};
use crate::web::Driver;

#[wasm_bindgen(typescript_custom_section)]
const EVENT_TYPES: &'static str = r#"
/** The `name` of every error meshdrop throws or rejects with, besides `TypeError`
 *  for arguments of the wrong kind. Branch on it, never on the message:
 *
 *  ```ts
 *  try { await peer.send(id, "hi"); }
 *  catch (err) { if ((err as MeshdropError).name === "NotConnectedError") retryLater(); }
 *  ``` */
export type MeshdropErrorName =
  | "SignalingError" | "NotConnectedError" | "MessageTooLargeError" | "QueueFullError" | "ClosedError"
  | "DeclinedError" | "CancelledError" | "PeerLeftError" | "HashMismatchError" | "StorageFullError"
  | "StorageError" | "FileUnreadableError" | "ProtocolError" | "BusyError" | "NotSharedError"
  | "NoSuchMethodError" | "HandlerError" | "TimeoutError";

/** An error from meshdrop: an `Error` whose `name` says which. */
export interface MeshdropError extends Error {
  /** Which error: stable across versions. */
  name: MeshdropErrorName;
}

/** Why `Peer.join` failed: the server could not be reached (or closed before welcoming
 *  us), `leave()` was called first, or the server's own code. A newer server may send
 *  codes this version does not list. */
export type SignalingErrorCode =
  | "unreachable" | "cancelled" | "room-full" | "bad-room" | "bad-name" | "bad-secret"
  | "rate-limited" | "replaced" | (string & {});

/** `Peer.join` rejects with this. */
export interface SignalingError extends MeshdropError {
  /** Always "SignalingError". */
  name: "SignalingError";
  /** Why, for code to branch on. */
  code: SignalingErrorCode;
}

/** A file on its way to a peer (`Peer.sendFile`): `done` resolves to nothing once the
 *  receiver verified and stored all of it. */
export interface SendTransfer extends Transfer {
  /** Always "send". */
  readonly direction: "send";
  /** Resolves once the receiver verified and stored the whole file. */
  readonly done: Promise<void>;
}

/** A file on its way here (`FileOffer.accept`, `Peer.download`, the "transfer"
 *  event): `done` resolves to the verified `File`. */
export interface ReceiveTransfer extends Transfer {
  /** Always "receive". */
  readonly direction: "receive";
  /** Resolves to the verified `File` (stored in OPFS where it can be; a file of at
   *  most 1 MiB, which could not resume anyway, is kept in memory). */
  readonly done: Promise<File>;
}

/** A peer in the room with an open data channel. */
export interface PeerInfo {
  /** Stable for the life of that peer's `Peer`; assigned by the signaling server. */
  id: string;
  /** The name it joined with, if any. */
  name?: string;
}

/** Why a connection attempt failed: no local address at all; no pair of addresses
 *  worked (the message says whether a TURN server was configured); the encrypted
 *  handshake failed; or it did not open within `connectTimeoutMs`. */
export type PeerFailureReason = "no-candidates" | "ice-failed" | "dtls-failed" | "timeout" | "impostor" | "wrong-room-secret";

/** How a connection travels. */
export interface ConnectionPath {
  /** "relayed" when it goes through a TURN server (on either side). */
  path: "direct" | "relayed";
  /** Our candidate's type: host (our address), srflx (our NAT's, from STUN), prflx
   *  (learned from the peer's checks) or relay (the TURN server's). */
  local: "host" | "srflx" | "prflx" | "relay";
  /** The peer's candidate's type. */
  remote: "host" | "srflx" | "prflx" | "relay";
  /** Between the peers, or to the TURN server when relayed: "udp", "tcp" or "tls". */
  protocol: string;
}

/** A connection's path and how it is doing, from `Peer.connection`. */
export interface ConnectionInfo extends ConnectionPath {
  /** The current round trip time, if the browser measured one. */
  rttMs: number | null;
  /** Bytes sent on this connection so far (all channels, with overhead). */
  bytesSent: number;
  /** Bytes received on it so far. */
  bytesReceived: number;
}

/** The signaling connection: peers already connected are unaffected by it. */
export type SignalingState = "connected" | "reconnecting" | "closed";

/** Event payloads by event type. */
export interface PeerEventMap {
  /** We started connecting to this peer; "peer-joined" or "peer-left" follows. */
  "peer-connecting": PeerInfo;
  /** A data channel to this peer opened (also for peers present before we joined). */
  "peer-joined": PeerInfo;
  /** The data channel to this peer closed, or an announced attempt ended because it left. */
  "peer-left": {
    /** The peer's id. */
    id: string;
  };
  /** The connection to this peer lost its network path and is being restored (an ICE
   *  restart): the session is kept, messages wait, transfers pause. "peer-reconnected"
   *  follows, or "peer-left" after `reconnectTimeoutMs`. */
  "peer-reconnecting": {
    /** The peer's id. */
    id: string;
  };
  /** The connection to this peer has a network path again. */
  "peer-reconnected": {
    /** The peer's id. */
    id: string;
  };
  /** How the connection to this peer travels: when first known (looked up once the page is
   *  idle after the connection opens, within a second) and whenever it changes. */
  "peer-path": {
    /** The peer's id. */
    id: string;
  } & ConnectionPath;
  /** A connection attempt to this peer failed; it is tried again while the peer is in
   *  the room. `message` says what a user needs to know. */
  "peer-failed": {
    /** The peer's id. */
    id: string;
    /** Why, for code to branch on. */
    reason: PeerFailureReason;
    /** Why, for people: what to check or change. */
    message: string;
  };
  /** A whole message: a string if a string was sent, else a Uint8Array. */
  "message": {
    /** The sender's id. */
    from: string;
    /** The message as sent: a string, or bytes. */
    data: string | Uint8Array;
  };
  /** The signaling connection changed state. `reason` says why it closed when that
   *  was not `leave()`: e.g. another tab or device joined with this identity, which
   *  ends signaling here for good (connected peers stay connected). */
  "signaling": {
    /** The new state. */
    state: SignalingState;
    /** Why it closed, when that was not `leave()`. */
    reason?: string;
  };
  /** Something went wrong that needs no action (e.g. a peer sent a malformed frame). */
  "warning": {
    /** What happened, for people (and logs). */
    message: string;
  };
  /** A peer offers a file: call `accept()` (returns the `Transfer`) or `reject(reason)`. */
  "file-offer": FileOffer;
  /** A download resumed by itself: the same sender came back with content we were
   *  receiving from it before one of us reloaded. The user already accepted it. */
  "transfer": ReceiveTransfer;
}

/** Transfer event payloads by event type. */
export interface TransferEventMap {
  /** At least 4 a second while bytes flow. Sender: bytes the receiver verified and
   *  stored; receiver: bytes arrived. */
  "progress": {
    /** Bytes so far (sender: verified and stored by the receiver; receiver: arrived). */
    bytes: number;
    /** The file's size. */
    total: number;
    /** Recent rate. */
    bytesPerSecond: number;
  };
  /** The peer left; the transfer continues if it comes back in time (`resumeTimeoutMs`). */
  "paused": {};
  /** Bytes flow again (also when the receiver accepts). */
  "resumed": {};
}

export interface Transfer {
  /** Calls `listener` for every event of `type` until `off`. */
  on<K extends keyof TransferEventMap>(type: K, listener: (event: TransferEventMap[K]) => void): void;
  /** Removes a listener added with `on`. */
  off<K extends keyof TransferEventMap>(type: K, listener: (event: TransferEventMap[K]) => void): void;
}

export interface FileOffer {
  /** "withdrawn": the offer ended before an answer (the sender cancelled, or left and
   *  did not come back); `name` is the error's name, e.g. "CancelledError". */
  on(type: "withdrawn", listener: (event: { name: string; reason: string }) => void): void;
  /** Removes a listener added with `on`. */
  off(type: "withdrawn", listener: (event: { name: string; reason: string }) => void): void;
}

/** Options for `Peer.sendFile`. */
export interface SendFileOptions {
  /** The name the receiver sees. Default: the File's name, or "file". */
  name?: string;
}

/** Options for `Peer.share`. */
export interface ShareOptions {
  /** The name others find it by. Default: the File's name, or "file". */
  name?: string;
}

/** The event types `Peer.on` accepts. */
export type PeerEventType = keyof PeerEventMap;

/** Options for `Peer.join`. */
export interface JoinOptions {
  /** WebSocket URL of a meshdrop-signal server, e.g. "ws://127.0.0.1:8080/ws"; or
   *  several instances that share rooms through Redis (at most 16). Each is tried in
   *  turn: on joining, and whenever the one in use fails or drains (close code 1012),
   *  keeping this peer's id and its open connections. The client adds
   *  `challenge=first` to each URL's query (the server then sends its challenge
   *  with the handshake: one round trip less per join; servers without it ignore it). */
  signalingUrl: string | string[];
  /** 1-64 characters of A-Z a-z 0-9 _ -. */
  room: string;
  /** A secret shared by the room's members (1-1024 bytes), never sent anywhere: each
   *  connection proves that both ends know it (SPAKE2 over signaling, bound to the
   *  connection's DTLS fingerprints) before any message flows. A peer without it, the
   *  signaling server included, gets one guess per connection attempt, seen by both
   *  sides as "peer-failed" with reason "wrong-room-secret". */
  roomSecret?: string;
  /** Display name shown to the others (at most 64 characters). */
  name?: string;
  /** STUN/TURN servers. Merged with those the signaling server hands out (with TURN
   *  credentials it refreshes); these win for the same URL. None by default. */
  iceServers?: RTCIceServer[];
  /** "relay" to use TURN only. Default "all". */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Largest message accepted from a peer, in bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** Give up on a connection attempt after this long (it is retried). Default 20000. */
  connectTimeoutMs?: number;
  /** How long a connection that lost its network path may take to get one back (ICE
   *  restarts, keeping the session) before the peer counts as gone. Default 30000. */
  reconnectTimeoutMs?: number;
  /** How long a transfer waits for a peer that left to come back. Default 120000. */
  resumeTimeoutMs?: number;
  /** Stored downloads (finished or partial) untouched for this long are removed a few
   *  seconds after a Peer joins. Default 86400000 (a day). */
  storageMaxAgeMs?: number;
  /** "persistent" (default): this tab keeps its id across reloads (a secret kept in
   *  localStorage, held by one tab at a time with a Web Lock), which lets transfers
   *  resume by themselves. "ephemeral": a new id every time. */
  identity?: "persistent" | "ephemeral";
}

/** What `send` and `broadcast` accept. */
export type MessageData = string | Uint8Array | ArrayBuffer | ArrayBufferView;

export interface Peer {
  /** Calls `listener` for every event of `type` until `off`. */
  on<K extends PeerEventType>(type: K, listener: (event: PeerEventMap[K]) => void): void;
  /** Removes a listener added with `on`. */
  off<K extends PeerEventType>(type: K, listener: (event: PeerEventMap[K]) => void): void;
}
"#;

/// The event types `on` accepts.
pub(crate) const EVENT_TYPES_LIST: [&str; 12] = [
    "peer-connecting",
    "peer-joined",
    "peer-left",
    "peer-reconnecting",
    "peer-reconnected",
    "peer-path",
    "peer-failed",
    "message",
    "signaling",
    "warning",
    "file-offer",
    "transfer",
];

/// `{ path, local, remote, protocol }` of a connection's path (with the peer's `id`
/// in "peer-path").
pub(crate) fn path_info<'a>(id: Option<&'a str>, path: &'a crate::core::Path) -> shapes::PathInfo<'a> {
    shapes::PathInfo { id, path: path.kind(), local: path.local.as_str(), remote: path.remote.as_str(), protocol: &path.protocol }
}

/// What a `Peer` and its event sink share: listeners, live transfers, the driver.
#[derive(Default)]
pub(crate) struct PeerState {
    pub(crate) listeners: Listeners,
    pub(crate) services: super::services::Services,
    pub(crate) transfers: RefCell<HashMap<TransferId, Rc<TransferState>>>,
    pub(crate) driver: RefCell<Weak<Driver>>,
    /// Peer ids as JS strings, while the peer is connected.
    ids: RefCell<HashMap<crate::core::PeerId, JsValue>>,
}

impl PeerState {
    /// A peer's id as a JS string, made once per peer: every message carries it.
    fn js_id(&self, peer: &crate::core::PeerId) -> JsValue {
        if let Some(id) = self.ids.borrow().get(peer) {
            return id.clone(); // the common case, without copying the id to look it up
        }
        self.ids.borrow_mut().entry(peer.clone()).or_insert_with(|| JsValue::from_str(peer.as_str())).clone()
    }

    /// A transfer that ended; with the last one, the screen may sleep again.
    fn remove_transfer(&self, id: &TransferId) -> Option<Rc<TransferState>> {
        let mut transfers = self.transfers.borrow_mut();
        let removed = transfers.remove(id);
        if transfers.is_empty() {
            crate::web::keep_awake(false);
        }
        removed
    }

    fn transfer(&self, id: &TransferId) -> Option<Rc<TransferState>> {
        self.transfers.borrow().get(id).cloned()
    }

    /// A new transfer object, registered for its events.
    pub(crate) fn register(&self, id: TransferId, peer: &str, meta: crate::core::FileMeta, direction: Direction) -> Rc<TransferState> {
        let shared = TransferState::new(id, peer, meta, direction, self.driver.borrow().clone());
        self.transfers.borrow_mut().insert(id, shared.clone());
        shared
    }
}

/// Delivers core events to the listeners (shared with the `Peer`).
pub(crate) struct ListenerSink(pub(crate) Rc<PeerState>);

impl EventSink for ListenerSink {
    fn deliver(&self, delivery: Delivery) {
        let Delivery { event, file } = delivery;
        match event {
            // Messages come in bursts: their path stays small, so V8 optimises it soon.
            Event::Message { from, payload } => {
                let shared = &self.0;
                shared.listeners.emit_message(&shared.js_id(&from), || match payload {
                    Payload::Text(text) => JsValue::from_str(&text),
                    Payload::Binary(bytes) => Uint8Array::from(bytes.as_slice()).into(),
                });
            }
            other => self.deliver_other(other, file),
        }
    }
}

impl ListenerSink {
    /// A join's events delivered to a sink no one listens to, so that V8 has compiled
    /// their way to the page before a join (see `api::rehearse_join`).
    pub(crate) fn rehearse() {
        let sink = ListenerSink(Rc::new(PeerState::default()));
        let id = crate::core::PeerId::new("rehearsal");
        let events = [
            Event::Signaling { state: crate::core::SignalingState::Connected, reason: None },
            Event::PeerConnecting { id: id.clone(), name: None },
            Event::PeerJoined { id, name: Some("rehearsal".into()) },
        ];
        for event in events {
            sink.deliver(Delivery { event, file: None });
        }
    }

    #[inline(never)]
    fn deliver_other(&self, event: Event, file: Option<web_sys::Blob>) {
        let shared = &self.0;
        let (kind, payload) = match event {
            Event::PeerConnecting { id, name } => ("peer-connecting", to_js(&PeerInfo { id: id.as_str(), name: name.as_deref() })),
            Event::PeerJoined { id, name } => ("peer-joined", to_js(&PeerInfo { id: id.as_str(), name: name.as_deref() })),
            Event::PeerLeft { id } => {
                shared.ids.borrow_mut().remove(&id);
                ("peer-left", to_js(&PeerInfo { id: id.as_str(), name: None }))
            }
            Event::PeerReconnecting { id } => ("peer-reconnecting", to_js(&PeerInfo { id: id.as_str(), name: None })),
            Event::PeerReconnected { id } => ("peer-reconnected", to_js(&PeerInfo { id: id.as_str(), name: None })),
            Event::PeerPath { id, path } => ("peer-path", to_js(&path_info(Some(id.as_str()), &path))),
            Event::PeerFailed { id, reason, message } => {
                ("peer-failed", to_js(&shapes::PeerFailed { id: id.as_str(), reason: reason.as_str(), message: &message }))
            }
            // Not reached (`deliver` takes messages); kept exhaustive without a panic.
            Event::Message { .. } => return self.deliver(Delivery { event, file }),
            Event::Signaling { state, reason } => ("signaling", to_js(&shapes::Signaling { state: state.as_str(), reason: reason.as_deref() })),
            Event::Warning(message) => ("warning", to_js(&shapes::Warning { message: &message })),
            Event::FileOffer { id, from, meta, hash, have } => {
                let transfer = shared.register(id, from.as_str(), meta, Direction::Receive);
                ("file-offer", FileOffer::new(transfer, hash.as_ref(), have).into())
            }
            Event::TransferStarted { id, peer, meta } => {
                let transfer = shared.register(id, peer.as_str(), meta, Direction::Receive);
                ("transfer", Transfer::new(transfer).into())
            }
            Event::TransferPaused { id } => {
                return if let Some(t) = shared.transfer(&id) {
                    t.state("paused")
                }
            }
            Event::TransferResumed { id } => {
                return if let Some(t) = shared.transfer(&id) {
                    t.state("resumed")
                }
            }
            Event::TransferProgress { id, progress } => {
                crate::web::keep_awake(true);
                return if let Some(t) = shared.transfer(&id) {
                    t.progress(progress)
                };
            }
            Event::TransferDone { id, .. } => {
                let Some(t) = shared.remove_transfer(&id) else { return };
                let value = match file {
                    Some(blob) => named_file(&blob, t.meta()),
                    None => JsValue::UNDEFINED,
                };
                return t.succeed(&value);
            }
            Event::TransferFailed { id, error } => {
                let Some(t) = shared.remove_transfer(&id) else { return };
                return t.fail(&error);
            }
            Event::TransferSources { id, sources } => {
                return if let Some(t) = shared.transfer(&id) {
                    t.set_sources(&sources)
                }
            }
            Event::FindDone { id, hits } => return shared.services.find_done(id, &hits),
            Event::Response { id, result } => return shared.services.response(id, result),
            Event::Request { from, id, method, payload } => {
                let driver = shared.driver.borrow().clone();
                return shared.services.call_handler(driver, from, id, method, payload);
            }
            Event::Joined { .. } | Event::JoinFailed(_) => return,
        };
        shared.listeners.emit(kind, &payload);
    }
}

/// The stored bytes under the sender's name and type (no copy: a File over the Blob),
/// or the stored File itself when it has them already (files kept in memory).
fn named_file(blob: &web_sys::Blob, meta: &crate::core::FileMeta) -> JsValue {
    if let Some(file) = blob.dyn_ref::<File>() {
        if file.name() == meta.name && file.type_() == meta.mime {
            return file.clone().into();
        }
    }
    let options = FilePropertyBag::new();
    options.set_type(&meta.mime);
    File::new_with_blob_sequence_and_options(&Array::of1(blob), &meta.name, &options).map_or_else(|_| blob.clone().into(), Into::into)
}
