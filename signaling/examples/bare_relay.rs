//! The simplest WebSocket relay, for `bench/signal.mjs` (not a server): the two
//! peers of a room meet, and each one's frames go to the other verbatim, with no ids
//! worth the name, validation, limits, timers or metrics. It speaks just enough of
//! meshdrop's protocol for the load client (`welcome`, `peer-joined`).
//!
//! What it costs per relayed signal, above all in the kernel, any signaling server pays
//! here for the same load: one read, one write, and on loopback the kernel's delivery
//! to the other end, which is charged to the sender.
//!
//! ```text
//! bare_relay <addr>    e.g. bare_relay 127.0.0.1:9000; prints "listening" once bound
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark tool fails loudly

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::Message;

type Outbox = UnboundedSender<Message>;
/// Room → its members, each with the queue its writer sends from.
type Rooms = Rc<RefCell<HashMap<String, Vec<(u64, Outbox)>>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args().nth(1).expect("usage: bare_relay <addr>");
    let listener = TcpListener::bind(&addr).await.expect("bind");
    println!("listening");
    let rooms = Rooms::default();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            for id in 1.. {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                // As meshdrop-signal does: a signal is one small write, sent at once.
                let _ = tcp.set_nodelay(true);
                tokio::task::spawn_local(serve(tcp, id, rooms.clone()));
            }
        })
        .await;
}

async fn serve(tcp: TcpStream, id: u64, rooms: Rooms) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
    let (mut sink, mut stream) = ws.split();
    let (outbox, mut inbox) = unbounded_channel();
    tokio::task::spawn_local(async move {
        while let Some(frame) = inbox.recv().await {
            if sink.send(frame).await.is_err() {
                break;
            }
        }
    });
    // The first frame is the join: its room pairs this peer with the other one.
    let room = match stream.next().await {
        Some(Ok(Message::Text(join))) => field(&join, "room").unwrap_or_default().to_owned(),
        _ => return,
    };
    let _ = outbox.send(Message::text(format!(r#"{{"type":"welcome","id":"{id}","peers":[]}}"#)));
    {
        let mut rooms = rooms.borrow_mut();
        let members = rooms.entry(room.clone()).or_default();
        for (_, member) in members.iter() {
            let _ = member.send(Message::text(format!(r#"{{"type":"peer-joined","peer":{{"id":"{id}"}}}}"#)));
        }
        members.push((id, outbox));
    }
    let mut other: Option<Outbox> = None;
    while let Some(Ok(frame)) = stream.next().await {
        if !frame.is_text() {
            continue;
        }
        if other.is_none() {
            other = rooms.borrow().get(&room).and_then(|members| members.iter().find(|(member, _)| *member != id).map(|(_, outbox)| outbox.clone()));
        }
        if let Some(other) = &other {
            let _ = other.send(frame);
        }
    }
    let mut rooms = rooms.borrow_mut();
    if let Some(members) = rooms.get_mut(&room) {
        members.retain(|(member, _)| *member != id);
        if members.is_empty() {
            rooms.remove(&room);
        }
    }
}

/// The string value of `"key":"…"` in a small JSON frame.
fn field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let at = frame.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = &frame[at..];
    Some(&rest[..rest.find('"')?])
}
