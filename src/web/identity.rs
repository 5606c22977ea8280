//! A tab's persistent identity: a secret kept in localStorage, from which its Ed25519
//! key pair derives (`core::Identity`; the id is the public key's hash), held by one tab
//! at a time through a Web Lock, so a reloaded tab comes back as the same peer while two
//! open tabs never share an id; and with it a local key with which a receiver proves it
//! is the one that accepted a transfer. Neither ever leaves the browser: the server sees
//! the public key and a signature over its nonce, nothing that could claim the id.
//! Identities of the older scheme (`/v2`, whose secrets were sent to the server) are
//! dropped, not migrated. Falls back to fresh ones where either API is missing.
//!
//! Also the keys the user verified (`Peer.verify`), per identity.

use std::cell::RefCell;

use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::platform::{keep_ahead, take_ahead, AheadSlot};

#[wasm_bindgen(module = "/src/web/glue.js")]
extern "C" {
    #[wasm_bindgen(js_name = claimIdentity, catch)]
    fn claim_identity(storage_key: &str, legacy_key: &str) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(js_name = touchStorage)]
    fn touch_storage(storage_key: &str);
    #[wasm_bindgen(js_name = loadPins)]
    fn load_pins(storage_key: &str, owner: &str) -> js_sys::Array;
    #[wasm_bindgen(js_name = savePin)]
    fn save_pin(storage_key: &str, owner: &str, peer: &str, key: &str) -> bool;
}

const PINS: &str = "meshdrop.pins/v1";
const IDENTITIES: &str = "meshdrop.identities/v3";

/// Has the browser load this origin's localStorage now (the first access blocks the
/// page while it does), so a later `join` does not wait for it.
pub(crate) fn warm_storage() {
    touch_storage(IDENTITIES);
}

/// The keys this identity verified before: `(peer id, public key)`. Malformed entries
/// are skipped.
pub(crate) fn pins(owner: &str) -> Vec<(String, [u8; 32])> {
    load_pins(PINS, owner)
        .iter()
        .filter_map(|entry| {
            let entry = js_sys::Array::from(&entry);
            let peer = entry.get(0).as_string()?;
            let key = meshdrop_signal::protocol::from_hex::<32>(&entry.get(1).as_string()?)?;
            Some((peer, key))
        })
        .collect()
}

/// Remembers that `owner` verified `peer`'s `key`; false if storage refused.
pub(crate) fn remember_pin(owner: &str, peer: &str, key: &[u8; 32]) -> bool {
    save_pin(PINS, owner, peer, &meshdrop_signal::protocol::to_hex(key))
}

/// How long a preclaimed identity waits for a join before its lock is released.
const PRECLAIM_TTL_MS: u32 = 60_000;

thread_local! {
    static PRECLAIMED: AheadSlot<Claim> = const { RefCell::new(None) };
}

/// A claimed secret and local key; dropping it releases the lock for the next tab.
pub(crate) struct Identity {
    pub(crate) secret: String,
    pub(crate) local_key: [u8; 32],
    release: Option<Function>,
}

/// A claim under way: its lock request is already with the browser.
pub(crate) struct Claim(Option<js_sys::Promise>);

impl Claim {
    /// The claimed identity: a persistent secret if the browser allows, else a fresh one.
    pub(crate) async fn finish(mut self) -> Result<Identity, JsValue> {
        if let Some(promise) = self.0.take() {
            if let Some(identity) = JsFuture::from(promise).await.ok().and_then(|held| Identity::from_held(&held)) {
                return Ok(identity);
            }
        }
        Identity::ephemeral()
    }
}

impl Drop for Claim {
    /// A claim given up: its lock is released once granted, for the next tab.
    fn drop(&mut self) {
        if let Some(promise) = self.0.take() {
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(held) = JsFuture::from(promise).await {
                    drop(Identity::from_held(&held));
                }
            });
        }
    }
}

impl Identity {
    /// Starts claiming a persistent identity: the lock request goes out now, and the
    /// browser grants it while the caller does other work (a join creates its first
    /// connection meanwhile).
    pub(crate) fn start_claim() -> Claim {
        Claim(claim_identity(IDENTITIES, "meshdrop.identities/v2").ok())
    }

    /// Claims the identity of the page's first join while the page is idle after
    /// `init()`: a claim made during the join (a Web Lock granted through the browser
    /// process, localStorage) kept the page busy while the server's handshake came
    /// back, and two tabs joining at once were welcomed ~3 ms later. Unused, the lock
    /// is released after [`PRECLAIM_TTL_MS`], for other tabs.
    pub(crate) fn preclaim() {
        keep_ahead(&PRECLAIMED, Identity::start_claim(), PRECLAIM_TTL_MS);
    }

    /// The claim [`Identity::preclaim`] made, if it is still held. Dropped unused, it
    /// releases the lock.
    pub(crate) fn take_preclaimed() -> Option<Claim> {
        take_ahead(&PRECLAIMED)
    }

    /// What `claimIdentity` resolved to: `{ secret, key, release }`.
    fn from_held(held: &JsValue) -> Option<Identity> {
        let text = |key: &str| Reflect::get(held, &key.into()).ok().and_then(|s| s.as_string());
        let release = Reflect::get(held, &"release".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
        let (secret, key) = (text("secret")?, text("key")?);
        // Tied to the identity: a different identity never proves this one's transfers.
        let local_key = *blake3::Hasher::new_derive_key("meshdrop 2026-11 local key v3")
            .update(key.as_bytes())
            .update(b"\0")
            .update(secret.as_bytes())
            .finalize()
            .as_bytes();
        Some(Identity { secret, local_key, release })
    }

    /// A fresh secret and key, used once.
    pub(crate) fn ephemeral() -> Result<Identity, JsValue> {
        let mut local_key = [0; 32];
        super::platform::random_bytes(&mut local_key)?;
        Ok(Identity { secret: super::platform::random_secret()?, local_key, release: None })
    }
}

impl Identity {
    /// Kept in storage (not a one-off identity).
    pub(crate) fn persistent(&self) -> bool {
        self.release.is_some()
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}
