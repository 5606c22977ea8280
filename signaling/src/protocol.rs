//! The signaling wire protocol: JSON text frames, one object each, tagged by `type`.
//!
//! Shared by the server and the meshdrop client so that the two can never disagree.
//! `signaling/PROTOCOL.md` is the prose version of this module; keep them in step.
//!
//! Parsing goes through flat structs with optional fields rather than a tagged enum:
//! one pass over the input, a precise error code for each kind of bad frame, and the
//! opaque `data` payload kept as raw JSON (serde cannot hand a `RawValue` through an
//! internally tagged enum).
//!
//! The server reads and writes with serde_json (the `rooms` feature); the client's
//! half — [`ClientMessage::to_json`] and [`parse_server`] — uses the small [`json`](crate::json)
//! module instead, so that serde stays out of the browser's WebAssembly.

use std::borrow::Cow;
use std::fmt;

#[cfg(feature = "rooms")]
use serde::{Deserialize, Serialize};
#[cfg(feature = "rooms")]
use serde_json::value::RawValue;

use crate::json::{JsonError, Object, ObjectWriter};

/// Largest text frame either side accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest room name, in bytes (rooms are `[A-Za-z0-9_-]`).
pub const MAX_ROOM_LEN: usize = 64;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Shortest accepted client secret, in characters: it is the only thing that makes a
/// stable peer id unforgeable, so it must carry real entropy.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest accepted client secret, in characters.
pub const MAX_SECRET_LEN: usize = 128;
/// The query parameter (`/ws?challenge=first`) with which a client asks the server to
/// send `challenge` as its first frame, unasked: a keyed join then needs one round
/// trip after the socket opens instead of two.
pub const CHALLENGE_FIRST: (&str, &str) = ("challenge", "first");

/// Whether a `/ws` query string (without `?`) carries [`CHALLENGE_FIRST`].
pub fn wants_challenge_first(query: &str) -> bool {
    query.split('&').any(|pair| pair.split_once('=') == Some(CHALLENGE_FIRST))
}

/// `url` with [`CHALLENGE_FIRST`] added to its query.
pub fn with_challenge_first(url: &str) -> String {
    let (name, value) = CHALLENGE_FIRST;
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{name}={value}")
}

/// A peer as the server describes it to the others in its room.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "rooms", derive(Serialize, Deserialize))]
pub struct PeerInfo {
    /// The peer's id, stamped by the server.
    pub id: String,
    /// The display name the peer joined with, if any.
    #[cfg_attr(feature = "rooms", serde(default, skip_serializing_if = "Option::is_none"))]
    pub name: Option<String>,
}

/// A STUN or TURN server for the client's `RTCPeerConnection`s, as an `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "rooms", derive(Serialize, Deserialize))]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN only: `<expiry, unix seconds>:<peer id>`.
    #[cfg_attr(feature = "rooms", serde(default, skip_serializing_if = "Option::is_none"))]
    pub username: Option<String>,
    /// TURN only: base64(HMAC-SHA1(shared secret, username)), coturn's REST scheme.
    #[cfg_attr(feature = "rooms", serde(default, skip_serializing_if = "Option::is_none"))]
    pub credential: Option<String>,
}

/// Stable machine-readable error codes carried by `{"type":"error"}` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "rooms", derive(Serialize, Deserialize), serde(rename_all = "kebab-case"))]
pub enum ErrorCode {
    /// The frame is not valid JSON (or not a JSON object).
    BadJson,
    /// Valid JSON, but a field is missing or of the wrong kind.
    BadMessage,
    /// The `type` field names no known message.
    UnknownType,
    /// A `signal` was sent before a successful `join`.
    NotJoined,
    /// A second `join` on a connection that already joined.
    AlreadyJoined,
    /// The room is not 1–64 characters of `[A-Za-z0-9_-]`.
    BadRoom,
    /// The name is longer than 64 characters or contains control characters.
    BadName,
    /// The secret is not 32–128 characters of `[A-Za-z0-9_-]`.
    BadSecret,
    /// The room already holds the configured maximum of peers.
    RoomFull,
    /// The `to` of a signal names no peer in the sender's room.
    UnknownPeer,
    /// The frame is larger than 64 KiB (the server then closes the connection).
    TooLarge,
    /// The client sends frames faster than the configured rate.
    RateLimited,
    /// Binary frames are not part of the protocol.
    BinaryFrame,
    /// Another connection joined with this connection's id (the same identity open
    /// elsewhere); this one is closed next and should not reconnect.
    Replaced,
    /// The signal's receiver is on another instance that cannot be reached now (Redis
    /// is down, or that instance is gone); the signal was dropped.
    Unavailable,
    /// A keyed `join` whose key or signature is malformed, whose signature does not
    /// verify, or that came without a fresh `challenge` on this connection.
    BadProof,
}

impl ErrorCode {
    /// Every code, in the order declared.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadJson,
        ErrorCode::BadMessage,
        ErrorCode::UnknownType,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadRoom,
        ErrorCode::BadName,
        ErrorCode::BadSecret,
        ErrorCode::RoomFull,
        ErrorCode::UnknownPeer,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::BinaryFrame,
        ErrorCode::Replaced,
        ErrorCode::Unavailable,
        ErrorCode::BadProof,
    ];

    /// The code a wire text names, e.g. `"room-full"`; `None` for a code this version
    /// does not know.
    pub fn from_wire(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|code| code.as_str() == text)
    }

    /// The code as it appears on the wire, e.g. `"room-full"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad-json",
            ErrorCode::BadMessage => "bad-message",
            ErrorCode::UnknownType => "unknown-type",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::AlreadyJoined => "already-joined",
            ErrorCode::BadRoom => "bad-room",
            ErrorCode::BadName => "bad-name",
            ErrorCode::BadSecret => "bad-secret",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::BinaryFrame => "binary-frame",
            ErrorCode::Replaced => "replaced",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::BadProof => "bad-proof",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame that could not be accepted: the code and a short human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// The stable code.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
}

impl ProtocolError {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError { code, message: message.into() }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ProtocolError {}

// ---------------------------------------------------------------------------------------
// client -> server

/// A frame a client sends, ready to serialize ([`ClientMessage::to_json`]).
#[derive(Debug)]
pub enum ClientMessage<'a> {
    /// Enter a room; must be the first frame.
    Join {
        /// The room to enter.
        room: &'a str,
        /// Optional display name.
        name: Option<&'a str>,
        /// Optional client secret: the server derives the peer id from it, so the same
        /// secret gives the same id across reconnects and server restarts. (The older
        /// scheme: the server could then claim that id itself. See `key`.)
        secret: Option<&'a str>,
        /// The client's Ed25519 public key, 64 hex digits: the id derives from it
        /// ([`id_from_key`]), so the server can check an id without holding anything
        /// that claims it. Needs `proof`.
        key: Option<&'a str>,
        /// The key's signature (128 hex digits) over [`join_proof_message`] of the
        /// nonce this connection was given in `challenge` and the room.
        proof: Option<&'a str>,
    },
    /// Asks for a `challenge`: a nonce to sign for a keyed `join`.
    Challenge,
    /// Relay `data` to the peer `to` in the same room.
    Signal {
        /// The receiving peer's id.
        to: &'a str,
        /// Any JSON value (the caller's own JSON text), forwarded untouched.
        data: &'a str,
    },
    /// Is the connection alive? The server answers `pong`. Browsers cannot see
    /// WebSocket pings, and a connection whose NAT mapping vanished stays "open" to them
    /// for minutes: this is how a client finds out.
    Ping,
}

impl ClientMessage<'_> {
    /// The frame's JSON text, as serde_json would write it: `type` first, then the
    /// fields in declaration order, absent options left out.
    pub fn to_json(&self) -> String {
        match self {
            ClientMessage::Join { room, name, secret, key, proof } => ObjectWriter::new()
                .str("type", "join")
                .str("room", room)
                .opt_str("name", *name)
                .opt_str("secret", *secret)
                .opt_str("key", *key)
                .opt_str("proof", *proof)
                .finish(),
            ClientMessage::Challenge => ObjectWriter::new().str("type", "challenge").finish(),
            ClientMessage::Signal { to, data } => ObjectWriter::new().str("type", "signal").str("to", to).raw("data", data).finish(),
            ClientMessage::Ping => ObjectWriter::new().str("type", "ping").finish(),
        }
    }
}

/// A validated client frame, borrowing from the text it was parsed from.
#[cfg(feature = "rooms")]
#[derive(Debug)]
pub enum ClientRequest<'a> {
    /// `{"type":"join",...}`
    Join {
        /// Valid room name.
        room: Cow<'a, str>,
        /// Valid display name, if given.
        name: Option<Cow<'a, str>>,
        /// Valid secret, if given.
        secret: Option<Cow<'a, str>>,
        /// A well-formed public key and signature, if given (not yet verified).
        keyed: Option<([u8; 32], [u8; 64])>,
    },
    /// `{"type":"challenge"}`
    Challenge,
    /// `{"type":"signal",...}`
    Signal {
        /// Receiving peer id (not yet checked against the room).
        to: Cow<'a, str>,
        /// The payload, as raw JSON text.
        data: &'a RawValue,
    },
    /// `{"type":"ping"}`
    Ping,
}

#[cfg(feature = "rooms")]
impl PartialEq for ClientRequest<'_> {
    fn eq(&self, other: &Self) -> bool {
        use ClientRequest::*;
        match (self, other) {
            (Join { room: r1, name: n1, secret: s1, keyed: k1 }, Join { room: r2, name: n2, secret: s2, keyed: k2 }) => {
                r1 == r2 && n1 == n2 && s1 == s2 && k1 == k2
            }
            (Challenge, Challenge) => true,
            // Raw payloads compare by their exact text.
            (Signal { to: t1, data: d1 }, Signal { to: t2, data: d2 }) => t1 == t2 && d1.get() == d2.get(),
            (Ping, Ping) => true,
            _ => false,
        }
    }
}

#[cfg(feature = "rooms")]
#[derive(Deserialize)]
struct ClientFrame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    room: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    secret: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    proof: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// Parses and validates one client text frame.
#[cfg(feature = "rooms")]
pub fn parse_client(text: &str) -> Result<ClientRequest<'_>, ProtocolError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(ProtocolError::new(ErrorCode::TooLarge, "frame exceeds 64 KiB"));
    }
    let frame: ClientFrame<'_> = serde_json::from_str(text).map_err(classify_json_error)?;
    let kind = frame.kind.ok_or_else(|| ProtocolError::new(ErrorCode::BadMessage, "missing field `type`"))?;
    match kind.as_ref() {
        "join" => {
            let room = frame.room.ok_or_else(|| ProtocolError::new(ErrorCode::BadRoom, "join needs a `room`"))?;
            validate_room(&room)?;
            if let Some(name) = &frame.name {
                validate_name(name)?;
            }
            if let Some(secret) = &frame.secret {
                validate_secret(secret)?;
            }
            let keyed = match (&frame.key, &frame.proof, &frame.secret) {
                (None, None, _) => None,
                (Some(key), Some(proof), None) => {
                    let bad = || ProtocolError::new(ErrorCode::BadProof, "`key` must be 64 and `proof` 128 lowercase hex digits");
                    Some((from_hex::<32>(key).ok_or_else(bad)?, from_hex::<64>(proof).ok_or_else(bad)?))
                }
                (_, _, Some(_)) => return Err(ProtocolError::new(ErrorCode::BadMessage, "a join has a `secret` or a `key`, not both")),
                _ => return Err(ProtocolError::new(ErrorCode::BadProof, "`key` and `proof` go together")),
            };
            Ok(ClientRequest::Join { room, name: frame.name, secret: frame.secret, keyed })
        }
        "challenge" => Ok(ClientRequest::Challenge),
        "signal" => {
            let to = frame.to.ok_or_else(|| ProtocolError::new(ErrorCode::BadMessage, "signal needs a `to`"))?;
            let data = frame.data.ok_or_else(|| ProtocolError::new(ErrorCode::BadMessage, "signal needs `data`"))?;
            Ok(ClientRequest::Signal { to, data })
        }
        "ping" => Ok(ClientRequest::Ping),
        other => Err(ProtocolError::new(ErrorCode::UnknownType, format!("unknown message type `{}`", truncate(other, 32)))),
    }
}

/// Syntax errors are `bad-json`; well-formed JSON of the wrong shape is `bad-message`.
#[cfg(feature = "rooms")]
fn classify_json_error(err: serde_json::Error) -> ProtocolError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ProtocolError::new(ErrorCode::BadJson, format!("malformed JSON: {err}")),
        Category::Data => ProtocolError::new(ErrorCode::BadMessage, format!("bad message: {err}")),
    }
}

/// Checks a room name: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn validate_room(room: &str) -> Result<(), ProtocolError> {
    let ok = !room.is_empty() && room.len() <= MAX_ROOM_LEN && room.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::new(ErrorCode::BadRoom, "room must be 1-64 characters of A-Z a-z 0-9 _ -"))
    }
}

/// Checks a display name: at most 64 characters, no control characters (Cc) and no
/// format characters (Cf) — bidi overrides and isolates, zero-width spaces and joiners
/// and the like — with which `"\u{202E}ecila"` would display as "alice".
pub fn validate_name(name: &str) -> Result<(), ProtocolError> {
    if name.chars().count() <= MAX_NAME_CHARS && !name.chars().any(|c| c.is_control() || is_format(c)) {
        Ok(())
    } else {
        Err(ProtocolError::new(ErrorCode::BadName, "name must be at most 64 characters, without control, bidi or zero-width characters"))
    }
}

/// Unicode general category Cf (Format), Unicode 16.0 (`DerivedGeneralCategory.txt`).
/// A short table rather than a Unicode crate: the client carries this code too, and
/// every byte counts in its bundle. A test checks it against a Unicode crate.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

fn is_format(c: char) -> bool {
    let c = u32::from(c);
    FORMAT.iter().any(|&(first, last)| (first..=last).contains(&c))
}

/// Checks a client secret: 32–128 characters of `[A-Za-z0-9_-]`.
pub fn validate_secret(secret: &str) -> Result<(), ProtocolError> {
    let ok = (MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::new(ErrorCode::BadSecret, "secret must be 32-128 characters of A-Z a-z 0-9 _ -"))
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

// ---------------------------------------------------------------------------------------
// server -> client

/// A frame the server sends, ready to serialize.
#[cfg(feature = "rooms")]
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage<'a> {
    /// Answer to a successful join.
    Welcome {
        /// The joiner's id.
        id: &'a str,
        /// Everybody else already in the room.
        peers: Vec<PeerInfo>,
        /// STUN and TURN servers (with credentials for this peer), if the server has any.
        #[serde(rename = "iceServers", skip_serializing_if = "<[IceServer]>::is_empty")]
        ice_servers: &'a [IceServer],
    },
    /// Fresh TURN credentials, before the ones given expire.
    IceServers {
        /// The servers, as in `welcome`.
        #[serde(rename = "iceServers")]
        ice_servers: &'a [IceServer],
    },
    /// Someone entered the room.
    PeerJoined {
        /// Who.
        peer: PeerInfo,
    },
    /// Someone left the room (closed, timed out, or was replaced).
    PeerLeft {
        /// Who.
        id: &'a str,
    },
    /// A relayed signal.
    Signal {
        /// The sender, stamped by the server.
        from: &'a str,
        /// The payload, exactly as the sender wrote it.
        data: &'a RawValue,
    },
    /// A frame was refused.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Reason for people.
        message: &'a str,
    },
    /// The answer to a client's `ping`.
    Pong,
    /// The answer to `challenge`: a fresh nonce (64 hex digits) for this connection's
    /// keyed `join` to sign; good for one join attempt.
    Challenge {
        /// The nonce.
        nonce: &'a str,
    },
}

#[cfg(feature = "rooms")]
impl ServerMessage<'_> {
    /// Serializes the message to its JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: every key is a string and the raw
        // payloads were validated as JSON when they were parsed.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A server frame as the client sees it.
#[derive(Debug, PartialEq)]
pub enum ServerEvent {
    /// `welcome`
    Welcome {
        /// Our id.
        id: String,
        /// Peers already in the room.
        peers: Vec<PeerInfo>,
        /// STUN and TURN servers the server offers (none if it has none).
        ice_servers: Vec<IceServer>,
    },
    /// `ice-servers`: fresh credentials.
    IceServers(Vec<IceServer>),
    /// `peer-joined`
    PeerJoined(PeerInfo),
    /// `peer-left`
    PeerLeft {
        /// Who left.
        id: String,
    },
    /// `signal`
    Signal {
        /// Sender, stamped by the server.
        from: String,
        /// The payload's JSON text, as the sender wrote it (checked to be JSON).
        data: String,
    },
    /// `error`
    Error {
        /// The code; `None` if the server sent one this client does not know.
        code: Option<ErrorCode>,
        /// The code as sent.
        code_text: String,
        /// The server's message.
        message: String,
    },
    /// `pong`: the answer to our `ping`.
    Pong,
    /// `challenge`: the nonce to sign for a keyed join.
    Challenge {
        /// 64 hex digits.
        nonce: String,
    },
}

/// A server frame's fields, each checked to be of its kind whatever the frame's type
/// (as serde would check a struct of them).
struct ServerFrame<'a> {
    kind: Cow<'a, str>,
    id: Option<Cow<'a, str>>,
    peers: Option<Vec<PeerInfo>>,
    ice_servers: Option<Vec<IceServer>>,
    peer: Option<PeerInfo>,
    from: Option<Cow<'a, str>>,
    data: Option<&'a str>,
    code: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    nonce: Option<Cow<'a, str>>,
}

impl<'a> ServerFrame<'a> {
    fn read(text: &'a str) -> Result<ServerFrame<'a>, JsonError> {
        let frame = Object::parse(text)?;
        let peers = frame.objects("peers")?.map(|peers| peers.iter().map(peer_info).collect::<Result<Vec<_>, _>>()).transpose()?;
        let ice_servers = frame.objects("iceServers")?.map(|servers| servers.iter().map(ice_server).collect::<Result<Vec<_>, _>>()).transpose()?;
        Ok(ServerFrame {
            kind: frame.str("type")?.ok_or_else(|| JsonError::Data("missing field `type`".into()))?,
            id: frame.str("id")?,
            peers,
            ice_servers,
            peer: frame.object("peer")?.as_ref().map(peer_info).transpose()?,
            from: frame.str("from")?,
            data: frame.raw("data")?,
            code: frame.str("code")?,
            message: frame.str("message")?,
            nonce: frame.str("nonce")?,
        })
    }
}

fn peer_info(peer: &Object<'_>) -> Result<PeerInfo, JsonError> {
    let id = peer.str("id")?.ok_or_else(|| JsonError::Data("a peer without an `id`".into()))?;
    Ok(PeerInfo { id: id.into_owned(), name: peer.str("name")?.map(Cow::into_owned) })
}

fn ice_server(server: &Object<'_>) -> Result<IceServer, JsonError> {
    Ok(IceServer {
        urls: server.strings("urls")?.ok_or_else(|| JsonError::Data("an ICE server without `urls`".into()))?,
        username: server.str("username")?.map(Cow::into_owned),
        credential: server.str("credential")?.map(Cow::into_owned),
    })
}

/// Parses one server text frame (the client side of the protocol).
pub fn parse_server(text: &str) -> Result<ServerEvent, ProtocolError> {
    let frame = ServerFrame::read(text).map_err(|err| match err {
        JsonError::Syntax(what) => ProtocolError::new(ErrorCode::BadJson, format!("malformed JSON: {what}")),
        JsonError::Data(what) => ProtocolError::new(ErrorCode::BadMessage, format!("bad message: {what}")),
    })?;
    let kind = frame.kind.as_ref();
    let missing = |field: &str| ProtocolError::new(ErrorCode::BadMessage, format!("{kind} frame without `{field}`"));
    let owned = |text: Option<Cow<'_, str>>, field: &str| text.map(Cow::into_owned).ok_or_else(|| missing(field));
    Ok(match kind {
        "welcome" => ServerEvent::Welcome {
            id: owned(frame.id, "id")?,
            peers: frame.peers.unwrap_or_default(),
            ice_servers: frame.ice_servers.unwrap_or_default(),
        },
        "ice-servers" => ServerEvent::IceServers(frame.ice_servers.ok_or_else(|| missing("iceServers"))?),
        "peer-joined" => ServerEvent::PeerJoined(frame.peer.ok_or_else(|| missing("peer"))?),
        "peer-left" => ServerEvent::PeerLeft { id: owned(frame.id, "id")? },
        "signal" => ServerEvent::Signal { from: owned(frame.from, "from")?, data: frame.data.ok_or_else(|| missing("data"))?.to_owned() },
        "error" => {
            let code_text = frame.code.map(Cow::into_owned).unwrap_or_default();
            ServerEvent::Error { code: ErrorCode::from_wire(&code_text), code_text, message: frame.message.map(Cow::into_owned).unwrap_or_default() }
        }
        "pong" => ServerEvent::Pong,
        "challenge" => ServerEvent::Challenge {
            nonce: frame.nonce.filter(|n| from_hex::<32>(n).is_some()).map(Cow::into_owned).ok_or_else(|| missing("nonce"))?,
        },
        other => return Err(ProtocolError::new(ErrorCode::UnknownType, format!("unknown message type `{}`", truncate(other, 32)))),
    })
}

// ---------------------------------------------------------------------------------------
// identity keys

/// The id of the peer holding Ed25519 public key `key`: the first 128 bits of
/// SHA-256 over a domain tag and the key, in hex. Different from every secret-derived
/// id (another domain tag), and as unforgeable: claiming an id takes a key whose hash
/// matches, i.e. a second preimage of SHA-256.
pub fn id_from_key(key: &[u8; 32]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new().chain_update(b"meshdrop/peer-id/v2\0").chain_update(key).finalize();
    to_hex(&digest[..16])
}

/// What a keyed `join` signs: a domain tag, the connection's nonce and the room. The
/// nonce is fresh per connection and good for one attempt, so a recorded join cannot
/// be replayed; the room is in it, so a join cannot be moved to another room.
pub fn join_proof_message(nonce: &str, room: &str) -> Vec<u8> {
    let mut message = b"meshdrop/join/v1\0".to_vec();
    message.extend_from_slice(nonce.as_bytes());
    message.push(0);
    message.extend_from_slice(room.as_bytes());
    message
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)] as char, DIGITS[usize::from(b & 15)] as char]).collect()
}

/// Exactly `N` bytes from `2 × N` lowercase hex digits.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

// The server's parser and writer are what the client's are checked against.
#[cfg(all(test, feature = "rooms"))]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_first_parameter_is_added_to_any_url_and_recognised_only_exactly() {
        assert_eq!(with_challenge_first("wss://h/ws"), "wss://h/ws?challenge=first");
        assert_eq!(with_challenge_first("wss://h/ws?token=a"), "wss://h/ws?token=a&challenge=first");
        for url in ["wss://h/ws", "wss://h/ws?token=a"] {
            let added = with_challenge_first(url);
            assert!(wants_challenge_first(added.split_once('?').map_or("", |(_, query)| query)), "{added}");
        }
        for query in ["", "challenge", "challenge=", "challenge=firsts", "xchallenge=first", "challenge=later&first"] {
            assert!(!wants_challenge_first(query), "{query}");
        }
    }

    #[test]
    fn join_round_trips() {
        let text = ClientMessage::Join { room: "lobby", name: Some("alice"), secret: None, key: None, proof: None }.to_json();
        assert_eq!(text, r#"{"type":"join","room":"lobby","name":"alice"}"#);
        assert_eq!(parse_client(&text).unwrap(), ClientRequest::Join { room: "lobby".into(), name: Some("alice".into()), secret: None, keyed: None });
    }

    #[test]
    fn every_client_frame_the_client_writes_is_read_by_the_server_as_meant() -> Result<(), Box<dyn std::error::Error>> {
        let (key, proof) = ("ab".repeat(32), "cd".repeat(64));
        let name = "a \"lïce\" \\ 😀";
        let keyed = ClientMessage::Join { room: "r-1", name: Some(name), secret: None, key: Some(&key), proof: Some(&proof) }.to_json();
        let expected = ClientRequest::Join { room: "r-1".into(), name: Some(name.into()), secret: None, keyed: Some(([0xab; 32], [0xcd; 64])) };
        assert_eq!(parse_client(&keyed)?, expected);
        let secret = "s".repeat(32);
        let with_secret = ClientMessage::Join { room: "r", name: None, secret: Some(&secret), key: None, proof: None }.to_json();
        assert_eq!(with_secret, format!(r#"{{"type":"join","room":"r","secret":"{secret}"}}"#));
        assert_eq!(
            parse_client(&with_secret)?,
            ClientRequest::Join { room: "r".into(), name: None, secret: Some(secret.as_str().into()), keyed: None }
        );
        assert_eq!(parse_client(&ClientMessage::Challenge.to_json())?, ClientRequest::Challenge);
        assert_eq!(parse_client(&ClientMessage::Ping.to_json())?, ClientRequest::Ping);
        let signal = ClientMessage::Signal { to: "p\"q", data: r#"{"kind":"hello","x":[1,"\u00e9"]}"# }.to_json();
        match parse_client(&signal)? {
            ClientRequest::Signal { to, data } => {
                assert_eq!(to, "p\"q");
                assert_eq!(data.get(), r#"{"kind":"hello","x":[1,"\u00e9"]}"#);
            }
            other => panic!("unexpected {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn every_error_code_is_read_back_from_its_wire_text() -> Result<(), Box<dyn std::error::Error>> {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_string(&code)?, format!("\"{}\"", code.as_str()));
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
        let distinct: std::collections::HashSet<_> = ErrorCode::ALL.iter().collect();
        assert_eq!(distinct.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::from_wire("no-such-code"), None);
        Ok(())
    }

    #[test]
    fn bad_server_frames_get_the_codes_the_server_would_give() -> Result<(), Box<dyn std::error::Error>> {
        let code = |t: &str| parse_server(t).unwrap_err().code;
        for bad in ["{not json", "[1,2]", r#"{"type":"pong"} x"#, r#"{"type":"pong","id":"\ud800"}"#] {
            assert_eq!(code(bad), ErrorCode::BadJson, "{bad}");
        }
        for bad in [
            r#"{"id":"x"}"#,
            r#"{"type":5}"#,
            r#"{"type":"pong","id":5}"#,
            r#"{"type":"pong","peers":[{"name":"x"}]}"#,
            r#"{"type":"pong","iceServers":[{"urls":"stun:x"}]}"#,
            r#"{"type":"pong","peer":[]}"#,
            r#"{"type":"pong","type":"pong"}"#,
            r#"{"type":"welcome"}"#,
            r#"{"type":"signal","from":"a","data":null}"#,
            r#"{"type":"challenge","nonce":"00"}"#,
        ] {
            assert_eq!(code(bad), ErrorCode::BadMessage, "{bad}");
        }
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(parse_server(r#"{"type":"pong","unknown":{"a":[]}}"#)?, ServerEvent::Pong);
        Ok(())
    }

    #[test]
    fn signal_keeps_data_raw() {
        let text = r#"{"type":"signal","to":"abc","data":{"b": [1, 2],"a":"x"}}"#;
        match parse_client(text).unwrap() {
            ClientRequest::Signal { to, data } => {
                assert_eq!(to, "abc");
                assert_eq!(data.get(), r#"{"b": [1, 2],"a":"x"}"#);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn error_codes_for_bad_frames() {
        let code = |t: &str| parse_client(t).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"room":"x"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadRoom);
        assert_eq!(code(r#"{"type":"join","room":""}"#), ErrorCode::BadRoom);
        assert_eq!(code(r#"{"type":"join","room":"a b"}"#), ErrorCode::BadRoom);
        assert_eq!(code(&format!(r#"{{"type":"join","room":"{}"}}"#, "a".repeat(65))), ErrorCode::BadRoom);
        assert_eq!(code(&format!(r#"{{"type":"join","room":"r","name":"{}"}}"#, "n".repeat(65))), ErrorCode::BadName);
        assert_eq!(code(r#"{"type":"join","room":"r","name":"a\nb"}"#), ErrorCode::BadName);
        assert_eq!(code(r#"{"type":"join","room":"r","secret":"short"}"#), ErrorCode::BadSecret);
        assert_eq!(code(r#"{"type":"signal","data":1}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"signal","to":"x"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"join","room":5}"#), ErrorCode::BadMessage);
        assert_eq!(code(&" ".repeat(MAX_FRAME_BYTES + 1)), ErrorCode::TooLarge);
    }

    #[test]
    fn names_count_characters_not_bytes() {
        let name = "é".repeat(64);
        assert!(validate_name(&name).is_ok());
    }

    #[test]
    fn names_refuse_bidi_and_invisible_characters() {
        for bad in ["\u{202E}ecila", "al\u{200B}ice", "a\u{2066}b", "\u{FEFF}alice", "a\u{200D}b", "tag\u{E0041}"] {
            assert_eq!(validate_name(bad).unwrap_err().code, ErrorCode::BadName, "{bad:?}");
        }
        for good in ["alice", "Zoë", "李雷", "مريم", "🦀 crab"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn the_format_table_is_unicode_general_category_cf() {
        use unicode_general_category::{get_general_category, GeneralCategory};
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let cf = get_general_category(c) == GeneralCategory::Format;
            assert_eq!(is_format(c), cf, "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn server_frames_parse() {
        let welcome = ServerMessage::Welcome { id: "me", peers: vec![PeerInfo { id: "p".into(), name: None }], ice_servers: &[] }.to_json();
        assert_eq!(welcome, r#"{"type":"welcome","id":"me","peers":[{"id":"p"}]}"#);
        assert_eq!(
            parse_server(&welcome).unwrap(),
            ServerEvent::Welcome { id: "me".into(), peers: vec![PeerInfo { id: "p".into(), name: None }], ice_servers: vec![] }
        );
        let turn = IceServer { urls: vec!["turn:192.0.2.1:3478?transport=udp".into()], username: Some("1:me".into()), credential: Some("c".into()) };
        let welcome = ServerMessage::Welcome { id: "me", peers: vec![], ice_servers: std::slice::from_ref(&turn) }.to_json();
        assert_eq!(
            welcome,
            r#"{"type":"welcome","id":"me","peers":[],"iceServers":[{"urls":["turn:192.0.2.1:3478?transport=udp"],"username":"1:me","credential":"c"}]}"#
        );
        assert_eq!(parse_server(&welcome).unwrap(), ServerEvent::Welcome { id: "me".into(), peers: vec![], ice_servers: vec![turn.clone()] });
        let refresh = ServerMessage::IceServers { ice_servers: std::slice::from_ref(&turn) }.to_json();
        assert_eq!(parse_server(&refresh).unwrap(), ServerEvent::IceServers(vec![turn]));
        let data = RawValue::from_string("[1,{\"x\":null}]".into()).unwrap();
        let signal = ServerMessage::Signal { from: "a", data: &data }.to_json();
        match parse_server(&signal).unwrap() {
            ServerEvent::Signal { from, data } => {
                assert_eq!(from, "a");
                assert_eq!(data, "[1,{\"x\":null}]");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = ServerMessage::Error { code: ErrorCode::RoomFull, message: "full" }.to_json();
        assert_eq!(err, r#"{"type":"error","code":"room-full","message":"full"}"#);
        assert!(matches!(parse_server(&err).unwrap(), ServerEvent::Error { code: Some(ErrorCode::RoomFull), .. }));
        assert_eq!(parse_server(r#"{"type":"welcome"}"#).unwrap_err().code, ErrorCode::BadMessage);
    }
}
