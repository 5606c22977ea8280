//! The signaling link: joining with our key (challenge, then a signed join), keeping a
//! quiet link honest (`ping` when idle), reconnecting with backoff and failing over to
//! the next server, and stopping for good when another connection takes our id. What
//! the server says about the room comes back to the mesh as [`RoomNews`]; the link
//! never sees peers or channels.

use std::collections::VecDeque;

use meshdrop_signal::protocol::{parse_server, to_hex, ClientMessage, ServerEvent};

use super::error::JoinError;
use super::identity::Identity;
use super::output::{warn, ConnectionOp, Event, Output, SignalingOp, SignalingState};
use super::rng::Rng;
use super::time::backoff;
use super::{Millis, PeerId};

/// Largest frame taken from the signaling server: a welcome to a full room of 64 is
/// about 8 KiB; a server may allow larger rooms, but no frame of megabytes.
const MAX_SERVER_FRAME: usize = 1024 * 1024;

/// The close code (RFC 6455 1008, policy) and reason prefix with which the server
/// closes a connection whose id another connection took over.
const REPLACED_CLOSE: (u16, &str) = (1008, "replaced");
/// The server is restarting or draining: reconnect at once (see PROTOCOL.md).
const SERVICE_RESTART_CLOSE: u16 = 1012;
/// The error code the server sends before that close.
const REPLACED_ERROR: &str = "replaced";

/// A joined link silent this long is asked whether it is alive (`ping`). Browsers
/// cannot see WebSocket pings, and a connection whose NAT mapping went away (a new
/// public address, a sleeping laptop) stays open to them for minutes.
pub const SIGNALING_IDLE_MS: u64 = 20_000;
/// A `ping` not answered by any frame within this long means the link is dead: it is
/// closed and joined again.
pub const PONG_TIMEOUT_MS: u64 = 3_000;
/// A WebSocket that has not opened within this long is given up (and tried again, or
/// the first join fails): a connect whose packets go nowhere hangs for minutes in a
/// browser. Each step the server takes towards a welcome (the socket opened, its
/// challenge) gives the next as long again, so a busy tab or server that answers slowly
/// is waited for (a 32-tab join on two cores took up to 9 s to be welcomed): at most
/// three times this in all.
pub const SIGNALING_CONNECT_MS: u64 = 10_000;

/// What the server told us about the room, for the peers.
#[derive(Debug)]
pub(crate) enum RoomNews {
    /// Joined (again): our id, and who is there.
    Welcomed {
        me: PeerId,
        roster: Vec<(PeerId, Option<String>)>,
    },
    Joined {
        peer: PeerId,
        name: Option<String>,
    },
    Left(PeerId),
    Signal {
        from: PeerId,
        data: String,
    },
    /// Signals cannot go out until the next welcome.
    Lost,
}

/// Who we join as.
#[derive(Debug, Clone)]
pub(crate) struct JoinAs {
    pub(crate) room: String,
    pub(crate) name: Option<String>,
    pub(crate) identity: Identity,
    /// How many servers the driver can open (at least one).
    pub(crate) servers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Joined,
    Waiting {
        until: Millis,
    },
    /// Signaling ended for good without `leave()`: another connection joined with our
    /// id. Reconnecting would only take it back and start a tug of war.
    Stopped,
    Closed,
}

#[derive(Debug)]
pub(crate) struct SignalingLink {
    join: JoinAs,
    rng: Rng,
    /// Our id, once welcomed: it stays ours across reconnects.
    id: Option<PeerId>,
    state: State,
    reconnect_attempt: u32,
    /// The signaling server in use (an index into the driver's list).
    server: usize,
    /// Servers that failed us in a row before a welcome.
    failed_servers: usize,
    /// When the server last sent us anything.
    heard: Millis,
    /// Connecting, or a `ping` is out: the link is dead unless the server says
    /// something (a welcome, when connecting) by then.
    due: Option<Millis>,
}

impl SignalingLink {
    /// Starts connecting to the first server.
    pub(crate) fn new(join: JoinAs, seed: u64, now: Millis, out: &mut VecDeque<Output>) -> Self {
        out.push_back(Output::Signaling(SignalingOp::Open { server: 0 }));
        SignalingLink {
            join,
            rng: Rng::new(seed),
            id: None,
            state: State::Connecting,
            reconnect_attempt: 0,
            server: 0,
            failed_servers: 0,
            heard: now,
            due: Some(now + SIGNALING_CONNECT_MS),
        }
    }

    pub(crate) fn id(&self) -> Option<&PeerId> {
        self.id.as_ref()
    }

    /// The link as users see it.
    pub(crate) fn state(&self) -> SignalingState {
        match self.state {
            State::Joined => SignalingState::Connected,
            State::Closed | State::Stopped => SignalingState::Closed,
            State::Connecting | State::Waiting { .. } => SignalingState::Reconnecting,
        }
    }

    /// `leave` was called, or the first join failed.
    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub(crate) fn deadline(&self) -> Option<Millis> {
        match self.state {
            State::Waiting { until } => Some(until),
            State::Joined => Some(self.due.unwrap_or(self.heard + SIGNALING_IDLE_MS)),
            State::Connecting => self.due,
            State::Stopped | State::Closed => None,
        }
    }

    /// The WebSocket opened: ask for a nonce to sign, to join (again) with our key so
    /// the id stays the same; unless the driver `asked` already.
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn opened(&mut self, now: Millis, asked: bool, out: &mut VecDeque<Output>) {
        if self.state != State::Connecting {
            return;
        }
        self.due = Some(now + SIGNALING_CONNECT_MS);
        if !asked {
            send(out, &ClientMessage::Challenge);
        }
    }

    /// Asks the server for a `pong` (unless already waiting for one): any frame back
    /// shows the link is alive. Called when idle, and when a peer's path went away
    /// (our network may have changed, and an ICE restart needs signaling).
    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn probe(&mut self, now: Millis, out: &mut VecDeque<Output>) {
        if self.state == State::Joined && self.due.is_none() {
            send(out, &ClientMessage::Ping);
            self.due = Some(now + PONG_TIMEOUT_MS);
        }
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn closed(&mut self, now: Millis, close: Option<(u16, &str)>, out: &mut VecDeque<Output>) -> Option<RoomNews> {
        if let Some((code, reason)) = close {
            if code == REPLACED_CLOSE.0 && reason.starts_with(REPLACED_CLOSE.1) {
                return self.stop(format!("the signaling server closed us: {reason}"), out);
            }
        }
        match self.state {
            State::Connecting if self.id.is_none() => {
                self.first_join_failed(now, out);
                None
            }
            // The server is going away and asks us to come back (to another instance,
            // with the same id): at once, not after a backoff.
            State::Connecting | State::Joined if close.is_some_and(|(code, _)| code == SERVICE_RESTART_CLOSE) => {
                let news = self.schedule_reconnect(now, out);
                self.state = State::Waiting { until: now };
                news
            }
            State::Connecting | State::Joined => self.schedule_reconnect(now, out),
            State::Waiting { .. } | State::Stopped | State::Closed => None,
        }
    }

    #[inline(never)] // see `Mesh::handle`
    pub(crate) fn frame(&mut self, now: Millis, text: &str, out: &mut VecDeque<Output>) -> Option<RoomNews> {
        self.heard = now;
        // Connecting, only the welcome counts (an error frame may precede the close).
        if self.state == State::Joined {
            self.due = None;
        }
        if text.len() > MAX_SERVER_FRAME {
            warn(out, format!("ignored a {}-byte frame from the signaling server", text.len()));
            return None;
        }
        let event = match parse_server(text) {
            Ok(event) => event,
            Err(err) => {
                warn(out, format!("bad frame from signaling server: {err}"));
                return None;
            }
        };
        match event {
            ServerEvent::Welcome { id, peers, ice_servers } => {
                if !ice_servers.is_empty() {
                    out.push_back(Output::Connection(ConnectionOp::UseIceServers(ice_servers)));
                }
                let roster = peers.into_iter().map(|p| (PeerId::new(p.id), p.name)).collect();
                self.welcomed(PeerId::new(id), roster, out)
            }
            ServerEvent::IceServers(servers) => {
                out.push_back(Output::Connection(ConnectionOp::UseIceServers(servers)));
                None
            }
            ServerEvent::PeerJoined(info) if self.state == State::Joined => Some(RoomNews::Joined { peer: PeerId::new(info.id), name: info.name }),
            ServerEvent::PeerLeft { id } => Some(RoomNews::Left(PeerId::new(id))),
            ServerEvent::Signal { from, data } if self.state != State::Closed => Some(RoomNews::Signal { from: PeerId::new(from), data }),
            ServerEvent::PeerJoined(_) | ServerEvent::Signal { .. } | ServerEvent::Pong => None,
            ServerEvent::Challenge { nonce } => {
                self.challenged(now, &nonce, out);
                None
            }
            ServerEvent::Error { code_text, message, .. } if code_text == REPLACED_ERROR => {
                self.stop(format!("the signaling server closed us: {message}"), out)
            }
            ServerEvent::Error { code_text, message, .. } => match self.state {
                State::Connecting if self.id.is_none() => {
                    out.push_back(Output::Signaling(SignalingOp::Close));
                    self.fail_join(JoinError::Refused { code: code_text, message }, out);
                    None
                }
                State::Connecting => {
                    warn(out, format!("signaling server refused to rejoin: {code_text}: {message}"));
                    out.push_back(Output::Signaling(SignalingOp::Close));
                    self.schedule_reconnect(now, out)
                }
                _ => {
                    warn(out, format!("signaling server: {code_text}: {message}"));
                    None
                }
            },
        }
    }

    /// Reconnects when due, gives up on a connect or a `ping` that got no answer in
    /// time, and probes an idle link.
    pub(crate) fn timeout(&mut self, now: Millis, out: &mut VecDeque<Output>) -> Option<RoomNews> {
        let overdue = self.due.is_some_and(|due| now >= due);
        match self.state {
            State::Waiting { until } if now >= until => self.open(now, out),
            State::Connecting if overdue => {
                out.push_back(Output::Signaling(SignalingOp::Close));
                if self.id.is_none() {
                    self.first_join_failed(now, out);
                    return None;
                }
                warn(out, format!("the signaling server did not welcome us (no step towards it within {SIGNALING_CONNECT_MS} ms); trying again"));
                return self.schedule_reconnect(now, out);
            }
            State::Joined if overdue => {
                warn(out, format!("the signaling server did not answer within {PONG_TIMEOUT_MS} ms; connecting again"));
                out.push_back(Output::Signaling(SignalingOp::Close));
                return self.schedule_reconnect(now, out);
            }
            State::Joined if now >= self.heard + SIGNALING_IDLE_MS => self.probe(now, out),
            _ => {}
        }
        None
    }

    /// Closes the link for good (the user left).
    pub(crate) fn leave(&mut self, out: &mut VecDeque<Output>) {
        if self.state == State::Closed {
            return;
        }
        out.push_back(Output::Signaling(SignalingOp::Close));
        if self.id.is_none() {
            out.push_back(Output::Event(Event::JoinFailed(JoinError::Cancelled)));
        }
        self.state = State::Closed;
        out.push_back(Output::Event(Event::Signaling { state: SignalingState::Closed, reason: None }));
    }

    /// The server's nonce: join, proving we hold the key our id derives from.
    fn challenged(&mut self, now: Millis, nonce: &str, out: &mut VecDeque<Output>) {
        if self.state != State::Connecting {
            return;
        }
        self.due = Some(now + SIGNALING_CONNECT_MS);
        let join = &self.join;
        let key = to_hex(&join.identity.public_key());
        let proof = to_hex(&join.identity.join_proof(nonce, &join.room));
        send(out, &ClientMessage::Join { room: &join.room, name: join.name.as_deref(), secret: None, key: Some(&key), proof: Some(&proof) });
    }

    fn welcomed(&mut self, id: PeerId, roster: Vec<(PeerId, Option<String>)>, out: &mut VecDeque<Output>) -> Option<RoomNews> {
        if self.state != State::Connecting {
            return None;
        }
        self.state = State::Joined;
        self.due = None;
        self.reconnect_attempt = 0;
        self.failed_servers = 0;
        match &self.id {
            None => {
                self.id = Some(id.clone());
                out.push_back(Output::Event(Event::Joined { id: id.clone() }));
            }
            Some(ours) if *ours != id => warn(out, format!("signaling server gave us a new id {id}; keeping {ours}")),
            Some(_) => {}
        }
        out.push_back(Output::Event(Event::Signaling { state: SignalingState::Connected, reason: None }));
        Some(RoomNews::Welcomed { me: self.id.clone().unwrap_or(id), roster })
    }

    /// Another connection took our id over (the same identity open elsewhere): stop
    /// signaling for good and say so; the peers we are connected to stay.
    fn stop(&mut self, reason: String, out: &mut VecDeque<Output>) -> Option<RoomNews> {
        if matches!(self.state, State::Stopped | State::Closed) {
            return None;
        }
        if self.id.is_none() {
            self.fail_join(JoinError::Refused { code: REPLACED_ERROR.into(), message: reason }, out);
            return None;
        }
        self.state = State::Stopped;
        out.push_back(Output::Signaling(SignalingOp::Close));
        warn(out, format!("{reason}; another tab or device uses this identity, so this one stops signaling (open connections stay)"));
        out.push_back(Output::Event(Event::Signaling { state: SignalingState::Closed, reason: Some(reason) }));
        Some(RoomNews::Lost)
    }

    fn fail_join(&mut self, err: JoinError, out: &mut VecDeque<Output>) {
        self.state = State::Closed;
        out.push_back(Output::Event(Event::JoinFailed(err)));
        out.push_back(Output::Event(Event::Signaling { state: SignalingState::Closed, reason: None }));
    }

    fn open(&mut self, now: Millis, out: &mut VecDeque<Output>) {
        self.state = State::Connecting;
        self.due = Some(now + SIGNALING_CONNECT_MS);
        out.push_back(Output::Signaling(SignalingOp::Open { server: self.server }));
    }

    /// The next server in the list (the same one when there is only one).
    fn next_server(&mut self) {
        self.server = (self.server + 1) % self.join.servers.max(1);
    }

    /// No welcome yet and this server failed: the next one, until each has failed.
    fn first_join_failed(&mut self, now: Millis, out: &mut VecDeque<Output>) {
        self.failed_servers += 1;
        if self.failed_servers >= self.join.servers.max(1) {
            return self.fail_join(JoinError::Unreachable, out);
        }
        self.next_server();
        self.open(now, out);
    }

    fn schedule_reconnect(&mut self, now: Millis, out: &mut VecDeque<Output>) -> Option<RoomNews> {
        self.next_server();
        if self.state == State::Joined {
            out.push_back(Output::Event(Event::Signaling { state: SignalingState::Reconnecting, reason: None }));
        }
        self.due = None;
        let delay = backoff(self.reconnect_attempt, 250, 10_000, self.rng.next_u64());
        self.reconnect_attempt = self.reconnect_attempt.saturating_add(1);
        self.state = State::Waiting { until: now + delay };
        Some(RoomNews::Lost)
    }
}

/// The frame that asks the server for a nonce to sign (what
/// [`Input::SignalingOpened`](super::Input::SignalingOpened) makes the core send), for a
/// driver that sends it itself before the core exists.
pub const CHALLENGE_REQUEST: &str = r#"{"type":"challenge"}"#;

fn send(out: &mut VecDeque<Output>, message: &ClientMessage<'_>) {
    out.push_back(Output::Signaling(SignalingOp::Send(message.to_json())));
}

#[cfg(test)]
mod tests {
    use super::*;

    const WELCOME: &str = r#"{"type":"welcome","id":"me","peers":[{"id":"p"}]}"#;

    fn link(servers: usize) -> (SignalingLink, VecDeque<Output>) {
        let join = JoinAs { room: "room".into(), name: None, identity: Identity::from_secret(&"s".repeat(32)), servers };
        let mut out = VecDeque::new();
        let link = SignalingLink::new(join, 7, Millis(0), &mut out);
        (link, out)
    }

    fn opens(out: &VecDeque<Output>) -> Vec<usize> {
        out.iter().filter_map(|o| if let Output::Signaling(SignalingOp::Open { server }) = o { Some(*server) } else { None }).collect()
    }

    fn sent(out: &VecDeque<Output>) -> Vec<&str> {
        out.iter().filter_map(|o| if let Output::Signaling(SignalingOp::Send(text)) = o { Some(text.as_str()) } else { None }).collect()
    }

    #[test]
    fn a_challenge_is_answered_with_a_signed_join_and_the_welcome_becomes_news() {
        let (mut link, mut out) = link(1);
        link.opened(Millis(0), false, &mut out);
        assert_eq!(sent(&out), [CHALLENGE_REQUEST], "the core asks with the frame a driver may send for it");
        let nonce = "ab".repeat(32);
        assert!(link.frame(Millis(5), &format!(r#"{{"type":"challenge","nonce":"{nonce}"}}"#), &mut out).is_none());
        let join = sent(&out).into_iter().find(|text| text.contains(r#""type":"join""#)).expect("a join");
        assert!(join.contains(r#""proof":""#) && join.contains(r#""room":"room""#), "{join}");
        let news = link.frame(Millis(9), WELCOME, &mut out);
        assert!(matches!(news, Some(RoomNews::Welcomed { ref me, ref roster }) if me.as_str() == "me" && roster.len() == 1), "{news:?}");
        assert_eq!(link.state(), SignalingState::Connected);
        assert_eq!(link.id().map(PeerId::as_str), Some("me"));
    }

    #[test]
    fn a_socket_the_driver_already_asked_on_gets_no_second_request_and_its_challenge_is_answered() {
        let (mut link, mut out) = link(1);
        out.clear();
        link.opened(Millis(0), true, &mut out);
        assert!(sent(&out).is_empty(), "asked once, by the driver: {:?}", sent(&out));
        link.frame(Millis(3), &format!(r#"{{"type":"challenge","nonce":"{}"}}"#, "cd".repeat(32)), &mut out);
        let frames = sent(&out);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert!(frames[0].contains(r#""type":"join""#) && frames[0].contains(r#""proof":""#), "{frames:?}");
        assert!(matches!(link.frame(Millis(4), WELCOME, &mut out), Some(RoomNews::Welcomed { .. })));
    }

    #[test]
    fn an_idle_link_is_pinged_and_one_that_stays_silent_fails_over_to_the_next_server() {
        let (mut link, mut out) = link(2);
        link.opened(Millis(0), false, &mut out);
        link.frame(Millis(0), WELCOME, &mut out);
        out.clear();
        assert_eq!(link.deadline(), Some(Millis(SIGNALING_IDLE_MS)));
        assert!(link.timeout(Millis(SIGNALING_IDLE_MS), &mut out).is_none());
        assert_eq!(sent(&out), [r#"{"type":"ping"}"#]);
        let due = Millis(SIGNALING_IDLE_MS + PONG_TIMEOUT_MS);
        assert_eq!(link.deadline(), Some(due));
        assert!(matches!(link.timeout(due, &mut out), Some(RoomNews::Lost)));
        assert_eq!(link.state(), SignalingState::Reconnecting);
        let Some(retry) = link.deadline() else { panic!("a reconnect is scheduled") };
        out.clear();
        link.timeout(retry, &mut out);
        assert_eq!(opens(&out), [1], "the next server");
    }

    fn failed(out: &VecDeque<Output>) -> bool {
        out.iter().any(|o| matches!(o, Output::Event(Event::JoinFailed(JoinError::Unreachable))))
    }

    #[test]
    fn a_server_that_answers_slowly_is_waited_for_step_by_step() {
        let (mut link, mut out) = link(1);
        let step = SIGNALING_CONNECT_MS - 1;
        assert_eq!(link.deadline(), Some(Millis(SIGNALING_CONNECT_MS)), "the socket has this long to open");
        link.opened(Millis(step), false, &mut out);
        assert_eq!(link.deadline(), Some(Millis(step + SIGNALING_CONNECT_MS)), "and the challenge as long again");
        link.timeout(Millis(SIGNALING_CONNECT_MS), &mut out);
        let nonce = "ab".repeat(32);
        link.frame(Millis(2 * step), &format!(r#"{{"type":"challenge","nonce":"{nonce}"}}"#), &mut out);
        // A frame that is not a step (ICE servers) gives no more time.
        link.frame(Millis(3 * step - 1), r#"{"type":"ice-servers","iceServers":[]}"#, &mut out);
        assert_eq!(link.deadline(), Some(Millis(2 * step + SIGNALING_CONNECT_MS)));
        link.timeout(Millis(2 * SIGNALING_CONNECT_MS), &mut out);
        assert!(!failed(&out), "{out:?}");
        assert!(matches!(link.frame(Millis(3 * step), WELCOME, &mut out), Some(RoomNews::Welcomed { .. })));
        assert_eq!(link.state(), SignalingState::Connected);
    }

    #[test]
    fn a_server_that_opens_and_then_says_nothing_is_given_up() {
        let (mut link, mut out) = link(1);
        link.opened(Millis(100), false, &mut out);
        link.timeout(Millis(100 + SIGNALING_CONNECT_MS - 1), &mut out);
        assert!(!failed(&out));
        link.timeout(Millis(100 + SIGNALING_CONNECT_MS), &mut out);
        assert!(failed(&out), "{out:?}");
        assert!(link.is_closed());
    }

    #[test]
    fn a_first_join_fails_only_after_every_server_failed() {
        let (mut link, mut out) = link(3);
        link.closed(Millis(1), None, &mut out);
        link.closed(Millis(2), None, &mut out);
        assert_eq!(opens(&out), [0, 1, 2]);
        assert!(!link.is_closed());
        link.closed(Millis(3), None, &mut out);
        assert!(link.is_closed());
        assert!(out.iter().any(|o| matches!(o, Output::Event(Event::JoinFailed(JoinError::Unreachable)))));
    }

    #[test]
    fn a_replaced_link_stops_for_good_and_a_draining_server_is_left_at_once() {
        let (mut link, mut out) = link(2);
        link.frame(Millis(0), WELCOME, &mut out);
        assert!(matches!(link.closed(Millis(10), Some((SERVICE_RESTART_CLOSE, "draining")), &mut out), Some(RoomNews::Lost)));
        assert_eq!(link.deadline(), Some(Millis(10)), "no backoff when the server asks us to go");
        out.clear();
        link.timeout(Millis(10), &mut out);
        link.frame(Millis(11), WELCOME, &mut out);
        assert!(matches!(link.closed(Millis(20), Some((1008, "replaced by another connection")), &mut out), Some(RoomNews::Lost)));
        assert_eq!(link.state(), SignalingState::Closed);
        assert_eq!(link.deadline(), None, "no reconnect: that would take the id back");
        assert!(!link.is_closed(), "stopped, not left");
    }
}
