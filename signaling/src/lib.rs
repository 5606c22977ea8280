//! meshdrop's signaling server: introduces browser peers to each other by relaying
//! their WebRTC offers, answers and ICE candidates within a room, and nothing else.
//!
//! The wire protocol is in [`protocol`] (shared with the client, always built) and
//! described in `PROTOCOL.md`. With the default `server` feature this crate also
//! provides the axum application:
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = meshdrop_signal::bind("127.0.0.1:8080".parse().unwrap())?;
//! meshdrop_signal::serve(listener, meshdrop_signal::Config::default(), std::future::pending()).await
//! # }
//! ```
#![warn(missing_docs)]

pub mod protocol;

#[cfg(feature = "server")]
mod identity;
pub mod rooms;
#[cfg(feature = "server")]
mod ws;

#[cfg(feature = "server")]
pub use server::*;

#[cfg(feature = "server")]
mod server {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::extract::{State, WebSocketUpgrade};
    use axum::response::Response;
    use axum::routing::get;
    use axum::serve::ListenerExt;
    use axum::Router;
    use tokio::net::{TcpListener, TcpSocket};
    use tokio::sync::{watch, Notify};
    use tower_http::services::ServeDir;

    use crate::rooms::Rooms;
    use crate::ws::{serve_connection, Conn, HARD_MESSAGE_CAP};

    /// Pending connections the kernel queues for us: bursts of joins must not be refused.
    pub const ACCEPT_BACKLOG: u32 = 1024;

    /// Server settings.
    #[derive(Debug, Clone)]
    pub struct Config {
        /// Most peers in one room.
        pub max_room_peers: usize,
        /// Frames a client may send per second (bursts of twice that).
        pub max_frames_per_sec: u32,
        /// How often the server pings each connection.
        pub ping_interval: Duration,
        /// A connection silent for this long (no frame, no pong) is dropped.
        pub idle_timeout: Duration,
        /// Static files to serve at `/` (the demo page), if any.
        pub www: Option<PathBuf>,
    }

    impl Default for Config {
        fn default() -> Self {
            Config {
                max_room_peers: 64,
                max_frames_per_sec: 50,
                ping_interval: Duration::from_secs(15),
                idle_timeout: Duration::from_secs(40),
                www: None,
            }
        }
    }

    /// State shared by every connection.
    pub(crate) struct AppState {
        pub(crate) config: Config,
        pub(crate) rooms: Mutex<Rooms<Conn>>,
        pub(crate) next_conn: AtomicU64,
        pub(crate) shutdown: watch::Sender<bool>,
        pub(crate) live_connections: AtomicUsize,
        pub(crate) connections_changed: Notify,
    }

    /// Binds a TCP listener with a large accept backlog ([`ACCEPT_BACKLOG`]).
    pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(ACCEPT_BACKLOG)
    }

    fn router(state: Arc<AppState>) -> Router {
        let router = Router::new()
            .route("/ws", get(upgrade))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(state.clone());
        match &state.config.www {
            Some(dir) => router.fallback_service(ServeDir::new(dir)),
            None => router,
        }
    }

    async fn upgrade(State(state): State<Arc<AppState>>, ws: WebSocketUpgrade) -> Response {
        // Small buffers keep an idle connection cheap; the protocol's frames are small.
        ws.read_buffer_size(4 * 1024)
            // Frames collect up to this before a write; every batch ends with a flush.
            .write_buffer_size(16 * 1024)
            .max_write_buffer_size(256 * 1024)
            .max_message_size(HARD_MESSAGE_CAP)
            .max_frame_size(HARD_MESSAGE_CAP)
            .on_upgrade(move |socket| serve_connection(socket, state))
    }

    /// Serves HTTP and WebSocket signaling on `listener` until `shutdown` completes, then
    /// closes every WebSocket with code 1001 and returns once they are gone (at most a
    /// few seconds).
    pub async fn serve(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (shutdown_tx, _) = watch::channel(false);
        let state = Arc::new(AppState {
            rooms: Mutex::new(Rooms::new(config.max_room_peers)),
            config,
            next_conn: AtomicU64::new(1),
            shutdown: shutdown_tx,
            live_connections: AtomicUsize::new(0),
            connections_changed: Notify::new(),
        });
        let notify_state = state.clone();
        let graceful = async move {
            shutdown.await;
            notify_state.shutdown.send_replace(true);
        };
        // Signaling is many small frames in quick succession: without TCP_NODELAY, Nagle
        // holds each behind the previous one's delayed ACK (measured: ~30 ms per answer).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router(state.clone())).with_graceful_shutdown(graceful).await?;
        // Upgraded connections outlive the HTTP server: wait for them to say goodbye.
        let drained = async {
            loop {
                let changed = state.connections_changed.notified();
                if state.live_connections.load(Ordering::Relaxed) == 0 {
                    break;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), drained).await;
        Ok(())
    }
}
