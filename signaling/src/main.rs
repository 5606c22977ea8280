//! `meshdrop-signal`: the signaling server binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tracing::{info, warn};

/// Descriptors kept free below the limit: the listener, logs, and the connections let
/// in past `--max-connections` only to be answered 503.
const RESERVED_DESCRIPTORS: u64 = 128;

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
    /// Content-Security-Policy header for those files; an empty value sends none.
    #[arg(long, env = "MESHDROP_WWW_CSP", default_value = meshdrop_signal::WWW_CSP)]
    www_csp: String,
    /// Most peers in one room.
    #[arg(long, env = "MESHDROP_MAX_ROOM_PEERS", default_value_t = 64)]
    max_room_peers: usize,
    /// Frames (and pings) per second one client may send (bursts of twice that).
    #[arg(long, env = "MESHDROP_MAX_FRAMES_PER_SEC", default_value_t = 50)]
    max_frames_per_sec: u32,
    /// Signals per second one client may be sent, by all other clients together.
    #[arg(long, env = "MESHDROP_MAX_INBOUND_PER_SEC", default_value_t = 100)]
    max_inbound_per_sec: u32,
    /// Seconds between WebSocket pings.
    #[arg(long, env = "MESHDROP_PING_INTERVAL", default_value_t = 15)]
    ping_interval: u64,
    /// Seconds of silence after which a connection is dropped.
    #[arg(long, env = "MESHDROP_IDLE_TIMEOUT", default_value_t = 40)]
    idle_timeout: u64,
    /// Seconds a new WebSocket has to join a room.
    #[arg(long, env = "MESHDROP_JOIN_TIMEOUT", default_value_t = 10)]
    join_timeout: u64,
    /// Seconds a connection has to send each HTTP request head.
    #[arg(long, env = "MESHDROP_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Most connections at once; more are answered HTTP 503. Default: the descriptor
    /// limit (raised to its hard limit at start) less 128.
    #[arg(long, env = "MESHDROP_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Most connections at once from one IP address (0: no limit). Clients behind one
    /// NAT share an address: leave room for them.
    #[arg(long, env = "MESHDROP_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    max_connections_per_ip: usize,
    /// A STUN server for clients, e.g. stun:stun.example.org:3478 (repeatable; the
    /// variable takes a comma-separated list).
    #[arg(long = "stun-url", env = "MESHDROP_STUN_URL", value_delimiter = ',')]
    stun_urls: Vec<String>,
    /// A TURN server for clients, e.g. turn:turn.example.org:3478?transport=udp
    /// (repeatable; comma-separated in the variable). Needs --turn-secret-file.
    #[arg(long = "turn-url", env = "MESHDROP_TURN_URL", value_delimiter = ',')]
    turn_urls: Vec<String>,
    /// File holding the secret shared with the TURN server (coturn's
    /// static-auth-secret); clients get time-limited credentials derived from it.
    #[arg(long, env = "MESHDROP_TURN_SECRET_FILE")]
    turn_secret_file: Option<PathBuf>,
    /// How long TURN credentials last (e.g. 1h, 30m); fresh ones are sent before.
    #[arg(long, env = "MESHDROP_TURN_TTL", default_value = "1h", value_parser = meshdrop_signal::ice::parse_duration)]
    turn_ttl: Duration,
    /// Redis shared by every instance serving the same rooms, e.g. redis://10.0.0.5:6379
    /// (peers on different instances then meet as on one).
    #[arg(long, env = "MESHDROP_REDIS")]
    redis: Option<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MESHDROP_LOG").unwrap_or_else(|_| "info".into())).init();
    let args = Args::parse();
    // Past the descriptor limit, accept fails and new clients hang: raise it as far as
    // allowed, and keep the connection limit below it.
    let descriptors = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            warn!(%err, "cannot read or raise the descriptor limit; assuming 1024");
            1024
        }
    };
    let fitting = usize::try_from(descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(16)).unwrap_or(usize::MAX);
    let max_connections = match args.max_connections {
        Some(max) if max > fitting => {
            warn!(max, descriptors, "--max-connections is above what the descriptor limit allows; using {fitting}");
            fitting
        }
        Some(max) => max,
        None => fitting,
    };
    let ice = match ice_config(&args) {
        Ok(ice) => ice,
        Err(message) => {
            eprintln!("meshdrop-signal: {message}");
            std::process::exit(2);
        }
    };
    let seconds = |s: u64| Duration::from_secs(s.max(1));
    let config = meshdrop_signal::Config {
        max_room_peers: args.max_room_peers,
        max_frames_per_sec: args.max_frames_per_sec,
        max_inbound_per_sec: args.max_inbound_per_sec,
        ping_interval: seconds(args.ping_interval),
        idle_timeout: seconds(args.idle_timeout),
        join_timeout: seconds(args.join_timeout),
        header_timeout: seconds(args.header_timeout),
        max_connections,
        max_connections_per_ip: args.max_connections_per_ip,
        www: args.www,
        www_csp: args.www_csp,
        ice,
        redis: args.redis,
    };
    let listener = meshdrop_signal::bind(args.listen)?;
    info!(addr = %listener.local_addr()?, www = ?config.www, max_connections, descriptors, stun = ?config.ice.stun, turn = ?config.ice.turn, "meshdrop-signal listening");
    meshdrop_signal::serve(listener, config, shutdown_signal()).await?;
    info!("stopped");
    Ok(())
}

/// The STUN/TURN settings, checked: TURN needs a secret, and the secret a TURN URL.
fn ice_config(args: &Args) -> Result<meshdrop_signal::ice::IceConfig, String> {
    let check = |url: &String, schemes: &[&str]| {
        if schemes.iter().any(|s| url.starts_with(s)) {
            Ok(())
        } else {
            Err(format!("`{url}` should start with {}", schemes.join(" or ")))
        }
    };
    args.stun_urls.iter().try_for_each(|u| check(u, &["stun:", "stuns:"]))?;
    args.turn_urls.iter().try_for_each(|u| check(u, &["turn:", "turns:"]))?;
    let secret = match &args.turn_secret_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read --turn-secret-file {}: {e}", path.display()))?;
            let secret = text.trim_end_matches(['\r', '\n']).as_bytes().to_vec();
            if secret.is_empty() {
                return Err(format!("--turn-secret-file {} is empty", path.display()));
            }
            Some(secret)
        }
        None => None,
    };
    if !args.turn_urls.is_empty() && secret.is_none() {
        return Err("--turn-url needs --turn-secret-file (the secret shared with the TURN server)".into());
    }
    Ok(meshdrop_signal::ice::IceConfig { stun: args.stun_urls.clone(), turn: args.turn_urls.clone(), secret, ttl: args.turn_ttl })
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
