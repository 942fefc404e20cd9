//! An ICE restart over WHEP: the player restarts ICE, PATCHes its new credentials and candidates
//! with the session's ETag, and gets 200 with the server's new credentials and candidates and a
//! new ETag; with them as its new answer the same connection carries on, frames verified, and
//! the old ETag is refused from then on.

use std::time::Duration;

use testkit::whep::{http, verify, Whep};
use testkit::{remote_control, scratch, Server, Sim, SMALL_VIDEO};
use webrtc::peer_connection::RTCSessionDescription;

fn attribute<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| l.trim_end().strip_prefix(name))
}

/// `answer` with the ICE credentials and candidates of `fragment`, one session version up.
fn restarted_answer(answer: &str, fragment: &str) -> String {
    let (ufrag, pwd) =
        (attribute(fragment, "a=ice-ufrag:").expect("ufrag"), attribute(fragment, "a=ice-pwd:").expect("pwd"));
    let candidates: Vec<&str> = fragment.lines().map(str::trim_end).filter(|l| l.starts_with("a=candidate:")).collect();
    let mut out = Vec::new();
    let mut sections = 0;
    for line in answer.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            if sections == 1 {
                out.extend(candidates.iter().map(|c| c.to_string()));
            }
            sections += 1;
        }
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        out.push(if line.starts_with("a=ice-ufrag:") {
            format!("a=ice-ufrag:{ufrag}")
        } else if line.starts_with("a=ice-pwd:") {
            format!("a=ice-pwd:{pwd}")
        } else if let Some(o) = line.strip_prefix("o=") {
            let mut f: Vec<String> = o.split(' ').map(String::from).collect();
            f[2] = (f[2].parse::<u64>().expect("version") + 1).to_string();
            format!("o={}", f.join(" "))
        } else {
            line.to_owned()
        });
    }
    if sections == 1 {
        out.extend(candidates.iter().map(|c| c.to_string()));
    }
    out.join("\r\n") + "\r\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_gets_new_credentials_and_a_new_etag() {
    let dir = scratch("whep_ice_restart");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let token = Some(server.token("admin"));
    let whep = Whep::connect(&server, &rc, token, 1, false).await;
    whep.wait_units(1, 10, Duration::from_secs(20)).await;

    let states_before = whep.ice_states.lock().expect("lock").len();
    whep.pc.restart_ice().await.expect("restart");
    let offer = whep.pc.create_offer(None).await.expect("offer");
    whep.pc.set_local_description(offer).await.expect("set offer");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let local = whep.pc.local_description().await.expect("local").sdp;
    let (ufrag, pwd) =
        (attribute(&local, "a=ice-ufrag:").expect("ufrag"), attribute(&local, "a=ice-pwd:").expect("pwd"));
    assert_ne!(Some(ufrag), attribute(&whep.pc.remote_description().await.expect("remote").sdp, "a=ice-ufrag:"));
    let mut frag = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=video 9 UDP/TLS/RTP/SAVPF {}\r\na=mid:0\r\n",
        testkit::whep::CLIENT_H264_PT
    );
    for c in local.lines().map(str::trim_end).filter(|l| l.starts_with("a=candidate:")) {
        frag.push_str(c);
        frag.push_str("\r\n");
    }
    frag.push_str("a=end-of-candidates\r\n");
    let ct = ("content-type", "application/trickle-ice-sdpfrag");
    let (status, headers, answer) = http("PATCH", &whep.url, token, &[ct, ("if-match", &whep.etag)], &frag).await;
    assert_eq!(status, 200, "ICE restart: {answer}");
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(h("content-type"), "application/trickle-ice-sdpfrag");
    let etag = h("etag");
    assert!(!etag.is_empty() && etag != whep.etag, "a new ETag: {etag} (was {})", whep.etag);
    let server_ufrag = attribute(&answer, "a=ice-ufrag:").expect("the server's new ufrag");
    assert_ne!(Some(server_ufrag), attribute(&whep.answer, "a=ice-ufrag:"), "new credentials: {answer}");
    assert!(answer.contains("a=candidate:"), "{answer}");

    let before = whep.units(0).len();
    whep.pc
        .set_remote_description(RTCSessionDescription::answer(restarted_answer(&whep.answer, &answer)).expect("answer"))
        .await
        .expect("apply the restarted answer");
    whep.wait_units(1, before + 45, Duration::from_secs(20)).await;
    // ICE really restarted: checks with the new credentials on both sides, connected again.
    let states: Vec<String> =
        whep.ice_states.lock().expect("lock")[states_before..].iter().map(ToString::to_string).collect();
    println!("client ICE states after the restart: {states:?} (all: {:?})", whep.ice_states.lock().expect("lock"));
    assert!(states.iter().any(|s| s == "checking"), "no new checks after the restart: {states:?}");
    assert_eq!(states.last().map(String::as_str), Some("connected"), "{states:?}");
    let (_, peers) = testkit::api("GET", &server.url("/api/webrtc/sessions"), None).await;
    assert_eq!(peers[0]["state"], "connected", "{peers}");
    assert_eq!(peers[0]["ice_state"], "connected", "{peers}");
    let v = verify(&whep.units(0), &sim.manifest(), "train-1", 0);
    println!("{} frames verified, {} after the restart; new ETag {etag}", v.frames, whep.units(0).len() - before);
    assert_eq!(v.unknown, 0);

    let end = "a=end-of-candidates\r\n";
    let (status, _, body) = http("PATCH", &whep.url, token, &[ct, ("if-match", &whep.etag)], end).await;
    assert_eq!(status, 412, "the old ETag after the restart: {body}");
    let (status, _, body) = http("PATCH", &whep.url, token, &[ct, ("if-match", &etag)], end).await;
    assert_eq!(status, 204, "the new ETag: {body}");
    let _ = whep.pc.close().await;
}
