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

use super::mesh::{Event, Mesh};
use super::service::{Service, ShareInfo};
use super::transfer::blocks::{block_count, content_hash, Hash};
use super::transfer::{FileMeta, TransferError};
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
pub(crate) struct Share {
    pub(crate) file: SharedFile,
    /// Every block's hash: sent to downloaders, and checked against every read.
    pub(crate) hashes: Vec<Hash>,
}

#[derive(Debug)]
struct Query {
    deadline: Millis,
    waiting: HashSet<PeerId>,
    hits: Vec<Hit>,
}

/// Discovery state kept by the mesh.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    pub(crate) shares: HashMap<ShareId, Share>,
    queries: HashMap<QueryId, Query>,
    seen: HashSet<(PeerId, u64)>,
    seen_order: VecDeque<(PeerId, u64)>,
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
}

fn matches(name: &str, text: &str, how: Match) -> bool {
    match how {
        Match::Exact => name == text,
        // ASCII case only: Unicode case tables would cost the bundle ~20 KB.
        Match::Substring => name.to_ascii_lowercase().contains(&text.to_ascii_lowercase()),
    }
}

impl Mesh {
    /// Shares a file with the room: `hashes` are its blocks' hashes (see
    /// [`super::transfer::blocks::hash_block`]), read and computed by the driver. Only
    /// shared files are ever served to others.
    pub fn share(&mut self, meta: FileMeta, hashes: Vec<Hash>) -> Result<SharedFile, ManifestError> {
        if hashes.len() as u64 != u64::from(block_count(meta.size)) {
            return Err(ManifestError { blocks: hashes.len(), size: meta.size });
        }
        let id = loop {
            let id = ShareId(self.rng_u64());
            if !self.discovery.shares.contains_key(&id) {
                break id;
            }
        };
        let file = SharedFile { id, hash: content_hash(meta.size, &hashes), meta };
        self.discovery.shares.insert(id, Share { file: file.clone(), hashes });
        Ok(file)
    }

    /// Stops sharing a file; downloads it is serving end with a `NotShared` error for
    /// the downloader. Returns whether it was shared.
    pub fn unshare(&mut self, now: Millis, id: ShareId) -> bool {
        if self.discovery.shares.remove(&id).is_none() {
            return false;
        }
        self.end_serves_of(now, id);
        true
    }

    /// What we share, sorted by name.
    pub fn shared(&self) -> Vec<SharedFile> {
        let mut list: Vec<_> = self.discovery.shares.values().map(|s| s.file.clone()).collect();
        list.sort_by(|a, b| a.meta.name.cmp(&b.meta.name).then(a.id.cmp(&b.id)));
        list
    }

    /// Asks every connected peer for files matching `text`. [`Event::FindDone`] follows
    /// once every asked peer answered (or left), or after `timeout_ms`.
    pub fn find(&mut self, now: Millis, text: &str, how: Match, timeout_ms: u64) -> QueryId {
        let id = loop {
            let id = QueryId(self.rng_u64());
            if !self.discovery.queries.contains_key(&id) {
                break id;
            }
        };
        let query = Service::Query { id: id.0, substring: how == Match::Substring, text: text.to_owned() };
        let mut waiting = HashSet::new();
        for (peer, _) in self.peers() {
            if self.send_service(&peer, &query) {
                waiting.insert(peer);
            }
        }
        self.discovery.queries.insert(id, Query { deadline: now + timeout_ms, waiting, hits: Vec::new() });
        self.maybe_finish_query(id);
        id
    }

    fn maybe_finish_query(&mut self, id: QueryId) {
        if self.discovery.queries.get(&id).is_some_and(|q| q.waiting.is_empty()) {
            self.finish_query(id);
        }
    }

    fn finish_query(&mut self, id: QueryId) {
        if let Some(query) = self.discovery.queries.remove(&id) {
            let mut hits = query.hits;
            hits.sort_by(|a, b| a.meta.name.cmp(&b.meta.name).then(a.peer.cmp(&b.peer)).then(a.id.cmp(&b.id)));
            self.emit(Event::FindDone { id, hits });
        }
    }

    /// A peer asks what we have.
    pub(crate) fn query_received(&mut self, from: &PeerId, id: u64, substring: bool, text: &str) {
        if !self.discovery.first_time(from, id) {
            return; // answered already
        }
        let how = if substring { Match::Substring } else { Match::Exact };
        let mut hits: Vec<_> = self.discovery.shares.values().filter(|s| matches(&s.file.meta.name, text, how)).map(|s| &s.file).collect();
        hits.sort_by(|a, b| a.meta.name.cmp(&b.meta.name).then(a.id.cmp(&b.id)));
        let hits = hits
            .into_iter()
            .take(MAX_ANSWER_HITS)
            .map(|f| ShareInfo { id: f.id.0, size: f.meta.size, hash: f.hash, name: f.meta.name.clone(), mime: f.meta.mime.clone() })
            .collect();
        // Empty answers too: the asker resolves as soon as everyone answered.
        self.send_service(from, &Service::Answer { id, hits });
    }

    /// A peer answers one of our queries.
    pub(crate) fn answer_received(&mut self, from: &PeerId, id: u64, hits: Vec<ShareInfo>) {
        let Some(query) = self.discovery.queries.get_mut(&QueryId(id)) else { return };
        if !query.waiting.remove(from) {
            return; // not asked, or a second answer
        }
        query.hits.extend(hits.into_iter().take(MAX_ANSWER_HITS).map(|h| Hit {
            peer: from.clone(),
            id: ShareId(h.id),
            meta: FileMeta { name: h.name, size: h.size, mime: h.mime },
            hash: h.hash,
        }));
        self.maybe_finish_query(QueryId(id));
    }

    /// A peer left: its answers are no longer awaited.
    pub(crate) fn queries_peer_left(&mut self, peer: &PeerId) {
        let mut ids: Vec<_> = self.discovery.queries.iter().filter(|(_, q)| q.waiting.contains(peer)).map(|(id, _)| *id).collect();
        ids.sort();
        for id in ids {
            if let Some(q) = self.discovery.queries.get_mut(&id) {
                q.waiting.remove(peer);
            }
            self.maybe_finish_query(id);
        }
    }

    pub(crate) fn expire_queries(&mut self, now: Millis) {
        let mut due: Vec<_> = self.discovery.queries.iter().filter(|(_, q)| q.deadline <= now).map(|(id, _)| *id).collect();
        due.sort();
        for id in due {
            self.finish_query(id);
        }
    }

    /// Ends every serve of a share that is no longer shared.
    fn end_serves_of(&mut self, now: Millis, share: ShareId) {
        for id in self.serves_of(share) {
            self.fail(now, id, TransferError::NotShared("the holder stopped sharing this file".into()), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
