//! The JavaScript surface: `#[wasm_bindgen]` lives only here. camelCase names,
//! Promises, typed events, and errors with stable `name`s, converted at this boundary.

mod error;
mod events;
mod js;
mod options;
mod peer;
mod services;
mod transfer;

pub use peer::Peer;
pub use transfer::{FileOffer, Transfer};
