//! A bad camera never holds up a good one, nor the commands. Camera 0 is ffmpeg on the agent's
//! standard input, live; camera 1 is a named pipe that the test writes: 64 KiB of garbage, then a
//! 320×240 clip, then a 160×120 clip (the picture size changes mid-stream), then nothing for 4.5 s
//! with the pipe held open (a stall), then the writer goes away and a new one comes. Camera 0
//! streams at its rate all along; a command is acked during the stall; camera 1's units are
//! ffmpeg's, byte for byte, before and after the size change and after the new writer; the agent
//! logs the garbage, the size change and the writer's departure, and the server's train view shows
//! camera 1 `stalled`, then `waiting` for a writer, while camera 0 is `streaming`.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::agent::{ffmpeg_clip, ffmpeg_live, ffmpeg_unit_hashes, server_table, Agent};
use testkit::ws::{Client, Received};
use testkit::{remote_control, scratch, Server};

/// Poll `GET /api/trains/train-1` until source `id` matches `want`; that source.
async fn source_state(server: &Server, id: u64, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (_, train) = testkit::api("GET", &server.url("/api/trains/train-1"), None).await;
        let found = train["sources"].as_array().into_iter().flatten().find(|s| s["id"] == id).cloned();
        if let Some(s) = found.filter(|s| want(s)) {
            return s;
        }
        assert!(Instant::now() < deadline, "source {id} never as wanted: {}", train["sources"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hashes_of(frames: &[Received], camera: u16) -> Vec<String> {
    frames.iter().filter(|f| f.camera == camera).map(|f| f.sha256.clone()).collect()
}

/// Write `parts` to the named pipe `path` (opening blocks until the agent reads it), paced at
/// `fps` units a second for clips, then hold it open for `hold`.
fn feed(path: std::path::PathBuf, parts: Vec<Vec<u8>>, hold: Duration) {
    let mut pipe = std::fs::OpenOptions::new().write(true).open(&path).expect("open the fifo");
    for part in parts {
        for chunk in part.chunks(4096) {
            pipe.write_all(chunk).expect("write");
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    pipe.flush().expect("flush");
    std::thread::sleep(hold);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_camera_never_holds_up_the_others() {
    let dir = scratch("agent_robustness");
    let server = Server::start(&dir, &[]).await;
    let (big, small) = (dir.join("big.h264"), dir.join("small.h264"));
    ffmpeg_clip(&big, "320x240", 15, 2, "testsrc");
    ffmpeg_clip(&small, "160x120", 15, 2, "smptebars");
    let fifo = dir.join("cam1.h264");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let config = format!(
        "train_id = \"train-1\"\n{}\n\
         [[camera]]\nid = 0\nsource = \"pipe\"\npath = \"-\"\n\
         [[camera]]\nid = 1\nsource = \"pipe\"\npath = \"{}\"\nwidth = 320\nheight = 240\nfps = 15\n",
        server_table(&server, "train-1"),
        fifo.display()
    );
    let (_ffmpeg, stdout) = ffmpeg_live("320x240", 15, 30, &dir.join("cam0.h264"));
    let agent = Agent::start(&dir, "robustness", &config, stdout);
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(5).await;

    // Garbage, two clips of two sizes, then a stall with the pipe open.
    let garbage: Vec<u8> = (0..65_536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 | 0x80).collect();
    let parts = vec![garbage, std::fs::read(&big).expect("big"), std::fs::read(&small).expect("small")];
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || feed(fifo, parts, Duration::from_millis(4500))
    });
    agent.wait_log("picture size changed", Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // During the stall: a command is answered at once.
    let asked = Instant::now();
    client
        .send_text(json!({"type": "command", "request_id": "kf", "command": {"type": "request_keyframe"}}).to_string())
        .await;
    let ack = client.wait_event("ack", |e| e["request_id"] == "kf").await;
    let ack_ms = asked.elapsed().as_millis();
    assert_eq!(ack["type"], "command_ack", "{ack}");
    // The train view says what the agent sees: camera 1 stalled, camera 0 streaming.
    let stalled = source_state(&server, 1, |s| s["state"] == "stalled").await;
    let streaming = source_state(&server, 0, |s| s["state"] == "streaming").await;
    assert!(streaming["fps"].as_f64().is_some_and(|f| f > 10.0), "{streaming}");
    writer.join().expect("writer");
    agent.wait_log("went away", Duration::from_secs(5)).await;
    let waiting = source_state(&server, 1, |s| s["state"] == "waiting").await;
    assert!(waiting["detail"].as_str().is_some_and(|d| d.contains("went away")), "{waiting}");
    println!("agent robustness: train view says camera 1 {stalled} then {waiting}; camera 0 {streaming}");

    // A new writer: the agent reads the pipe again.
    let again = std::thread::spawn({
        let (fifo, big) = (fifo.clone(), std::fs::read(&big).expect("big"));
        move || feed(fifo, vec![big], Duration::from_millis(300))
    });
    again.join().expect("second writer");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let frames = client.frames();
    let (big_units, small_units) = (ffmpeg_unit_hashes(&big), ffmpeg_unit_hashes(&small));
    let cam1 = hashes_of(&frames, 1);
    let from_big = cam1.iter().filter(|h| big_units.contains(h)).count();
    let from_small = cam1.iter().filter(|h| small_units.contains(h)).count();
    assert_eq!(from_big + from_small, cam1.len(), "every unit of camera 1 is one of ffmpeg's");
    assert_eq!(from_small, small_units.len(), "the whole 160x120 clip arrived after the size change");
    assert_eq!(
        from_big,
        2 * big_units.len(),
        "the 320x240 clip arrived whole, twice (before and after the new writer)"
    );
    // Camera 0 never stopped: no gap over 500 ms in its capture times.
    let cam0: Vec<u64> = frames.iter().filter(|f| f.camera == 0).map(|f| f.capture_us).collect();
    let gap = cam0.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(gap < 500_000, "camera 0 paused {gap} µs while camera 1 misbehaved");
    let log = agent.log_text();
    assert!(log.contains("no H.264 access unit dropped"), "the garbage is logged: {log}");
    println!(
        "agent robustness: camera 1 sent {} units ({} of 320x240 twice, {} of 160x120) around 64 KiB of garbage, a \
         size change, a 3 s stall and a new writer; camera 0 meanwhile {} units, largest gap {} ms; a command during \
         the stall acked in {ack_ms} ms",
        cam1.len(),
        big_units.len(),
        small_units.len(),
        cam0.len(),
        gap / 1000
    );
}
