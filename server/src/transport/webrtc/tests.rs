//! The negotiation core in the answering direction: a webrtc-rs client offers with its own
//! `video` and `command` channels, the registry answers in-process, and the session runs over
//! the client's channels exactly as over the server's (welcome, a ping answered, the goodbye).
//! The offering direction is covered end to end by `server/tests` (REST signaling).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use railcast_protocol::client::ServerEvent;
use tokio::sync::watch;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder, RTCSessionDescription,
    SettingEngineBuilder,
};

use super::{negotiate, NegotiationError, PeerError, Server, Settings};
use crate::auth::{Auth, Principal};
use crate::core::{Core, ServerInfo};
use crate::hub::{Hub, HubConfig};
use crate::limits::{LimitConfig, PerAddress};
use crate::remote::RemoteControls;
use crate::sessions::Registry;

const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn core() -> (Core, Principal, watch::Sender<bool>) {
    let (auth, generated) = Auth::load(None, 0).expect("demo credentials");
    let admin = generated.expect("generated").clients[0].token.clone().expect("token");
    let principal = auth.client(&admin).expect("admin");
    let (stop_tx, shutdown) = watch::channel(false);
    let limits = LimitConfig::default();
    let core = Core {
        hub: Hub::new(HubConfig::default()),
        remotes: Arc::new(RemoteControls::open(10, None).expect("remote controls")),
        sessions: Arc::new(Registry::default()),
        info: Arc::new(ServerInfo {
            started_at: SystemTime::now(),
            http_addr: (LOOPBACK, 0).into(),
            quic_addr: (LOOPBACK, 0).into(),
            cert_sha256: String::new(),
            cert_pem: String::new(),
            self_signed: true,
        }),
        auth: Arc::new(auth),
        client_addresses: PerAddress::new(limits.max_connections_per_address, "client sessions"),
        limits,
        shutdown,
    };
    (core, principal, stop_tx)
}

#[derive(Debug)]
struct NoEvents;
#[async_trait::async_trait]
impl PeerConnectionEventHandler for NoEvents {}

async fn client_peer() -> Arc<dyn PeerConnection> {
    Arc::new(
        PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .with_network_types(vec![rtc::ice::network_type::NetworkType::Udp4])
                    .build(),
            )
            .with_handler(Arc::new(NoEvents) as Arc<dyn PeerConnectionEventHandler>)
            .with_runtime(webrtc::runtime::default_runtime().expect("runtime"))
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .expect("client peer"),
    )
}

/// The next JSON event on `dc`, skipping its open.
async fn next_event(dc: &Arc<dyn DataChannel>) -> ServerEvent {
    let wait = async {
        loop {
            match dc.poll().await.expect("channel open") {
                DataChannelEvent::OnMessage(m) => {
                    return serde_json::from_slice::<ServerEvent>(&m.data).expect("a server event")
                }
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("an event within 10 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_a_clients_offer() {
    let (core, admin, stop) = core();
    let rc = core.remotes.create(None, None).expect("remote control");
    let server = Server::new(Settings::default());

    let pc = client_peer().await;
    let video_init = RTCDataChannelInit { ordered: false, max_retransmits: Some(0), ..Default::default() };
    let _video = pc.create_data_channel("video", Some(video_init)).await.expect("video");
    let command = pc.create_data_channel("command", None).await.expect("command");
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("set offer");
    // Host candidates within the offer, as a non-trickle client sends it.
    let mut sdp = String::new();
    for _ in 0..200 {
        sdp = pc.local_description().await.expect("local").sdp;
        if sdp.contains("a=candidate") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sdp.contains("a=candidate"), "the client gathered a host candidate");

    let answer = server.answer(&core, &rc.id, &admin, LOOPBACK, sdp).await.expect("answer");
    assert!(answer.sdp.contains("a=candidate"), "the answer carries the server's host candidate");
    assert!(answer.sdp.contains("webrtc-datachannel"), "{}", answer.sdp);
    pc.set_remote_description(RTCSessionDescription::answer(answer.sdp).expect("answer sdp"))
        .await
        .expect("set answer");

    match next_event(&command).await {
        ServerEvent::Welcome { remote_control_id, transport, .. } => {
            assert_eq!((remote_control_id.as_str(), transport.as_str()), (rc.id.as_str(), "webrtc"));
        }
        other => panic!("expected welcome, got {other:?}"),
    }
    assert!(matches!(next_event(&command).await, ServerEvent::MappedTrainChanged { train_id: None, .. }));
    command.send_text(r#"{"type":"ping","t":7}"#).await.expect("ping");
    assert!(matches!(next_event(&command).await, ServerEvent::Pong { t, .. } if t == 7.0));

    let peers = server.list();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].id, answer.id);
    assert!(peers[0].session.is_some(), "the peer's client session is registered");
    assert_eq!(core.sessions.of_remote_control(&rc.id).len(), 1);

    // Every session gets its goodbye.
    let _ = stop.send(true);
    assert!(matches!(next_event(&command).await, ServerEvent::Closing { reason } if reason == "server shutting down"));
    for _ in 0..100 {
        if server.list().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.list().is_empty(), "the peer is gone from the registry");
    let _ = pc.close().await;
}

#[tokio::test]
async fn an_offer_without_data_channels_is_refused() {
    let (core, admin, _stop) = core();
    let rc = core.remotes.create(None, None).expect("remote control");
    let server = Server::new(Settings::default());
    let audio_only = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n";
    for sdp in ["", "not sdp", audio_only] {
        let err = server.answer(&core, &rc.id, &admin, LOOPBACK, sdp.into()).await.expect_err(sdp);
        assert!(matches!(err, PeerError::Negotiation(NegotiationError::BadSdp(_))), "{sdp:?}: {err}");
    }
    assert!(server.list().is_empty());
    let err = server.answer(&core, "rc-nope", &admin, LOOPBACK, audio_only.into()).await.expect_err("unknown");
    assert!(matches!(err, PeerError::UnknownRemoteControl(_)), "{err}");
}

#[test]
fn candidate_grammar() {
    for good in [
        "candidate:1 1 udp 2122260223 127.0.0.1 50123 typ host",
        "candidate:1 1 UDP 1 ::1 9 typ srflx raddr ::1 rport 9",
        "candidate:2 1 udp 1 192.0.2.1 3478 typ relay raddr 0.0.0.0 rport 0",
    ] {
        assert!(negotiate::check_candidate(good).is_ok(), "{good}: {:?}", negotiate::check_candidate(good));
    }
    for bad in [
        "",
        "candidate:",
        "candidate:1 1 udp x 127.0.0.1 1 typ host",
        "candidate:1 1 sctp 1 h 1 typ host",
        "candidate:1 1 udp 1 h 99999 typ host",
        "candidate:1 1 udp 1 h 1 type host",
        "candidate:1 1 udp 1 h 1 typ weird",
    ] {
        assert!(negotiate::check_candidate(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_data_channel_mid_is_read_from_the_offer() {
    let sdp = "v=0\r\nm=audio 9 UDP 0\r\na=mid:a\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:data\r\n";
    assert_eq!(negotiate::application_mid(sdp).as_deref(), Some("data"));
    assert_eq!(negotiate::application_mid("v=0\r\nm=audio 9 UDP 0\r\na=mid:0\r\n"), None);
}
