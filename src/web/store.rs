//! Where received files go: the Origin Private File System through a worker holding
//! synchronous access handles (bytes are written in place as they arrive and survive a
//! reload, so downloads resume), or — where OPFS or a worker is not available — memory,
//! as a Blob assembled at the end (no resume there), as are files the core says need
//! not be durable (of one block, which resume from nothing). The worker loads from a file
//! shipped in the package, else from a `blob:` URL; one that cannot start (a strict
//! Content-Security-Policy, say) means memory and a warning, never a hang.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Blob, BlobPropertyBag, File, FilePropertyBag, MessageEvent, Url, Worker};

use super::error::describe;
use crate::core::{FileMeta, Hash, Partial, PeerId, StoreError, TransferId};

/// The worker's source, for the `blob:` fallback (bundlers that do not emit the worker
/// file, pages served without it).
const WORKER_SOURCE: &str = include_str!("store_worker.js");
/// A worker that has said neither `ready` nor failed by then is given up.
const WORKER_START_TIMEOUT_MS: u32 = 5_000;

#[wasm_bindgen(module = "/src/web/glue.js")]
extern "C" {
    /// The worker from the file shipped beside that module (`new Worker(new URL(...,
    /// import.meta.url))`, the form bundlers emit), which a strict `worker-src 'self'`
    /// allows.
    #[wasm_bindgen(catch, js_name = startStoreWorker)]
    fn start_store_worker_file() -> Result<Worker, JsValue>;
}

/// A worker started when the module loads (`init()`), and again when a `Peer` leaves,
/// before a `Peer.join` needs one: started during a join, it cost that join 25–40 ms on
/// a two-core machine (join → welcome: median 73 ms with it, 46 ms without). The next
/// store takes it over, with whatever it said meanwhile.
struct Spare {
    worker: Worker,
    said: Rc<RefCell<Option<WorkerEvent>>>,
    _listeners: [EventListener; 2],
}

thread_local! {
    static SPARE: RefCell<Option<Spare>> = const { RefCell::new(None) };
}

/// Starts the spare worker, where there is OPFS, unless one is waiting already. One that
/// cannot even be constructed is left to the next store, which tries again and says why.
pub(crate) fn prestart() {
    if !opfs_available() || SPARE.with(|spare| spare.borrow().is_some()) {
        return;
    }
    let Ok(worker) = start_store_worker_file() else { return };
    let said: Rc<RefCell<Option<WorkerEvent>>> = Rc::default();
    let heard = said.clone();
    let on_message = EventListener::new(&worker, "message", move |event| {
        if let Some(event) = event.dyn_ref::<MessageEvent>().and_then(|e| parse_lifecycle(&e.data())) {
            heard.borrow_mut().get_or_insert(event);
        }
    });
    let heard = said.clone();
    let on_error = EventListener::new(&worker, "error", move |event| {
        heard.borrow_mut().get_or_insert(WorkerEvent::Failed(load_error(event)));
    });
    SPARE.with(|spare| *spare.borrow_mut() = Some(Spare { worker, said, _listeners: [on_message, on_error] }));
}

/// Why a worker's script failed, from its `error` event.
fn load_error(event: &web_sys::Event) -> String {
    let message = Reflect::get(event, &"message".into()).ok().and_then(|m| m.as_string()).filter(|m| !m.is_empty());
    message.unwrap_or_else(|| "it could not be loaded (blocked by the page's Content-Security-Policy, or missing)".into())
}

/// What storage reports back.
pub(crate) enum StoreReply {
    Probed(TransferId, Option<Partial>),
    Opened(TransferId, Result<(), StoreError>),
    Committed(TransferId, u32),
    /// The finished file (disk-backed with OPFS), or why not.
    Finished(TransferId, Result<Blob, StoreError>),
    Failed(TransferId, StoreError),
    /// The worker of attempt `n` started, or failed (for [`Store::worker_event`]).
    Worker(u32, WorkerEvent),
}

pub(crate) enum WorkerEvent {
    Ready,
    Failed(String),
}

/// Where the worker comes from: the shipped file first, then a `blob:` URL.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Source {
    File,
    Blob,
}

/// One operation, as the core asked for it: kept while a worker starts, and replayed
/// in order on whichever backend follows.
enum Op {
    Probe { id: TransferId, key: String },
    Open { id: TransferId, key: String, from: Option<PeerId>, meta: FileMeta },
    Write { id: TransferId, offset: u64, buffer: ArrayBuffer },
    Commit { id: TransferId, block: u32, hash: Hash },
    Finish { id: TransferId },
    Close { id: TransferId, delete: bool },
    Cleanup { max_age_ms: u64 },
}

/// A running worker and what it holds open (failed with a `StorageError` if it dies).
struct Live {
    worker: Worker,
    blob_url: Option<String>,
    open: HashSet<TransferId>,
    _listeners: [EventListener; 2],
}

impl Drop for Live {
    fn drop(&mut self) {
        // Closing the worker releases its access handles; written bytes stay.
        self.worker.terminate();
        if let Some(url) = &self.blob_url {
            let _ = Url::revoke_object_url(url);
        }
    }
}

/// A file in memory: its parts by offset, assembled at the end into a File under the
/// sender's name and type (one copy into the browser's blob storage, not two).
#[derive(Default)]
struct Parts {
    by_offset: BTreeMap<u64, Uint8Array>,
    meta: Option<FileMeta>,
}

pub(crate) struct Store {
    backend: Backend,
    /// Files the core said need not be durable (nothing of them can resume): kept in
    /// memory whatever the backend, and never waiting for the worker.
    in_memory: HashMap<TransferId, Parts>,
    on_reply: Rc<dyn Fn(StoreReply)>,
    /// Counts worker attempts, so a late event from an abandoned one is ignored.
    attempt: u32,
    /// Why storage is in memory, when that was decided while constructing.
    warning: Option<String>,
}

enum Backend {
    /// Waiting for the worker's `ready`; operations wait with it.
    Starting {
        live: Live,
        source: Source,
        pending: Vec<Op>,
        _deadline: Timeout,
    },
    Opfs(Live),
    Memory(HashMap<TransferId, Parts>),
}

fn opfs_available() -> bool {
    let global = js_sys::global();
    let storage = Reflect::get(&global, &"navigator".into()).and_then(|n| Reflect::get(&n, &"storage".into()));
    let has_dir = storage.and_then(|s| Reflect::get(&s, &"getDirectory".into())).is_ok_and(|f| f.is_function());
    has_dir && Reflect::get(&global, &"Worker".into()).is_ok_and(|w| w.is_function())
}

impl Store {
    /// Starts the OPFS worker if the browser has OPFS (memory otherwise). `on_reply`
    /// gets every report, including [`StoreReply::Worker`], which the owner hands back
    /// to [`Store::worker_event`]. Until the worker is ready, operations wait.
    pub(crate) fn new(on_reply: impl Fn(StoreReply) + 'static) -> Store {
        let mut store =
            Store { backend: Backend::Memory(HashMap::new()), in_memory: HashMap::new(), on_reply: Rc::new(on_reply), attempt: 0, warning: None };
        if opfs_available() {
            store.warning = store.start(Source::File, Vec::new());
        }
        store
    }

    /// A warning for the user if storage went to memory before any event could say so.
    pub(crate) fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    /// Whether storage is still being set up (the worker has not answered yet).
    pub(crate) fn starting(&self) -> bool {
        matches!(self.backend, Backend::Starting { .. })
    }

    /// Whether downloads survive a reload here.
    pub(crate) fn persistent(&self) -> bool {
        matches!(self.backend, Backend::Opfs(_))
    }

    /// Starts a worker from `source`, falling through to the next source (and to
    /// memory) if it cannot even be constructed.
    fn start(&mut self, source: Source, pending: Vec<Op>) -> Option<String> {
        self.attempt += 1;
        let spare = if source == Source::File { SPARE.with(|spare| spare.borrow_mut().take()) } else { None };
        let started = match spare {
            Some(Spare { worker, said, _listeners }) => {
                // Our listeners replace the spare's at once: no event comes in between.
                drop(_listeners);
                let said = said.borrow_mut().take();
                Ok((self.listen(worker, None), said))
            }
            None => self.spawn(source).map(|live| (live, None)),
        };
        match started {
            Ok((live, Some(WorkerEvent::Ready))) => {
                self.backend = Backend::Opfs(live);
                for op in pending {
                    self.perform(op);
                }
                None
            }
            Ok((live, Some(WorkerEvent::Failed(why)))) => {
                drop(live);
                self.fall_back(source, pending, why)
            }
            Ok((live, None)) => {
                let on_reply = self.on_reply.clone();
                let attempt = self.attempt;
                let deadline = Timeout::new(WORKER_START_TIMEOUT_MS, move || {
                    on_reply(StoreReply::Worker(attempt, WorkerEvent::Failed(format!("it did not start within {WORKER_START_TIMEOUT_MS} ms"))));
                });
                self.backend = Backend::Starting { live, source, pending, _deadline: deadline };
                None
            }
            Err(err) => self.fall_back(source, pending, describe(&err)),
        }
    }

    fn spawn(&self, source: Source) -> Result<Live, JsValue> {
        let (worker, blob_url) = match source {
            Source::File => (start_store_worker_file()?, None),
            Source::Blob => {
                let parts = Array::of1(&JsValue::from_str(WORKER_SOURCE));
                let options = BlobPropertyBag::new();
                options.set_type("text/javascript");
                let blob = Blob::new_with_str_sequence_and_options(&parts, &options)?;
                let url = Url::create_object_url_with_blob(&blob)?;
                match Worker::new(&url) {
                    Ok(worker) => (worker, Some(url)),
                    Err(err) => {
                        let _ = Url::revoke_object_url(&url);
                        return Err(err);
                    }
                }
            }
        };
        Ok(self.listen(worker, blob_url))
    }

    /// Hands a worker's lifecycle and replies to `on_reply`, for this attempt.
    fn listen(&self, worker: Worker, blob_url: Option<String>) -> Live {
        let attempt = self.attempt;
        let on_reply = self.on_reply.clone();
        let on_message = EventListener::new(&worker, "message", move |event| {
            let Some(data) = event.dyn_ref::<MessageEvent>().map(MessageEvent::data) else { return };
            if let Some(event) = parse_lifecycle(&data) {
                on_reply(StoreReply::Worker(attempt, event));
            } else if let Some(reply) = parse_reply(&data) {
                on_reply(reply);
            }
        });
        let on_reply = self.on_reply.clone();
        // A script that cannot load (blocked by CSP, missing) or a worker that crashed.
        let on_error = EventListener::new(&worker, "error", move |event| {
            on_reply(StoreReply::Worker(attempt, WorkerEvent::Failed(load_error(event))));
        });
        Live { worker, blob_url, open: HashSet::new(), _listeners: [on_message, on_error] }
    }

    /// The next source after `failed`, or memory; says why storage is not persistent.
    fn fall_back(&mut self, failed: Source, pending: Vec<Op>, why: String) -> Option<String> {
        if failed == Source::File {
            return self.start(Source::Blob, pending);
        }
        self.backend = Backend::Memory(HashMap::new());
        for op in pending {
            self.perform(op);
        }
        Some(format!(
            "the storage worker could not start ({why}): received files are kept in memory and cannot resume after a reload. \
             A Content-Security-Policy must allow workers from the page's origin (worker-src 'self')."
        ))
    }

    /// A worker started or failed. Returns a warning for the user when storage ends up
    /// in memory.
    pub(crate) fn worker_event(&mut self, attempt: u32, event: WorkerEvent) -> Option<String> {
        if attempt != self.attempt {
            return None;
        }
        match (std::mem::replace(&mut self.backend, Backend::Memory(HashMap::new())), event) {
            (Backend::Starting { live, pending, .. }, WorkerEvent::Ready) => {
                self.backend = Backend::Opfs(live);
                for op in pending {
                    self.perform(op);
                }
                None
            }
            (Backend::Starting { source, pending, .. }, WorkerEvent::Failed(why)) => self.fall_back(source, pending, why),
            (Backend::Opfs(live), WorkerEvent::Failed(why)) => {
                // Died while in use: what it held open fails; new downloads go to memory.
                let message = format!("the storage worker stopped: {why}");
                for id in &live.open {
                    (self.on_reply)(StoreReply::Failed(*id, StoreError { full: false, message: message.clone() }));
                }
                drop(live);
                Some(format!("{message}; received files are kept in memory from now on"))
            }
            (backend, _) => {
                self.backend = backend;
                None
            }
        }
    }

    fn perform(&mut self, op: Op) {
        let on_reply = self.on_reply.clone();
        if op.transfer().is_some_and(|id| self.in_memory.contains_key(&id)) {
            memory_op(&mut self.in_memory, &*on_reply, op);
            return;
        }
        match &mut self.backend {
            Backend::Starting { pending, .. } => pending.push(op),
            Backend::Opfs(live) => Self::post_op(live, op),
            Backend::Memory(files) => memory_op(files, &*on_reply, op),
        }
    }

    fn post_op(live: &mut Live, op: Op) {
        let worker = &live.worker;
        match op {
            Op::Probe { id, key } => post(worker, &[("op", "probe".into()), ("id", id_js(id)), ("key", key.into())], None),
            Op::Open { id, key, from, meta } => {
                live.open.insert(id);
                let info = Object::new();
                let _ = Reflect::set(&info, &"from".into(), &from.map_or(JsValue::NULL, |p| p.as_str().into()));
                let _ = Reflect::set(&info, &"name".into(), &meta.name.as_str().into());
                let _ = Reflect::set(&info, &"size".into(), &(meta.size as f64).into());
                let _ = Reflect::set(&info, &"type".into(), &meta.mime.as_str().into());
                post(worker, &[("op", "open".into()), ("id", id_js(id)), ("key", key.into()), ("meta", info.into())], None);
            }
            Op::Write { id, offset, buffer } => post(
                worker,
                &[("op", "write".into()), ("id", id_js(id)), ("offset", (offset as f64).into()), ("buffer", buffer.clone().into())],
                Some(&buffer),
            ),
            Op::Commit { id, block, hash } => {
                let hash = Uint8Array::from(hash.as_slice()).buffer();
                let fields = [("op", "commit".into()), ("id", id_js(id)), ("block", block.into()), ("hash", hash.clone().into())];
                post(worker, &fields, Some(&hash));
            }
            Op::Finish { id } => {
                live.open.remove(&id);
                post(worker, &[("op", "finish".into()), ("id", id_js(id))], None);
            }
            Op::Close { id, delete } => {
                live.open.remove(&id);
                post(worker, &[("op", "close".into()), ("id", id_js(id)), ("remove", delete.into())], None);
            }
            Op::Cleanup { max_age_ms } => post(worker, &[("op", "cleanup".into()), ("maxAgeMs", (max_age_ms as f64).into())], None),
        }
    }

    pub(crate) fn probe(&mut self, id: TransferId, key: &str) {
        self.perform(Op::Probe { id, key: key.to_owned() });
    }

    /// Opens storage for a download; one that need not be `durable` is kept in memory.
    pub(crate) fn open(&mut self, id: TransferId, key: &str, from: Option<&PeerId>, meta: &FileMeta, durable: bool) {
        if !durable {
            self.in_memory.insert(id, Parts::default());
        }
        self.perform(Op::Open { id, key: key.to_owned(), from: from.cloned(), meta: meta.clone() });
    }

    /// Stores a frame's bytes at `offset` (the buffer is handed over, not copied).
    pub(crate) fn write(&mut self, id: TransferId, offset: u64, buffer: ArrayBuffer) {
        self.perform(Op::Write { id, offset, buffer });
    }

    pub(crate) fn commit(&mut self, id: TransferId, block: u32, hash: &Hash) {
        self.perform(Op::Commit { id, block, hash: *hash });
    }

    pub(crate) fn finish(&mut self, id: TransferId) {
        self.perform(Op::Finish { id });
    }

    pub(crate) fn close(&mut self, id: TransferId, delete: bool) {
        self.perform(Op::Close { id, delete });
    }

    /// Removes downloads (partial or finished) untouched for `max_age_ms`.
    pub(crate) fn cleanup(&mut self, max_age_ms: u64) {
        self.perform(Op::Cleanup { max_age_ms });
    }
}

impl Op {
    /// The transfer it is for (cleanup is for none).
    fn transfer(&self) -> Option<TransferId> {
        match self {
            Op::Probe { id, .. } | Op::Open { id, .. } | Op::Write { id, .. } | Op::Commit { id, .. } | Op::Finish { id } | Op::Close { id, .. } => {
                Some(*id)
            }
            Op::Cleanup { .. } => None,
        }
    }
}

/// Memory storage: parts by offset, assembled into a Blob at the end; nothing to
/// resume from.
fn memory_op(files: &mut HashMap<TransferId, Parts>, on_reply: &dyn Fn(StoreReply), op: Op) {
    match op {
        Op::Probe { id, .. } => on_reply(StoreReply::Probed(id, None)),
        Op::Open { id, meta, .. } => {
            files.entry(id).or_default().meta = Some(meta);
            on_reply(StoreReply::Opened(id, Ok(())));
        }
        Op::Write { id, offset, buffer } => {
            if let Some(parts) = files.get_mut(&id) {
                parts.by_offset.insert(offset, Uint8Array::new(&buffer));
            }
        }
        Op::Commit { id, block, .. } => on_reply(StoreReply::Committed(id, block)),
        Op::Finish { id } => {
            let Parts { by_offset, meta } = files.remove(&id).unwrap_or_default();
            let parts: Array = by_offset.into_values().collect();
            let blob = match meta {
                Some(meta) => {
                    let options = FilePropertyBag::new();
                    options.set_type(&meta.mime);
                    File::new_with_u8_array_sequence_and_options(&parts, &meta.name, &options).map(Into::into)
                }
                None => Blob::new_with_u8_array_sequence(&parts),
            };
            on_reply(StoreReply::Finished(id, blob.map_err(|e| StoreError { full: false, message: describe(&e) })));
        }
        Op::Close { id, .. } => {
            files.remove(&id);
        }
        Op::Cleanup { .. } => {}
    }
}

fn post(worker: &Worker, fields: &[(&str, JsValue)], transfer: Option<&ArrayBuffer>) {
    let message = Object::new();
    for (key, value) in fields {
        let _ = Reflect::set(&message, &JsValue::from_str(key), value);
    }
    let result = match transfer {
        Some(buffer) => worker.post_message_with_transfer(&message, &Array::of1(buffer)),
        None => worker.post_message(&message),
    };
    if let Err(err) = result {
        web_sys::console::error_2(&"meshdrop: storage worker refused a message".into(), &err);
    }
}

/// `{op: "ready"}` or `{op: "unusable", error}`: the worker's first word.
fn parse_lifecycle(data: &JsValue) -> Option<WorkerEvent> {
    let op = Reflect::get(data, &"op".into()).ok()?.as_string()?;
    match op.as_str() {
        "ready" => Some(WorkerEvent::Ready),
        "unusable" => {
            let why = Reflect::get(data, &"error".into()).ok().and_then(|e| e.as_string()).unwrap_or_default();
            Some(WorkerEvent::Failed(format!("OPFS is not usable in a worker here: {why}")))
        }
        _ => None,
    }
}

fn id_js(id: TransferId) -> JsValue {
    JsValue::from_str(&id.to_string())
}

fn parse_reply(data: &JsValue) -> Option<StoreReply> {
    let get = |key: &str| Reflect::get(data, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined());
    let op = get("op")?.as_string()?;
    let id = TransferId::parse(&get("id")?.as_string()?)?;
    let error =
        get("error").map(|e| StoreError { full: get("full").and_then(|f| f.as_bool()).unwrap_or(false), message: e.as_string().unwrap_or_default() });
    Some(match op.as_str() {
        "probed" => {
            let partial = get("hashes").map(|hashes| {
                let hashes = Uint8Array::new(&hashes).to_vec();
                let blocks = hashes
                    .chunks_exact(32)
                    .enumerate()
                    .filter(|(_, h)| h.iter().any(|b| *b != 0))
                    .filter_map(|(i, h)| Some((u32::try_from(i).ok()?, h.try_into().ok()?)))
                    .collect();
                let from = get("from").and_then(|f| f.as_string());
                let transfer = get("transfer").and_then(|t| t.as_string()).and_then(|t| TransferId::parse(&t));
                Partial { from, transfer, blocks }
            });
            StoreReply::Probed(id, partial)
        }
        "opened" => StoreReply::Opened(id, error.map_or(Ok(()), Err)),
        "committed" => StoreReply::Committed(id, get("block")?.as_f64()? as u32),
        "finished" => match error {
            Some(err) => StoreReply::Finished(id, Err(err)),
            None => StoreReply::Finished(id, get("file")?.dyn_into::<Blob>().map_err(|_| StoreError { full: false, message: "no file".into() })),
        },
        "failed" => StoreReply::Failed(id, error?),
        _ => return None,
    })
}
