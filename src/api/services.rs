//! What `find`, `request` and `handle` need at the JS boundary: payloads (any JSON
//! value, or bytes), the promises waiting for the core's answers, user handlers and
//! their replies, and the plain objects hits and shared files become.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Weak;

use js_sys::{Array, ArrayBuffer, Function, Promise, Uint8Array, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{spawn_local, JsFuture};

use super::error::{js_error, type_error};
use super::js::promise;
use super::shapes::{self, from_js, to_js};
use crate::core::transfer::blocks::hex;
use crate::core::{FileMeta, Hash, Hit, Payload, PeerId, QueryId, RequestError, RequestId, ShareId, SharedFile};
use crate::web::describe;
use crate::web::Driver;

#[wasm_bindgen(typescript_custom_section)]
const SERVICE_TYPES: &'static str = r#"
/** A file this peer shares (see `Peer.share`). */
export interface SharedFile {
  /** Its id: what other peers' hits carry, and what `unshare` takes. */
  id: string;
  /** The name others find it by. */
  name: string;
  /** Size in bytes. */
  size: number;
  /** Content hash (hex BLAKE3): equal hashes are equal bytes. */
  hash: string;
  /** MIME type, possibly empty. */
  type: string;
}

/** A file another peer shares that matched `find`. */
export interface FindHit {
  /** Who has it. */
  peerId: string;
  /** Its id on that peer. */
  id: string;
  /** Its name there. */
  name: string;
  /** Size in bytes. */
  size: number;
  /** Content hash (hex BLAKE3): hits with the same hash can be downloaded together. */
  hash: string;
  /** MIME type, possibly empty. */
  type: string;
}

/** Options for `Peer.find`. */
export interface FindOptions {
  /** Resolve with the answers so far after this long. Default 2000. */
  timeoutMs?: number;
  /** "exact" (default): the whole name, case-sensitive. "substring": anywhere in the
   *  name, ignoring ASCII case. */
  match?: "exact" | "substring";
}

/** Options for `Peer.download`. */
export interface DownloadOptions {
  /** The name of the resulting File. Default: the first hit's name. */
  name?: string;
}

/** Options for `Peer.request`. */
export interface RequestOptions {
  /** Reject with a `TimeoutError` after this long. Default 10000. */
  timeoutMs?: number;
}

/** What a request carries and a handler returns: any JSON value, or bytes. Bytes
 *  (Uint8Array, ArrayBuffer or any view) arrive as a Uint8Array; everything else goes
 *  through JSON.stringify and JSON.parse. At most `maxMessageBytes` (16 MiB). What
 *  arrives comes from another peer: check it before trusting its shape. */
export type ServicePayload = unknown;

/** Serves one method: its return value (or what its Promise resolves to) is the reply;
 *  if it throws or rejects, the caller's promise rejects with a `HandlerError` carrying
 *  the message. `payload` is whatever the caller sent: check it.
 *
 *  ```ts
 *  peer.handle("add", (payload) => {
 *    if (!Array.isArray(payload)) throw new Error("expected an array of numbers");
 *    return payload.reduce((sum: number, n) => sum + Number(n), 0);
 *  });
 *  ``` */
export type ServiceHandler = (payload: unknown, context: HandlerContext) => unknown;

/** Who called a handler, and for what. */
export interface HandlerContext {
  /** The calling peer's id. */
  from: string;
  /** The method it called. */
  method: string;
}

export interface Peer {
  /** Calls `method` on a peer; resolves to its reply, typed as the caller expects
   *  (`Reply` is not checked: the reply comes from another peer).
   *
   *  ```ts
   *  const sum = await peer.request<number>(peerId, "add", [1, 2]);
   *  ``` */
  request<Reply = unknown>(peerId: string, method: string, payload: unknown, options?: RequestOptions | null): Promise<Reply>;
}

/** Bytes one holder served for a transfer (verified). */
export interface TransferSource {
  /** The holder. */
  peerId: string;
  /** Verified bytes it served. */
  bytes: number;
}
"#;

struct Settle {
    resolve: Function,
    reject: Function,
}

/// Promises waiting for the core, and the user's handlers.
#[derive(Default)]
pub(crate) struct Services {
    finds: RefCell<HashMap<QueryId, Function>>,
    requests: RefCell<HashMap<RequestId, Settle>>,
    handlers: RefCell<HashMap<String, Function>>,
}

impl Services {
    /// A promise for the hits of query `id`.
    pub(crate) fn await_find(&self, id: QueryId) -> Promise {
        let (promise, resolve, _) = promise();
        self.finds.borrow_mut().insert(id, resolve);
        promise
    }

    pub(crate) fn find_done(&self, id: QueryId, hits: &[Hit]) {
        let Some(resolve) = self.finds.borrow_mut().remove(&id) else { return };
        let list: Array = hits.iter().map(hit_object).collect();
        let _ = resolve.call1(&JsValue::NULL, &list);
    }

    /// A promise for the reply to request `id`.
    pub(crate) fn await_reply(&self, id: RequestId) -> Promise {
        let (promise, resolve, reject) = promise();
        self.requests.borrow_mut().insert(id, Settle { resolve, reject });
        promise
    }

    pub(crate) fn response(&self, id: RequestId, result: Result<Payload, RequestError>) {
        let Some(settle) = self.requests.borrow_mut().remove(&id) else { return };
        let outcome = result
            .map_err(|e| request_error(&e))
            .and_then(|payload| from_payload(payload).map_err(|_| js_error("ProtocolError", "the reply is neither bytes nor valid JSON")));
        let _ = match outcome {
            Ok(value) => settle.resolve.call1(&JsValue::NULL, &value),
            Err(err) => settle.reject.call1(&JsValue::NULL, &err),
        };
    }

    pub(crate) fn set_handler(&self, method: &str, handler: Function) {
        self.handlers.borrow_mut().insert(method.to_owned(), handler);
    }

    pub(crate) fn remove_handler(&self, method: &str) {
        self.handlers.borrow_mut().remove(method);
    }

    /// Runs the user's handler for a request and sends its reply (or its error) back.
    pub(crate) fn call_handler(&self, driver: Weak<Driver>, from: PeerId, id: u64, method: String, payload: Payload) {
        let handler = self.handlers.borrow().get(&method).cloned();
        let context = to_js(&shapes::HandlerContext { from: from.as_str(), method: &method });
        let respond = move |result: Result<Payload, String>| {
            if let Some(driver) = driver.upgrade() {
                driver.with_mesh(|mesh, now| mesh.respond(now, &from, id, result));
            }
        };
        let Some(handler) = handler else {
            return respond(Err(format!("no handler for \"{method}\"")));
        };
        let argument = match from_payload(payload) {
            Ok(value) => value,
            Err(_) => return respond(Err("the request payload is neither bytes nor valid JSON".into())),
        };
        let returned = match handler.call2(&JsValue::NULL, &argument, &context) {
            Ok(value) => value,
            Err(err) => return respond(Err(describe(&err))),
        };
        // Plain values and promises alike: the reply is what it resolves to.
        let settled = JsFuture::from(Promise::resolve(&returned));
        spawn_local(async move {
            let result = match settled.await {
                Ok(value) => to_payload(&value).map_err(|e| format!("the handler's reply cannot be sent: {}", describe(&e))),
                Err(err) => Err(describe(&err)),
            };
            respond(result);
        });
    }
}

/// Bytes stay bytes; any other value is sent as its JSON text (`undefined` as `null`).
pub(crate) fn to_payload(value: &JsValue) -> Result<Payload, JsValue> {
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Ok(Payload::Binary(bytes.to_vec()));
    }
    if let Some(buffer) = value.dyn_ref::<ArrayBuffer>() {
        return Ok(Payload::Binary(Uint8Array::new(buffer).to_vec()));
    }
    if ArrayBuffer::is_view(value) {
        return super::peer::to_payload(value);
    }
    if value.is_undefined() {
        return Ok(Payload::Text("null".into()));
    }
    let text = JSON::stringify(value).map_err(|e| type_error(&format!("the payload is not JSON-serializable: {}", describe(&e))))?;
    crate::web::to_rust_string(&text).map(Payload::Text).ok_or_else(|| type_error("the payload is not JSON-serializable"))
}

fn from_payload(payload: Payload) -> Result<JsValue, JsValue> {
    match payload {
        Payload::Binary(bytes) => Ok(Uint8Array::from(bytes.as_slice()).into()),
        Payload::Text(text) => JSON::parse(&text),
    }
}

/// A request's failure as an `Error` whose `name` says which.
fn request_error(err: &RequestError) -> JsValue {
    let name = match err {
        RequestError::NoSuchMethod(_) => "NoSuchMethodError",
        RequestError::Handler(_) => "HandlerError",
        RequestError::Timeout(_) => "TimeoutError",
        RequestError::PeerLeft => "PeerLeftError",
        RequestError::Busy(_) => "BusyError",
        RequestError::TooLarge(_) => "MessageTooLargeError",
        RequestError::Closed => "ClosedError",
    };
    js_error(name, &err.to_string())
}

pub(crate) fn hit_object(hit: &Hit) -> JsValue {
    to_js(&shapes::FindHit {
        peer_id: hit.peer.as_str(),
        id: hit.id.to_string(),
        name: &hit.meta.name,
        size: hit.meta.size as f64,
        hash: hex(&hit.hash),
        mime: &hit.meta.mime,
    })
}

pub(crate) fn shared_object(file: &SharedFile) -> JsValue {
    to_js(&shapes::SharedFile {
        id: file.id.to_string(),
        name: &file.meta.name,
        size: file.meta.size as f64,
        hash: hex(&file.hash),
        mime: &file.meta.mime,
    })
}

/// Reads `download`'s argument: one hit or an array of hits, as `find` returned them.
pub(crate) fn parse_hits(hits: JsValue) -> Result<Vec<Hit>, JsValue> {
    if !hits.is_object() {
        return Err(type_error("download needs what find() returned: a hit or an array of hits"));
    }
    let hits: Vec<shapes::FindHitIn> =
        if Array::is_array(&hits) { shapes::list_from_js(&Array::from(&hits), "hits")? } else { vec![from_js(hits, "hit")?] };
    if hits.is_empty() {
        return Err(type_error("download needs at least one hit from find()"));
    }
    hits.into_iter().map(parse_hit).collect()
}

fn parse_hit(hit: shapes::FindHitIn) -> Result<Hit, JsValue> {
    let bad = |what: &str| type_error(&format!("a hit needs {what} (pass what find() returned)"));
    if hit.peer_id.is_empty() {
        return Err(bad("a peerId"));
    }
    let share = ShareId::parse(&hit.id).ok_or_else(|| bad("an id of 16 hex digits"))?;
    let hash = parse_hash(&hit.hash).ok_or_else(|| bad("a hash of 64 hex digits"))?;
    let meta = FileMeta { name: hit.name.unwrap_or_else(|| "file".into()), size: hit.size, mime: hit.mime.unwrap_or_default() };
    Ok(Hit { peer: PeerId::new(hit.peer_id), id: share, meta, hash })
}

fn parse_hash(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(hash)
}
