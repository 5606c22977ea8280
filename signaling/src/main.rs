//! `meshdrop-signal`: the signaling server binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tracing::info;

/// WebSocket signaling server for meshdrop peers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MESHDROP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory of static files to serve at `/` (e.g. the demo page, `www`).
    #[arg(long, env = "MESHDROP_WWW")]
    www: Option<PathBuf>,
    /// Most peers in one room.
    #[arg(long, env = "MESHDROP_MAX_ROOM_PEERS", default_value_t = 64)]
    max_room_peers: usize,
    /// Frames per second one client may send (bursts of twice that).
    #[arg(long, env = "MESHDROP_MAX_FRAMES_PER_SEC", default_value_t = 50)]
    max_frames_per_sec: u32,
    /// Seconds between WebSocket pings.
    #[arg(long, env = "MESHDROP_PING_INTERVAL", default_value_t = 15)]
    ping_interval: u64,
    /// Seconds of silence after which a connection is dropped.
    #[arg(long, env = "MESHDROP_IDLE_TIMEOUT", default_value_t = 40)]
    idle_timeout: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MESHDROP_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let config = meshdrop_signal::Config {
        max_room_peers: args.max_room_peers,
        max_frames_per_sec: args.max_frames_per_sec,
        ping_interval: Duration::from_secs(args.ping_interval.max(1)),
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        www: args.www,
    };
    let listener = meshdrop_signal::bind(args.listen)?;
    info!(addr = %listener.local_addr()?, www = ?config.www, "meshdrop-signal listening");
    meshdrop_signal::serve(listener, config, shutdown_signal()).await?;
    info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    info!("shutting down");
}
