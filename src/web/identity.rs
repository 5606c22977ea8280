//! A tab's persistent identity: a secret kept in localStorage (the server derives our
//! id from it), held by one tab at a time through a Web Lock, so a reloaded tab comes
//! back as the same peer while two open tabs never share an id; and with it a local key
//! that never leaves the browser, with which a receiver proves it is the one that
//! accepted a transfer (the server sees the secret, so it could claim the id, but it
//! never sees the key). Falls back to fresh ones where either API is missing.

use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
export async function claimIdentity(storageKey) {
  const storage = globalThis.localStorage;
  const locks = globalThis.navigator && globalThis.navigator.locks;
  if (!storage || !locks) return null;
  let pool = [];
  try { pool = JSON.parse(storage.getItem(storageKey) || "[]"); } catch {}
  if (!Array.isArray(pool)) pool = [];
  const hold = (secret) => new Promise((resolve) => {
    locks.request("meshdrop-identity:" + secret, { ifAvailable: true }, (lock) => {
      if (!lock) { resolve(null); return undefined; }
      // The lock is held until `release` is called (or the tab goes away).
      return new Promise((release) => resolve({ secret, release }));
    }).catch(() => resolve(null));
  });
  const random = () => btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(24)))).replace(/\+/g, "-").replace(/\//g, "_");
  for (const entry of pool) {
    if (!entry || typeof entry.secret !== "string" || typeof entry.key !== "string") continue;
    const held = await hold(entry.secret);
    if (held) return { ...held, key: entry.key };
  }
  const entry = { secret: random(), key: random() };
  const held = await hold(entry.secret);
  if (!held) return null;
  pool.push(entry);
  storage.setItem(storageKey, JSON.stringify(pool.slice(-64)));
  return { ...held, key: entry.key };
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = claimIdentity, catch)]
    fn claim_identity(storage_key: &str) -> Result<js_sys::Promise, JsValue>;
}

/// A claimed secret and local key; dropping it releases the lock for the next tab.
pub(crate) struct Identity {
    pub(crate) secret: String,
    pub(crate) local_key: [u8; 32],
    release: Option<Function>,
}

impl Identity {
    /// A persistent secret if the browser allows, else a fresh one.
    pub(crate) async fn claim() -> Result<Identity, JsValue> {
        if let Ok(promise) = claim_identity("meshdrop.identities/v2") {
            if let Ok(held) = JsFuture::from(promise).await {
                let text = |key: &str| Reflect::get(&held, &key.into()).ok().and_then(|s| s.as_string());
                let release = Reflect::get(&held, &"release".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
                if let (Some(secret), Some(key)) = (text("secret"), text("key")) {
                    let local_key = *blake3::Hasher::new_derive_key("meshdrop 2026-11 local key").update(key.as_bytes()).finalize().as_bytes();
                    return Ok(Identity { secret, local_key, release });
                }
            }
        }
        Identity::ephemeral()
    }

    /// A fresh secret and key, used once.
    pub(crate) fn ephemeral() -> Result<Identity, JsValue> {
        let mut local_key = [0; 32];
        super::platform::random_bytes(&mut local_key)?;
        Ok(Identity { secret: super::platform::random_secret()?, local_key, release: None })
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}
