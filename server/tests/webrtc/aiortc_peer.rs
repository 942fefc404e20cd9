//! A foreign WebRTC stack, aiortc 1.16 (`tests/foreign/aiortc_peer.py`, the test venv's Python),
//! as a remote control through the REST flow: the server offers, aiortc answers. Its session is
//! clean end to end:
//!
//! - the frames it reassembles from `video` match the simulator's manifest (SHA-256, capture
//!   time), the first one a keyframe; a ping and a `set_speed` command on `command` are answered;
//! - with no STUN/TURN server, the offer says `a=end-of-candidates`, since gathering is over, and
//!   the late-candidates list repeats none of the offer's candidates and says `complete`;
//! - the offer has one line per candidate, for component 1 (no component-2 line: there is no RTCP
//!   on a data-channel-only m-line, and webrtc-rs multiplexes it anyway);
//! - aiortc's normal close (its SCTP sends an ABORT) ends the server's session, and the server
//!   logs no WARN or ERROR line for the whole session: not the ABORT, not the DTLS extension
//!   aiortc offers that webrtc-rs does not implement.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::ws::{verify, Received};
use testkit::{foreign_script, python, remote_control, scratch, Server, Sim, SMALL_VIDEO};

/// Run the aiortc peer and return its report, failing the test with it if the script failed.
pub(crate) async fn aiortc(server: &Server, rc: &str) -> Value {
    let run = tokio::process::Command::new(python())
        .arg(foreign_script("aiortc_peer.py"))
        .args(["--http", &server.http, "--token", server.token("operator"), "--remote-control", rc])
        .args(["--frames", "20"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("aiortc_peer.py ends within 60 s (it gives up after 30)")
        .expect("run the venv's python");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report: Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report on the last line.\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    assert!(out.status.success() && report["ok"] == true, "aiortc_peer.py failed: {report}\nstderr:\n{stderr}");
    report
}

/// The server log's WARN and ERROR lines once it was up (start-up warnings, such as the missing
/// web console of a test build, are not the session's).
fn warnings(log: &str) -> Vec<String> {
    let plain = strip_ansi(log);
    let running = plain.find("railcast server running").expect("the server logged that it runs");
    plain[running..]
        .lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(|level| level == "WARN" || level == "ERROR"))
        .map(String::from)
        .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_session_streams_commands_and_closes_cleanly() {
    let dir = scratch("aiortc_peer");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--cameras", "2"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;

    let started = Instant::now();
    let report = aiortc(&server, &rc).await;
    println!(
        "aiortc: setup {} ms, {} frames in {} messages ({} packets), whole run {:.2} s",
        report["setup_ms"],
        report["frames"].as_array().map_or(0, Vec::len),
        report["messages"],
        report["packets"],
        started.elapsed().as_secs_f64()
    );

    // Video: every frame reassembled from the data-channel messages is one the train sent.
    assert_eq!(report["welcome"]["transport"], "webrtc", "{}", report["welcome"]);
    let events: Vec<&str> = report["events"].as_array().expect("events").iter().filter_map(Value::as_str).collect();
    assert_eq!(events.first(), Some(&"welcome"), "{events:?}");
    let mut frames: Vec<Received> = report["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| Received {
            train: Some("train-1".into()),
            camera: f["camera"].as_u64().expect("camera") as u16,
            seq: f["seq"].as_u64().expect("seq") as u32,
            keyframe: f["keyframe"].as_bool().expect("keyframe"),
            sha256: f["sha256"].as_str().expect("sha256").to_owned(),
            capture_us: f["capture_us"].as_u64().expect("capture_us"),
            latency_us: 0,
            data: None,
            nal_types: Vec::new(),
        })
        .collect();
    // `video` is unordered: the script reports frames as they complete.
    frames.sort_by_key(|f| (f.camera, f.seq));
    let checked = verify(&frames, &sim.manifest());
    assert!(checked >= 20, "{checked} frames");
    for cam in [0u16, 1] {
        let first = frames.iter().find(|f| f.camera == cam).unwrap_or_else(|| panic!("no frame of camera {cam}"));
        assert!(first.keyframe, "camera {cam}: the first frame {} is not a keyframe", first.seq);
    }

    // Commands.
    let ack = &report["ack"];
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");

    // Candidates: gathering was over at the offer, so the offer ends the candidates and the late
    // list has nothing the offer did not.
    let offered: Vec<&str> =
        report["offer_candidates"].as_array().expect("offer_candidates").iter().filter_map(Value::as_str).collect();
    assert!(!offered.is_empty(), "the offer carries the host candidates");
    assert_eq!(report["offer_end_of_candidates"], true, "no STUN/TURN: gathering is over when the offer is made");
    assert_eq!(report["late_candidates"], serde_json::json!([]), "the late list repeats the offer's candidates");
    assert_eq!(report["candidates_complete"], true);
    // One component.
    for c in &offered {
        assert_eq!(c.split_whitespace().nth(1), Some("1"), "a candidate for a component other than 1: {c}");
    }

    // aiortc closed; the server ends the session, and its log stayed quiet.
    testkit::wait_no_webrtc_sessions(&server).await;
    let log = std::fs::read_to_string(&server.log).expect("server log");
    let noise = warnings(&log);
    assert!(noise.is_empty(), "a normal aiortc session logged:\n{}", noise.join("\n"));
}
