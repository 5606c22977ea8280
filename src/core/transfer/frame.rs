//! Transfer frames (their kinds are listed with all others in `wire.rs`). Control frames
//! travel on the message channel as wire kind 5; block headers (kind 6) and end frames
//! (kind 7) travel on the bulk channel, each header
//! followed by the block's bytes as raw frames, so file bytes are never copied to
//! prepend a header.
//!
//! ```text
//! control  [0x15][type: u8][transfer: u64] fields...
//!   1 offer     size u64, block size u32, head hash [32], has hash u8, [hash [32]],
//!               name (u16 length + utf-8), type (u16 length + utf-8), nonce u64
//!   2 accept    bitmap length u32, bitmap (bit i: block i is already here),
//!               proof kind u8, proof [32] (see `recv.rs`: who may resume)
//!   3 reject    reason (u16 length + utf-8)
//!   4 ack       block u32 (verified and stored)
//!   5 want      block u32 (send it again)
//!   6 complete  (the whole file verified and stored)
//!   7 cancel    code u8 (1 cancelled, 2 hash mismatch, 3 storage full, 4 storage,
//!               5 unreadable, 6 protocol, 7 not shared, 8 busy), reason
//!               (u16 length + utf-8)
//!   8 offer     an offer's fields, then the whole file (1 to 16 KiB): a one-block
//!               file, to a peer whose `features` said it takes these
//! bulk     [0x16][transfer: u64][block: u32][length: u32][flags: u8][hash [32]]
//!               flags bit 0: the block's bytes follow as raw frames; else the header
//!               only tells the block's hash (the receiver has the bytes)
//!          [0x17][transfer: u64][content hash [32]]  (every block has been sent)
//! ```
//! Integers are big-endian. Decoding never panics and never allocates by a peer's claim.

use thiserror::Error;

use super::blocks::Hash;
use super::TransferId;
use crate::core::wire::kind::{BLOCK_HEADER as BLOCK, TRANSFER_CONTROL as CONTROL, TRANSFER_END as END};

const MAX_TEXT: usize = 1024;
/// The largest file an offer carries whole (control type 8): its receiver has it the
/// moment it accepts. Offers wait in bounded numbers (`recv.rs`), so their bytes do too.
pub(crate) const INLINE_OFFER_MAX: usize = 16 * 1024;
/// The most an offer's frame holds before the file it may carry: its fixed fields and
/// two texts of at most `MAX_TEXT` bytes.
pub(crate) const OFFER_FIELDS_MAX: usize = 2 + 8 + 8 + 4 + 32 + 1 + 32 + 2 * (2 + MAX_TEXT) + 8;

/// Why a transfer ended early, on the wire and in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelCode {
    /// A user cancelled it.
    Cancelled = 1,
    /// A block or the whole file did not match its hash.
    HashMismatch = 2,
    /// The receiver ran out of storage.
    StorageFull = 3,
    /// The receiver could not store it for another reason.
    Storage = 4,
    /// The sender could not read the file.
    Unreadable = 5,
    /// A peer broke the protocol.
    Protocol = 6,
    /// The file asked for is not shared (any more).
    NotShared = 7,
    /// The receiver has too many offers waiting for an answer.
    Busy = 8,
}

impl CancelCode {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => CancelCode::Cancelled,
            2 => CancelCode::HashMismatch,
            3 => CancelCode::StorageFull,
            4 => CancelCode::Storage,
            5 => CancelCode::Unreadable,
            7 => CancelCode::NotShared,
            8 => CancelCode::Busy,
            _ => CancelCode::Protocol,
        }
    }
}

/// A control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// `data`: the whole file, when it is small and the peer takes it so.
    Offer {
        id: TransferId,
        size: u64,
        block_size: u32,
        head: Hash,
        hash: Option<Hash>,
        name: String,
        mime: String,
        nonce: u64,
        data: Option<Vec<u8>>,
    },
    Accept {
        id: TransferId,
        have: Vec<u8>,
        proof: Proof,
    },
    Reject {
        id: TransferId,
        reason: String,
    },
    Ack {
        id: TransferId,
        block: u32,
    },
    Want {
        id: TransferId,
        block: u32,
    },
    Complete {
        id: TransferId,
    },
    Cancel {
        id: TransferId,
        code: CancelCode,
        reason: String,
    },
}

/// How a receiver shows it is the one that accepted a transfer before (the signaling
/// server, which could claim its id, cannot): on a first accept it hands the sender a
/// token derived from a key that never leaves its browser; when resuming it answers
/// the offer's nonce with a hash of that token instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proof {
    Token(Hash),
    Response(Hash),
}

/// A frame on the bulk channel that is not raw block bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BulkHeader {
    Block { id: TransferId, block: u32, len: u32, data: bool, hash: Hash },
    End { id: TransferId, hash: Hash },
}

/// A frame that breaks these rules.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Shorter than its fields.
    #[error("truncated transfer frame")]
    Truncated,
    /// Bytes after the last field.
    #[error("transfer frame has trailing bytes")]
    Trailing,
    /// An unknown frame or message type.
    #[error("unknown transfer frame type {0:#04x}")]
    Type(u8),
    /// Text that is not UTF-8 or too long.
    #[error("bad text in transfer frame")]
    Text,
    /// An offer's file bytes that are empty or more than an offer may carry.
    #[error("an offer carries 1 to 16384 bytes of its file")]
    Inline,
}

impl Control {
    pub(crate) fn id(&self) -> TransferId {
        match self {
            Control::Offer { id, .. }
            | Control::Accept { id, .. }
            | Control::Reject { id, .. }
            | Control::Ack { id, .. }
            | Control::Want { id, .. }
            | Control::Complete { id }
            | Control::Cancel { id, .. } => *id,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(CONTROL);
        let (kind, id) = match self {
            Control::Offer { id, data: None, .. } => (1, id),
            Control::Offer { id, data: Some(_), .. } => (8, id),
            Control::Accept { id, .. } => (2, id),
            Control::Reject { id, .. } => (3, id),
            Control::Ack { id, .. } => (4, id),
            Control::Want { id, .. } => (5, id),
            Control::Complete { id } => (6, id),
            Control::Cancel { id, .. } => (7, id),
        };
        out.push(kind);
        out.extend_from_slice(&id.0.to_be_bytes());
        match self {
            Control::Offer { size, block_size, head, hash, name, mime, nonce, data, .. } => {
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&block_size.to_be_bytes());
                out.extend_from_slice(head);
                match hash {
                    Some(hash) => {
                        out.push(1);
                        out.extend_from_slice(hash);
                    }
                    None => out.push(0),
                }
                put_text(&mut out, name);
                put_text(&mut out, mime);
                out.extend_from_slice(&nonce.to_be_bytes());
                if let Some(data) = data {
                    out.extend_from_slice(data);
                }
            }
            Control::Accept { have, proof, .. } => {
                out.extend_from_slice(&(have.len() as u32).to_be_bytes());
                out.extend_from_slice(have);
                let (kind, bytes) = match proof {
                    Proof::Token(t) => (0, t),
                    Proof::Response(r) => (1, r),
                };
                out.push(kind);
                out.extend_from_slice(bytes);
            }
            Control::Reject { reason, .. } => put_text(&mut out, reason),
            Control::Ack { block, .. } | Control::Want { block, .. } => out.extend_from_slice(&block.to_be_bytes()),
            Control::Complete { .. } => {}
            Control::Cancel { code, reason, .. } => {
                out.push(*code as u8);
                put_text(&mut out, reason);
            }
        }
        out
    }

    /// Decodes a whole control frame (including its first byte).
    pub(crate) fn decode(frame: &[u8]) -> Result<Control, FrameError> {
        let mut r = Reader(frame.get(1..).ok_or(FrameError::Truncated)?);
        let kind = r.u8()?;
        let id = TransferId(r.u64()?);
        let control = match kind {
            1 | 8 => {
                let size = r.u64()?;
                let block_size = r.u32()?;
                let head = r.hash()?;
                let hash = match r.u8()? {
                    0 => None,
                    _ => Some(r.hash()?),
                };
                let (name, mime, nonce) = (r.text()?, r.text()?, r.u64()?);
                let data = match kind {
                    8 => match r.rest() {
                        bytes if bytes.is_empty() || bytes.len() > INLINE_OFFER_MAX => return Err(FrameError::Inline),
                        bytes => Some(bytes.to_vec()),
                    },
                    _ => None,
                };
                Control::Offer { id, size, block_size, head, hash, name, mime, nonce, data }
            }
            2 => {
                let len = r.u32()? as usize;
                let have = r.take(len)?.to_vec();
                let proof = match r.u8()? {
                    0 => Proof::Token(r.hash()?),
                    _ => Proof::Response(r.hash()?),
                };
                Control::Accept { id, have, proof }
            }
            3 => Control::Reject { id, reason: r.text()? },
            4 => Control::Ack { id, block: r.u32()? },
            5 => Control::Want { id, block: r.u32()? },
            6 => Control::Complete { id },
            7 => Control::Cancel { id, code: CancelCode::from_u8(r.u8()?), reason: r.text()? },
            other => return Err(FrameError::Type(other)),
        };
        r.end()?;
        Ok(control)
    }
}

impl BulkHeader {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(50);
        match self {
            BulkHeader::Block { id, block, len, data, hash } => {
                out.push(BLOCK);
                out.extend_from_slice(&id.0.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.push(u8::from(*data));
                out.extend_from_slice(hash);
            }
            BulkHeader::End { id, hash } => {
                out.push(END);
                out.extend_from_slice(&id.0.to_be_bytes());
                out.extend_from_slice(hash);
            }
        }
        out
    }

    pub(crate) fn decode(frame: &[u8]) -> Result<BulkHeader, FrameError> {
        let (&kind, rest) = frame.split_first().ok_or(FrameError::Truncated)?;
        let mut r = Reader(rest);
        let header = match kind {
            BLOCK => BulkHeader::Block { id: TransferId(r.u64()?), block: r.u32()?, len: r.u32()?, data: r.u8()? & 1 == 1, hash: r.hash()? },
            END => BulkHeader::End { id: TransferId(r.u64()?), hash: r.hash()? },
            other => return Err(FrameError::Type(other)),
        };
        r.end()?;
        Ok(header)
    }
}

pub(crate) fn put_text(out: &mut Vec<u8>, text: &str) {
    // Truncated on a character boundary: names are for display.
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn hash(&mut self) -> Result<Hash, FrameError> {
        self.array()
    }

    pub(crate) fn text(&mut self) -> Result<String, FrameError> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        if len > MAX_TEXT {
            return Err(FrameError::Text);
        }
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| FrameError::Text)
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    pub(crate) fn end(&self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_controls() -> Vec<Control> {
        let id = TransferId(0x0102_0304_0506_0708);
        vec![
            Control::Offer {
                id,
                size: 5 << 30,
                block_size: 1 << 20,
                head: [7; 32],
                hash: None,
                name: "vidéo.mp4".into(),
                mime: "video/mp4".into(),
                nonce: 7,
                data: None,
            },
            Control::Offer {
                id,
                size: 0,
                block_size: 1 << 20,
                head: [0; 32],
                hash: Some([9; 32]),
                name: String::new(),
                mime: String::new(),
                nonce: u64::MAX,
                data: None,
            },
            Control::Accept { id, have: vec![0b101, 0], proof: Proof::Token([4; 32]) },
            Control::Accept { id, have: vec![], proof: Proof::Response([5; 32]) },
            Control::Reject { id, reason: "no thanks".into() },
            Control::Ack { id, block: 4_000_000 },
            Control::Want { id, block: 3 },
            Control::Complete { id },
            Control::Cancel { id, code: CancelCode::HashMismatch, reason: "block 3".into() },
        ]
    }

    #[test]
    fn control_frames_round_trip() {
        for control in all_controls() {
            assert_eq!(Control::decode(&control.encode()), Ok(control));
        }
    }

    #[test]
    fn an_offer_carries_a_small_file_whole_and_no_more() {
        let offer = |data: Vec<u8>| Control::Offer {
            id: TransferId(3),
            size: data.len() as u64,
            block_size: 1 << 20,
            head: [1; 32],
            hash: Some([2; 32]),
            name: "a.txt".into(),
            mime: "text/plain".into(),
            nonce: 9,
            data: Some(data),
        };
        for len in [1, 1000, INLINE_OFFER_MAX] {
            let control = offer(vec![7; len]);
            let frame = control.encode();
            assert_eq!(frame[1], 8, "its own type: a receiver that does not take these never gets one");
            assert_eq!(Control::decode(&frame), Ok(control));
        }
        let fields = offer(vec![7; 1]).encode().len() - 1;
        let empty = &offer(vec![7; 1]).encode()[..fields];
        assert_eq!(Control::decode(empty), Err(FrameError::Inline));
        assert_eq!(Control::decode(&offer(vec![7; INLINE_OFFER_MAX + 1]).encode()), Err(FrameError::Inline));
        for cut in 0..fields {
            assert!(Control::decode(&offer(vec![7; 5]).encode()[..cut]).is_err(), "cut at {cut}");
        }
        // The longest fields an offer can have: what a sender allows for before the file.
        let longest = Control::Offer {
            id: TransferId(1),
            size: 1,
            block_size: 1,
            head: [0; 32],
            hash: Some([0; 32]),
            name: "n".repeat(MAX_TEXT + 5),
            mime: "m".repeat(MAX_TEXT + 5),
            nonce: 0,
            data: None,
        };
        assert_eq!(longest.encode().len(), OFFER_FIELDS_MAX);
    }

    #[test]
    fn bulk_headers_round_trip() {
        let id = TransferId(42);
        for header in [
            BulkHeader::Block { id, block: 1, len: 1 << 20, data: true, hash: [3; 32] },
            BulkHeader::Block { id, block: 0, len: 0, data: false, hash: [0; 32] },
            BulkHeader::End { id, hash: [5; 32] },
        ] {
            assert_eq!(BulkHeader::decode(&header.encode()), Ok(header));
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        for control in all_controls() {
            let frame = control.encode();
            for cut in 0..frame.len() {
                assert!(Control::decode(&frame[..cut]).is_err(), "{control:?} cut at {cut}");
            }
            let mut long = frame.clone();
            long.push(0);
            assert_eq!(Control::decode(&long), Err(FrameError::Trailing));
        }
        assert_eq!(Control::decode(&[CONTROL, 99, 0, 0, 0, 0, 0, 0, 0, 0]), Err(FrameError::Type(99)));
        assert_eq!(BulkHeader::decode(&[0x99]), Err(FrameError::Type(0x99)));
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let id = TransferId(1);
        let name = "é".repeat(MAX_TEXT);
        let frame =
            Control::Offer { id, size: 1, block_size: 1, head: [0; 32], hash: None, name, mime: String::new(), nonce: 0, data: None }.encode();
        match Control::decode(&frame) {
            Ok(Control::Offer { name, .. }) => assert!(name.len() <= MAX_TEXT && name.chars().all(|c| c == 'é')),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = crate::core::rng::Rng::new(11);
        for _ in 0..20_000 {
            let len = (rng.next_u64() % 80) as usize;
            let mut frame: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if let Some(h) = frame.first_mut() {
                *h = [CONTROL, BLOCK, END][(*h % 3) as usize];
            }
            if frame.len() > 1 {
                frame[1] %= 9;
            }
            let _ = Control::decode(&frame);
            let _ = BulkHeader::decode(&frame);
        }
    }
}
