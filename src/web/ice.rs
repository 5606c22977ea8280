//! The ICE servers a connection uses: the application's own (from `Peer.join`), then the
//! signaling server's (with TURN credentials it refreshes), skipping URLs the
//! application already names — its servers win.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::RtcConfiguration;

use crate::core::IceServer;

pub(crate) struct IceSettings {
    /// `iceServers` as the application gave them (an array of `RTCIceServer`).
    own: Array,
    /// `iceTransportPolicy`, if given.
    policy: Option<String>,
    /// The signaling server's, latest first.
    server: Vec<IceServer>,
}

impl IceSettings {
    pub(crate) fn new(own: Array, policy: Option<String>) -> Self {
        IceSettings { own, policy, server: Vec::new() }
    }

    pub(crate) fn set_server(&mut self, servers: Vec<IceServer>) {
        self.server = servers;
    }

    /// Every URL of the application's servers.
    fn own_urls(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for server in self.own.iter() {
            let value = Reflect::get(&server, &JsValue::from_str("urls")).unwrap_or(JsValue::UNDEFINED);
            match value.as_string() {
                Some(url) => urls.push(url),
                None if Array::is_array(&value) => urls.extend(Array::from(&value).iter().filter_map(|u| u.as_string())),
                None => {}
            }
        }
        urls
    }

    /// The configuration for a connection, and whether it names a TURN server.
    pub(crate) fn configuration(&self) -> (RtcConfiguration, bool) {
        let own_urls = self.own_urls();
        let list = Array::new();
        for server in self.own.iter() {
            list.push(&server);
        }
        let mut urls_all: Vec<String> = own_urls.clone();
        for server in &self.server {
            let urls: Vec<&String> = server.urls.iter().filter(|u| !own_urls.contains(u)).collect();
            if urls.is_empty() {
                continue;
            }
            let entry = Object::new();
            let js_urls: Array = urls.iter().map(|u| JsValue::from_str(u)).collect();
            let _ = Reflect::set(&entry, &"urls".into(), &js_urls);
            if let Some(username) = &server.username {
                let _ = Reflect::set(&entry, &"username".into(), &JsValue::from_str(username));
            }
            if let Some(credential) = &server.credential {
                let _ = Reflect::set(&entry, &"credential".into(), &JsValue::from_str(credential));
            }
            list.push(&entry);
            urls_all.extend(urls.into_iter().cloned());
        }
        let config = Object::new();
        let _ = Reflect::set(&config, &"iceServers".into(), &list);
        if let Some(policy) = &self.policy {
            let _ = Reflect::set(&config, &"iceTransportPolicy".into(), &JsValue::from_str(policy));
        }
        let relay = urls_all.iter().any(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        (config.unchecked_into(), relay)
    }
}
