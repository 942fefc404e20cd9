//! Reading the server's recordings (fragmented MP4) with Debian's `ffprobe` and `ffmpeg`, the
//! foreign readers: what a file holds, whether it decodes cleanly, and each frame's SHA-256 as the
//! simulator's manifest has it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{api, wait_for_train, Entry, Server, Sim};

/// What a recorded simulator run left (camera 0 of `train-1`).
#[derive(Debug)]
pub struct Run {
    /// The frames the hub received, per the manifest: the simulator's last frame (a datagram)
    /// may be lost as it stops.
    pub received: Vec<Entry>,
    /// Frames the simulator sent.
    pub sent: usize,
    /// `railcast_record_bytes_total` and `railcast_record_gops_lost_total` before the stop.
    pub bytes_written: f64,
    pub gops_lost: f64,
    /// `railcast_record_syncs_total` before the stop (the train offline: its segments ended).
    pub syncs: f64,
    /// Audio packets the hub received (all sources), and those the simulator sent (source 256).
    pub audio_received: usize,
    pub audio_sent: Vec<Entry>,
}

/// Wait for the simulator (`--trains 1 --duration …`) to end and `train-1` to go offline, then
/// stop `server` (SIGTERM: recorders close their files) and wait for it to exit.
pub async fn until_sim_ends(server: &mut Server, sim: &mut Sim) -> Run {
    use std::time::Duration;
    wait_for_train(server, "train-1", true).await;
    tokio::time::timeout(Duration::from_secs(20), sim.child.wait()).await.expect("the simulator ends").expect("wait");
    wait_for_train(server, "train-1", false).await;
    let (_, train) = api("GET", &server.url("/api/trains/train-1"), None).await;
    // `frames_in` counts audio packets too (each is a frame of its own).
    let frames_in = train["frames_in"].as_u64().expect("frames_in") as usize;
    let received = train["cameras"][0]["frames"].as_u64().expect("camera frames") as usize;
    let video_in: u64 = train["cameras"].as_array().into_iter().flatten().filter_map(|c| c["frames"].as_u64()).sum();
    let audio_received = frames_in - video_in as usize;
    let bytes_written = crate::mqtt::metric(server, "railcast_record_bytes_total").await;
    let gops_lost = crate::mqtt::metric(server, "railcast_record_gops_lost_total").await;
    let syncs = crate::mqtt::metric(server, "railcast_record_syncs_total").await;
    server.signal("TERM");
    tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await.expect("the server stops").expect("wait");
    let manifest = sim.manifest();
    let audio_sent: Vec<_> = manifest.entries.iter().filter(|e| e.camera == 256).cloned().collect();
    let mut frames: Vec<_> = manifest.entries.into_iter().filter(|e| e.camera == 0).collect();
    let sent = frames.len();
    assert!(received <= sent && received + 2 >= sent, "the hub received {received} of {sent} frames");
    frames.truncate(received);
    Run { received: frames, sent, bytes_written, gops_lost, syncs, audio_received, audio_sent }
}

/// Every `.mp4` under `dir` (`<train>/camera-<N>/<UTC start>.mp4`), sorted: by train, camera,
/// then start time.
pub fn recordings(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "mp4") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// `ffprobe -v error ARGS… FILE` with `-of json` among `args`: its JSON output.
fn ffprobe_json(file: &Path, args: &[&str]) -> Value {
    let out = Command::new("ffprobe").args(["-v", "error"]).args(args).arg(file).output().expect("ffprobe");
    assert!(out.status.success(), "ffprobe {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

/// What `ffprobe` says of a file's video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub codec: String,
    pub width: u64,
    pub height: u64,
    /// Frames read (`-count_frames`).
    pub frames: u64,
}

pub fn probe(file: &Path) -> Probe {
    let v = ffprobe_json(
        file,
        &[
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-of",
            "json",
        ],
    );
    let s = &v["streams"][0];
    Probe {
        codec: s["codec_name"].as_str().unwrap_or_default().to_owned(),
        width: s["width"].as_u64().unwrap_or_default(),
        height: s["height"].as_u64().unwrap_or_default(),
        frames: s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or_default(),
    }
}

/// What `ffprobe` says of a file's audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioProbe {
    pub codec: String,
    pub sample_rate: u64,
    pub channels: u64,
    /// Packets read (`-count_packets`).
    pub packets: u64,
}

pub fn probe_audio(file: &Path) -> AudioProbe {
    let v = ffprobe_json(
        file,
        &[
            "-count_packets",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels,nb_read_packets",
            "-of",
            "json",
        ],
    );
    let s = &v["streams"][0];
    let number = |k: &str| s[k].as_u64().or_else(|| s[k].as_str().and_then(|n| n.parse().ok())).unwrap_or_default();
    AudioProbe {
        codec: s["codec_name"].as_str().unwrap_or_default().to_owned(),
        sample_rate: number("sample_rate"),
        channels: number("channels"),
        packets: number("nb_read_packets"),
    }
}

/// The packets of a file's audio stream, in order: each one's SHA-256 (the bytes as stored: one
/// Opus packet, as the manifest hashes it) and decode time (seconds from the file's start).
pub fn audio_packets(file: &Path) -> Vec<(String, f64)> {
    let v = ffprobe_json(file, &["-select_streams", "a:0", "-show_packets", "-show_data", "-of", "json"]);
    let packets = v["packets"].as_array().map(Vec::as_slice).unwrap_or_default();
    packets
        .iter()
        .map(|p| {
            let data = hexdump(p["data"].as_str().unwrap_or_default());
            (crate::sha256_hex(&data), p["dts_time"].as_str().and_then(|t| t.parse().ok()).unwrap_or(f64::NAN))
        })
        .collect()
}

/// What `ffmpeg -v error -i FILE -f null -` prints (empty: the file decodes cleanly).
pub fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        // Frames keep their own times: at the stream's nominal rate (1/15 s), two frames captured
        // closer than a tick apart (a train sending late, then catching up) would round to one
        // time and ffmpeg's muxer would complain of a file that is fine.
        .args(["-fps_mode", "passthrough", "-enc_time_base", "-1", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        said.trim().to_owned()
    } else {
        format!("exit {}: {}", out.status, said.trim())
    }
}

/// One recorded sample as `ffprobe -show_packets` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// SHA-256 of the access unit in Annex B with 4-byte start codes (the simulator's format,
    /// which its manifest hashes): each 4-byte NAL length replaced by `00 00 00 01`.
    pub sha256: String,
    /// Marked a sync sample in its `trun` (read with `mp4-atom`: ffprobe's `K` flag does not
    /// tell, it guesses).
    pub keyframe: bool,
    /// Decode time, seconds from the file's start.
    pub dts: f64,
}

/// The samples of a file's video stream, in order.
pub fn samples(file: &Path) -> Vec<Sample> {
    let v = ffprobe_json(file, &["-select_streams", "v:0", "-show_packets", "-show_data", "-of", "json"]);
    let packets = v["packets"].as_array().map(Vec::as_slice).unwrap_or_default();
    let sync = sync_flags(file);
    assert_eq!(sync.len(), packets.len(), "{}: trun entries and ffprobe's packets", file.display());
    packets
        .iter()
        .zip(sync)
        .map(|(p, keyframe)| {
            let data = hexdump(p["data"].as_str().unwrap_or_default());
            Sample {
                sha256: crate::sha256_hex(&annex_b(&data)),
                keyframe,
                dts: p["dts_time"].as_str().and_then(|t| t.parse().ok()).unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The SHA-256 (as in [`Sample`]) of each packet of a file's first stream of `kind` (`v` or `a`),
/// in order, for any MP4 (fragmented or not).
pub fn packet_hashes(file: &Path, kind: &str) -> Vec<String> {
    let v =
        ffprobe_json(file, &["-select_streams", &format!("{kind}:0"), "-show_packets", "-show_data", "-of", "json"]);
    let packets = v["packets"].as_array().map(Vec::as_slice).unwrap_or_default();
    let data = |p: &Value| hexdump(p["data"].as_str().unwrap_or_default());
    packets
        .iter()
        .map(|p| if kind == "v" { crate::sha256_hex(&annex_b(&data(p))) } else { crate::sha256_hex(&data(p)) })
        .collect()
}

/// The duration `ffprobe` gives a file (its container's, edit lists applied), seconds.
pub fn duration(file: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1"])
        .arg(file)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(f64::NAN)
}

/// Each sample's sync flag, from the `trun` boxes of every fragment (`sample_is_non_sync_sample`
/// clear), in order.
pub fn sync_flags(file: &Path) -> Vec<bool> {
    use mp4_atom::{Any, Decode};
    let bytes = std::fs::read(file).expect("read recording");
    let mut rest = bytes.as_slice();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Ok(atom) = Any::decode(&mut rest) else { break };
        if let Any::Moof(moof) = atom {
            for trun in moof.traf.iter().flat_map(|t| &t.trun) {
                out.extend(trun.samples.iter().map(|e| e.flags.is_some_and(|f| f & 0x0001_0000 == 0)));
            }
        }
    }
    out
}

/// The bytes of ffprobe's `data` dump: lines `OFFSET: HEX…  ASCII`, the hex in columns 10..51.
fn hexdump(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.lines().filter(|l| l.len() > 10) {
        let hex: String = line.get(10..51).unwrap_or(&line[10..]).chars().filter(|c| !c.is_whitespace()).collect();
        for i in (0..hex.len() / 2 * 2).step_by(2) {
            out.push(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"));
        }
    }
    out
}

/// Length-prefixed NAL units (4-byte lengths) to Annex B with 4-byte start codes.
fn annex_b(sample: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sample.len());
    let mut rest = sample;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let end = (4 + len).min(rest.len());
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&rest[4..end]);
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffprobe_dumps_read_back() {
        // ffprobe pads the hex to 41 columns before the ASCII column.
        let dump = format!("\n00000000: {:<41}{}\n", "0000 0003 6742 c000 0000 0165", "....gB.....e");
        assert_eq!(hexdump(&dump), vec![0, 0, 0, 3, 0x67, 0x42, 0xc0, 0, 0, 0, 1, 0x65]);
        assert_eq!(annex_b(&[0, 0, 0, 2, 0x67, 1, 0, 0, 0, 1, 0x65]), vec![0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x65]);
    }
}
