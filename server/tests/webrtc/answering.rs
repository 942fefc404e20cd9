//! The negotiation core in the answering direction: a webrtc-rs client offers with its own
//! `video` and `command` channels, the peer registry answers (in-process: no signaling front-end
//! answers yet), and the session runs over the client's channels exactly as over the server's
//! (welcome, the mapping, a ping answered, the goodbye at shutdown). A bad offer is refused.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use railcast_protocol::client::ServerEvent;
use railcast_server::auth::{Auth, Principal};
use railcast_server::core::{Core, ServerInfo};
use railcast_server::hub::{Hub, HubConfig};
use railcast_server::limits::{Limit, LimitConfig, PerAddress};
use railcast_server::remote::RemoteControls;
use railcast_server::sessions::Registry;
use railcast_server::transport::webrtc::{NegotiationError, PeerError, Server, Settings};
use tokio::sync::watch;
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::RTCSessionDescription;

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
        client_addresses: PerAddress::new(
            limits.max_connections_per_address,
            "client sessions",
            Limit::ConnectionsPerAddress,
            "max_connections_per_address",
        ),
        limits,
        audit: railcast_server::audit::Audit::memory(),
        shutdown,
        cluster: None,
    };
    (core, principal, stop_tx)
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

    let (pc, _events) = testkit::webrtc::client_peer().await.expect("client peer");
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
