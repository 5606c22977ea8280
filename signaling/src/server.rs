//! The server: an accept loop that admits connections within the limits, serves each
//! with HTTP/1.1 (bounded time to send a request head), and upgrades `/ws` to a
//! signaling connection.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Extension, State, WebSocketUpgrade};
use axum::http::HeaderValue;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeader;
use tracing::{info, warn};

use crate::admission::{Admission, Admitted, Busy, Slot};
use crate::cluster::Cluster;
use crate::coalesce::Coalesced;
use crate::ice::IceConfig;
use crate::metrics::Metrics;
use crate::protocol;
use crate::rooms::Rooms;
use crate::ws::{serve_connection, Conn, HARD_MESSAGE_CAP};

/// Pending connections the kernel queues for us: bursts of joins must not be refused.
pub const ACCEPT_BACKLOG: u32 = 1024;
/// How long a connection told "come back later" has to send its request.
const BUSY_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most peers in one room.
    pub max_room_peers: usize,
    /// Frames (and pings) a client may send per second (bursts of twice that).
    pub max_frames_per_sec: u32,
    /// Signals one client may be sent per second by everyone together (bursts of
    /// twice that); the senders of the rest get `rate-limited`.
    pub max_inbound_per_sec: u32,
    /// How often the server pings each connection.
    pub ping_interval: Duration,
    /// A connection silent for this long (no frame, no pong) is dropped.
    pub idle_timeout: Duration,
    /// A WebSocket that has not joined a room within this long is closed.
    pub join_timeout: Duration,
    /// A connection has this long to send each HTTP request head (and an idle
    /// keep-alive connection this long to send the next).
    pub header_timeout: Duration,
    /// Most connections at once; more are answered HTTP 503.
    pub max_connections: usize,
    /// Most connections at once from one IP address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Static files to serve at `/` (the demo page), if any.
    pub www: Option<PathBuf>,
    /// The Content-Security-Policy header sent with those files (none if empty).
    pub www_csp: String,
    /// STUN and TURN servers handed to joined clients.
    pub ice: IceConfig,
    /// Redis (`redis://host:port`) shared with the other instances serving the same
    /// rooms; `None`: this instance alone.
    pub redis: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_room_peers: 64,
            max_frames_per_sec: 50,
            max_inbound_per_sec: 100,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(40),
            join_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            www: None,
            www_csp: WWW_CSP.to_owned(),
            ice: IceConfig { ttl: Duration::from_secs(3600), ..IceConfig::default() },
            redis: None,
        }
    }
}

/// State shared by every connection.
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) rooms: Mutex<Rooms<Conn>>,
    pub(crate) next_conn: AtomicU64,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Every WebSocket's link, to wake its task at shutdown.
    pub(crate) links: crate::ws::Links,
    pub(crate) live_sockets: AtomicUsize,
    pub(crate) sockets_changed: Notify,
    /// The other instances, with `--redis`.
    pub(crate) cluster: Option<Cluster>,
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    /// The rooms, even if a panicking task poisoned the lock (their data stays whole:
    /// every method leaves them consistent before it can panic).
    pub(crate) fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms<Conn>> {
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Updates the peer and room gauges from the rooms (under their lock).
    pub(crate) fn count_peers(&self, rooms: &Rooms<Conn>) {
        self.metrics.peers.set(i64::try_from(rooms.local_count()).unwrap_or(i64::MAX));
        self.metrics.rooms.set(i64::try_from(rooms.room_count()).unwrap_or(i64::MAX));
    }
}

/// Binds a TCP listener with a large accept backlog ([`ACCEPT_BACKLOG`]).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// The policy the demo page is served with: everything from our own origin, WebAssembly
/// compiled, WebSockets to any signaling server (the demo's `?signal=`), nothing
/// inline, no plugins, no framing. meshdrop needs no more (its storage worker is a
/// file, not a `blob:`), and the demo tests run under it.
pub const WWW_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self' ws: wss: blob:; \
                           img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn router(state: Arc<AppState>) -> Router {
    let router = Router::new().route("/ws", get(upgrade)).route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(state.clone());
    let Some(dir) = &state.config.www else { return router };
    let files = ServeDir::new(dir);
    match HeaderValue::from_str(&state.config.www_csp) {
        Ok(csp) if !csp.is_empty() => router.fallback_service(SetResponseHeader::overriding(files, header::CONTENT_SECURITY_POLICY, csp)),
        _ => router.fallback_service(files),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

/// For connections past a limit: health checks still answer, everything else is 503.
fn busy_router(why: Busy) -> Router {
    let message = match why {
        Busy::Full => "meshdrop-signal is at its connection limit; retry later",
        Busy::PerIp => "too many connections from your address; retry later",
    };
    let refuse = move || async move {
        (StatusCode::SERVICE_UNAVAILABLE, [(header::CONNECTION, "close"), (header::RETRY_AFTER, "5")], message).into_response()
    };
    Router::new().route("/healthz", get(healthz)).fallback(refuse)
}

async fn upgrade(State(state): State<Arc<AppState>>, Extension(slot): Extension<Arc<Slot>>, uri: Uri, ws: WebSocketUpgrade) -> Response {
    let challenge_first = uri.query().is_some_and(protocol::wants_challenge_first);
    // Small buffers keep an idle connection cheap: each connection holds its read
    // buffer for life (4 KiB cost 3 KiB more per idle connection than 1 KiB, measured
    // with bench/signal.mjs). tungstenite reads at most this much per call; the stream
    // under it (`Coalesced`) serves those calls from one socket read.
    ws.read_buffer_size(512)
        // Frames collect up to this before a write; every batch ends with a flush.
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(HARD_MESSAGE_CAP)
        .max_frame_size(HARD_MESSAGE_CAP)
        // The slot goes with the socket: the connection counts until it closes.
        .on_upgrade(move |socket| serve_connection(socket, state, slot, challenge_first))
}

/// Resolves once the server is shutting down.
pub(crate) async fn shut_down(watch: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: dropped before any await.
    if watch.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serves one TCP connection with HTTP/1.1 until it closes, its request head is too
/// slow, or the server shuts down. An upgraded WebSocket lives on in its own task.
async fn serve_http(tcp: TcpStream, router: Router, slot: Slot, header_timeout: Duration, keep_alive: bool, mut shutdown: watch::Receiver<bool>) {
    let service = TowerToHyperService::new(router.layer(Extension(Arc::new(slot))));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(keep_alive);
    let conn = builder.serve_connection(TokioIo::new(Coalesced::new(tcp)), service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shut_down(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// Serves HTTP and WebSocket signaling on `listener` until `shutdown` completes, then
/// closes every WebSocket with code 1012 (connect again, to another instance) and
/// returns once they are gone (at most a few seconds). With `config.redis`, connects
/// to Redis first (an error if it cannot).
pub async fn serve(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let (shutdown_tx, _) = watch::channel(false);
    let admission = Admission::new(config.max_connections, config.max_connections_per_ip);
    let header_timeout = config.header_timeout;
    let metrics = Arc::new(Metrics::new());
    let cluster = match &config.redis {
        Some(url) => {
            let instance = crate::identity::random_id();
            let cluster = Cluster::connect(url, instance.clone(), metrics.clone())
                .await
                .map_err(|err| std::io::Error::other(format!("cannot connect to redis at {url}: {err}")))?;
            info!(instance, redis = %url, "sharing rooms with other instances through redis");
            Some(cluster)
        }
        None => None,
    };
    let state = Arc::new(AppState {
        rooms: Mutex::new(Rooms::new(config.max_room_peers)),
        config,
        next_conn: AtomicU64::new(1),
        shutdown: shutdown_tx,
        links: crate::ws::Links::default(),
        live_sockets: AtomicUsize::new(0),
        sockets_changed: Notify::new(),
        cluster,
        metrics,
    });
    if state.cluster.is_some() {
        crate::cluster::spawn(state.clone());
    }
    let app = router(state.clone());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors or memory for a moment: new connections wait in
                    // the backlog meanwhile, and this loop must not spin.
                    warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Signaling is many small frames in quick succession: without TCP_NODELAY, Nagle
        // holds each behind the previous one's delayed ACK (measured: ~30 ms per answer).
        let _ = tcp.set_nodelay(true);
        let watch = state.shutdown.subscribe();
        match admission.admit(peer.ip()) {
            Admitted::Serve(slot) => {
                tokio::spawn(serve_http(tcp, app.clone(), slot, header_timeout, true, watch));
            }
            Admitted::Busy(slot, why) => {
                tokio::spawn(serve_http(tcp, busy_router(why), slot, BUSY_HEADER_TIMEOUT.min(header_timeout), false, watch));
            }
            Admitted::Refused => drop(tcp),
        }
    }
    state.shutdown.send_replace(true);
    state.links.restart_all();
    // Upgraded connections outlive the HTTP server: wait for them to say goodbye.
    let drained = async {
        loop {
            let changed = state.sockets_changed.notified();
            if state.live_sockets.load(Ordering::Relaxed) == 0 {
                break;
            }
            changed.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), drained).await;
    if let Some(cluster) = &state.cluster {
        cluster.retire().await;
    }
    Ok(())
}
