//! Requests and services: a peer calls a method another peer handles and gets its
//! reply, or a clear error — no such method, the handler failed (with its message),
//! timeout, or the peer left. Time is passed in: a request's deadline is a plain
//! [`Millis`] checked on every timeout.

use std::collections::{HashMap, HashSet};

use thiserror::Error;

use super::net::Net;
use super::order::sorted;
use super::output::Event;
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
    /// The request or its reply was larger than the receiving side accepts.
    #[error("too large: {0}")]
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

/// Requests both ways, and the methods we serve.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    next: u64,
    pending: HashMap<RequestId, Pending>,
    methods: HashSet<String>,
    /// Requests our handlers are working on, per asking peer.
    inbound: HashMap<PeerId, HashSet<u64>>,
}

impl Requests {
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Calls `method` on `peer`; [`Event::Response`] with this id follows, exactly once.
    pub(crate) fn request(
        &mut self,
        net: &mut Net<'_>,
        peer: &PeerId,
        method: &str,
        payload: Payload,
        timeout_ms: u64,
    ) -> Result<RequestId, SendError> {
        let max = net.config.max_message_bytes;
        if payload.len() > max {
            return Err(SendError::TooLarge { size: payload.len(), max });
        }
        if !net.is_open(peer) {
            return Err(SendError::NotConnected(peer.clone()));
        }
        self.next = self.next.wrapping_add(1);
        let id = RequestId(self.next);
        if !net.send_service(peer, &Service::Request { id: id.0, method: method.to_owned(), payload }) {
            return Err(SendError::QueueFull(peer.clone()));
        }
        self.pending.insert(id, Pending { peer: peer.clone(), deadline: net.now + timeout_ms, timeout_ms });
        Ok(id)
    }

    /// Serves `method`: requests for it become [`Event::Request`]s.
    pub(crate) fn serve_method(&mut self, method: &str) {
        self.methods.insert(method.to_owned());
    }

    /// Stops serving `method`: later requests get `NoSuchMethod`.
    pub(crate) fn unserve_method(&mut self, method: &str) -> bool {
        self.methods.remove(method)
    }

    /// Answers a request from [`Event::Request`]; ignored if the asker left since.
    pub(crate) fn respond(&mut self, net: &mut Net<'_>, to: &PeerId, id: u64, result: Result<Payload, String>) {
        let Some(waiting) = self.inbound.get_mut(to) else { return };
        if !waiting.remove(&id) {
            return;
        }
        let max = net.config.max_message_bytes;
        let message = match result {
            Ok(payload) if payload.len() > max => Service::Failure {
                id,
                code: FailureCode::TooLarge,
                message: format!("reply of {} bytes exceeds the {max}-byte limit", payload.len()),
            },
            Ok(payload) => Service::Reply { id, payload },
            Err(message) => Service::Failure { id, code: FailureCode::Handler, message },
        };
        net.send_service(to, &message);
    }

    /// A peer calls one of our methods.
    pub(crate) fn on_request(&mut self, net: &mut Net<'_>, from: &PeerId, id: u64, method: String, payload: Payload) {
        let max = net.config.max_message_bytes;
        let waiting = self.inbound.entry(from.clone()).or_default();
        let refusal = if waiting.contains(&id) {
            return; // a duplicate of one in progress
        } else if payload.len() > max {
            // Service framing allows more (manifests); a request is held to our limit.
            Some((FailureCode::TooLarge, format!("request of {} bytes exceeds the peer's {max}-byte limit", payload.len())))
        } else if waiting.len() >= MAX_INBOUND_PER_PEER {
            Some((FailureCode::Busy, format!("{MAX_INBOUND_PER_PEER} requests already waiting")))
        } else if !self.methods.contains(&method) {
            Some((FailureCode::NoSuchMethod, method.clone()))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            net.send_service(from, &Service::Failure { id, code, message });
            return;
        }
        waiting.insert(id);
        net.emit(Event::Request { from: from.clone(), id, method, payload });
    }

    /// A reply, or the reason there is none, to one of our requests.
    pub(crate) fn on_reply(&mut self, net: &mut Net<'_>, from: &PeerId, id: u64, result: Result<Payload, (FailureCode, String)>) {
        let id = RequestId(id);
        if self.pending.get(&id).is_none_or(|p| p.peer != *from) {
            return net.warn(format!("peer {from} replied to a request we are not waiting for"));
        }
        self.pending.remove(&id);
        let max = net.config.max_message_bytes;
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
        net.emit(Event::Response { id, result });
    }

    /// Requests to and from `peer` end: ours fail with `PeerLeft`, theirs are dropped.
    pub(crate) fn peer_left(&mut self, net: &mut Net<'_>, peer: &PeerId) {
        self.inbound.remove(peer);
        self.end(net, |p| p.peer == *peer, |_| RequestError::PeerLeft);
    }

    pub(crate) fn handle_timeout(&mut self, net: &mut Net<'_>) {
        let now = net.now;
        self.end(net, |p| p.deadline <= now, |p| RequestError::Timeout(p.timeout_ms));
    }

    /// Every request ends: `leave()` was called.
    pub(crate) fn close(&mut self, net: &mut Net<'_>) {
        self.inbound.clear();
        self.end(net, |_| true, |_| RequestError::Closed);
    }

    fn end(&mut self, net: &mut Net<'_>, which: impl Fn(&Pending) -> bool, error: impl Fn(&Pending) -> RequestError) {
        let ended: Vec<_> = self.pending.iter().filter(|(_, p)| which(p)).map(|(id, _)| *id).collect();
        for id in sorted(ended) {
            if let Some(p) = self.pending.remove(&id) {
                net.emit(Event::Response { id, result: Err(error(&p)) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::Harness;

    fn responses(h: &mut Harness) -> Vec<(RequestId, Result<Payload, RequestError>)> {
        h.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Response { id, result } => Some((id, result)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_request_times_out_at_its_deadline_exactly_once() {
        let mut h = Harness::with_peer("b");
        let mut requests = Requests::default();
        let peer = h.peer();
        let id = requests.request(&mut h.net(), &peer, "m", Payload::Text("1".into()), 500).unwrap();
        assert_eq!(h.sent_services(&peer).len(), 1);
        h.now = Millis(h.now.0 + 499);
        requests.handle_timeout(&mut h.net());
        assert!(responses(&mut h).is_empty());
        h.now = Millis(h.now.0 + 1);
        requests.handle_timeout(&mut h.net());
        requests.handle_timeout(&mut h.net());
        assert_eq!(responses(&mut h), vec![(id, Err(RequestError::Timeout(500)))]);
        assert_eq!(requests.next_deadline(), None);
    }

    #[test]
    fn replies_from_the_wrong_peer_or_for_no_request_are_ignored() {
        let mut h = Harness::with_peer("b");
        let mut requests = Requests::default();
        let peer = h.peer();
        let id = requests.request(&mut h.net(), &peer, "m", Payload::Text("1".into()), 500).unwrap();
        requests.on_reply(&mut h.net(), &PeerId::new("c"), id.0, Ok(Payload::Text("2".into())));
        requests.on_reply(&mut h.net(), &peer, id.0 + 1, Ok(Payload::Text("2".into())));
        assert!(responses(&mut h).is_empty());
        requests.on_reply(&mut h.net(), &peer, id.0, Ok(Payload::Text("2".into())));
        assert_eq!(responses(&mut h), vec![(id, Ok(Payload::Text("2".into())))]);
    }

    #[test]
    fn inbound_requests_are_refused_in_order_of_the_rules() {
        let mut h = Harness::with_peer("b");
        let mut requests = Requests::default();
        let peer = h.peer();
        requests.serve_method("echo");
        requests.on_request(&mut h.net(), &peer, 1, "nope".into(), Payload::Text("1".into()));
        let too_large = Payload::Binary(vec![0; (h.config.max_message_bytes + 1) as usize]);
        requests.on_request(&mut h.net(), &peer, 2, "echo".into(), too_large);
        requests.on_request(&mut h.net(), &peer, 3, "echo".into(), Payload::Text("1".into()));
        requests.on_request(&mut h.net(), &peer, 3, "echo".into(), Payload::Text("1".into()));
        let refused: Vec<_> = h
            .sent_services(&peer)
            .into_iter()
            .map(|s| match s {
                Service::Failure { id, code, .. } => (id, code),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(refused, vec![(1, FailureCode::NoSuchMethod), (2, FailureCode::TooLarge)]);
        let asked = h.events().into_iter().filter(|e| matches!(e, Event::Request { id: 3, .. })).count();
        assert_eq!(asked, 1, "the duplicate is not asked twice");
        requests.respond(&mut h.net(), &peer, 3, Ok(Payload::Text("ok".into())));
        requests.respond(&mut h.net(), &peer, 3, Ok(Payload::Text("again".into())));
        assert_eq!(h.sent_services(&peer), vec![Service::Reply { id: 3, payload: Payload::Text("ok".into()) }]);
    }

    #[test]
    fn a_peer_leaving_or_closing_ends_what_waits_on_it() {
        let mut h = Harness::with_peer("b");
        let mut requests = Requests::default();
        let peer = h.peer();
        let a = requests.request(&mut h.net(), &peer, "m", Payload::Text("1".into()), 500).unwrap();
        requests.peer_left(&mut h.net(), &peer);
        assert_eq!(responses(&mut h), vec![(a, Err(RequestError::PeerLeft))]);
        let b = requests.request(&mut h.net(), &peer, "m", Payload::Text("1".into()), 500).unwrap();
        requests.close(&mut h.net());
        assert_eq!(responses(&mut h), vec![(b, Err(RequestError::Closed))]);
    }
}
