//! Hashes a buffer in wasm memory `rounds` times; returns a byte of the digest so the
//! work cannot be optimised away. Timed from JS.
use sha2::Digest;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub fn blake3_rounds(data: &[u8], rounds: u32) -> u8 {
    let mut out = 0;
    for _ in 0..rounds {
        out ^= blake3::hash(data).as_bytes()[0];
    }
    out
}

#[wasm_bindgen]
pub fn sha256_rounds(data: &[u8], rounds: u32) -> u8 {
    let mut out = 0;
    for _ in 0..rounds {
        out ^= sha2::Sha256::digest(data)[0];
    }
    out
}
