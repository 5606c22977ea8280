//! The browser adapter: the only code that touches web-sys. It performs what the core
//! asks (WebSocket, RTCPeerConnection, RTCDataChannel, timers) and feeds browser events
//! back in. No protocol decisions here.

mod blob;
pub(crate) mod driver;
mod error;
mod ice;
pub(crate) mod identity;
mod platform;
mod rtc;
mod socket;
mod store;
mod text;
mod wake_lock;

pub(crate) use driver::{Driver, DriverConfig, SpareConn};
pub(crate) use error::describe;
pub(crate) use ice::IceSettings;
pub(crate) use socket::EarlySocket;
pub(crate) use store::prestart as prestart_storage;
pub(crate) use text::to_rust_string;
pub(crate) use wake_lock::keep_awake;

/// Fills `buf` from `crypto.getRandomValues`.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), wasm_bindgen::JsValue> {
    platform::random_bytes(buf)
}

/// A random seed for the core.
pub(crate) fn random_seed() -> Result<u64, wasm_bindgen::JsValue> {
    platform::random_seed()
}
