//! Room membership and message routing as a plain data structure.
//!
//! No IO, no locks, no awaits: every method takes an event and returns the frames to
//! deliver, addressed to connection handles. The WebSocket layer owns the lock and the
//! delivery; this module owns the rules (isolation between rooms, capacity, replacement
//! of a reconnecting peer), so they are unit-testable without a socket.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::protocol::{ErrorCode, IceServer, PeerInfo, ProtocolError, ServerMessage};

/// Frames to hand to connections, in order.
pub type Outbox<C> = Vec<(C, String)>;

/// What a successful join produced.
#[derive(Debug)]
pub struct Joined<C> {
    /// Frames to deliver: the welcome to the joiner, presence to the others.
    pub outbox: Outbox<C>,
    /// The connection that held the same peer id before and must now be closed.
    pub replaced: Option<C>,
}

struct Member<C> {
    name: Option<String>,
    conn: C,
}

/// Every room and who is in it. `C` is a connection handle (a sender in the server, a
/// plain number in tests); it must compare equal only to itself.
pub struct Rooms<C> {
    rooms: HashMap<String, HashMap<String, Member<C>>>,
    max_room_peers: usize,
}

impl<C: Clone + PartialEq> Rooms<C> {
    /// No rooms yet; each room holds at most `max_room_peers` peers.
    pub fn new(max_room_peers: usize) -> Self {
        Rooms { rooms: HashMap::new(), max_room_peers: max_room_peers.max(1) }
    }

    /// Adds peer `id` on `conn` to `room`. A peer that joins again with the same id
    /// (it reconnected before its old connection timed out) replaces the old connection:
    /// the others see it leave and join again.
    /// `ice_servers` go to the joiner with its welcome.
    pub fn join(&mut self, conn: C, room: &str, id: &str, name: Option<&str>, ice_servers: &[IceServer]) -> Result<Joined<C>, ProtocolError> {
        let members = self.rooms.entry(room.to_owned()).or_default();
        let rejoining = members.contains_key(id);
        if !rejoining && members.len() >= self.max_room_peers {
            if members.is_empty() {
                self.rooms.remove(room);
            }
            return Err(ProtocolError::new(ErrorCode::RoomFull, format!("room is full ({} peers)", self.max_room_peers)));
        }
        let mut outbox = Vec::new();
        let replaced = members.remove(id).map(|old| {
            let left = ServerMessage::PeerLeft { id }.to_json();
            outbox.extend(members.values().map(|m| (m.conn.clone(), left.clone())));
            old.conn
        });
        let peers = members.iter().map(|(peer_id, m)| PeerInfo { id: peer_id.clone(), name: m.name.clone() }).collect();
        outbox.push((conn.clone(), ServerMessage::Welcome { id, peers, ice_servers }.to_json()));
        let joined = ServerMessage::PeerJoined { peer: PeerInfo { id: id.to_owned(), name: name.map(str::to_owned) } }.to_json();
        outbox.extend(members.values().map(|m| (m.conn.clone(), joined.clone())));
        members.insert(id.to_owned(), Member { name: name.map(str::to_owned), conn });
        Ok(Joined { outbox, replaced })
    }

    /// Removes peer `id` if it is still held by `conn` (a replaced connection closing
    /// late must not remove its successor) and tells the rest of the room.
    pub fn leave(&mut self, room: &str, id: &str, conn: &C) -> Outbox<C> {
        let Some(members) = self.rooms.get_mut(room) else { return Vec::new() };
        if members.get(id).is_none_or(|m| &m.conn != conn) {
            return Vec::new();
        }
        members.remove(id);
        if members.is_empty() {
            self.rooms.remove(room);
            return Vec::new();
        }
        let left = ServerMessage::PeerLeft { id }.to_json();
        members.values().map(|m| (m.conn.clone(), left.clone())).collect()
    }

    /// Routes a signal from `from` to `to`, both in `room`. The server stamps `from`, so
    /// a peer cannot speak for another; a `to` outside the room is as unknown as one
    /// that never existed, so rooms cannot be probed.
    pub fn relay(&self, room: &str, from: &str, to: &str, data: &RawValue) -> Result<(C, String), ProtocolError> {
        let target = self
            .rooms
            .get(room)
            .and_then(|members| members.get(to))
            .ok_or_else(|| ProtocolError::new(ErrorCode::UnknownPeer, "no such peer in this room"))?;
        Ok((target.conn.clone(), ServerMessage::Signal { from, data }.to_json()))
    }

    /// How many peers `room` holds.
    pub fn room_len(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, HashMap::len)
    }

    /// How many rooms have at least one peer.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_server, ServerEvent};

    fn events(outbox: &Outbox<u32>, conn: u32) -> Vec<ServerEvent> {
        outbox.iter().filter(|(c, _)| *c == conn).map(|(_, f)| parse_server(f).unwrap()).collect()
    }

    #[test]
    fn join_welcomes_and_announces() {
        let mut rooms = Rooms::new(8);
        let a = rooms.join(1, "r", "a", Some("alice"), &[]).unwrap();
        assert_eq!(events(&a.outbox, 1), vec![ServerEvent::Welcome { id: "a".into(), peers: vec![], ice_servers: vec![] }]);
        let b = rooms.join(2, "r", "b", None, &[]).unwrap();
        assert_eq!(
            events(&b.outbox, 2),
            vec![ServerEvent::Welcome { id: "b".into(), peers: vec![PeerInfo { id: "a".into(), name: Some("alice".into()) }], ice_servers: vec![] }]
        );
        assert_eq!(events(&b.outbox, 1), vec![ServerEvent::PeerJoined(PeerInfo { id: "b".into(), name: None })]);
        assert!(b.replaced.is_none());
    }

    #[test]
    fn rooms_are_isolated() {
        let mut rooms = Rooms::new(8);
        rooms.join(1, "r1", "a", None, &[]).unwrap();
        let b = rooms.join(2, "r2", "b", None, &[]).unwrap();
        assert_eq!(b.outbox.len(), 1, "nobody in r1 hears of b");
        let data = RawValue::from_string("1".into()).unwrap();
        assert_eq!(rooms.relay("r2", "b", "a", &data).unwrap_err().code, ErrorCode::UnknownPeer);
        assert!(rooms.leave("r2", "b", &2).is_empty());
        assert_eq!(rooms.room_count(), 1);
    }

    #[test]
    fn full_room_refuses_but_rejoin_is_allowed() {
        let mut rooms = Rooms::new(2);
        rooms.join(1, "r", "a", None, &[]).unwrap();
        rooms.join(2, "r", "b", None, &[]).unwrap();
        assert_eq!(rooms.join(3, "r", "c", None, &[]).unwrap_err().code, ErrorCode::RoomFull);
        let again = rooms.join(4, "r", "a", None, &[]).unwrap();
        assert_eq!(again.replaced, Some(1));
        assert_eq!(
            events(&again.outbox, 2),
            vec![ServerEvent::PeerLeft { id: "a".into() }, ServerEvent::PeerJoined(PeerInfo { id: "a".into(), name: None })]
        );
        // The replaced connection closing later must not remove the new one.
        assert!(rooms.leave("r", "a", &1).is_empty());
        assert_eq!(rooms.room_len("r"), 2);
        assert_eq!(events(&rooms.leave("r", "a", &4), 2), vec![ServerEvent::PeerLeft { id: "a".into() }]);
    }

    #[test]
    fn relay_stamps_sender() {
        let mut rooms = Rooms::new(8);
        rooms.join(1, "r", "a", None, &[]).unwrap();
        rooms.join(2, "r", "b", None, &[]).unwrap();
        let data = RawValue::from_string(r#"{"sdp":"x"}"#.into()).unwrap();
        let (to, frame) = rooms.relay("r", "a", "b", &data).unwrap();
        assert_eq!(to, 2);
        assert_eq!(frame, r#"{"type":"signal","from":"a","data":{"sdp":"x"}}"#);
    }
}
