//! A webrtc-rs remote control that follows the REST signaling flow like a browser: offer from the
//! server, answer, trickle of its own candidates (then end-of-candidates), `video` and `command`
//! channels recorded with the same [`Recorder`] as the WebSocket client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfiguration, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionIceEvent, RTCSessionDescription, SettingEngineBuilder,
};

use crate::link::{self, Link};
use crate::ws::{Client, Log, Outbox, Recorder};
use crate::{api_as, Server};

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

/// What a client peer reports: its candidates as it gathers them (`None` once gathering is
/// complete), and each data channel the server opens.
#[derive(Debug)]
pub struct PeerEvents {
    pub candidates: mpsc::UnboundedReceiver<Option<Value>>,
    pub channels: mpsc::UnboundedReceiver<Arc<dyn DataChannel>>,
}

/// A client peer as a browser on loopback has it: UDP over IPv4 on 127.0.0.1, no mDNS.
pub async fn client_peer() -> webrtc::error::Result<(Arc<dyn PeerConnection>, PeerEvents)> {
    client_peer_with(RTCConfigurationBuilder::new().build()).await
}

/// [`client_peer`] with its own ICE configuration (a TURN server, a `relay` policy).
pub async fn client_peer_with(
    configuration: RTCConfiguration,
) -> webrtc::error::Result<(Arc<dyn PeerConnection>, PeerEvents)> {
    let (cand_tx, candidates) = mpsc::unbounded_channel();
    let (dc_tx, channels) = mpsc::unbounded_channel();
    let runtime = webrtc::runtime::default_runtime()
        .ok_or_else(|| webrtc::error::Error::OtherPeerConnectionErr("no async runtime for webrtc".into()))?;
    let pc = PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .with_network_types(vec![rtc::ice::network_type::NetworkType::Udp4])
                .build(),
        )
        .with_handler(Arc::new(Handler { candidates: cand_tx, channels: dc_tx }) as Arc<dyn PeerConnectionEventHandler>)
        .with_runtime(runtime)
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await?;
    Ok((Arc::new(pc), PeerEvents { candidates, channels }))
}

/// Apply the server's `offer` to `pc`, then make and apply the answer; the answer's SDP.
pub async fn answer(pc: &dyn PeerConnection, offer: String) -> webrtc::error::Result<String> {
    pc.set_remote_description(RTCSessionDescription::offer(offer)?).await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    let local = pc.local_description().await;
    local.map(|d| d.sdp).ok_or_else(|| webrtc::error::Error::OtherPeerConnectionErr("no local description".into()))
}

/// The `POST /api/webrtc/ice-candidate` body for one of [`PeerEvents::candidates`] of session
/// `session_id` (`None`: end of candidates).
pub fn candidate_body(session_id: &str, candidate: Option<Value>) -> Value {
    match candidate {
        Some(mut c) => {
            c["session_id"] = json!(session_id);
            c
        }
        None => json!({"session_id": session_id, "candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}),
    }
}

/// A client peer connection that has applied `offer` and made its answer (nothing sent).
pub async fn answerer(offer: &str) -> Arc<dyn PeerConnection> {
    let (pc, _events) = client_peer().await.expect("client peer");
    answer(pc.as_ref(), offer.to_owned()).await.expect("answer");
    pc
}

pub struct RtcClient {
    pub client: Client,
    pub pc: Arc<dyn PeerConnection>,
    pub session_id: String,
    /// The server's offer SDP, as it came.
    pub offer: String,
    /// Offer request → both channels open, as this client saw it.
    pub setup: Duration,
}

impl std::fmt::Debug for RtcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcClient")
            .field("client", &self.client)
            .field("session_id", &self.session_id)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

impl RtcClient {
    /// Connect as the admin.
    pub async fn connect(server: &Server, remote_control_id: &str) -> RtcClient {
        let admin = server.tokens.get("admin").cloned();
        Self::connect_as(server, remote_control_id, admin.as_deref()).await
    }

    /// Connect with `token` for every signaling call.
    pub async fn connect_as(server: &Server, remote_control_id: &str, token: Option<&str>) -> RtcClient {
        Self::connect_inner(server, remote_control_id, token, None, None).await.0
    }

    /// Connect as the admin with this client's own ICE `configuration` (a TURN server and a
    /// `relay` policy put every datagram through the TURN server).
    pub async fn connect_with(server: &Server, remote_control_id: &str, configuration: RTCConfiguration) -> RtcClient {
        let admin = server.tokens.get("admin").cloned();
        Self::connect_inner(server, remote_control_id, admin.as_deref(), None, Some(configuration)).await.0
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
            Self::connect_inner(server, remote_control_id, admin.as_deref(), Some((down_bps, max_queue)), None).await;
        (c, link.expect("link"))
    }

    async fn connect_inner(
        server: &Server,
        remote_control_id: &str,
        token: Option<&str>,
        through: Option<(u64, Duration)>,
        configuration: Option<RTCConfiguration>,
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
        let offer_sdp = sdp.clone();
        let (sdp, link) = match through {
            None => (sdp, None),
            Some((down_bps, max_queue)) => {
                let server_addr = link::server_candidate(&sdp);
                let link = Link::start(server_addr, down_bps, max_queue).await;
                (link::through(&sdp, server_addr, link.front), Some(link))
            }
        };

        let configuration = configuration.unwrap_or_else(|| RTCConfigurationBuilder::new().build());
        let (pc, events) = client_peer_with(configuration).await.expect("client peer");
        let PeerEvents { candidates: mut cand_rx, channels: mut dc_rx } = events;
        let mut answer_sdp = answer(pc.as_ref(), sdp).await.expect("answer");
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
                if c.is_some() && !trickle {
                    continue;
                }
                let body = candidate_body(&sid, c);
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
            tokio::spawn(record(dc, label, Arc::clone(&log), Arc::clone(&rec), None));
        }
        let setup = start.elapsed();
        let command = command.expect("command channel");
        (
            RtcClient {
                client: Client { log, out: Outbox::DataChannel(command), reader: None },
                pc,
                session_id,
                offer: offer_sdp,
                setup,
            },
            link,
        )
    }
}

/// The SDP without its candidate lines: the server learns the client's candidates by trickle only.
pub fn without_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !l.starts_with("a=candidate:") && !l.starts_with("a=end-of-candidates"))
        .collect()
}

/// A client that will offer: its own `video` (unordered, no retransmissions) and `command`
/// (ordered) channels, recorded like every client of the kit once they open.
pub struct Offering {
    pub pc: Arc<dyn PeerConnection>,
    /// Its candidates as gathered (`None` at the end).
    pub candidates: mpsc::UnboundedReceiver<Option<Value>>,
    pub log: Arc<std::sync::Mutex<crate::ws::Log>>,
    pub command: Arc<dyn DataChannel>,
    /// The label of each channel as it opens.
    pub open_rx: mpsc::UnboundedReceiver<String>,
}

impl std::fmt::Debug for Offering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offering").finish_non_exhaustive()
    }
}

impl Offering {
    pub async fn new() -> Offering {
        use webrtc::data_channel::RTCDataChannelInit;
        let (pc, events) = client_peer().await.expect("client peer");
        let PeerEvents { candidates, .. } = events;
        let video_init = RTCDataChannelInit { ordered: false, max_retransmits: Some(0), ..Default::default() };
        let video = pc.create_data_channel("video", Some(video_init)).await.expect("video channel");
        let command = pc.create_data_channel("command", None).await.expect("command channel");
        let log = Arc::new(std::sync::Mutex::new(crate::ws::Log::default()));
        let rec = Arc::new(std::sync::Mutex::new(crate::ws::Recorder::default()));
        let (open_tx, open_rx) = mpsc::unbounded_channel();
        for dc in [&video, &command] {
            let dc = Arc::clone(dc);
            let label = dc.label().await.unwrap_or_default();
            tokio::spawn(record(dc, label, Arc::clone(&log), Arc::clone(&rec), Some(open_tx.clone())));
        }
        Offering { pc, candidates, log, command, open_rx }
    }
}

/// Record what `dc` carries into `log` (text as events, binary as video messages) until it
/// closes; say its label on `open` when it opens.
async fn record(
    dc: Arc<dyn DataChannel>,
    label: String,
    log: Arc<Mutex<Log>>,
    rec: Arc<Mutex<Recorder>>,
    open: Option<mpsc::UnboundedSender<String>>,
) {
    while let Some(ev) = dc.poll().await {
        match ev {
            DataChannelEvent::OnOpen => {
                if let Some(open) = &open {
                    let _ = open.send(label.clone());
                }
            }
            DataChannelEvent::OnMessage(m) if m.is_string => {
                rec.lock().expect("lock").text(&log, &String::from_utf8_lossy(&m.data))
            }
            DataChannelEvent::OnMessage(m) => rec.lock().expect("lock").video_message(&log, m.data.freeze()),
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
    let mut l = log.lock().expect("lock");
    if l.closed.is_none() {
        l.closed = Some((0, format!("{label} channel closed")));
    }
}

/// Apply the server's trickled candidates to `pc` as `fetch` lists them (all so far, each a JSON
/// object with the candidate, mid and m-line index under `keys`), until one is empty (the end).
pub fn apply_server_candidates(
    pc: Arc<dyn PeerConnection>,
    keys: [&'static str; 3],
    fetch: impl Fn() -> Vec<Value> + Send + 'static,
) {
    tokio::spawn(async move {
        let mut applied = 0;
        loop {
            let all = fetch();
            for c in &all[applied..] {
                let init = webrtc::peer_connection::RTCIceCandidateInit {
                    candidate: c[keys[0]].as_str().unwrap_or_default().to_owned(),
                    sdp_mid: c[keys[1]].as_str().map(str::to_owned),
                    sdp_mline_index: c[keys[2]].as_u64().map(|n| n as u16),
                    ..Default::default()
                };
                let _ = pc.add_ice_candidate(init).await;
            }
            applied = all.len();
            if all.iter().any(|c| c[keys[0]] == "") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

impl Offering {
    /// Wait (10 s at most) until both channels are open.
    pub async fn wait_open(open_rx: &mut mpsc::UnboundedReceiver<String>) {
        let mut open = Vec::new();
        while open.len() < 2 {
            let label = tokio::time::timeout(Duration::from_secs(10), open_rx.recv())
                .await
                .unwrap_or_else(|_| panic!("channels open within 10 s; open: {open:?}"))
                .expect("a channel");
            open.push(label);
        }
    }
}
