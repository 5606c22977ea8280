//! The signaling WebSocket, with listeners that go away with it. Every socket asks the
//! server to send its challenge first (`?challenge=first`), and the core still asks
//! for it on open: a server that pushes counts that request as answered, an older one
//! answers it.

use std::cell::RefCell;
use std::rc::Rc;

use gloo_events::EventListener;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use meshdrop_signal::protocol::with_challenge_first;

use crate::core::CHALLENGE_REQUEST;

/// What the socket reports.
pub(crate) enum SocketEvent {
    Open,
    /// Opened, and the join's challenge request already went out on it.
    OpenAsked,
    Frame(String),
    /// With the close frame's code and reason (1006 and empty when none came).
    Closed {
        code: u16,
        reason: String,
    },
}

/// An open (or opening) WebSocket. Dropping it removes the listeners and closes it.
pub(crate) struct Socket {
    ws: WebSocket,
    _listeners: [EventListener; 3],
}

/// A WebSocket opened before its owner listens: `join` starts the connection, and asks
/// for the challenge once it opens, while it claims the identity, so the handshake does
/// not wait for that. What the socket reports meanwhile is kept, and replayed in order
/// on `attach`.
pub(crate) struct EarlySocket {
    url: String,
    ws: WebSocket,
    heard: Rc<RefCell<Vec<SocketEvent>>>,
    _listeners: [EventListener; 3],
    /// Closed on drop unless handed on.
    attached: bool,
}

impl EarlySocket {
    /// Opens `url`, and asks for the join's challenge as soon as it is open: the nonce
    /// then comes back while the identity is claimed, not after.
    pub(crate) fn connect(url: &str) -> Result<EarlySocket, JsValue> {
        let ws = WebSocket::new(&with_challenge_first(url))?;
        let heard: Rc<RefCell<Vec<SocketEvent>>> = Rc::default();
        let keep = heard.clone();
        let asker = ws.clone();
        let listeners = listeners(&ws, move |event| {
            let event = match event {
                SocketEvent::Open if asker.send_with_str(CHALLENGE_REQUEST).is_ok() => SocketEvent::OpenAsked,
                other => other,
            };
            keep.borrow_mut().push(event);
        });
        Ok(EarlySocket { url: url.to_owned(), ws, heard, _listeners: listeners, attached: false })
    }

    /// The socket, if it is for `url` (else a new one): `on_event` hears what it
    /// reported so far, then every later event.
    pub(crate) fn attach(mut self, url: &str, on_event: impl Fn(SocketEvent) + Clone + 'static) -> Result<Socket, JsValue> {
        if url != self.url {
            return Socket::open(url, on_event);
        }
        self.attached = true;
        let socket = Socket { ws: self.ws.clone(), _listeners: listeners(&self.ws, on_event.clone()) };
        let heard = std::mem::take(&mut *self.heard.borrow_mut());
        for event in heard {
            on_event(event);
        }
        Ok(socket)
    }
}

impl Drop for EarlySocket {
    fn drop(&mut self) {
        if !self.attached {
            let _ = self.ws.close();
        }
    }
}

impl Socket {
    /// Opens `url`; `on_event` receives every event until the socket is dropped.
    pub(crate) fn open(url: &str, on_event: impl Fn(SocketEvent) + Clone + 'static) -> Result<Socket, JsValue> {
        let ws = WebSocket::new(&with_challenge_first(url))?;
        let listeners = listeners(&ws, on_event);
        Ok(Socket { ws, _listeners: listeners })
    }

    pub(crate) fn send(&self, text: &str) {
        // Throws only when not open; the core then hears `close` and reconnects.
        let _ = self.ws.send_with_str(text);
    }
}

/// `on_event` for each of the socket's events, until the listeners are dropped.
fn listeners(ws: &WebSocket, on_event: impl Fn(SocketEvent) + Clone + 'static) -> [EventListener; 3] {
    let open = on_event.clone();
    let message = on_event.clone();
    [
        EventListener::new(ws, "open", move |_| open(SocketEvent::Open)),
        EventListener::new(ws, "message", move |event| {
            // Binary frames are not part of the protocol; the core never sees them.
            if let Some(text) = event.dyn_ref::<MessageEvent>().and_then(|e| e.data().as_string()) {
                message(SocketEvent::Frame(text));
            }
        }),
        // `error` is always followed by `close`, so `close` alone is enough.
        EventListener::new(ws, "close", move |event| {
            let close = event.dyn_ref::<CloseEvent>();
            let code = close.map_or(1006, CloseEvent::code);
            let reason = close.map(CloseEvent::reason).unwrap_or_default();
            on_event(SocketEvent::Closed { code, reason });
        }),
    ]
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = self.ws.close();
    }
}
