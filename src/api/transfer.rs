//! `Transfer` and `FileOffer`: one file on its way, and a peer's offer to send one.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use super::error::{transfer_error, transfer_error_name};
use super::js::{promise, Listeners};
use super::shapes::{self, to_js};
use crate::core::transfer::blocks::hex;
use crate::core::{Direction, FileMeta, PeerId, Progress, TransferError, TransferId};
use crate::web::Driver;

#[wasm_bindgen]
extern "C" {
    /// `Promise<File | void>`: `SendTransfer` and `ReceiveTransfer` narrow it.
    #[wasm_bindgen(typescript_type = "Promise<File | void>")]
    pub type PromiseDone;
    /// `TransferSource[]`.
    #[wasm_bindgen(typescript_type = "TransferSource[]")]
    pub type TransferSourceList;
    /// `"send" | "receive"`.
    #[wasm_bindgen(typescript_type = "\"send\" | \"receive\"")]
    pub type DirectionName;
}

thread_local! {
    /// One shared no-op rejection handler (see `TransferState::new`).
    static IGNORE: Closure<dyn FnMut(JsValue)> = Closure::new(|_: JsValue| {});
}

/// The event types `Transfer.on` accepts.
pub(crate) const TRANSFER_EVENTS: [&str; 3] = ["progress", "paused", "resumed"];
/// The event types `FileOffer.on` accepts.
pub(crate) const OFFER_EVENTS: [&str; 1] = ["withdrawn"];

/// What both the JS `Transfer` and the event sink hold for one transfer.
pub(crate) struct TransferState {
    id: TransferId,
    peer: String,
    meta: FileMeta,
    direction: Direction,
    listeners: Listeners,
    done: Promise,
    resolve: Function,
    reject: Function,
    settled: Cell<bool>,
    /// False while an offer waits for the user's accept or reject.
    answered: Cell<bool>,
    /// Bytes each peer served (verified): every holder of a download, or the one peer.
    sources: RefCell<Vec<(String, u64)>>,
    /// A multi-source download: its sources come from the core, not from progress.
    download: Cell<bool>,
    driver: Weak<Driver>,
}

impl TransferState {
    pub(crate) fn new(id: TransferId, peer: &str, meta: FileMeta, direction: Direction, driver: Weak<Driver>) -> Rc<Self> {
        let (done, resolve, reject) = promise();
        // Marked handled: a transfer nobody awaits must not log "uncaught"; awaiting
        // `done` still sees the rejection.
        IGNORE.with(|ignore| {
            let _ = done.catch(ignore);
        });
        Rc::new(TransferState {
            id,
            peer: peer.to_owned(),
            meta,
            direction,
            listeners: Listeners::default(),
            done,
            resolve,
            reject,
            settled: Cell::new(false),
            answered: Cell::new(true),
            sources: RefCell::new(vec![(peer.to_owned(), 0)]),
            download: Cell::new(false),
            driver,
        })
    }

    pub(crate) fn progress(&self, progress: Progress) {
        // A direct transfer has one source: the peer, with the bytes done.
        if !self.download.get() {
            if let [(_, bytes)] = self.sources.borrow_mut().as_mut_slice() {
                *bytes = progress.bytes;
            }
        }
        let payload = shapes::Progress { bytes: progress.bytes as f64, total: progress.total as f64, bytes_per_second: progress.bytes_per_second };
        self.listeners.emit("progress", &to_js(&payload));
    }

    /// A download's holders, before any byte (their order is the core's).
    pub(crate) fn set_holders(&self, sources: &[(PeerId, u64)]) {
        self.download.set(true);
        self.set_sources(sources);
    }

    pub(crate) fn set_sources(&self, sources: &[(PeerId, u64)]) {
        *self.sources.borrow_mut() = sources.iter().map(|(p, b)| (p.as_str().to_owned(), *b)).collect();
    }

    pub(crate) fn state(&self, kind: &str) {
        self.listeners.emit(kind, &to_js(&shapes::Nothing {}));
    }

    pub(crate) fn succeed(&self, value: &JsValue) {
        if !self.settled.replace(true) {
            let _ = self.resolve.call1(&JsValue::NULL, value);
        }
    }

    pub(crate) fn fail(&self, error: &TransferError) {
        if self.settled.replace(true) {
            return;
        }
        if !self.answered.replace(true) {
            // Nobody holds this transfer's `done` yet: tell the offer's listeners.
            let reason = error.to_string();
            self.listeners.emit("withdrawn", &to_js(&shapes::Withdrawn { name: transfer_error_name(error), reason: &reason }));
        }
        let _ = self.reject.call1(&JsValue::NULL, &transfer_error(error));
    }

    pub(crate) fn meta(&self) -> &FileMeta {
        &self.meta
    }
}

/// One file on its way to or from a peer.
///
/// ```js
/// const t = peer.sendFile(peerId, file);
/// t.on("progress", ({ bytes, total, bytesPerSecond }) => render(bytes / total));
/// await t.done; // the receiver verified and stored it
/// ```
#[wasm_bindgen]
pub struct Transfer {
    shared: Rc<TransferState>,
}

impl Transfer {
    pub(crate) fn new(shared: Rc<TransferState>) -> Self {
        Transfer { shared }
    }
}

#[wasm_bindgen]
impl Transfer {
    /// The transfer's id, the same on both sides.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.shared.id.to_string()
    }

    /// The other peer's id.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.shared.peer.clone()
    }

    /// The file name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.shared.meta.name.clone()
    }

    /// The file size in bytes.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.shared.meta.size as f64
    }

    /// The file's MIME type (possibly empty).
    #[wasm_bindgen(getter, js_name = type)]
    pub fn mime(&self) -> String {
        self.shared.meta.mime.clone()
    }

    /// `"send"` or `"receive"`.
    #[wasm_bindgen(getter)]
    pub fn direction(&self) -> DirectionName {
        JsValue::from_str(self.shared.direction.as_str()).unchecked_into()
    }

    /// Sender: resolves (to nothing) once the receiver verified and stored the whole
    /// file. Receiver: resolves to the verified `File`. Rejects with a `DeclinedError`,
    /// `CancelledError`, `PeerLeftError`, `HashMismatchError`, `StorageFullError`,
    /// `StorageError`, `FileUnreadableError`, `ProtocolError` or `ClosedError`.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> PromiseDone {
        self.shared.done.clone().unchecked_into()
    }

    /// Adds a listener: "progress" ({ bytes, total, bytesPerSecond }, at least 4 a
    /// second while bytes flow), "paused" (the peer left; it resumes if it returns) or
    /// "resumed".
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, kind: &str, listener: Function) -> Result<(), JsValue> {
        self.shared.listeners.add_checked(&TRANSFER_EVENTS, "transfer event", kind, listener)
    }

    /// Removes a listener added with `on`.
    #[wasm_bindgen(skip_typescript)]
    pub fn off(&self, kind: &str, listener: Function) {
        self.shared.listeners.remove(kind, &listener);
    }

    /// Bytes each peer served so far: `[{ peerId, bytes }]`. A download lists every
    /// holder it was given (verified bytes each); a direct transfer lists the one peer
    /// (the bytes of its last progress event).
    pub fn sources(&self) -> TransferSourceList {
        self.shared
            .sources
            .borrow()
            .iter()
            .map(|(peer, bytes)| to_js(&shapes::Source { peer_id: peer.as_str(), bytes: *bytes as f64 }))
            .collect::<js_sys::Array>()
            .unchecked_into()
    }

    /// Stops the transfer; both sides' `done` reject with a `CancelledError`. A partial
    /// download is deleted.
    pub fn cancel(&self, reason: Option<String>) {
        if let Some(driver) = self.shared.driver.upgrade() {
            let id = self.shared.id;
            driver.with_mesh(|mesh, now| mesh.cancel_transfer(now, id, reason.as_deref().unwrap_or("")));
        }
    }
}

/// A peer offers to send us a file: `accept()` it or `reject()` it.
///
/// ```js
/// peer.on("file-offer", async (offer) => {
///   if (offer.size > 2 ** 30) return offer.reject("too large");
///   const file = await offer.accept().done;
/// });
/// ```
#[wasm_bindgen]
pub struct FileOffer {
    shared: Rc<TransferState>,
    hash: Option<String>,
    have: u64,
}

impl FileOffer {
    pub(crate) fn new(shared: Rc<TransferState>, hash: Option<&[u8; 32]>, have: u64) -> Self {
        shared.answered.set(false);
        FileOffer { shared, hash: hash.map(|h| hex(h)), have }
    }
}

#[wasm_bindgen]
impl FileOffer {
    /// The transfer's id (also that of the `Transfer` that `accept` returns).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.shared.id.to_string()
    }

    /// Who offers it.
    #[wasm_bindgen(getter)]
    pub fn from(&self) -> String {
        self.shared.peer.clone()
    }

    /// The file name (for display; never used as a path).
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.shared.meta.name.clone()
    }

    /// Size in bytes.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.shared.meta.size as f64
    }

    /// MIME type (possibly empty).
    #[wasm_bindgen(getter, js_name = type)]
    pub fn mime(&self) -> String {
        self.shared.meta.mime.clone()
    }

    /// The content hash (hex BLAKE3), when the sender knows it before sending.
    #[wasm_bindgen(getter)]
    pub fn hash(&self) -> Option<String> {
        self.hash.clone()
    }

    /// Bytes of this content already stored here from an interrupted download: only
    /// the rest is sent.
    #[wasm_bindgen(getter, js_name = resumeBytes)]
    pub fn resume_bytes(&self) -> f64 {
        self.have as f64
    }

    /// Adds a listener: "withdrawn" ({ name, reason }) when the offer ends before an
    /// answer (the sender cancelled, or left and did not come back).
    #[wasm_bindgen(skip_typescript)]
    pub fn on(&self, kind: &str, listener: Function) -> Result<(), JsValue> {
        self.shared.listeners.add_checked(&OFFER_EVENTS, "offer event", kind, listener)
    }

    /// Removes a listener added with `on`.
    #[wasm_bindgen(skip_typescript)]
    pub fn off(&self, kind: &str, listener: Function) {
        self.shared.listeners.remove(kind, &listener);
    }

    /// Accepts: the bytes start flowing. Calling it again returns the same transfer.
    #[wasm_bindgen(unchecked_return_type = "ReceiveTransfer")]
    pub fn accept(&self) -> Transfer {
        if !self.shared.answered.replace(true) {
            if let Some(driver) = self.shared.driver.upgrade() {
                let id = self.shared.id;
                if let Err(err) = driver.with_mesh(|mesh, now| mesh.accept_file(now, id)) {
                    self.shared.fail(&err);
                }
            }
        }
        Transfer::new(self.shared.clone())
    }

    /// Declines; the sender's `done` rejects with a `DeclinedError` carrying `reason`.
    pub fn reject(&self, reason: Option<String>) {
        if self.shared.answered.replace(true) {
            return;
        }
        if let Some(driver) = self.shared.driver.upgrade() {
            let id = self.shared.id;
            driver.with_mesh(|mesh, now| mesh.reject_file(now, id, reason.as_deref().unwrap_or("declined")));
        }
        self.shared.fail(&TransferError::Declined(reason.unwrap_or_else(|| "declined".into())));
    }
}
