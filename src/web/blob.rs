//! Reading a `Blob` into block hashes without holding more than a few blocks of it.

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::Blob;

use crate::core::transfer::blocks::{hash_block, BLOCK_SIZE};
use crate::core::Hash;

/// Blocks read per `arrayBuffer()` call: fewer promise round trips than one per block,
/// and still a bounded amount in memory.
const BLOCKS_PER_READ: u64 = 8;

/// Reads `blob` in slices and hashes every block, in order.
pub(crate) async fn block_hashes(blob: &Blob) -> Result<Vec<Hash>, JsValue> {
    let size = blob.size() as u64;
    let mut hashes = Vec::with_capacity(size.div_ceil(BLOCK_SIZE) as usize);
    let mut buffer = Vec::new();
    let mut offset = 0;
    while offset < size {
        let end = (offset + BLOCKS_PER_READ * BLOCK_SIZE).min(size);
        let slice = blob.slice_with_f64_and_f64(offset as f64, end as f64)?;
        let bytes: ArrayBuffer = JsFuture::from(slice.array_buffer()).await?.dyn_into()?;
        let view = Uint8Array::new(&bytes);
        if u64::from(view.length()) != end - offset {
            return Err(JsValue::from_str("the file changed size while it was read"));
        }
        buffer.resize(view.length() as usize, 0);
        view.copy_to(&mut buffer);
        hashes.extend(buffer.chunks(BLOCK_SIZE as usize).map(hash_block));
        offset = end;
    }
    Ok(hashes)
}
