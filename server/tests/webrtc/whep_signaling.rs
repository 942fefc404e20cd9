//! WHEP resource rules: PATCH needs `If-Match` (428 without, 412 with a stale ETag, 204 with the
//! session's or `*`), a new ufrag without a pwd gets 400, a second DELETE gets 404; OPTIONS
//! announces `Accept-Post: application/sdp` and the configured STUN/TURN servers as `Link`
//! headers (to a caller with a token), and CORS exposes Location, ETag and Link.

use testkit::whep::{http, Whep};
use testkit::{remote_control, scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_needs_the_etag_and_delete_ends_the_session() {
    let dir = scratch("whep_signaling");
    let server = Server::start(
        &dir,
        &[
            "--webrtc-ice-servers",
            "stun:127.0.0.1:3478,turn:127.0.0.1:3478?transport=udp",
            "--webrtc-turn-username",
            "railcast",
            "--webrtc-turn-credential",
            "s3cret",
        ],
    )
    .await;
    let rc = remote_control(&server, None).await;
    let token = server.tokens.get("admin").map(String::as_str);
    let whep = Whep::connect(&server, &rc, token, 1, false).await;
    assert_eq!(whep.links.len(), 2, "{:?}", whep.links);
    assert_eq!(whep.links[0], "<stun:127.0.0.1:3478>; rel=\"ice-server\"");
    assert!(whep.links[1].contains("username=\"railcast\"; credential=\"s3cret\""), "{:?}", whep.links);

    let frag = "a=ice-ufrag:{ufrag}\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50123 typ host\r\n";
    let ufrag = whep.pc.local_description().await.expect("local").sdp;
    let ufrag = ufrag.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).expect("ufrag").trim().to_owned();
    let frag = frag.replace("{ufrag}", &ufrag);
    let ct = ("content-type", "application/trickle-ice-sdpfrag");

    let (status, _, body) = http("PATCH", &whep.url, token, &[ct], &frag).await;
    assert_eq!(status, 428, "no If-Match: {body}");
    assert!(body.contains("\"code\":\"precondition_required\""), "{body}");
    let (status, _, body) = http("PATCH", &whep.url, token, &[ct, ("if-match", "\"0000\"")], &frag).await;
    assert_eq!(status, 412, "a stale ETag: {body}");
    let (status, _, body) = http("PATCH", &whep.url, token, &[ct, ("if-match", &whep.etag)], &frag).await;
    assert_eq!(status, 204, "the session's ETag: {body}");
    let end = "a=end-of-candidates\r\n";
    let (status, _, body) = http("PATCH", &whep.url, token, &[ct, ("if-match", "*")], end).await;
    assert_eq!(status, 204, "If-Match *: {body}");
    let (status, _, body) =
        http("PATCH", &whep.url, token, &[("content-type", "text/plain"), ("if-match", "*")], end).await;
    assert_eq!(status, 415, "{body}");
    let half_restart = "a=ice-ufrag:newu\r\n";
    let (status, _, body) = http("PATCH", &whep.url, token, &[ct, ("if-match", "*")], half_restart).await;
    assert_eq!(status, 400, "a new ufrag without its pwd: {body}");

    // OPTIONS: what may be posted, the ICE servers for a caller with a token, CORS.
    let rc_url = server.url(&format!("/api/whep/remote-controls/{rc}"));
    let preflight = [("origin", "http://player.example"), ("access-control-request-method", "POST")];
    let (status, headers, _) = http("OPTIONS", &rc_url, None, &preflight, "").await;
    assert_eq!(status, 204);
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(h("accept-post"), "application/sdp");
    assert!(headers.get("link").is_none(), "no ICE servers (TURN credentials) without a token");
    assert_eq!(h("access-control-allow-origin"), "http://player.example");
    for exposed in ["Location", "ETag", "Link"] {
        assert!(h("access-control-expose-headers").contains(exposed), "{}", h("access-control-expose-headers"));
    }
    assert!(h("access-control-allow-headers").contains("If-Match"));
    let (status, headers, _) = http("OPTIONS", &rc_url, token, &[], "").await;
    assert_eq!(status, 204);
    assert_eq!(headers.get_all("link").iter().count(), 2);

    let (status, _, body) = http("DELETE", &whep.url, token, &[], "").await;
    assert_eq!(status, 204, "{body}");
    let (status, _, body) = http("DELETE", &whep.url, token, &[], "").await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = http("PATCH", &whep.url, token, &[ct, ("if-match", "*")], end).await;
    assert_eq!(status, 404, "{body}");
    let _ = whep.pc.close().await;
}
