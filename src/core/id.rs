//! Identifier newtypes.

use std::fmt;

/// A peer's id as the signaling server stamped it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(String);

impl PeerId {
    /// Wraps an id (one the server announced, or one kept from an earlier session).
    pub fn new(id: impl Into<String>) -> Self {
        PeerId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One RTCPeerConnection attempt with one peer. Chosen by the offering side and
/// carried in every offer, answer and candidate, so that signals for an attempt that
/// was replaced are recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    pub(crate) fn from_raw(raw: u64) -> Self {
        ConnId(raw)
    }

    /// The id as a number, for drivers that key their resources by it.
    pub fn to_raw(self) -> u64 {
        self.0
    }

    /// Parses the 16-hex-digit wire form.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        parse_hex_u64(text).map(ConnId)
    }
}

/// Exactly 16 hex digits as a `u64` (`from_str_radix` alone would also take a sign).
pub(crate) fn parse_hex_u64(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_id_round_trips() {
        let id = ConnId::from_raw(0xdead_beef);
        assert_eq!(id.to_string(), "00000000deadbeef");
        assert_eq!(ConnId::parse(&id.to_string()), Some(id));
        assert_eq!(ConnId::parse("xyz"), None);
        assert_eq!(ConnId::parse("+000000000000001"), None);
    }
}
