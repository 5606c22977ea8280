//! Reading a `Blob`: the blocks of a file we send or serve, held until the core lets
//! them go and their memory reused for the next; and a whole file into block hashes.
//!
//! Why reuse: `slice().arrayBuffer()` makes a new buffer per read, and V8 frees dead
//! buffers only at its next collection, which comes late when a page allocates little
//! else. A page reading 512 MiB in 1 MiB slices grew 165 MiB that way, 56 MiB through
//! one reused buffer; a 1 GiB transfer's sender grew 152 MiB before, 33 MiB now
//! (`node bench/transfer.mjs`, memory table).

use std::collections::HashMap;

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::Blob;

use crate::core::transfer::blocks::{hash_block, BLOCK_SIZE};
use crate::core::{Hash, TransferId};

/// Blocks read per call while hashing: fewer promise round trips than one per block,
/// and still a bounded amount in memory.
const BLOCKS_PER_READ: u64 = 8;
/// Block buffers kept for reuse; more in flight at once are allocated and then dropped.
const MAX_SPARE_BLOCKS: usize = 16;

#[wasm_bindgen(module = "/src/web/glue.js")]
extern "C" {
    /// `start..end` of `blob` as a Uint8Array, over `buffer`'s memory where it can be.
    #[wasm_bindgen(catch, js_name = readBlobInto)]
    async fn read_blob_into(blob: &Blob, start: f64, end: f64, buffer: Option<ArrayBuffer>) -> Result<JsValue, JsValue>;
}

/// Reads `start..end` of `blob`, into `spare`'s memory where the browser allows.
pub(crate) async fn read_range(blob: &Blob, start: u64, end: u64, spare: Option<ArrayBuffer>) -> Result<Uint8Array, JsValue> {
    read_blob_into(blob, start as f64, end as f64, spare).await?.dyn_into()
}

/// Blocks read for sending or serving, by transfer and block, kept until the core lets
/// them go; the buffers of released blocks are reused for the next reads.
#[derive(Default)]
pub(crate) struct ReadBlocks {
    held: HashMap<(TransferId, u32), Uint8Array>,
    spare: Vec<ArrayBuffer>,
}

impl ReadBlocks {
    /// A buffer for the next block read.
    pub(crate) fn take_spare(&mut self) -> ArrayBuffer {
        self.spare.pop().unwrap_or_else(|| ArrayBuffer::new(BLOCK_SIZE as u32))
    }

    pub(crate) fn insert(&mut self, id: TransferId, block: u32, bytes: Uint8Array) {
        if let Some(old) = self.held.insert((id, block), bytes) {
            self.recycle(&old);
        }
    }

    pub(crate) fn get(&self, id: TransferId, block: u32) -> Option<&Uint8Array> {
        self.held.get(&(id, block))
    }

    /// Lets go of one block (the browser has copied whatever was sent from it).
    pub(crate) fn release(&mut self, id: TransferId, block: u32) {
        if let Some(view) = self.held.remove(&(id, block)) {
            self.recycle(&view);
        }
    }

    /// Lets go of every block of transfer `id` but `except` (that one goes after its
    /// last slice). Once no block is held, the spare buffers go too: a page between
    /// transfers keeps no MiBs for transfers it may never make.
    pub(crate) fn release_transfer(&mut self, id: TransferId, except: Option<u32>) {
        let gone: Vec<_> = self.held.keys().filter(|(t, b)| *t == id && Some(*b) != except).copied().collect();
        for (t, b) in gone {
            self.release(t, b);
        }
        if self.held.is_empty() {
            self.spare.clear();
        }
    }

    fn recycle(&mut self, view: &Uint8Array) {
        let buffer = view.buffer();
        if self.spare.len() < MAX_SPARE_BLOCKS && u64::from(buffer.byte_length()) >= BLOCK_SIZE {
            self.spare.push(buffer);
        }
    }
}

/// Reads `blob` in slices and hashes every block, in order.
pub(crate) async fn block_hashes(blob: &Blob) -> Result<Vec<Hash>, JsValue> {
    let size = blob.size() as u64;
    let mut hashes = Vec::with_capacity(size.div_ceil(BLOCK_SIZE) as usize);
    let mut buffer = Vec::new();
    let mut spare = Some(ArrayBuffer::new(size.min(BLOCKS_PER_READ * BLOCK_SIZE) as u32));
    let mut offset = 0;
    while offset < size {
        let end = (offset + BLOCKS_PER_READ * BLOCK_SIZE).min(size);
        let view = read_range(blob, offset, end, spare.take()).await?;
        if u64::from(view.length()) != end - offset {
            return Err(JsValue::from_str("the file changed size while it was read"));
        }
        buffer.resize(view.length() as usize, 0);
        view.copy_to(&mut buffer);
        hashes.extend(buffer.chunks(BLOCK_SIZE as usize).map(hash_block));
        spare = Some(view.buffer());
        offset = end;
    }
    Ok(hashes)
}
