//! STUN/TURN with a real TURN server (Debian's coturn) on loopback.
//!
//! 1. With a TURN server configured, the offer comes back as soon as the host candidates are
//!    gathered, without `a=end-of-candidates` (gathering is not over: a client that honours it,
//!    as aiortc does, would never use the relay candidate), and the server's relay candidate
//!    reaches the client by trickle (`GET /api/webrtc/sessions/{id}/candidates`), which lists
//!    only candidates the offer did not carry, then says `complete`. The offer response hands
//!    the TURN server and its credentials to the client.
//! 2. With `webrtc_relay_only`, the server's only candidates are relayed by coturn, so every
//!    datagram of the session crosses the TURN server: verified frames and a command ack prove
//!    the relay path works end to end.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use testkit::webrtc::RtcClient;
use testkit::ws::verify;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};
use webrtc::peer_connection::{RTCConfiguration, RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy};

pub(crate) const TURN_USER: &str = "railcast";
pub(crate) const TURN_PASSWORD: &str = "loopback-only";

/// coturn on 127.0.0.1, long-term credentials (a static user, or time-limited ones from a shared
/// secret), relaying to loopback peers (off by default). `whep_turn` and `webrtc_turn_rest` use
/// it too.
pub(crate) struct Turn {
    child: Child,
    pub(crate) port: u16,
    log: std::path::PathBuf,
}

impl Turn {
    /// With the static user [`TURN_USER`].
    pub(crate) fn start(dir: &Path) -> Turn {
        Self::spawn(dir, &["--user", &format!("{TURN_USER}:{TURN_PASSWORD}")])
    }

    /// With TURN REST credentials (`use-auth-secret`): usernames `EXPIRY:NAME`, credentials
    /// base64(HMAC-SHA1(secret, username)).
    pub(crate) fn start_with_secret(dir: &Path, secret: &str) -> Turn {
        Self::spawn(dir, &["--use-auth-secret", &format!("--static-auth-secret={secret}")])
    }

    fn spawn(dir: &Path, auth: &[&str]) -> Turn {
        assert!(
            Path::new("/usr/bin/turnserver").exists(),
            "this test needs Debian's coturn (/usr/bin/turnserver): run scripts/setup.sh"
        );
        let port = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp").local_addr().expect("addr").port();
        // UDP only (--no-tcp): the port was found free for UDP, and the same number over TCP may
        // be taken; coturn then retried its TCP listener forever instead of serving (a CI flake).
        // Relay ports: a block well away from the ephemeral range is not guaranteed free, so let
        // coturn pick within a wide one.
        let log = dir.join("turnserver.log");
        let child = Command::new("/usr/bin/turnserver")
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp", "--no-tcp-relay"])
            .args(["--fingerprint", "--lt-cred-mech", "-v"])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1", "--allow-loopback-peers"])
            .args(["--listening-port", &port.to_string(), "--min-port", "20000", "--max-port", "29999"])
            .args(["--realm", "railcast.test"])
            .args(auth)
            .args(["--simple-log", "--log-file", log.to_str().expect("utf-8 path")])
            .args(["--pidfile", dir.join("turnserver.pid").to_str().expect("utf-8 path")])
            .args(["--userdb", dir.join("turndb").to_str().expect("utf-8 path")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        Turn { child, port, log }
    }

    pub(crate) fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client configuration whose only route is one TURN server (ICE transport policy `relay`).
pub(crate) fn relay_only(url: &str, username: &str, credential: &str) -> RTCConfiguration {
    RTCConfigurationBuilder::new()
        .with_ice_servers(vec![RTCIceServer {
            urls: vec![url.to_owned()],
            username: username.to_owned(),
            credential: credential.to_owned(),
        }])
        .with_ice_transport_policy(RTCIceTransportPolicy::Relay)
        .build()
}

pub(crate) fn turn_args(turn: &Turn) -> Vec<String> {
    vec![
        "--webrtc-ice-servers".into(),
        turn.url(),
        "--webrtc-turn-username".into(),
        TURN_USER.into(),
        "--webrtc-turn-credential".into(),
        TURN_PASSWORD.into(),
    ]
}

fn candidate_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("a=candidate:")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_candidate_trickles_after_the_offer() {
    let dir = scratch("webrtc_turn_trickle");
    let turn = Turn::start(&dir);
    let args = turn_args(&turn);
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let rc = remote_control(&server, None).await;

    let (status, offer) = api("POST", &server.url("/api/webrtc/offer"), Some(json!({"remote_control_id": rc}))).await;
    assert_eq!(status, 200, "{offer}");
    assert_eq!(
        offer["ice_servers"],
        json!([{"urls": [turn.url()], "username": TURN_USER, "credential": TURN_PASSWORD}]),
        "clients get the TURN server and its credentials"
    );
    let sdp = offer["sdp"].as_str().expect("sdp");
    let in_offer = candidate_lines(sdp);
    assert!(in_offer.iter().any(|c| c.contains(" typ host")), "the offer carries host candidates: {in_offer:?}");
    let relay_in_offer = in_offer.iter().any(|c| c.contains(" typ relay"));
    assert!(
        !sdp.contains("a=end-of-candidates") || relay_in_offer,
        "the offer says end-of-candidates while coturn's relay candidate is still to come:\n{sdp}"
    );

    // Trickle: poll with `after` until gathering is complete.
    let sid = offer["session_id"].as_str().expect("session_id");
    let (mut after, mut relay, mut complete, mut trickled) = (0, None, false, Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !complete && tokio::time::Instant::now() < deadline {
        let (status, page) =
            api("GET", &server.url(&format!("/api/webrtc/sessions/{sid}/candidates?after={after}&wait_ms=2000")), None)
                .await;
        assert_eq!(status, 200, "{page}");
        for c in page["candidates"].as_array().expect("candidates") {
            let line = c["candidate"].as_str().expect("candidate");
            trickled.push(line.to_owned());
            if line.contains(" typ relay") {
                relay = Some(line.to_owned());
            }
        }
        after = page["next"].as_u64().expect("next") as usize;
        complete = page["complete"].as_bool().expect("complete");
    }
    assert!(complete, "gathering completes");
    let repeated: Vec<&String> = trickled.iter().filter(|l| in_offer.contains(&format!("a={l}").as_str())).collect();
    assert!(repeated.is_empty(), "trickled again though the offer carries them: {repeated:?}");
    if relay_in_offer {
        // Gathering outran the offer (possible on loopback): nothing was left to trickle.
        println!("the relay candidate made it into the offer: {in_offer:?}");
        let (status, _) = api("DELETE", &server.url(&format!("/api/webrtc/sessions/{sid}")), None).await;
        assert_eq!(status, 204);
        return;
    }
    let relay = relay.expect("a relay candidate from coturn is trickled");
    let port: u16 = relay.split_whitespace().nth(5).and_then(|p| p.parse().ok()).expect("relay port");
    assert!(relay.contains(" 127.0.0.1 ") && (20000..=29999).contains(&port), "coturn's relay address: {relay}");
    println!("relay candidate trickled after the offer: {relay}");
    let (status, _) = api("DELETE", &server.url(&format!("/api/webrtc/sessions/{sid}")), None).await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_session_streams_through_coturn() {
    let dir = scratch("webrtc_turn_relay_only");
    let turn = Turn::start(&dir);
    let mut args = turn_args(&turn);
    args.push("--webrtc-relay-only".into());
    let server = Server::start(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    let rtc = RtcClient::connect(&server, &rc).await;
    println!("relay-only setup (offer request → both channels open): {:.1} ms", rtc.setup.as_secs_f64() * 1000.0);
    let c = &rtc.client;
    c.wait_frames(20).await;
    c.send_text(
        json!({"type": "command", "request_id": "turn-1", "command": {"type": "horn", "duration_ms": 100}}).to_string(),
    )
    .await;
    let ack = c.wait_event("ack", |e| e["request_id"] == "turn-1").await;
    assert_eq!(ack["type"], "command_ack", "{ack}");
    let checked = verify(&c.frames(), &sim.manifest());
    println!("relay-only: {checked} frames verified through coturn");

    let (_, session) = api("GET", &server.url(&format!("/api/webrtc/sessions/{}", rtc.session_id)), None).await;
    assert_eq!(session["state"], "connected", "{session}");
    // The server offered nothing but relayed addresses, in the offer or later, so the session can
    // only run through coturn.
    let (_, late) = api("GET", &server.url(&format!("/api/webrtc/sessions/{}/candidates", rtc.session_id)), None).await;
    let mut lines = candidate_lines(&rtc.offer);
    lines.extend(late["candidates"].as_array().expect("candidates").iter().filter_map(|c| c["candidate"].as_str()));
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains(" typ relay")), "relay candidates only: {lines:?}");
    let log = turn.log();
    assert!(log.contains("ALLOCATE processed, success"), "coturn allocated a relay:\n{log}");
    assert!(
        log.contains("CREATE_PERMISSION processed, success"),
        "the server opened a permission for the client:\n{log}"
    );

    let (status, _) = api("DELETE", &server.url(&format!("/api/webrtc/sessions/{}", rtc.session_id)), None).await;
    assert_eq!(status, 204);
    testkit::wait_no_webrtc_sessions(&server).await;
    let _ = rtc.pc.close().await;
}
