//! `Peer`: one member of a room, talking to the others over data channels.

use std::rc::Rc;

use js_sys::{Array, ArrayBuffer, Function, Promise, Uint8Array};
use wasm_bindgen::prelude::*;

use super::error::{join_error, js_error, send_error, type_error};
use super::events::{path_info, ListenerSink, PeerState, EVENT_TYPES_LIST};
use super::options;
use super::services::{parse_hits, shared_object};
use super::shapes::{self, from_js, to_js};
use super::transfer::Transfer;
use crate::core::request::MAX_METHOD_LEN;
use crate::core::{Direction, FileMeta, Match, MeshConfig, Payload, PeerId, ShareId};
use crate::web::describe;
use crate::web::identity::Identity;
use crate::web::random_seed;
use crate::web::{Driver, DriverConfig, EarlySocket, SpareConn};

#[wasm_bindgen]
extern "C" {
    /// Options for `Peer.join` (see the `JoinOptions` interface).
    #[wasm_bindgen(typescript_type = "JoinOptions")]
    pub type JoinOptions;
    /// A string or bytes.
    #[wasm_bindgen(typescript_type = "MessageData")]
    pub type MessageData;
    /// Options for `sendFile` (see the `SendFileOptions` interface).
    #[wasm_bindgen(typescript_type = "SendFileOptions")]
    pub type SendFileOptions;
    /// A file or blob to send.
    #[wasm_bindgen(typescript_type = "Blob")]
    pub type BlobLike;
    /// A promise of nothing.
    #[wasm_bindgen(typescript_type = "Promise<void>")]
    pub type PromiseVoid;
    /// A promise of a count.
    #[wasm_bindgen(typescript_type = "Promise<number>")]
    pub type PromiseNumber;
    /// `PeerInfo[]`.
    #[wasm_bindgen(typescript_type = "PeerInfo[]")]
    pub type PeerInfoList;
    /// Options for `share` (see the `ShareOptions` interface).
    #[wasm_bindgen(typescript_type = "ShareOptions")]
    pub type ShareOptions;
    /// `Promise<SharedFile>`.
    #[wasm_bindgen(typescript_type = "Promise<SharedFile>")]
    pub type PromiseShared;
    /// `SharedFile[]`.
    #[wasm_bindgen(typescript_type = "SharedFile[]")]
    pub type SharedFileList;
    /// Options for `find`.
    #[wasm_bindgen(typescript_type = "FindOptions")]
    pub type FindOptions;
    /// `Promise<FindHit[]>`.
    #[wasm_bindgen(typescript_type = "Promise<FindHit[]>")]
    pub type PromiseHits;
    /// One hit or several, as `find` returned them.
    #[wasm_bindgen(typescript_type = "FindHit | FindHit[]")]
    pub type Hits;
    /// Options for `download`.
    #[wasm_bindgen(typescript_type = "DownloadOptions")]
    pub type DownloadOptions;
    /// A method's implementation.
    #[wasm_bindgen(typescript_type = "ServiceHandler")]
    pub type ServiceHandlerFn;
    /// Any JSON value, or bytes.
    #[wasm_bindgen(typescript_type = "ServicePayload")]
    pub type ServicePayloadValue;
    /// Options for `request`.
    #[wasm_bindgen(typescript_type = "RequestOptions")]
    pub type RequestOptions;
    /// `Promise<ServicePayload>`.
    #[wasm_bindgen(typescript_type = "Promise<unknown>")]
    pub type PromiseReply;
    /// `"connected" | "reconnecting" | "closed"`.
    #[wasm_bindgen(typescript_type = "SignalingState")]
    pub type SignalingStateName;
    /// `Promise<ConnectionInfo | null>`.
    #[wasm_bindgen(typescript_type = "Promise<ConnectionInfo | null>")]
    pub type PromiseConnection;
}

/// A member of a room. Every other member it meets gets a direct, reliable, ordered
/// data channel; the signaling server only introduces them.
///
/// ```js
/// const peer = await Peer.join({ signalingUrl: "ws://127.0.0.1:8080/ws", room: "lobby", name: "alice" });
/// peer.on("peer-joined", ({ id, name }) => peer.send(id, `hello ${name}`));
/// peer.on("message", ({ from, data }) => console.log(from, data));
/// ```
#[wasm_bindgen]
pub struct Peer {
    driver: Rc<Driver>,
    shared: Rc<PeerState>,
    /// Held until `leave()`, so a new `Peer` in this tab can take it back.
    identity: std::cell::RefCell<Option<Identity>>,
    id: String,
    room: String,
    name: Option<String>,
}

#[wasm_bindgen]
impl Peer {
    /// Connects to the signaling server and joins the room. Resolves once the server
    /// has welcomed us; `peer-joined` then fires for every peer, already present or
    /// arriving later, as its channel opens. With several signaling URLs (instances
    /// sharing rooms), each is tried in turn, then and after any failure. Rejects with
    /// a `SignalingError` (with a `code`: `unreachable` when every URL failed, or the
    /// server's code such as `room-full`) or a
    /// `TypeError` for bad options.
    pub async fn join(options: JoinOptions) -> Result<Peer, JsValue> {
        super::join_started();
        let settings = options::parse(options.into())?;
        // The server's handshake runs while the identity is claimed; a URL the browser
        // refuses fails here as it would at the driver's first attempt.
        let early_socket = settings.signaling_urls.first().and_then(|url| EarlySocket::connect(url).ok());
        // The identity `init()` claimed (unused by an ephemeral join: its lock goes back
        // now), or a claim whose lock request goes out before the spare connection is
        // made, so the browser grants it meanwhile: a join signs the server's challenge
        // with it.
        let preclaimed = Identity::take_preclaimed();
        let claim = settings.persistent_identity.then(|| preclaimed.unwrap_or_else(Identity::start_claim));
        // The first peer's connection: the one `init()` made if it is still there, or
        // one made meanwhile (the ICE servers are set once the server names its own).
        let spare = SpareConn::take_premade().or_else(|| SpareConn::new(&settings.ice));
        let identity = match claim {
            Some(claim) => claim.finish().await?,
            None => Identity::ephemeral()?,
        };
        let seed = random_seed()?;
        let mut mesh = MeshConfig::new(settings.room.clone(), settings.name.clone(), identity.secret.clone());
        mesh.local_key = identity.local_key;
        mesh.room_secret = settings.room_secret.clone();
        crate::web::random_bytes(&mut mesh.entropy)?;
        if settings.persistent_identity {
            let me = mesh.identity.id().as_str().to_owned();
            mesh.pinned = crate::web::identity::pins(&me).into_iter().map(|(peer, key)| (PeerId::new(peer), key)).collect();
        }
        if let Some(max) = settings.max_message_bytes {
            mesh.max_message_bytes = max;
        }
        if let Some(timeout) = settings.connect_timeout_ms {
            mesh.connect_timeout_ms = timeout;
        }
        if let Some(timeout) = settings.resume_timeout_ms {
            mesh.resume_timeout_ms = timeout;
        }
        if let Some(timeout) = settings.reconnect_timeout_ms {
            mesh.reconnect_timeout_ms = timeout;
        }
        mesh.signaling_servers = settings.signaling_urls.len();
        let shared = Rc::new(PeerState::default());
        let urls = settings.signaling_urls.join(", ");
        let config = DriverConfig {
            signaling_urls: settings.signaling_urls,
            ice: settings.ice,
            mesh,
            seed,
            storage_max_age_ms: settings.storage_max_age_ms.unwrap_or(24 * 60 * 60 * 1000),
            early_socket,
            spare,
        };
        let started = Driver::start(config, Box::new(ListenerSink(shared.clone())));
        let driver = started.driver;
        *shared.driver.borrow_mut() = Rc::downgrade(&driver);
        match started.joined.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(join_error(&err, &urls)),
            Err(_) => return Err(join_error(&crate::core::JoinError::Cancelled, &urls)),
        }
        // Settles within the worker's start timeout; `persistentStorage` is then a fact.
        let _ = started.storage.await;
        driver.release_events();
        let id = driver.read(|mesh| mesh.id().map(|id| id.as_str().to_owned())).unwrap_or_default();
        Ok(Peer { driver, shared, identity: std::cell::RefCell::new(Some(identity)), id, room: settings.room, name: settings.name })
    }

    /// Our id, the same for the life of this `Peer` (also across signaling reconnects).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// The room we joined.
    #[wasm_bindgen(getter)]
    pub fn room(&self) -> String {
        self.room.clone()
    }

    /// The name we joined with, if any.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> Option<String> {
        self.name.clone()
    }

    /// The code to compare with a connected peer, out of band (read aloud, side by
    /// side): the same on its side, from both public keys, as 4 groups of 5 digits.
    /// Equal codes mean no one is in between, the signaling server included.
    /// `undefined` if the peer is not connected.
    #[wasm_bindgen(js_name = safetyCode)]
    pub fn safety_code(&self, peer_id: &str) -> Option<String> {
        self.driver.read(|mesh| mesh.safety_code(&PeerId::new(peer_id)))
    }

    /// Marks a connected peer as verified (call it once the safety codes matched): its
    /// key is remembered (with a persistent identity, across sessions), and a later
    /// connection to that id with another key is refused (`peer-failed`, reason
    /// "impostor"). False if the peer is not connected.
    pub fn verify(&self, peer_id: &str) -> bool {
        let peer = PeerId::new(peer_id);
        let Some(key) = self.driver.with_mesh(|mesh, _| mesh.pin(&peer)) else { return false };
        let persistent = self.identity.borrow().as_ref().is_some_and(|identity| identity.persistent());
        if persistent {
            crate::web::identity::remember_pin(&self.id, peer_id, &key);
        }
        true
    }

    /// Whether this peer's key was verified (`verify`), in this session or before.
    #[wasm_bindgen(js_name = isVerified)]
    pub fn is_verified(&self, peer_id: &str) -> bool {
        self.driver.read(|mesh| mesh.is_pinned(&PeerId::new(peer_id)))
    }

    /// Peers with an open data channel: `[{ id, name }]`, sorted by id.
    pub fn peers(&self) -> PeerInfoList {
        let list = Array::new();
        for (id, name) in self.driver.read(|mesh| mesh.peers()) {
            list.push(&to_js(&shapes::PeerInfo { id: id.as_str(), name: name.as_deref() }));
        }
        list.unchecked_into()
    }

    /// Adds a listener for `type`: "peer-connecting", "peer-joined", "peer-left",
    /// "message", "signaling" or "warning". Throws a `TypeError` for other types.
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, kind: &str, listener: Function) -> Result<(), JsValue> {
        self.shared.listeners.add_checked(&EVENT_TYPES_LIST, "event type", kind, listener)
    }

    /// Removes a listener added with `on`.
    #[wasm_bindgen(skip_typescript)]
    pub fn off(&self, kind: &str, listener: Function) {
        self.shared.listeners.remove(kind, &listener);
    }

    /// Sends a message to one peer, reliably and in order. A string arrives as a
    /// string, bytes as a `Uint8Array`; messages larger than the channel's max message
    /// size are split and rejoined. Rejects with `NotConnectedError` for an unknown or
    /// disconnected peer, `MessageTooLargeError`, `QueueFullError` or `ClosedError`.
    pub fn send(&self, peer_id: &str, data: MessageData) -> PromiseVoid {
        let result = to_payload(&data).and_then(|payload| {
            let peer = PeerId::new(peer_id);
            self.driver.with_mesh(|mesh, now| mesh.send(now, &peer, &payload)).map_err(|e| send_error(&e))
        });
        settle(result.map(|()| JsValue::UNDEFINED)).unchecked_into()
    }

    /// Offers a file to a peer and returns its `Transfer`. The file is read a block at
    /// a time (never whole) and hashed as it goes; `done` resolves once the receiver
    /// verified and stored it. Throws `NotConnectedError` for an unknown or
    /// disconnected peer, `ClosedError` after `leave()`, `TypeError` for a non-Blob.
    ///
    /// ```js
    /// const t = peer.sendFile(peerId, input.files[0]);
    /// t.on("progress", ({ bytes, total }) => (bar.value = bytes / total));
    /// await t.done; // stored and verified on the other side
    /// ```
    #[wasm_bindgen(js_name = sendFile, unchecked_return_type = "SendTransfer")]
    pub fn send_file(&self, peer_id: &str, file: BlobLike, options: Option<SendFileOptions>) -> Result<Transfer, JsValue> {
        let (blob, meta) = file_meta(file.into(), options.map(Into::into), "sendFile")?;
        let peer = PeerId::new(peer_id);
        let id = self.driver.send_file(&peer, blob, meta.clone()).map_err(|e| send_error(&e))?;
        Ok(Transfer::new(self.shared.register(id, peer_id, meta, Direction::Send)))
    }

    /// Shares a file with the room: it is hashed (read a few MiB at a time, never
    /// whole), then listed in answers to `find` and served to `download`s. Nothing is
    /// sent until someone asks; only shared files are ever readable by others.
    /// Resolves to `{ id, name, size, hash, type }`; rejects with a `TypeError` for a
    /// non-Blob, `FileUnreadableError` if the file cannot be read.
    ///
    /// ```js
    /// const shared = await peer.share(file, { name: "report.pdf" });
    /// // later: peer.unshare(shared.id);
    /// ```
    pub fn share(&self, file: BlobLike, options: Option<ShareOptions>) -> PromiseShared {
        let parsed = file_meta(file.into(), options.map(Into::into), "share");
        let driver = self.driver.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let (blob, meta) = parsed?;
            let shared = crate::web::Driver::share(driver, blob, meta).await.map_err(|e| js_error("FileUnreadableError", &describe(&e)))?;
            Ok(shared_object(&shared))
        })
        .unchecked_into()
    }

    /// Stops sharing a file (by the `id` that `share` gave). Downloads it is serving
    /// end for the downloader with a `NotSharedError` from this holder (they carry on
    /// from other holders). Returns whether it was shared.
    pub fn unshare(&self, id: &str) -> bool {
        ShareId::parse(id).is_some_and(|id| self.driver.unshare(id))
    }

    /// The files this peer shares, sorted by name.
    pub fn shared(&self) -> SharedFileList {
        self.driver.read(|mesh| mesh.shared()).iter().map(shared_object).collect::<Array>().unchecked_into()
    }

    /// Asks every connected peer for files named `name` (exactly, by default; or
    /// `{ match: "substring" }`, ignoring ASCII case). Resolves to the hits `[{ peerId, id,
    /// name, size, hash, type }]` once every peer answered, or after `timeoutMs`
    /// (default 2000) with those that did; `[]` if nobody has it. Rejects with a
    /// `TypeError` for bad options.
    ///
    /// ```js
    /// const hits = await peer.find("report.pdf");
    /// if (hits.length) saveAs(await peer.download(hits).done);
    /// ```
    pub fn find(&self, name: &str, options: Option<FindOptions>) -> PromiseHits {
        let parsed = options.map_or(Ok(shapes::FindOptions::default()), |o| from_js(o.into(), "options")).map(|o: shapes::FindOptions| {
            let how = match o.matching {
                Some(shapes::Matching::Substring) => Match::Substring,
                None | Some(shapes::Matching::Exact) => Match::Exact,
            };
            (o.timeout_ms.unwrap_or(2_000), how)
        });
        let (timeout, how) = match parsed {
            Ok(parsed) => parsed,
            Err(err) => return Promise::reject(&err).unchecked_into(),
        };
        let services = &self.shared.services;
        let mut promise = None;
        self.driver.with_mesh_then(|mesh, now| mesh.find(now, name, how, timeout), |id| promise = Some(services.await_find(*id)));
        let empty: JsValue = Array::new().into();
        promise.unwrap_or_else(|| Promise::resolve(&empty)).unchecked_into()
    }

    /// Downloads what `find` found: one hit, or several. Every hit with the same
    /// content (hash and size) as the first is a holder, and blocks come from all of
    /// them at once (more from faster ones); each block is verified before it is
    /// stored, and if a holder leaves or sends a bad block the others take over.
    /// Returns the receiving `Transfer` (its `peerId` is the first holder; `sources()`
    /// says what each served); `done` resolves to the verified `File`. Throws a
    /// `TypeError` for bad hits, `NotConnectedError` if no holder is connected.
    ///
    /// ```js
    /// const t = peer.download(await peer.find("movie.mkv"));
    /// t.on("progress", ({ bytes, total }) => console.log(bytes / total, t.sources()));
    /// const file = await t.done;
    /// ```
    #[wasm_bindgen(unchecked_return_type = "ReceiveTransfer")]
    pub fn download(&self, hits: Hits, options: Option<DownloadOptions>) -> Result<Transfer, JsValue> {
        let mut hits = parse_hits(hits.into())?;
        if let Some(name) = name_option(options.map(Into::into))? {
            hits[0].meta.name = name;
        }
        let shared = &self.shared;
        let mut transfer = None;
        let (meta, first) = (hits[0].meta.clone(), hits[0].peer.clone());
        self.driver
            .with_mesh_then(
                |mesh, now| mesh.download_hits(now, &hits).map(|id| (id, mesh.download_sources(id).unwrap_or_default())),
                |result| {
                    if let Ok((id, sources)) = result {
                        let t = shared.register(*id, first.as_str(), meta, Direction::Receive);
                        t.set_holders(sources);
                        transfer = Some(t);
                    }
                },
            )
            .map_err(|e| send_error(&e))?;
        transfer.map(Transfer::new).ok_or_else(|| js_error("ClosedError", "download did not start"))
    }

    /// Serves `method`: requests for it call `handler(payload, { from, method })`,
    /// whose return value (or what its Promise resolves to) is the reply; a throw or
    /// rejection reaches the caller as a `HandlerError` with its message. Replaces an
    /// earlier handler for the same method. Throws a `TypeError` for an empty or
    /// overlong (more than 64 bytes) method name.
    ///
    /// ```js
    /// peer.handle("time", () => new Date().toISOString());
    /// const now = await other.request(peer.id, "time", null);
    /// ```
    pub fn handle(&self, method: &str, handler: ServiceHandlerFn) -> Result<(), JsValue> {
        check_method(method)?;
        let handler = handler.dyn_into::<Function>().map_err(|_| type_error("handle needs a function"))?;
        self.shared.services.set_handler(method, handler);
        self.driver.with_mesh(|mesh, _| mesh.serve_method(method));
        Ok(())
    }

    /// Stops serving `method`: later requests reject with `NoSuchMethodError`.
    /// Returns whether it was handled.
    pub fn unhandle(&self, method: &str) -> bool {
        self.shared.services.remove_handler(method);
        self.driver.with_mesh(|mesh, _| mesh.unserve_method(method))
    }

    /// Calls `method` on a peer with `payload` (any JSON value, or bytes) and resolves
    /// to its reply. Rejects with `NoSuchMethodError`, `HandlerError` (the handler's
    /// message), `TimeoutError` (after `timeoutMs`, default 10000), `PeerLeftError`,
    /// `BusyError` (the peer has 64 of ours waiting), `NotConnectedError`,
    /// `MessageTooLargeError` (payload or reply over `maxMessageBytes`), `ClosedError`,
    /// or a `TypeError` for a payload JSON cannot hold.
    pub fn request(&self, peer_id: &str, method: &str, payload: ServicePayloadValue, options: Option<RequestOptions>) -> PromiseReply {
        let result = (|| {
            check_method(method)?;
            let options: shapes::RequestOptions = options.map_or(Ok(Default::default()), |o| from_js(o.into(), "options"))?;
            let timeout = options.timeout_ms.unwrap_or(10_000);
            let payload = super::services::to_payload(&payload)?;
            let peer = PeerId::new(peer_id);
            let services = &self.shared.services;
            let mut promise = None;
            self.driver
                .with_mesh_then(
                    |mesh, now| mesh.request(now, &peer, method, payload, timeout),
                    |r| promise = r.as_ref().ok().map(|id| services.await_reply(*id)),
                )
                .map_err(|e| send_error(&e))?;
            promise.ok_or_else(|| js_error("ClosedError", "request did not start"))
        })();
        result.unwrap_or_else(|err| Promise::reject(&err)).unchecked_into()
    }

    /// How the connection to a peer travels and how it is doing, from the browser's
    /// statistics: `{ path, local, remote, protocol, rttMs, bytesSent, bytesReceived }`,
    /// or `null` for a peer that is not connected (or before ICE selected a path).
    pub fn connection(&self, peer_id: &str) -> PromiseConnection {
        let driver = self.driver.clone();
        let peer = PeerId::new(peer_id);
        wasm_bindgen_futures::future_to_promise(async move {
            let Some((path, pair)) = crate::web::Driver::connection(driver, &peer).await else { return Ok(JsValue::NULL) };
            Ok(to_js(&shapes::ConnectionInfo {
                path: path_info(None, &path),
                rtt_ms: pair.rtt_ms,
                bytes_sent: pair.bytes_sent,
                bytes_received: pair.bytes_received,
            }))
        })
        .unchecked_into()
    }

    /// Whether received files are stored on disk (OPFS) and downloads resume after a
    /// reload; false where the browser lacks OPFS (files are then kept in memory). Files
    /// of at most one 1 MiB block are kept in memory either way: nothing of them resumes.
    #[wasm_bindgen(getter, js_name = persistentStorage)]
    pub fn persistent_storage(&self) -> bool {
        self.driver.persistent_storage()
    }

    /// Sends a message to every peer with an open channel; resolves to how many.
    pub fn broadcast(&self, data: MessageData) -> PromiseNumber {
        let result =
            to_payload(&data).and_then(|payload| self.driver.with_mesh(|mesh, now| mesh.broadcast(now, &payload)).map_err(|e| send_error(&e)));
        settle(result.map(|n| JsValue::from_f64(n as f64))).unchecked_into()
    }

    /// The signaling connection's state: "connected", "reconnecting" or "closed".
    #[wasm_bindgen(getter, js_name = signalingState)]
    pub fn signaling_state(&self) -> SignalingStateName {
        JsValue::from_str(self.driver.read(|mesh| mesh.signaling_state()).as_str()).unchecked_into()
    }

    /// Closes every data channel and leaves the room. Final: make a new `Peer` to
    /// join again.
    pub fn leave(&self) -> PromiseVoid {
        self.driver.with_mesh(|mesh, now| mesh.leave(now));
        self.identity.borrow_mut().take();
        // A page that joins again (another room, say) then finds its storage worker
        // started, as its first join did: a join that starts one waits ~25 ms for it.
        crate::web::prestart_storage();
        Promise::resolve(&JsValue::UNDEFINED).unchecked_into()
    }
}

fn check_method(method: &str) -> Result<(), JsValue> {
    if method.is_empty() || method.len() > MAX_METHOD_LEN {
        return Err(type_error(&format!("a method name is 1 to {MAX_METHOD_LEN} bytes")));
    }
    Ok(())
}

/// The Blob, and its name (from `options.name`, the File's name, or "file"), size and type.
fn file_meta(file: JsValue, options: Option<JsValue>, what: &str) -> Result<(web_sys::Blob, FileMeta), JsValue> {
    let blob = file.dyn_into::<web_sys::Blob>().map_err(|_| type_error(&format!("{what} needs a File or Blob")))?;
    let name = match name_option(options)? {
        Some(name) => name,
        None => blob.dyn_ref::<web_sys::File>().map_or_else(|| "file".into(), web_sys::File::name),
    };
    let meta = FileMeta { name, size: blob.size() as u64, mime: blob.type_() };
    Ok((blob, meta))
}

/// The `name` of `SendFileOptions`, `ShareOptions` or `DownloadOptions`.
fn name_option(options: Option<JsValue>) -> Result<Option<String>, JsValue> {
    match options {
        Some(o) if !o.is_undefined() && !o.is_null() => Ok(from_js::<shapes::NameOptions>(o, "options")?.name),
        _ => Ok(None),
    }
}

fn settle(result: Result<JsValue, JsValue>) -> Promise {
    match result {
        Ok(value) => Promise::resolve(&value),
        Err(err) => Promise::reject(&err),
    }
}

/// A string stays text; any byte container becomes bytes (copied once into wasm).
pub(crate) fn to_payload(data: &JsValue) -> Result<Payload, JsValue> {
    if let Some(text) = crate::web::to_rust_string(data) {
        return Ok(Payload::Text(text));
    }
    if let Some(bytes) = data.dyn_ref::<Uint8Array>() {
        return Ok(Payload::Binary(bytes.to_vec()));
    }
    if let Some(buffer) = data.dyn_ref::<ArrayBuffer>() {
        return Ok(Payload::Binary(Uint8Array::new(buffer).to_vec()));
    }
    if ArrayBuffer::is_view(data) {
        let buffer = js_sys::Reflect::get(data, &JsValue::from_str("buffer"))?;
        let offset = js_sys::Reflect::get(data, &JsValue::from_str("byteOffset"))?.as_f64().unwrap_or(0.0);
        let length = js_sys::Reflect::get(data, &JsValue::from_str("byteLength"))?.as_f64().unwrap_or(0.0);
        let view = Uint8Array::new_with_byte_offset_and_length(&buffer, offset as u32, length as u32);
        return Ok(Payload::Binary(view.to_vec()));
    }
    Err(type_error("data must be a string, Uint8Array, ArrayBuffer or ArrayBufferView"))
}
