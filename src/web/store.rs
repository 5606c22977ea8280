//! Where received files go: the Origin Private File System through a worker holding
//! synchronous access handles (bytes are written in place as they arrive and survive a
//! reload, so downloads resume), or — only where OPFS is missing — memory, as a Blob
//! assembled at the end (no resume there).

use std::collections::{BTreeMap, HashMap};

use gloo_events::EventListener;
use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{Blob, BlobPropertyBag, MessageEvent, Url, Worker};

use super::error::describe;
use crate::core::{FileMeta, Hash, Partial, PeerId, StoreError, TransferId};

const WORKER_SOURCE: &str = include_str!("store_worker.js");

/// What storage reports back.
pub(crate) enum StoreReply {
    Probed(TransferId, Option<Partial>),
    Opened(TransferId, Result<(), StoreError>),
    Committed(TransferId, u32),
    /// The finished file (disk-backed with OPFS), or why not.
    Finished(TransferId, Result<Blob, StoreError>),
    Failed(TransferId, StoreError),
}

pub(crate) struct Store {
    backend: Backend,
}

enum Backend {
    Opfs { worker: Worker, url: String, _listener: EventListener },
    Memory { files: HashMap<TransferId, BTreeMap<u64, Uint8Array>>, on_reply: Box<dyn Fn(StoreReply)> },
}

fn opfs_available() -> bool {
    let global = js_sys::global();
    let storage = Reflect::get(&global, &"navigator".into()).and_then(|n| Reflect::get(&n, &"storage".into()));
    let has_dir = storage.and_then(|s| Reflect::get(&s, &"getDirectory".into())).is_ok_and(|f| f.is_function());
    has_dir && Reflect::get(&global, &"Worker".into()).is_ok_and(|w| w.is_function())
}

impl Store {
    /// OPFS if the browser has it, memory otherwise. `on_reply` gets every report.
    pub(crate) fn new(on_reply: impl Fn(StoreReply) + Clone + 'static) -> Store {
        if opfs_available() {
            if let Ok(backend) = Self::opfs(&on_reply) {
                return Store { backend };
            }
        }
        Store { backend: Backend::Memory { files: HashMap::new(), on_reply: Box::new(on_reply) } }
    }

    fn opfs(on_reply: &(impl Fn(StoreReply) + Clone + 'static)) -> Result<Backend, JsValue> {
        let parts = Array::of1(&JsValue::from_str(WORKER_SOURCE));
        let options = BlobPropertyBag::new();
        options.set_type("text/javascript");
        let blob = Blob::new_with_str_sequence_and_options(&parts, &options)?;
        let url = Url::create_object_url_with_blob(&blob)?;
        let worker = Worker::new(&url)?;
        let on_reply = on_reply.clone();
        let listener = EventListener::new(&worker, "message", move |event| {
            if let Some(reply) = event.dyn_ref::<MessageEvent>().and_then(|e| parse_reply(&e.data())) {
                on_reply(reply);
            }
        });
        Ok(Backend::Opfs { worker, url, _listener: listener })
    }

    /// Whether downloads survive a reload here.
    pub(crate) fn persistent(&self) -> bool {
        matches!(self.backend, Backend::Opfs { .. })
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

    pub(crate) fn probe(&self, id: TransferId, key: &str) {
        match &self.backend {
            Backend::Opfs { worker, .. } => Self::post(worker, &[("op", "probe".into()), ("id", id_js(id)), ("key", key.into())], None),
            Backend::Memory { on_reply, .. } => on_reply(StoreReply::Probed(id, None)),
        }
    }

    pub(crate) fn open(&mut self, id: TransferId, key: &str, from: Option<&PeerId>, meta: &FileMeta) {
        match &mut self.backend {
            Backend::Opfs { worker, .. } => {
                let info = Object::new();
                let _ = Reflect::set(&info, &"from".into(), &from.map_or(JsValue::NULL, |p| p.as_str().into()));
                let _ = Reflect::set(&info, &"name".into(), &meta.name.as_str().into());
                let _ = Reflect::set(&info, &"size".into(), &(meta.size as f64).into());
                let _ = Reflect::set(&info, &"type".into(), &meta.mime.as_str().into());
                Self::post(worker, &[("op", "open".into()), ("id", id_js(id)), ("key", key.into()), ("meta", info.into())], None);
            }
            Backend::Memory { files, on_reply } => {
                files.entry(id).or_default();
                on_reply(StoreReply::Opened(id, Ok(())));
            }
        }
    }

    /// Stores a frame's bytes at `offset` (the buffer is handed over, not copied).
    pub(crate) fn write(&mut self, id: TransferId, offset: u64, buffer: ArrayBuffer) {
        match &mut self.backend {
            Backend::Opfs { worker, .. } => Self::post(
                worker,
                &[("op", "write".into()), ("id", id_js(id)), ("offset", (offset as f64).into()), ("buffer", buffer.clone().into())],
                Some(&buffer),
            ),
            Backend::Memory { files, .. } => {
                if let Some(parts) = files.get_mut(&id) {
                    parts.insert(offset, Uint8Array::new(&buffer));
                }
            }
        }
    }

    pub(crate) fn commit(&self, id: TransferId, block: u32, hash: &Hash) {
        match &self.backend {
            Backend::Opfs { worker, .. } => {
                let hash = Uint8Array::from(hash.as_slice()).buffer();
                let fields = [("op", "commit".into()), ("id", id_js(id)), ("block", block.into()), ("hash", hash.clone().into())];
                Self::post(worker, &fields, Some(&hash));
            }
            Backend::Memory { on_reply, .. } => on_reply(StoreReply::Committed(id, block)),
        }
    }

    pub(crate) fn finish(&mut self, id: TransferId) {
        match &mut self.backend {
            Backend::Opfs { worker, .. } => Self::post(worker, &[("op", "finish".into()), ("id", id_js(id))], None),
            Backend::Memory { files, on_reply } => {
                let parts: Array = files.remove(&id).unwrap_or_default().into_values().collect();
                let blob = Blob::new_with_u8_array_sequence(&parts).map_err(|e| StoreError { full: false, message: describe(&e) });
                on_reply(StoreReply::Finished(id, blob));
            }
        }
    }

    pub(crate) fn close(&mut self, id: TransferId, delete: bool) {
        match &mut self.backend {
            Backend::Opfs { worker, .. } => Self::post(worker, &[("op", "close".into()), ("id", id_js(id)), ("remove", delete.into())], None),
            Backend::Memory { files, .. } => {
                files.remove(&id);
            }
        }
    }

    /// Removes downloads (partial or finished) untouched for `max_age_ms`.
    pub(crate) fn cleanup(&self, max_age_ms: u64) {
        if let Backend::Opfs { worker, .. } = &self.backend {
            Self::post(worker, &[("op", "cleanup".into()), ("maxAgeMs", (max_age_ms as f64).into())], None);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Backend::Opfs { worker, url, .. } = &self.backend {
            // Closing the worker releases its access handles; written bytes stay.
            worker.terminate();
            let _ = Url::revoke_object_url(url);
        }
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
