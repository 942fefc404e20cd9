//! TURN REST credentials (coturn's `use-auth-secret`) with a real coturn on loopback:
//!
//! 1. With `webrtc_turn_secret`, each session is handed its own time-limited credentials
//!    (`EXPIRY:SESSION`, base64(HMAC-SHA1)), expiring after `webrtc_turn_credential_ttl`; with
//!    `webrtc_relay_only` the server's own agent allocates through coturn with generated ones,
//!    and a client whose only route is coturn too (relay policy, the credentials it was handed)
//!    gets verified frames; a WHEP player gets its own credentials in the `Link` header.
//! 2. coturn refuses what the secret did not sign: an expired username with a valid HMAC, and a
//!    current one signed with another secret, get no relay candidate, while a current one signed
//!    with the secret does.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use testkit::webrtc::{client_peer_with, PeerEvents, RtcClient};
use testkit::whep::Whep;
use testkit::ws::verify;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};

use crate::webrtc_turn::{relay_only, Turn};

const SECRET: &str = "loopback-shared-secret";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_session_streams_with_generated_credentials() {
    let dir = scratch("webrtc_turn_rest");
    let turn = Turn::start_with_secret(&dir, SECRET);
    let url = turn.url();
    let args = ["--webrtc-ice-servers", &url, "--webrtc-turn-secret", SECRET, "--webrtc-turn-credential-ttl", "10m"];
    let server = Server::start(&dir, &[&args[..], &["--webrtc-relay-only"]].concat()).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    // Two offers, two sets of credentials, each naming its session and expiring in 10 minutes.
    let mut handed = Vec::new();
    for _ in 0..2 {
        let (status, offer) =
            api("POST", &server.url("/api/webrtc/offer"), Some(json!({"remote_control_id": rc}))).await;
        assert_eq!(status, 200, "{offer}");
        let sid = offer["session_id"].as_str().expect("session_id").to_owned();
        let ice = &offer["ice_servers"];
        assert_eq!(ice[0]["urls"], json!([url]), "{ice}");
        let username = ice[0]["username"].as_str().expect("username").to_owned();
        let credential = ice[0]["credential"].as_str().expect("credential").to_owned();
        let (expiry, name) = username.split_once(':').expect("EXPIRY:NAME");
        let expiry: u64 = expiry.parse().expect("expiry in Unix seconds");
        assert!(expiry.abs_diff(now() + 600) <= 30, "expires in 10 minutes: {username}");
        assert_eq!(name, sid, "the username names the session");
        assert_eq!(credential.len(), 28, "base64 of a 20-byte HMAC-SHA1: {credential}");
        assert!(!offer.to_string().contains(SECRET), "the secret is never handed out");
        handed.push((username, credential));
        let (status, _) = api("DELETE", &server.url(&format!("/api/webrtc/sessions/{sid}")), None).await;
        assert_eq!(status, 204);
    }
    assert_ne!(handed[0], handed[1], "credentials are per session");

    // The client goes through coturn too, with credentials the server handed out.
    let (username, credential) = &handed[0];
    let rtc = RtcClient::connect_with(&server, &rc, relay_only(&url, username, credential)).await;
    println!(
        "relay-only with TURN REST credentials on both sides (offer request → both channels open): {:.1} ms",
        rtc.setup.as_secs_f64() * 1000.0
    );
    rtc.client.wait_frames(20).await;
    let checked = verify(&rtc.client.frames(), &sim.manifest());
    println!("TURN REST: {checked} frames verified through coturn");

    let lines: Vec<&str> = rtc.offer.lines().filter(|l| l.starts_with("a=candidate:")).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains(" typ relay")), "relay candidates only: {lines:?}");
    let log = turn.log();
    let allocated = |user: &str| {
        log.lines().any(|l| l.contains(&format!("user <{user}>")) && l.contains("ALLOCATE processed, success"))
    };
    assert!(allocated(username), "coturn allocated for the client's handed-out credentials {username}:\n{log}");
    let server_user = log
        .lines()
        .filter(|l| l.contains("ALLOCATE processed, success"))
        .find_map(|l| l.split("user <").nth(1)?.split('>').next().filter(|u| u.ends_with(":railcast")));
    assert!(server_user.is_some(), "coturn allocated for the server's own generated credentials:\n{log}");

    // A WHEP player is handed its own credentials too, in the POST's Link header.
    let whep = Whep::connect(&server, &rc, Some(server.token("admin")), 1, false).await;
    assert_eq!(whep.links.len(), 1, "{:?}", whep.links);
    let link = &whep.links[0];
    let whep_user = link.split("username=\"").nth(1).and_then(|r| r.split('"').next()).expect("username");
    let expiry: u64 = whep_user.split(':').next().and_then(|e| e.parse().ok()).expect("EXPIRY:NAME");
    assert!(expiry.abs_diff(now() + 600) <= 30, "{link}");
    assert!(!link.contains(SECRET) && !handed.iter().any(|(u, _)| u == whep_user), "{link}");
    whep.pc.close().await.expect("close WHEP");

    let (status, _) = api("DELETE", &server.url(&format!("/api/webrtc/sessions/{}", rtc.session_id)), None).await;
    assert_eq!(status, 204);
    let _ = rtc.pc.close().await;
}

/// The relay candidates a relay-only peer gathers with these credentials, and how long it took.
async fn gather_relay(url: &str, username: &str, credential: &str) -> (Vec<String>, Duration) {
    let start = std::time::Instant::now();
    let (pc, events) = client_peer_with(relay_only(url, username, credential)).await.expect("peer");
    let PeerEvents { mut candidates, .. } = events;
    pc.create_data_channel("probe", None).await.expect("channel");
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("local description");
    let mut relays = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, candidates.recv()).await {
            Ok(Some(Some(c))) => relays.extend(c["candidate"].as_str().map(String::from)),
            Ok(Some(None)) | Ok(None) => break,
            Err(_) => panic!("gathering with {username} did not complete in 20 s"),
        }
    }
    let _ = pc.close().await;
    (relays.into_iter().filter(|c| c.contains(" typ relay")).collect(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_refuses_expired_and_forged_credentials() {
    let dir = scratch("webrtc_turn_rest_refused");
    let turn = Turn::start_with_secret(&dir, SECRET);
    let url = turn.url();
    let sign = railcast_server::ice::rest_credential;

    let valid = format!("{}:valid-probe", now() + 600);
    let (relays, took) = gather_relay(&url, &valid, &sign(SECRET, &valid)).await;
    assert!(!relays.is_empty(), "a current username signed with the secret gets a relay candidate");
    println!("valid TURN REST credentials: relay candidate in {:.0} ms", took.as_secs_f64() * 1000.0);

    let expired = format!("{}:expired-probe", now() - 60);
    let (relays, took) = gather_relay(&url, &expired, &sign(SECRET, &expired)).await;
    assert!(relays.is_empty(), "an expired username is refused: {relays:?}");
    println!("expired credentials: no relay candidate, gathering over in {:.0} ms", took.as_secs_f64() * 1000.0);

    let forged = format!("{}:forged-probe", now() + 600);
    let (relays, _) = gather_relay(&url, &forged, &sign("another-secret", &forged)).await;
    assert!(relays.is_empty(), "a credential signed with another secret is refused: {relays:?}");

    let log = turn.log();
    for user in [&expired, &forged] {
        let about: Vec<&str> = log.lines().filter(|l| l.contains(user.as_str())).collect();
        println!("coturn on {user}: {about:#?}");
        assert!(
            !about.iter().any(|l| l.contains("ALLOCATE processed, success")),
            "coturn allocated for {user}:\n{log}"
        );
        assert!(about.iter().any(|l| l.contains("error 401")), "coturn answered {user} with 401:\n{log}");
    }
}
