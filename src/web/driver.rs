//! The pump: one owner of the core, fed by browser callbacks.
//!
//! Callbacks never run core logic in place: they queue an input and call
//! [`Driver::pump`], which applies queued inputs, performs every output, re-arms the
//! single timer, and only then — with no borrow held — hands events to user
//! listeners, which may call straight back into `send`.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use futures_channel::oneshot;
use gloo_timers::callback::Timeout;
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::spawn_local;
use web_sys::Blob;

use super::blob::ReadBlocks;
use super::error::describe;
use super::ice::IceSettings;
use super::platform::{keep_ahead, now, take_ahead, when_idle, AheadSlot};
use super::rtc::{self, RtcConn, RtcEvent};
use super::socket::{EarlySocket, Socket, SocketEvent};
use super::store::{Store, StoreReply};
use crate::core::wire::Batch;
use crate::core::{
    BulkItem, Channel, ConnId, ConnectionOp, Event, FileMeta, FileOp, FileSource, FrameId, Input, JoinError, Mesh, MeshConfig, Millis, Output, Path,
    PeerId, SdpKind, SendError, ShareId, SharedFile, SignalingOp, StoreOp, TransferId,
};

/// How long a new connection's path report may wait for the page to be idle.
const PATH_LOOKUP_MAX_DELAY_MS: u32 = 1000;

/// How long after a join the storage cleanup waits before it looks for the page to be
/// idle, and how long it then waits for that at most. Cleaning up at the join itself
/// (the worker lists OPFS through the browser process) held up the server's handshake:
/// two tabs joining at once were welcomed ~3 ms later and connected ~5 ms later.
const STORAGE_CLEANUP_DELAY_MS: u32 = 2000;
const STORAGE_CLEANUP_MAX_IDLE_WAIT_MS: u32 = 1000;

/// A browser callback's work, queued for the pump.
type Task = Box<dyn FnOnce(&mut State, Millis)>;

/// Everything the driver needs besides the core's own settings.
pub(crate) struct DriverConfig {
    /// At least one; `SignalingOp::Open` picks which.
    pub(crate) signaling_urls: Vec<String>,
    pub(crate) ice: IceSettings,
    pub(crate) mesh: MeshConfig,
    pub(crate) seed: u64,
    /// Remove stored downloads untouched for this long (soon after the join).
    pub(crate) storage_max_age_ms: u64,
    /// The first URL's socket, if `join` opened it already.
    pub(crate) early_socket: Option<EarlySocket>,
    /// A connection for the first peer, if `join` made one.
    pub(crate) spare: Option<SpareConn>,
}

struct State {
    mesh: Mesh,
    urls: Vec<String>,
    ice: IceSettings,
    socket: Option<Socket>,
    /// The first server's socket, opened by `join` before the driver started.
    early_socket: Option<EarlySocket>,
    conns: HashMap<ConnId, RtcConn>,
    timer: Option<(Millis, Timeout)>,
    join: Option<oneshot::Sender<Result<(), JoinError>>>,
    store: Store,
    /// Told once storage is settled (worker ready, or memory), so `persistentStorage`
    /// is true to fact when `Peer.join` resolves.
    storage_settled: Option<oneshot::Sender<()>>,
    /// Warnings from the driver itself, delivered after the current pump's outputs.
    notices: Vec<String>,
    /// Channels this pump sent on (see `Driver::resync_buffers`).
    sent_on: Vec<(ConnId, Channel)>,
    /// Message frames for peers that take batches, sent together at the end of the
    /// current task (`Driver::send_batches`): a burst of small messages costs the
    /// browser one `send` and one receive event per batch, not per message.
    batches: Vec<(ConnId, Batch)>,
    /// Files we send, by transfer.
    files: HashMap<TransferId, Blob>,
    /// Files we share, by share id: the only ones read for others' downloads.
    shares: HashMap<ShareId, Blob>,
    /// Blocks read for sending or serving, kept until the core lets them go.
    blocks: ReadBlocks,
    /// Bulk frames received and not yet stored; cleared once the outputs that follow
    /// their inputs are performed (a frame no write named by then is not needed).
    frames: HashMap<FrameId, ArrayBuffer>,
    next_frame: u64,
    /// Finished downloads waiting for their `TransferDone` event.
    finished: HashMap<TransferId, Blob>,
    /// Reused for copying bytes into wasm memory for hashing (one allocation, not one
    /// per frame).
    scratch: Vec<u8>,
    /// The connection `join` made for the first peer (see [`SpareConn`]).
    spare: Option<SpareConn>,
}

/// Where a connection's events go: to the driver, under its connection. A spare's is
/// set when it gets its peer; it has no events before (nothing starts until its first
/// description).
type Route = OnceCell<(Weak<Driver>, ConnId)>;

/// A connection made before the first peer needs it: at `init()` ([`SpareConn::premake`])
/// or while the join is under way (the server's handshake, the identity's claim).
/// Building one (the browser's object, two channels, their listeners) is a few ms of
/// the main thread, otherwise spent between the welcome and the first offer, and again
/// between that offer and its answer.
pub(crate) struct SpareConn {
    rtc: RtcConn,
    route: Rc<Route>,
}

impl SpareConn {
    /// None if the browser refuses: the first connection is then made as any other.
    pub(crate) fn new(ice: &IceSettings) -> Option<SpareConn> {
        let route = Rc::new(Route::default());
        let (config, relay_configured) = ice.configuration();
        let rtc = RtcConn::new(&config, relay_configured, connection_events(route.clone())).ok()?;
        Some(SpareConn { rtc, route })
    }

    /// Made while the page is idle after `init()`, for the first join to take: built
    /// during a join, a connection delays the server's handshake (2-tab joins were
    /// welcomed ~2 ms later). It also starts the browser's WebRTC machinery (threads,
    /// network list), which a page's first `RTCPeerConnection` pays for. Unused, it is
    /// closed after [`PREMADE_TTL_MS`].
    pub(crate) fn premake() {
        let Some(spare) = SpareConn::new(&IceSettings::new(js_sys::Array::new(), None)) else { return };
        keep_ahead(&PREMADE, spare, PREMADE_TTL_MS);
    }

    /// The premade spare, if it is still there (its timer goes with it). It has no ICE
    /// servers yet: the connection that takes it sets them before its first description
    /// gathers.
    pub(crate) fn take_premade() -> Option<SpareConn> {
        take_ahead(&PREMADE)
    }
}

/// How long a premade spare waits for a join before it is closed.
const PREMADE_TTL_MS: u32 = 60_000;

thread_local! {
    static PREMADE: AheadSlot<SpareConn> = const { RefCell::new(None) };
}

/// A started driver: resolves when the server first welcomes us, and when storage is
/// settled.
pub(crate) struct Started {
    pub(crate) driver: Rc<Driver>,
    pub(crate) joined: oneshot::Receiver<Result<(), JoinError>>,
    pub(crate) storage: oneshot::Receiver<()>,
}

/// A user-facing event, with the received file for a finished download.
pub(crate) struct Delivery {
    pub(crate) event: Event,
    pub(crate) file: Option<Blob>,
}

/// Receives the core's user-facing events.
pub(crate) trait EventSink {
    fn deliver(&self, delivery: Delivery);
}

pub(crate) struct Driver {
    state: RefCell<State>,
    pending: RefCell<Vec<Task>>,
    pumping: Cell<bool>,
    sink: Box<dyn EventSink>,
    /// Events held back until the user can have attached listeners (see `release_events`).
    held: RefCell<Option<Vec<Delivery>>>,
    release: RefCell<Option<Timeout>>,
    this: Weak<Driver>,
}

impl Driver {
    /// Starts the mesh and storage; the receivers resolve when the server first
    /// welcomes us, and when storage is settled.
    pub(crate) fn start(config: DriverConfig, sink: Box<dyn EventSink>) -> Started {
        let (tx, rx) = oneshot::channel();
        let (settled_tx, settled_rx) = oneshot::channel();
        let storage_max_age_ms = config.storage_max_age_ms;
        let driver = Rc::new_cyclic(|this: &Weak<Driver>| {
            let weak = this.clone();
            let mut store = Store::new(move |reply| Driver::input(&weak, move |state, now| Driver::stored(state, now, reply)));
            let store_warning = store.take_warning();
            let storage_settled = if store.starting() {
                Some(settled_tx)
            } else {
                let _ = settled_tx.send(());
                None
            };
            Driver {
                state: RefCell::new(State {
                    mesh: Mesh::new(config.mesh, config.seed, now()),
                    urls: config.signaling_urls,
                    ice: config.ice,
                    socket: None,
                    early_socket: config.early_socket,
                    conns: HashMap::new(),
                    timer: None,
                    join: Some(tx),
                    store,
                    storage_settled,
                    notices: store_warning.into_iter().collect(),
                    sent_on: Vec::new(),
                    batches: Vec::new(),
                    files: HashMap::new(),
                    shares: HashMap::new(),
                    blocks: ReadBlocks::default(),
                    frames: HashMap::new(),
                    next_frame: 0,
                    finished: HashMap::new(),
                    scratch: Vec::new(),
                    spare: config.spare,
                }),
                pending: RefCell::new(Vec::new()),
                pumping: Cell::new(false),
                sink,
                held: RefCell::new(Some(Vec::new())),
                release: RefCell::new(None),
                this: this.clone(),
            }
        });
        driver.pump();
        Self::clean_storage_later(Rc::downgrade(&driver), storage_max_age_ms);
        Started { driver, joined: rx, storage: settled_rx }
    }

    /// Removes stored downloads untouched for `max_age_ms`, a while after the join
    /// (none of them is in use: the storage worker keeps those it has open or a probe
    /// found).
    fn clean_storage_later(driver: Weak<Driver>, max_age_ms: u64) {
        spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(STORAGE_CLEANUP_DELAY_MS).await;
            when_idle(STORAGE_CLEANUP_MAX_IDLE_WAIT_MS).await;
            Driver::input(&driver, move |state, _| state.store.cleanup(max_age_ms));
        });
    }

    /// Runs `f` on the core now (for calls that need an answer, like `send`), then pumps.
    /// Never called from inside the pump: user code only runs after borrows are released.
    pub(crate) fn with_mesh<R>(&self, f: impl FnOnce(&mut Mesh, Millis) -> R) -> R {
        let result = f(&mut self.state.borrow_mut().mesh, now());
        self.pump();
        result
    }

    /// Like [`Driver::with_mesh`], running `then` on the result before the pump
    /// delivers events: for calls whose answer comes as an event (a query that ends at
    /// once when nobody is connected), so the caller is registered first.
    pub(crate) fn with_mesh_then<R>(&self, f: impl FnOnce(&mut Mesh, Millis) -> R, then: impl FnOnce(&R)) -> R {
        let result = f(&mut self.state.borrow_mut().mesh, now());
        then(&result);
        self.pump();
        result
    }

    /// Delivers held events, and every later one directly, from the next task. Events
    /// that happen with the welcome (e.g. `peer-connecting` for peers already in the
    /// room) would otherwise fire before `await Peer.join()` returns to the caller, who
    /// attaches listeners only then; the continuation of that `await` runs before any
    /// timer task.
    pub(crate) fn release_events(&self) {
        if let Some(warning) = super::platform::insecure_context_warning() {
            if let Some(held) = self.held.borrow_mut().as_mut() {
                held.insert(0, Delivery { event: Event::Warning(warning), file: None });
            }
        }
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

    /// Offers `file` to `peer`; its blocks are read as the core asks for them.
    pub(crate) fn send_file(&self, peer: &PeerId, file: Blob, meta: FileMeta) -> Result<TransferId, SendError> {
        let result = {
            let mut state = self.state.borrow_mut();
            let id = state.mesh.send_file(now(), peer, meta);
            if let Ok(id) = id {
                state.files.insert(id, file);
            }
            id
        };
        self.pump();
        result
    }

    /// Hashes `file` block by block (reading a few blocks at a time), then shares it.
    pub(crate) async fn share(driver: Rc<Driver>, file: Blob, meta: FileMeta) -> Result<SharedFile, JsValue> {
        let hashes = super::blob::block_hashes(&file).await?;
        let shared = {
            let mut state = driver.state.borrow_mut();
            let shared = state.mesh.share(meta, hashes).map_err(|e| JsValue::from_str(&e.to_string()))?;
            state.shares.insert(shared.id, file);
            shared
        };
        driver.pump();
        Ok(shared)
    }

    /// Stops sharing; serves of it end. Returns whether it was shared.
    pub(crate) fn unshare(&self, id: ShareId) -> bool {
        let removed = {
            let mut state = self.state.borrow_mut();
            let now = now();
            state.shares.remove(&id);
            state.mesh.unshare(now, id)
        };
        self.pump();
        removed
    }

    /// How the connection to `peer` travels and how it is doing, or `None` if it is not
    /// connected or has no selected path yet.
    pub(crate) async fn connection(driver: Rc<Driver>, peer: &PeerId) -> Option<(Path, rtc::PairStats)> {
        let pc = {
            let state = driver.state.borrow();
            let conn = state.mesh.connection_of(peer)?;
            state.conns.get(&conn).map(RtcConn::peer_connection)?
        };
        let pair = rtc::pair_stats(pc).await.ok()??;
        let path = Path::classify(&pair.local, &pair.remote)?;
        Some((path, pair))
    }

    /// Whether received files survive a reload (OPFS), so downloads can resume.
    pub(crate) fn persistent_storage(&self) -> bool {
        self.state.borrow().store.persistent()
    }

    /// Reads the core without changing it.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Mesh) -> R) -> R {
        f(&self.state.borrow().mesh)
    }

    /// A callback for browser events: queues `f` and pumps, if the driver still exists.
    fn input(weak: &Weak<Driver>, f: impl FnOnce(&mut State, Millis) + 'static) {
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
                    input(&mut state, now);
                }
                loop {
                    while let Some(output) = state.mesh.poll_output() {
                        worked = true;
                        self.perform(&mut state, output, &mut events);
                    }
                    if !Self::resync_buffers(&mut state) {
                        break;
                    }
                }
                events.extend(state.notices.drain(..).map(|warning| Delivery { event: Event::Warning(warning), file: None }));
                state.frames.clear();
                self.arm_timer(&mut state);
            }
            let events: Vec<Delivery> = match self.held.borrow_mut().as_mut() {
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

    fn perform(&self, state: &mut State, output: Output, events: &mut Vec<Delivery>) {
        match output {
            Output::Signaling(op) => self.perform_signaling(state, op),
            Output::Connection(op) => self.perform_connection(state, op, events),
            Output::File(op) => self.perform_file(state, op),
            Output::Store(op) => Self::perform_store(state, op),
            Output::Event(event) => match event {
                Event::Joined { .. } => Self::settle_join(state, Ok(())),
                Event::JoinFailed(err) => Self::settle_join(state, Err(err)),
                other => {
                    let mut file = None;
                    if let Event::TransferDone { id, .. } | Event::TransferFailed { id, .. } = &other {
                        state.files.remove(id);
                        file = state.finished.remove(id);
                    }
                    events.push(Delivery { event: other, file });
                }
            },
        }
    }

    #[inline(never)] // cold: keeps `pump`, which is hot, small for V8
    fn settle_join(state: &mut State, result: Result<(), JoinError>) {
        if let Some(join) = state.join.take() {
            let _ = join.send(result);
        }
    }

    #[inline(never)] // cold: keeps `pump`, which is hot, small for V8
    fn perform_signaling(&self, state: &mut State, op: SignalingOp) {
        match op {
            SignalingOp::Open { server } => {
                let weak = self.this.clone();
                let on_event = move |event: SocketEvent| {
                    Driver::input(&weak, move |State { mesh, .. }, now| match event {
                        SocketEvent::Open => mesh.handle(now, Input::SignalingOpened),
                        SocketEvent::OpenAsked => mesh.handle(now, Input::SignalingOpenedAsked),
                        SocketEvent::Frame(text) => mesh.handle(now, Input::SignalingFrame(text.into())),
                        SocketEvent::Closed { code, reason } => mesh.handle(now, Input::SignalingClosed { close: Some((code, reason.into())) }),
                    })
                };
                let url = state.urls.get(server).or(state.urls.first()).map_or("", String::as_str);
                let opened = match state.early_socket.take() {
                    Some(early) => early.attach(url, on_event),
                    None => Socket::open(url, on_event),
                };
                match opened {
                    Ok(socket) => state.socket = Some(socket),
                    Err(_) => {
                        state.socket = None;
                        state.mesh.handle(now(), Input::SignalingClosed { close: None });
                    }
                }
            }
            SignalingOp::Send(text) => {
                if let Some(socket) = &state.socket {
                    socket.send(&text);
                }
            }
            SignalingOp::Close => {
                state.socket = None;
                state.spare = None;
            }
        }
    }

    /// What the message and bulk paths do per frame stays here, small, because `pump`
    /// runs it for every message: V8 optimises a hot wasm function as a whole, and a
    /// large one took it 30 ms per tab during a first burst of messages.
    fn perform_connection(&self, state: &mut State, op: ConnectionOp, events: &mut Vec<Delivery>) {
        match op {
            ConnectionOp::Transmit { conn, frame, batch: None } => {
                // Behind anything batched before, as it was sent.
                if let Some(batch) = Self::take_batch(state, conn) {
                    Self::transmit(state, conn, &batch);
                }
                Self::transmit(state, conn, &frame);
            }
            ConnectionOp::Transmit { conn, frame, batch: Some(limit) } => {
                // The first batch since the last send schedules the send; a spare run finds
                // nothing to send.
                if state.batches.is_empty() {
                    let weak = self.this.clone();
                    // A microtask: after the code that is sending now, before any event.
                    spawn_local(async move {
                        if let Some(driver) = weak.upgrade() {
                            driver.send_batches();
                        }
                    });
                }
                let at = match state.batches.iter().position(|(c, _)| *c == conn) {
                    Some(at) => at,
                    None => {
                        state.batches.push((conn, Batch::default()));
                        state.batches.len() - 1
                    }
                };
                if let Some(full) = state.batches[at].1.push(&frame, limit) {
                    Self::transmit(state, conn, &full);
                }
            }
            ConnectionOp::TransmitBulk { conn, item } => {
                let Some(rtc) = state.conns.get(&conn) else { return };
                if !state.sent_on.contains(&(conn, Channel::Bulk)) {
                    state.sent_on.push((conn, Channel::Bulk));
                }
                let sent = match item {
                    BulkItem::Frame { bytes, .. } => rtc.send_bulk(&bytes),
                    BulkItem::Slice { id, block, start, len, last } => {
                        let Some(view) = state.blocks.get(id, block) else { return };
                        let sent = rtc.send_bulk_view(&view.subarray(start, start + len));
                        if last {
                            state.blocks.release(id, block);
                        }
                        sent
                    }
                };
                if sent.is_err() {
                    state.mesh.handle(now(), Input::ConnectionClosed { conn, reason: "bulk send failed".into() });
                }
            }
            ConnectionOp::Close { conn } => {
                state.conns.remove(&conn);
            }
            ConnectionOp::SetLowThreshold { conn, channel, bytes } => {
                if let Some(rtc) = state.conns.get(&conn) {
                    rtc.set_low_threshold(channel, bytes);
                }
            }
            setup => self.perform_connection_setup(state, setup, events),
        }
    }

    /// Creating connections, their descriptions, candidates and paths: a few per peer.
    #[inline(never)] // cold: keeps `pump`, which is hot, small for V8
    fn perform_connection_setup(&self, state: &mut State, op: ConnectionOp, events: &mut Vec<Delivery>) {
        let weak = self.this.clone();
        match op {
            ConnectionOp::Create { conn, .. } => self.create_connection(state, conn, events),
            ConnectionOp::CreateOffer { conn } => self.local_description(state, conn, SdpKind::Offer),
            ConnectionOp::CreateAnswer { conn } => self.local_description(state, conn, SdpKind::Answer),
            ConnectionOp::SetRemoteDescription { conn, kind, sdp } => {
                let Some(pc) = state.conns.get(&conn).map(RtcConn::peer_connection) else { return };
                spawn_local(async move {
                    if rtc::set_remote_description(pc, kind, sdp).await.is_err() {
                        Driver::input(&weak, move |state, now| {
                            state.mesh.handle(now, Input::ConnectionClosed { conn, reason: "remote description rejected".into() })
                        });
                    }
                });
            }
            ConnectionOp::AddIceCandidate { conn, candidate } => {
                let Some(pc) = state.conns.get(&conn).map(RtcConn::peer_connection) else { return };
                // A bad candidate costs only that path; the connection can still open.
                spawn_local(async move {
                    let _ = rtc::add_ice_candidate(pc, candidate).await;
                });
            }
            ConnectionOp::RestartIce { conn } => {
                let Some(rtc) = state.conns.get(&conn) else { return };
                if let Err(err) = rtc::restart_ice(&rtc.peer_connection()) {
                    let reason = format!("cannot restart ICE: {}", describe(&err));
                    events.push(Delivery { event: Event::Warning(reason), file: None });
                }
                self.local_description(state, conn, SdpKind::Offer);
            }
            ConnectionOp::ObservePath { conn } => {
                let Some(pc) = state.conns.get(&conn).map(RtcConn::peer_connection) else { return };
                spawn_local(async move {
                    when_idle(PATH_LOOKUP_MAX_DELAY_MS).await;
                    let path = match rtc::pair_stats(pc).await {
                        Ok(Some(pair)) => Path::classify(&pair.local, &pair.remote),
                        _ => None,
                    };
                    if let Some(path) = path {
                        Driver::input(&weak, move |state, now| state.mesh.handle(now, Input::PathObserved { conn, path }));
                    }
                });
            }
            ConnectionOp::UseIceServers(servers) => {
                state.ice.set_server(servers);
                // Open connections take the fresh TURN credentials for their next restart.
                let (config, _) = state.ice.configuration();
                for rtc in state.conns.values() {
                    let _ = rtc.peer_connection().set_configuration_with_configuration(&config);
                }
            }
            // `perform_connection` keeps these; never sent here.
            ConnectionOp::Transmit { .. } | ConnectionOp::TransmitBulk { .. } | ConnectionOp::Close { .. } | ConnectionOp::SetLowThreshold { .. } => {
                self.perform_connection(state, op, events)
            }
        }
    }

    /// A new RTCPeerConnection whose events feed the core: the spare, if there is one.
    #[inline(never)] // cold: keeps `pump`, which is hot, small for V8
    fn create_connection(&self, state: &mut State, conn: ConnId, events: &mut Vec<Delivery>) {
        let (config, relay_configured) = state.ice.configuration();
        if let Some(SpareConn { rtc, route }) = state.spare.take() {
            // The ICE servers the welcome named, before its first description gathers.
            if rtc.reconfigure(&config, relay_configured).is_ok() {
                let _ = route.set((self.this.clone(), conn));
                state.conns.insert(conn, rtc);
                return;
            }
        }
        let route = Route::from((self.this.clone(), conn));
        match RtcConn::new(&config, relay_configured, connection_events(Rc::new(route))) {
            Ok(rtc) => {
                state.conns.insert(conn, rtc);
            }
            Err(err) => {
                let reason = format!("cannot create RTCPeerConnection: {}", describe(&err));
                events.push(Delivery { event: Event::Warning(reason), file: None });
                state.mesh.handle(now(), Input::ConnectionClosed { conn, reason: "cannot create RTCPeerConnection".into() });
            }
        }
    }
}

/// What feeds a connection's events to the core, along its route.
fn connection_events(route: Rc<Route>) -> impl Fn(RtcEvent) + Clone + 'static {
    move |event: RtcEvent| {
        let Some((driver, conn)) = route.get() else { return };
        let conn = *conn;
        Driver::input(driver, move |state, now| match event {
            RtcEvent::LocalCandidate(candidate) => state.mesh.handle(now, Input::LocalCandidate { conn, candidate }),
            RtcEvent::Open { max_message_size } => state.mesh.handle(now, Input::ChannelOpened { conn, max_message_size }),
            RtcEvent::Message(buffer) => {
                // Copied into one reused buffer: the core keeps what it needs.
                let mut scratch = std::mem::take(&mut state.scratch);
                let frame = copy_into(&mut scratch, &Uint8Array::new(&buffer));
                state.mesh.handle(now, Input::ChannelFrame { conn, frame: frame.into() });
                state.scratch = scratch;
            }
            RtcEvent::BufferedLow(buffered) => state.mesh.handle(now, Input::ChannelDrained { conn, buffered }),
            RtcEvent::BulkMessage(buffer) => Driver::bulk_frame(state, now, conn, buffer),
            RtcEvent::BulkLow(buffered) => state.mesh.handle(now, Input::BulkDrained { conn, buffered }),
            RtcEvent::Closed(reason) => state.mesh.handle(now, Input::ConnectionClosed { conn, reason: reason.into() }),
            RtcEvent::IceState(ice) => state.mesh.handle(now, Input::IceState { conn, state: ice }),
            RtcEvent::Failed(failure) => state.mesh.handle(now, Input::ConnectionFailed { conn, failure }),
            RtcEvent::Gathered(gathered) => state.mesh.handle(now, Input::CandidatesGathered { conn, gathered }),
        })
    }
}

impl Driver {
    #[inline(never)] // cold: keeps `pump`, which is hot, small for V8
    fn perform_file(&self, state: &mut State, op: FileOp) {
        match op {
            FileOp::Read { id, source, block, offset, len } => {
                let file = match source {
                    FileSource::Sending => state.files.get(&id),
                    FileSource::Shared(share) => state.shares.get(&share),
                };
                match file {
                    Some(file) => self.read_block(file, id, block, offset, len, state.blocks.take_spare()),
                    None => state.mesh.handle(now(), Input::BlockUnreadable { id, message: "the file is no longer shared".into() }),
                }
            }
            FileOp::ReleaseBlock { id, block } => state.blocks.release(id, block),
            FileOp::Release { id, except } => state.blocks.release_transfer(id, except),
        }
    }

    #[inline(never)] // cold: keeps `pump`, which is hot, small for V8
    fn perform_store(state: &mut State, op: StoreOp) {
        match op {
            StoreOp::Probe { id, key } => state.store.probe(id, &key),
            StoreOp::Open { id, key, from, meta, durable } => state.store.open(id, &key, from.as_ref(), &meta, durable),
            StoreOp::Write { id, offset, frame } => {
                if let Some(buffer) = state.frames.remove(&frame) {
                    state.store.write(id, offset, buffer);
                }
            }
            StoreOp::Put { id, offset, bytes } => state.store.write(id, offset, Uint8Array::from(bytes.as_slice()).buffer()),
            StoreOp::Commit { id, block, hash } => state.store.commit(id, block, &hash),
            StoreOp::Finish { id } => state.store.finish(id),
            StoreOp::Close { id, delete } => state.store.close(id, delete),
        }
    }

    /// Reads `offset..offset + len` of `file` for block `block` of transfer `id`, into
    /// `spare`'s memory where the browser allows.
    fn read_block(&self, file: &Blob, id: TransferId, block: u32, offset: u64, len: u64, spare: ArrayBuffer) {
        let weak = self.this.clone();
        let file = file.clone();
        spawn_local(async move {
            let bytes = super::blob::read_range(&file, offset, offset + len, Some(spare)).await;
            Driver::input(&weak, move |state, now| match bytes {
                Ok(view) => {
                    // Held until the core lets it go: its slices go out from here.
                    let bytes = copy_into(&mut state.scratch, &view);
                    state.mesh.handle(now, Input::BlockRead { id, block, bytes: bytes.into() });
                    state.blocks.insert(id, block, view);
                }
                Err(err) => state.mesh.handle(now, Input::BlockUnreadable { id, message: describe(&err) }),
            });
        });
    }

    /// A bulk-channel frame: the core hashes a copy in wasm memory and says where the
    /// bytes belong; the original buffer goes to storage as is.
    fn bulk_frame(state: &mut State, now: Millis, conn: ConnId, buffer: ArrayBuffer) {
        state.next_frame += 1;
        let frame = FrameId(state.next_frame);
        let bytes = copy_into(&mut state.scratch, &Uint8Array::new(&buffer));
        state.frames.insert(frame, buffer);
        state.mesh.handle(now, Input::BulkFrame { conn, bytes: bytes.into(), frame });
    }

    #[inline(never)] // cold: keeps `pump`, which is hot, small for V8
    fn stored(state: &mut State, now: Millis, reply: StoreReply) {
        let input = match reply {
            StoreReply::Probed(id, partial) => Input::StoreProbed { id, partial },
            StoreReply::Opened(id, result) => Input::StoreOpened { id, result },
            StoreReply::Committed(id, block) => Input::BlockCommitted { id, block },
            StoreReply::Finished(id, result) => {
                let result = result.map(|file| {
                    state.finished.insert(id, file);
                });
                Input::StoreFinished { id, result }
            }
            StoreReply::Failed(id, error) => Input::StoreFailed { id, error },
            StoreReply::Worker(attempt, event) => {
                if let Some(warning) = state.store.worker_event(attempt, event) {
                    state.notices.push(warning);
                }
                if !state.store.starting() {
                    if let Some(settled) = state.storage_settled.take() {
                        let _ = settled.send(());
                    }
                }
                return;
            }
        };
        state.mesh.handle(now, input);
    }

    #[inline(never)] // cold: keeps `pump`, which is hot, small for V8
    fn local_description(&self, state: &State, conn: ConnId, kind: SdpKind) {
        let Some(pc) = state.conns.get(&conn).map(RtcConn::peer_connection) else { return };
        let weak = self.this.clone();
        spawn_local(async move {
            let result = rtc::create_local_description(pc).await;
            Driver::input(&weak, move |State { mesh, .. }, now| match result {
                Ok(sdp) => mesh.handle(now, Input::LocalDescription { conn, kind, sdp }),
                Err(_) => mesh.handle(now, Input::ConnectionClosed { conn, reason: "cannot create local description".into() }),
            });
        });
    }

    /// Sends one frame (or batch) on the message channel; a channel that refuses it is
    /// closed.
    fn transmit(state: &mut State, conn: ConnId, frame: &[u8]) {
        let Some(rtc) = state.conns.get(&conn) else { return };
        if rtc.send(frame).is_err() {
            state.mesh.handle(now(), Input::ConnectionClosed { conn, reason: "send failed".into() });
        } else if !state.sent_on.contains(&(conn, Channel::Messages)) {
            state.sent_on.push((conn, Channel::Messages));
        }
    }

    fn take_batch(state: &mut State, conn: ConnId) -> Option<Vec<u8>> {
        let at = state.batches.iter().position(|(c, _)| *c == conn)?;
        state.batches.swap_remove(at).1.take()
    }

    /// The end of a task that sent messages: every batch goes, and the pump then sees
    /// what the channels buffer.
    fn send_batches(&self) {
        {
            let mut state = self.state.borrow_mut();
            for (conn, mut batch) in std::mem::take(&mut state.batches) {
                if let Some(frames) = batch.take() {
                    Self::transmit(&mut state, conn, &frames);
                }
            }
        }
        self.pump();
    }

    /// `bufferedamountlow` fires only when a channel's buffer falls from above its
    /// threshold; bytes sent that never lifted it above (small frames, a threshold
    /// raised by the core) bring no event, and the core's count of what is buffered
    /// would only grow. So after sending, a channel at or below its threshold is
    /// reported as drained now. Returns whether anything was reported.
    fn resync_buffers(state: &mut State) -> bool {
        let mut reported = false;
        for (conn, channel) in std::mem::take(&mut state.sent_on) {
            let Some(buffered) = state.conns.get(&conn).and_then(|rtc| rtc.buffered_if_low(channel)) else { continue };
            let input = match channel {
                Channel::Messages => Input::ChannelDrained { conn, buffered },
                Channel::Bulk => Input::BulkDrained { conn, buffered },
            };
            state.mesh.handle(now(), input);
            reported = true;
        }
        reported
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
            Driver::input(&weak, |state, now| state.mesh.handle(now, Input::Timeout));
        });
        state.timer = Some((at, timeout));
    }
}

/// Copies a JS byte view into `scratch` (grown once, then reused) and returns the copy.
fn copy_into<'a>(scratch: &'a mut Vec<u8>, view: &Uint8Array) -> &'a [u8] {
    let len = view.length() as usize;
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    view.copy_to(&mut scratch[..len]);
    &scratch[..len]
}
