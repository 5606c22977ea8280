//! JS strings into Rust, through the browser's own UTF-8 encoder.
//!
//! Why not `JsValue::as_string`: wasm-bindgen copies ASCII one character at a time in
//! JS, which V8 runs slowly until it has optimized that loop, and a page's first
//! messages pay for that (2 peers broadcasting 1000 × 1 KiB: burst 0.58–0.62 × a raw
//! channel's speed that way, 0.69–0.70 this way). `encodeInto` into a buffer kept for
//! the next string, because `encode` makes an ArrayBuffer each time: 8–10 µs per 1 KiB
//! string against 3.5–6.

use js_sys::{JsString, Uint8Array};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

/// Strings up to this many UTF-8 bytes go through the kept buffer; longer ones, rare,
/// get a buffer of their own that is not kept.
const SCRATCH_BYTES: u32 = 64 * 1024;

#[wasm_bindgen]
extern "C" {
    /// `TextEncoder`, taking the JS string as it is (web-sys's takes a `&str`).
    #[wasm_bindgen(js_name = TextEncoder)]
    type Utf8Encoder;
    #[wasm_bindgen(constructor, js_class = "TextEncoder")]
    fn new() -> Utf8Encoder;
    #[wasm_bindgen(method, js_class = "TextEncoder")]
    fn encode(this: &Utf8Encoder, text: &JsString) -> Uint8Array;
    #[wasm_bindgen(method, js_class = "TextEncoder", js_name = encodeInto)]
    fn encode_into(this: &Utf8Encoder, text: &JsString, into: &Uint8Array) -> EncodeIntoResult;

    type EncodeIntoResult;
    #[wasm_bindgen(method, getter)]
    fn written(this: &EncodeIntoResult) -> u32;
}

thread_local! {
    /// The encoder and the buffer it encodes into, made on the first string.
    static ENCODER: (Utf8Encoder, Uint8Array) = (Utf8Encoder::new(), Uint8Array::new_with_length(SCRATCH_BYTES));
}

/// `value` as a Rust string, if it is a JS string. Lone surrogates become U+FFFD, as
/// with `as_string`.
pub(crate) fn to_rust_string(value: &JsValue) -> Option<String> {
    let text = value.dyn_ref::<JsString>()?;
    // UTF-16 code units → at most 3 UTF-8 bytes each.
    let most = text.length().saturating_mul(3);
    let bytes = ENCODER.with(|(encoder, buffer)| {
        if most > SCRATCH_BYTES {
            return encoder.encode(text).to_vec();
        }
        let written = encoder.encode_into(text, buffer).written();
        buffer.subarray(0, written).to_vec()
    });
    Some(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}
