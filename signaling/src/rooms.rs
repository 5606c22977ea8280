//! Room membership and message routing as a plain data structure.
//!
//! No IO, no locks, no awaits: every method takes an event and returns the frames to
//! deliver, addressed to connection handles. The WebSocket layer owns the lock and the
//! delivery; this module owns the rules (isolation between rooms, capacity, replacement
//! of a reconnecting peer), so they are unit-testable without a socket.
//!
//! With several instances (`--redis`), a room may also hold members connected to other
//! instances ([`Seat::Remote`]): they are listed in welcomes and reached through the
//! cluster, and only local members are sent frames from here. A room is kept while it
//! has local members.

use std::collections::{HashMap, HashSet};

use serde_json::value::RawValue;

use crate::protocol::{ErrorCode, IceServer, PeerInfo, ProtocolError, ServerMessage};

/// Frames to hand to connections, in order.
pub type Outbox<C> = Vec<(C, String)>;

/// What a successful join produced.
#[derive(Debug)]
pub struct Joined<C> {
    /// Frames to deliver: the welcome to the joiner, presence to the others.
    pub outbox: Outbox<C>,
    /// The local connection that held the same peer id before and must now be closed.
    pub replaced: Option<C>,
}

/// Where a member is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seat<C> {
    /// To this instance, on this connection.
    Local(C),
    /// To another instance (its id).
    Remote(String),
}

/// Where a signal goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<C> {
    /// To a connection of this instance, as this frame.
    Local(C, String),
    /// To another instance, which holds the receiver.
    Remote(String),
}

struct Member<C> {
    name: Option<String>,
    seat: Seat<C>,
}

/// Every room and who is in it. `C` is a connection handle (a sender in the server, a
/// plain number in tests); it must compare equal only to itself.
pub struct Rooms<C> {
    rooms: HashMap<String, HashMap<String, Member<C>>>,
    max_room_peers: usize,
    /// Members held by a local connection, kept as they change: counting them on
    /// every join made 10,000 joins quadratic (30 % of the server's CPU).
    local: usize,
}

impl<C: Clone + PartialEq> Rooms<C> {
    /// No rooms yet; each room holds at most `max_room_peers` peers.
    pub fn new(max_room_peers: usize) -> Self {
        Rooms { rooms: HashMap::new(), max_room_peers: max_room_peers.max(1), local: 0 }
    }

    /// Frames for every local member of `members` but `except`.
    fn to_locals(members: &HashMap<String, Member<C>>, except: Option<&str>, frame: &str) -> Outbox<C> {
        members
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != except)
            .filter_map(|(_, m)| match &m.seat {
                Seat::Local(conn) => Some((conn.clone(), frame.to_owned())),
                Seat::Remote(_) => None,
            })
            .collect()
    }

    /// Adds peer `id` on `conn` to `room`. A peer that joins again with the same id
    /// (it reconnected before its old connection timed out, here or on another
    /// instance) replaces the old connection: the others see it leave and join again.
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
        let replaced = members.remove(id).and_then(|old| {
            outbox.extend(Self::to_locals(members, None, &ServerMessage::PeerLeft { id }.to_json()));
            match old.seat {
                Seat::Local(conn) => Some(conn),
                Seat::Remote(_) => None,
            }
        });
        if replaced.is_none() {
            self.local += 1;
        }
        let peers = members.iter().map(|(peer_id, m)| PeerInfo { id: peer_id.clone(), name: m.name.clone() }).collect();
        outbox.push((conn.clone(), ServerMessage::Welcome { id, peers, ice_servers }.to_json()));
        let joined = ServerMessage::PeerJoined { peer: PeerInfo { id: id.to_owned(), name: name.map(str::to_owned) } }.to_json();
        outbox.extend(Self::to_locals(members, None, &joined));
        members.insert(id.to_owned(), Member { name: name.map(str::to_owned), seat: Seat::Local(conn) });
        Ok(Joined { outbox, replaced })
    }

    /// Whether peer `id` of `room` is held by local connection `conn`.
    pub fn holds(&self, room: &str, id: &str, conn: &C) -> bool {
        self.rooms.get(room).and_then(|m| m.get(id)).is_some_and(|m| m.seat == Seat::Local(conn.clone()))
    }

    /// Removes peer `id` if it is still held by `conn` (a replaced connection closing
    /// late must not remove its successor) and tells the rest of the room.
    pub fn leave(&mut self, room: &str, id: &str, conn: &C) -> Outbox<C> {
        if !self.holds(room, id, conn) {
            return Vec::new();
        }
        self.remove(room, id)
    }

    fn remove(&mut self, room: &str, id: &str) -> Outbox<C> {
        let Some(members) = self.rooms.get_mut(room) else { return Vec::new() };
        let Some(old) = members.remove(id) else { return Vec::new() };
        if matches!(old.seat, Seat::Local(_)) {
            self.local -= 1;
        }
        if !members.values().any(|m| matches!(m.seat, Seat::Local(_))) {
            // Nobody here cares about this room any more.
            self.rooms.remove(room);
            return Vec::new();
        }
        Self::to_locals(members, None, &ServerMessage::PeerLeft { id }.to_json())
    }

    /// A peer joined `room` on another instance: the local members hear of it. If this
    /// instance held that id (the peer moved), the local connection is replaced.
    /// Nothing happens for a room without local members.
    pub fn remote_joined(&mut self, room: &str, id: &str, name: Option<&str>, instance: &str) -> Joined<C> {
        let Some(members) = self.rooms.get_mut(room) else { return Joined { outbox: Vec::new(), replaced: None } };
        let mut outbox = Vec::new();
        let mut replaced = None;
        if let Some(old) = members.remove(id) {
            if old.seat == Seat::Remote(instance.to_owned()) && old.name.as_deref() == name {
                // Already known (a resync repeating itself): nothing changed.
                members.insert(id.to_owned(), old);
                return Joined { outbox, replaced };
            }
            outbox.extend(Self::to_locals(members, None, &ServerMessage::PeerLeft { id }.to_json()));
            if let Seat::Local(conn) = old.seat {
                self.local -= 1;
                replaced = Some(conn);
            }
        }
        let joined = ServerMessage::PeerJoined { peer: PeerInfo { id: id.to_owned(), name: name.map(str::to_owned) } }.to_json();
        outbox.extend(Self::to_locals(members, None, &joined));
        members.insert(id.to_owned(), Member { name: name.map(str::to_owned), seat: Seat::Remote(instance.to_owned()) });
        if !members.values().any(|m| matches!(m.seat, Seat::Local(_))) {
            // The move took this room's last local member: it is no longer ours to track.
            self.rooms.remove(room);
        }
        Joined { outbox, replaced }
    }

    /// Like [`Rooms::remote_joined`], but tracks the room even without local members
    /// yet: for the members listed to a peer about to join here.
    pub fn learn_remote(&mut self, room: &str, id: &str, name: Option<&str>, instance: &str) -> Joined<C> {
        if self.rooms.get(room).is_some_and(|m| m.values().any(|m| matches!(m.seat, Seat::Local(_)))) {
            return self.remote_joined(room, id, name, instance);
        }
        let members = self.rooms.entry(room.to_owned()).or_default();
        members.insert(id.to_owned(), Member { name: name.map(str::to_owned), seat: Seat::Remote(instance.to_owned()) });
        Joined { outbox: Vec::new(), replaced: None }
    }

    /// Stops tracking `room` if none of its members is local (a join that failed).
    pub fn forget_unless_local(&mut self, room: &str) {
        if !self.rooms.get(room).is_some_and(|m| m.values().any(|m| matches!(m.seat, Seat::Local(_)))) {
            self.rooms.remove(room);
        }
    }

    /// A peer of `room` on `instance` left (or its instance died): the local members
    /// hear of it, if it was still there.
    pub fn remote_left(&mut self, room: &str, id: &str, instance: &str) -> Outbox<C> {
        let remote = Seat::Remote(instance.to_owned());
        if !self.rooms.get(room).and_then(|m| m.get(id)).is_some_and(|m| m.seat == remote) {
            return Vec::new();
        }
        self.remove(room, id)
    }

    /// Routes a signal from `from` to `to`, both in `room`. The server stamps `from`, so
    /// a peer cannot speak for another; a `to` outside the room is as unknown as one
    /// that never existed, so rooms cannot be probed.
    pub fn relay(&self, room: &str, from: &str, to: &str, data: &RawValue) -> Result<Route<C>, ProtocolError> {
        let target = self
            .rooms
            .get(room)
            .and_then(|members| members.get(to))
            .ok_or_else(|| ProtocolError::new(ErrorCode::UnknownPeer, "no such peer in this room"))?;
        Ok(match &target.seat {
            Seat::Local(conn) => Route::Local(conn.clone(), ServerMessage::Signal { from, data }.to_json()),
            Seat::Remote(instance) => Route::Remote(instance.clone()),
        })
    }

    /// The local connection holding `id` in `room`, for a signal another instance
    /// relayed.
    pub fn local(&self, room: &str, id: &str) -> Option<C> {
        match &self.rooms.get(room)?.get(id)?.seat {
            Seat::Local(conn) => Some(conn.clone()),
            Seat::Remote(_) => None,
        }
    }

    /// Every remote member this instance knows of, by room: `(room, id, instance)`.
    pub fn remote_members(&self) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        for (room, members) in &self.rooms {
            for (id, m) in members {
                if let Seat::Remote(instance) = &m.seat {
                    found.push((room.clone(), id.clone(), instance.clone()));
                }
            }
        }
        found
    }

    /// The instances holding members of rooms this instance has members in.
    pub fn remote_instances(&self) -> HashSet<String> {
        self.remote_members().into_iter().map(|(_, _, instance)| instance).collect()
    }

    /// Every local member: `(room, id, name)`.
    pub fn local_members(&self) -> Vec<(String, String, Option<String>)> {
        let mut found = Vec::new();
        for (room, members) in &self.rooms {
            for (id, m) in members {
                if matches!(m.seat, Seat::Local(_)) {
                    found.push((room.clone(), id.clone(), m.name.clone()));
                }
            }
        }
        found
    }

    /// The remote members of `room` this instance lists: `(id, instance)`.
    pub fn remote_members_of(&self, room: &str) -> Vec<(String, String)> {
        self.rooms
            .get(room)
            .map(|members| {
                members
                    .iter()
                    .filter_map(|(id, m)| match &m.seat {
                        Seat::Remote(instance) => Some((id.clone(), instance.clone())),
                        Seat::Local(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many peers `room` holds (on every instance this one knows of).
    pub fn room_len(&self, room: &str) -> usize {
        self.rooms.get(room).map_or(0, HashMap::len)
    }

    /// How many rooms have at least one peer here.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// How many peers are connected to this instance.
    pub fn local_count(&self) -> usize {
        self.local
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
    fn remote_members_are_listed_reached_through_their_instance_and_leave() {
        let mut rooms = Rooms::new(8);
        rooms.join(1, "r", "a", None, &[]).unwrap();
        // b joined on instance X: a hears of it; a welcome lists it; signals go to X.
        let b = rooms.remote_joined("r", "b", Some("bob"), "X");
        assert_eq!(events(&b.outbox, 1), vec![ServerEvent::PeerJoined(PeerInfo { id: "b".into(), name: Some("bob".into()) })]);
        let c = rooms.join(3, "r", "c", None, &[]).unwrap();
        let ServerEvent::Welcome { peers, .. } = &events(&c.outbox, 3)[0] else { panic!("no welcome") };
        assert_eq!(peers.len(), 2);
        let data = RawValue::from_string("1".into()).unwrap();
        assert_eq!(rooms.relay("r", "a", "b", &data).unwrap(), Route::Remote("X".into()));
        assert_eq!(rooms.remote_instances(), HashSet::from(["X".to_owned()]));
        // A left from another instance than b's is not b leaving.
        assert!(rooms.remote_left("r", "b", "Y").is_empty());
        assert_eq!(events(&rooms.remote_left("r", "b", "X"), 1), vec![ServerEvent::PeerLeft { id: "b".into() }]);
        // Rooms without local members are not tracked.
        assert!(rooms.remote_joined("elsewhere", "z", None, "X").outbox.is_empty());
        assert_eq!(rooms.room_count(), 1);
    }

    #[test]
    fn a_peer_that_moves_to_another_instance_replaces_its_local_connection() {
        let mut rooms = Rooms::new(8);
        rooms.join(1, "r", "a", None, &[]).unwrap();
        rooms.join(2, "r", "b", None, &[]).unwrap();
        let moved = rooms.remote_joined("r", "a", None, "X");
        assert_eq!(moved.replaced, Some(1));
        assert_eq!(
            events(&moved.outbox, 2),
            vec![ServerEvent::PeerLeft { id: "a".into() }, ServerEvent::PeerJoined(PeerInfo { id: "a".into(), name: None })]
        );
        // The old connection closing later removes nothing.
        assert!(rooms.leave("r", "a", &1).is_empty());
        assert_eq!(rooms.local("r", "a"), None);
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
        let route = rooms.relay("r", "a", "b", &data).unwrap();
        assert_eq!(route, Route::Local(2, r#"{"type":"signal","from":"a","data":{"sdp":"x"}}"#.to_owned()));
    }

    #[test]
    fn the_local_count_follows_joins_replacements_moves_and_leaves() {
        let mut rooms: Rooms<u32> = Rooms::new(8);
        let counted = |rooms: &Rooms<u32>| rooms.rooms.values().flat_map(HashMap::values).filter(|m| matches!(m.seat, Seat::Local(_))).count();
        rooms.join(1, "r", "a", None, &[]).unwrap();
        rooms.join(2, "r", "b", None, &[]).unwrap();
        rooms.join(3, "s", "c", None, &[]).unwrap();
        assert_eq!(rooms.local_count(), 3);
        rooms.join(4, "r", "a", None, &[]).unwrap(); // a reconnected: replaced, not added
        assert_eq!(rooms.local_count(), 3);
        rooms.learn_remote("r", "d", None, "other");
        rooms.remote_joined("r", "b", None, "other"); // b moved to another instance
        assert_eq!(rooms.local_count(), 2);
        rooms.join(5, "r", "d", None, &[]).unwrap(); // d moved here
        assert_eq!(rooms.local_count(), 3);
        assert!(rooms.leave("r", "a", &1).is_empty(), "the replaced connection leaves nothing");
        rooms.leave("r", "a", &4);
        rooms.remote_left("r", "b", "other");
        rooms.leave("s", "c", &3);
        assert_eq!((rooms.local_count(), counted(&rooms)), (1, 1));
        rooms.leave("r", "d", &5);
        assert_eq!((rooms.local_count(), rooms.room_count()), (0, 0));
    }
}
