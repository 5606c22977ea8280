//! `Peer.join` options, read from a plain JS object and checked before anything starts.

use js_sys::{Array, Reflect};
use meshdrop_signal::protocol::{validate_name, validate_room};
use wasm_bindgen::JsValue;

use super::error::type_error;
use crate::web::IceSettings;

pub(crate) struct JoinSettings {
    pub(crate) signaling_url: String,
    pub(crate) room: String,
    pub(crate) name: Option<String>,
    pub(crate) ice: IceSettings,
    pub(crate) max_message_bytes: Option<u64>,
    pub(crate) connect_timeout_ms: Option<u64>,
    pub(crate) resume_timeout_ms: Option<u64>,
    pub(crate) reconnect_timeout_ms: Option<u64>,
    pub(crate) storage_max_age_ms: Option<u64>,
    pub(crate) persistent_identity: bool,
}

pub(crate) fn field(options: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(options, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

pub(crate) fn string_field(options: &JsValue, key: &str) -> Result<Option<String>, JsValue> {
    match field(options, key) {
        None => Ok(None),
        Some(v) => v.as_string().map(Some).ok_or_else(|| type_error(&format!("options.{key} must be a string"))),
    }
}

pub(crate) fn number_field(options: &JsValue, key: &str) -> Result<Option<u64>, JsValue> {
    match field(options, key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() && n >= 1.0 => Ok(Some(n as u64)),
            _ => Err(type_error(&format!("options.{key} must be a positive number"))),
        },
    }
}

pub(crate) fn parse(options: &JsValue) -> Result<JoinSettings, JsValue> {
    if !options.is_object() {
        return Err(type_error("Peer.join needs an options object: { signalingUrl, room }"));
    }
    let signaling_url = string_field(options, "signalingUrl")?
        .filter(|u| !u.is_empty())
        .ok_or_else(|| type_error("options.signalingUrl is required, e.g. \"ws://127.0.0.1:8080/ws\""))?;
    let room = string_field(options, "room")?.ok_or_else(|| type_error("options.room is required"))?;
    validate_room(&room).map_err(|e| type_error(&format!("options.room: {}", e.message)))?;
    let name = string_field(options, "name")?;
    if let Some(name) = &name {
        validate_name(name).map_err(|e| type_error(&format!("options.name: {}", e.message)))?;
    }

    let ice_servers = match field(options, "iceServers") {
        None => Array::new(),
        Some(v) if Array::is_array(&v) => Array::from(&v),
        Some(_) => return Err(type_error("options.iceServers must be an array of RTCIceServer")),
    };
    let policy = string_field(options, "iceTransportPolicy")?;
    if let Some(policy) = &policy {
        if policy != "all" && policy != "relay" {
            return Err(type_error("options.iceTransportPolicy must be \"all\" or \"relay\""));
        }
    }
    Ok(JoinSettings {
        signaling_url,
        room,
        name,
        ice: IceSettings::new(ice_servers, policy),
        max_message_bytes: number_field(options, "maxMessageBytes")?,
        connect_timeout_ms: number_field(options, "connectTimeoutMs")?,
        resume_timeout_ms: number_field(options, "resumeTimeoutMs")?,
        reconnect_timeout_ms: number_field(options, "reconnectTimeoutMs")?,
        storage_max_age_ms: number_field(options, "storageMaxAgeMs")?,
        persistent_identity: match string_field(options, "identity")?.as_deref() {
            None | Some("persistent") => true,
            Some("ephemeral") => false,
            Some(_) => return Err(type_error("options.identity must be \"persistent\" or \"ephemeral\"")),
        },
    })
}
