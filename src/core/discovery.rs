//! Shared files and "who has image.png?": what this peer offers to the room, and
//! queries sent to every peer with their answers collected until each peer answered
//! or time ran out.
//!
//! Serving is by consent: only files in the share table are ever read for another
//! peer (see `transfer/serve.rs`). Queries carry ids; a peer answers each (peer, id)
//! once, with at most [`MAX_ANSWER_HITS`] entries, and the asker keeps at most that
//! many from any one peer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use super::net::Net;
use super::order::{sorted, sorted_by_key};
use super::output::Event;
use super::service::{Service, ShareInfo};
use super::transfer::blocks::{block_count, content_hash, Hash};
use super::transfer::FileMeta;
use super::{Millis, PeerId};

/// Most entries one answer carries, and most the asker takes from one peer.
pub const MAX_ANSWER_HITS: usize = 64;
/// Queries remembered per mesh for deduplication.
const SEEN_QUERIES: usize = 1024;

/// A file this peer shares, by the id it answers queries with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareId(pub(crate) u64);

impl ShareId {
    /// Parses the 16-hex-digit form that `Display` writes.
    pub fn parse(text: &str) -> Option<Self> {
        super::id::parse_hex_u64(text).map(ShareId)
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One query we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub(crate) u64);

/// How a query's text matches file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The whole name, exactly (case-sensitive).
    Exact,
    /// Anywhere in the name, ignoring ASCII case.
    Substring,
}

/// A file we share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    /// Its id in answers.
    pub id: ShareId,
    /// Name, size and type, as others see them.
    pub meta: FileMeta,
    /// Content hash.
    pub hash: Hash,
}

/// Another peer has a file that matches a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Who has it.
    pub peer: PeerId,
    /// Its id on that peer.
    pub id: ShareId,
    /// Name, size and type.
    pub meta: FileMeta,
    /// Content hash: hits with the same hash are the same bytes.
    pub hash: Hash,
}

/// A shared file's block hashes did not fit its size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{blocks} block hashes for a file of {size} bytes")]
pub struct ManifestError {
    blocks: usize,
    size: u64,
}

#[derive(Debug)]
struct Share {
    file: SharedFile,
    /// Every block's hash: sent to downloaders, and checked against every read.
    hashes: Arc<[Hash]>,
}

/// What serving a shared file needs: its size and block hashes.
#[derive(Debug, Clone)]
pub(crate) struct ServedFile {
    pub(crate) size: u64,
    pub(crate) hashes: Arc<[Hash]>,
}

#[derive(Debug)]
struct Query {
    deadline: Millis,
    waiting: HashSet<PeerId>,
    hits: Vec<Hit>,
}

/// What this peer shares, and the queries it asked.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    shares: HashMap<ShareId, Share>,
    queries: HashMap<QueryId, Query>,
    seen: HashSet<(PeerId, u64)>,
    seen_order: VecDeque<(PeerId, u64)>,
}

fn matches(name: &str, text: &str, how: Match) -> bool {
    match how {
        Match::Exact => name == text,
        // ASCII case only: Unicode case tables would cost the bundle ~20 KB.
        Match::Substring => name.to_ascii_lowercase().contains(&text.to_ascii_lowercase()),
    }
}

impl Discovery {
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.queries.values().map(|q| q.deadline).min()
    }

    /// Whether this (peer, query) is new; remembers it if so.
    fn first_time(&mut self, peer: &PeerId, id: u64) -> bool {
        let key = (peer.clone(), id);
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.seen_order.push_back(key);
        if self.seen_order.len() > SEEN_QUERIES {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }

    /// Shares a file: `hashes` are its blocks' hashes. Only shared files are ever
    /// served to others.
    pub(crate) fn share(&mut self, net: &mut Net<'_>, meta: FileMeta, hashes: Vec<Hash>) -> Result<SharedFile, ManifestError> {
        if hashes.len() as u64 != u64::from(block_count(meta.size)) {
            return Err(ManifestError { blocks: hashes.len(), size: meta.size });
        }
        let id = loop {
            let id = ShareId(net.random());
            if !self.shares.contains_key(&id) {
                break id;
            }
        };
        let file = SharedFile { id, hash: content_hash(meta.size, &hashes), meta };
        self.shares.insert(id, Share { file: file.clone(), hashes: hashes.into() });
        Ok(file)
    }

    /// Stops sharing; whether it was shared.
    pub(crate) fn unshare(&mut self, id: ShareId) -> bool {
        self.shares.remove(&id).is_some()
    }

    /// What we share, sorted by name.
    pub(crate) fn shared(&self) -> Vec<SharedFile> {
        let list: Vec<_> = self.shares.values().map(|s| s.file.clone()).collect();
        sorted_by_key(list, |s| (s.meta.name.clone(), s.id))
    }

    /// A shared file, for serving it.
    pub(crate) fn served(&self, id: ShareId) -> Option<ServedFile> {
        self.shares.get(&id).map(|s| ServedFile { size: s.file.meta.size, hashes: s.hashes.clone() })
    }

    /// Asks every connected peer for files matching `text`. [`Event::FindDone`] follows
    /// once every asked peer answered (or left), or after `timeout_ms`.
    pub(crate) fn find(&mut self, net: &mut Net<'_>, text: &str, how: Match, timeout_ms: u64) -> QueryId {
        let id = loop {
            let id = QueryId(net.random());
            if !self.queries.contains_key(&id) {
                break id;
            }
        };
        let query = Service::Query { id: id.0, substring: how == Match::Substring, text: text.to_owned() };
        let waiting = net.open_peers().into_iter().filter(|peer| net.send_service(peer, &query)).collect();
        self.queries.insert(id, Query { deadline: net.now + timeout_ms, waiting, hits: Vec::new() });
        self.maybe_finish_query(net, id);
        id
    }

    fn maybe_finish_query(&mut self, net: &mut Net<'_>, id: QueryId) {
        if self.queries.get(&id).is_some_and(|q| q.waiting.is_empty()) {
            self.finish_query(net, id);
        }
    }

    fn finish_query(&mut self, net: &mut Net<'_>, id: QueryId) {
        if let Some(query) = self.queries.remove(&id) {
            let hits = sorted_by_key(query.hits, |h| (h.meta.name.clone(), h.peer.clone(), h.id));
            net.emit(Event::FindDone { id, hits });
        }
    }

    /// A peer asks what we have.
    pub(crate) fn on_query(&mut self, net: &mut Net<'_>, from: &PeerId, id: u64, substring: bool, text: &str) {
        if !self.first_time(from, id) {
            return; // answered already
        }
        let how = if substring { Match::Substring } else { Match::Exact };
        let hits: Vec<_> = self.shares.values().filter(|s| matches(&s.file.meta.name, text, how)).map(|s| &s.file).collect();
        let hits = sorted_by_key(hits, |s| (s.meta.name.as_str(), s.id));
        let hits = hits
            .into_iter()
            .take(MAX_ANSWER_HITS)
            .map(|f| ShareInfo { id: f.id.0, size: f.meta.size, hash: f.hash, name: f.meta.name.clone(), mime: f.meta.mime.clone() })
            .collect();
        // Empty answers too: the asker resolves as soon as everyone answered.
        net.send_service(from, &Service::Answer { id, hits });
    }

    /// A peer answers one of our queries.
    pub(crate) fn on_answer(&mut self, net: &mut Net<'_>, from: &PeerId, id: u64, hits: Vec<ShareInfo>) {
        let Some(query) = self.queries.get_mut(&QueryId(id)) else { return };
        if !query.waiting.remove(from) {
            return; // not asked, or a second answer
        }
        query.hits.extend(hits.into_iter().take(MAX_ANSWER_HITS).map(|h| Hit {
            peer: from.clone(),
            id: ShareId(h.id),
            meta: FileMeta { name: h.name, size: h.size, mime: h.mime },
            hash: h.hash,
        }));
        self.maybe_finish_query(net, QueryId(id));
    }

    /// A peer left: its answers are no longer awaited.
    pub(crate) fn peer_left(&mut self, net: &mut Net<'_>, peer: &PeerId) {
        let ids: Vec<_> = self.queries.iter().filter(|(_, q)| q.waiting.contains(peer)).map(|(id, _)| *id).collect();
        for id in sorted(ids) {
            if let Some(q) = self.queries.get_mut(&id) {
                q.waiting.remove(peer);
            }
            self.maybe_finish_query(net, id);
        }
    }

    /// Queries whose time ran out end with the answers so far.
    pub(crate) fn handle_timeout(&mut self, net: &mut Net<'_>) {
        let now = net.now;
        let due: Vec<_> = self.queries.iter().filter(|(_, q)| q.deadline <= now).map(|(id, _)| *id).collect();
        for id in sorted(due) {
            self.finish_query(net, id);
        }
    }

    /// Every query ends now: `leave()` was called.
    pub(crate) fn close(&mut self, net: &mut Net<'_>) {
        for id in sorted(self.queries.keys().copied().collect()) {
            self.finish_query(net, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testing::Harness;

    #[test]
    fn exact_is_exact_and_substring_ignores_case() {
        assert!(matches("image.png", "image.png", Match::Exact));
        assert!(!matches("Image.png", "image.png", Match::Exact));
        assert!(!matches("image.png.bak", "image.png", Match::Exact));
        assert!(matches("My Image.PNG", "image.png", Match::Substring));
        assert!(!matches("image.jpg", "image.png", Match::Substring));
    }

    #[test]
    fn dedup_forgets_the_oldest() {
        let mut d = Discovery::default();
        let p = PeerId::new("p");
        assert!(d.first_time(&p, 1));
        assert!(!d.first_time(&p, 1));
        assert!(d.first_time(&PeerId::new("q"), 1));
        for i in 2..=SEEN_QUERIES as u64 + 1 {
            d.first_time(&p, i);
        }
        assert!(d.first_time(&p, 1), "the oldest entry was dropped");
        assert!(d.seen.len() <= SEEN_QUERIES);
    }

    fn meta(name: &str, size: u64) -> FileMeta {
        FileMeta { name: name.into(), size, mime: String::new() }
    }

    #[test]
    fn a_query_ends_when_everyone_answered_or_at_its_deadline() {
        let mut h = Harness::with_peer("b");
        let mut d = Discovery::default();
        let peer = h.peer();
        let id = d.find(&mut h.net(), "x", Match::Exact, 1_000);
        let asked = h.sent_services(&peer);
        assert!(matches!(asked.as_slice(), [Service::Query { substring: false, .. }]), "{asked:?}");
        // An answer from nobody asked changes nothing; a second one from the peer neither.
        d.on_answer(&mut h.net(), &PeerId::new("z"), id.0, vec![]);
        assert!(h.events().is_empty());
        let info = ShareInfo { id: 9, size: 3, hash: [1; 32], name: "x".into(), mime: String::new() };
        d.on_answer(&mut h.net(), &peer, id.0, vec![info.clone()]);
        d.on_answer(&mut h.net(), &peer, id.0, vec![info]);
        let done: Vec<_> =
            h.events().into_iter().filter_map(|e| if let Event::FindDone { hits, .. } = e { Some(hits.len()) } else { None }).collect();
        assert_eq!(done, vec![1]);
        // Nobody answers this one: it ends at the deadline, not before.
        let late = d.find(&mut h.net(), "y", Match::Substring, 1_000);
        h.now = Millis(h.now.0 + 999);
        d.handle_timeout(&mut h.net());
        assert!(h.events().is_empty());
        h.now = Millis(h.now.0 + 1);
        d.handle_timeout(&mut h.net());
        assert_eq!(h.events(), vec![Event::FindDone { id: late, hits: vec![] }]);
    }

    #[test]
    fn answers_list_at_most_64_sorted_and_repeat_queries_are_not_answered() {
        let mut h = Harness::with_peer("b");
        let mut d = Discovery::default();
        let peer = h.peer();
        for i in (0..70).rev() {
            d.share(&mut h.net(), meta(&format!("f{i:02}"), 1), vec![[0; 32]]).unwrap();
        }
        d.on_query(&mut h.net(), &peer, 5, true, "F");
        d.on_query(&mut h.net(), &peer, 5, true, "F");
        let answers = h.sent_services(&peer);
        let [Service::Answer { hits, .. }] = answers.as_slice() else { panic!("{answers:?}") };
        assert_eq!(hits.len(), MAX_ANSWER_HITS);
        assert_eq!(hits[0].name, "f00");
        let block = crate::core::transfer::blocks::BLOCK_SIZE;
        assert!(d.share(&mut h.net(), meta("bad", block), vec![]).is_err(), "hashes must fit the size");
    }
}
