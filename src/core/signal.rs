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

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// Hello, offer and answer; candidates carry raw JSON, which a tagged enum cannot
/// borrow, so they are written and probed separately.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Wire<'a> {
    Hello,
    Restart {
        conn: &'a str,
    },
    Offer {
        conn: &'a str,
        sdp: String,
        #[serde(default, rename = "gen", skip_serializing_if = "is_zero")]
        generation: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pake: Option<String>,
    },
    Answer {
        conn: &'a str,
        sdp: String,
        #[serde(default, rename = "gen", skip_serializing_if = "is_zero")]
        generation: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pake: Option<String>,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A SPAKE2 message: 33 bytes on Ed25519; anything but hex of at most 64 is refused.
fn pake_bytes(text: Option<String>) -> Result<Option<Vec<u8>>, String> {
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
        let data = RawValue::from_string(self.to_json()).ok()?;
        serde_json::to_string(&ClientMessage::Signal { to: to.as_str(), data: &data }).ok()
    }

    pub(crate) fn to_json(&self) -> String {
        let conn_text;
        let wire = match self {
            PeerSignal::Hello => Wire::Hello,
            PeerSignal::Restart { conn } => {
                conn_text = conn.to_string();
                Wire::Restart { conn: &conn_text }
            }
            PeerSignal::Offer { conn, sdp, generation, pake } => {
                conn_text = conn.to_string();
                Wire::Offer { conn: &conn_text, sdp: sdp.clone(), generation: *generation, pake: pake.as_deref().map(to_hex) }
            }
            PeerSignal::Answer { conn, sdp, generation, pake } => {
                conn_text = conn.to_string();
                Wire::Answer { conn: &conn_text, sdp: sdp.clone(), generation: *generation, pake: pake.as_deref().map(to_hex) }
            }
            PeerSignal::Candidate { conn, candidate } => {
                conn_text = conn.to_string();
                return format!(r#"{{"kind":"candidate","conn":"{conn_text}","candidate":{candidate}}}"#);
            }
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    pub(crate) fn parse(json: &str) -> Result<PeerSignal, String> {
        // Tagged enums cannot borrow RawValue, so candidates are recognised by a probe.
        #[derive(Deserialize)]
        struct CandidateProbe<'a> {
            kind: &'a str,
            #[serde(default)]
            conn: Option<&'a str>,
            #[serde(borrow, default)]
            candidate: Option<&'a RawValue>,
        }
        let probe: CandidateProbe<'_> = serde_json::from_str(json).map_err(|e| format!("malformed signal: {e}"))?;
        let conn = |text: Option<&str>| text.and_then(ConnId::parse).ok_or_else(|| "signal with a bad conn id".to_owned());
        match probe.kind {
            "hello" => Ok(PeerSignal::Hello),
            "restart" => Ok(PeerSignal::Restart { conn: conn(probe.conn)? }),
            "candidate" => {
                let candidate = probe.candidate.ok_or("candidate signal without a candidate")?;
                if !candidate.get().starts_with('{') {
                    return Err("candidate must be an object".into());
                }
                Ok(PeerSignal::Candidate { conn: conn(probe.conn)?, candidate: candidate.get().to_owned() })
            }
            "offer" | "answer" => {
                let wire: Wire<'_> = serde_json::from_str(json).map_err(|e| format!("malformed signal: {e}"))?;
                let signal = match wire {
                    Wire::Offer { conn: c, sdp, generation, pake } => {
                        PeerSignal::Offer { conn: conn(Some(c))?, sdp, generation, pake: pake_bytes(pake)? }
                    }
                    Wire::Answer { conn: c, sdp, generation, pake } => {
                        PeerSignal::Answer { conn: conn(Some(c))?, sdp, generation, pake: pake_bytes(pake)? }
                    }
                    _ => return Err("malformed signal".into()),
                };
                match &signal {
                    PeerSignal::Offer { sdp, .. } | PeerSignal::Answer { sdp, .. } if sdp.len() > MAX_SDP_BYTES => Err("sdp too large".into()),
                    _ => Ok(signal),
                }
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
    fn garbage_is_rejected() {
        for bad in [
            "nope",
            "{}",
            r#"{"kind":"offer"}"#,
            r#"{"kind":"offer","conn":"zz","sdp":"x"}"#,
            r#"{"kind":"candidate","conn":"000000000000002a","candidate":"str"}"#,
            r#"{"kind":"fly"}"#,
            r#"{"kind":"restart"}"#,
        ] {
            assert!(PeerSignal::parse(bad).is_err(), "{bad}");
        }
        let huge = format!(r#"{{"kind":"offer","conn":"000000000000002a","sdp":"{}"}}"#, "a".repeat(40_000));
        assert!(PeerSignal::parse(&huge).is_err());
    }
}
