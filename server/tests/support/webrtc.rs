//! A webrtc-rs remote control that follows the REST signaling flow like a browser: offer from the
//! server, answer, trickle of its own candidates (then end-of-candidates), `video` and `command`
//! channels recorded with the same [`Recorder`] as the WebSocket client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCSessionDescription, SettingEngineBuilder,
};

use super::link::{self, Link};
use super::ws::{Client, Log, Outbox, Recorder};
use super::{api_as, Server};

struct Handler {
    candidates: mpsc::UnboundedSender<Option<Value>>,
    channels: mpsc::UnboundedSender<Arc<dyn DataChannel>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.candidates.send(Some(json!({"candidate": init.candidate, "sdpMid": "0", "sdpMLineIndex": 0})));
        }
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.candidates.send(None);
        }
    }
    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.channels.send(dc);
    }
}

/// A client peer connection that has applied `offer` and made its answer (nothing sent).
pub async fn answerer(offer: &str) -> Arc<dyn PeerConnection> {
    let (cand_tx, _cand_rx) = mpsc::unbounded_channel();
    let (dc_tx, _dc_rx) = mpsc::unbounded_channel();
    let pc = client_peer(Handler { candidates: cand_tx, channels: dc_tx }).await;
    pc.set_remote_description(RTCSessionDescription::offer(offer.to_owned()).expect("offer sdp"))
        .await
        .expect("set offer");
    let answer = pc.create_answer(None).await.expect("answer");
    pc.set_local_description(answer).await.expect("set answer");
    pc
}

async fn client_peer(handler: Handler) -> Arc<dyn PeerConnection> {
    Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .with_network_types(vec![rtc::ice::network_type::NetworkType::Udp4])
                    .build(),
            )
            .with_handler(Arc::new(handler) as Arc<dyn PeerConnectionEventHandler>)
            .with_runtime(webrtc::runtime::default_runtime().expect("runtime"))
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .expect("client peer"),
    )
}

pub struct RtcClient {
    pub client: Client,
    pub pc: Arc<dyn PeerConnection>,
    pub session_id: String,
    /// Offer request → both channels open, as this client saw it.
    pub setup: Duration,
}

impl RtcClient {
    /// Connect as the admin.
    pub async fn connect(server: &Server, remote_control_id: &str) -> RtcClient {
        let admin = server.tokens.get("admin").cloned();
        Self::connect_as(server, remote_control_id, admin.as_deref()).await
    }

    /// Connect with `token` for every signaling call.
    pub async fn connect_as(server: &Server, remote_control_id: &str, token: Option<&str>) -> RtcClient {
        Self::connect_inner(server, remote_control_id, token, None).await.0
    }

    /// Connect as the admin through a [`Link`] whose server → client direction carries
    /// `down_bps` bits/s and queues at most `max_queue`: every datagram crosses it.
    pub async fn connect_through(
        server: &Server,
        remote_control_id: &str,
        down_bps: u64,
        max_queue: Duration,
    ) -> (RtcClient, Link) {
        let admin = server.tokens.get("admin").cloned();
        let (c, link) =
            Self::connect_inner(server, remote_control_id, admin.as_deref(), Some((down_bps, max_queue))).await;
        (c, link.expect("link"))
    }

    async fn connect_inner(
        server: &Server,
        remote_control_id: &str,
        token: Option<&str>,
        through: Option<(u64, Duration)>,
    ) -> (RtcClient, Option<Link>) {
        let start = Instant::now();
        let (status, offer) = api_as(
            token,
            "POST",
            &server.url("/api/webrtc/offer"),
            Some(json!({"remote_control_id": remote_control_id})),
        )
        .await;
        assert_eq!(status, 200, "{offer}");
        assert_eq!(offer["type"], "offer");
        let session_id = offer["session_id"].as_str().expect("session_id").to_owned();
        let sdp = offer["sdp"].as_str().expect("sdp").to_owned();
        assert!(sdp.contains("a=candidate:"), "the offer carries the server's host candidates");
        let (sdp, link) = match through {
            None => (sdp, None),
            Some((down_bps, max_queue)) => {
                let server_addr = link::server_candidate(&sdp);
                let link = Link::start(server_addr, down_bps, max_queue).await;
                (link::through(&sdp, server_addr, link.front), Some(link))
            }
        };

        let (cand_tx, mut cand_rx) = mpsc::unbounded_channel();
        let (dc_tx, mut dc_rx) = mpsc::unbounded_channel();
        let pc = client_peer(Handler { candidates: cand_tx, channels: dc_tx }).await;
        pc.set_remote_description(RTCSessionDescription::offer(sdp).expect("offer sdp")).await.expect("set offer");
        let answer = pc.create_answer(None).await.expect("answer");
        pc.set_local_description(answer).await.expect("set answer");
        let mut answer_sdp = pc.local_description().await.expect("local description").sdp;
        if link.is_some() {
            // The answer may already list our candidates (when gathering was quick): the server
            // must know this client by the link's address alone.
            answer_sdp = link::without_candidates(&answer_sdp);
        }
        let (status, v) = api_as(
            token,
            "POST",
            &server.url("/api/webrtc/answer"),
            Some(json!({"session_id": session_id, "type": "answer", "sdp": answer_sdp})),
        )
        .await;
        assert_eq!(status, 204, "{v}");

        // Trickle our candidates, then end-of-candidates. Through a link, only the end: the server
        // must know this client by the link's address alone.
        let url = server.url("/api/webrtc/ice-candidate");
        let sid = session_id.clone();
        let token = token.map(String::from);
        let trickle = link.is_none();
        tokio::spawn(async move {
            while let Some(c) = cand_rx.recv().await {
                let body = match c {
                    Some(_) if !trickle => continue,
                    Some(mut c) => {
                        c["session_id"] = json!(sid);
                        c
                    }
                    None => json!({"session_id": sid, "candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}),
                };
                let end = body["candidate"] == "";
                let (status, v) = api_as(token.as_deref(), "POST", &url, Some(body)).await;
                assert!(status == 204 || status == 404, "ice-candidate: {status} {v}");
                if end {
                    break;
                }
            }
        });

        let log = Arc::new(Mutex::new(Log::default()));
        let rec = Arc::new(Mutex::new(Recorder::default()));
        let mut command = None;
        let mut video = false;
        while command.is_none() || !video {
            let dc = tokio::time::timeout(Duration::from_secs(10), dc_rx.recv())
                .await
                .expect("data channels in time")
                .expect("channel");
            let label = dc.label().await.expect("label");
            match label.as_str() {
                "video" => {
                    assert!(!dc.ordered().await.expect("ordered"), "video must be unordered");
                    video = true;
                }
                "command" => {
                    assert!(dc.ordered().await.expect("ordered"), "command must be ordered");
                    command = Some(Arc::clone(&dc));
                }
                other => panic!("unexpected channel {other}"),
            }
            let (log, rec) = (Arc::clone(&log), Arc::clone(&rec));
            tokio::spawn(async move {
                while let Some(ev) = dc.poll().await {
                    match ev {
                        DataChannelEvent::OnMessage(m) if m.is_string => {
                            rec.lock().expect("lock").text(&log, &String::from_utf8_lossy(&m.data))
                        }
                        DataChannelEvent::OnMessage(m) => {
                            rec.lock().expect("lock").video_message(&log, m.data.freeze())
                        }
                        DataChannelEvent::OnClose => break,
                        _ => {}
                    }
                }
                let mut l = log.lock().expect("lock");
                if l.closed.is_none() {
                    l.closed = Some((0, format!("{label} channel closed")));
                }
            });
        }
        let setup = start.elapsed();
        let command = command.expect("command channel");
        (
            RtcClient {
                client: Client { log, out: Outbox::DataChannel(command), reader: None },
                pc,
                session_id,
                setup,
            },
            link,
        )
    }
}
