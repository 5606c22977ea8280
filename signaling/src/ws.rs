//! One task per WebSocket connection: read frames, apply them to the shared [`Rooms`]
//! under one short lock, and write what is addressed to this connection.
//!
//! What other connections hand to this one waits in a queue bounded in bytes. A client
//! that stops reading fills it; then it is closed with 1013 at once, without waiting
//! for its writes, and leaves its room. Every write has a deadline too, so no
//! connection can hold its task (or its memory) forever.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::admission::Slot;
use crate::identity;
use crate::limit::{Throttle, TokenBucket, Verdict};
use crate::protocol::{parse_client, ClientRequest, ErrorCode, ProtocolError, ServerMessage, MAX_FRAME_BYTES};
use crate::rooms::{Outbox, Rooms, Route};
use crate::server::AppState;

/// WebSocket close codes we send (RFC 6455 §7.4.1; 1012 from the IANA registry).
pub(crate) mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    /// The server is restarting or shutting down: connect again (to another instance).
    pub const SERVICE_RESTART: u16 = 1012;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Bytes queued for one connection before it counts as too slow and is closed.
pub(crate) const MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// A write (a batch of frames and its flush) that takes longer means the client does
/// not read: it is closed.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// Most extra frames written per flush, so one busy connection cannot starve the
/// others sharing its worker thread.
const WRITE_BATCH: usize = 64;
/// The closing handshake may take this long before the socket is dropped anyway.
const GOODBYE_DEADLINE: Duration = Duration::from_secs(2);

/// Why a connection's task was woken by its [`Link`].
enum Wake {
    Queued,
    Behind,
    Restart,
}

/// Every connection's [`Link`], so that shutting down can wake each task: a shared
/// `watch` that every task polled on every wake-up cost CPU per signal, and its future
/// was part of every idle connection's memory.
#[derive(Default)]
pub(crate) struct Links(Mutex<HashMap<u64, Arc<Link>>>);

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Link>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells every connection's task the server is shutting down.
    pub(crate) fn restart_all(&self) {
        for link in self.lock().values() {
            link.restart.store(true, Ordering::Release);
            link.task.wake();
        }
    }
}

/// What other connections hand to this one.
enum Outgoing {
    Frame(String),
    /// Close after the frames queued before it.
    Close(u16, &'static str),
}

/// The part of a connection others hold: its queue and its limits.
///
/// The queue is a plain locked `VecDeque`, not a channel: an idle connection's queue
/// then costs nothing (a tokio mpsc channel allocates 1.5 KiB up front, a quarter of an
/// idle connection's memory). Its task is woken through one `AtomicWaker` and three
/// flags, not `Notify`s: the task's loop polls them on every wake-up, and registering
/// with a `Notify` and leaving it again each time cost ~5 % of the server's CPU when
/// relaying.
pub(crate) struct Link {
    queue: Mutex<VecDeque<Outgoing>>,
    /// Something was queued since the task last looked.
    ready: AtomicBool,
    /// Bytes in `queue` not written yet.
    queued: AtomicUsize,
    /// Set once: the connection is being closed for falling behind. Wakes the task
    /// even in the middle of a write.
    overflowed: AtomicBool,
    /// Set once: the server is shutting down.
    restart: AtomicBool,
    /// The connection's task, woken when any of the three flags is set.
    task: AtomicWaker,
    /// The room and id it joined as (a connection joins once).
    member: OnceLock<(String, String)>,
    /// Signals it may still be sent, by everyone together.
    inbound: Mutex<TokenBucket>,
}

/// A connection as [`Rooms`] sees it: equal only to itself.
#[derive(Clone)]
pub(crate) struct Conn {
    id: u64,
    link: Arc<Link>,
}

impl PartialEq for Conn {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Conn {
    /// Queues a frame for this connection (see [`Link::offer`]).
    pub(crate) fn offer(&self, frame: String) -> bool {
        self.link.offer(frame)
    }

    /// Closes it after what is queued.
    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        self.link.close(code, reason);
    }

    /// Whether one more signal may be sent to it now (its inbound limit).
    pub(crate) fn accepts_inbound(&self) -> bool {
        self.link.inbound.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).check(Instant::now()) == Verdict::Pass
    }
}

impl Link {
    /// A new connection's: nothing queued, not joined, `max_inbound_per_sec` signals a
    /// second may be sent to it.
    fn new(max_inbound_per_sec: u32) -> Self {
        Link {
            queue: Mutex::new(VecDeque::new()),
            ready: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            restart: AtomicBool::new(false),
            task: AtomicWaker::new(),
            member: OnceLock::new(),
            inbound: Mutex::new(TokenBucket::new(max_inbound_per_sec)),
        }
    }

    /// Queues a frame; false if it pushed the connection over its byte limit (it is
    /// then being closed, and this was the moment to take it out of its room).
    fn offer(&self, frame: String) -> bool {
        if self.overflowed.load(Ordering::Acquire) {
            return true; // going away already: nothing more for it
        }
        let len = frame.len();
        if self.queued.fetch_add(len, Ordering::AcqRel) + len > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            if !self.overflowed.swap(true, Ordering::AcqRel) {
                self.task.wake();
                return false;
            }
            return true;
        }
        self.push(Outgoing::Frame(frame));
        true
    }

    fn push(&self, item: Outgoing) {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push_back(item);
        self.ready.store(true, Ordering::Release);
        self.task.wake();
    }

    /// What the task is woken for: the connection fell behind, the server is shutting
    /// down, or frames are queued.
    fn woken(&self) -> impl Future<Output = Wake> + '_ {
        std::future::poll_fn(|cx| {
            self.task.register(cx.waker());
            if self.overflowed.load(Ordering::Acquire) {
                Poll::Ready(Wake::Behind)
            } else if self.restart.load(Ordering::Acquire) {
                Poll::Ready(Wake::Restart)
            } else if self.ready.swap(false, Ordering::AcqRel) {
                Poll::Ready(Wake::Queued)
            } else {
                Poll::Pending
            }
        })
    }

    /// Resolves once the connection fell behind.
    fn fell_behind(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            self.task.register(cx.waker());
            if self.overflowed.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// The frames queued (up to [`WRITE_BATCH`]), and a close that followed them, if
    /// any; what is left is announced again.
    fn take_batch(&self) -> (Vec<String>, Option<(u16, &'static str)>) {
        let mut queue = self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut batch = Vec::new();
        while batch.len() < WRITE_BATCH {
            match queue.pop_front() {
                Some(Outgoing::Frame(frame)) => batch.push(frame),
                Some(Outgoing::Close(code, reason)) => return (batch, Some((code, reason))),
                None => break,
            }
        }
        if queue.is_empty() {
            // An idle connection keeps no queue buffer.
            *queue = VecDeque::new();
        } else {
            self.ready.store(true, Ordering::Release);
        }
        (batch, None)
    }

    /// The task is ending: nothing more is queued, and what is queued is dropped.
    fn shut(&self) {
        self.overflowed.store(true, Ordering::Release);
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    /// Asks the task to close the connection once what is queued is written.
    fn close(&self, code: u16, reason: &'static str) {
        self.push(Outgoing::Close(code, reason));
    }
}

/// Hands each frame to its connection. Called with the rooms lock held, so every
/// connection sees events in the order the rooms applied them; nothing here waits. A
/// connection that falls too far behind leaves its room at once (the others hear
/// `peer-left` now, not when its task notices).
pub(crate) fn deliver(rooms: &mut Rooms<Conn>, outbox: Outbox<Conn>) {
    let mut pending = outbox;
    while !pending.is_empty() {
        let mut behind = Vec::new();
        for (conn, frame) in pending.drain(..) {
            if !conn.link.offer(frame) {
                warn!(conn = conn.id, "connection too slow (over {MAX_QUEUED_BYTES} bytes queued), closing");
                behind.push(conn);
            }
        }
        for conn in behind {
            if let Some((room, id)) = conn.link.member.get() {
                pending.extend(rooms.leave(room, id, &conn));
            }
        }
    }
}

/// A connection's timed duties, served by one timer.
struct Deadlines {
    ping_every: Duration,
    next_ping: Instant,
    /// Until the connection joins.
    join_by: Option<Instant>,
    /// Credentials expire: after joining, new ones this often.
    refresh_every: Option<Duration>,
    next_refresh: Option<Instant>,
}

/// What is due when the timer fires.
struct Due {
    ping: bool,
    join_missed: bool,
    refresh: bool,
}

impl Deadlines {
    fn new(now: Instant, config: &crate::server::Config) -> Self {
        Deadlines {
            ping_every: config.ping_interval,
            next_ping: now + config.ping_interval,
            join_by: Some(now + config.join_timeout),
            refresh_every: config.ice.refresh_every(),
            next_refresh: None,
        }
    }

    /// The connection joined at `now`: no join deadline, and credentials to refresh.
    fn joined(&mut self, now: Instant) {
        if self.join_by.take().is_some() {
            self.next_refresh = self.refresh_every.map(|every| now + every);
        }
    }

    fn next(&self) -> Instant {
        [Some(self.next_ping), self.join_by, self.next_refresh].into_iter().flatten().min().unwrap_or(self.next_ping)
    }

    /// What is due at `now`, with the next of each scheduled.
    fn due(&mut self, now: Instant, joined: bool) -> Due {
        let ping = now >= self.next_ping;
        if ping {
            self.next_ping = now + self.ping_every;
        }
        let join_missed = !joined && self.join_by.is_some_and(|by| now >= by);
        let refresh = joined && self.next_refresh.is_some_and(|at| now >= at);
        if refresh {
            self.next_refresh = self.refresh_every.map(|every| now + every);
        }
        Due { ping, join_missed, refresh }
    }
}

/// Serves one upgraded connection until it closes, times out, floods, falls behind, or
/// the server shuts down; then takes its peer out of its room. One socket serves both
/// directions, not `split()` halves: their lock cost 6 % of the server's CPU when
/// relaying, and each connection 400 bytes.
#[allow(clippy::manual_async_fn)] // see the comment inside
pub(crate) fn serve_connection(
    mut socket: WebSocket,
    state: Arc<AppState>,
    slot: Arc<Slot>,
    challenge_first: bool,
) -> impl Future<Output = ()> + Send {
    // An async block, not an `async fn`: an async fn keeps its arguments twice in its
    // state (rust-lang/rust#62958), and the socket is 368 bytes, paid by every idle
    // connection (its task grows in 128-byte steps).
    async move {
        // `conn` alone, not also its id and link in locals of their own (see above).
        let conn = Conn { id: state.next_conn.fetch_add(1, Ordering::Relaxed), link: Arc::new(Link::new(state.config.max_inbound_per_sec)) };
        let mut challenge = Challenge::default();
        if challenge_first {
            challenge.push(&conn.link);
        }
        let mut bucket = TokenBucket::new(state.config.max_frames_per_sec);
        // Refusals of our signals because their receiver is saturated: one error a second.
        let mut inbound_refusals = Throttle::new(Duration::from_secs(1));
        state.links.lock().insert(conn.id, conn.link.clone());
        // After the insert: a shutdown that began before it is seen here, one after it
        // finds this link.
        if *state.shutdown.borrow() {
            conn.link.restart.store(true, Ordering::Release);
        }
        // One timer for the connection's three deadlines (each timer costs every idle
        // connection memory): the next ping (the first one interval in: a connection that
        // just opened is alive), the join deadline, and fresh TURN credentials before the
        // ones in `welcome` expire (long sessions).
        let mut deadlines = Deadlines::new(Instant::now(), &state.config);
        let timer = tokio::time::sleep_until(deadlines.next());
        tokio::pin!(timer);
        let mut last_heard = Instant::now();
        state.live_sockets.fetch_add(1, Ordering::Relaxed);
        state.metrics.connections.inc();
        debug!(conn = conn.id, "connected");

        // `None` after the loop: no close frame (the peer is gone, or a write is torn).
        let close: Option<(u16, &'static str)> = loop {
            tokio::select! {
                incoming = socket.next() => {
                    let message = match incoming {
                        None => break None,
                        Some(Ok(message)) => message,
                        Some(Err(err)) if is_bad_utf8(&err) => break Some((close_code::INVALID_DATA, "text frame is not valid UTF-8")),
                        Some(Err(err)) => {
                            // Includes frames over the transport's hard cap (HARD_MESSAGE_CAP).
                            debug!(conn = conn.id, %err, "read failed");
                            break None;
                        }
                    };
                    last_heard = Instant::now();
                    state.metrics.frames_in.inc();
                    // Every frame a client sends goes through the one rate limiter: text,
                    // binary, and pings (each of which makes us write a pong).
                    if let Message::Close(_) = message {
                        // Send the close reply tungstenite queued before the socket goes.
                        let _ = Box::pin(tokio::time::timeout(GOODBYE_DEADLINE, socket.close())).await;
                        break None;
                    }
                    match bucket.check(last_heard) {
                        Verdict::Pass => {}
                        Verdict::Flood => break Some((close_code::POLICY, "rate limit exceeded")),
                        Verdict::Refused { first } => {
                            state.metrics.rate_limited.inc();
                            // One error per burst of refused frames: answering each would let a
                            // flood turn the server into an amplifier.
                            if first {
                                let err = ProtocolError::new(ErrorCode::RateLimited, format!("more than {} frames per second", state.config.max_frames_per_sec));
                                if !Box::pin(send_error(&mut socket, &err, &state.metrics)).await {
                                    break None;
                                }
                            }
                            continue;
                        }
                    }
                    let handled = match message {
                        // Boxed: its future is large and needed only while a frame is handled,
                        // not for the whole life of every idle connection.
                        Message::Text(text) => Box::pin(handle_text(&text, &conn, &mut challenge, &state)).await,
                        Message::Binary(_) => Err(ProtocolError::new(ErrorCode::BinaryFrame, "only JSON text frames are accepted")),
                        _ => continue,
                    };
                    match handled {
                        Ok(()) if conn.link.member.get().is_some() && deadlines.join_by.is_some() => {
                            deadlines.joined(last_heard);
                            timer.as_mut().reset(deadlines.next());
                        }
                        Ok(()) => {}
                        Err(err) if err.code == ErrorCode::TooLarge => {
                            let _ = Box::pin(send_error(&mut socket, &err, &state.metrics)).await;
                            break Some((close_code::TOO_BIG, "frame too large"));
                        }
                        // The receiver is saturated, not this sender: tell it once a second.
                        Err(err) if err.code == ErrorCode::RateLimited && !inbound_refusals.ready(last_heard) => {}
                        Err(err) => {
                            if !Box::pin(send_error(&mut socket, &err, &state.metrics)).await {
                                break None;
                            }
                        }
                    }
                }
                wake = conn.link.woken() => {
                    match wake {
                        Wake::Behind => break Some((close_code::TRY_AGAIN_LATER, "too slow")),
                        Wake::Restart => break Some((close_code::SERVICE_RESTART, "server restarting: connect again")),
                        Wake::Queued => {}
                    }
                    let (batch, close) = conn.link.take_batch();
                    let bytes: usize = batch.iter().map(String::len).sum();
                    state.metrics.frames_out.inc_by(batch.len() as u64);
                    let written = tokio::select! {
                        written = Box::pin(tokio::time::timeout(WRITE_DEADLINE, write_batch(&mut socket, batch))) => written.ok().unwrap_or(false),
                        // Fell behind while we were writing: the write is abandoned mid-way.
                        _ = conn.link.fell_behind() => break None,
                    };
                    conn.link.queued.fetch_sub(bytes, Ordering::AcqRel);
                    if !written {
                        info!(conn = conn.id, "write stalled past its deadline, closing");
                        break None;
                    }
                    if close.is_some() {
                        break close;
                    }
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    let due = deadlines.due(now, conn.link.member.get().is_some());
                    if due.join_missed {
                        break Some((close_code::POLICY, "no join within the join timeout"));
                    }
                    if due.ping {
                        if last_heard.elapsed() > state.config.idle_timeout {
                            info!(conn = conn.id, "idle, closing");
                            break Some((close_code::GOING_AWAY, "idle timeout"));
                        }
                        if !Box::pin(send_within(&mut socket, Message::Ping(Default::default()))).await {
                            break None;
                        }
                    }
                    if let (true, Some((_, id))) = (due.refresh, conn.link.member.get()) {
                        let servers = state.config.ice.servers_for(id, SystemTime::now());
                        let frame = ServerMessage::IceServers { ice_servers: &servers }.to_json();
                        if !Box::pin(send_within(&mut socket, Message::Text(Utf8Bytes::from(frame)))).await {
                            break None;
                        }
                    }
                    timer.as_mut().reset(deadlines.next());
                }
            }
        };

        if let Some((room, id)) = conn.link.member.get() {
            let ours = {
                let mut rooms = state.rooms();
                let ours = rooms.holds(room, id, &conn);
                let left = rooms.leave(room, id, &conn);
                deliver(&mut rooms, left);
                state.count_peers(&rooms);
                ours
            };
            if let (true, Some(cluster)) = (ours, &state.cluster) {
                // Boxed, like every Redis call here: its future would otherwise be part of every
                // connection's task, cluster or not (measured: +1.3 KiB per idle connection).
                Box::pin(cluster.leave(room, id)).await;
            }
        }
        if let Some((code, _)) = close {
            state.metrics.closed(code);
        }
        // Frames others queued for us are dropped, and no more are taken.
        conn.link.shut();
        state.links.lock().remove(&conn.id);
        if let Some((code, reason)) = close {
            Box::pin(goodbye(socket, code, reason)).await;
        }
        drop(slot);
        state.live_sockets.fetch_sub(1, Ordering::Relaxed);
        state.metrics.connections.dec();
        state.sockets_changed.notify_waiters();
        debug!(conn = conn.id, "disconnected");
    }
}

/// Writes frames with one flush: one syscall per frame cannot keep up with a peer
/// whose frames arrive in batches.
async fn write_batch(socket: &mut WebSocket, batch: Vec<String>) -> bool {
    for frame in batch {
        if socket.feed(Message::Text(Utf8Bytes::from(frame))).await.is_err() {
            return false;
        }
    }
    socket.flush().await.is_ok()
}

/// Sends a close frame and finishes the closing handshake, within a deadline: a peer
/// that stopped reading must not hold this task.
async fn goodbye(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    let handshake = async {
        socket.send(Message::Close(Some(frame))).await?;
        // Dropping the socket with the client's frames unread makes the kernel reset
        // it, and the client would lose our close frame.
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Close(_) = message {
                break;
            }
        }
        Ok::<_, axum::Error>(())
    };
    let _ = tokio::time::timeout(GOODBYE_DEADLINE, handshake).await;
}

/// A text frame whose bytes are not UTF-8 (RFC 6455 asks for close code 1007).
fn is_bad_utf8(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(tungstenite::Error::Utf8(_)) = e.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The nonce a keyed join must sign; taken by the first join attempt after it.
#[derive(Default)]
struct Challenge {
    nonce: Option<Box<str>>,
    /// Sent unasked (`?challenge=first`) and not yet asked for: it is the answer to the
    /// first `challenge` request, which a client that also speaks to older servers
    /// still sends.
    pushed: bool,
}

impl Challenge {
    /// A fresh nonce goes out (after anything already queued), replacing the last one.
    fn issue(&mut self, link: &Link) {
        let nonce = identity::nonce();
        link.offer(ServerMessage::Challenge { nonce: &nonce }.to_json());
        self.nonce = Some(nonce.into_boxed_str());
        self.pushed = false;
    }

    fn push(&mut self, link: &Link) {
        self.issue(link);
        self.pushed = true;
    }

    /// The nonce for a join attempt, spent by it whatever its kind.
    fn take(&mut self) -> Option<Box<str>> {
        self.pushed = false;
        self.nonce.take()
    }
}

async fn handle_text(text: &str, conn: &Conn, challenge: &mut Challenge, state: &Arc<AppState>) -> Result<(), ProtocolError> {
    match parse_client(text)? {
        ClientRequest::Join { room, name, secret, keyed } => {
            if conn.link.member.get().is_some() {
                return Err(ProtocolError::new(ErrorCode::AlreadyJoined, "this connection has already joined a room"));
            }
            // One attempt per nonce: a failed or replayed proof needs a new challenge.
            let nonce = challenge.take();
            let id = match (keyed, secret) {
                (Some((key, proof)), _) => identity::id_from_proof(&key, &proof, nonce.as_deref(), &room)?,
                (None, Some(secret)) => identity::id_from_secret(&secret),
                (None, None) => identity::random_id(),
            };
            // Across instances first: the room's capacity holds everywhere, and the
            // members elsewhere are listed in the welcome.
            let remote = match &state.cluster {
                Some(cluster) => Box::pin(cluster.join(&room, &id, name.as_deref(), state.config.max_room_peers)).await?,
                None => None,
            };
            // Credentials only for a client that holds a live session: this one, now.
            let ice_servers = state.config.ice.servers_for(&id, SystemTime::now());
            let mut rooms = state.rooms();
            let mut outbox = Vec::new();
            if let (Some(members), Some(cluster)) = (&remote, &state.cluster) {
                // Learnt before the join, so the welcome lists them.
                for (member, member_name, instance) in members.iter().filter(|(m, _, i)| *i != cluster.instance && *m != id) {
                    let learnt = rooms.learn_remote(&room, member, member_name.as_deref(), instance);
                    outbox.extend(learnt.outbox);
                    crate::cluster::replace(learnt.replaced);
                }
            }
            let result = match rooms.join(conn.clone(), &room, &id, name.as_deref(), &ice_servers) {
                Ok(result) => result,
                Err(err) => {
                    rooms.forget_unless_local(&room);
                    return Err(err);
                }
            };
            finish_join(state, rooms, conn, room.into_owned(), id, result, outbox)
        }
        ClientRequest::Signal { to, data } => {
            let (room, from) = conn.link.member.get().ok_or_else(|| ProtocolError::new(ErrorCode::NotJoined, "send a join before signals"))?;
            let route = state.rooms().relay(room, from, &to, data)?;
            match route {
                Route::Local(target, frame) => {
                    if !target.accepts_inbound() {
                        state.metrics.rate_limited.inc();
                        let max = state.config.max_inbound_per_sec;
                        return Err(ProtocolError::new(
                            ErrorCode::RateLimited,
                            format!("{to} is being sent more than {max} signals per second; this one was dropped"),
                        ));
                    }
                    let mut rooms = state.rooms();
                    deliver(&mut rooms, vec![(target, frame)]);
                    state.metrics.relayed_local.inc();
                }
                // Boxed, like every Redis call here: its future would otherwise be part of every
                // connection's task.
                Route::Remote(instance) => Box::pin(crate::cluster::relay(state, conn, &instance, room, from, &to, data)).await?,
            }
            Ok(())
        }
        // Queued behind the frames already on their way, like everything else we send:
        // the pong also says those were written.
        ClientRequest::Ping => {
            conn.link.offer(ServerMessage::Pong.to_json());
            Ok(())
        }
        ClientRequest::Challenge => {
            if conn.link.member.get().is_some() {
                return Err(ProtocolError::new(ErrorCode::AlreadyJoined, "this connection has already joined a room"));
            }
            if std::mem::take(&mut challenge.pushed) {
                return Ok(());
            }
            challenge.issue(&conn.link);
            Ok(())
        }
    }
}

/// The welcome and the others' `peer-joined` go out; a connection that held the id
/// before is told it was replaced.
fn finish_join(
    state: &AppState,
    mut rooms: std::sync::MutexGuard<'_, Rooms<Conn>>,
    conn: &Conn,
    room: String,
    id: String,
    result: crate::rooms::Joined<Conn>,
    mut outbox: Outbox<Conn>,
) -> Result<(), ProtocolError> {
    info!(conn = conn.id, %room, peer = %id, "joined");
    // The connection's one record of its room and id (the task reads it too).
    let _ = conn.link.member.set((room, id));
    if let Some(old) = result.replaced {
        // Said in words before the close, so the old tab stops instead of
        // reconnecting and taking the id back.
        let replaced = ProtocolError::new(ErrorCode::Replaced, "another connection joined with this id");
        old.link.offer(ServerMessage::Error { code: replaced.code, message: &replaced.message }.to_json());
        old.link.close(close_code::POLICY, "replaced by a newer connection");
    }
    let mut all = result.outbox;
    all.append(&mut outbox);
    deliver(&mut rooms, all);
    state.count_peers(&rooms);
    drop(rooms);
    Ok(())
}

/// Sends an error frame now (within the write deadline); false if the socket failed.
async fn send_error(socket: &mut WebSocket, err: &ProtocolError, metrics: &crate::metrics::Metrics) -> bool {
    metrics.error(err.code.as_str());
    let frame = ServerMessage::Error { code: err.code, message: &err.message }.to_json();
    send_within(socket, Message::Text(Utf8Bytes::from(frame))).await
}

/// Sends one message within the write deadline; false if the socket failed or stalled.
///
/// Futures that are awaited only now and then are boxed where they are awaited
/// (`Box::pin(...)`): inline, each would be part of every idle connection's task.
async fn send_within(socket: &mut WebSocket, message: Message) -> bool {
    matches!(tokio::time::timeout(WRITE_DEADLINE, socket.send(message)).await, Ok(Ok(())))
}

/// The transport refuses messages above this outright; frames between the protocol's
/// 64 KiB and this cap get a `too-large` error frame before the close.
pub(crate) const HARD_MESSAGE_CAP: usize = 16 * MAX_FRAME_BYTES;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Config;

    fn link() -> Link {
        Link::new(10)
    }

    #[test]
    fn frames_go_out_in_batches_in_order_and_a_close_ends_the_last_one() {
        let link = link();
        for i in 0..WRITE_BATCH + 3 {
            assert!(link.offer(format!("frame {i}")));
        }
        link.close(close_code::GOING_AWAY, "bye");
        let (first, close) = link.take_batch();
        assert_eq!(first.len(), WRITE_BATCH);
        assert_eq!(first[0], "frame 0");
        assert_eq!(close, None);
        let (rest, close) = link.take_batch();
        assert_eq!(rest, ["frame 64", "frame 65", "frame 66"]);
        assert_eq!(close, Some((close_code::GOING_AWAY, "bye")));
    }

    #[test]
    fn a_connection_over_its_byte_limit_is_reported_once_and_then_takes_nothing() {
        let link = link();
        assert!(link.offer("x".repeat(MAX_QUEUED_BYTES)));
        assert!(!link.offer("y".into()), "this is the moment to take it out of its room");
        assert!(link.offer("z".into()), "going away already");
        let (batch, _) = link.take_batch();
        assert_eq!(batch.len(), 1, "only what fitted was queued");
        link.shut();
        assert!(link.offer("late".into()));
        assert_eq!(link.take_batch(), (Vec::new(), None), "nothing is queued for a connection whose task ended");
    }

    #[test]
    fn one_timer_serves_the_ping_the_join_deadline_and_the_refresh() {
        let config = Config { ping_interval: Duration::from_secs(15), join_timeout: Duration::from_secs(10), ..Config::default() };
        let start = Instant::now();
        let mut deadlines = Deadlines::new(start, &config);
        assert_eq!(deadlines.next(), start + config.join_timeout, "the join deadline comes first");
        let missed = deadlines.due(start + config.join_timeout, false);
        assert!(missed.join_missed && !missed.ping && !missed.refresh);
        deadlines.joined(start + Duration::from_secs(1));
        assert_eq!(deadlines.next(), start + config.ping_interval, "joined: the next ping");
        let at_ping = deadlines.due(start + config.ping_interval, true);
        assert!(at_ping.ping && !at_ping.join_missed && !at_ping.refresh);
        assert_eq!(deadlines.next(), start + 2 * config.ping_interval);
    }
}
