//! The pump: one owner of the core, fed by browser callbacks.
//!
//! Callbacks never run core logic in place: they queue an input and call
//! [`Driver::pump`], which applies queued inputs, performs every output, re-arms the
//! single timer, and only then — with no borrow held — hands events to user
//! listeners, which may call straight back into `send`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use gloo_timers::callback::Timeout;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::spawn_local;
use web_sys::RtcConfiguration;

use super::platform::now;
use super::rtc::{self, RtcConn, RtcEvent};
use super::socket::{Socket, SocketEvent};
use crate::core::{ConnId, Event, JoinError, Mesh, MeshConfig, Millis, Output, SdpKind};

type Input = Box<dyn FnOnce(&mut Mesh, Millis)>;

/// Everything the driver needs besides the core's own settings.
pub(crate) struct DriverConfig {
    pub(crate) signaling_url: String,
    pub(crate) rtc: RtcConfiguration,
    pub(crate) mesh: MeshConfig,
    pub(crate) seed: u64,
}

struct State {
    mesh: Mesh,
    url: String,
    rtc: RtcConfiguration,
    socket: Option<Socket>,
    conns: HashMap<ConnId, RtcConn>,
    timer: Option<(Millis, Timeout)>,
    join: Option<oneshot::Sender<Result<(), JoinError>>>,
}

/// Receives the core's user-facing events.
pub(crate) trait EventSink {
    fn deliver(&self, event: Event);
}

pub(crate) struct Driver {
    state: RefCell<State>,
    pending: RefCell<Vec<Input>>,
    pumping: Cell<bool>,
    sink: Box<dyn EventSink>,
    /// Events held back until the user can have attached listeners (see `release_events`).
    held: RefCell<Option<Vec<Event>>>,
    release: RefCell<Option<Timeout>>,
    this: Weak<Driver>,
}

impl Driver {
    /// Starts the mesh; the receiver resolves when the server first welcomes us.
    pub(crate) fn start(config: DriverConfig, sink: Box<dyn EventSink>) -> (Rc<Driver>, oneshot::Receiver<Result<(), JoinError>>) {
        let (tx, rx) = oneshot::channel();
        let driver = Rc::new_cyclic(|this| Driver {
            state: RefCell::new(State {
                mesh: Mesh::new(config.mesh, config.seed),
                url: config.signaling_url,
                rtc: config.rtc,
                socket: None,
                conns: HashMap::new(),
                timer: None,
                join: Some(tx),
            }),
            pending: RefCell::new(Vec::new()),
            pumping: Cell::new(false),
            sink,
            held: RefCell::new(Some(Vec::new())),
            release: RefCell::new(None),
            this: this.clone(),
        });
        driver.pump();
        (driver, rx)
    }

    /// Runs `f` on the core now (for calls that need an answer, like `send`), then pumps.
    /// Never called from inside the pump: user code only runs after borrows are released.
    pub(crate) fn with_mesh<R>(&self, f: impl FnOnce(&mut Mesh, Millis) -> R) -> R {
        let result = f(&mut self.state.borrow_mut().mesh, now());
        self.pump();
        result
    }

    /// Delivers held events, and every later one directly, from the next task. Events
    /// that happen with the welcome (e.g. `peer-connecting` for peers already in the
    /// room) would otherwise fire before `await Peer.join()` returns to the caller, who
    /// attaches listeners only then; the continuation of that `await` runs before any
    /// timer task.
    pub(crate) fn release_events(&self) {
        let weak = self.this.clone();
        let timeout = Timeout::new(0, move || {
            if let Some(driver) = weak.upgrade() {
                let held = driver.held.borrow_mut().take().unwrap_or_default();
                for event in held {
                    driver.sink.deliver(event);
                }
            }
        });
        *self.release.borrow_mut() = Some(timeout);
    }

    /// Reads the core without changing it.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Mesh) -> R) -> R {
        f(&self.state.borrow().mesh)
    }

    /// A callback for browser events: queues `f` and pumps, if the driver still exists.
    fn input(weak: &Weak<Driver>, f: impl FnOnce(&mut Mesh, Millis) + 'static) {
        if let Some(driver) = weak.upgrade() {
            driver.pending.borrow_mut().push(Box::new(f));
            driver.pump();
        }
    }

    fn pump(&self) {
        if self.pumping.replace(true) {
            return; // the running pump picks up whatever was queued
        }
        loop {
            let inputs = std::mem::take(&mut *self.pending.borrow_mut());
            let mut worked = !inputs.is_empty();
            let mut events = Vec::new();
            {
                let mut state = self.state.borrow_mut();
                let now = now();
                for input in inputs {
                    input(&mut state.mesh, now);
                }
                while let Some(output) = state.mesh.poll_output() {
                    worked = true;
                    self.perform(&mut state, output, &mut events);
                }
                self.arm_timer(&mut state);
            }
            let events = match self.held.borrow_mut().as_mut() {
                Some(held) => {
                    held.extend(events);
                    Vec::new()
                }
                None => events,
            };
            for event in events {
                self.sink.deliver(event);
            }
            if !worked {
                break;
            }
        }
        self.pumping.set(false);
    }

    fn perform(&self, state: &mut State, output: Output, events: &mut Vec<Event>) {
        let weak = self.this.clone();
        match output {
            Output::OpenSignaling => {
                let on_event = move |event: SocketEvent| {
                    Driver::input(&weak, move |mesh, now| match event {
                        SocketEvent::Open => mesh.handle_signaling_open(now),
                        SocketEvent::Frame(text) => mesh.handle_signaling_frame(now, &text),
                        SocketEvent::Closed => mesh.handle_signaling_closed(now),
                    })
                };
                match Socket::open(&state.url, on_event) {
                    Ok(socket) => state.socket = Some(socket),
                    Err(_) => {
                        state.socket = None;
                        state.mesh.handle_signaling_closed(now());
                    }
                }
            }
            Output::SendSignaling(text) => {
                if let Some(socket) = &state.socket {
                    socket.send(&text);
                }
            }
            Output::CloseSignaling => state.socket = None,
            Output::CreateConnection { conn, .. } => {
                let on_event = move |event: RtcEvent| {
                    Driver::input(&weak, move |mesh, now| match event {
                        RtcEvent::LocalCandidate(c) => mesh.handle_local_candidate(now, conn, c),
                        RtcEvent::Open { max_message_size } => mesh.handle_channel_open(now, conn, max_message_size),
                        RtcEvent::Message(frame) => mesh.handle_channel_message(now, conn, &frame),
                        RtcEvent::BufferedLow(amount) => mesh.handle_buffered_amount_low(now, conn, amount),
                        RtcEvent::Closed(reason) => mesh.handle_connection_closed(now, conn, reason),
                    })
                };
                match RtcConn::new(&state.rtc, on_event) {
                    Ok(rtc) => {
                        state.conns.insert(conn, rtc);
                    }
                    Err(err) => {
                        let reason = format!("cannot create RTCPeerConnection: {}", describe(&err));
                        events.push(Event::Warning(reason));
                        state.mesh.handle_connection_closed(now(), conn, "cannot create RTCPeerConnection");
                    }
                }
            }
            Output::CreateOffer { conn } => self.local_description(state, conn, SdpKind::Offer),
            Output::CreateAnswer { conn } => self.local_description(state, conn, SdpKind::Answer),
            Output::SetRemoteDescription { conn, kind, sdp } => {
                let Some(pc) = state.conns.get(&conn).map(RtcConn::peer_connection) else { return };
                spawn_local(async move {
                    if rtc::set_remote_description(pc, kind, sdp).await.is_err() {
                        Driver::input(&weak, move |mesh, now| mesh.handle_connection_closed(now, conn, "remote description rejected"));
                    }
                });
            }
            Output::AddIceCandidate { conn, candidate } => {
                let Some(pc) = state.conns.get(&conn).map(RtcConn::peer_connection) else { return };
                // A bad candidate costs only that path; the connection can still open.
                spawn_local(async move {
                    let _ = rtc::add_ice_candidate(pc, candidate).await;
                });
            }
            Output::Transmit { conn, frame } => {
                if let Some(rtc) = state.conns.get(&conn) {
                    if rtc.send(&frame).is_err() {
                        state.mesh.handle_connection_closed(now(), conn, "send failed");
                    }
                }
            }
            Output::CloseConnection { conn } => {
                state.conns.remove(&conn);
            }
            Output::Event(event) => match event {
                Event::Joined { .. } => {
                    if let Some(join) = state.join.take() {
                        let _ = join.send(Ok(()));
                    }
                }
                Event::JoinFailed(err) => {
                    if let Some(join) = state.join.take() {
                        let _ = join.send(Err(err));
                    }
                }
                other => events.push(other),
            },
        }
    }

    fn local_description(&self, state: &State, conn: ConnId, kind: SdpKind) {
        let Some(pc) = state.conns.get(&conn).map(RtcConn::peer_connection) else { return };
        let weak = self.this.clone();
        spawn_local(async move {
            let result = rtc::create_local_description(pc).await;
            Driver::input(&weak, move |mesh, now| match result {
                Ok(sdp) => mesh.handle_local_description(now, conn, kind, sdp),
                Err(_) => mesh.handle_connection_closed(now, conn, "cannot create local description"),
            });
        });
    }

    /// One timer for the core's next deadline, replaced only when the deadline moves.
    fn arm_timer(&self, state: &mut State) {
        let Some(at) = state.mesh.poll_timeout() else {
            state.timer = None;
            return;
        };
        if state.timer.as_ref().is_some_and(|(armed, _)| *armed == at) {
            return;
        }
        let delay = at.0.saturating_sub(now().0).min(u64::from(u32::MAX)) as u32;
        let weak = self.this.clone();
        let timeout = Timeout::new(delay, move || {
            // Forget the fired timer so the next deadline always gets a fresh one.
            if let Some(driver) = weak.upgrade() {
                if let Ok(mut state) = driver.state.try_borrow_mut() {
                    state.timer = None;
                }
            }
            Driver::input(&weak, |mesh, now| mesh.handle_timeout(now));
        });
        state.timer = Some((at, timeout));
    }
}

/// A thrown JS value as text, for messages.
pub(crate) fn describe(err: &JsValue) -> String {
    err.as_string()
        .or_else(|| js_sys::Reflect::get(err, &JsValue::from_str("message")).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| "unknown error".to_owned())
}
