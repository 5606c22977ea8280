//! STUN and TURN servers for clients, with TURN credentials in coturn's REST scheme
//! (`use-auth-secret`): username `<expiry>:<peer id>`, password
//! base64(HMAC-SHA1(shared secret, username)). coturn checks them with the same secret
//! and refuses them after the expiry, so a credential is worth nothing once its session
//! is over; the server sends fresh ones before they expire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::protocol::IceServer;

/// The ICE servers a meshdrop-signal hands to its clients.
#[derive(Clone, Default)]
pub struct IceConfig {
    /// `stun:HOST:PORT` URLs.
    pub stun: Vec<String>,
    /// `turn:` / `turns:` URLs; they need `secret`.
    pub turn: Vec<String>,
    /// The secret shared with the TURN server (`static-auth-secret`).
    pub secret: Option<Vec<u8>>,
    /// How long a credential is good for.
    pub ttl: Duration,
}

impl std::fmt::Debug for IceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("IceConfig").field("stun", &self.stun).field("turn", &self.turn).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl IceConfig {
    /// Whether there is anything to hand out.
    pub fn is_empty(&self) -> bool {
        self.stun.is_empty() && self.turn.is_empty()
    }

    /// Servers for `peer`, with TURN credentials valid for the TTL from `now`.
    pub fn servers_for(&self, peer: &str, now: SystemTime) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun.is_empty() {
            servers.push(IceServer { urls: self.stun.clone(), username: None, credential: None });
        }
        if let (false, Some(secret)) = (self.turn.is_empty(), &self.secret) {
            let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default().saturating_add(self.ttl).as_secs();
            let username = format!("{expiry}:{peer}");
            servers.push(IceServer { urls: self.turn.clone(), credential: Some(credential(secret, &username)), username: Some(username) });
        }
        servers
    }

    /// When to send fresh credentials on a long session: well before they expire.
    pub fn refresh_every(&self) -> Option<Duration> {
        (!self.turn.is_empty() && self.secret.is_some()).then(|| (self.ttl * 3 / 4).max(Duration::from_secs(1)))
    }
}

/// coturn's REST password for `username`.
pub fn credential(secret: &[u8], username: &str) -> String {
    // HMAC accepts a key of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha1>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Parses `1h`, `30m`, `90s` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 1h, 30m or 90s"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    if seconds == 0 {
        return Err("a duration must be at least one second".into());
    }
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_coturns_rest_scheme() {
        // RFC 2202 test case 2 for HMAC-SHA1, base64-encoded.
        assert_eq!(credential(b"Jefe", "what do ya want for nothing?"), "7/zfauXrL6LSdBbV8YTfnCWafHk=");
        let config = IceConfig {
            stun: vec!["stun:192.0.2.1:3478".into()],
            turn: vec!["turn:192.0.2.1:3478?transport=udp".into(), "turn:192.0.2.1:3478?transport=tcp".into()],
            secret: Some(b"s3cret".to_vec()),
            ttl: Duration::from_secs(3600),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let servers = config.servers_for("abcd", now);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, vec!["stun:192.0.2.1:3478".to_string()]);
        assert_eq!(servers[1].username.as_deref(), Some("1003600:abcd"));
        assert_eq!(servers[1].credential.as_deref(), Some(credential(b"s3cret", "1003600:abcd").as_str()));
        assert_eq!(config.refresh_every(), Some(Duration::from_secs(2700)));
        assert!(IceConfig { turn: vec![], ..config.clone() }.refresh_every().is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(parse_duration("0s").is_err() && parse_duration("1y").is_err() && parse_duration("h").is_err());
    }
}
