//! Helpers for driving the real server over real WebSockets.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use meshdrop_signal::{bind, serve, Config};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous: only reached when a test is failing.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start(config: Config) -> Server {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(serve(listener, config, async {
            let _ = stopped.await;
        }));
        Server { addr, stop: Some(stop), done }
    }

    pub async fn client(&self) -> Ws {
        self.client_at("/ws").await
    }

    /// A client of `path_and_query` (`/ws?…`).
    pub async fn client_at(&self, path_and_query: &str) -> Ws {
        connect_async(format!("ws://{}{path_and_query}", self.addr)).await.unwrap().0
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.done).await.unwrap().unwrap().unwrap();
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next text frame as JSON (pings are answered by tungstenite while reading).
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next()).await.expect("timed out waiting for a frame").unwrap().unwrap();
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

pub async fn expect_error(ws: &mut Ws, code: &str) {
    let v = recv(ws).await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

/// The close frame's code, skipping any text frames before it.
pub async fn expect_close(ws: &mut Ws) -> CloseCode {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("timed out waiting for close") {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => panic!("closed without a close code"),
            Some(Ok(_)) => continue,
        }
    }
}

pub async fn join(ws: &mut Ws, room: &str, name: Option<&str>) -> (String, Vec<Value>) {
    let mut frame = json!({"type": "join", "room": room});
    if let Some(name) = name {
        frame["name"] = json!(name);
    }
    send(ws, frame).await;
    let welcome = recv(ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (welcome["id"].as_str().unwrap().to_owned(), welcome["peers"].as_array().unwrap().clone())
}
