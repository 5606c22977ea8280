//! The plain objects that cross the JS boundary, in one place: option objects the API
//! takes (read field by field, so a wrong field gets a precise `TypeError` naming it)
//! and the payloads it hands out (serialized). Each mirrors an interface in the TypeScript
//! sections (`events.rs`, `services.rs`); keep them in step.
//!
//! Fields an option object has beyond these are ignored (only the fields it knows are
//! read); a misspelt required one is reported missing.
//!
//! Request payloads are not here: they cross as JSON text or bytes, and the browser's
//! own `JSON` does that faster and with no code in the module (`services.rs`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;

use super::error::type_error;

/// An option object the API reads field by field: each field's value is deserialized on
/// its own, so an error can name the field without wrapping every deserializer in a
/// path tracker (`serde_path_to_error`, 23 KiB of wasm code, did that).
pub(crate) struct Fields<'a> {
    object: JsValue,
    what: &'a str,
}

impl<'a> Fields<'a> {
    /// `value` if it is an object; `what` names it in errors (`options`, `hits[2]`).
    pub(crate) fn of(value: JsValue, what: &'a str) -> Result<Fields<'a>, JsValue> {
        if !value.is_object() || value.is_function() {
            return Err(type_error(&format!("{what}: expected an object, got {}", describe(&value))));
        }
        Ok(Fields { object: value, what })
    }

    /// The field as it is in JS (`undefined` if absent).
    pub(crate) fn raw(&self, key: &str) -> JsValue {
        js_sys::Reflect::get(&self.object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    /// A field that must be there.
    pub(crate) fn required<T: DeserializeOwned>(&self, key: &str) -> Result<T, JsValue> {
        let value = self.raw(key);
        if value.is_undefined() {
            return Err(type_error(&format!("{}: missing field `{key}`", self.what)));
        }
        self.decode(key, value)
    }

    /// A field that may be absent, `undefined` or `null`.
    pub(crate) fn optional<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, JsValue> {
        match self.raw(key) {
            value if value.is_undefined() || value.is_null() => Ok(None),
            value => self.decode(key, value).map(Some),
        }
    }

    fn decode<T: DeserializeOwned>(&self, key: &str, value: JsValue) -> Result<T, JsValue> {
        serde_wasm_bindgen::from_value(value).map_err(|err| {
            // It displays as a JS Error: "Error: invalid type: ...".
            let inner = err.to_string();
            type_error(&format!("{}.{key}: {}", self.what, inner.strip_prefix("Error: ").unwrap_or(&inner)))
        })
    }
}

/// What a JS value is, for an error message.
fn describe(value: &JsValue) -> String {
    match value.js_typeof().as_string().as_deref() {
        _ if value.is_null() => "null".to_owned(),
        Some(kind @ ("undefined" | "function")) => kind.to_owned(),
        Some(kind) => format!("a {kind}"),
        None => "something else".to_owned(),
    }
}

/// An option object read from JS.
pub(crate) trait FromJs: Sized {
    fn read(fields: &Fields<'_>) -> Result<Self, JsValue>;
}

/// Reads `value` as `T`; an error names the field: `options.room: invalid type: ...`.
pub(crate) fn from_js<T: FromJs>(value: JsValue, what: &str) -> Result<T, JsValue> {
    T::read(&Fields::of(value, what)?)
}

/// Reads an array of `T`; an error names the item and field: `hits[2].size: ...`.
pub(crate) fn list_from_js<T: FromJs>(value: &js_sys::Array, what: &str) -> Result<Vec<T>, JsValue> {
    value.iter().enumerate().map(|(i, item)| from_js(item, &format!("{what}[{i}]"))).collect()
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
pub(crate) struct JoinOptions {
    pub(crate) signaling_url: SignalingUrls,
    pub(crate) room: String,
    pub(crate) name: Option<String>,
    /// `RTCIceServer[]`, handed to the browser as given.
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

impl FromJs for JoinOptions {
    fn read(f: &Fields<'_>) -> Result<Self, JsValue> {
        Ok(JoinOptions {
            signaling_url: f.required("signalingUrl")?,
            room: f.required("room")?,
            name: f.optional("name")?,
            ice_servers: f.raw("iceServers"),
            ice_transport_policy: f.optional("iceTransportPolicy")?,
            max_message_bytes: f.optional("maxMessageBytes")?,
            connect_timeout_ms: f.optional("connectTimeoutMs")?,
            reconnect_timeout_ms: f.optional("reconnectTimeoutMs")?,
            resume_timeout_ms: f.optional("resumeTimeoutMs")?,
            storage_max_age_ms: f.optional("storageMaxAgeMs")?,
            identity: f.optional("identity")?,
            room_secret: f.optional("roomSecret")?,
        })
    }
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
pub(crate) struct NameOptions {
    pub(crate) name: Option<String>,
}

impl FromJs for NameOptions {
    fn read(f: &Fields<'_>) -> Result<Self, JsValue> {
        Ok(NameOptions { name: f.optional("name")? })
    }
}

/// `FindOptions`.
#[derive(Default)]
pub(crate) struct FindOptions {
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) matching: Option<Matching>,
}

impl FromJs for FindOptions {
    fn read(f: &Fields<'_>) -> Result<Self, JsValue> {
        Ok(FindOptions { timeout_ms: f.optional("timeoutMs")?, matching: f.optional("match")? })
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Matching {
    Exact,
    Substring,
}

/// `RequestOptions`.
#[derive(Default)]
pub(crate) struct RequestOptions {
    pub(crate) timeout_ms: Option<u64>,
}

impl FromJs for RequestOptions {
    fn read(f: &Fields<'_>) -> Result<Self, JsValue> {
        Ok(RequestOptions { timeout_ms: f.optional("timeoutMs")? })
    }
}

/// A `FindHit` handed back to `download` (extra fields, like those of a hit a user
/// annotated, are ignored).
pub(crate) struct FindHitIn {
    pub(crate) peer_id: String,
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) size: u64,
    pub(crate) hash: String,
    pub(crate) mime: Option<String>,
}

impl FromJs for FindHitIn {
    fn read(f: &Fields<'_>) -> Result<Self, JsValue> {
        Ok(FindHitIn {
            peer_id: f.required("peerId")?,
            id: f.required("id")?,
            name: f.optional("name")?,
            size: f.required("size")?,
            hash: f.required("hash")?,
            mime: f.optional("type")?,
        })
    }
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
