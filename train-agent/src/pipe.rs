//! A source behind a pipe — standard input, a named pipe or a file — read on a thread of its own
//! (a blocking read stalls nobody else). A camera's is an H.264 Annex B byte stream, as `ffmpeg …
//! -c:v libx264 -f h264 -` or a GStreamer pipeline ending in `h264parse !
//! video/x-h264,stream-format=byte-stream ! fdsink` writes it, cut into access units
//! ([`AccessUnitSplitter`]) stamped with the time their first byte arrived. An audio source's is
//! Ogg Opus (`ffmpeg … -c:a libopus -f ogg -`), cut into Opus packets ([`OggOpusReader`]).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use crate::ogg::{Item, OggOpusReader};
use railcast_protocol::h264::AccessUnitSplitter;
use railcast_uplink::now_us;

use crate::camera::{Camera, Output};

/// A unit larger than this is garbage (no start code in 8 MiB), dropped.
const MAX_UNIT: usize = 8 << 20;

/// Read `path` (`-`: standard input) until it ends for good. A named pipe whose writer went
/// away is opened again (the next writer starts at a keyframe, as the camera waits for one).
pub fn spawn(path: String, camera: Arc<Camera>, out: Output) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("pipe-{}", camera.id))
        .spawn(move || run(&path, &camera, &out, "H.264", read_stream))
}

/// [`spawn`] for an audio source: Ogg Opus.
pub fn spawn_audio(path: String, source: Arc<Camera>, out: Output) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("audio-{}", source.id))
        .spawn(move || run(&path, &source, &out, "Ogg Opus", read_ogg_opus))
}

type ReadStream = fn(Box<dyn Read>, &Camera, &Output);

fn run(path: &str, camera: &Camera, out: &Output, what: &str, read: ReadStream) {
    let fifo = is_fifo(path);
    camera.set_state("waiting", Some(format!("opening {}", describe(path))));
    loop {
        let input: Box<dyn Read> = if path == "-" {
            Box::new(std::io::stdin())
        } else {
            match std::fs::File::open(path) {
                Ok(f) => Box::new(f),
                Err(e) => {
                    tracing::error!(
                        camera = camera.id,
                        "{}: cannot open {path}: {e}; trying again in 1 s",
                        camera.label
                    );
                    camera.set_state("waiting", Some(format!("cannot open {path}: {e}")));
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        };
        tracing::info!(camera = camera.id, "{}: reading {what} from {}", camera.label, describe(path));
        camera.set_state("streaming", None);
        read(input, camera, out);
        camera.restart_at_keyframe();
        if !fifo {
            tracing::warn!(camera = camera.id, "{}: {} ended; this camera sends no more", camera.label, describe(path));
            camera.set_state("ended", Some(format!("{} ended", describe(path))));
            return;
        }
        tracing::warn!(camera = camera.id, "{}: the writer of {path} went away; waiting for the next", camera.label);
        camera.set_state("waiting", Some(format!("the writer of {path} went away; waiting for the next")));
    }
}

/// Read `input` to its end (or an error) in chunks of at most `size` bytes, each handed to
/// `chunk` with the time it arrived.
fn read_chunks(mut input: Box<dyn Read>, source: &Camera, size: usize, mut chunk: impl FnMut(&[u8], u64)) {
    let mut buf = vec![0u8; size];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => chunk(&buf[..n], now_us()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(camera = source.id, "{}: read error: {e}", source.label);
                return;
            }
        }
    }
}

/// Read one stream to its end (or an error), delivering its access units.
pub fn read_stream(input: Box<dyn Read>, camera: &Camera, out: &Output) {
    let mut splitter = AccessUnitSplitter::new(MAX_UNIT);
    // When the unit being read began arriving.
    let mut pending_since: Option<u64> = None;
    let mut dropped_before = 0;
    read_chunks(input, camera, 64 * 1024, |bytes, now| {
        let units = splitter.push(bytes);
        let emitted = units.len();
        for (k, unit) in units.into_iter().enumerate() {
            let at = if k == 0 { pending_since.unwrap_or(now) } else { now };
            camera.deliver(out, unit, at);
        }
        if emitted > 0 || pending_since.is_none() {
            pending_since = Some(now);
        }
        if splitter.dropped_bytes > dropped_before {
            tracing::warn!(
                camera = camera.id,
                dropped_bytes = splitter.dropped_bytes,
                oversized = splitter.oversized,
                "{}: bytes that are no H.264 access unit dropped",
                camera.label
            );
            dropped_before = splitter.dropped_bytes;
        }
    });
    if let Some(last) = splitter.finish() {
        camera.deliver(out, last, pending_since.unwrap_or_else(now_us));
    }
}

/// Read one Ogg Opus stream to its end, delivering its Opus packets.
pub fn read_ogg_opus(input: Box<dyn Read>, source: &Camera, out: &Output) {
    let mut reader = OggOpusReader::new();
    let (mut skipped, mut dropped) = (0, 0);
    read_chunks(input, source, 16 * 1024, |bytes, now| {
        for item in reader.push(bytes) {
            match item {
                Item::Head { channels, input_rate } => {
                    tracing::info!(camera = source.id, channels, input_rate, "{}: Ogg Opus stream", source.label);
                    source.check_channels(channels);
                }
                Item::Packet(p) => {
                    source.deliver_opus(out, p, now);
                }
            }
        }
        if reader.skipped_bytes > skipped || reader.dropped_packets > dropped {
            tracing::warn!(
                camera = source.id,
                skipped_bytes = reader.skipped_bytes,
                dropped_packets = reader.dropped_packets,
                "{}: bytes that are no Ogg page, or broken packets, dropped",
                source.label
            );
            (skipped, dropped) = (reader.skipped_bytes, reader.dropped_packets);
        }
    });
}

fn describe(path: &str) -> String {
    if path == "-" {
        "standard input".into()
    } else {
        path.to_owned()
    }
}

#[cfg(unix)]
fn is_fifo(path: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    path != "-" && std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

#[cfg(not(unix))]
fn is_fifo(_: &str) -> bool {
    false
}
