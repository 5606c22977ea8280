//! The plain objects that cross the JS boundary, in one place: option objects the API
//! takes (read field by field, so a wrong field gets a precise `TypeError` naming it)
//! and the payloads it hands out (built as plain objects). Each mirrors an interface in
//! the TypeScript sections (`events.rs`, `services.rs`); keep them in step.
//!
//! Fields an option object has beyond these are ignored (only the fields it knows are
//! read); a misspelt required one is reported missing.
//!
//! Request payloads are not here: they cross as JSON text or bytes, and the browser's
//! own `JSON` does that faster and with no code in the module (`services.rs`).

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::JsValue;

use super::error::type_error;

/// An option object the API reads field by field, so an error names the field. By hand,
/// not with serde: the few field types below need little code, and serde's JS
/// (de)serializers with a path tracker were 37 KiB of the wasm's code.
pub(crate) struct Fields<'a> {
    object: JsValue,
    what: &'a str,
}

impl<'a> Fields<'a> {
    /// `value` if it is an object; `what` names it in errors (`options`, `hits[2]`).
    pub(crate) fn of(value: JsValue, what: &'a str) -> Result<Fields<'a>, JsValue> {
        if !value.is_object() {
            return Err(type_error(&format!("{what}: expected an object, got {}", describe(&value))));
        }
        Ok(Fields { object: value, what })
    }

    /// The field as it is in JS (`undefined` if absent).
    pub(crate) fn raw(&self, key: &str) -> JsValue {
        Reflect::get(&self.object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    /// A field that must be there.
    pub(crate) fn required<T: Decode>(&self, key: &str) -> Result<T, JsValue> {
        let value = self.raw(key);
        if value.is_undefined() {
            return Err(type_error(&format!("{}: missing field `{key}`", self.what)));
        }
        self.decode(key, value)
    }

    /// A field that may be absent, `undefined` or `null`.
    pub(crate) fn optional<T: Decode>(&self, key: &str) -> Result<Option<T>, JsValue> {
        match self.raw(key) {
            value if value.is_undefined() || value.is_null() => Ok(None),
            value => self.decode(key, value).map(Some),
        }
    }

    fn decode<T: Decode>(&self, key: &str, value: JsValue) -> Result<T, JsValue> {
        T::decode(&value).map_err(|err| type_error(&format!("{}.{key}: {err}", self.what)))
    }
}

/// A field's value; the error says what was wrong, in serde's words.
pub(crate) trait Decode: Sized {
    fn decode(value: &JsValue) -> Result<Self, String>;
}

impl Decode for String {
    fn decode(value: &JsValue) -> Result<Self, String> {
        value.as_string().ok_or_else(|| invalid_type(value, "a string"))
    }
}

impl Decode for u64 {
    fn decode(value: &JsValue) -> Result<Self, String> {
        /// 2^53: beyond it a JS number is not an exact integer.
        const MAX_EXACT: f64 = 9_007_199_254_740_992.0;
        match value.as_f64() {
            Some(n) if n.fract() == 0.0 && (0.0..=MAX_EXACT).contains(&n) => Ok(n as u64),
            Some(n) if n.fract() == 0.0 && n.is_finite() => Err(format!("invalid value: {}, expected u64", unexpected(value))),
            _ => Err(invalid_type(value, "u64")),
        }
    }
}

/// One of a few strings, as a Rust enum.
fn variant<T: Copy>(value: &JsValue, variants: &[(&str, T)]) -> Result<T, String> {
    let names = variants.iter().map(|(name, _)| format!("`{name}`")).collect::<Vec<_>>();
    let expected = match names.as_slice() {
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", names.join(", ")),
    };
    let Some(text) = value.as_string() else { return Err(invalid_type(value, &expected)) };
    variants.iter().find(|(name, _)| *name == text).map(|(_, v)| *v).ok_or_else(|| format!("unknown variant `{text}`, expected {expected}"))
}

/// "invalid type: integer `5`, expected a string".
fn invalid_type(value: &JsValue, expected: &str) -> String {
    format!("invalid type: {}, expected {expected}", unexpected(value))
}

/// A value as serde's errors name it: string "x", integer `5`, floating point `1.5`, …
fn unexpected(value: &JsValue) -> String {
    if let Some(text) = value.as_string() {
        return format!("string {text:?}");
    }
    if let Some(n) = value.as_f64() {
        // JS formats the number: no float formatting code in the module for an error.
        let shown = js_sys::Number::from(n).to_string_with_radix(10).ok().and_then(|s| s.as_string()).unwrap_or_default();
        let kind = if n.fract() == 0.0 && n.is_finite() { "integer" } else { "floating point" };
        return format!("{kind} `{shown}`");
    }
    if let Some(b) = value.as_bool() {
        return format!("boolean `{b}`");
    }
    if Array::is_array(value) {
        return "sequence".to_owned();
    }
    if value.is_object() {
        return "map".to_owned();
    }
    describe(value)
}

/// What a JS value is, for an error message.
fn describe(value: &JsValue) -> String {
    match value.js_typeof().as_string().as_deref() {
        _ if value.is_null() => "null".to_owned(),
        Some(kind @ ("undefined" | "function")) => kind.to_owned(),
        Some("object") => "an object".to_owned(),
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
pub(crate) fn list_from_js<T: FromJs>(value: &Array, what: &str) -> Result<Vec<T>, JsValue> {
    value.iter().enumerate().map(|(i, item)| from_js(item, &format!("{what}[{i}]"))).collect()
}

/// A payload handed to JS.
pub(crate) trait ToJs {
    fn to_js(&self) -> JsValue;
}

/// `value` as a plain JS object: absent options omitted, `None` fields `null` where the
/// TypeScript says `| null`.
pub(crate) fn to_js<T: ToJs>(value: &T) -> JsValue {
    value.to_js()
}

/// A plain object built a field at a time.
struct Plain(Object);

impl Plain {
    fn new() -> Plain {
        Plain(Object::new())
    }

    fn with(self, key: &str, value: impl Into<JsValue>) -> Plain {
        // Setting a data property on a fresh plain object cannot fail.
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), &value.into());
        self
    }

    /// Omitted when `None`.
    fn with_some(self, key: &str, value: Option<impl Into<JsValue>>) -> Plain {
        match value {
            Some(value) => self.with(key, value),
            None => self,
        }
    }

    fn done(self) -> JsValue {
        self.0.into()
    }
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
pub(crate) enum SignalingUrls {
    One(String),
    Many(Vec<String>),
}

impl Decode for SignalingUrls {
    fn decode(value: &JsValue) -> Result<Self, String> {
        const EXPECTED: &str = "a WebSocket URL or an array of them";
        if let Some(url) = value.as_string() {
            return Ok(SignalingUrls::One(url));
        }
        if !Array::is_array(value) {
            return Err(invalid_type(value, EXPECTED));
        }
        let urls = Array::from(value).into_iter().map(|url| url.as_string().ok_or_else(|| invalid_type(&url, EXPECTED)));
        urls.collect::<Result<_, _>>().map(SignalingUrls::Many)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IceTransportPolicy {
    All,
    Relay,
}

impl Decode for IceTransportPolicy {
    fn decode(value: &JsValue) -> Result<Self, String> {
        variant(value, &[("all", IceTransportPolicy::All), ("relay", IceTransportPolicy::Relay)])
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityKind {
    Persistent,
    Ephemeral,
}

impl Decode for IdentityKind {
    fn decode(value: &JsValue) -> Result<Self, String> {
        variant(value, &[("persistent", IdentityKind::Persistent), ("ephemeral", IdentityKind::Ephemeral)])
    }
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

#[derive(Clone, Copy)]
pub(crate) enum Matching {
    Exact,
    Substring,
}

impl Decode for Matching {
    fn decode(value: &JsValue) -> Result<Self, String> {
        variant(value, &[("exact", Matching::Exact), ("substring", Matching::Substring)])
    }
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
pub(crate) struct PeerInfo<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: Option<&'a str>,
}

impl ToJs for PeerInfo<'_> {
    fn to_js(&self) -> JsValue {
        Plain::new().with("id", self.id).with_some("name", self.name).done()
    }
}

/// `ConnectionPath`, with the peer's id in "peer-path".
pub(crate) struct PathInfo<'a> {
    pub(crate) id: Option<&'a str>,
    pub(crate) path: &'a str,
    pub(crate) local: &'a str,
    pub(crate) remote: &'a str,
    pub(crate) protocol: &'a str,
}

impl PathInfo<'_> {
    fn fill(&self, object: Plain) -> Plain {
        let object = object.with_some("id", self.id).with("path", self.path).with("local", self.local);
        object.with("remote", self.remote).with("protocol", self.protocol)
    }
}

impl ToJs for PathInfo<'_> {
    fn to_js(&self) -> JsValue {
        self.fill(Plain::new()).done()
    }
}

/// `ConnectionInfo`.
pub(crate) struct ConnectionInfo<'a> {
    pub(crate) path: PathInfo<'a>,
    pub(crate) rtt_ms: Option<f64>,
    pub(crate) bytes_sent: f64,
    pub(crate) bytes_received: f64,
}

impl ToJs for ConnectionInfo<'_> {
    fn to_js(&self) -> JsValue {
        let rtt = self.rtt_ms.map_or(JsValue::NULL, JsValue::from_f64);
        self.path.fill(Plain::new()).with("rttMs", rtt).with("bytesSent", self.bytes_sent).with("bytesReceived", self.bytes_received).done()
    }
}

/// "peer-failed".
pub(crate) struct PeerFailed<'a> {
    pub(crate) id: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) message: &'a str,
}

impl ToJs for PeerFailed<'_> {
    fn to_js(&self) -> JsValue {
        Plain::new().with("id", self.id).with("reason", self.reason).with("message", self.message).done()
    }
}

/// "signaling".
pub(crate) struct Signaling<'a> {
    pub(crate) state: &'a str,
    pub(crate) reason: Option<&'a str>,
}

impl ToJs for Signaling<'_> {
    fn to_js(&self) -> JsValue {
        Plain::new().with("state", self.state).with_some("reason", self.reason).done()
    }
}

/// "warning".
pub(crate) struct Warning<'a> {
    pub(crate) message: &'a str,
}

impl ToJs for Warning<'_> {
    fn to_js(&self) -> JsValue {
        Plain::new().with("message", self.message).done()
    }
}

/// Transfer "progress".
pub(crate) struct Progress {
    pub(crate) bytes: f64,
    pub(crate) total: f64,
    pub(crate) bytes_per_second: f64,
}

impl ToJs for Progress {
    fn to_js(&self) -> JsValue {
        Plain::new().with("bytes", self.bytes).with("total", self.total).with("bytesPerSecond", self.bytes_per_second).done()
    }
}

/// Transfer "paused" and "resumed".
pub(crate) struct Nothing {}

impl ToJs for Nothing {
    fn to_js(&self) -> JsValue {
        Plain::new().done()
    }
}

/// Offer "withdrawn".
pub(crate) struct Withdrawn<'a> {
    pub(crate) name: &'a str,
    pub(crate) reason: &'a str,
}

impl ToJs for Withdrawn<'_> {
    fn to_js(&self) -> JsValue {
        Plain::new().with("name", self.name).with("reason", self.reason).done()
    }
}

/// `TransferSource`.
pub(crate) struct Source<'a> {
    pub(crate) peer_id: &'a str,
    pub(crate) bytes: f64,
}

impl ToJs for Source<'_> {
    fn to_js(&self) -> JsValue {
        Plain::new().with("peerId", self.peer_id).with("bytes", self.bytes).done()
    }
}

/// `FindHit`.
pub(crate) struct FindHit<'a> {
    pub(crate) peer_id: &'a str,
    pub(crate) id: String,
    pub(crate) name: &'a str,
    pub(crate) size: f64,
    pub(crate) hash: String,
    pub(crate) mime: &'a str,
}

impl ToJs for FindHit<'_> {
    fn to_js(&self) -> JsValue {
        let object = Plain::new().with("peerId", self.peer_id).with("id", self.id.as_str()).with("name", self.name);
        object.with("size", self.size).with("hash", self.hash.as_str()).with("type", self.mime).done()
    }
}

/// `SharedFile`.
pub(crate) struct SharedFile<'a> {
    pub(crate) id: String,
    pub(crate) name: &'a str,
    pub(crate) size: f64,
    pub(crate) hash: String,
    pub(crate) mime: &'a str,
}

impl ToJs for SharedFile<'_> {
    fn to_js(&self) -> JsValue {
        let object = Plain::new().with("id", self.id.as_str()).with("name", self.name).with("size", self.size);
        object.with("hash", self.hash.as_str()).with("type", self.mime).done()
    }
}

/// A handler's second argument.
pub(crate) struct HandlerContext<'a> {
    pub(crate) from: &'a str,
    pub(crate) method: &'a str,
}

impl ToJs for HandlerContext<'_> {
    fn to_js(&self) -> JsValue {
        Plain::new().with("from", self.from).with("method", self.method).done()
    }
}
