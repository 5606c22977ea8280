//! A join rehearsed in memory: two throwaway meshes meet through a scripted server,
//! connect over fake channels, bind (signatures over fingerprints), and exchange a
//! message and a broadcast. Nothing leaves the process and nothing is kept.
//!
//! Why: V8 compiles each wasm function on its first call, on the main thread. A first
//! `Peer.join` used to pay for compiling most of the core (signaling codec, identity
//! signatures, sessions, binding, wire codec) while peers waited; a driver runs this
//! rehearsal while the page is idle, so that code is compiled before it is needed.
//!
//! With a burst ([`rehearse_with_burst`]), the sides then exchange broadcasts,
//! batched as a driver batches them: V8 first runs a function as quickly compiled,
//! slower code, and optimises it on another thread only once it ran enough. A first
//! burst of real messages used to run in that slower code (4 tabs broadcasting 167
//! messages each: ~200 ms the first time, ~145 ms the second).

use std::collections::VecDeque;

use super::config::MeshConfig;
use super::input::Input;
use super::mesh::Mesh;
use super::output::{ConnectionOp, Event, Output, SdpKind, SignalingOp};
use super::wire::{Batch, Payload};
use super::{ConnId, Millis, PeerId};

/// Enough rounds for join, offer/answer, bind and the messages; a bound, so a change
/// in the protocol that stalls the script cannot loop forever. (Not more messages: a
/// burst makes V8 optimise the hot functions, on threads a join right after would
/// want; measured slower.)
const MAX_ROUNDS: usize = 64;

struct Actor {
    mesh: Mesh,
    id: PeerId,
    /// The connection the core created, and whether each description is set.
    conn: Option<ConnId>,
    local: bool,
    remote: bool,
    open: bool,
    joined_peer: bool,
    messages: usize,
    /// Frames for a peer that takes batches, as a driver collects them in a task.
    batch: Batch,
}

/// What happened, for the tests: each side saw the other join and got both messages.
#[derive(Debug, PartialEq, Eq)]
pub struct Rehearsed {
    /// Both sides reported `PeerJoined` for the other.
    pub joined: bool,
    /// Messages delivered, over both sides (a send and a broadcast each way: 4).
    pub messages: usize,
}

/// Runs the rehearsal. Deterministic; the keys are throwaway.
pub fn rehearse() -> Rehearsed {
    rehearse_with_burst(0)
}

/// The rehearsal, then `burst` 1 KiB broadcasts each way (text one way, bytes the
/// other), sent in one go and batched.
pub fn rehearse_with_burst(burst: usize) -> Rehearsed {
    let now = Millis(0);
    let mut actors: Vec<Actor> = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(n, label)| {
            let config = MeshConfig::new("rehearsal", Some((*label).to_owned()), format!("rehearsal-{label}-").repeat(4));
            let id = config.identity.id().clone();
            Actor {
                mesh: Mesh::new(config, n as u64 + 1, now),
                id,
                conn: None,
                local: false,
                remote: false,
                open: false,
                joined_peer: false,
                messages: 0,
                batch: Batch::default(),
            }
        })
        .collect();
    // Frames on their way: to the actor, from the server, or over the fake channel.
    let mut to_actor: VecDeque<(usize, Input<'static>)> = VecDeque::new();
    let mut welcomed = [false, false];
    let mut sent_messages = false;
    // Each broadcast is a frame out and a drain back.
    for _ in 0..MAX_ROUNDS + 4 * burst {
        for n in 0..actors.len() {
            while let Some(output) = actors[n].mesh.poll_output() {
                perform(&mut actors, n, output, &mut to_actor, &mut welcomed);
            }
            // A driver asks after every batch of outputs when to wake the core next.
            let _ = actors[n].mesh.poll_timeout();
            // The end of the task: what was collected goes out.
            if let (Some(conn), Some(frame)) = (actors[n].conn, actors[n].batch.take()) {
                deliver(n, conn, frame, &mut to_actor);
            }
        }
        if actors.iter().all(|a| a.joined_peer) && !sent_messages {
            sent_messages = true;
            let b = actors[1].id.clone();
            let a = actors[0].id.clone();
            let _ = actors[0].mesh.send(now, &b, &Payload::Text("hello from a".into()));
            let _ = actors[1].mesh.send(now, &a, &Payload::Binary(vec![1, 2, 3]));
            let _ = actors[0].mesh.broadcast(now, &Payload::Binary(vec![4; 1024]));
            let _ = actors[1].mesh.broadcast(now, &Payload::Text("x".repeat(1024)));
            let (text, bytes) = (Payload::Text("y".repeat(1024)), Payload::Binary(vec![5; 1024]));
            for _ in 0..burst {
                let _ = actors[0].mesh.broadcast(now, &text);
                let _ = actors[1].mesh.broadcast(now, &bytes);
            }
            continue;
        }
        let Some((n, input)) = to_actor.pop_front() else { break };
        actors[n].mesh.handle(now, input);
        // Both descriptions set on both sides: the fake channels open.
        if actors.iter().all(|a| a.local && a.remote && !a.open) {
            for actor in &mut actors {
                actor.open = true;
                if let Some(conn) = actor.conn {
                    actor.mesh.handle(now, Input::ChannelOpened { conn, max_message_size: 256 * 1024 });
                }
            }
        }
    }
    for actor in &mut actors {
        actor.mesh.leave(now);
        while actor.mesh.poll_output().is_some() {}
    }
    Rehearsed { joined: actors.iter().all(|a| a.joined_peer), messages: actors.iter().map(|a| a.messages).sum() }
}

fn perform(actors: &mut [Actor], n: usize, output: Output, to_actor: &mut VecDeque<(usize, Input<'static>)>, welcomed: &mut [bool; 2]) {
    match output {
        Output::Signaling(SignalingOp::Open { .. }) => to_actor.push_back((n, Input::SignalingOpened)),
        Output::Signaling(SignalingOp::Send(text)) => serve(actors, n, &text, to_actor, welcomed),
        Output::Connection(op) => match op {
            ConnectionOp::Create { conn, .. } => actors[n].conn = Some(conn),
            ConnectionOp::CreateOffer { conn } | ConnectionOp::CreateAnswer { conn } => {
                let kind = if actors[n].remote { SdpKind::Answer } else { SdpKind::Offer };
                actors[n].local = true;
                // A description as a browser writes one, with the certificate's fingerprint.
                let sdp = format!(
                    "v=0\r\no=- {n} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
                     a=ice-ufrag:r{n}\r\na=fingerprint:sha-256 {n:02X}:AB:CD:EF\r\na=setup:actpass\r\na=sctp-port:5000\r\n"
                );
                to_actor.push_back((n, Input::LocalDescription { conn, kind, sdp }));
                let candidate =
                    format!(r#"{{"candidate":"candidate:{n} 1 udp 2113937151 10.0.0.{n} 5000{n} typ host","sdpMid":"0","sdpMLineIndex":0}}"#);
                to_actor.push_back((n, Input::LocalCandidate { conn, candidate }));
            }
            ConnectionOp::SetRemoteDescription { .. } => actors[n].remote = true,
            ConnectionOp::Transmit { conn, frame, batch: Some(limit) } => {
                if let Some(full) = actors[n].batch.push(&frame, limit) {
                    deliver(n, conn, full, to_actor);
                }
            }
            ConnectionOp::Transmit { conn, frame, batch: None } => {
                if let Some(pending) = actors[n].batch.take() {
                    deliver(n, conn, pending, to_actor);
                }
                deliver(n, conn, frame, to_actor);
            }
            _ => {}
        },
        Output::Event(Event::PeerJoined { .. }) => actors[n].joined_peer = true,
        Output::Event(Event::Message { .. }) => actors[n].messages += 1,
        _ => {}
    }
}

/// A frame (or batch) from actor `n` over the fake channel, drained at once.
fn deliver(n: usize, conn: ConnId, frame: Vec<u8>, to_actor: &mut VecDeque<(usize, Input<'static>)>) {
    to_actor.push_back((1 - n, Input::ChannelFrame { conn, frame: frame.into() }));
    to_actor.push_back((n, Input::ChannelDrained { conn, buffered: 0 }));
}

/// The server's side of the script, in the protocol's own frames.
fn serve(actors: &[Actor], n: usize, text: &str, to_actor: &mut VecDeque<(usize, Input<'static>)>, welcomed: &mut [bool; 2]) {
    let other = 1 - n;
    let frame = |s: String| Input::SignalingFrame(s.into());
    if text.starts_with(r#"{"type":"challenge""#) {
        let nonce = format!("{:064x}", n + 1);
        to_actor.push_back((n, frame(format!(r#"{{"type":"challenge","nonce":"{nonce}"}}"#))));
    } else if text.starts_with(r#"{"type":"join""#) {
        let me = actors[n].id.as_str();
        let peers = if welcomed[other] { format!(r#"{{"id":"{}"}}"#, actors[other].id.as_str()) } else { String::new() };
        welcomed[n] = true;
        to_actor.push_back((n, frame(format!(r#"{{"type":"welcome","id":"{me}","peers":[{peers}]}}"#))));
        if welcomed[other] {
            to_actor.push_back((other, frame(format!(r#"{{"type":"peer-joined","peer":{{"id":"{me}"}}}}"#))));
        }
    } else if let Some(data) = text.strip_prefix(r#"{"type":"signal","to":""#).and_then(|rest| rest.split_once(r#"","data":"#)).map(|(_, data)| data)
    {
        let data = data.strip_suffix('}').unwrap_or(data);
        let from = actors[n].id.as_str();
        to_actor.push_back((other, frame(format!(r#"{{"type":"signal","from":"{from}","data":{data}}}"#))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rehearsal_goes_through_join_binding_and_messages() {
        assert_eq!(rehearse(), Rehearsed { joined: true, messages: 4 });
    }

    #[test]
    fn a_burst_rehearsal_delivers_every_broadcast() {
        assert_eq!(rehearse_with_burst(300), Rehearsed { joined: true, messages: 4 + 2 * 300 });
    }
}
