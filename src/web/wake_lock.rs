//! A Screen Wake Lock while files are on their way: a device that sleeps mid-transfer
//! drops the connection. Where the API is missing (or the page is hidden, when
//! browsers refuse it) nothing happens; it is taken again when the page is shown.

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(inline_js = r#"
let wanted = false;
let sentinel = null;
let listening = false;
async function acquire() {
  if (!wanted || sentinel || typeof document === "undefined" || document.visibilityState !== "visible" || !navigator.wakeLock) return;
  try {
    const lock = await navigator.wakeLock.request("screen");
    if (!wanted) return void lock.release();
    sentinel = lock;
    lock.addEventListener("release", () => { if (sentinel === lock) sentinel = null; });
  } catch {
    // Refused (hidden page, permissions policy): try again when shown.
  }
}
export function setWakeLock(on) {
  if (on === wanted) return;
  wanted = on;
  if (!listening && typeof document !== "undefined") {
    listening = true;
    document.addEventListener("visibilitychange", acquire);
  }
  if (on) acquire();
  else if (sentinel) { sentinel.release(); sentinel = null; }
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = setWakeLock)]
    fn set_wake_lock(on: bool);
}

/// Holds the screen awake while `transferring`, and lets it go after.
pub(crate) fn keep_awake(transferring: bool) {
    set_wake_lock(transferring);
}
