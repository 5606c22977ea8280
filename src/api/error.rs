//! Core errors as JS `Error`s with a stable `name` (and a `code` where the server gave
//! one), so callers can branch on `err.name` instead of parsing messages.

use js_sys::{Error, Reflect};
use wasm_bindgen::JsValue;

use crate::core::{JoinError, SendError, TransferError};

pub(crate) fn js_error(name: &str, message: &str) -> JsValue {
    let err = Error::new(message);
    err.set_name(name);
    err.into()
}

pub(crate) fn type_error(message: &str) -> JsValue {
    js_sys::TypeError::new(message).into()
}

pub(crate) fn send_error(err: &SendError) -> JsValue {
    let name = match err {
        SendError::NotConnected(_) => "NotConnectedError",
        SendError::TooLarge { .. } => "MessageTooLargeError",
        SendError::QueueFull(_) => "QueueFullError",
        SendError::Closed => "ClosedError",
    };
    js_error(name, &err.to_string())
}

/// `name` is `SignalingError`; `code` is `unreachable`, `cancelled`, or the server's
/// error code (e.g. `room-full`).
pub(crate) fn join_error(err: &JoinError, url: &str) -> JsValue {
    let (code, message) = match err {
        JoinError::Unreachable => ("unreachable".to_owned(), format!("{err} ({url})")),
        JoinError::Refused { code, .. } => (code.clone(), err.to_string()),
        JoinError::Cancelled => ("cancelled".to_owned(), err.to_string()),
    };
    let value = js_error("SignalingError", &message);
    let _ = Reflect::set(&value, &JsValue::from_str("code"), &JsValue::from_str(&code));
    value
}

/// A transfer's failure as an `Error` whose `name` says which.
pub(crate) fn transfer_error(err: &TransferError) -> JsValue {
    js_error(transfer_error_name(err), &err.to_string())
}

/// The `name` of a transfer's failure.
pub(crate) fn transfer_error_name(err: &TransferError) -> &'static str {
    match err {
        TransferError::Declined(_) => "DeclinedError",
        TransferError::Cancelled { .. } => "CancelledError",
        TransferError::PeerLeft(_) => "PeerLeftError",
        TransferError::HashMismatch(_) => "HashMismatchError",
        TransferError::StorageFull(_) => "StorageFullError",
        TransferError::Storage(_) => "StorageError",
        TransferError::Unreadable(_) => "FileUnreadableError",
        TransferError::Protocol(_) => "ProtocolError",
        TransferError::Closed => "ClosedError",
        TransferError::NotShared(_) => "NotSharedError",
        TransferError::Busy(_) => "BusyError",
        TransferError::Stalled(_) => "TimeoutError",
    }
}
