//! A tab's persistent identity: a secret kept in localStorage (the server derives our
//! id from it), held by one tab at a time through a Web Lock, so a reloaded tab comes
//! back as the same peer while two open tabs never share an id. Falls back to a fresh
//! secret where either API is missing.

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
  for (const secret of pool) {
    if (typeof secret !== "string") continue;
    const held = await hold(secret);
    if (held) return held;
  }
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  const secret = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
  const held = await hold(secret);
  if (!held) return null;
  pool.push(secret);
  storage.setItem(storageKey, JSON.stringify(pool.slice(-64)));
  return held;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = claimIdentity, catch)]
    fn claim_identity(storage_key: &str) -> Result<js_sys::Promise, JsValue>;
}

/// A claimed secret; dropping it releases the lock for the next tab.
pub(crate) struct Identity {
    pub(crate) secret: String,
    release: Option<Function>,
}

impl Identity {
    /// A persistent secret if the browser allows, else a fresh one.
    pub(crate) async fn claim() -> Result<Identity, JsValue> {
        if let Ok(promise) = claim_identity("meshdrop.identities") {
            if let Ok(held) = JsFuture::from(promise).await {
                let secret = Reflect::get(&held, &"secret".into()).ok().and_then(|s| s.as_string());
                let release = Reflect::get(&held, &"release".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
                if let Some(secret) = secret {
                    return Ok(Identity { secret, release });
                }
            }
        }
        Identity::ephemeral()
    }

    /// A fresh secret, used once.
    pub(crate) fn ephemeral() -> Result<Identity, JsValue> {
        Ok(Identity { secret: super::platform::random_secret()?, release: None })
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}
