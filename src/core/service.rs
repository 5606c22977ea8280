//! Service messages: meshdrop's own traffic on the message channel, framed like
//! application messages (wire kinds 8 and 9, split and rejoined the same way) so large
//! ones — a manifest, a request payload — need no limit of their own.
//!
//! ```text
//! [type: u8] fields...                               (integers big-endian)
//!   1 query     query u64, match u8 (0 exact, 1 substring), text
//!   2 answer    query u64, count u16, count × (share u64, size u64, hash [32], name, type)
//!   3 request   request u64, method, payload
//!   4 reply     request u64, payload
//!   5 failure   request u64, code u8 (1 no such method, 2 handler failed, 3 busy,
//!               4 too large), message
//!   6 fetch     transfer u64, share u64, manifest u8 (1: send the block hashes)
//!   7 manifest  transfer u64, count u32, count × hash [32]
//!   8 get       transfer u64, count u16, count × block u32
//!   9 ping      (answer with pong: the server said this peer left; are you there?)
//!  10 pong
//! text     u16 length + utf-8 (at most 1024 bytes)
//! payload  kind u8 (0: JSON text, 1: bytes), then every remaining byte
//! ```
//! Decoding never panics, and allocates by a peer's claimed count only as far as the
//! bytes are really there.

use super::transfer::blocks::Hash;
use super::transfer::frame::{put_text, Reader};
use super::transfer::{FrameError, TransferId};
use super::wire::Payload;

/// A file some peer shares, as it answers queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareInfo {
    /// The holder's id for it.
    pub id: u64,
    /// Size in bytes.
    pub size: u64,
    /// Content hash.
    pub hash: Hash,
    /// File name.
    pub name: String,
    /// MIME type, possibly empty.
    pub mime: String,
}

/// Why a request got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureCode {
    NoSuchMethod = 1,
    Handler = 2,
    Busy = 3,
    TooLarge = 4,
}

impl FailureCode {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => FailureCode::NoSuchMethod,
            2 => FailureCode::Handler,
            3 => FailureCode::Busy,
            4 => FailureCode::TooLarge,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Service {
    Query {
        id: u64,
        substring: bool,
        text: String,
    },
    Answer {
        id: u64,
        hits: Vec<ShareInfo>,
    },
    Request {
        id: u64,
        method: String,
        payload: Payload,
    },
    Reply {
        id: u64,
        payload: Payload,
    },
    Failure {
        id: u64,
        code: FailureCode,
        message: String,
    },
    Fetch {
        transfer: TransferId,
        share: u64,
        manifest: bool,
    },
    Manifest {
        transfer: TransferId,
        hashes: Vec<Hash>,
    },
    Get {
        transfer: TransferId,
        blocks: Vec<u32>,
    },
    /// The downloader no longer wants these blocks from this holder (another serves
    /// them): skip those not yet read.
    Drop {
        transfer: TransferId,
        blocks: Vec<u32>,
    },
    Ping,
    Pong,
    /// The first frame on every connection: the sender's public key and its signature
    /// over the connection's binding (`identity::binding_message`).
    /// In a room with a secret, also the MAC of the same message under the key both
    /// sides derived from the secret (`room_secret.rs`).
    Bind {
        key: [u8; 32],
        signature: [u8; 64],
        mac: Option<[u8; 32]>,
    },
    /// Right after the binding: what the sender takes beyond the first protocol
    /// (unknown flags are ignored, so later ones can be added). A peer that sends none
    /// gets only what every version reads.
    Features {
        /// Batches of frames (`wire::kind::BATCH`).
        batches: bool,
        /// Offers that carry a small file whole (transfer control type 8).
        inline_offers: bool,
    },
}

/// `Features` flags (a peer ignores those it does not know).
const TAKES_BATCHES: u8 = 1;
const TAKES_INLINE_OFFERS: u8 = 2;

impl Service {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            Service::Query { id, substring, text } => {
                out.push(1);
                out.extend_from_slice(&id.to_be_bytes());
                out.push(u8::from(*substring));
                put_text(&mut out, text);
            }
            Service::Answer { id, hits } => {
                out.push(2);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&(hits.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
                for hit in hits.iter().take(usize::from(u16::MAX)) {
                    out.extend_from_slice(&hit.id.to_be_bytes());
                    out.extend_from_slice(&hit.size.to_be_bytes());
                    out.extend_from_slice(&hit.hash);
                    put_text(&mut out, &hit.name);
                    put_text(&mut out, &hit.mime);
                }
            }
            Service::Request { id, method, payload } => {
                out.push(3);
                out.extend_from_slice(&id.to_be_bytes());
                put_text(&mut out, method);
                put_payload(&mut out, payload);
            }
            Service::Reply { id, payload } => {
                out.push(4);
                out.extend_from_slice(&id.to_be_bytes());
                put_payload(&mut out, payload);
            }
            Service::Failure { id, code, message } => {
                out.push(5);
                out.extend_from_slice(&id.to_be_bytes());
                out.push(*code as u8);
                put_text(&mut out, message);
            }
            Service::Fetch { transfer, share, manifest } => {
                out.push(6);
                out.extend_from_slice(&transfer.0.to_be_bytes());
                out.extend_from_slice(&share.to_be_bytes());
                out.push(u8::from(*manifest));
            }
            Service::Manifest { transfer, hashes } => {
                out.reserve(hashes.len() * 32);
                out.push(7);
                out.extend_from_slice(&transfer.0.to_be_bytes());
                out.extend_from_slice(&(hashes.len() as u32).to_be_bytes());
                for hash in hashes {
                    out.extend_from_slice(hash);
                }
            }
            Service::Get { transfer, blocks } | Service::Drop { transfer, blocks } => {
                out.push(if matches!(self, Service::Get { .. }) { 8 } else { 11 });
                out.extend_from_slice(&transfer.0.to_be_bytes());
                out.extend_from_slice(&(blocks.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
                for block in blocks.iter().take(usize::from(u16::MAX)) {
                    out.extend_from_slice(&block.to_be_bytes());
                }
            }
            Service::Ping => out.push(9),
            Service::Features { batches, inline_offers } => {
                out.push(13);
                let flag = |on: bool, bit: u8| if on { bit } else { 0 };
                out.push(flag(*batches, TAKES_BATCHES) | flag(*inline_offers, TAKES_INLINE_OFFERS));
            }
            Service::Pong => out.push(10),
            Service::Bind { key, signature, mac } => {
                out.push(12);
                out.extend_from_slice(key);
                out.extend_from_slice(signature);
                if let Some(mac) = mac {
                    out.extend_from_slice(mac);
                }
            }
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Service, FrameError> {
        let mut r = Reader(bytes);
        let message = match r.u8()? {
            1 => Service::Query { id: r.u64()?, substring: r.u8()? == 1, text: r.text()? },
            2 => {
                let id = r.u64()?;
                let count = u16::from_be_bytes(r.array()?);
                let mut hits = Vec::new();
                for _ in 0..count {
                    let (id, size, hash) = (r.u64()?, r.u64()?, r.hash()?);
                    hits.push(ShareInfo { id, size, hash, name: r.text()?, mime: r.text()? });
                }
                Service::Answer { id, hits }
            }
            3 => Service::Request { id: r.u64()?, method: r.text()?, payload: payload(&mut r)? },
            4 => Service::Reply { id: r.u64()?, payload: payload(&mut r)? },
            5 => {
                let id = r.u64()?;
                let code = r.u8()?;
                let code = FailureCode::from_u8(code).ok_or(FrameError::Type(code))?;
                Service::Failure { id, code, message: r.text()? }
            }
            6 => Service::Fetch { transfer: TransferId(r.u64()?), share: r.u64()?, manifest: r.u8()? == 1 },
            7 => {
                let transfer = TransferId(r.u64()?);
                let count = r.u32()? as usize;
                let body = r.take(count.checked_mul(32).ok_or(FrameError::Truncated)?)?;
                let hashes = body.chunks_exact(32).map(|c| c.try_into().unwrap_or_default()).collect();
                Service::Manifest { transfer, hashes }
            }
            kind @ (8 | 11) => {
                let transfer = TransferId(r.u64()?);
                let count = u16::from_be_bytes(r.array()?);
                let mut blocks = Vec::new();
                for _ in 0..count {
                    blocks.push(r.u32()?);
                }
                if kind == 8 {
                    Service::Get { transfer, blocks }
                } else {
                    Service::Drop { transfer, blocks }
                }
            }
            9 => Service::Ping,
            13 => {
                let flags = r.u8()?;
                Service::Features { batches: flags & TAKES_BATCHES != 0, inline_offers: flags & TAKES_INLINE_OFFERS != 0 }
            }
            10 => Service::Pong,
            12 => {
                let (key, signature) = (r.array()?, r.array()?);
                let mac = if r.end().is_ok() { None } else { Some(r.array()?) };
                Service::Bind { key, signature, mac }
            }
            other => return Err(FrameError::Type(other)),
        };
        r.end()?;
        Ok(message)
    }
}

fn put_payload(out: &mut Vec<u8>, payload: &Payload) {
    match payload {
        Payload::Text(t) => {
            out.push(0);
            out.extend_from_slice(t.as_bytes());
        }
        Payload::Binary(b) => {
            out.push(1);
            out.extend_from_slice(b);
        }
    }
}

fn payload(r: &mut Reader<'_>) -> Result<Payload, FrameError> {
    let kind = r.u8()?;
    let rest = r.rest().to_vec();
    match kind {
        0 => String::from_utf8(rest).map(Payload::Text).map_err(|_| FrameError::Text),
        1 => Ok(Payload::Binary(rest)),
        other => Err(FrameError::Type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Service> {
        let hit = ShareInfo { id: 9, size: 40 << 20, hash: [3; 32], name: "image.png".into(), mime: "image/png".into() };
        vec![
            Service::Query { id: 1, substring: true, text: "imäge".into() },
            Service::Answer { id: 1, hits: vec![hit.clone(), ShareInfo { id: 10, ..hit }] },
            Service::Answer { id: 2, hits: vec![] },
            Service::Request { id: 7, method: "print".into(), payload: Payload::Text(r#"{"a":1}"#.into()) },
            Service::Reply { id: 7, payload: Payload::Binary(vec![0, 1, 2]) },
            Service::Reply { id: 8, payload: Payload::Text(String::new()) },
            Service::Failure { id: 7, code: FailureCode::Handler, message: "out of paper".into() },
            Service::Fetch { transfer: TransferId(5), share: 9, manifest: true },
            Service::Manifest { transfer: TransferId(5), hashes: vec![[1; 32], [2; 32]] },
            Service::Get { transfer: TransferId(5), blocks: vec![0, 7, 40] },
            Service::Drop { transfer: TransferId(5), blocks: vec![40] },
            Service::Ping,
            Service::Pong,
            Service::Features { batches: true, inline_offers: true },
            Service::Features { batches: false, inline_offers: false },
            Service::Features { batches: true, inline_offers: false },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for message in all() {
            assert_eq!(Service::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn truncations_and_extensions_are_errors() {
        for message in all() {
            let bytes = message.encode();
            // Payloads take every remaining byte, so only their fixed part can be cut.
            let has_payload = matches!(message, Service::Request { .. } | Service::Reply { .. });
            for len in 0..bytes.len() {
                let result = Service::decode(&bytes[..len]);
                if !has_payload {
                    assert!(result.is_err(), "{message:?} cut to {len} decoded");
                }
            }
            if !has_payload {
                let mut longer = bytes.clone();
                longer.push(0);
                assert_eq!(Service::decode(&longer), Err(FrameError::Trailing));
            }
        }
    }

    #[test]
    fn unknown_feature_flags_are_ignored() {
        assert_eq!(Service::decode(&[13, 0xff]), Ok(Service::Features { batches: true, inline_offers: true }));
        assert_eq!(Service::decode(&[13, 0xfc]), Ok(Service::Features { batches: false, inline_offers: false }));
        assert_eq!(Service::decode(&[13, 0x01]), Ok(Service::Features { batches: true, inline_offers: false }));
    }

    #[test]
    fn claimed_counts_do_not_allocate() {
        let mut manifest = vec![7];
        manifest.extend_from_slice(&5u64.to_be_bytes());
        manifest.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Service::decode(&manifest), Err(FrameError::Truncated));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = crate::core::rng::Rng::new(11);
        for _ in 0..50_000 {
            let len = (rng.next_u64() % 60) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if let Some(first) = bytes.first_mut() {
                *first = 1 + *first % 10;
            }
            let _ = Service::decode(&bytes);
        }
    }
}
