//! Bad WebRTC signaling input gets a clear error and disturbs no other session: unknown session →
//! 404; malformed SDP or candidate → 400 with the parser's reason; answer for a closed session →
//! 409/404; sessions that never connect are reaped.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::webrtc::RtcClient;
use testkit::{api, raw, remote_control, scratch, Server, Sim, SMALL_VIDEO};

fn assert_error(what: &str, (status, body): (u16, Value), statuses: &[u16], code: &str) {
    assert!(statuses.contains(&status), "{what}: status {status}, body {body}");
    assert_eq!(body["code"], code, "{what}: {body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "{what}: no reason");
    println!("{what}: {status} {code}: {message}");
}

async fn offer(server: &Server, rc: &str) -> String {
    let (status, v) = api("POST", &server.url("/api/webrtc/offer"), Some(json!({"remote_control_id": rc}))).await;
    assert_eq!(status, 200, "{v}");
    v["session_id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signaling_is_refused_and_harms_no_one() {
    let dir = scratch("webrtc_bad_input");
    let server = Server::start(&dir, &["--webrtc-connect-timeout", "1500ms"]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let healthy = RtcClient::connect(&server, &rc).await;
    healthy.client.wait_frames(5).await;
    let u = |p: &str| server.url(p);

    assert_error(
        "offer for unknown remote control",
        api("POST", &u("/api/webrtc/offer"), Some(json!({"remote_control_id": "rc-nope"}))).await,
        &[404],
        "remote_control_not_found",
    );
    assert_error(
        "answer to unknown session",
        api("POST", &u("/api/webrtc/answer"), Some(json!({"session_id": "wrtc-nope", "type": "answer", "sdp": "v=0"})))
            .await,
        &[404],
        "webrtc_session_not_found",
    );
    assert_error(
        "candidate for unknown session",
        api("POST", &u("/api/webrtc/ice-candidate"), Some(json!({"session_id": "wrtc-nope", "candidate": ""}))).await,
        &[404],
        "webrtc_session_not_found",
    );
    assert_error(
        "delete unknown session",
        api("DELETE", &u("/api/webrtc/sessions/wrtc-nope"), None).await,
        &[404],
        "webrtc_session_not_found",
    );
    assert_error(
        "candidates of unknown session",
        api("GET", &u("/api/webrtc/sessions/wrtc-nope/candidates"), None).await,
        &[404],
        "webrtc_session_not_found",
    );
    assert_error(
        "malformed JSON",
        raw("POST", &u("/api/webrtc/answer"), Some("application/json"), b"{\"session_id\":").await,
        &[400],
        "bad_json",
    );

    let a = offer(&server, &rc).await;
    assert_error(
        "answer typed offer",
        api("POST", &u("/api/webrtc/answer"), Some(json!({"session_id": a, "type": "offer", "sdp": "v=0"}))).await,
        &[400],
        "bad_sdp_type",
    );
    assert_error(
        "malformed SDP",
        api("POST", &u("/api/webrtc/answer"), Some(json!({"session_id": a, "type": "answer", "sdp": "garbage"}))).await,
        &[400],
        "bad_sdp",
    );
    assert_error(
        "malformed candidate",
        api(
            "POST",
            &u("/api/webrtc/ice-candidate"),
            Some(json!({"session_id": a, "candidate": "candidate:1 1 udp notanumber 127.0.0.1 9 typ host"})),
        )
        .await,
        &[400],
        "bad_candidate",
    );
    assert_error(
        "truncated candidate",
        api("POST", &u("/api/webrtc/ice-candidate"), Some(json!({"session_id": a, "candidate": "candidate:1 1"})))
            .await,
        &[400],
        "bad_candidate",
    );
    assert_error(
        "candidate naming a host",
        api(
            "POST",
            &u("/api/webrtc/ice-candidate"),
            Some(json!({"session_id": a, "candidate": "candidate:1 1 udp 2122260223 example.com 9 typ host"})),
        )
        .await,
        &[400],
        "bad_candidate",
    );
    let audio_answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n";
    assert_error(
        "an answer without the data-channel section",
        api("POST", &u("/api/webrtc/answer"), Some(json!({"session_id": a, "type": "answer", "sdp": audio_answer})))
            .await,
        &[400],
        "bad_sdp",
    );
    // A trickled candidate before the answer is accepted (queued), as browsers may send it early.
    let (status, v) = api("POST", &u("/api/webrtc/ice-candidate"), Some(json!({"session_id": a, "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}))).await;
    assert_eq!(status, 204, "{v}");

    let b = offer(&server, &rc).await;
    let (status, _) = api("DELETE", &u(&format!("/api/webrtc/sessions/{b}")), None).await;
    assert_eq!(status, 204);
    let answer = json!({"session_id": b, "type": "answer", "sdp": "v=0\r\n"});
    let (status, body) = api("POST", &u("/api/webrtc/answer"), Some(answer)).await;
    assert!(status == 409 || status == 404, "answer for a closed session: {status} {body}");
    println!("answer for a closed session: {status} {}", body["code"]);

    // Sessions that never connect are reaped; the healthy one stays and keeps streaming.
    let n = healthy.client.frames().len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = api("GET", &u("/api/webrtc/sessions"), None).await;
        let ids: Vec<&str> = list.as_array().expect("list").iter().filter_map(|s| s["session_id"].as_str()).collect();
        if ids == [healthy.session_id.as_str()] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not reaped: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    healthy.client.wait_frames(n + 10).await;
    let (_, s) = api("GET", &u(&format!("/api/webrtc/sessions/{}", healthy.session_id)), None).await;
    assert_eq!(s["state"], "connected", "{s}");
}
