//! How a connection travels, and why one could not be made — decided here from what
//! the browser reports (`getStats()`, ICE states, gathered candidates), so the rules
//! are the same everywhere and tested natively.

use std::fmt;

/// An ICE connection state (`RTCPeerConnection.iceConnectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    /// `new` or `checking`.
    Checking,
    /// `connected` or `completed`: a path works.
    Connected,
    /// `disconnected`: the path stopped working; it may come back by itself.
    Disconnected,
    /// `failed`: no path works.
    Failed,
    /// `closed`.
    Closed,
}

impl IceState {
    /// From the browser's name for it.
    pub fn parse(state: &str) -> Option<IceState> {
        Some(match state {
            "new" | "checking" => IceState::Checking,
            "connected" | "completed" => IceState::Connected,
            "disconnected" => IceState::Disconnected,
            "failed" => IceState::Failed,
            "closed" => IceState::Closed,
            _ => return None,
        })
    }
}

/// A candidate's type (RFC 8445): where its address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateType {
    /// The host's own address.
    Host,
    /// The address a NAT maps it to, learned from a STUN server.
    Srflx,
    /// An address learned from the peer's checks.
    Prflx,
    /// A TURN relay's address.
    Relay,
}

impl CandidateType {
    /// From `RTCIceCandidateStats.candidateType`.
    pub fn parse(kind: &str) -> Option<CandidateType> {
        Some(match kind {
            "host" => CandidateType::Host,
            "srflx" => CandidateType::Srflx,
            "prflx" => CandidateType::Prflx,
            "relay" => CandidateType::Relay,
            _ => return None,
        })
    }

    /// The name in the JS API.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::Srflx => "srflx",
            CandidateType::Prflx => "prflx",
            CandidateType::Relay => "relay",
        }
    }
}

/// One side of the selected candidate pair, as `getStats()` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CandidateStats {
    /// `candidateType`.
    pub candidate_type: String,
    /// `protocol`: `udp` or `tcp`.
    pub protocol: String,
    /// `relayProtocol` (local relay candidates): how we reach the TURN server.
    pub relay_protocol: Option<String>,
    /// `url` (local candidates): the STUN or TURN server it came from.
    pub url: Option<String>,
}

/// How a connection travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Through a TURN relay (either side).
    pub relayed: bool,
    /// Our candidate's type.
    pub local: CandidateType,
    /// The peer's candidate's type.
    pub remote: CandidateType,
    /// How the bytes travel: to the relay when relayed (`udp`, `tcp` or `tls`),
    /// else between the peers.
    pub protocol: String,
}

impl Path {
    /// Classifies the selected pair. Relayed if either side is a `relay` candidate, or
    /// ours came from a `turn:`/`turns:` URL or has a `relayProtocol` (Chromium can
    /// report a relayed candidate as `prflx`).
    pub fn classify(local: &CandidateStats, remote: &CandidateStats) -> Option<Path> {
        let local_type = CandidateType::parse(&local.candidate_type)?;
        let remote_type = CandidateType::parse(&remote.candidate_type)?;
        let via_turn = local.url.as_deref().is_some_and(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        let relayed = local_type == CandidateType::Relay || remote_type == CandidateType::Relay || via_turn || local.relay_protocol.is_some();
        let local_kind = if relayed && local_type == CandidateType::Prflx && (via_turn || local.relay_protocol.is_some()) {
            CandidateType::Relay
        } else {
            local_type
        };
        let protocol = match (&local.relay_protocol, local.url.as_deref()) {
            (Some(p), _) => p.to_ascii_lowercase(),
            (None, Some(url)) if url.starts_with("turns:") => "tls".into(),
            _ => local.protocol.to_ascii_lowercase(),
        };
        Some(Path { relayed, local: local_kind, remote: remote_type, protocol })
    }

    /// "direct" or "relayed".
    pub fn kind(&self) -> &'static str {
        if self.relayed {
            "relayed"
        } else {
            "direct"
        }
    }
}

/// Why a connection attempt failed, as a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// Not a single local candidate was gathered (no usable network, or
    /// `iceTransportPolicy: "relay"` without a working TURN server).
    NoCandidates,
    /// ICE checked every pair of candidates and none worked.
    IceFailed,
    /// A path worked but the DTLS handshake over it failed.
    DtlsFailed,
    /// The channels did not open within `connectTimeoutMs`.
    Timeout,
    /// The other end could not prove it is the peer we connected to: its key is not
    /// that id's, or it signed other DTLS fingerprints than the connection's (someone
    /// in the middle). The connection was closed before any application byte.
    Impostor,
    /// The room has a secret and the other end does not know it (or this end does
    /// not): the connection was closed before any application byte.
    WrongRoomSecret,
}

impl FailReason {
    /// The code in the JS API.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NoCandidates => "no-candidates",
            FailReason::IceFailed => "ice-failed",
            FailReason::DtlsFailed => "dtls-failed",
            FailReason::Timeout => "timeout",
            FailReason::Impostor => "impostor",
            FailReason::WrongRoomSecret => "wrong-room-secret",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What gathering local candidates found (when it completed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gathered {
    /// Local candidates of every type.
    pub local: u32,
    /// Of them, relay candidates (a TURN server answered).
    pub relay: u32,
    /// A TURN server was configured.
    pub relay_configured: bool,
}

/// What the browser knows about a failed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// ICE failed (or did not connect in time), after gathering this.
    Ice(Gathered),
    /// ICE connected, then DTLS failed.
    Dtls,
}

impl Failure {
    /// The stable reason and the words a user needs.
    pub fn explain(&self) -> (FailReason, String) {
        match *self {
            Failure::Ice(Gathered { local: 0, relay_configured, .. }) => {
                let message = if relay_configured {
                    "no network address could be gathered, not even from the TURN server (check its URL and credentials)"
                } else {
                    "no network address could be gathered"
                };
                (FailReason::NoCandidates, message.into())
            }
            Failure::Ice(Gathered { relay_configured: false, .. }) => {
                (FailReason::IceFailed, "no TURN server configured; the peers are on networks that need one".into())
            }
            Failure::Ice(Gathered { relay: 0, .. }) => (
                FailReason::IceFailed,
                "the TURN server gave no relay address: check its URL and that the credentials are right and not expired".into(),
            ),
            Failure::Ice(_) => (FailReason::IceFailed, "no path between the peers worked, not even through the TURN relay".into()),
            Failure::Dtls => (FailReason::DtlsFailed, "the peers reached each other but the encrypted handshake (DTLS) failed".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(kind: &str, protocol: &str, relay: Option<&str>, url: Option<&str>) -> CandidateStats {
        CandidateStats { candidate_type: kind.into(), protocol: protocol.into(), relay_protocol: relay.map(Into::into), url: url.map(Into::into) }
    }

    #[test]
    fn paths_are_direct_or_relayed_by_any_sign_of_a_relay() {
        let host = candidate("host", "udp", None, None);
        let srflx = candidate("srflx", "udp", None, Some("stun:203.0.113.1:3478"));
        let direct = Path::classify(&srflx, &host).unwrap();
        assert_eq!(
            (direct.relayed, direct.local, direct.remote, direct.protocol.as_str()),
            (false, CandidateType::Srflx, CandidateType::Host, "udp")
        );
        let relay = candidate("relay", "udp", Some("tcp"), Some("turn:203.0.113.1:3478?transport=tcp"));
        let relayed = Path::classify(&relay, &srflx).unwrap();
        assert_eq!((relayed.relayed, relayed.protocol.as_str(), relayed.kind()), (true, "tcp", "relayed"));
        // Chromium may call our relayed candidate prflx: the relay protocol gives it away.
        let disguised = candidate("prflx", "udp", Some("udp"), None);
        let path = Path::classify(&disguised, &host).unwrap();
        assert!(path.relayed && path.local == CandidateType::Relay);
        // The peer's relay makes it relayed too; turns: is TLS.
        assert!(Path::classify(&host, &candidate("relay", "udp", None, None)).unwrap().relayed);
        assert_eq!(Path::classify(&candidate("relay", "tcp", None, Some("turns:x:5349")), &host).unwrap().protocol, "tls");
        assert_eq!(Path::classify(&candidate("mystery", "udp", None, None), &host), None);
    }

    #[test]
    fn failures_say_what_a_user_can_do() {
        let ice = |local, relay, relay_configured| Failure::Ice(Gathered { local, relay, relay_configured }).explain();
        assert_eq!(ice(0, 0, false).0, FailReason::NoCandidates);
        assert!(ice(0, 0, true).1.contains("credentials"));
        let (reason, message) = ice(3, 0, false);
        assert_eq!(reason, FailReason::IceFailed);
        assert!(message.contains("no TURN server configured"), "{message}");
        assert!(ice(3, 0, true).1.contains("credentials"));
        assert!(ice(4, 1, true).1.contains("not even through the TURN relay"));
        assert_eq!(Failure::Dtls.explain().0, FailReason::DtlsFailed);
        assert_eq!(IceState::parse("completed"), Some(IceState::Connected));
    }
}
