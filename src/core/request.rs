//! Requests and services: a peer calls a method another peer handles and gets its
//! reply, or a clear error — no such method, the handler failed (with its message),
//! timeout, or the peer left. Time is passed in: a request's deadline is a plain
//! [`Millis`] checked by [`Mesh::handle_timeout`].

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use super::mesh::{Event, Mesh};
use super::service::{FailureCode, Service};
use super::wire::Payload;
use super::{Millis, PeerId, SendError};

/// Requests one peer may have waiting for our handlers at once; more get `Busy`.
pub const MAX_INBOUND_PER_PEER: usize = 64;
/// Longest method name, in bytes.
pub const MAX_METHOD_LEN: usize = 64;

/// One request we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// The peer handles no method of that name.
    #[error("peer has no method \"{0}\"")]
    NoSuchMethod(String),
    /// The peer's handler threw or rejected; its message.
    #[error("{0}")]
    Handler(String),
    /// No reply within the timeout, in ms.
    #[error("no reply within {0} ms")]
    Timeout(u64),
    /// The peer left before replying.
    #[error("peer left before replying")]
    PeerLeft,
    /// The peer has too many of our requests waiting.
    #[error("peer is busy: {0}")]
    Busy(String),
    /// The reply was larger than the peer may send.
    #[error("reply too large: {0}")]
    TooLarge(String),
    /// `leave()` was called.
    #[error("this peer has left the room")]
    Closed,
}

#[derive(Debug)]
struct Pending {
    peer: PeerId,
    deadline: Millis,
    timeout_ms: u64,
}

/// Request state kept by the mesh.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    next: u64,
    pending: HashMap<RequestId, Pending>,
    handlers: HashSet<String>,
    /// Requests our handlers are working on, per asking peer.
    inbound: HashMap<PeerId, HashSet<u64>>,
}

impl Requests {
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.pending.values().map(|p| p.deadline).min()
    }
}

impl Mesh {
    /// Calls `method` on `peer`; [`Event::Response`] with this id follows, exactly once.
    pub fn request(&mut self, now: Millis, peer: &PeerId, method: &str, payload: Payload, timeout_ms: u64) -> Result<RequestId, SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if payload.len() > self.config.max_message_bytes {
            return Err(SendError::TooLarge { size: payload.len(), max: self.config.max_message_bytes });
        }
        if !self.is_open(peer) {
            return Err(SendError::NotConnected(peer.clone()));
        }
        self.requests.next = self.requests.next.wrapping_add(1);
        let id = RequestId(self.requests.next);
        if !self.send_service(peer, &Service::Request { id: id.0, method: method.to_owned(), payload }) {
            return Err(SendError::QueueFull(peer.clone()));
        }
        self.requests.pending.insert(id, Pending { peer: peer.clone(), deadline: now + timeout_ms, timeout_ms });
        Ok(id)
    }

    /// Serves `method`: requests for it become [`Event::Request`]s.
    pub fn handle_method(&mut self, method: &str) {
        self.requests.handlers.insert(method.to_owned());
    }

    /// Stops serving `method`: later requests get `NoSuchMethod`.
    pub fn unhandle_method(&mut self, method: &str) -> bool {
        self.requests.handlers.remove(method)
    }

    /// Answers a request from [`Event::Request`]: a reply, or the handler's error
    /// message. Ignored if the asker has left since.
    pub fn respond(&mut self, _now: Millis, to: &PeerId, id: u64, result: Result<Payload, String>) {
        let Some(waiting) = self.requests.inbound.get_mut(to) else { return };
        if !waiting.remove(&id) {
            return;
        }
        let message = match result {
            Ok(payload) if payload.len() > self.config.max_message_bytes => Service::Failure {
                id,
                code: FailureCode::TooLarge,
                message: format!("reply of {} bytes exceeds the {}-byte limit", payload.len(), self.config.max_message_bytes),
            },
            Ok(payload) => Service::Reply { id, payload },
            Err(message) => Service::Failure { id, code: FailureCode::Handler, message },
        };
        self.send_service(to, &message);
    }

    pub(crate) fn request_received(&mut self, from: &PeerId, id: u64, method: String, payload: Payload) {
        let max = self.config.max_message_bytes;
        let waiting = self.requests.inbound.entry(from.clone()).or_default();
        let refusal = if waiting.contains(&id) {
            return; // a duplicate of one in progress
        } else if payload.len() > max {
            // Service framing allows more (manifests); a request is held to our limit.
            Some((FailureCode::TooLarge, format!("request of {} bytes exceeds the peer's {max}-byte limit", payload.len())))
        } else if waiting.len() >= MAX_INBOUND_PER_PEER {
            Some((FailureCode::Busy, format!("{MAX_INBOUND_PER_PEER} requests already waiting")))
        } else if !self.requests.handlers.contains(&method) {
            Some((FailureCode::NoSuchMethod, method.clone()))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            self.send_service(from, &Service::Failure { id, code, message });
            return;
        }
        waiting.insert(id);
        self.emit(Event::Request { from: from.clone(), id, method, payload });
    }

    pub(crate) fn reply_received(&mut self, from: &PeerId, id: u64, result: Result<Payload, (FailureCode, String)>) {
        let id = RequestId(id);
        if self.requests.pending.get(&id).is_none_or(|p| p.peer != *from) {
            return self.warn(format!("peer {from} replied to a request we are not waiting for"));
        }
        self.requests.pending.remove(&id);
        let max = self.config.max_message_bytes;
        let result = match result {
            Ok(payload) if payload.len() > max => {
                Err((FailureCode::TooLarge, format!("reply of {} bytes exceeds the {max}-byte limit", payload.len())))
            }
            other => other,
        };
        let result = result.map_err(|(code, message)| match code {
            FailureCode::NoSuchMethod => RequestError::NoSuchMethod(message),
            FailureCode::Handler => RequestError::Handler(message),
            FailureCode::Busy => RequestError::Busy(message),
            FailureCode::TooLarge => RequestError::TooLarge(message),
        });
        self.emit(Event::Response { id, result });
    }

    /// Requests to and from `peer` end: ours fail with `PeerLeft`, theirs are dropped.
    pub(crate) fn requests_peer_left(&mut self, peer: &PeerId) {
        self.requests.inbound.remove(peer);
        self.end_requests(|p| p.peer == *peer, |_| RequestError::PeerLeft);
    }

    pub(crate) fn expire_requests(&mut self, now: Millis) {
        self.end_requests(|p| p.deadline <= now, |p| RequestError::Timeout(p.timeout_ms));
    }

    pub(crate) fn close_requests(&mut self) {
        self.requests.inbound.clear();
        self.end_requests(|_| true, |_| RequestError::Closed);
    }

    fn end_requests(&mut self, which: impl Fn(&Pending) -> bool, error: impl Fn(&Pending) -> RequestError) {
        let mut ended: Vec<_> = self.requests.pending.iter().filter(|(_, p)| which(p)).map(|(id, _)| *id).collect();
        ended.sort();
        for id in ended {
            if let Some(p) = self.requests.pending.remove(&id) {
                self.emit(Event::Response { id, result: Err(error(&p)) });
            }
        }
    }
}
