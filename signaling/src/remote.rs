//! Signals for peers on other instances, queued per instance and published to its
//! inbox in batches: one PUBLISH carries every signal queued while the previous one
//! was on its way. At a few thousand signals a second a batch is one signal, published
//! as before; under load Redis, the publishing instance and the receiving one each
//! handle a batch for about the cost of one signal.
//!
//! One queue per receiving instance, drained by one task in order, so signals from one
//! connection keep their order across instances. A full queue makes its senders wait
//! (they stop reading their sockets), as waiting for each PUBLISH did before. A signal that cannot be published
//! (Redis is down, or nobody listens on that inbox) is reported to its sender with
//! `unavailable`, as when it was published on its own.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::protocol::{ErrorCode, ProtocolError, ServerMessage};
use crate::server::AppState;
use crate::ws::Conn;

/// Bytes queued for one instance before its senders wait for room (and stop reading
/// their sockets): Redis or that instance is slow, and memory must not grow without
/// bound. A sender that waits longer than [`MAX_WAIT`] has its signal refused.
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// How long a sender waits for room in a full queue before `unavailable`.
const MAX_WAIT: Duration = Duration::from_secs(2);
/// Most bytes one PUBLISH carries (Redis takes far more; a smaller batch keeps the
/// receiving instance's one task from holding its rooms for long).
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// A queue idle this long is dropped with its task (instances come and go).
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// A signal waiting for its PUBLISH; `S` is whom to tell if it is lost (its sender).
struct Pending<S> {
    /// The signal as the other instance reads it (`Relayed`, JSON).
    relayed: String,
    sender: S,
    to: String,
}

/// The signals waiting for one instance.
struct Queue<S> {
    pending: VecDeque<Pending<S>>,
    bytes: usize,
    /// Something was queued.
    ready: Arc<Notify>,
    /// Something was taken: senders waiting for room try again.
    room: Arc<Notify>,
}

impl<S> Queue<S> {
    fn new() -> Self {
        Queue { pending: VecDeque::new(), bytes: 0, ready: Arc::new(Notify::new()), room: Arc::new(Notify::new()) }
    }

    /// Whether a signal of `len` bytes fits now (one always fits in an empty queue).
    fn fits(&self, len: usize) -> bool {
        self.bytes == 0 || self.bytes + len <= MAX_QUEUED_BYTES
    }

    /// Queues `signal` last, or gives it back if it does not fit.
    fn push(&mut self, signal: Pending<S>) -> Result<(), Pending<S>> {
        if !self.fits(signal.relayed.len()) {
            return Err(signal);
        }
        self.bytes += signal.relayed.len();
        self.pending.push_back(signal);
        self.ready.notify_one();
        Ok(())
    }

    /// The next batch, in the order queued; `None` if nothing waits.
    fn take(&mut self) -> Option<Batch<S>> {
        let first = self.pending.pop_front()?;
        let mut bytes = first.relayed.len();
        let mut senders = vec![(first.sender, first.to)];
        let mut payload = first.relayed;
        // One signal goes as the object itself, as instances before batching read it.
        if self.pending.front().is_some_and(|next| bytes + next.relayed.len() < MAX_BATCH_BYTES) {
            payload.insert(0, '[');
            while let Some(next) = self.pending.pop_front() {
                if bytes + next.relayed.len() >= MAX_BATCH_BYTES {
                    self.pending.push_front(next);
                    break;
                }
                bytes += next.relayed.len();
                payload.push(',');
                payload.push_str(&next.relayed);
                senders.push((next.sender, next.to));
            }
            payload.push(']');
        }
        self.bytes -= bytes;
        self.room.notify_waiters();
        if self.pending.is_empty() {
            self.pending = VecDeque::new(); // an idle queue keeps no buffer
        }
        Some(Batch { payload, senders })
    }
}

/// Every other instance's queue.
#[derive(Default)]
pub(crate) struct RemoteQueues {
    by_instance: Mutex<HashMap<String, Queue<Conn>>>,
}

/// What one PUBLISH carries: its payload, and whom to tell if it is lost.
pub(crate) struct Batch<S = Conn> {
    pub(crate) payload: String,
    senders: Vec<(S, String)>,
}

impl<S> Batch<S> {
    pub(crate) fn len(&self) -> usize {
        self.senders.len()
    }
}

impl Batch<Conn> {
    /// Tells each sender its signal was dropped.
    pub(crate) fn lost(self, state: &AppState, instance: &str) {
        for (sender, to) in self.senders {
            let err = unavailable(&to);
            state.metrics.error(err.code.as_str());
            sender.offer(ServerMessage::Error { code: err.code, message: &err.message }.to_json());
        }
        tracing::debug!(instance, "signals for another instance dropped");
    }
}

/// The error for a signal to `to` that cannot reach its instance.
pub(crate) fn unavailable(to: &str) -> ProtocolError {
    // Said, not swallowed: the sender's connection attempt can retry.
    ProtocolError::new(ErrorCode::Unavailable, format!("{to} is on another instance that cannot be reached now; this signal was dropped"))
}

impl RemoteQueues {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Queue<Conn>>> {
        self.by_instance.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `relayed` for `instance`, after what is queued for it; waits while that
    /// queue is full, up to [`MAX_WAIT`] (then `unavailable`).
    pub(crate) async fn push(
        &self,
        state: &Arc<AppState>,
        instance: &str,
        mut relayed: String,
        sender: &Conn,
        to: &str,
    ) -> Result<(), ProtocolError> {
        let deadline = tokio::time::Instant::now() + MAX_WAIT;
        let mut waited = false;
        loop {
            let room = match self.try_push(state, instance, relayed, sender, to) {
                Ok(()) => return Ok(()),
                Err((back, room)) => {
                    relayed = back;
                    room
                }
            };
            let taken = room.notified();
            tokio::pin!(taken);
            // Registered before looking again, so a batch taken meanwhile is not missed.
            taken.as_mut().enable();
            if self.has_room(instance, relayed.len()) {
                continue;
            }
            if !waited {
                waited = true;
                state.metrics.remote_waits.inc();
            }
            if tokio::time::timeout_at(deadline, taken).await.is_err() {
                return Err(unavailable(to));
            }
        }
    }

    /// Queues `relayed` (starting `instance`'s task if it has none), or gives it back
    /// with the queue's notice of room if that queue is full.
    fn try_push(&self, state: &Arc<AppState>, instance: &str, relayed: String, sender: &Conn, to: &str) -> Result<(), (String, Arc<Notify>)> {
        let mut all = self.lock();
        let queue = match all.get_mut(instance) {
            Some(queue) => queue,
            None => {
                let queue = Queue::new();
                tokio::spawn(publish(state.clone(), instance.to_owned(), queue.ready.clone()));
                all.entry(instance.to_owned()).or_insert(queue)
            }
        };
        queue.push(Pending { relayed, sender: sender.clone(), to: to.to_owned() }).map_err(|back| (back.relayed, queue.room.clone()))
    }

    fn has_room(&self, instance: &str, len: usize) -> bool {
        self.lock().get(instance).is_none_or(|queue| queue.fits(len))
    }

    /// The next batch for `instance`; `None` if nothing waits.
    fn take(&self, instance: &str) -> Option<Batch> {
        self.lock().get_mut(instance)?.take()
    }

    /// Drops `instance`'s queue if nothing waits in it; whether it did.
    fn retire_if_idle(&self, instance: &str) -> bool {
        let mut all = self.lock();
        if all.get(instance).is_some_and(|queue| queue.pending.is_empty()) {
            all.remove(instance);
            return true;
        }
        false
    }
}

/// Publishes `instance`'s queue, batch after batch, until it has been idle for
/// [`IDLE_EXIT`].
async fn publish(state: Arc<AppState>, instance: String, ready: Arc<Notify>) {
    let Some(cluster) = state.cluster.as_ref() else { return };
    loop {
        if tokio::time::timeout(IDLE_EXIT, ready.notified()).await.is_err() {
            if cluster.remote.retire_if_idle(&instance) {
                return;
            }
            continue;
        }
        while let Some(batch) = cluster.remote.take(&instance) {
            cluster.publish_batch(&state, &instance, batch).await;
        }
    }
}

/// The signals a payload on an inbox carries: one object, or an array of them.
pub(crate) fn is_batch(payload: &[u8]) -> bool {
    payload.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: usize, len: usize) -> Pending<usize> {
        Pending { relayed: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(len)), sender: n, to: format!("to{n}") }
    }

    fn numbers(batch: &Batch<usize>) -> Vec<usize> {
        batch.senders.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn one_signal_goes_as_itself_and_several_as_an_array_in_the_order_queued() {
        let mut queue = Queue::new();
        assert!(queue.push(signal(0, 10)).is_ok());
        let alone = queue.take().expect("one");
        assert!(alone.payload.starts_with('{'), "{}", alone.payload);
        assert!(queue.take().is_none());
        for n in 1..=3 {
            assert!(queue.push(signal(n, 10)).is_ok());
        }
        let batch = queue.take().expect("three");
        assert_eq!(numbers(&batch), [1, 2, 3]);
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&batch.payload).expect("a JSON array");
        assert_eq!(parsed.iter().map(|v| v["n"].as_u64()).collect::<Vec<_>>(), [Some(1), Some(2), Some(3)]);
        assert!(is_batch(batch.payload.as_bytes()) && !is_batch(alone.payload.as_bytes()));
        assert_eq!(queue.bytes, 0);
    }

    #[test]
    fn a_batch_stops_short_of_its_byte_limit_and_the_rest_follows_in_order() {
        let mut queue = Queue::new();
        let size = MAX_BATCH_BYTES / 4;
        for n in 0..10 {
            assert!(queue.push(signal(n, size)).is_ok());
        }
        let mut seen = Vec::new();
        while let Some(batch) = queue.take() {
            assert!(batch.payload.len() <= MAX_BATCH_BYTES + 2, "{} bytes", batch.payload.len());
            seen.extend(numbers(&batch));
        }
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(queue.bytes, 0);
    }

    #[test]
    fn a_full_queue_gives_the_signal_back_until_a_batch_is_taken() {
        let mut queue = Queue::new();
        let size = 64 * 1024;
        let mut n = 0;
        while queue.push(signal(n, size)).is_ok() {
            n += 1;
        }
        assert!(n > 1 && queue.bytes <= MAX_QUEUED_BYTES && !queue.fits(size + 16), "{} bytes queued", queue.bytes);
        let refused = queue.push(signal(n, size)).expect_err("full");
        assert_eq!(refused.sender, n, "the same signal comes back");
        assert!(queue.take().is_some());
        assert!(queue.push(refused).is_ok(), "room once a batch is taken");
        let mut empty = Queue::<usize>::new();
        assert!(empty.push(signal(0, MAX_QUEUED_BYTES)).is_ok(), "one signal always fits an empty queue");
    }
}
