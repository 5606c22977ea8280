//! Browser errors as text: a thrown JS value, for messages.

use wasm_bindgen::JsValue;

/// A thrown JS value as text, for messages.
pub(crate) fn describe(err: &JsValue) -> String {
    err.as_string()
        .or_else(|| js_sys::Reflect::get(err, &JsValue::from_str("message")).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| "unknown error".to_owned())
}
