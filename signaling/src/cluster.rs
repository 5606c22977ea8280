//! Rooms shared by several instances through Redis (`--redis`).
//!
//! Each instance keeps its own connections and a [`Rooms`] with its local members; the
//! members of a room on every instance are in a Redis hash, written with scripts so a
//! room's capacity holds across instances. Presence changes go out on one pub/sub
//! channel that every instance reads; a signal for a peer on another instance goes to
//! that instance's own channel, published in the order its sender sent them (one
//! connection, one order), several to a message under load (see [`remote`]). Each instance refreshes a key with a short TTL; one whose
//! key expired (it died) has its members removed by the others, which tell their
//! local peers. If Redis goes away, each instance carries on with its local peers and,
//! once Redis is back, registers them again and reloads its rooms' members.
//!
//! [`Rooms`]: crate::rooms::Rooms

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script, Value};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, ProtocolError, ServerMessage};
use crate::remote::{is_batch, unavailable, Batch, RemoteQueues};
use crate::server::AppState;
use crate::ws::{close_code, deliver, Conn};

/// Every instance refreshes its key this often…
const ALIVE_EVERY: Duration = Duration::from_secs(2);
/// …and the key lives this long: an instance silent for longer is dead, and its
/// peers are seen to leave within this plus [`ALIVE_EVERY`].
const ALIVE_TTL_SECS: u64 = 6;
/// How long a Redis command may take before it counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
const PRESENCE: &str = "meshdrop:presence";

fn room_key(room: &str) -> String {
    format!("meshdrop:room:{room}")
}

fn alive_key(instance: &str) -> String {
    format!("meshdrop:alive:{instance}")
}

fn inbox(instance: &str) -> String {
    format!("meshdrop:to:{instance}")
}

/// A member's entry in its room's hash: the instance it is on, and its name.
fn entry(instance: &str, name: Option<&str>) -> String {
    format!("{instance}\n{}", name.unwrap_or(""))
}

fn parse_entry(value: &str) -> (String, Option<String>) {
    let (instance, name) = value.split_once('\n').unwrap_or((value, ""));
    (instance.to_owned(), (!name.is_empty()).then(|| name.to_owned()))
}

/// Join atomically: refuse past capacity (a peer already there may always rejoin),
/// then record the member and return every member.
const JOIN_SCRIPT: &str = r"
local known = redis.call('HEXISTS', KEYS[1], ARGV[1])
if known == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
";

/// Remove a member only if it is still on the given instance (it may have moved).
const LEAVE_SCRIPT: &str = r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value and string.sub(value, 1, string.len(ARGV[2]) + 1) == ARGV[2] .. '\n' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
return 0
";

/// A presence change, on [`PRESENCE`].
#[derive(Serialize, Deserialize)]
struct Presence<'a> {
    /// "joined" or "left".
    kind: &'a str,
    room: &'a str,
    id: &'a str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    instance: &'a str,
}

/// A signal for a peer on another instance, on that instance's inbox (alone, or in an
/// array of them).
#[derive(Serialize, Deserialize)]
struct Relayed<'a> {
    room: &'a str,
    from: &'a str,
    to: &'a str,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// This instance's side of the cluster.
pub(crate) struct Cluster {
    pub(crate) instance: String,
    client: redis::Client,
    conn: ConnectionManager,
    join: Script,
    leave: Script,
    /// Redis answered the last command.
    up: AtomicBool,
    /// This instance's subscriptions are live and its peers registered (since the
    /// last (re)connection): the `redis_up` gauge is both.
    subscribed: AtomicBool,
    /// When Redis last came back (or first answered). Every instance's key may have
    /// gone with it, so none counts as dead until each has had a TTL to write its key
    /// again.
    back_since: std::sync::Mutex<Instant>,
    metrics: Arc<Metrics>,
    /// Signals on their way to other instances.
    pub(crate) remote: RemoteQueues,
}

/// The members of a room, as Redis lists them after a join: `(id, name, instance)`.
pub(crate) type Members = Vec<(String, Option<String>, String)>;

impl Cluster {
    /// Connects to Redis at `url` (the server does not start without it).
    pub(crate) async fn connect(url: &str, instance: String, metrics: Arc<Metrics>) -> redis::RedisResult<Cluster> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = client.get_connection_manager_with_config(config).await?;
        Ok(Cluster {
            instance,
            client,
            conn,
            join: Script::new(JOIN_SCRIPT),
            leave: Script::new(LEAVE_SCRIPT),
            up: AtomicBool::new(true),
            subscribed: AtomicBool::new(false),
            back_since: std::sync::Mutex::new(Instant::now()),
            metrics,
            remote: RemoteQueues::default(),
        })
    }

    /// Times a command, counts its failure, and says so in the log when Redis goes
    /// away or comes back.
    async fn run<T>(&self, what: &str, command: impl std::future::Future<Output = redis::RedisResult<T>>) -> redis::RedisResult<T> {
        let started = Instant::now();
        let result = command.await;
        match &result {
            Ok(_) => {
                self.metrics.redis_rtt.observe(started.elapsed().as_secs_f64());
                if !self.up.swap(true, Ordering::AcqRel) {
                    info!("redis is back");
                    *self.back_since.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
                    self.show_up();
                }
            }
            Err(err) => {
                self.metrics.redis_failures.inc();
                if self.up.swap(false, Ordering::AcqRel) {
                    warn!(%err, what, "redis failed; serving local peers only until it is back");
                    self.show_up();
                }
            }
        }
        result
    }

    fn show_up(&self) {
        let up = self.up.load(Ordering::Acquire) && self.subscribed.load(Ordering::Acquire);
        self.metrics.redis_up.set(i64::from(up));
    }

    /// Joins `id` to `room` everywhere: `room-full` past capacity across instances;
    /// otherwise the room's members on every instance. `Ok(None)`: Redis is down (the
    /// join stays local until it is back).
    pub(crate) async fn join(&self, room: &str, id: &str, name: Option<&str>, max: usize) -> Result<Option<Members>, ProtocolError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.join.key(room_key(room));
        invocation.arg(id).arg(entry(&self.instance, name)).arg(max);
        let reply: Value = match self.run("join", invocation.invoke_async(&mut conn)).await {
            Ok(reply) => reply,
            Err(_) => return Ok(None),
        };
        let Value::Array(flat) = reply else {
            return Err(ProtocolError::new(ErrorCode::RoomFull, format!("room is full ({max} peers)")));
        };
        let mut members = Vec::new();
        for pair in flat.chunks_exact(2) {
            if let (Value::BulkString(member), Value::BulkString(value)) = (&pair[0], &pair[1]) {
                let (instance, name) = parse_entry(&String::from_utf8_lossy(value));
                members.push((String::from_utf8_lossy(member).into_owned(), name, instance));
            }
        }
        let _ = self.publish(PRESENCE, &Presence { kind: "joined", room, id, name, instance: &self.instance }).await;
        Ok(Some(members))
    }

    /// `id` left `room` here: removed (if it is still ours) and announced.
    pub(crate) async fn leave(&self, room: &str, id: &str) {
        if self.remove(room, id, &self.instance).await {
            let _ = self.publish(PRESENCE, &Presence { kind: "left", room, id, name: None, instance: &self.instance }).await;
        }
    }

    /// Removes `id` from `room`'s hash if it is on `instance`; whether it was.
    async fn remove(&self, room: &str, id: &str, instance: &str) -> bool {
        let mut conn = self.conn.clone();
        let mut invocation = self.leave.key(room_key(room));
        invocation.arg(id).arg(instance);
        matches!(self.run("leave", invocation.invoke_async::<i64>(&mut conn)).await, Ok(1))
    }

    /// Publishes one batch of signals to `instance`'s inbox.
    pub(crate) async fn publish_batch(&self, state: &AppState, instance: &str, batch: Batch) {
        let mut conn = self.conn.clone();
        self.metrics.remote_batch.observe(batch.len() as f64);
        let published = self.run("publish", conn.publish::<_, _, i64>(inbox(instance), &batch.payload)).await;
        if matches!(published, Ok(receivers) if receivers > 0) {
            self.metrics.relayed_remote.inc_by(batch.len() as u64);
        } else {
            batch.lost(state, instance);
        }
    }

    async fn publish(&self, channel: &str, message: &impl Serialize) -> redis::RedisResult<()> {
        let text = serde_json::to_string(message).unwrap_or_default();
        let mut conn = self.conn.clone();
        self.run("publish", conn.publish::<_, _, ()>(channel, text)).await
    }

    /// Marks this instance gone at once (on shutdown): the others drop its peers at
    /// their next check instead of after the TTL.
    pub(crate) async fn retire(&self) {
        let mut conn = self.conn.clone();
        let _ = self.run("retire", conn.del::<_, ()>(alive_key(&self.instance))).await;
    }
}

/// Sends `sender`'s signal to the instance holding its receiver, after the signals
/// queued for it before (waiting while too many wait for that instance).
/// `unavailable` if it could not be queued within 2 s; later (an error frame to
/// `sender`) if it is lost: Redis is down, or that instance is not listening (it died,
/// or is resubscribing after Redis came back).
pub(crate) async fn relay(
    state: &Arc<AppState>,
    sender: &Conn,
    instance: &str,
    room: &str,
    from: &str,
    to: &str,
    data: &RawValue,
) -> Result<(), ProtocolError> {
    let Some(cluster) = state.cluster.as_ref() else { return Err(unavailable(to)) };
    let text = serde_json::to_string(&Relayed { room, from, to, data }).unwrap_or_default();
    cluster.remote.push(state, instance, text, sender, to).await
}

/// Runs the cluster's background work until the server shuts down: reading presence
/// and signals from other instances, and keeping this instance alive (and noticing
/// dead ones).
pub(crate) fn spawn(state: Arc<AppState>) {
    tokio::spawn(listen(state.clone()));
    tokio::spawn(keep_alive(state));
}

/// Reads the presence channel and this instance's inbox; on every (re)connection,
/// registers this instance's peers again and reloads its rooms (Redis may have
/// restarted empty, and events were missed meanwhile).
async fn listen(state: Arc<AppState>) {
    let Some(cluster) = state.cluster.as_ref() else { return };
    let mut shutdown = state.shutdown.subscribe();
    let mut delay = Duration::from_millis(100);
    loop {
        let session = async {
            let mut pubsub = cluster.client.get_async_pubsub().await?;
            pubsub.subscribe(PRESENCE).await?;
            pubsub.subscribe(inbox(&cluster.instance)).await?;
            delay = Duration::from_millis(100);
            resync(&state).await;
            cluster.subscribed.store(true, Ordering::Release);
            cluster.show_up();
            info!("subscribed to redis; rooms shared with the other instances");
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let payload = message.get_payload_bytes();
                if message.get_channel_name() == PRESENCE {
                    on_presence(&state, payload);
                } else {
                    on_relayed(&state, payload);
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            ended = session => {
                cluster.metrics.redis_failures.inc();
                cluster.subscribed.store(false, Ordering::Release);
                cluster.show_up();
                match ended {
                    Err(err) => warn!(%err, "redis subscription lost; retrying"),
                    Ok(()) => warn!("redis closed the subscription; retrying"),
                }
            }
            _ = crate::server::shut_down(&mut shutdown) => return,
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Registers every local peer again and reloads each room's remote members.
async fn resync(state: &Arc<AppState>) {
    let Some(cluster) = state.cluster.as_ref() else { return };
    let locals = state.rooms().local_members();
    let mut rooms: Vec<String> = locals.iter().map(|(room, _, _)| room.clone()).collect();
    rooms.sort();
    rooms.dedup();
    let mut conn = cluster.conn.clone();
    for (room, id, name) in &locals {
        let _ = cluster.run("resync", conn.hset::<_, _, _, ()>(room_key(room), id, entry(&cluster.instance, name.as_deref()))).await;
        let _ = cluster.publish(PRESENCE, &Presence { kind: "joined", room, id, name: name.as_deref(), instance: &cluster.instance }).await;
    }
    let mut missing = Vec::new();
    for room in rooms {
        let Ok(all) = cluster.run("resync", conn.hgetall::<_, Vec<(String, String)>>(room_key(&room))).await else { continue };
        let listed: Vec<(String, Option<String>, String)> = all
            .into_iter()
            .map(|(id, value)| {
                let (instance, name) = parse_entry(&value);
                (id, name, instance)
            })
            .filter(|(_, _, instance)| *instance != cluster.instance)
            .collect();
        let mut rooms_guard = state.rooms();
        let mut outbox = Vec::new();
        for (id, instance) in rooms_guard.remote_members_of(&room) {
            if !listed.iter().any(|(listed_id, _, listed_instance)| *listed_id == id && *listed_instance == instance) {
                missing.push((room.clone(), id, instance));
            }
        }
        for (id, name, instance) in &listed {
            let joined = rooms_guard.remote_joined(&room, id, name.as_deref(), instance);
            outbox.extend(joined.outbox);
            replace(joined.replaced);
        }
        deliver(&mut rooms_guard, outbox);
    }
    if !missing.is_empty() {
        tokio::spawn(confirm_missing(state.clone(), missing));
    }
    info!(peers = locals.len(), "registered this instance's peers with redis");
}

/// Remote members Redis did not list when this instance resynced: after a Redis
/// restart their instance may not have registered them again yet (each instance
/// resyncs when it reconnects, up to a backoff apart), so they count as gone only if
/// still missing a TTL later. Taken out at once, their peers saw a `peer-left` for a
/// peer that never left (1 run in 8 of the Redis-restart test).
async fn confirm_missing(state: Arc<AppState>, missing: Vec<(String, String, String)>) {
    tokio::time::sleep(Duration::from_secs(ALIVE_TTL_SECS)).await;
    let Some(cluster) = state.cluster.as_ref() else { return };
    let mut conn = cluster.conn.clone();
    for (room, id, instance) in missing {
        let Ok(listed) = cluster.run("resync", conn.hget::<_, _, Option<String>>(room_key(&room), &id)).await else { continue };
        if listed.is_some_and(|value| parse_entry(&value).0 == instance) {
            continue;
        }
        let mut rooms = state.rooms();
        let outbox = rooms.remote_left(&room, &id, &instance);
        deliver(&mut rooms, outbox);
    }
}

/// Tells a local connection whose id joined elsewhere that it was replaced.
pub(crate) fn replace(replaced: Option<crate::ws::Conn>) {
    if let Some(old) = replaced {
        let err = ProtocolError::new(ErrorCode::Replaced, "another connection joined with this id");
        old.offer(ServerMessage::Error { code: err.code, message: &err.message }.to_json());
        old.close(close_code::POLICY, "replaced by a newer connection");
    }
}

fn on_presence(state: &Arc<AppState>, payload: &[u8]) {
    let Some(cluster) = state.cluster.as_ref() else { return };
    let Ok(event) = serde_json::from_slice::<Presence<'_>>(payload) else { return };
    if event.instance == cluster.instance {
        return; // our own, applied locally already
    }
    let mut rooms = state.rooms();
    match event.kind {
        "joined" => {
            let joined = rooms.remote_joined(event.room, event.id, event.name, event.instance);
            deliver(&mut rooms, joined.outbox);
            replace(joined.replaced);
        }
        "left" => {
            let outbox = rooms.remote_left(event.room, event.id, event.instance);
            deliver(&mut rooms, outbox);
        }
        _ => {}
    }
}

fn on_relayed(state: &Arc<AppState>, payload: &[u8]) {
    let batch = if is_batch(payload) {
        serde_json::from_slice::<Vec<Relayed<'_>>>(payload)
    } else {
        serde_json::from_slice::<Relayed<'_>>(payload).map(|one| vec![one])
    };
    let Ok(batch) = batch else { return };
    let mut rooms = state.rooms();
    let mut outbox = Vec::with_capacity(batch.len());
    for relayed in batch {
        let Some(target) = rooms.local(relayed.room, relayed.to) else { continue };
        // The receiver's own limit holds whichever instance the senders are on.
        if !target.accepts_inbound() {
            if let Some(cluster) = state.cluster.as_ref() {
                cluster.metrics.rate_limited.inc();
            }
            continue;
        }
        outbox.push((target, ServerMessage::Signal { from: relayed.from, data: relayed.data }.to_json()));
    }
    deliver(&mut rooms, outbox);
}

/// Refreshes this instance's key, and drops the members of instances whose key is
/// gone.
async fn keep_alive(state: Arc<AppState>) {
    let Some(cluster) = state.cluster.as_ref() else { return };
    let mut shutdown = state.shutdown.subscribe();
    let mut tick = tokio::time::interval(ALIVE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::server::shut_down(&mut shutdown) => return,
        }
        let mut conn = cluster.conn.clone();
        if cluster.run("alive", conn.set_ex::<_, _, ()>(alive_key(&cluster.instance), 1, ALIVE_TTL_SECS)).await.is_err() {
            continue;
        }
        let settled =
            cluster.back_since.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).elapsed() > Duration::from_secs(ALIVE_TTL_SECS) + ALIVE_EVERY;
        let instances: Vec<String> = state.rooms().remote_instances().into_iter().collect();
        if instances.is_empty() || !settled {
            continue;
        }
        let keys: Vec<String> = instances.iter().map(|i| alive_key(i)).collect();
        let Ok(alive) = cluster.run("alive", conn.mget::<_, Vec<Option<i64>>>(keys)).await else { continue };
        for (instance, _) in instances.iter().zip(alive).filter(|(_, alive)| alive.is_none()) {
            let members: Vec<(String, String)> =
                state.rooms().remote_members().into_iter().filter(|(_, _, i)| i == instance).map(|(room, id, _)| (room, id)).collect();
            warn!(instance, peers = members.len(), "instance gone; its peers leave");
            for (room, id) in members {
                cluster.remove(&room, &id, instance).await;
                let mut rooms = state.rooms();
                let outbox = rooms.remote_left(&room, &id, instance);
                deliver(&mut rooms, outbox);
            }
        }
    }
}
