//! `record`: what recording costs (issue 26). N streams (trains × cameras, 4 Mbit/s each by
//! default) recorded by a server that records to a directory on disk, ramping N until the
//! recorder loses a GOP or the server's core is full.
//!
//! Each N runs twice, each time on a fresh server: first without recording (the baseline: ingest
//! alone), then with `--record-dir` in a fresh scratch directory (deleted after the step). Once the
//! trains are online (and, when recording, every stream has its first segment file) and a
//! warm-up has passed, a window of `--duration` measures the server's CPU (and its `record-writer`
//! thread's), the bytes the recorder wrote (`railcast_record_bytes_total`) and the recorder's
//! losses (`railcast_record_gops_lost_total`, `railcast_record_errors_total`, and the hub's
//! `railcast_frames_dropped_total`, the frames its subscriber queue dropped for the recorder).
//! Then the trains pause and, once the frames in flight have landed, the frames and packets the
//! trains sent are compared with what the server received (`railcast_frames_in_total`,
//! `railcast_packets_in_total`, and the server's UDP socket drops), so a loss before the hub
//! (ingest) is told apart from one in the recorder.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;

use crate::cli::Ctx;
use crate::procstat::{self, CpuMeter, Pid, ThreadCpuMeter};
use crate::report::{Outcome, Target};
use crate::server::{Metrics, Server};
use crate::stats::Window;
use crate::train::{Train, TrainSpec};

/// A loss in the recording run, and where it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Frames or packets the trains sent never reached the hub (QUIC ingest, UDP drops); the
    /// recorder itself dropped nothing (its GOPs lost are the gaps ingest left).
    Ingest,
    /// The recorder lost frames itself: the hub dropped frames for it (its subscriber queue was
    /// full), it counted errors (the writer's queue full, a file it could not write), or it lost
    /// GOPs while everything reached the hub.
    Recorder,
}

#[derive(Debug, Serialize)]
pub struct RecordRun {
    pub streams: usize,
    pub trains: usize,
    pub cameras_per_train: u16,
    /// With `--record-dir` (false: the baseline, ingest alone).
    pub recording: bool,
    pub bitrate_bps_per_stream: u64,
    pub fps: u32,
    pub gop: u32,
    pub window_s: f64,
    /// Frames the trains sent in the window ÷ what fps × window × streams asks for (below 1:
    /// the tool could not keep up).
    pub offered_fraction: f64,
    /// Packet bytes the trains sent in the window, Mbit/s, all streams.
    pub offered_mbit_s: f64,
    pub server_cpu_pct: f64,
    pub server_cpu_pct_per_stream: f64,
    /// The recorder's `record-writer` thread (the file writes), % of one core.
    pub writer_cpu_pct: Option<f64>,
    pub server_rss_kb: u64,
    pub load_cpu_pct: f64,
    /// Write bandwidth, MB/s (10^6) in all and kB/s per stream: the bytes the server received in
    /// the window × [`Self::write_to_ingest_ratio`]. (Parts are written whole, once a second per
    /// stream, so the bytes written inside a 10 s window are ±10 % per stream.)
    pub write_mb_s: Option<f64>,
    pub write_kb_s_per_stream: Option<f64>,
    /// Bytes written to segment files ÷ packet bytes received, over the whole run once the
    /// trains are offline and every part is written: fMP4 against the wire format's overhead.
    pub write_to_ingest_ratio: Option<f64>,
    /// `railcast_record_bytes_total` over the window, MB/s.
    pub write_mb_s_window: Option<f64>,
    /// Over the window and the drain after it.
    pub gops_lost: Option<f64>,
    pub record_errors: Option<f64>,
    pub record_queue_full: Option<f64>,
    /// Frames the hub dropped for its subscribers (the recorder is the only one).
    pub hub_frames_dropped: Option<f64>,
    /// Over the whole step (from the server's start): segment files created, GOPs lost.
    pub segments_total: Option<f64>,
    pub gops_lost_total: Option<f64>,
    /// Over the whole step, once the trains paused and the frames in flight landed: what the
    /// trains sent and what the server received, frames (one per camera) and packets.
    pub frames_sent: u64,
    pub frames_in: Option<u64>,
    pub frames_missing: Option<u64>,
    pub packets_sent: u64,
    pub packets_in: Option<u64>,
    pub packets_missing: Option<u64>,
    pub packets_rejected: Option<f64>,
    /// Datagrams dropped on arrival by the server's UDP sockets, whole step.
    pub udp_drops: u64,
    pub loss: Option<Loss>,
    /// The recording directory after the step: files and bytes, its file system.
    pub dir_files: Option<u64>,
    pub dir_bytes: Option<u64>,
    pub record_fs: Option<String>,
    /// `/proc/loadavg` (1 min) when the window opened and closed: the machine is shared.
    pub loadavg_start: Option<f64>,
    pub loadavg_end: Option<f64>,
}

/// A step of the ramp: N streams without and with recording.
#[derive(Debug, Serialize)]
pub struct RecordStep {
    pub streams: usize,
    pub baseline: Option<RecordRun>,
    pub recording: RecordRun,
    /// (recording − baseline server CPU) ÷ streams: what recording adds per stream, % of a core.
    pub record_cpu_pct_per_stream: Option<f64>,
}

/// The ramp's result, the last object of `steps`.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The largest N run without any loss (ingest or recorder), below the first N with one.
    pub max_streams_without_loss: usize,
    pub first_loss_streams: Option<usize>,
    pub first_loss_in: Option<Loss>,
    /// The same counting only the recorder's own losses: the ramp goes on past steps where only
    /// ingest lost packets (on a shared machine, the server's UDP receive buffer overflowing while
    /// it waits for its core), and stops at the first loss in the recorder.
    pub max_streams_without_recorder_loss: usize,
    pub first_recorder_loss_streams: Option<usize>,
    /// Why the ramp ended before a loss (a saturated core, the tool short of CPU).
    pub stopped: Option<String>,
    pub target_streams_per_core: usize,
    pub server_cpus: Option<String>,
    pub bitrate_bps_per_stream: u64,
}

/// Number of CPUs in a `taskset -c` list (`0`, `0-3`, `0,2`).
fn cpu_count(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.trim().split_once('-') {
            Some((a, b)) => match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

/// Regular files under `dir`, and their bytes.
fn dir_size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                todo.push(e.path());
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

fn delta(m0: &Option<Metrics>, m1: &Option<Metrics>, f: impl Fn(&Metrics) -> Option<f64>) -> Option<f64> {
    Some(f(m1.as_ref()?)? - f(m0.as_ref()?).unwrap_or(0.0))
}

/// One run: `streams` streams on a fresh server, recording or not.
async fn run_once(ctx: &Ctx, streams: usize, recording: bool) -> anyhow::Result<RecordRun> {
    let cameras = ctx.record_cameras;
    let trains_n = streams.div_ceil(usize::from(cameras)).max(1);
    let streams = trains_n * usize::from(cameras);
    let label = format!("record-{streams}{}", if recording { "" } else { "-baseline" });
    let mut opts = ctx.server.clone();
    if trains_n > 64 {
        opts.args.extend(["--demo-trains".to_owned(), trains_n.to_string()]);
    }
    let dir = recording.then(|| {
        ctx.record_scratch
            .clone()
            .unwrap_or_else(|| opts.log_dir.clone())
            .join(format!("recordings-{streams}-{}", std::process::id()))
    });
    if let Some(dir) = &dir {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        opts.args.push("--record-dir".to_owned());
        opts.args.push(dir.display().to_string());
    }
    let server = Server::start(&opts, &label).await;
    let result = match server {
        Ok(server) => {
            let r = measure(ctx, &server, streams, trains_n, dir.as_deref()).await;
            server.stop().await;
            r
        }
        Err(e) => Err(e),
    };
    let mut result = result;
    if let Some(dir) = &dir {
        if let Ok(r) = &mut result {
            let (files, bytes) = dir_size(dir);
            r.dir_files = Some(files);
            r.dir_bytes = Some(bytes);
            r.record_fs = procstat::fs_type(dir);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

async fn measure(
    ctx: &Ctx,
    server: &Server,
    streams: usize,
    trains_n: usize,
    dir: Option<&Path>,
) -> anyhow::Result<RecordRun> {
    let cameras = ctx.record_cameras;
    let window = Arc::new(Window::default());
    let mut trains = Vec::new();
    for t in 0..trains_n {
        let bitrate = ctx.record_bitrate * u64::from(cameras);
        let spec = TrainSpec::new(format!("train-{}", t + 1), cameras, bitrate, ctx, server);
        trains.push(Train::start(&server.api.base, spec, Arc::clone(&window)).await?);
    }
    for t in &trains {
        server.api.wait_train_online(&t.spec.id, Duration::from_secs(10)).await?;
    }
    if dir.is_some() {
        // Every stream has its first segment file (the recorder found the train and had a
        // keyframe).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let segments = server.api.metrics().await?.sum("railcast_record_segments_total").unwrap_or(0.0);
            if segments >= streams as f64 {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("{streams} streams: only {segments} segment files after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(ctx.record_warmup).await;

    let sent = |f: fn(&crate::train::TrainStats) -> u64| trains.iter().map(|t| f(&t.stats)).sum::<u64>();
    let frames = |s: &crate::train::TrainStats| s.frames.load(Ordering::Relaxed);
    let bytes = |s: &crate::train::TrainStats| s.bytes.load(Ordering::Relaxed);
    let packets = |s: &crate::train::TrainStats| s.packets.load(Ordering::Relaxed);

    let loadavg_start = procstat::loadavg1();
    let m0 = server.api.metrics().await.ok();
    let (frames0, bytes0) = (sent(frames), sent(bytes));
    let server_cpu = CpuMeter::start(server.pid());
    let load_cpu = CpuMeter::start(Pid::Myself);
    let writer_cpu = ThreadCpuMeter::start(server.pid, "record-writer");
    let started = Instant::now();
    tokio::time::sleep(ctx.duration).await;
    let (server_cpu_pct, load_cpu_pct, writer_cpu_pct) =
        (server_cpu.percent(), load_cpu.percent(), writer_cpu.percent());
    let window_s = started.elapsed().as_secs_f64();
    let (frames1, bytes1) = (sent(frames), sent(bytes));
    let m1 = server.api.metrics().await.ok();
    let loadavg_end = procstat::loadavg1();
    let server_rss_kb = server.rss_kb();

    // Pause the trains; once the frames in flight have landed, what they sent must all be in.
    for t in &trains {
        t.pause();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m2 = server.api.metrics().await.ok();
    let (frames_sent, packets_sent) = (sent(frames), sent(packets));
    let udp_drops = procstat::udp_drops(&[server.pid]);
    for r in join_all(trains.into_iter().map(Train::stop)).await {
        if let Err(e) = r {
            anyhow::bail!("train: {e:#}");
        }
    }
    // The trains are offline: the recorder has ended their segments and written every part, so
    // what it wrote over the whole run can be set against what the server received.
    let m3 = if dir.is_some() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.api.metrics().await.ok()
    } else {
        None
    };
    let run_ratio = m3.as_ref().and_then(|m| {
        let (w, r) = (m.sum("railcast_record_bytes_total")?, m.sum("railcast_bytes_in_total")?);
        (r > 0.0).then(|| w / r)
    });

    let m2v = |f: &dyn Fn(&Metrics) -> Option<f64>| m2.as_ref().and_then(f);
    let frames_in = m2v(&|m| m.sum("railcast_frames_in_total")).map(|v| v as u64);
    let packets_in = m2v(&|m| m.sum("railcast_packets_in_total")).map(|v| v as u64);
    let frames_missing = frames_in.map(|r| frames_sent.saturating_sub(r));
    let packets_missing = packets_in.map(|r| packets_sent.saturating_sub(r));
    let written = delta(&m0, &m1, |m| m.sum("railcast_record_bytes_total"));
    let received = delta(&m0, &m1, |m| m.sum("railcast_bytes_in_total"));
    let recording = dir.is_some();
    let gops_lost = delta(&m0, &m2, |m| m.sum("railcast_record_gops_lost_total"));
    let record_errors = delta(&m0, &m2, |m| m.sum("railcast_record_errors_total"));
    let hub_frames_dropped = delta(&m0, &m2, |m| m.sum("railcast_frames_dropped_total"));
    let ingest_loss = frames_missing.is_none_or(|f| f > 0) || packets_missing.is_none_or(|p| p > 0) || udp_drops > 0;
    let recorder_loss = recording && [record_errors, hub_frames_dropped].iter().any(|v| v.is_none_or(|v| v > 0.0));
    let gops_without_ingest_loss = recording && !ingest_loss && gops_lost.is_none_or(|g| g > 0.0);
    let loss = if recorder_loss || gops_without_ingest_loss {
        Some(Loss::Recorder)
    } else if ingest_loss {
        Some(Loss::Ingest)
    } else {
        None
    };
    let expected = f64::from(ctx.fps) * window_s * streams as f64;
    Ok(RecordRun {
        streams,
        trains: trains_n,
        cameras_per_train: cameras,
        recording,
        bitrate_bps_per_stream: ctx.record_bitrate,
        fps: ctx.fps,
        gop: ctx.gop,
        window_s,
        offered_fraction: (frames1 - frames0) as f64 / expected.max(1.0),
        offered_mbit_s: (bytes1 - bytes0) as f64 * 8.0 / window_s / 1e6,
        server_cpu_pct,
        server_cpu_pct_per_stream: server_cpu_pct / streams as f64,
        writer_cpu_pct,
        server_rss_kb,
        load_cpu_pct,
        write_mb_s: run_ratio.zip(received).map(|(k, r)| k * r / window_s / 1e6),
        write_kb_s_per_stream: run_ratio.zip(received).map(|(k, r)| k * r / window_s / 1e3 / streams as f64),
        write_to_ingest_ratio: run_ratio,
        write_mb_s_window: written.filter(|_| recording).map(|b| b / window_s / 1e6),
        gops_lost: gops_lost.filter(|_| recording),
        record_errors: record_errors.filter(|_| recording),
        record_queue_full: delta(&m0, &m2, |m| m.labeled("railcast_record_errors_total", "kind", "queue_full"))
            .filter(|_| recording),
        hub_frames_dropped,
        segments_total: m2v(&|m| m.sum("railcast_record_segments_total")).filter(|_| recording),
        gops_lost_total: m2v(&|m| m.sum("railcast_record_gops_lost_total")).filter(|_| recording),
        frames_sent,
        frames_in,
        frames_missing,
        packets_sent,
        packets_in,
        packets_missing,
        packets_rejected: m2v(&|m| m.sum("railcast_packets_rejected_total")),
        udp_drops,
        loss,
        dir_files: None,
        dir_bytes: None,
        record_fs: None,
        loadavg_start,
        loadavg_end,
    })
}

pub const HEADERS: &[&str] = &[
    "streams",
    "Mbit/s in",
    "CPU% no rec",
    "CPU% rec",
    "CPU%/stream",
    "rec %/stream",
    "writer CPU%",
    "write MB/s",
    "kB/s/stream",
    "GOPs lost",
    "rec errors",
    "hub drops",
    "not received fr/pkt (no rec | rec)",
    "load CPU%",
    "loadavg",
];

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "-".into())
}

fn row(s: &RecordStep) -> Vec<String> {
    let r = &s.recording;
    let missing = |run: &RecordRun| {
        format!(
            "{}/{}{}",
            run.frames_missing.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
            run.packets_missing.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
            if run.udp_drops > 0 { format!(" ({} udp)", run.udp_drops) } else { String::new() }
        )
    };
    vec![
        format!("{} ({}×{})", r.streams, r.trains, r.cameras_per_train),
        format!("{:.0}", r.offered_mbit_s),
        opt(s.baseline.as_ref().map(|b| b.server_cpu_pct), 1),
        format!("{:.1}", r.server_cpu_pct),
        format!("{:.2}", r.server_cpu_pct_per_stream),
        opt(s.record_cpu_pct_per_stream, 2),
        opt(r.writer_cpu_pct, 1),
        opt(r.write_mb_s, 2),
        opt(r.write_kb_s_per_stream, 0),
        opt(r.gops_lost, 0),
        opt(r.record_errors, 0),
        opt(r.hub_frames_dropped, 0),
        match &s.baseline {
            Some(b) => format!("{} | {}", missing(b), missing(r)),
            None => missing(r),
        },
        format!("{:.0}", r.load_cpu_pct),
        opt(r.loadavg_start, 1),
    ]
}

/// `record`: the ramp, then the targets.
pub async fn run(ctx: &Ctx) -> Outcome {
    let mut out = Outcome::new(HEADERS.to_vec());
    let server_cores = ctx.server.cpu.as_deref().map(cpu_count);
    let cores = server_cores.unwrap_or_else(|| procstat::Machine::read().cores);
    let mut clean: Option<usize> = None;
    let mut first_loss: Option<(usize, Loss)> = None;
    let mut recorder_clean: Option<usize> = None;
    let mut first_recorder_loss: Option<usize> = None;
    let mut stopped: Option<String> = None;
    let mut steps: Vec<RecordStep> = Vec::new();
    if let Some(scratch) = &ctx.record_scratch {
        if let Err(e) = std::fs::create_dir_all(scratch) {
            out.fail(format!("--record-scratch {}: {e}", scratch.display()));
            return out;
        }
    }
    for &n in &ctx.record_streams {
        eprintln!("[record] {n} streams: baseline (no recording) …");
        let baseline = match run_once(ctx, n, false).await {
            Ok(b) => Some(b),
            Err(e) => {
                out.fail(format!("{n} streams, baseline: {e:#}"));
                None
            }
        };
        eprintln!("[record] {n} streams: recording …");
        let recording = match run_once(ctx, n, true).await {
            Ok(r) => r,
            Err(e) => {
                out.fail(format!("{n} streams, recording: {e:#}"));
                break;
            }
        };
        if recording.record_fs.as_deref() == Some("tmpfs") {
            eprintln!("[record] warning: the recordings went to a tmpfs (see --record-scratch)");
        }
        let step = RecordStep {
            streams: recording.streams,
            record_cpu_pct_per_stream: baseline
                .as_ref()
                .map(|b| (recording.server_cpu_pct - b.server_cpu_pct) / recording.streams as f64),
            baseline,
            recording,
        };
        let r = &step.recording;
        eprintln!(
            "[record] {} streams: server CPU {:.1}% (no recording {}), {} MB/s written ({} kB/s per stream), \
             writer thread {}%, GOPs lost {}, errors {}, hub drops {}, ingest missing {} frames{}, load average {}",
            r.streams,
            r.server_cpu_pct,
            opt(step.baseline.as_ref().map(|b| b.server_cpu_pct), 1),
            opt(r.write_mb_s, 2),
            opt(r.write_kb_s_per_stream, 0),
            opt(r.writer_cpu_pct, 1),
            opt(r.gops_lost, 0),
            opt(r.record_errors, 0),
            opt(r.hub_frames_dropped, 0),
            r.frames_missing.map(|v| v.to_string()).unwrap_or_else(|| "?".into()),
            step.baseline
                .as_ref()
                .and_then(|b| b.frames_missing)
                .map(|v| format!(" (baseline {v})"))
                .unwrap_or_default(),
            opt(r.loadavg_start, 2),
        );
        if r.frames_sent == 0 || r.segments_total.is_none_or(|s| s < 1.0) {
            out.fail(format!("{} streams: nothing sent or recorded", r.streams));
        }
        out.table.rows.push(row(&step));
        out.step(&step);
        let (streams, loss, cpu, load, offered) =
            (r.streams, r.loss, r.server_cpu_pct, r.load_cpu_pct, r.offered_fraction);
        steps.push(step);
        match loss {
            Some(Loss::Recorder) => {
                first_loss.get_or_insert((streams, Loss::Recorder));
                first_recorder_loss = Some(streams);
                break;
            }
            Some(Loss::Ingest) => {
                first_loss.get_or_insert((streams, Loss::Ingest));
            }
            None => {}
        }
        if first_loss.is_none() {
            clean = Some(streams);
        }
        recorder_clean = Some(streams);
        if cpu >= 95.0 * cores as f64 {
            stopped = Some(format!("the server's CPU saturated at {streams} streams ({cpu:.0} %)"));
            break;
        }
        if offered < 0.97 {
            stopped = Some(format!(
                "the tool could not send the full rate at {streams} streams ({:.1} %, its CPU {load:.0} %)",
                offered * 100.0
            ));
            break;
        }
    }

    let mbit = ctx.record_bitrate as f64 / 1e6;
    let pinned_one = server_cores == Some(1);
    out.step(&Summary {
        max_streams_without_loss: clean.unwrap_or(0),
        first_loss_streams: first_loss.map(|(n, _)| n),
        first_loss_in: first_loss.map(|(_, l)| l),
        max_streams_without_recorder_loss: recorder_clean.unwrap_or(0),
        first_recorder_loss_streams: first_recorder_loss,
        stopped: stopped.clone(),
        target_streams_per_core: 50,
        server_cpus: ctx.server.cpu.clone(),
        bitrate_bps_per_stream: ctx.record_bitrate,
    });
    let measured = format!(
        "{} streams at {mbit} Mbit/s{}; recorder alone: {} streams{}{}",
        clean.map(|c| c.to_string()).unwrap_or_else(|| "0".into()),
        match first_loss {
            Some((n, Loss::Recorder)) => format!(" (first loss at {n}, in the recorder)"),
            Some((n, Loss::Ingest)) => format!(" (first loss at {n}, before the hub: ingest)"),
            None => String::new(),
        },
        recorder_clean.map(|c| c.to_string()).unwrap_or_else(|| "0".into()),
        match (first_recorder_loss, &stopped) {
            (Some(n), _) => format!(", first recorder loss at {n}"),
            (None, Some(why)) => format!("; stopped: {why}"),
            (None, None) => ", no recorder loss at any step run".into(),
        },
        if pinned_one { String::new() } else { "; server not pinned to one core".into() }
    );
    out.targets.push(Target::new(
        "streams recorded on one core without GOP loss (max_streams_without_loss)",
        "≥ 50 streams at 4 Mbit/s (issue 26)",
        measured,
        (pinned_one && ctx.record_bitrate >= 4_000_000).then(|| clean.is_some_and(|c| c >= 50)),
    ));
    if let Some(s) = steps.iter().rev().find(|s| s.recording.loss.is_none()) {
        out.targets.push(Target::new(
            format!("recording cost per stream at {} streams", s.streams),
            "for reference",
            format!(
                "server {:.2} % of a core per stream recording, {} % without ({} % added); {} kB/s written per stream",
                s.recording.server_cpu_pct_per_stream,
                opt(s.baseline.as_ref().map(|b| b.server_cpu_pct_per_stream), 2),
                opt(s.record_cpu_pct_per_stream, 2),
                opt(s.recording.write_kb_s_per_stream, 0),
            ),
            None,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(cpu_count("0"), 1);
        assert_eq!(cpu_count("0-3"), 4);
        assert_eq!(cpu_count("0,2"), 2);
        assert_eq!(cpu_count("0-1,4"), 3);
    }

    #[test]
    fn directory_sizes_add_up() {
        let dir = std::env::temp_dir().join(format!("railcast-bench-dirsize-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).expect("mkdir");
        std::fs::write(dir.join("a/x"), [0u8; 10]).expect("write");
        std::fs::write(dir.join("a/b/y"), [0u8; 5]).expect("write");
        assert_eq!(dir_size(&dir), (2, 15));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
