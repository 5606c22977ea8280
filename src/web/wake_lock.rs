//! A Screen Wake Lock while files are on their way, from a second into a transfer: a
//! device that sleeps mid-transfer drops the connection. Where the API is missing (or
//! the page is hidden, when browsers refuse it) nothing happens; it is taken again
//! when the page is shown.

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(module = "/src/web/glue.js")]
extern "C" {
    #[wasm_bindgen(js_name = setWakeLock)]
    fn set_wake_lock(on: bool);
}

/// Holds the screen awake while `transferring`, and lets it go after.
pub(crate) fn keep_awake(transferring: bool) {
    set_wake_lock(transferring);
}
