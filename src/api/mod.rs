//! The JavaScript surface: `#[wasm_bindgen]` lives only here. camelCase names,
//! Promises, typed events, and errors with stable `name`s, converted at this boundary.

mod error;
mod events;
mod js;
mod options;
mod peer;
mod services;
mod shapes;
mod transfer;

pub use peer::Peer;
pub use transfer::{FileOffer, Transfer};

/// Runs when the module is instantiated (`init()`): a panic then reaches the console
/// as a message and a stack instead of `RuntimeError: unreachable`, and the storage
/// worker starts before a join needs it.
#[wasm_bindgen::prelude::wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
    crate::web::prestart_storage();
}
