//! One task per WebSocket connection: read frames, apply them to the shared [`Rooms`]
//! under one short lock, and write what is addressed to this connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::identity;
use crate::protocol::{parse_client, ClientRequest, ErrorCode, ProtocolError, ServerMessage, MAX_FRAME_BYTES};
use crate::rooms::Outbox;
use crate::AppState;

/// WebSocket close codes we send (RFC 6455 §7.4.1).
mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Frames queued for one connection before it counts as too slow and is dropped.
const QUEUE_DEPTH: usize = 1024;
/// Most extra frames written per flush, so one busy connection cannot starve the
/// others sharing its worker thread.
const WRITE_BATCH: usize = 64;

/// What other connections hand to this one.
pub(crate) enum Outgoing {
    Frame(String),
    Close(u16, &'static str),
}

/// A connection as [`Rooms`](crate::rooms::Rooms) sees it: equal only to itself.
#[derive(Clone)]
pub(crate) struct Conn {
    id: u64,
    tx: mpsc::Sender<Outgoing>,
}

impl PartialEq for Conn {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

/// Hands each frame to its connection. Called with the rooms lock held, so every
/// connection sees events in the order the rooms applied them; `try_send` never waits.
pub(crate) fn deliver(outbox: Outbox<Conn>) {
    for (conn, frame) in outbox {
        if let Err(mpsc::error::TrySendError::Full(_)) = conn.tx.try_send(Outgoing::Frame(frame)) {
            // A reader this far behind would only grow our memory: drop it, it reconnects.
            warn!(conn = conn.id, "connection too slow, closing");
            let tx = conn.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(Outgoing::Close(close_code::TRY_AGAIN_LATER, "too slow")).await;
            });
        }
    }
}

/// Allows `rate` frames a second with bursts of twice that.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused since the last accepted one.
    refused: u32,
}

impl TokenBucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        let burst = (rate * 2.0).max(10.0);
        TokenBucket { rate, burst, tokens: burst, last: Instant::now(), refused: 0 }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            true
        } else {
            self.refused += 1;
            false
        }
    }

    /// A flood is two seconds' worth of refused frames in a row.
    fn flooding(&self) -> bool {
        f64::from(self.refused) > self.rate * 2.0
    }
}

/// Serves one upgraded connection until it closes, times out, floods, or the server
/// shuts down; then takes its peer out of its room.
pub(crate) async fn serve_connection(socket: WebSocket, state: Arc<AppState>) {
    let conn_id = state.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel(QUEUE_DEPTH);
    let conn = Conn { id: conn_id, tx };
    let (mut sink, mut stream) = socket.split();
    let mut joined: Option<(String, String)> = None;
    let mut bucket = TokenBucket::new(state.config.max_frames_per_sec);
    let mut shutdown = state.shutdown.subscribe();
    let mut ping = tokio::time::interval(state.config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    state.live_connections.fetch_add(1, Ordering::Relaxed);
    debug!(conn = conn_id, "connected");

    let close: Option<(u16, &'static str)> = loop {
        tokio::select! {
            incoming = stream.next() => {
                let message = match incoming {
                    None => break None,
                    Some(Ok(message)) => message,
                    Some(Err(err)) => {
                        // Includes frames over the transport's hard cap (HARD_MESSAGE_CAP).
                        debug!(conn = conn_id, %err, "read failed");
                        break None;
                    }
                };
                last_heard = Instant::now();
                // Every data frame, text or binary, goes through the one rate limiter.
                let text = match message {
                    Message::Text(text) => Some(text),
                    Message::Binary(_) => None,
                    Message::Close(_) => break None,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if !bucket.take(last_heard) {
                    if bucket.flooding() {
                        break Some((close_code::POLICY, "rate limit exceeded"));
                    }
                    // One error per burst of refused frames: answering each would let a
                    // flood turn the server into an amplifier.
                    if bucket.refused == 1 {
                        let err = ProtocolError::new(ErrorCode::RateLimited, format!("more than {} frames per second", state.config.max_frames_per_sec));
                        if send_error(&mut sink, &err).await.is_err() {
                            break None;
                        }
                    }
                    continue;
                }
                let handled = match text {
                    Some(text) => handle_text(&text, &conn, &mut joined, &state),
                    None => Err(ProtocolError::new(ErrorCode::BinaryFrame, "only JSON text frames are accepted")),
                };
                if let Err(err) = handled {
                    if err.code == ErrorCode::TooLarge {
                        let _ = send_error(&mut sink, &err).await;
                        break Some((close_code::TOO_BIG, "frame too large"));
                    }
                    if send_error(&mut sink, &err).await.is_err() {
                        break None;
                    }
                }
            }
            outgoing = rx.recv() => match outgoing {
                Some(Outgoing::Frame(frame)) => {
                    // Write everything already queued with one flush: one syscall per
                    // frame cannot keep up with a peer whose frames arrive in batches.
                    let mut written = sink.feed(Message::Text(Utf8Bytes::from(frame))).await;
                    let mut close = None;
                    for _ in 0..WRITE_BATCH {
                        match rx.try_recv() {
                            Ok(Outgoing::Frame(frame)) if written.is_ok() => {
                                written = sink.feed(Message::Text(Utf8Bytes::from(frame))).await;
                            }
                            Ok(Outgoing::Close(code, reason)) => {
                                close = Some((code, reason));
                                break;
                            }
                            _ => break,
                        }
                    }
                    if written.is_err() || sink.flush().await.is_err() {
                        break None;
                    }
                    if close.is_some() {
                        break close;
                    }
                }
                Some(Outgoing::Close(code, reason)) => break Some((code, reason)),
                // Unreachable while `conn` (which holds a sender) is alive.
                None => break None,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > state.config.idle_timeout {
                    info!(conn = conn_id, "idle, closing");
                    break Some((close_code::GOING_AWAY, "idle timeout"));
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            _ = shutdown.changed() => break Some((close_code::GOING_AWAY, "server shutting down")),
        }
    };

    if let Some((room, id)) = joined {
        let mut rooms = state.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        deliver(rooms.leave(&room, &id, &conn));
    }
    if let Some((code, reason)) = close {
        let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
        // Bounded: a peer that stopped reading must not hold this task forever.
        let goodbye = async {
            sink.send(Message::Close(Some(frame))).await?;
            // Finish the closing handshake: dropping the socket with the client's frames
            // unread makes the kernel reset it, and the client would lose our close frame.
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Close(_) = message {
                    break;
                }
            }
            Ok::<_, axum::Error>(())
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), goodbye).await;
    }
    state.live_connections.fetch_sub(1, Ordering::Relaxed);
    state.connections_changed.notify_waiters();
    debug!(conn = conn_id, "disconnected");
}

fn handle_text(text: &str, conn: &Conn, joined: &mut Option<(String, String)>, state: &AppState) -> Result<(), ProtocolError> {
    match parse_client(text)? {
        ClientRequest::Join { room, name, secret } => {
            if joined.is_some() {
                return Err(ProtocolError::new(ErrorCode::AlreadyJoined, "this connection has already joined a room"));
            }
            let id = match secret {
                Some(secret) => identity::id_from_secret(&secret),
                None => identity::random_id(),
            };
            let mut rooms = state.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let result = rooms.join(conn.clone(), &room, &id, name.as_deref())?;
            if let Some(old) = result.replaced {
                let _ = old.tx.try_send(Outgoing::Close(close_code::POLICY, "replaced by a newer connection"));
            }
            deliver(result.outbox);
            drop(rooms);
            info!(conn = conn.id, %room, peer = %id, "joined");
            *joined = Some((room.into_owned(), id));
            Ok(())
        }
        ClientRequest::Signal { to, data } => {
            let (room, from) = joined
                .as_ref()
                .ok_or_else(|| ProtocolError::new(ErrorCode::NotJoined, "send a join before signals"))?;
            let rooms = state.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let delivery = rooms.relay(room, from, &to, data)?;
            deliver(vec![delivery]);
            Ok(())
        }
    }
}

async fn send_error<S>(sink: &mut S, err: &ProtocolError) -> Result<(), S::Error>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let frame = ServerMessage::Error { code: err.code, message: &err.message }.to_json();
    sink.send(Message::Text(Utf8Bytes::from(frame))).await
}

/// The transport refuses messages above this outright; frames between the protocol's
/// 64 KiB and this cap get a `too-large` error frame before the close.
pub(crate) const HARD_MESSAGE_CAP: usize = 16 * MAX_FRAME_BYTES;
