//! The signaling WebSocket, with listeners that go away with it.

use gloo_events::EventListener;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{CloseEvent, MessageEvent, WebSocket};

/// What the socket reports.
pub(crate) enum SocketEvent {
    Open,
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

impl Socket {
    /// Opens `url`; `on_event` receives every event until the socket is dropped.
    pub(crate) fn open(url: &str, on_event: impl Fn(SocketEvent) + Clone + 'static) -> Result<Socket, JsValue> {
        let ws = WebSocket::new(url)?;
        let open = on_event.clone();
        let message = on_event.clone();
        let listeners = [
            EventListener::new(&ws, "open", move |_| open(SocketEvent::Open)),
            EventListener::new(&ws, "message", move |event| {
                // Binary frames are not part of the protocol; the core never sees them.
                if let Some(text) = event.dyn_ref::<MessageEvent>().and_then(|e| e.data().as_string()) {
                    message(SocketEvent::Frame(text));
                }
            }),
            // `error` is always followed by `close`, so `close` alone is enough.
            EventListener::new(&ws, "close", move |event| {
                let close = event.dyn_ref::<CloseEvent>();
                let code = close.map_or(1006, CloseEvent::code);
                let reason = close.map(CloseEvent::reason).unwrap_or_default();
                on_event(SocketEvent::Closed { code, reason });
            }),
        ];
        Ok(Socket { ws, _listeners: listeners })
    }

    pub(crate) fn send(&self, text: &str) {
        // Throws only when not open; the core then hears `close` and reconnects.
        let _ = self.ws.send_with_str(text);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = self.ws.close();
    }
}
