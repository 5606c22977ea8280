//! JS strings into Rust, through the browser's own UTF-8 encoder.
//!
//! Why not `JsValue::as_string`: wasm-bindgen copies ASCII one character at a time in
//! JS, which V8 runs slowly until it has optimized that loop. A page's first thousand
//! 1 KiB messages spent 40 µs each there, a third of a broadcast burst's CPU
//! (`Profiler` of `bench/mesh.mjs`'s burst at 2 peers); `TextEncoder` is native code,
//! as fast on its first call as on its thousandth.

use js_sys::{JsString, Uint8Array};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

#[wasm_bindgen]
extern "C" {
    /// `TextEncoder`, taking the JS string as it is (web-sys's takes a `&str`).
    #[wasm_bindgen(js_name = TextEncoder)]
    type Utf8Encoder;
    #[wasm_bindgen(constructor, js_class = "TextEncoder")]
    fn new() -> Utf8Encoder;
    #[wasm_bindgen(method, js_class = "TextEncoder")]
    fn encode(this: &Utf8Encoder, text: &JsString) -> Uint8Array;
}

thread_local! {
    static ENCODER: Utf8Encoder = Utf8Encoder::new();
}

/// `value` as a Rust string, if it is a JS string. Lone surrogates become U+FFFD, as
/// with `as_string`.
pub(crate) fn to_rust_string(value: &JsValue) -> Option<String> {
    let text = value.dyn_ref::<JsString>()?;
    let bytes = ENCODER.with(|encoder| encoder.encode(text)).to_vec();
    Some(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}
