//! One RTCPeerConnection with its pre-negotiated data channel, and the listeners that
//! report its events. Dropping it removes the listeners, then closes both.

use std::cell::Cell;
use std::rc::Rc;

use gloo_events::EventListener;
use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcDataChannelType, RtcIceCandidateInit, RtcIceConnectionState,
    RtcPeerConnection, RtcPeerConnectionIceEvent, RtcSdpType, RtcSessionDescriptionInit,
};

use crate::core::{CandidateStats, Channel, Failure, Gathered, IceState, SdpKind, BUFFERED_LOW_THRESHOLD};

#[wasm_bindgen(module = "/src/web/glue.js")]
extern "C" {
    /// The selected candidate pair of a `getStats()` report, with both candidates, or
    /// null before there is one.
    #[wasm_bindgen(js_name = selectedPair)]
    fn selected_pair(report: &JsValue) -> JsValue;
}

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
    Message(js_sys::ArrayBuffer),
    BufferedLow(u64),
    /// A frame on the bulk channel (an `ArrayBuffer`, left in JS: file bytes go to
    /// storage without a detour).
    BulkMessage(js_sys::ArrayBuffer),
    BulkLow(u64),
    Closed(&'static str),
    /// `iceconnectionstatechange`, except `failed` (which comes as `Failed`).
    IceState(IceState),
    /// The connection failed, with what is known of why.
    Failed(Failure),
    /// Gathering local candidates completed.
    Gathered(Gathered),
}

/// Local candidates gathered, of every type and relayed, and whether the configuration
/// names a TURN server: why ICE failed, if it does.
#[derive(Default)]
struct Candidates {
    all: Cell<u32>,
    relay: Cell<u32>,
    relay_configured: Cell<bool>,
}

impl Candidates {
    fn facts(&self) -> Gathered {
        Gathered { local: self.all.get(), relay: self.relay.get(), relay_configured: self.relay_configured.get() }
    }
}

pub(crate) struct RtcConn {
    pc: RtcPeerConnection,
    channel: RtcDataChannel,
    bulk: RtcDataChannel,
    listeners: Vec<EventListener>,
    gathered: Rc<Candidates>,
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
    /// `relay_configured`: the configuration names a TURN server (for failure reasons).
    pub(crate) fn new(config: &RtcConfiguration, relay_configured: bool, on_event: impl Fn(RtcEvent) + Clone + 'static) -> Result<RtcConn, JsValue> {
        let pc = RtcPeerConnection::new_with_configuration(config)?;
        let channel = negotiated_channel(&pc, "meshdrop", CHANNEL_ID);
        let bulk = negotiated_channel(&pc, "meshdrop-bulk", BULK_CHANNEL_ID);
        let gathered = Rc::new(Candidates::default());
        gathered.relay_configured.set(relay_configured);

        let mut listeners = Vec::with_capacity(12);
        let report = on_event.clone();
        let counts = gathered.clone();
        listeners.push(EventListener::new(&pc, "icecandidate", move |event| {
            let candidate = event.dyn_ref::<RtcPeerConnectionIceEvent>().and_then(|e| e.candidate());
            // `null` marks the end of gathering; trickle needs nothing for it.
            let Some(candidate) = candidate else { return };
            counts.all.set(counts.all.get() + 1);
            if Reflect::get(&candidate, &JsValue::from_str("type")).ok().and_then(|t| t.as_string()).as_deref() == Some("relay") {
                counts.relay.set(counts.relay.get() + 1);
            }
            if let Some(json) = js_sys::JSON::stringify(&candidate.to_json()).ok().and_then(|s| s.as_string()) {
                report(RtcEvent::LocalCandidate(json));
            }
        }));
        // Firefox drops connections without an ICE state listener; and the states are
        // how a lost path is noticed (and restarted) while the session is kept.
        let report = on_event.clone();
        let ice_pc = pc.clone();
        let counts = gathered.clone();
        listeners.push(EventListener::new(&pc, "iceconnectionstatechange", move |_| {
            let state = ice_pc.ice_connection_state();
            if state == RtcIceConnectionState::Failed {
                report(RtcEvent::Failed(Failure::Ice(counts.facts())));
            } else if let Some(state) = ice_state_name(state).and_then(IceState::parse) {
                report(RtcEvent::IceState(state));
            }
        }));
        let report = on_event.clone();
        let gathering_pc = pc.clone();
        let counts = gathered.clone();
        listeners.push(EventListener::new(&pc, "icegatheringstatechange", move |_| {
            let state = Reflect::get(&gathering_pc, &JsValue::from_str("iceGatheringState")).ok().and_then(|s| s.as_string());
            if state.as_deref() == Some("complete") {
                report(RtcEvent::Gathered(counts.facts()));
            }
        }));
        let report = on_event.clone();
        let state_pc = pc.clone();
        listeners.push(EventListener::new(&pc, "connectionstatechange", move |_| {
            let state = Reflect::get(&state_pc, &JsValue::from_str("connectionState")).ok().and_then(|s| s.as_string());
            let ice_ok = matches!(state_pc.ice_connection_state(), RtcIceConnectionState::Connected | RtcIceConnectionState::Completed);
            // Failed while ICE works: the DTLS handshake is what failed. (An ICE failure
            // is reported by its own listener.)
            if state.as_deref() == Some("failed") && ice_ok {
                report(RtcEvent::Failed(Failure::Dtls));
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
                if let Ok(buffer) = data.dyn_into::<js_sys::ArrayBuffer>() {
                    report(RtcEvent::Message(buffer));
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
        Ok(RtcConn { pc, channel, bulk, listeners, gathered })
    }

    /// Takes `config` (one made before the signaling server named its ICE servers):
    /// valid until the first description, which starts gathering with these servers.
    pub(crate) fn reconfigure(&self, config: &RtcConfiguration, relay_configured: bool) -> Result<(), JsValue> {
        self.pc.set_configuration_with_configuration(config)?;
        self.gathered.relay_configured.set(relay_configured);
        Ok(())
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

    /// The channel's `bufferedAmount` if it is at or below its low threshold (no
    /// `bufferedamountlow` will come for what is in it).
    pub(crate) fn buffered_if_low(&self, channel: Channel) -> Option<u64> {
        let channel = match channel {
            Channel::Messages => &self.channel,
            Channel::Bulk => &self.bulk,
        };
        let buffered = channel.buffered_amount();
        (buffered <= channel.buffered_amount_low_threshold()).then_some(u64::from(buffered))
    }

    /// Sets a channel's `bufferedAmountLowThreshold` (the core's window changed).
    pub(crate) fn set_low_threshold(&self, channel: Channel, bytes: u64) {
        let channel = match channel {
            Channel::Messages => &self.channel,
            Channel::Bulk => &self.bulk,
        };
        channel.set_buffered_amount_low_threshold(u32::try_from(bytes).unwrap_or(u32::MAX));
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

fn ice_state_name(state: RtcIceConnectionState) -> Option<&'static str> {
    Some(match state {
        RtcIceConnectionState::New => "new",
        RtcIceConnectionState::Checking => "checking",
        RtcIceConnectionState::Connected => "connected",
        RtcIceConnectionState::Completed => "completed",
        RtcIceConnectionState::Disconnected => "disconnected",
        RtcIceConnectionState::Failed => "failed",
        RtcIceConnectionState::Closed => "closed",
        _ => return None,
    })
}

/// `pc.restartIce()`: the next local description restarts ICE (new credentials), while
/// the DTLS session and the channels stay.
pub(crate) fn restart_ice(pc: &RtcPeerConnection) -> Result<(), JsValue> {
    let restart: js_sys::Function = Reflect::get(pc, &JsValue::from_str("restartIce"))?.dyn_into()?;
    restart.call0(pc).map(drop)
}

/// What `getStats()` says of the selected candidate pair: both candidates, the round
/// trip time and the bytes; `None` before a pair is selected.
pub(crate) struct PairStats {
    pub(crate) local: CandidateStats,
    pub(crate) remote: CandidateStats,
    pub(crate) rtt_ms: Option<f64>,
    pub(crate) bytes_sent: f64,
    pub(crate) bytes_received: f64,
}

pub(crate) async fn pair_stats(pc: RtcPeerConnection) -> Result<Option<PairStats>, JsValue> {
    let report = JsFuture::from(pc.get_stats()).await?;
    let pair = selected_pair(&report);
    if pair.is_null() || pair.is_undefined() {
        return Ok(None);
    }
    let text = |v: &JsValue, key: &str| Reflect::get(v, &JsValue::from_str(key)).ok().and_then(|s| s.as_string());
    let number = |v: &JsValue, key: &str| Reflect::get(v, &JsValue::from_str(key)).ok().and_then(|n| n.as_f64());
    let side = |key: &str| -> Result<CandidateStats, JsValue> {
        let c = Reflect::get(&pair, &JsValue::from_str(key))?;
        Ok(CandidateStats {
            candidate_type: text(&c, "candidateType").unwrap_or_default(),
            protocol: text(&c, "protocol").unwrap_or_default(),
            relay_protocol: text(&c, "relayProtocol"),
            url: text(&c, "url"),
        })
    };
    Ok(Some(PairStats {
        local: side("local")?,
        remote: side("remote")?,
        rtt_ms: number(&pair, "rttMs"),
        bytes_sent: number(&pair, "bytesSent").unwrap_or(0.0),
        bytes_received: number(&pair, "bytesReceived").unwrap_or(0.0),
    }))
}
