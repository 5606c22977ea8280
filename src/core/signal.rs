//! What peers say to each other through the signaling server: the `data` of a
//! `signal` frame. The server forwards it untouched, so only peers parse it, and a
//! hostile peer's garbage is rejected here.
//!
//! ```json
//! {"kind":"hello"}                                       answerer: "please offer me"
//! {"kind":"restart","conn":"<16 hex>"}                   answerer: "my path to you is
//!                                                        down: restart ICE now"
//! {"kind":"offer","conn":"<16 hex>","sdp":"v=0...","gen":1}     gen: 0 (left out) first,
//! {"kind":"answer","conn":"<16 hex>","sdp":"v=0...","gen":1}    then +1 per ICE restart
//! {"kind":"candidate","conn":"<16 hex>","candidate":{RTCIceCandidateInit}}
//! ```
//!
//! In a room with a secret, a connection's first offer and answer also carry
//! `"pake":"<hex>"`, that side's SPAKE2 message (`room_secret.rs`).

use meshdrop_signal::json::{JsonError, Object, ObjectWriter};
use meshdrop_signal::protocol::{to_hex, ClientMessage};

use super::{ConnId, PeerId};

/// Largest SDP we accept from a peer; real data-channel SDPs are ~1 KiB.
const MAX_SDP_BYTES: usize = 32 * 1024;

#[derive(Debug, PartialEq)]
pub(crate) enum PeerSignal {
    Hello,
    /// The answerer lost its path on `conn` (only the offerer restarts ICE).
    Restart {
        conn: ConnId,
    },
    /// `generation` counts the offers on one connection: 0 first, one more for every
    /// ICE restart.
    Offer {
        conn: ConnId,
        sdp: String,
        generation: u32,
        pake: Option<Vec<u8>>,
    },
    Answer {
        conn: ConnId,
        sdp: String,
        generation: u32,
        pake: Option<Vec<u8>>,
    },
    /// The candidate as raw JSON (an `RTCIceCandidateInit`), handed to the browser.
    Candidate {
        conn: ConnId,
        candidate: String,
    },
}

/// A SPAKE2 message: 33 bytes on Ed25519; anything but hex of at most 64 is refused.
fn pake_bytes(text: Option<&str>) -> Result<Option<Vec<u8>>, String> {
    let Some(text) = text else { return Ok(None) };
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    if text.len() > 128 || text.len() % 2 != 0 {
        return Err("malformed pake message".into());
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .map(Some)
        .ok_or_else(|| "malformed pake message".into())
}

impl PeerSignal {
    /// The signaling frame that carries this signal to `to`.
    pub(crate) fn frame_to(&self, to: &PeerId) -> Option<String> {
        Some(ClientMessage::Signal { to: to.as_str(), data: &self.to_json() }.to_json())
    }

    pub(crate) fn to_json(&self) -> String {
        let description = |kind: &str, conn: &ConnId, sdp: &str, generation: u32, pake: &Option<Vec<u8>>| {
            let object = ObjectWriter::new().str("kind", kind).str("conn", &conn.to_string()).str("sdp", sdp);
            let object = if generation == 0 { object } else { object.u32("gen", generation) };
            object.opt_str("pake", pake.as_deref().map(to_hex).as_deref()).finish()
        };
        match self {
            PeerSignal::Hello => ObjectWriter::new().str("kind", "hello").finish(),
            PeerSignal::Restart { conn } => ObjectWriter::new().str("kind", "restart").str("conn", &conn.to_string()).finish(),
            PeerSignal::Offer { conn, sdp, generation, pake } => description("offer", conn, sdp, *generation, pake),
            PeerSignal::Answer { conn, sdp, generation, pake } => description("answer", conn, sdp, *generation, pake),
            PeerSignal::Candidate { conn, candidate } => {
                ObjectWriter::new().str("kind", "candidate").str("conn", &conn.to_string()).raw("candidate", candidate).finish()
            }
        }
    }

    pub(crate) fn parse(json: &str) -> Result<PeerSignal, String> {
        let malformed = |err: JsonError| format!("malformed signal: {err}");
        let wire = Object::parse(json).map_err(malformed)?;
        let kind = wire.str("kind").map_err(malformed)?.ok_or("malformed signal: no `kind`")?;
        let conn = || wire.str("conn").map_err(malformed)?.as_deref().and_then(ConnId::parse).ok_or_else(|| "signal with a bad conn id".to_owned());
        match kind.as_ref() {
            "hello" => Ok(PeerSignal::Hello),
            "restart" => Ok(PeerSignal::Restart { conn: conn()? }),
            "candidate" => {
                let candidate = wire.raw("candidate").map_err(malformed)?.ok_or("candidate signal without a candidate")?;
                if !candidate.starts_with('{') {
                    return Err("candidate must be an object".into());
                }
                Ok(PeerSignal::Candidate { conn: conn()?, candidate: candidate.to_owned() })
            }
            "offer" | "answer" => {
                let conn = conn()?;
                let sdp = wire.str("sdp").map_err(malformed)?.ok_or("malformed signal: no `sdp`")?;
                if sdp.len() > MAX_SDP_BYTES {
                    return Err("sdp too large".into());
                }
                let sdp = sdp.into_owned();
                let generation = wire.u32("gen").map_err(malformed)?.unwrap_or(0);
                let pake = pake_bytes(wire.str("pake").map_err(malformed)?.as_deref())?;
                Ok(if kind == "offer" {
                    PeerSignal::Offer { conn, sdp, generation, pake }
                } else {
                    PeerSignal::Answer { conn, sdp, generation, pake }
                })
            }
            other => Err(format!("unknown signal kind `{}`", other.chars().take(32).collect::<String>())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let conn = ConnId::from_raw(42);
        for s in [
            PeerSignal::Hello,
            PeerSignal::Restart { conn },
            PeerSignal::Offer { conn, sdp: "v=0\r\na=x".into(), generation: 0, pake: Some(vec![1, 2, 3]) },
            PeerSignal::Offer { conn, sdp: "v=0\r\na=x".into(), generation: 2, pake: None },
            PeerSignal::Answer { conn, sdp: "v=0".into(), generation: 1, pake: None },
            PeerSignal::Candidate { conn, candidate: r#"{"candidate":"c","sdpMid":"0"}"#.into() },
        ] {
            assert_eq!(PeerSignal::parse(&s.to_json()).unwrap(), s);
        }
    }

    #[test]
    fn signals_are_written_as_before_byte_for_byte() {
        // What serde_json wrote for these until 2026-12: peers of either version must
        // understand each other.
        let conn = ConnId::from_raw(42);
        let offer = PeerSignal::Offer { conn, sdp: "v=0\r\na=\"x\"".into(), generation: 2, pake: Some(vec![1, 2, 0xab]) };
        assert_eq!(offer.to_json(), r#"{"kind":"offer","conn":"000000000000002a","sdp":"v=0\r\na=\"x\"","gen":2,"pake":"0102ab"}"#);
        let answer = PeerSignal::Answer { conn, sdp: "v=0".into(), generation: 0, pake: None };
        assert_eq!(answer.to_json(), r#"{"kind":"answer","conn":"000000000000002a","sdp":"v=0"}"#);
        assert_eq!(PeerSignal::Hello.to_json(), r#"{"kind":"hello"}"#);
        assert_eq!(PeerSignal::Restart { conn }.to_json(), r#"{"kind":"restart","conn":"000000000000002a"}"#);
        let frame = PeerSignal::Hello.frame_to(&PeerId::new("p1")).unwrap();
        assert_eq!(frame, r#"{"type":"signal","to":"p1","data":{"kind":"hello"}}"#);
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            "nope",
            "{}",
            r#"{"kind":"offer"}"#,
            r#"{"kind":"offer","conn":"zz","sdp":"x"}"#,
            r#"{"kind":"candidate","conn":"000000000000002a","candidate":"str"}"#,
            r#"{"kind":"fly"}"#,
            r#"{"kind":"restart"}"#,
            r#"{"kind":"offer","conn":"000000000000002a","sdp":1}"#,
            r#"{"kind":"offer","conn":"000000000000002a","sdp":"x","gen":-1}"#,
            r#"{"kind":"offer","conn":"000000000000002a","sdp":"x","pake":"0g"}"#,
            r#"{"kind":"hello","kind":"hello"}"#,
            r#"{"kind":"hello"} trailing"#,
        ] {
            assert!(PeerSignal::parse(bad).is_err(), "{bad}");
        }
        let huge = format!(r#"{{"kind":"offer","conn":"000000000000002a","sdp":"{}"}}"#, "a".repeat(40_000));
        assert!(PeerSignal::parse(&huge).is_err());
    }
}
