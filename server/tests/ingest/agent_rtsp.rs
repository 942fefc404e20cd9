//! The train agent pulling two IP cameras from a real RTSP server (GStreamer's, serving live
//! x264 test patterns at 15 fps): camera 0 over RTP/TCP (interleaved), camera 1 over RTP/UDP. A
//! WebSocket viewer gets both cameras at the source's rate, each starting at a keyframe, and what
//! it gets decodes in ffmpeg without an error. Then the RTSP server is killed (no TEARDOWN) and
//! started again on the same port: the agent reconnects by itself and the viewer, which did
//! nothing, gets both cameras again, decodable from the first frame after the outage. Prints the
//! rate, relay latency, the agent's CPU per camera and the time to recover.

use std::time::{Duration, Instant};

use testkit::agent::{ffmpeg_decode, server_table, Agent, RtspServer};
use testkit::ws::{Client, Received};
use testkit::{pct, remote_control, scratch, Server};

const FPS: f64 = 15.0;

fn of_camera(frames: &[Received], camera: u16) -> Vec<&Received> {
    frames.iter().filter(|f| f.camera == camera).collect()
}

/// Frames per second over the run, and whether the frames decode.
fn check(frames: &[&Received], what: &str) -> f64 {
    assert!(frames.len() >= 20, "{what}: {} frames", frames.len());
    assert!(frames[0].keyframe, "{what}: the first frame is a keyframe");
    let stream: Vec<u8> = frames.iter().flat_map(|f| f.data.as_ref().expect("kept").to_vec()).collect();
    let (decoded, errors) = ffmpeg_decode(&stream);
    assert!(errors.is_empty(), "{what}: ffmpeg says {errors}");
    assert_eq!(decoded, frames.len(), "{what}: every frame decodes to a picture");
    let span = (frames[frames.len() - 1].capture_us - frames[0].capture_us) as f64 / 1e6;
    (frames.len() - 1) as f64 / span
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rtsp_cameras_stream_and_recover_after_the_server_restarts() {
    let dir = scratch("agent_rtsp");
    let server = Server::start(&dir, &[]).await;
    let rtsp = RtspServer::start(&dir, 2, None).await;
    let config = format!(
        "train_id = \"train-1\"\n{}\n\
         [[camera]]\nid = 0\nname = \"front\"\nsource = \"rtsp\"\nurl = \"{}\"\ntransport = \"tcp\"\n\
         [[camera]]\nid = 1\nname = \"rear\"\nsource = \"rtsp\"\nurl = \"{}\"\ntransport = \"udp\"\n",
        server_table(&server, "train-1"),
        rtsp.url(0),
        rtsp.url(1)
    );
    let agent = Agent::start(&dir, "rtsp", &config, std::process::Stdio::null());
    testkit::wait_for_train(&server, "train-1", true).await;
    let (_, train) = testkit::api("GET", &server.url("/api/trains/train-1"), None).await;
    let sizes: Vec<(u64, u64)> = train["cameras"]
        .as_array()
        .expect("cameras")
        .iter()
        .map(|c| (c["width"].as_u64().unwrap_or(0), c["height"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(sizes, [(320, 240), (320, 240)], "the hello announces the SPS's size: {train}");
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.keep_data();
    let pid = agent.child.id().expect("agent pid");
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let cpu = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let before = client.frames();
    let mut lat: Vec<u64> = before.iter().map(|f| f.latency_us).collect();
    lat.sort_unstable();
    let rates: Vec<f64> =
        [(0, "front (TCP)"), (1, "rear (UDP)")].iter().map(|(c, what)| check(&of_camera(&before, *c), what)).collect();
    println!(
        "agent rtsp: {:.1} and {:.1} frames/s (source {FPS}), relay latency p50 {} µs p99 {} µs; agent CPU {cpu:.1} % \
         for 2 cameras ({:.1} % per camera)",
        rates[0],
        rates[1],
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        cpu / 2.0
    );
    for r in &rates {
        assert!((r - FPS).abs() < 2.0, "{rates:?} frames/s from a {FPS} fps source");
    }

    // The cameras vanish (SIGKILL, no TEARDOWN) and come back 1.5 s later.
    let port = rtsp.kill().await;
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let n = client.frames().len();
    let _rtsp = RtspServer::start(&dir, 2, Some(port)).await;
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(20);
    let recovered = loop {
        let after: Vec<Received> = client.frames()[n..].to_vec();
        if (0..2).all(|c| of_camera(&after, c).len() >= 20) {
            break after;
        }
        assert!(Instant::now() < deadline, "no video 20 s after the RTSP server came back: {}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let firsts: Vec<u64> = (0..2)
        .map(|c| {
            of_camera(&recovered, c)[0]
                .capture_us
                .saturating_sub(testkit::now_us() - restarted.elapsed().as_micros() as u64)
        })
        .collect();
    for c in 0..2 {
        check(&of_camera(&recovered, c), &format!("camera {c} after the restart"));
    }
    let log = agent.log_text();
    assert!(log.contains("reconnecting in"), "the agent says it reconnects: {log}");
    println!(
        "agent rtsp: server down {} ms; first frames after its restart at +{} ms and +{} ms (agent backoff 1 s doubling)",
        restarted.duration_since(killed).as_millis(),
        firsts[0] / 1000,
        firsts[1] / 1000
    );
}
