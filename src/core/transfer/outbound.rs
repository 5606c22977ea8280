//! The bulk channel outward: one pump per peer issues block reads for every transfer
//! sending to it and every serve for it, round robin, as far as the read-ahead and
//! each transfer's window allow; each block read goes out as a header and slices.

use super::blocks::{self, Hash};
use super::frame::BulkHeader;
use super::send::Action;
use super::{BulkItem, Transfer, TransferId, Transfers, READ_AHEAD};
use crate::core::net::Net;
use crate::core::output::{FileOp, FileSource, Output};
use crate::core::PeerId;

impl Transfers {
    /// Issues reads for `peer`'s sending transfers and serves while the windows and the
    /// read-ahead allow, then sends each one's end frame once every block went out.
    pub(super) fn pump(&mut self, net: &mut Net<'_>, peer: &PeerId) {
        // Round-robin: one read each per turn, starting after the one served last (or
        // the lowest id would win every freed slot).
        loop {
            let mut progressed = false;
            let mut ids = self.ids(|t| match t {
                Transfer::Send(o) => o.peer == *peer && o.sending(),
                Transfer::Serve(s) => s.peer == *peer,
                _ => false,
            });
            if let Some(last) = self.send_cursor.get(peer) {
                let next = ids.iter().position(|id| id > last).unwrap_or(0);
                ids.rotate_left(next);
            }
            for id in ids {
                let reading: u64 = self
                    .map
                    .values()
                    .map(|t| match t {
                        Transfer::Send(o) if o.peer == *peer => o.reading_bytes(),
                        Transfer::Serve(s) if s.peer == *peer => s.reading_bytes(),
                        _ => 0,
                    })
                    .sum();
                if net.bulk_queued(peer) + reading >= READ_AHEAD {
                    return;
                }
                // Whether it did something, and whether that was a read (which takes a
                // turn of the round robin; announcing a hash does not).
                let (acted, read) = match self.map.get_mut(&id) {
                    Some(Transfer::Serve(s)) => {
                        let read = s.next_read(id, net);
                        (read, read)
                    }
                    Some(Transfer::Send(o)) => match o.next_action() {
                        Some(action) => {
                            o.act(id, net, action);
                            (true, matches!(action, Action::Read(..) | Action::SendHeld(..)))
                        }
                        None => {
                            o.maybe_end(id, net);
                            (false, false)
                        }
                    },
                    _ => (false, false),
                };
                if read {
                    self.send_cursor.insert(peer.clone(), id);
                }
                progressed |= acted;
            }
            if !progressed {
                return;
            }
        }
    }
}

/// Reads asked of the driver for this transfer's file.
pub(crate) fn read_block(net: &mut Net<'_>, id: TransferId, source: FileSource, size: u64, block: u32) {
    let (offset, len) = (blocks::block_offset(block), blocks::block_len(size, block));
    net.output(Output::File(FileOp::Read { id, source, block, offset, len }));
}

/// A block's header and, with `data`, its `len` bytes as slices of the block the driver
/// holds (no copy to prepend the header), for `peer`'s bulk channel.
pub(crate) fn send_block(net: &mut Net<'_>, peer: &PeerId, id: TransferId, block: u32, len: u32, data: bool, hash: Hash) {
    let header = BulkHeader::Block { id, block, len, data, hash };
    let chunk = net.bulk_frame_size(peer);
    let mut items = vec![BulkItem::Frame { id, bytes: header.encode() }];
    let mut start = 0;
    while data && start < len {
        let n = chunk.min(len - start);
        items.push(BulkItem::Slice { id, block, start, len: n, last: start + n == len });
        start += n;
    }
    net.send_bulk(peer, items);
}
