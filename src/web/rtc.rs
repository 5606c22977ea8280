//! One RTCPeerConnection with its pre-negotiated data channel, and the listeners that
//! report its events. Dropping it removes the listeners, then closes both.

use gloo_events::EventListener;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcDataChannelType, RtcIceCandidateInit, RtcIceConnectionState,
    RtcPeerConnection, RtcPeerConnectionIceEvent, RtcSdpType, RtcSessionDescriptionInit,
};

use crate::core::{SdpKind, BUFFERED_LOW_THRESHOLD};

/// The channels' ids; both sides create them with `negotiated: true`, which saves the
/// `ondatachannel` round trip. Messages and transfer control on one, file bytes on the
/// other, so chat never waits behind a file.
const CHANNEL_ID: u16 = 0;
const BULK_CHANNEL_ID: u16 = 1;

/// What a connection reports.
pub(crate) enum RtcEvent {
    LocalCandidate(String),
    Open {
        max_message_size: u64,
    },
    Message(Vec<u8>),
    BufferedLow(u64),
    /// A frame on the bulk channel (an `ArrayBuffer`, left in JS: file bytes go to
    /// storage without a detour).
    BulkMessage(js_sys::ArrayBuffer),
    BulkLow(u64),
    Closed(&'static str),
}

pub(crate) struct RtcConn {
    pc: RtcPeerConnection,
    channel: RtcDataChannel,
    bulk: RtcDataChannel,
    listeners: Vec<EventListener>,
}

fn negotiated_channel(pc: &RtcPeerConnection, label: &str, id: u16) -> RtcDataChannel {
    let init = RtcDataChannelInit::new();
    init.set_negotiated(true);
    init.set_id(id);
    init.set_ordered(true);
    let channel = pc.create_data_channel_with_data_channel_dict(label, &init);
    channel.set_binary_type(RtcDataChannelType::Arraybuffer);
    // The core's flow control relies on this exact threshold.
    channel.set_buffered_amount_low_threshold(BUFFERED_LOW_THRESHOLD as u32);
    channel
}

impl RtcConn {
    pub(crate) fn new(config: &RtcConfiguration, on_event: impl Fn(RtcEvent) + Clone + 'static) -> Result<RtcConn, JsValue> {
        let pc = RtcPeerConnection::new_with_configuration(config)?;
        let channel = negotiated_channel(&pc, "meshdrop", CHANNEL_ID);
        let bulk = negotiated_channel(&pc, "meshdrop-bulk", BULK_CHANNEL_ID);

        let mut listeners = Vec::with_capacity(10);
        let report = on_event.clone();
        listeners.push(EventListener::new(&pc, "icecandidate", move |event| {
            let candidate = event.dyn_ref::<RtcPeerConnectionIceEvent>().and_then(|e| e.candidate());
            // `null` marks the end of gathering; trickle needs nothing for it.
            if let Some(json) = candidate.and_then(|c| js_sys::JSON::stringify(&c.to_json()).ok()).and_then(|s| s.as_string()) {
                report(RtcEvent::LocalCandidate(json));
            }
        }));
        // Firefox drops connections without an ICE state listener, and "failed" is the
        // only signal a dead path gives.
        let report = on_event.clone();
        let ice_pc = pc.clone();
        listeners.push(EventListener::new(&pc, "iceconnectionstatechange", move |_| {
            if ice_pc.ice_connection_state() == RtcIceConnectionState::Failed {
                report(RtcEvent::Closed("ice failed"));
            }
        }));
        let report = on_event.clone();
        let state_pc = pc.clone();
        listeners.push(EventListener::new(&pc, "connectionstatechange", move |_| {
            let state = Reflect::get(&state_pc, &JsValue::from_str("connectionState")).ok().and_then(|s| s.as_string());
            if state.as_deref() == Some("failed") {
                report(RtcEvent::Closed("connection failed"));
            }
        }));
        let report = on_event.clone();
        let open_pc = pc.clone();
        listeners.push(EventListener::new(&channel, "open", move |_| {
            report(RtcEvent::Open { max_message_size: max_message_size(&open_pc) });
        }));
        let report = on_event.clone();
        listeners.push(EventListener::new(&channel, "message", move |event| {
            if let Some(data) = event.dyn_ref::<MessageEvent>().map(MessageEvent::data) {
                if data.is_instance_of::<js_sys::ArrayBuffer>() {
                    report(RtcEvent::Message(Uint8Array::new(&data).to_vec()));
                }
            }
        }));
        let report = on_event.clone();
        let low_channel = channel.clone();
        listeners.push(EventListener::new(&channel, "bufferedamountlow", move |_| {
            report(RtcEvent::BufferedLow(u64::from(low_channel.buffered_amount())));
        }));
        let report = on_event.clone();
        listeners.push(EventListener::new(&bulk, "message", move |event| {
            if let Some(data) = event.dyn_ref::<MessageEvent>().map(MessageEvent::data) {
                if let Ok(buffer) = data.dyn_into::<js_sys::ArrayBuffer>() {
                    report(RtcEvent::BulkMessage(buffer));
                }
            }
        }));
        let report = on_event.clone();
        let low_bulk = bulk.clone();
        listeners.push(EventListener::new(&bulk, "bufferedamountlow", move |_| {
            report(RtcEvent::BulkLow(u64::from(low_bulk.buffered_amount())));
        }));
        let report = on_event.clone();
        listeners.push(EventListener::new(&bulk, "close", move |_| report(RtcEvent::Closed("bulk channel closed"))));
        listeners.push(EventListener::new(&channel, "close", move |_| on_event(RtcEvent::Closed("channel closed"))));
        Ok(RtcConn { pc, channel, bulk, listeners })
    }

    pub(crate) fn peer_connection(&self) -> RtcPeerConnection {
        self.pc.clone()
    }

    /// Sends one frame; an error means the channel is no longer usable.
    pub(crate) fn send(&self, frame: &[u8]) -> Result<(), JsValue> {
        self.channel.send_with_u8_array(frame)
    }
}

impl RtcConn {
    /// Sends a frame on the bulk channel.
    pub(crate) fn send_bulk(&self, frame: &[u8]) -> Result<(), JsValue> {
        self.bulk.send_with_u8_array(frame)
    }

    /// Sends a view of JS-held bytes on the bulk channel (the browser copies it once).
    pub(crate) fn send_bulk_view(&self, view: &Uint8Array) -> Result<(), JsValue> {
        self.bulk.send_with_array_buffer_view(view)
    }
}

impl Drop for RtcConn {
    fn drop(&mut self) {
        self.listeners.clear();
        self.bulk.close();
        self.channel.close();
        self.pc.close();
    }
}

/// `pc.sctp.maxMessageSize`, or 0 where the browser does not expose it.
fn max_message_size(pc: &RtcPeerConnection) -> u64 {
    Reflect::get(pc, &JsValue::from_str("sctp"))
        .and_then(|sctp| Reflect::get(&sctp, &JsValue::from_str("maxMessageSize")))
        .ok()
        .and_then(|v| v.as_f64())
        .filter(|v| v.is_finite() && *v > 0.0)
        .map_or(0, |v| v as u64)
}

/// `setLocalDescription()` without arguments: the browser creates the offer or answer
/// that fits its state and applies it in one operation (one hop to WebRTC's thread
/// instead of two). Resolves to the SDP.
pub(crate) async fn create_local_description(pc: RtcPeerConnection) -> Result<String, JsValue> {
    let set_local: js_sys::Function = Reflect::get(&pc, &JsValue::from_str("setLocalDescription"))?.dyn_into()?;
    let promise: js_sys::Promise = set_local.call0(&pc)?.dyn_into()?;
    JsFuture::from(promise).await?;
    pc.local_description().map(|d| d.sdp()).ok_or_else(|| JsValue::from_str("no local description after setLocalDescription"))
}

pub(crate) async fn set_remote_description(pc: RtcPeerConnection, kind: SdpKind, sdp: String) -> Result<(), JsValue> {
    let init = RtcSessionDescriptionInit::new(sdp_type(kind));
    init.set_sdp(&sdp);
    JsFuture::from(pc.set_remote_description(&init)).await.map(drop)
}

/// Adds a candidate given as JSON (a peer's `RTCIceCandidateInit`).
pub(crate) async fn add_ice_candidate(pc: RtcPeerConnection, candidate: String) -> Result<(), JsValue> {
    let init: RtcIceCandidateInit = js_sys::JSON::parse(&candidate)?.unchecked_into();
    JsFuture::from(pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init))).await.map(drop)
}

fn sdp_type(kind: SdpKind) -> RtcSdpType {
    match kind {
        SdpKind::Offer => RtcSdpType::Offer,
        SdpKind::Answer => RtcSdpType::Answer,
    }
}
