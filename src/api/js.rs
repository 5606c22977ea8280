//! Small helpers every part of the JS surface uses: promises with their settle
//! functions, and per-type listener lists. A leaf: it imports nothing from the
//! rest of `api`.

use std::cell::RefCell;
use std::collections::HashMap;

use js_sys::{Function, Promise};
use wasm_bindgen::JsValue;

#[derive(Default)]
pub(crate) struct Listeners {
    by_type: RefCell<HashMap<&'static str, Vec<Function>>>,
}

impl Listeners {
    pub(crate) fn add(&self, kind: &'static str, listener: Function) {
        self.by_type.borrow_mut().entry(kind).or_default().push(listener);
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
        if let Some(list) = self.by_type.borrow_mut().get_mut(kind) {
            if let Some(i) = list.iter().position(|l| l == listener) {
                list.remove(i);
            }
        }
    }

    pub(crate) fn emit(&self, kind: &str, payload: &JsValue) {
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

/// A promise and its settle functions.
pub(crate) fn promise() -> (Promise, Function, Function) {
    let mut settle = None;
    let promise = Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    #[allow(clippy::expect_used)]
    let (resolve, reject) = settle.expect("the Promise executor runs synchronously");
    (promise, resolve, reject)
}
