//! Small helpers every part of the JS surface uses: promises with their settle
//! functions, and per-type listener lists. A leaf: it imports nothing from the
//! rest of `api`.

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Array, Function, Promise};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::JsValue;

#[wasm_bindgen(inline_js = r#"
export function dispatch(list, kind, payload) {
  // A copy: listeners may add or remove listeners while we iterate.
  for (const listener of list.slice()) {
    try {
      listener(payload);
    } catch (err) {
      // One throwing listener must not starve the others or the core.
      console.error(`meshdrop: a "${kind}" listener threw`, err);
    }
  }
}
export function dispatchMessage(list, from, data) {
  dispatch(list, "message", { from, data });
}
export function removeListener(list, listener) {
  const at = list.indexOf(listener);
  if (at >= 0) list.splice(at, 1);
}
"#)]
extern "C" {
    fn dispatch(list: &Array, kind: &str, payload: &JsValue);
    #[wasm_bindgen(js_name = dispatchMessage)]
    fn dispatch_message(list: &Array, from: &JsValue, data: &JsValue);
    #[wasm_bindgen(js_name = removeListener)]
    fn remove_listener(list: &Array, listener: &Function);
}

/// Listeners by event type, each list a JS array: an event reaches all of them in one
/// call into JS (messages come in bursts of thousands).
#[derive(Default)]
pub(crate) struct Listeners {
    by_type: RefCell<HashMap<&'static str, Array>>,
}

impl Listeners {
    pub(crate) fn add(&self, kind: &'static str, listener: Function) {
        self.by_type.borrow_mut().entry(kind).or_default().push(&listener);
    }

    /// Adds a listener for `kind` if it is one of `allowed`; else a `TypeError` naming
    /// `what` was asked for and what exists.
    pub(crate) fn add_checked(&self, allowed: &[&'static str], what: &str, kind: &str, listener: Function) -> Result<(), JsValue> {
        let kind = allowed
            .iter()
            .find(|k| **k == kind)
            .ok_or_else(|| crate::api::error::type_error(&format!("unknown {what} \"{kind}\"; expected one of {}", allowed.join(", "))))?;
        self.add(kind, listener);
        Ok(())
    }

    pub(crate) fn remove(&self, kind: &str, listener: &Function) {
        if let Some(list) = self.list(kind) {
            remove_listener(&list, listener);
        }
    }

    /// The array itself, not borrowed: a listener may call `on` or `off` while it runs.
    fn list(&self, kind: &str) -> Option<Array> {
        self.by_type.borrow().get(kind).cloned()
    }

    pub(crate) fn emit(&self, kind: &str, payload: &JsValue) {
        if let Some(list) = self.list(kind) {
            dispatch(&list, kind, payload);
        }
    }

    /// A "message" event, `{ from, data }`; `data` is made only if someone listens.
    pub(crate) fn emit_message(&self, from: &JsValue, data: impl FnOnce() -> JsValue) {
        if let Some(list) = self.list("message") {
            dispatch_message(&list, from, &data());
        }
    }
}

/// A promise and its settle functions.
pub(crate) fn promise() -> (Promise, Function, Function) {
    let mut settle = None;
    let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    #[allow(clippy::expect_used)]
    let (resolve, reject) = settle.expect("the Promise executor runs synchronously");
    (promise, resolve, reject)
}
