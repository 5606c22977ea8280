//! The settings of one mesh, with the defaults a test or a native driver starts from.

use super::identity::{Identity, PublicKey};
use super::PeerId;

/// Settings for one mesh.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// Room to join.
    pub room: String,
    /// Display name, if any.
    pub name: Option<String>,
    /// Random secret (32–128 of `[A-Za-z0-9_-]`) from which the server derives our id:
    /// the same secret keeps the same id across reconnects.
    pub secret: String,
    /// Largest message accepted from a peer, in bytes.
    pub max_message_bytes: u64,
    /// Give up on a connection attempt that has not opened after this long.
    pub connect_timeout_ms: u64,
    /// How long a transfer waits for a peer that left to come back.
    pub resume_timeout_ms: u64,
    /// How long a connection that lost its network path may take to get one back (ICE
    /// restarts) before the peer counts as gone.
    pub reconnect_timeout_ms: u64,
    /// A key that never leaves this device (unlike `secret`, which the server sees):
    /// a receiver proves with it that it is the one that accepted a transfer before,
    /// so a transfer resumes only with the same browser. Persist it with the secret.
    pub local_key: [u8; 32],
    /// Our key pair (derived from `secret` by default): the server checks our id with
    /// it, and peers check every connection against it. It never leaves this device.
    pub identity: Identity,
    /// Peers whose keys the user verified (see [`Mesh::pin`](super::Mesh::pin)), from earlier sessions.
    pub pinned: Vec<(PeerId, PublicKey)>,
    /// The room's secret, known to its members and never sent anywhere: each
    /// connection proves both ends know it (SPAKE2), or closes with `WrongRoomSecret`.
    pub room_secret: Option<String>,
    /// 256 bits from a secure random source, the core's only randomness for
    /// cryptography (the room-secret exchanges). Drivers must set it; the default is
    /// derived from the secret, for tests.
    pub entropy: [u8; 32],
    /// How many signaling servers (URLs) the driver can open: [`SignalingOp::Open`](super::SignalingOp::Open)
    /// names one. Each attempt after a failure goes to the next, so peers of a server
    /// that died or restarts find another; a first join fails only when every one did.
    pub signaling_servers: usize,
}

impl MeshConfig {
    /// Defaults: 16 MiB messages, 20 s connect timeout, transfers wait 2 minutes for a
    /// peer that left.
    /// `local_key` defaults to one derived from the secret: set a separate random one
    /// (as the browser driver does) for resume proofs the server cannot forge.
    pub fn new(room: impl Into<String>, name: Option<String>, secret: impl Into<String>) -> Self {
        let secret: String = secret.into();
        let identity = Identity::from_secret(&secret);
        let entropy = blake3::derive_key("meshdrop 2026-11 test entropy from secret", secret.as_bytes());
        let local_key = *blake3::Hasher::new_derive_key("meshdrop 2026-11 local key from secret").update(secret.as_bytes()).finalize().as_bytes();
        MeshConfig {
            room: room.into(),
            name,
            secret,
            max_message_bytes: 16 * 1024 * 1024,
            connect_timeout_ms: 20_000,
            resume_timeout_ms: 120_000,
            reconnect_timeout_ms: 30_000,
            local_key,
            identity,
            pinned: Vec::new(),
            room_secret: None,
            entropy,
            signaling_servers: 1,
        }
    }
}

/// Settings the peers need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerSettings {
    pub(crate) connect_timeout_ms: u64,
    pub(crate) max_message_bytes: u64,
    pub(crate) reconnect_timeout_ms: u64,
}

impl From<&MeshConfig> for PeerSettings {
    fn from(config: &MeshConfig) -> Self {
        PeerSettings {
            connect_timeout_ms: config.connect_timeout_ms,
            max_message_bytes: config.max_message_bytes,
            reconnect_timeout_ms: config.reconnect_timeout_ms,
        }
    }
}
