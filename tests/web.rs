//! The browser adapter and JS API in headless Chromium: two `Peer`s in one page,
//! connected through a live signaling server that `scripts/browser-tests.sh` starts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use futures_channel::mpsc;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use gloo_timers::future::sleep;
use js_sys::{Function, Object, Reflect, Uint8Array};
use meshdrop::Peer;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

// Not `env!`: the tests should still build (e.g. for clippy) without a server around.
#[allow(clippy::option_env_unwrap)]
fn signal_url() -> String {
    option_env!("MESHDROP_TEST_SIGNAL_URL")
        .expect("MESHDROP_TEST_SIGNAL_URL must name a running meshdrop-signal (scripts/browser-tests.sh sets it)")
        .to_owned()
}

fn unique_room(tag: &str) -> String {
    format!("{tag}-{}", (js_sys::Math::random() * 1e12) as u64)
}

fn options(pairs: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (k, v) in pairs {
        Reflect::set(&obj, &JsValue::from_str(k), v).unwrap();
    }
    obj.into()
}

async fn join(room: &str, name: &str) -> Peer {
    let opts = options(&[("signalingUrl", signal_url().into()), ("room", room.into()), ("name", name.into())]);
    Peer::join(opts.unchecked_into()).await.expect("join failed")
}

/// Collects every event of one type from a peer.
struct Events {
    rx: mpsc::UnboundedReceiver<JsValue>,
    _listener: Closure<dyn FnMut(JsValue)>,
}

impl Events {
    fn listen(peer: &Peer, kind: &str) -> Events {
        let (tx, rx) = mpsc::unbounded();
        let listener = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
            let _ = tx.unbounded_send(event);
        });
        peer.on(kind, listener.as_ref().unchecked_ref::<Function>().clone()).unwrap();
        Events { rx, _listener: listener }
    }

    async fn next(&mut self, what: &str) -> JsValue {
        match select(self.rx.next(), Box::pin(sleep(Duration::from_secs(20)))).await {
            Either::Left((Some(event), _)) => event,
            Either::Left((None, _)) => panic!("event stream ended"),
            Either::Right(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn get(value: &JsValue, key: &str) -> JsValue {
    Reflect::get(value, &JsValue::from_str(key)).unwrap()
}

async fn rejection(promise: js_sys::Promise) -> JsValue {
    JsFuture::from(promise).await.expect_err("expected the promise to reject")
}

#[wasm_bindgen_test]
async fn two_peers_meet_and_exchange_text_and_large_binary() {
    let room = unique_room("pair");
    let a = join(&room, "alice").await;
    let mut a_joined = Events::listen(&a, "peer-joined");
    let mut a_messages = Events::listen(&a, "message");
    let b = join(&room, "bob").await;
    let mut b_joined = Events::listen(&b, "peer-joined");
    let mut b_messages = Events::listen(&b, "message");
    assert_ne!(a.id(), b.id());
    assert_eq!(a.room(), room);

    let met = a_joined.next("a_joined #2").await;
    assert_eq!(get(&met, "id").as_string().unwrap(), b.id());
    assert_eq!(get(&met, "name").as_string().unwrap(), "bob");
    let met = b_joined.next("b_joined #3").await;
    assert_eq!(get(&met, "id").as_string().unwrap(), a.id());
    let listed: js_sys::Array = a.peers().unchecked_into();
    assert_eq!(listed.length(), 1);

    JsFuture::from(js_sys::Promise::from(JsValue::from(a.send(&b.id(), JsValue::from_str("hi bob").unchecked_into())))).await.unwrap();
    // Larger than Chromium's 256 KiB max message size: split and rejoined.
    let big: Vec<u8> = (0..(1 << 20) + 5).map(|i| (i % 251) as u8).collect();
    let big_js = Uint8Array::from(big.as_slice());
    JsFuture::from(js_sys::Promise::from(JsValue::from(a.send(&b.id(), big_js.unchecked_into())))).await.unwrap();

    let first = b_messages.next("b_messages #4").await;
    assert_eq!(get(&first, "from").as_string().unwrap(), a.id());
    assert_eq!(get(&first, "data").as_string().unwrap(), "hi bob");
    let second = b_messages.next("b_messages #5").await;
    let data: Uint8Array = get(&second, "data").dyn_into().expect("bytes arrive as a Uint8Array");
    assert_eq!(data.to_vec(), big);

    // Text of every width, a lone surrogate (sent as U+FFFD, as TextEncoder does), and
    // text longer than the encoder's kept buffer.
    let lone = js_sys::JsString::from_char_code1(0xd800);
    let long = "ü€".repeat(50_000);
    let texts: [(JsValue, &str); 4] =
        [("héllo wörld 🎉".into(), "héllo wörld 🎉"), ("".into(), ""), (lone.into(), "\u{fffd}"), (long.as_str().into(), long.as_str())];
    for (text, _) in &texts {
        JsFuture::from(js_sys::Promise::from(JsValue::from(a.send(&b.id(), text.clone().unchecked_into())))).await.unwrap();
    }
    for (i, (_, expected)) in texts.iter().enumerate() {
        let got = b_messages.next("b_messages, text").await;
        assert_eq!(get(&got, "data").as_string().as_deref(), Some(*expected), "text #{i}");
    }

    let n = JsFuture::from(js_sys::Promise::from(JsValue::from(b.broadcast(JsValue::from_str("to all").unchecked_into())))).await.unwrap();
    assert_eq!(n.as_f64(), Some(1.0));
    assert_eq!(get(&a_messages.next("a_messages #6").await, "data").as_string().unwrap(), "to all");

    let mut a_left = Events::listen(&a, "peer-left");
    JsFuture::from(js_sys::Promise::from(JsValue::from(b.leave()))).await.unwrap();
    assert_eq!(get(&a_left.next("a_left #7").await, "id").as_string().unwrap(), b.id());
    let err = rejection(a.send(&b.id(), JsValue::from_str("gone?").unchecked_into()).unchecked_into()).await;
    assert_eq!(get(&err, "name").as_string().unwrap(), "NotConnectedError");
    a.leave();
}

/// Listeners run in the order added, each with a snapshot of the list: one that throws
/// does not stop the others, and one may remove another while a message is delivered
/// (that one still hears this message, and no later one).
#[wasm_bindgen_test]
async fn every_listener_hears_a_message_though_one_throws_and_one_removes_another() {
    let room = unique_room("listeners");
    let a = join(&room, "alice").await;
    let mut a_joined = Events::listen(&a, "peer-joined");
    let b = std::rc::Rc::new(join(&room, "bob").await);
    a_joined.next("alice meets bob").await;

    let thrower = Function::new_with_args("event", "throw new Error('a listener with a bug')");
    let removed_calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let removed = Closure::<dyn FnMut(JsValue)>::new({
        let calls = removed_calls.clone();
        move |_| calls.set(calls.get() + 1)
    });
    let removed_fn: Function = removed.as_ref().unchecked_ref::<Function>().clone();
    let remover = Closure::<dyn FnMut(JsValue)>::new({
        let b = b.clone();
        let target = removed_fn.clone();
        move |_| b.off("message", target.clone())
    });
    b.on("message", thrower).unwrap();
    b.on("message", remover.as_ref().unchecked_ref::<Function>().clone()).unwrap();
    b.on("message", removed_fn).unwrap();
    let mut b_messages = Events::listen(&b, "message");

    for text in ["one", "two"] {
        JsFuture::from(js_sys::Promise::from(JsValue::from(a.send(&b.id(), JsValue::from_str(text).unchecked_into())))).await.unwrap();
    }
    let first = b_messages.next("message one").await;
    assert_eq!(get(&first, "data").as_string().unwrap(), "one");
    assert_eq!(get(&first, "from").as_string().unwrap(), a.id());
    assert_eq!(get(&b_messages.next("message two").await, "data").as_string().unwrap(), "two");
    assert_eq!(removed_calls.get(), 1, "removed during the first message: heard it, and not the second");
    a.leave();
    b.leave();
}

#[wasm_bindgen_test]
async fn join_rejects_an_unreachable_server_with_a_clear_error() {
    // Port 9 (discard) on loopback: nothing listens there.
    let opts = options(&[("signalingUrl", "ws://127.0.0.1:9/ws".into()), ("room", "r".into())]);
    let err = Peer::join(opts.unchecked_into()).await.err().expect("join must fail");
    assert_eq!(get(&err, "name").as_string().unwrap(), "SignalingError");
    assert_eq!(get(&err, "code").as_string().unwrap(), "unreachable");
    assert!(get(&err, "message").as_string().unwrap().contains("ws://127.0.0.1:9/ws"));
}

#[wasm_bindgen_test]
async fn join_rejects_bad_options_before_connecting() {
    for bad in [
        options(&[("room", "r".into())]),
        options(&[("signalingUrl", signal_url().into())]),
        options(&[("signalingUrl", signal_url().into()), ("room", "no spaces".into())]),
        options(&[("signalingUrl", signal_url().into()), ("room", "r".into()), ("iceServers", "stun:x".into())]),
        options(&[("signalingUrl", signal_url().into()), ("room", "r".into()), ("iceTransportPolicy", "some".into())]),
        JsValue::from_str("lobby"),
    ] {
        let err = Peer::join(bad.unchecked_into()).await.err().expect("join must fail");
        assert!(err.is_instance_of::<js_sys::TypeError>(), "{err:?}");
    }
    // The message names the field and says what was wrong with it.
    for (bad, says) in [
        (
            options(&[("signalingUrl", signal_url().into()), ("room", "r".into()), ("maxMessageBytes", "big".into())]),
            "options.maxMessageBytes: invalid type",
        ),
        (options(&[("signalingURL", signal_url().into()), ("room", "r".into())]), "options: missing field `signalingUrl`"),
        (
            options(&[("signalingUrl", signal_url().into()), ("room", "r".into()), ("identity", "forever".into())]),
            "options.identity: unknown variant `forever`",
        ),
        (options(&[("signalingUrl", signal_url().into())]), "missing field `room`"),
    ] {
        let err = Peer::join(bad.unchecked_into()).await.err().expect("join must fail");
        let message = get(&err, "message").as_string().unwrap_or_default();
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }
}

#[wasm_bindgen_test]
async fn send_errors_and_event_types_are_checked() {
    let peer = join(&unique_room("errors"), "solo").await;
    let err = rejection(peer.send("no-such-peer", JsValue::from_str("x").unchecked_into()).unchecked_into()).await;
    assert_eq!(get(&err, "name").as_string().unwrap(), "NotConnectedError");
    let err = rejection(peer.send("no-such-peer", JsValue::from_f64(5.0).unchecked_into()).unchecked_into()).await;
    assert!(err.is_instance_of::<js_sys::TypeError>());
    let noop = Function::new_no_args("");
    assert!(peer.on("nonsense", noop.clone()).is_err());
    assert!(peer.on("message", noop.clone()).is_ok());
    peer.off("message", noop);
    let mut states = Events::listen(&peer, "signaling");
    peer.leave();
    // A listener attached right after `join` misses nothing: it sees the welcome's state too.
    assert_eq!(get(&states.next("states #8").await, "state").as_string().unwrap(), "connected");
    assert_eq!(get(&states.next("states #9").await, "state").as_string().unwrap(), "closed");
    let err = rejection(peer.broadcast(JsValue::from_str("x").unchecked_into()).unchecked_into()).await;
    assert_eq!(get(&err, "name").as_string().unwrap(), "ClosedError");
}

#[wasm_bindgen_test]
async fn a_room_of_four_in_one_page_connects_fully() {
    let room = unique_room("four");
    let mut peers = Vec::new();
    let mut joined = Vec::new();
    for i in 0..4 {
        let p = join(&room, &format!("p{i}")).await;
        joined.push(Events::listen(&p, "peer-joined"));
        peers.push(p);
    }
    for events in joined.iter_mut() {
        for _ in 0..3 {
            events.next("peer-joined #9").await;
        }
    }
    for p in &peers {
        let list: js_sys::Array = p.peers().unchecked_into();
        assert_eq!(list.length(), 3);
        p.leave();
    }
}
