//! The data channels' frames. Every frame meshdrop sends starts with a header byte —
//! the version (1) in the high nibble, the kind in the low one — except the raw file
//! bytes that follow a block header on the bulk channel. `kind` lists every kind,
//! once; this module frames messages, larger than the channel's max message size or
//! not, into a first frame that announces the total length and continuation frames.
//!
//! ```text
//! kind 0   message   whole text message             [hdr][utf-8 ...]
//! kind 1   message   whole binary message           [hdr][bytes ...]
//! kind 2   message   first frame, text              [hdr][total: u64 big-endian][utf-8 ...]
//! kind 3   message   first frame, binary            [hdr][total: u64 big-endian][bytes ...]
//! kind 4   message   continuation                   [hdr][bytes ...]
//! kind 5   message   transfer control (one frame)   see `transfer/frame.rs`
//! kind 6   bulk      block header                   see `transfer/frame.rs`
//! kind 7   bulk      transfer end                   see `transfer/frame.rs`
//! kind 8   message   whole service message          [hdr][bytes ...]
//! kind 9   message   first frame, service           [hdr][total: u64 big-endian][bytes ...]
//! kind 10  message   batch of whole frames          [hdr]([len: u32 big-endian][frame])...
//! ```
//! A batch carries two or more message-channel frames of any other kind, in order; it
//! means exactly what those frames sent one by one would. Peers send batches only to
//! peers that said they take them (service message `features`): one `send` and one
//! receive event for many small messages instead of one each.
//! Service messages carry meshdrop's own traffic (queries, requests, manifests: see
//! `service.rs`) with the same splitting as application messages. A message is complete
//! when `total` bytes have arrived; the channel is ordered and reliable, so frames of
//! one message are never interleaved with another's. Transfer control frames are whole
//! frames, passed through without touching a message in progress.
//!
//! This is the fuzz surface for hostile peers: decoding never panics, never trusts a
//! claimed length for allocation, and reports every violation as a [`WireError`].

use thiserror::Error;

/// Every frame kind's header byte (version 1), in one place.
pub(crate) mod kind {
    pub(crate) const TEXT: u8 = 0x10;
    pub(crate) const BINARY: u8 = 0x11;
    pub(crate) const FIRST_TEXT: u8 = 0x12;
    pub(crate) const FIRST_BINARY: u8 = 0x13;
    pub(crate) const CONTINUATION: u8 = 0x14;
    pub(crate) const TRANSFER_CONTROL: u8 = 0x15;
    pub(crate) const BLOCK_HEADER: u8 = 0x16;
    pub(crate) const TRANSFER_END: u8 = 0x17;
    pub(crate) const SERVICE: u8 = 0x18;
    pub(crate) const FIRST_SERVICE: u8 = 0x19;
    pub(crate) const BATCH: u8 = 0x1a;
}

const VERSION: u8 = 1;
/// Service messages may exceed the application limit: a manifest of a 1 TiB file is
/// 32 MiB of block hashes.
const MIN_SERVICE_LIMIT: u64 = 32 * 1024 * 1024 + 64 * 1024;
const FIRST_HEADER: usize = 9;
/// Reassembly grows its buffer as bytes arrive, never on a peer's word alone.
const MAX_PREALLOC: u64 = 1 << 20;

/// An application message: text or bytes, delivered as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A string.
    Text(String),
    /// Raw bytes.
    Binary(Vec<u8>),
}

impl Payload {
    /// Size on the wire, in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Text(t) => t.len() as u64,
            Payload::Binary(b) => b.len() as u64,
        }
    }

    /// True for an empty string or empty byte array.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole message off the channel: the application's, or meshdrop's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// For the user.
    App(Payload),
    /// A service message (see `service.rs`), still encoded.
    Service(Vec<u8>),
    /// A transfer control frame (see `transfer/frame.rs`), whole, header included.
    TransferControl(Vec<u8>),
}

/// What a message is, for framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Text,
    Binary,
    Service,
}

impl Class {
    /// Header bytes of its whole frame and of its first frame.
    fn kinds(self) -> (u8, u8) {
        match self {
            Class::Text => (kind::TEXT, kind::FIRST_TEXT),
            Class::Binary => (kind::BINARY, kind::FIRST_BINARY),
            Class::Service => (kind::SERVICE, kind::FIRST_SERVICE),
        }
    }

    fn of(header: u8) -> Option<Class> {
        match header {
            kind::TEXT | kind::FIRST_TEXT => Some(Class::Text),
            kind::BINARY | kind::FIRST_BINARY => Some(Class::Binary),
            kind::SERVICE | kind::FIRST_SERVICE => Some(Class::Service),
            _ => None,
        }
    }
}

/// A frame that breaks the framing rules.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// A frame with no bytes at all.
    #[error("empty frame")]
    Empty,
    /// A version this build does not speak.
    #[error("unsupported frame version {0}")]
    Version(u8),
    /// An unknown kind.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// A first frame too short to hold its length.
    #[error("truncated first frame")]
    Truncated,
    /// A continuation with no message in progress.
    #[error("continuation frame without a first frame")]
    UnexpectedContinuation,
    /// A new message began before the previous one was complete.
    #[error("new message started before the previous one completed")]
    Interleaved,
    /// More bytes than the first frame announced.
    #[error("message longer than announced")]
    Overrun,
    /// The announced length exceeds our limit; its bytes are skipped.
    #[error("message of {0} bytes exceeds the receive limit")]
    TooLarge(u64),
    /// A first frame that announces no more than fits in one whole frame.
    #[error("fragmented message announces a total it already holds")]
    NeedlessFragment,
    /// A text message that is not UTF-8.
    #[error("text message is not valid UTF-8")]
    BadUtf8,
    /// A batch whose lengths do not add up, or one inside another.
    #[error("malformed batch: {0}")]
    BadBatch(&'static str),
}

/// Bytes of a batch's header byte, and of each frame's length in it.
const BATCH_HEADER: usize = 1;
const BATCH_LEN: usize = 4;

/// The frames a message-channel frame carries: a batch's, in order, or the frame
/// itself. Checks the whole batch before any of it is used: a batch that is cut
/// short, holds an empty frame or another batch is refused as a whole.
pub fn unbatch(frame: &[u8]) -> Result<Unbatched<'_>, WireError> {
    if frame.first() != Some(&kind::BATCH) {
        return Ok(Unbatched { rest: frame, whole: true });
    }
    let body = &frame[BATCH_HEADER..];
    let mut count = 0usize;
    for inner in (Unbatched { rest: body, whole: false }) {
        match inner?.first() {
            None => return Err(WireError::BadBatch("an empty frame")),
            Some(&kind::BATCH) => return Err(WireError::BadBatch("a batch inside a batch")),
            Some(_) => count += 1,
        }
    }
    if count < 2 {
        return Err(WireError::BadBatch("fewer than two frames"));
    }
    Ok(Unbatched { rest: body, whole: false })
}

/// The frames of a checked batch, in order (from [`unbatch`]; no copy, no allocation).
#[derive(Debug, Clone)]
pub struct Unbatched<'a> {
    rest: &'a [u8],
    /// `rest` is one plain frame, not a batch's body.
    whole: bool,
}

impl<'a> Iterator for Unbatched<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.whole {
            self.whole = false;
            return Some(Ok(std::mem::take(&mut self.rest)));
        }
        if self.rest.is_empty() {
            return None;
        }
        let Some((len, tail)) = self.rest.split_first_chunk::<BATCH_LEN>() else {
            self.rest = &[];
            return Some(Err(WireError::BadBatch("a frame length is cut short")));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            self.rest = &[];
            return Some(Err(WireError::BadBatch("a frame is longer than the batch")));
        }
        let (inner, after) = tail.split_at(len);
        self.rest = after;
        Some(Ok(inner))
    }
}

/// Collects message-channel frames into batches of at most `limit` bytes (a frame
/// alone may be larger: it goes unbatched).
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    frames: usize,
}

impl Batch {
    /// Adds `frame`; returns what must be sent before it when it does not fit.
    pub fn push(&mut self, frame: &[u8], limit: usize) -> Option<Vec<u8>> {
        let full = (self.frames > 0 && self.buf.len() + BATCH_LEN + frame.len() > limit).then(|| self.take()).flatten();
        if self.frames == 0 {
            self.buf.push(kind::BATCH);
        }
        // Frames are at most the channel's max message size, far below 4 GiB.
        self.buf.extend_from_slice(&u32::try_from(frame.len()).unwrap_or(u32::MAX).to_be_bytes());
        self.buf.extend_from_slice(frame);
        self.frames += 1;
        full
    }

    /// What to send now: the batch, or its one frame as it was; `None` if empty.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        let frames = std::mem::take(&mut self.frames);
        let buf = std::mem::take(&mut self.buf);
        match frames {
            0 => None,
            1 => Some(buf[BATCH_HEADER + BATCH_LEN..].to_vec()),
            _ => Some(buf),
        }
    }
}

/// Splits `payload` into frames of at most `max_frame` bytes (at least 16).
pub fn encode(payload: &Payload, max_frame: usize) -> Vec<Vec<u8>> {
    match payload {
        Payload::Text(t) => encode_class(t.as_bytes(), Class::Text, max_frame),
        Payload::Binary(b) => encode_class(b, Class::Binary, max_frame),
    }
}

/// Splits an encoded service message into frames of at most `max_frame` bytes.
pub(crate) fn encode_service(bytes: &[u8], max_frame: usize) -> Vec<Vec<u8>> {
    encode_class(bytes, Class::Service, max_frame)
}

fn encode_class(bytes: &[u8], class: Class, max_frame: usize) -> Vec<Vec<u8>> {
    let max_frame = max_frame.max(16);
    let (whole, first_kind) = class.kinds();
    if bytes.len() < max_frame {
        let mut frame = Vec::with_capacity(bytes.len() + 1);
        frame.push(whole);
        frame.extend_from_slice(bytes);
        return vec![frame];
    }
    let first_room = max_frame - FIRST_HEADER;
    let mut frames = Vec::with_capacity(1 + (bytes.len() - first_room).div_ceil(max_frame - 1));
    let mut first = Vec::with_capacity(max_frame);
    first.push(first_kind);
    first.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    first.extend_from_slice(&bytes[..first_room]);
    frames.push(first);
    for chunk in bytes[first_room..].chunks(max_frame - 1) {
        let mut frame = Vec::with_capacity(chunk.len() + 1);
        frame.push(kind::CONTINUATION);
        frame.extend_from_slice(chunk);
        frames.push(frame);
    }
    frames
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    Assembling {
        class: Class,
        total: u64,
        buf: Vec<u8>,
    },
    /// Dropping the rest of a message that was refused.
    Skipping {
        remaining: u64,
    },
}

/// Turns frames back into messages, one channel's worth.
#[derive(Debug)]
pub struct Reassembler {
    state: State,
    max_message: u64,
    max_service: u64,
}

impl Reassembler {
    /// Accepts application messages up to `max_message` bytes (service messages up to
    /// that or 32 MiB, whichever is more).
    pub fn new(max_message: u64) -> Self {
        Reassembler { state: State::Idle, max_message, max_service: max_message.max(MIN_SERVICE_LIMIT) }
    }

    /// Feeds one frame; returns a message when one is complete. On an error the
    /// message in progress is dropped and the next valid first frame starts afresh.
    pub fn push(&mut self, frame: &[u8]) -> Result<Option<Message>, WireError> {
        let (&hdr, body) = frame.split_first().ok_or(WireError::Empty)?;
        if hdr >> 4 != VERSION {
            self.state = State::Idle;
            return Err(WireError::Version(hdr >> 4));
        }
        if hdr == kind::TRANSFER_CONTROL {
            return Ok(Some(Message::TransferControl(frame.to_vec())));
        }
        match std::mem::take(&mut self.state) {
            State::Idle => self.start(hdr, body),
            State::Skipping { remaining } if hdr == kind::CONTINUATION => {
                let remaining = remaining.saturating_sub(body.len() as u64);
                if remaining > 0 {
                    self.state = State::Skipping { remaining };
                }
                Ok(None)
            }
            State::Skipping { .. } => self.start(hdr, body),
            State::Assembling { class, total, mut buf } => {
                if hdr != kind::CONTINUATION {
                    // Both the unfinished message and this frame are dropped: the sender
                    // broke framing, so neither can be trusted.
                    return Err(WireError::Interleaved);
                }
                if buf.len() as u64 + body.len() as u64 > total {
                    return Err(WireError::Overrun);
                }
                buf.extend_from_slice(body);
                if buf.len() as u64 == total {
                    finish(class, buf).map(Some)
                } else {
                    self.state = State::Assembling { class, total, buf };
                    Ok(None)
                }
            }
        }
    }

    fn start(&mut self, hdr: u8, body: &[u8]) -> Result<Option<Message>, WireError> {
        if hdr == kind::CONTINUATION {
            return Err(WireError::UnexpectedContinuation);
        }
        let class = Class::of(hdr).ok_or(WireError::Kind(hdr & 0x0f))?;
        let limit = if class == Class::Service { self.max_service } else { self.max_message };
        if hdr == class.kinds().0 {
            if body.len() as u64 > limit {
                return Err(WireError::TooLarge(body.len() as u64));
            }
            return finish(class, body.to_vec()).map(Some);
        }
        let (len, rest) = body.split_first_chunk::<8>().ok_or(WireError::Truncated)?;
        let total = u64::from_be_bytes(*len);
        if total > limit {
            let remaining = total.saturating_sub(rest.len() as u64);
            if remaining > 0 {
                self.state = State::Skipping { remaining };
            }
            return Err(WireError::TooLarge(total));
        }
        if rest.len() as u64 >= total {
            return Err(WireError::NeedlessFragment);
        }
        let mut buf = Vec::with_capacity(total.min(MAX_PREALLOC) as usize);
        buf.extend_from_slice(rest);
        self.state = State::Assembling { class, total, buf };
        Ok(None)
    }
}

fn finish(class: Class, buf: Vec<u8>) -> Result<Message, WireError> {
    match class {
        Class::Text => String::from_utf8(buf).map(|t| Message::App(Payload::Text(t))).map_err(|_| WireError::BadUtf8),
        Class::Binary => Ok(Message::App(Payload::Binary(buf))),
        Class::Service => Ok(Message::Service(buf)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_carries_its_frames_in_order_and_a_lone_frame_goes_as_it_is() {
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| encode(&Payload::Binary(vec![i; 10 + usize::from(i)]), 1024).remove(0)).collect();
        let mut batch = Batch::default();
        for frame in &frames {
            assert_eq!(batch.push(frame, 1024), None);
        }
        let sent = batch.take().expect("a batch");
        assert_eq!(sent[0], kind::BATCH);
        let inner: Vec<&[u8]> = unbatch(&sent).expect("a valid batch").map(|f| f.expect("checked")).collect();
        assert_eq!(inner, frames.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert_eq!(batch.take(), None, "taking empties it");

        assert_eq!(batch.push(&frames[0], 1024), None);
        assert_eq!(batch.take(), Some(frames[0].clone()), "one frame is not wrapped");
        assert_eq!(unbatch(&frames[0]).expect("a plain frame").collect::<Vec<_>>(), vec![Ok(frames[0].as_slice())]);
    }

    #[test]
    fn a_batch_stays_within_its_limit() {
        let frame = vec![kind::BINARY; 100];
        let mut batch = Batch::default();
        let mut sent = Vec::new();
        for _ in 0..10 {
            sent.extend(batch.push(&frame, 350));
        }
        sent.extend(batch.take());
        assert!(sent.iter().all(|b| b.len() <= 350), "{:?}", sent.iter().map(Vec::len).collect::<Vec<_>>());
        let frames: Vec<&[u8]> = sent.iter().flat_map(|b| unbatch(b).expect("valid")).map(|f| f.expect("checked")).collect();
        assert_eq!(frames.len(), 10);
        // A frame over the limit still goes, alone and as it is.
        let big = vec![kind::BINARY; 500];
        assert_eq!(batch.push(&frame, 350), None);
        assert_eq!(batch.push(&big, 350), Some(frame.clone()));
        assert_eq!(batch.take(), Some(big));
    }

    #[test]
    fn a_malformed_batch_is_refused_as_a_whole() {
        let frame = [kind::TEXT, b'h', b'i'];
        let mut good = vec![kind::BATCH];
        for _ in 0..2 {
            good.extend_from_slice(&3u32.to_be_bytes());
            good.extend_from_slice(&frame);
        }
        assert_eq!(unbatch(&good).map(Iterator::count), Ok(2));
        let cut = &good[..good.len() - 1];
        assert!(matches!(unbatch(cut), Err(WireError::BadBatch(_))), "a frame cut short");
        let mut short_len = good.clone();
        short_len.extend_from_slice(&[0, 0]);
        assert!(matches!(unbatch(&short_len), Err(WireError::BadBatch(_))), "a length cut short");
        let mut huge = vec![kind::BATCH];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        huge.extend_from_slice(&frame);
        assert!(matches!(unbatch(&huge), Err(WireError::BadBatch(_))), "a length past the end");
        let mut nested = good.clone();
        nested.extend_from_slice(&(good.len() as u32).to_be_bytes());
        nested.extend_from_slice(&good);
        assert!(matches!(unbatch(&nested), Err(WireError::BadBatch(_))), "a batch in a batch");
        let mut empty = good.clone();
        empty.extend_from_slice(&0u32.to_be_bytes());
        assert!(matches!(unbatch(&empty), Err(WireError::BadBatch(_))), "an empty frame");
        assert!(matches!(unbatch(&good[..8]), Err(WireError::BadBatch(_))), "one frame only");
        assert!(matches!(unbatch(&[kind::BATCH]), Err(WireError::BadBatch(_))), "no frame");
    }

    fn round_trip(payload: Payload, max_frame: usize) -> usize {
        let frames = encode(&payload, max_frame);
        assert!(frames.iter().all(|f| f.len() <= max_frame.max(16)), "frame over the max");
        let mut r = Reassembler::new(1 << 30);
        let mut out = None;
        for (i, f) in frames.iter().enumerate() {
            let got = r.push(f).unwrap();
            assert_eq!(got.is_some(), i == frames.len() - 1);
            out = out.or(got);
        }
        assert_eq!(out.unwrap(), Message::App(payload));
        frames.len()
    }

    #[test]
    fn small_and_empty_messages_are_one_frame() {
        assert_eq!(round_trip(Payload::Text(String::new()), 64), 1);
        assert_eq!(round_trip(Payload::Binary(vec![]), 64), 1);
        assert_eq!(round_trip(Payload::Text("héllo".into()), 64), 1);
        assert_eq!(round_trip(Payload::Binary(vec![7; 63]), 64), 1);
    }

    #[test]
    fn large_messages_split_at_every_boundary() {
        for len in [64, 65, 64 * 3, 64 * 3 + 1, 1000, 4096] {
            let n = round_trip(Payload::Binary((0..len).map(|i| i as u8).collect()), 64);
            assert!(n > 1);
        }
        round_trip(Payload::Text("ü".repeat(5000)), 100);
        round_trip(Payload::Binary(vec![1; (1 << 20) + 3]), 256 * 1024);
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        let mut r = Reassembler::new(1000);
        assert_eq!(r.push(&[]), Err(WireError::Empty));
        assert_eq!(r.push(&[0x20]), Err(WireError::Version(2)));
        assert_eq!(r.push(&[0x1f]), Err(WireError::Kind(15)));
        assert_eq!(r.push(&[0x14, 1, 2]), Err(WireError::UnexpectedContinuation));
        assert_eq!(r.push(&[0x12, 0, 0]), Err(WireError::Truncated));
        assert_eq!(r.push(&[0x10, 0xff, 0xfe]), Err(WireError::BadUtf8));
        // A lie about the total: claims 4 bytes, then sends 6.
        assert_eq!(r.push(&[0x13, 0, 0, 0, 0, 0, 0, 0, 4, 9]), Ok(None));
        assert_eq!(r.push(&[0x14, 1, 2, 3, 4, 5]), Err(WireError::Overrun));
        // Announces everything in the first frame.
        assert_eq!(r.push(&[0x13, 0, 0, 0, 0, 0, 0, 0, 1, 9]), Err(WireError::NeedlessFragment));
        // A new message in the middle of another.
        assert_eq!(r.push(&[0x13, 0, 0, 0, 0, 0, 0, 0, 3, 9]), Ok(None));
        assert_eq!(r.push(&[0x11, 5]), Err(WireError::Interleaved));
        // After all that, valid traffic still flows.
        assert_eq!(r.push(&[0x11, 5]), Ok(Some(Message::App(Payload::Binary(vec![5])))));
    }

    #[test]
    fn oversized_message_is_skipped_without_allocating() {
        let mut r = Reassembler::new(10);
        let mut first = vec![0x13];
        first.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(r.push(&first), Err(WireError::TooLarge(u64::MAX)));
        let mut r = Reassembler::new(10);
        let mut first = vec![0x13];
        first.extend_from_slice(&20u64.to_be_bytes());
        first.extend_from_slice(&[0; 5]);
        assert_eq!(r.push(&first), Err(WireError::TooLarge(20)));
        assert_eq!(r.push(&[0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Ok(None));
        assert_eq!(r.push(&[0x14, 0, 0, 0, 0]), Ok(None));
        assert_eq!(r.push(&[0x10, b'o', b'k']), Ok(Some(Message::App(Payload::Text("ok".into())))));
        assert_eq!(r.push(&[0x11; 12]), Err(WireError::TooLarge(11)));
    }

    #[test]
    fn service_messages_split_and_rejoin_apart_from_app_messages() {
        let bytes: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut r = Reassembler::new(100);
        let frames = encode_service(&bytes, 64);
        assert!(frames.len() > 1);
        let mut out = None;
        for f in &frames {
            out = r.push(f).unwrap().or(out);
        }
        assert_eq!(out, Some(Message::Service(bytes)));
        // The application limit does not apply to them, only the larger service limit.
        assert_eq!(r.push(&[0x18, 1, 2]), Ok(Some(Message::Service(vec![1, 2]))));
        let mut first = vec![0x19];
        first.extend_from_slice(&(MIN_SERVICE_LIMIT + 1).to_be_bytes());
        first.push(0);
        assert_eq!(r.push(&first), Err(WireError::TooLarge(MIN_SERVICE_LIMIT + 1)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz pass; `fuzz/` does this properly.
        let mut rng = crate::core::rng::Rng::new(7);
        let mut r = Reassembler::new(4096);
        for _ in 0..20_000 {
            let len = (rng.next_u64() % 40) as usize;
            let mut frame: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if let Some(h) = frame.first_mut() {
                *h = 0x10 | (*h & 0x0f);
            }
            let _ = r.push(&frame);
            let _ = unbatch(&frame).map(Iterator::count);
        }
    }
}
