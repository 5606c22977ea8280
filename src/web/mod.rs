//! The browser adapter: the only code that touches web-sys. It performs what the core
//! asks (WebSocket, RTCPeerConnection, RTCDataChannel, timers) and feeds browser events
//! back in. No protocol decisions here.

pub(crate) mod driver;
mod platform;
mod rtc;
mod socket;

pub(crate) use driver::{Driver, DriverConfig};

/// A fresh peer secret (its id derives from it) and a seed for the core.
pub(crate) fn platform_secret_and_seed() -> Result<(String, u64), wasm_bindgen::JsValue> {
    Ok((platform::random_secret()?, platform::random_seed()?))
}
