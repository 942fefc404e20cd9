//! WHIP requests that cannot publish get a clear status and message, and leave the server
//! healthy: a missing, wrong or other train's token (401), a train id with no token configured
//! (404), a bad train id (400), a body that is
//! not `application/sdp` (415), text that is not SDP (400 `bad_sdp`), an offer without video or
//! without H.264 (400 `no_h264`), PATCH and DELETE on an unknown session (404), a PATCH without
//! `If-Match` (428) and with a stale one (412). No train goes online.

use serde_json::Value;
use testkit::{api, request, scratch, Server};

/// An offer that is valid SDP but has only audio.
const AUDIO_ONLY: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n";
/// Video, but VP8 only.
const VP8_ONLY: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n";

async fn post(server: &Server, train: &str, token: Option<&str>, content_type: &str, body: &str) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", content_type)];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (status, _, text) =
        request("POST", &server.url(&format!("/api/whip/trains/{train}")), &headers, body.as_bytes()).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_refusals_are_clear() {
    let dir = scratch("whip_bad_input");
    let server = Server::start(&dir, &[]).await;
    let token = server.train_token("train-1");
    let other = server.train_token("train-2");
    let sdp = "application/sdp";

    // (train, token, content type, body, status, code)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, &'a str, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("train-1", None, sdp, VP8_ONLY, 401, "unauthorized"),
        ("train-1", Some("not-the-token"), sdp, VP8_ONLY, 401, "unauthorized"),
        ("train-1", Some(&other), sdp, VP8_ONLY, 401, "unauthorized"),
        ("no-such-train", Some(&token), sdp, VP8_ONLY, 404, "train_not_found"),
        ("bad%20id", Some(&token), sdp, VP8_ONLY, 400, "bad_train_id"),
        ("train-1", Some(&token), "text/plain", VP8_ONLY, 415, "unsupported_media_type"),
        ("train-1", Some(&token), sdp, "hello, server", 400, "bad_sdp"),
        ("train-1", Some(&token), sdp, "v=0\r\ns=-\r\n", 400, "bad_sdp"),
        ("train-1", Some(&token), sdp, AUDIO_ONLY, 400, "no_h264"),
        ("train-1", Some(&token), sdp, VP8_ONLY, 400, "no_h264"),
    ];
    for (train, tok, content_type, body, want, code) in cases {
        let (status, err) = post(&server, train, tok, content_type, body).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (want, Some(code)),
            "POST {train} ({content_type}, {body:?}): {err}"
        );
        let message = err["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "a message says why: {err}");
        println!("{status} {code}: {message}");
    }

    let frag = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123456789\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n";
    let auth = format!("Bearer {token}");
    let url = server.url("/api/whip/sessions/whip-0000000000000000");
    let (status, _, body) = request(
        "PATCH",
        &url,
        &[("authorization", &auth), ("content-type", "application/trickle-ice-sdpfrag"), ("if-match", "*")],
        frag.as_bytes(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("whip_session_not_found"), "{body}");
    let (status, _, body) = request("DELETE", &url, &[("authorization", &auth)], b"").await;
    assert_eq!(status, 404, "{body}");

    // A real session (aiortc is not needed to be answered: any H.264 offer is), then PATCHes
    // without If-Match and with a stale one, and a DELETE without the token.
    let offer = VP8_ONLY.replace("VP8/90000", "H264/90000").replace("a=mid:0\r\n", "a=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123456789\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\na=setup:actpass\r\na=rtcp-mux\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n");
    let (status, headers, answer) = request(
        "POST",
        &server.url("/api/whip/trains/train-1"),
        &[("authorization", &auth), ("content-type", sdp)],
        offer.as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).expect(name);
    let location = header("location");
    assert!(location.starts_with("/api/whip/sessions/"), "{location}");
    assert!(answer.starts_with("v=0") && answer.contains("a=candidate:"), "{answer}");
    let session = server.url(&location);
    let patch = |if_match: Option<&'static str>| {
        let (auth, session) = (auth.clone(), session.clone());
        async move {
            let mut h = vec![("authorization", auth.as_str()), ("content-type", "application/trickle-ice-sdpfrag")];
            if let Some(m) = if_match {
                h.push(("if-match", m));
            }
            request("PATCH", &session, &h, b"a=end-of-candidates\r\n").await
        }
    };
    assert_eq!(patch(None).await.0, 428);
    assert_eq!(patch(Some("\"stale\"")).await.0, 412);
    assert_eq!(patch(Some("*")).await.0, 204);
    let (status, _, body) = request("DELETE", &session, &[("authorization", "Bearer wrong")], b"").await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = request("DELETE", &session, &[("authorization", &auth)], b"").await;
    assert_eq!(status, 204, "{body}");
    let (status, _, _) = request("DELETE", &session, &[("authorization", &auth)], b"").await;
    assert_eq!(status, 404);

    let (status, health) = api("GET", &server.url("/healthz"), None).await;
    assert_eq!(status, 200, "{health}");
    let (_, trains) = api("GET", &server.url("/api/trains"), None).await;
    assert!(trains.as_array().expect("trains").iter().all(|t| t["online"] == false), "{trains}");
}
