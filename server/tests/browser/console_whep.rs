//! The operator console in Chromium in its *Media tracks (WHEP)* mode: the console offers one
//! receive-only video transceiver per camera and the `command` data channel, the server answers
//! with an H.264 RTP track per camera, and each track plays in a plain `<video>` (the browser's
//! own jitter buffer and decoder, no WebCodecs): two cameras at 640×480, 30 fps, at least 30
//! frames presented on each (`requestVideoFrameCallback`), pictures that are not blank and
//! change, `getStats()` frames decoded per track, glass-to-glass latency from the frames' RTP
//! timestamps (capture times), a command acked over the same peer connection, and the cab
//! audio's Opus track (simulator `--audio tone`): muted by default in the audio panel's
//! `<audio>`, 48,000 samples received, then unmuted by a click while samples keep coming.

use std::time::Duration;

use testkit::console::{artifacts, report, web_root, Console, VGA_30};
use testkit::{scratch, Server, Sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_plays_media_tracks_over_whep() {
    let _serial = testkit::serial().await;
    let dir = scratch("console_whep");
    let root = web_root();
    let server = Server::start(&dir, &["--web-root", &root]).await;
    let _sim = Sim::start(&dir, &server, &[VGA_30, &["--audio", "tone"]].concat());
    let port = server.http.rsplit(':').next().expect("port");
    let console = Console::spawn(
        &format!("http://localhost:{port}"),
        "whep",
        &artifacts("console_whep"),
        server.token("admin"),
        &[("MEASURE_MS", "5000"), ("EXPECT_AUDIO", "1")],
    );
    let r = console.finish(Duration::from_secs(120)).await;
    report("console, media tracks over WHEP (640×480, 30 fps, 2 cameras)", &r);
    assert_eq!(r["transport"], "whep", "{r}");
    assert_eq!(r["ack_transport"], "whep", "the command went over the WHEP session: {r}");
    assert_eq!(r["cameras"].as_array().map(Vec::len), Some(2), "both cameras played: {r}");
    assert!(r["latency_samples"].as_u64().unwrap_or(0) > 0, "glass-to-glass measured from RTP timestamps: {r}");
    assert_eq!(r["audio"]["codec"], "audio/opus", "the cab audio's track: {r}");
    assert!(r["audio"]["samples_received"].as_u64().unwrap_or(0) >= 72_000, "{r}");
    for (cam, c) in r["per_camera"].as_object().expect("per_camera") {
        assert!(c["frames_decoded"].as_u64().unwrap_or(0) >= 30, "camera {cam}: {c}");
        assert_eq!(c["codec"], "video/H264", "camera {cam}: {c}");
    }
}
