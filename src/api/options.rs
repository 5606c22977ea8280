//! `Peer.join` options, read from a plain JS object and checked before anything starts.

use js_sys::Array;
use meshdrop_signal::protocol::{validate_name, validate_room};
use wasm_bindgen::JsValue;

use super::error::type_error;
use super::shapes::{from_js, IceTransportPolicy, IdentityKind, JoinOptions, SignalingUrls};
use crate::web::IceSettings;

/// More would only delay a join that cannot succeed.
const MAX_SIGNALING_URLS: usize = 16;

pub(crate) struct JoinSettings {
    /// At least one; tried in turn after a failure.
    pub(crate) signaling_urls: Vec<String>,
    pub(crate) room: String,
    pub(crate) name: Option<String>,
    pub(crate) ice: IceSettings,
    pub(crate) max_message_bytes: Option<u64>,
    pub(crate) connect_timeout_ms: Option<u64>,
    pub(crate) resume_timeout_ms: Option<u64>,
    pub(crate) reconnect_timeout_ms: Option<u64>,
    pub(crate) storage_max_age_ms: Option<u64>,
    pub(crate) persistent_identity: bool,
    pub(crate) room_secret: Option<String>,
}

/// A duration or size option: absent, or a whole number of at least 1.
fn positive(value: Option<u64>, key: &str) -> Result<Option<u64>, JsValue> {
    match value {
        Some(0) => Err(type_error(&format!("options.{key} must be a positive number"))),
        other => Ok(other),
    }
}

pub(crate) fn parse(options: JsValue) -> Result<JoinSettings, JsValue> {
    if !options.is_object() {
        return Err(type_error("Peer.join needs an options object: { signalingUrl, room }"));
    }
    let options: JoinOptions = from_js(options, "options")?;
    let signaling_urls = match options.signaling_url {
        SignalingUrls::One(url) => vec![url],
        SignalingUrls::Many(urls) => urls,
    };
    if signaling_urls.is_empty() || signaling_urls.iter().any(String::is_empty) {
        return Err(type_error("options.signalingUrl is required, e.g. \"ws://127.0.0.1:8080/ws\" (or an array of such URLs)"));
    }
    if signaling_urls.len() > MAX_SIGNALING_URLS {
        return Err(type_error(&format!("options.signalingUrl: at most {MAX_SIGNALING_URLS} URLs")));
    }
    validate_room(&options.room).map_err(|e| type_error(&format!("options.room: {}", e.message)))?;
    if let Some(name) = &options.name {
        validate_name(name).map_err(|e| type_error(&format!("options.name: {}", e.message)))?;
    }
    if let Some(secret) = &options.room_secret {
        if secret.is_empty() || secret.len() > 1024 {
            return Err(type_error("options.roomSecret must be 1 to 1024 bytes"));
        }
    }
    let ice_servers = match options.ice_servers {
        v if v.is_undefined() || v.is_null() => Array::new(),
        v if Array::is_array(&v) => Array::from(&v),
        _ => return Err(type_error("options.iceServers must be an array of RTCIceServer")),
    };
    let policy = options.ice_transport_policy.map(|p| if p == IceTransportPolicy::Relay { "relay" } else { "all" }.to_owned());
    Ok(JoinSettings {
        signaling_urls,
        room: options.room,
        name: options.name,
        ice: IceSettings::new(ice_servers, policy),
        max_message_bytes: positive(options.max_message_bytes, "maxMessageBytes")?,
        connect_timeout_ms: positive(options.connect_timeout_ms, "connectTimeoutMs")?,
        resume_timeout_ms: positive(options.resume_timeout_ms, "resumeTimeoutMs")?,
        reconnect_timeout_ms: positive(options.reconnect_timeout_ms, "reconnectTimeoutMs")?,
        storage_max_age_ms: positive(options.storage_max_age_ms, "storageMaxAgeMs")?,
        persistent_identity: options.identity != Some(IdentityKind::Ephemeral),
        room_secret: options.room_secret,
    })
}
