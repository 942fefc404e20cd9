//! The train agent (`railcast-train-agent`) as the tests run it: a configuration written for the
//! test's server, a train token from the server's generated credentials, sources from real tools
//! (ffmpeg piping H.264 into it, GStreamer's RTSP server), and the hashes ffmpeg itself gives the
//! access units of a stream (`framehash`), to check what arrives byte for byte.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::mqtt::free_port;
use crate::{bin, Manifest, Server};

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    pub child: Child,
    pub config: PathBuf,
    pub manifest: PathBuf,
    /// Its stderr (the log).
    pub log: PathBuf,
}

/// The `[server]` table for `server` as train `train` (its generated token; trust on first use,
/// which the agent allows only when told: loopback tests).
pub fn server_table(server: &Server, train: &str) -> String {
    format!(
        "[server]\nurl = \"{}\"\ntoken = \"{}\"\ntrust_discovered = true\n",
        server.url(""),
        server.train_token(train)
    )
}

impl Agent {
    /// Write `config` (a whole TOML file) to the scratch dir and start the agent on it, its
    /// standard input `stdin` (a camera with `path = "-"` reads it; see [`ffmpeg_live`]).
    pub fn start(dir: &Path, name: &str, config: &str, stdin: Stdio) -> Agent {
        let path = dir.join(format!("agent-{name}.toml"));
        std::fs::write(&path, config).expect("agent config");
        let manifest = dir.join(format!("agent-{name}-manifest.jsonl"));
        let log = dir.join(format!("agent-{name}.log"));
        let child = Command::new(bin("railcast-train-agent"))
            .arg("--config")
            .arg(&path)
            .arg("--manifest")
            .arg(&manifest)
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn agent");
        Agent { child, config: path, manifest, log }
    }

    pub fn manifest(&self) -> Manifest {
        Manifest::read(&self.manifest)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (up to `timeout`) until the log contains `text`; the log so far.
    pub async fn wait_log(&self, text: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let log = self.log_text();
            if log.contains(text) {
                return log;
            }
            assert!(tokio::time::Instant::now() < deadline, "the agent never logged {text:?}:\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// ffmpeg encoding a live test pattern (`-re`, libx264, a keyframe every second, each access
/// unit written as it is encoded) for `seconds`, as an H.264 byte stream to its standard output,
/// which is returned for the agent's standard input, and the same bytes to `copy` (the `tee`
/// muxer: byte-identical outputs).
pub fn ffmpeg_live(size: &str, fps: u32, seconds: u32, copy: &Path) -> (Child, Stdio) {
    let mut child = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={size}:rate={fps}"))
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-tune", "zerolatency", "-g", &fps.to_string(), "-flush_packets", "1", "-f", "tee", "-map", "0:v"])
        .arg(format!("[f=h264]{}|[f=h264]pipe:1", copy.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg (scripts/setup.sh installs it)");
    let stdout: Stdio = child.stdout.take().expect("stdout").try_into().expect("ffmpeg's stdout as the agent's stdin");
    (child, stdout)
}

/// SHA-256 of every access unit of an Annex B file, as ffmpeg's own H.264 parser cuts them
/// (`ffmpeg -i FILE -c copy -f framehash -hash sha256`), in stream order.
pub fn ffmpeg_unit_hashes(file: &Path) -> Vec<String> {
    ffmpeg_unit_hashes_of("h264", file)
}

/// [`ffmpeg_unit_hashes`] for a file of `format` (`h264`, `ogg`: Opus packets).
pub fn ffmpeg_unit_hashes_of(format: &str, file: &Path) -> Vec<String> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-f", format, "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "framehash", "-hash", "sha256", "-"])
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg framehash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().trim_start_matches("SHA256=").to_owned()))
        .filter(|h| h.len() == 64)
        .collect()
}

/// Decode an Annex B stream with ffmpeg: the number of frames decoded and what ffmpeg said on
/// stderr at level `error` (empty: a clean decode).
pub fn ffmpeg_decode(stream: &[u8]) -> (usize, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-f", "h264", "-i", "-", "-f", "framemd5", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = stream.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("ffmpeg decode");
    let _ = writer.join();
    let frames = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.starts_with('#')).count();
    (frames, String::from_utf8_lossy(&out.stderr).trim().to_owned())
}

/// GStreamer's RTSP server (Debian `gir1.2-gst-rtsp-server-1.0`, `python3-gi`, x264enc), serving
/// `cameras` live test patterns at `rtsp://127.0.0.1:PORT/cam{i}`, started by `tests/rtsp/server.py`.
#[derive(Debug)]
pub struct RtspServer {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl RtspServer {
    /// Start on a free port (or `port`, to restart one where its cameras were).
    pub async fn start(dir: &Path, cameras: u16, port: Option<u16>) -> RtspServer {
        Self::start_with(dir, cameras, port, &[]).await
    }

    /// [`RtspServer::start`] with more of `tests/rtsp/server.py`'s flags (`--user U --password P`:
    /// basic authentication; `--sdp-only`: parameter sets only in the SDP).
    pub async fn start_with(dir: &Path, cameras: u16, port: Option<u16>, flags: &[&str]) -> RtspServer {
        let port = port.unwrap_or_else(free_port);
        let script = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/rtsp/server.py"));
        let log = dir.join(format!("rtsp-{port}.log"));
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log");
        let child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--cameras", &cameras.to_string()])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start the RTSP server (scripts/setup.sh installs GStreamer's)");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the RTSP server did not listen on {port}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        RtspServer { child, port, log }
    }

    pub fn url(&self, camera: u16) -> String {
        format!("rtsp://127.0.0.1:{}/cam{camera}", self.port)
    }

    /// Kill it (SIGKILL: the camera vanishes without a TEARDOWN) and wait for it to be gone.
    pub async fn kill(mut self) -> u16 {
        let _ = self.child.kill().await;
        self.port
    }
}

/// Encode `seconds` of a test pattern at `size` and `fps` into an H.264 file (as fast as ffmpeg
/// can; a keyframe every second, SPS and PPS before each).
pub fn ffmpeg_clip(file: &Path, size: &str, fps: u32, seconds: u32, pattern: &str) {
    let out = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("{pattern}=size={size}:rate={fps}"))
        .args(["-t", &seconds.to_string(), "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-tune", "zerolatency", "-g", &fps.to_string(), "-f", "h264"])
        .arg(file)
        .output()
        .expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg clip: {}", String::from_utf8_lossy(&out.stderr));
}

/// ffmpeg encoding `seconds` of a live 440 Hz tone to Opus (mono, 20 ms packets) in Ogg, one page
/// per packet, into `fifo` (a named pipe the agent reads) and the same bytes into `copy`.
pub fn ffmpeg_opus_live(seconds: u32, fifo: &Path, copy: &Path) -> Child {
    Command::new("ffmpeg")
        .args(["-loglevel", "error", "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string(), "-ac", "1", "-c:a", "libopus", "-b:a", "32k", "-frame_duration", "20"])
        .args(["-flush_packets", "1", "-f", "tee", "-map", "0:a"])
        .arg(format!("[f=ogg:page_duration=20000]{}|[f=ogg:page_duration=20000]{}", copy.display(), fifo.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg")
}
