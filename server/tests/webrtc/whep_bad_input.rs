//! WHEP refusals, each in the API's one error shape and none leaving a session behind: no token
//! (401), another client's remote control (403), a body that is not SDP by its type (415),
//! malformed SDP (400), an offer without video (422), an unknown remote control (404), a PATCH
//! with a malformed candidate (400), and the session limit (429). The server stays up.

use serde_json::Value;
use testkit::whep::{http, media_peer, offer, Whep};
use testkit::{api, api_as, scratch, Server};

const AUDIO_ONLY: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\n";

/// What, where, as whom, headers, body, and the expected status and error code.
type Case<'a> = (&'a str, String, Option<&'a str>, &'a [(&'a str, &'a str)], &'a str, u16, &'a str);

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body).map(|v| v["code"].as_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_whep_requests_are_refused_clearly() {
    let dir = scratch("whep_bad_input");
    let server = Server::start(&dir, &["--max-webrtc-sessions", "1"]).await;
    let admin = Some(server.token("admin"));
    let (_, rc) = api("POST", &server.url("/api/remote-controls"), Some(serde_json::json!({}))).await;
    let rc = rc["id"].as_str().expect("id").to_owned();
    let (_, owned) =
        api("POST", &server.url("/api/remote-controls"), Some(serde_json::json!({"owner": "demo-operator"}))).await;
    let owned = owned["id"].as_str().expect("id").to_owned();
    let url = server.url(&format!("/api/whep/remote-controls/{rc}"));
    let (pc, _tracks, _channels, _ice) = media_peer().await;
    let (sdp, _) = offer(&pc, 1, false).await;
    let sdp_type = [("content-type", "application/sdp")];

    let cases: Vec<Case<'_>> = vec![
        ("no token", url.clone(), None, &sdp_type, &sdp, 401, "unauthorized"),
        (
            "another's remote control",
            server.url(&format!("/api/whep/remote-controls/{owned}")),
            Some(server.token("viewer")),
            &sdp_type,
            &sdp,
            403,
            "forbidden",
        ),
        ("JSON body", url.clone(), admin, &[("content-type", "application/json")], "{}", 415, "unsupported_media_type"),
        ("no content type", url.clone(), admin, &[], &sdp, 415, "unsupported_media_type"),
        ("garbage SDP", url.clone(), admin, &sdp_type, "this is not SDP", 400, "bad_sdp"),
        ("empty SDP", url.clone(), admin, &sdp_type, "", 400, "bad_sdp"),
        ("no video", url.clone(), admin, &sdp_type, AUDIO_ONLY, 422, "no_media"),
        (
            "unknown remote control",
            server.url("/api/whep/remote-controls/rc-nope"),
            admin,
            &sdp_type,
            &sdp,
            404,
            "remote_control_not_found",
        ),
    ];
    for (what, url, token, headers, body, status, want) in cases {
        let (got, _, text) = http("POST", &url, token, headers, body).await;
        assert_eq!((got, code(&text).as_str()), (status, want), "{what}: {text}");
    }
    let (_, _, list) = http("GET", &server.url("/api/webrtc/sessions"), admin, &[], "").await;
    assert_eq!(list.trim(), "[]", "no session left by a refusal");

    // One session is the limit here: a second gets 429.
    let whep = Whep::connect(&server, &rc, admin, 1, false).await;
    let (got, _, text) = http("POST", &url, admin, &sdp_type, &sdp).await;
    assert_eq!((got, code(&text).as_str()), (429, "limit_webrtc_sessions"), "{text}");

    let ct = ("content-type", "application/trickle-ice-sdpfrag");
    let bad = "a=candidate:1 1 udp 2122260223 example.com 50123 typ host\r\n";
    let (got, _, text) = http("PATCH", &whep.url, admin, &[ct, ("if-match", "*")], bad).await;
    assert_eq!((got, code(&text).as_str()), (400, "bad_candidate"), "{text}");
    let (got, _, text) = http("PATCH", &whep.url, admin, &[ct, ("if-match", "*")], "garbage line").await;
    assert_eq!((got, code(&text).as_str()), (400, "bad_sdp"), "{text}");

    let (status, me) = api_as(admin, "GET", &server.url("/api/me"), None).await;
    assert_eq!(status, 200, "the server is up: {me}");
    let _ = whep.pc.close().await;
}
