//! The plain objects that cross the JS boundary, in one place: option objects the API
//! takes (deserialized, so a wrong field gets a precise `TypeError` naming it) and the
//! payloads it hands out (serialized). Each mirrors an interface in the TypeScript
//! sections (`events.rs`, `services.rs`); keep them in step.
//!
//! Fields an option object has beyond these are ignored (the deserializer reads only
//! the fields it knows); a misspelt required one is reported missing.
//!
//! Request payloads are not here: they cross as JSON text or bytes, and the browser's
//! own `JSON` does that faster and with no code in the module (`services.rs`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;

use super::error::type_error;

/// Reads `value` as `T`; the error names the field: `options.room: invalid type: ...`.
pub(crate) fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, JsValue> {
    let deserializer = serde_wasm_bindgen::Deserializer::from(value);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let at = if path == "." { what.to_owned() } else { format!("{what}.{path}") };
        // The inner error displays as a JS Error: "Error: invalid type: ...".
        let inner = err.inner().to_string();
        type_error(&format!("{at}: {}", inner.strip_prefix("Error: ").unwrap_or(&inner)))
    })
}

/// `value` as a plain JS object: absent options omitted, `None` fields `null` where
/// the TypeScript says `| null`, maps as objects.
pub(crate) fn to_js<T: Serialize>(value: &T) -> JsValue {
    let serializer = serde_wasm_bindgen::Serializer::new().serialize_missing_as_null(true).serialize_maps_as_objects(true);
    // Plain structs of strings and numbers: serializing them cannot fail.
    value.serialize(&serializer).unwrap_or(JsValue::UNDEFINED)
}

// -- taken from JS -----------------------------------------------------------------------

/// `JoinOptions`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JoinOptions {
    pub(crate) signaling_url: SignalingUrls,
    pub(crate) room: String,
    pub(crate) name: Option<String>,
    /// `RTCIceServer[]`, handed to the browser as given.
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    pub(crate) ice_servers: JsValue,
    pub(crate) ice_transport_policy: Option<IceTransportPolicy>,
    pub(crate) max_message_bytes: Option<u64>,
    pub(crate) connect_timeout_ms: Option<u64>,
    pub(crate) reconnect_timeout_ms: Option<u64>,
    pub(crate) resume_timeout_ms: Option<u64>,
    pub(crate) storage_max_age_ms: Option<u64>,
    pub(crate) identity: Option<IdentityKind>,
    pub(crate) room_secret: Option<String>,
}

/// `signalingUrl`: one URL, or several instances sharing rooms (tried in turn).
#[derive(Deserialize)]
#[serde(untagged, expecting = "a WebSocket URL or an array of them")]
pub(crate) enum SignalingUrls {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum IceTransportPolicy {
    All,
    Relay,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum IdentityKind {
    Persistent,
    Ephemeral,
}

/// `SendFileOptions`, `ShareOptions` and `DownloadOptions`: a name.
#[derive(Deserialize, Default)]
pub(crate) struct NameOptions {
    pub(crate) name: Option<String>,
}

/// `FindOptions`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FindOptions {
    pub(crate) timeout_ms: Option<u64>,
    #[serde(rename = "match")]
    pub(crate) matching: Option<Matching>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Matching {
    Exact,
    Substring,
}

/// `RequestOptions`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RequestOptions {
    pub(crate) timeout_ms: Option<u64>,
}

/// A `FindHit` handed back to `download` (extra fields, like those of a hit a user
/// annotated, are ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FindHitIn {
    pub(crate) peer_id: String,
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) size: u64,
    pub(crate) hash: String,
    #[serde(rename = "type")]
    pub(crate) mime: Option<String>,
}

// -- handed to JS ------------------------------------------------------------------------

/// `PeerInfo`; also `{ id }` for the events that carry only an id.
#[derive(Serialize)]
pub(crate) struct PeerInfo<'a> {
    pub(crate) id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<&'a str>,
}

/// `ConnectionPath`, with the peer's id in "peer-path".
#[derive(Serialize)]
pub(crate) struct PathInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) local: &'a str,
    pub(crate) remote: &'a str,
    pub(crate) protocol: &'a str,
}

/// `ConnectionInfo`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConnectionInfo<'a> {
    #[serde(flatten)]
    pub(crate) path: PathInfo<'a>,
    pub(crate) rtt_ms: Option<f64>,
    pub(crate) bytes_sent: f64,
    pub(crate) bytes_received: f64,
}

/// "peer-failed".
#[derive(Serialize)]
pub(crate) struct PeerFailed<'a> {
    pub(crate) id: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) message: &'a str,
}

/// "signaling".
#[derive(Serialize)]
pub(crate) struct Signaling<'a> {
    pub(crate) state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<&'a str>,
}

/// "warning".
#[derive(Serialize)]
pub(crate) struct Warning<'a> {
    pub(crate) message: &'a str,
}

/// Transfer "progress".
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Progress {
    pub(crate) bytes: f64,
    pub(crate) total: f64,
    pub(crate) bytes_per_second: f64,
}

/// Transfer "paused" and "resumed".
#[derive(Serialize)]
pub(crate) struct Nothing {}

/// Offer "withdrawn".
#[derive(Serialize)]
pub(crate) struct Withdrawn<'a> {
    pub(crate) name: &'a str,
    pub(crate) reason: &'a str,
}

/// `TransferSource`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Source<'a> {
    pub(crate) peer_id: &'a str,
    pub(crate) bytes: f64,
}

/// `FindHit`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FindHit<'a> {
    pub(crate) peer_id: &'a str,
    pub(crate) id: String,
    pub(crate) name: &'a str,
    pub(crate) size: f64,
    pub(crate) hash: String,
    #[serde(rename = "type")]
    pub(crate) mime: &'a str,
}

/// `SharedFile`.
#[derive(Serialize)]
pub(crate) struct SharedFile<'a> {
    pub(crate) id: String,
    pub(crate) name: &'a str,
    pub(crate) size: f64,
    pub(crate) hash: String,
    #[serde(rename = "type")]
    pub(crate) mime: &'a str,
}

/// A handler's second argument.
#[derive(Serialize)]
pub(crate) struct HandlerContext<'a> {
    pub(crate) from: &'a str,
    pub(crate) method: &'a str,
}
