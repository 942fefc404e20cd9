//! Playback over HTTP (docs/recording.md, "Playback"): the recorded spans of a train, and a 3 s
//! range across a segment boundary as progressive MP4 and as fMP4, and the cab audio of the same
//! range, read by Debian's ffprobe and ffmpeg. The range plays cleanly, lasts what was asked (one frame of slack), holds every frame
//! the train sent from the keyframe before its start, in order, and byte ranges of it are the
//! same bytes. Then the refusals: bad times and formats, unknown sources, empty ranges, byte
//! ranges outside the file, a viewer whose remote control is not mapped to the train, and a server
//! that does not record.

use std::time::{Duration, SystemTime};

use serde_json::Value;
use testkit::record::{audio_packets, decode_errors, duration, packet_hashes, probe, probe_audio};
use testkit::{api, api_as, get_bytes, remote_control, scratch, set_train, wait_for_train, Server, Sim, SMALL_VIDEO};

const FPS: f64 = 15.0;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_across_segments_plays_every_frame_and_serves_byte_ranges() {
    let dir = scratch("record_playback");
    let rec = dir.join("rec");
    let args = ["--record-dir", rec.to_str().expect("utf8"), "--record-segment-duration", "2s"];
    let server = Server::start(&dir, &args).await;
    let mut sim =
        Sim::start(&dir, &server, &[&["--trains", "1", "--duration", "7s", "--audio", "tone"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-1", true).await;
    tokio::time::timeout(Duration::from_secs(20), sim.child.wait()).await.expect("the simulator ends").expect("wait");
    wait_for_train(&server, "train-1", false).await;
    let all = sim.manifest().entries;
    let manifest: Vec<_> = all.iter().filter(|e| e.camera == 0).cloned().collect();
    let audio_sent: Vec<_> = all.iter().filter(|e| e.codec == "opus").collect();

    // The listing: a camera and the audio, each one span of several segments.
    let (status, list) = api("GET", &server.url("/api/trains/train-1/recordings"), None).await;
    assert_eq!(status, 200, "{list}");
    println!("recordings: {list}");
    let sources = list["sources"].as_array().expect("sources");
    let kinds: Vec<_> = sources.iter().map(|s| (s["source"].as_str(), s["kind"].as_str())).collect();
    assert_eq!(kinds, [(Some("audio-256"), Some("audio")), (Some("camera-0"), Some("video"))], "{list}");
    let sources = &sources[1..];
    let spans = sources[0]["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 1, "2 s segments back to back make one span: {list}");
    assert!(spans[0]["segments"].as_u64() >= Some(3), "{list}");
    let span_ms = spans[0]["duration_ms"].as_u64().expect("duration");
    assert!((5_000..=7_200).contains(&span_ms), "7 s sent, {span_ms} ms recorded");
    let span_start = humantime::parse_rfc3339(spans[0]["start"].as_str().expect("start")).expect("time");

    // 3 s from 1.3 s in: across the segment boundary near 2 s.
    let start = span_start + Duration::from_millis(1300);
    let end = start + Duration::from_secs(3);
    let url = |format: &str| {
        server.url(&format!(
            "/api/trains/train-1/recordings/camera-0?start={}&end={}&format={format}",
            time(start),
            time(end)
        ))
    };
    let bearer = format!("Bearer {}", server.token("admin"));
    let auth = [("authorization", bearer.as_str())];
    let (status, headers, whole) = get_bytes(&url("mp4"), &auth).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&whole));
    assert_eq!(header(&headers, "content-type"), Some("video/mp4"));
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    assert_eq!(header(&headers, "content-length"), Some(whole.len().to_string().as_str()));
    assert_eq!(header(&headers, "railcast-media-start"), Some(time(start).as_str()));
    assert_eq!(&whole[4..8], b"ftyp");
    assert!(whole.len() > 10_000, "{} bytes for 3 s", whole.len());
    let file = dir.join("range.mp4");
    std::fs::write(&file, &whole).expect("write");
    assert_eq!(decode_errors(&file), "", "ffmpeg decodes the range cleanly");
    let p = probe(&file);
    let secs = duration(&file);
    let hashes = packet_hashes(&file, "v");
    println!(
        "range 3.000 s asked: ffprobe {secs:.3} s, {} packets, {} frames decoded, {}×{} {}, {} bytes",
        hashes.len(),
        p.frames,
        p.width,
        p.height,
        p.codec,
        whole.len()
    );
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 320, 240));
    assert!((secs - 3.0).abs() <= 1.0 / FPS + 0.001, "{secs} s for a 3 s range");
    // Every frame from the keyframe at or before the start, in order: at most a GOP (15) before.
    let first = manifest.iter().position(|e| e.sha256 == hashes[0]).expect("the first packet was sent");
    assert!(manifest[first].keyframe, "the range starts at a keyframe");
    let sent: Vec<&str> = manifest[first..].iter().take(hashes.len()).map(|e| e.sha256.as_str()).collect();
    assert_eq!(hashes.iter().map(String::as_str).collect::<Vec<_>>(), sent, "the frames, in order");
    let extra = hashes.len() as f64 - 3.0 * FPS;
    assert!((-1.0..=FPS + 1.0).contains(&extra), "{} packets for 45 frames after a keyframe", hashes.len());

    // Byte ranges are the same bytes.
    let cut = whole.len() / 3;
    let (s1, h1, a) = get_bytes(&url("mp4"), &[auth[0], ("range", &format!("bytes=0-{}", cut - 1))]).await;
    let (s2, h2, b) = get_bytes(&url("mp4"), &[auth[0], ("range", &format!("bytes={cut}-"))]).await;
    assert_eq!((s1, s2), (206, 206));
    assert_eq!(header(&h1, "content-range"), Some(format!("bytes 0-{}/{}", cut - 1, whole.len()).as_str()));
    assert_eq!(header(&h2, "content-range"), Some(format!("bytes {cut}-{}/{}", whole.len() - 1, whole.len()).as_str()));
    assert_eq!([a, b].concat(), whole);
    let (s, h, _) = get_bytes(&url("mp4"), &[auth[0], ("range", &format!("bytes={}-", whole.len()))]).await;
    assert_eq!((s, header(&h, "content-range")), (416, Some(format!("bytes */{}", whole.len()).as_str())));

    // fMP4: the same samples, decodes cleanly.
    let (status, _, frag) = get_bytes(&url("fmp4"), &auth).await;
    assert_eq!(status, 200);
    let ffile = dir.join("range-f.mp4");
    std::fs::write(&ffile, &frag).expect("write");
    assert_eq!(decode_errors(&ffile), "");
    assert_eq!(packet_hashes(&ffile, "v"), hashes, "fMP4 and MP4 hold the same frames");

    // The audio of the same range: Opus, as long, every packet the train's in order.
    let audio_url = url("mp4").replace("camera-0", "audio-256");
    let (status, headers, audio) = get_bytes(&audio_url, &auth).await;
    assert_eq!((status, header(&headers, "content-type")), (200, Some("audio/mp4")));
    let afile = dir.join("range-audio.mp4");
    std::fs::write(&afile, &audio).expect("write");
    assert_eq!(decode_errors(&afile), "");
    let (a, asecs) = (probe_audio(&afile), duration(&afile));
    let got = audio_packets(&afile);
    println!("audio range: ffprobe {asecs:.3} s, {} Opus packets, {a:?}", got.len());
    assert_eq!(a.codec, "opus");
    assert!((asecs - 3.0).abs() <= 0.021, "{asecs} s of audio for a 3 s range");
    let first = audio_sent.iter().position(|e| e.sha256 == got[0].0).expect("the first audio packet was sent");
    let sent: Vec<&str> = audio_sent[first..].iter().take(got.len()).map(|e| e.sha256.as_str()).collect();
    assert_eq!(got.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(), sent, "the audio packets, in order");
    assert!((149..=151).contains(&got.len()), "{} packets of 20 ms for 3 s", got.len());

    // Refusals.
    let at = |from: SystemTime, len_ms: i64, extra: &str| {
        let to = if len_ms >= 0 {
            from + Duration::from_millis(len_ms as u64)
        } else {
            from - Duration::from_millis(len_ms.unsigned_abs())
        };
        server.url(&format!("/api/trains/train-1/recordings/camera-0?start={}&end={}{extra}", time(from), time(to)))
    };
    let code = |v: &Value| v["code"].as_str().unwrap_or_default().to_owned();
    for (url, want, what) in [
        (at(start, -1000, ""), (400, "bad_range"), "end before start"),
        (at(start, 11 * 60_000, ""), (400, "bad_range"), "11 minutes"),
        (at(start, 1000, "&format=avi"), (400, "bad_format"), "an unknown format"),
        (at(start - Duration::from_secs(3600), 1000, ""), (404, "not_found"), "an hour before"),
        (
            server.url("/api/trains/train-1/recordings/camera-0?start=yesterday&end=today"),
            (400, "bad_time"),
            "bad times",
        ),
        (server.url("/api/trains/train-1/recordings/camera-0"), (400, "bad_query"), "no times"),
        (
            server.url(&format!("/api/trains/train-1/recordings/camera-9?start={}&end={}", time(start), time(end))),
            (404, "not_found"),
            "an unrecorded camera",
        ),
        (
            server.url(&format!("/api/trains/train-1/recordings/..?start={}&end={}", time(start), time(end))),
            (404, "not_found"),
            "not a source",
        ),
    ] {
        let (status, v) = api("GET", &url, None).await;
        assert_eq!((status, code(&v).as_str()), want, "{what}: {v}");
    }
    let (status, v) = api("GET", &server.url("/api/trains/nobody/recordings"), None).await;
    assert_eq!((status, code(&v).as_str()), (404, "train_not_found"), "{v}");

    // A viewer may play back only a train one of its remote controls is mapped to; its token may
    // be the access_token parameter (a <video src>).
    let viewer = server.token("viewer");
    let (status, v) = api_as(Some(viewer), "GET", &server.url("/api/trains/train-1/recordings"), None).await;
    assert_eq!((status, code(&v).as_str()), (403, "forbidden"), "{v}");
    let (status, _, _) = get_bytes(&format!("{}&access_token={viewer}", url("mp4")), &[]).await;
    assert_eq!(status, 403);
    let rc = remote_control(&server, None).await;
    set_train(&server, &rc, "train-1").await;
    let (status, _, mine) = get_bytes(&format!("{}&access_token={viewer}", url("mp4")), &[]).await;
    assert_eq!((status, mine == whole), (200, true), "the viewer gets the same bytes");
    let (status, _, _) = get_bytes(&url("mp4"), &[]).await;
    assert_eq!(status, 401, "no token");

    // A server that does not record says so, for a train it knows.
    let plain = Server::start(&scratch("record_playback_off"), &[]).await;
    let (status, v) = api("GET", &plain.url("/api/trains/train-1/recordings"), None).await;
    assert_eq!((status, code(&v).as_str()), (404, "train_not_found"), "{v}");
    let rc = remote_control(&plain, None).await;
    set_train(&plain, &rc, "train-1").await;
    let (status, v) = api("GET", &plain.url("/api/trains/train-1/recordings"), None).await;
    assert_eq!((status, code(&v).as_str()), (409, "recording_off"), "{v}");
}
