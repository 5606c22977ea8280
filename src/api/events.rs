//! User listeners by event type, the payload objects they receive, and their types.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::core::{Event, Payload};
use crate::web::driver::EventSink;

#[wasm_bindgen(typescript_custom_section)]
const EVENT_TYPES: &'static str = r#"
/** A peer in the room with an open data channel. */
export interface PeerInfo {
  /** Stable for the life of that peer's `Peer`; assigned by the signaling server. */
  id: string;
  /** The name it joined with, if any. */
  name?: string;
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
  "peer-left": { id: string };
  /** A whole message: a string if a string was sent, else a Uint8Array. */
  "message": { from: string; data: string | Uint8Array };
  /** The signaling connection changed state. */
  "signaling": { state: SignalingState };
  /** Something went wrong that needs no action (e.g. a peer sent a malformed frame). */
  "warning": { message: string };
}

/** The event types `Peer.on` accepts. */
export type PeerEventType = keyof PeerEventMap;

/** Options for `Peer.join`. */
export interface JoinOptions {
  /** WebSocket URL of a meshdrop-signal server, e.g. "ws://127.0.0.1:8080/ws". */
  signalingUrl: string;
  /** 1-64 characters of A-Z a-z 0-9 _ -. */
  room: string;
  /** Display name shown to the others (at most 64 characters). */
  name?: string;
  /** STUN/TURN servers; none by default (enough on one machine or LAN). */
  iceServers?: RTCIceServer[];
  /** "relay" to use TURN only. Default "all". */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Largest message accepted from a peer, in bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** Give up on a connection attempt after this long (it is retried). Default 20000. */
  connectTimeoutMs?: number;
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
pub(crate) const EVENT_TYPES_LIST: [&str; 6] = ["peer-connecting", "peer-joined", "peer-left", "message", "signaling", "warning"];

#[derive(Default)]
pub(crate) struct Listeners {
    by_type: RefCell<HashMap<&'static str, Vec<Function>>>,
}

impl Listeners {
    pub(crate) fn add(&self, kind: &'static str, listener: Function) {
        self.by_type.borrow_mut().entry(kind).or_default().push(listener);
    }

    pub(crate) fn remove(&self, kind: &str, listener: &Function) {
        if let Some(list) = self.by_type.borrow_mut().get_mut(kind) {
            if let Some(i) = list.iter().position(|l| l == listener) {
                list.remove(i);
            }
        }
    }

    fn emit(&self, kind: &str, payload: &JsValue) {
        // A copy: listeners may add or remove listeners while we iterate.
        let list = self.by_type.borrow().get(kind).cloned().unwrap_or_default();
        for listener in list {
            if let Err(err) = listener.call1(&JsValue::NULL, payload) {
                // One throwing listener must not starve the others or the core.
                web_sys::console::error_2(&JsValue::from_str(&format!("meshdrop: a \"{kind}\" listener threw")), &err);
            }
        }
    }
}

/// Delivers core events to the listeners (shared with the `Peer`).
pub(crate) struct ListenerSink(pub(crate) Rc<Listeners>);

impl EventSink for ListenerSink {
    fn deliver(&self, event: Event) {
        let (kind, payload) = match event {
            Event::PeerConnecting { id, name } => ("peer-connecting", peer_info(id.as_str(), name.as_deref())),
            Event::PeerJoined { id, name } => ("peer-joined", peer_info(id.as_str(), name.as_deref())),
            Event::PeerLeft { id } => ("peer-left", object(&[("id", id.as_str().into())])),
            Event::Message { from, payload } => {
                let data = match payload {
                    Payload::Text(text) => JsValue::from_str(&text),
                    Payload::Binary(bytes) => Uint8Array::from(bytes.as_slice()).into(),
                };
                ("message", object(&[("from", from.as_str().into()), ("data", data)]))
            }
            Event::Signaling(state) => ("signaling", object(&[("state", state.as_str().into())])),
            Event::Warning(message) => ("warning", object(&[("message", message.into())])),
            Event::Joined { .. } | Event::JoinFailed(_) => return,
        };
        self.0.emit(kind, &payload);
    }
}

pub(crate) fn peer_info(id: &str, name: Option<&str>) -> JsValue {
    let info = object(&[("id", id.into())]);
    if let Some(name) = name {
        let _ = Reflect::set(&info, &JsValue::from_str("name"), &JsValue::from_str(name));
    }
    info
}

fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (key, value) in fields {
        let _ = Reflect::set(&obj, &JsValue::from_str(key), value);
    }
    obj.into()
}
