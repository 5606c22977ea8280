//! Clock, idle time and randomness from whatever global scope we run in (window or
//! worker), and the slot for what `init()` prepares ahead of a join.

use std::cell::RefCell;
use std::thread::LocalKey;

use gloo_timers::callback::Timeout;
use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};

use crate::core::Millis;

thread_local! {
    /// Looked up once: every input reads the clock.
    static PERFORMANCE: Option<web_sys::Performance> =
        Reflect::get(&js_sys::global(), &JsValue::from_str("performance")).ok().and_then(|p| p.dyn_into::<web_sys::Performance>().ok());
}

/// Milliseconds from `performance.now()` (monotonic), or `Date.now()` without it.
pub(crate) fn now() -> Millis {
    let ms = PERFORMANCE.with(|p| p.as_ref().map_or_else(js_sys::Date::now, web_sys::Performance::now));
    Millis(ms.max(0.0) as u64)
}

/// Resolves once the page is idle, or `max_ms` later if it stays busy; on the next
/// task where there is no `requestIdleCallback` (Safari, workers). For work that can
/// wait (the path of a connection that just opened): `getStats()` costs the main thread
/// milliseconds that the other connections of a join are still waiting for.
pub(crate) async fn when_idle(max_ms: u32) {
    let global = js_sys::global();
    let request = Reflect::get(&global, &JsValue::from_str("requestIdleCallback")).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    let Some(request) = request else {
        gloo_timers::future::TimeoutFuture::new(0).await;
        return;
    };
    let idle = js_sys::Promise::new(&mut |resolve, _reject| {
        let options = js_sys::Object::new();
        let _ = Reflect::set(&options, &JsValue::from_str("timeout"), &JsValue::from(max_ms));
        let _ = request.call2(&global, &resolve, &options);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(idle).await;
}

/// Fills `buf` from `crypto.getRandomValues`.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), JsValue> {
    let crypto: web_sys::Crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?
        .dyn_into()
        .map_err(|_| JsValue::from_str("crypto.getRandomValues is unavailable"))?;
    crypto.get_random_values_with_u8_array(buf)?;
    Ok(())
}

/// A random secret of 32 URL-safe characters (192 bits), as the server expects.
pub(crate) fn random_secret() -> Result<String, JsValue> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| ALPHABET[usize::from(b & 63)] as char).collect())
}

/// A random seed for the core's id generator.
pub(crate) fn random_seed() -> Result<u64, JsValue> {
    let mut bytes = [0u8; 8];
    random_bytes(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// What is off, and why, when the page is not a secure context (plain `http` from an
/// address other than localhost): said at join rather than failing later.
pub(crate) fn insecure_context_warning() -> Option<String> {
    let secure = Reflect::get(&js_sys::global(), &JsValue::from_str("isSecureContext")).ok().and_then(|v| v.as_bool());
    (secure == Some(false)).then(|| {
        "this page is not a secure context (plain http from an address other than localhost), so the browser withholds \
         Web Locks, the Origin Private File System and WebCrypto: this tab gets a new id on every load, received files are \
         kept in memory and cannot resume after a reload. Serve the page over https (or from localhost)."
            .to_owned()
    })
}

/// Something `init()` prepares while the page is idle, for the first join to take:
/// dropped if no join takes it in time (its timer stays, as a timer is not dropped in
/// its own callback).
pub(crate) struct Ahead<T> {
    value: Option<T>,
    _expiry: Timeout,
}

/// Where an [`Ahead`] value waits (a `thread_local!`).
pub(crate) type AheadSlot<T> = RefCell<Option<Ahead<T>>>;

/// Puts `value` in `slot` for [`take_ahead`], and drops it after `ttl_ms`.
pub(crate) fn keep_ahead<T: 'static>(slot: &'static LocalKey<AheadSlot<T>>, value: T, ttl_ms: u32) {
    let expiry = Timeout::new(ttl_ms, move || {
        slot.with(|ahead| {
            if let Some(ahead) = ahead.borrow_mut().as_mut() {
                ahead.value = None;
            }
        });
    });
    slot.with(|ahead| *ahead.borrow_mut() = Some(Ahead { value: Some(value), _expiry: expiry }));
}

/// The value in `slot`, if it is still there (its timer goes with it).
pub(crate) fn take_ahead<T: 'static>(slot: &'static LocalKey<AheadSlot<T>>) -> Option<T> {
    slot.with(|ahead| ahead.borrow_mut().take()).and_then(|ahead| ahead.value)
}
