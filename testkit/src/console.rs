//! The operator console (`web-client/`, built into `web-client/dist`) served by the real server
//! and driven in Debian's Chromium by `web-client/e2e/console.mjs` (or another script of
//! `web-client/e2e/`, such as `wall.mjs`; playwright-core, never a downloaded browser). The script
//! prints one JSON line of results; restart scenarios print `READY_FOR_RESTART` first, for the test
//! to restart the server.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub fn web_client() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../web-client")).to_path_buf()
}

/// `--web-root` for `Server::start`: the built console.
pub fn web_root() -> String {
    let dist = web_client().join("dist");
    assert!(
        dist.join("index.html").exists()
            && web_client().join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "the console tests need the built console, its node_modules and Debian's chromium: run scripts/setup.sh \
         and `npm run build` in web-client (scripts/test.sh does both)"
    );
    dist.to_str().expect("utf-8 path").to_owned()
}

/// Screenshots land here, one directory per test, kept after the run.
pub fn artifacts(test: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir").join("artifacts").join(test);
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

pub struct Console {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").field("child", &self.child).finish_non_exhaustive()
    }
}

impl Console {
    /// Start `console.mjs SCENARIO` against `base_url` (`http://localhost:PORT` or an `https://` URL:
    /// a secure context; the `insecure` scenario wants neither), opening the console with `token`
    /// (`#token=…`). `env` may add Chromium flags (`CHROMIUM_ARGS`) and a CA for the driver's own
    /// requests (`NODE_EXTRA_CA_CERTS`).
    pub fn spawn(base_url: &str, scenario: &str, artifacts: &Path, token: &str, env: &[(&str, &str)]) -> Console {
        Console::spawn_script("console.mjs", &[scenario], base_url, artifacts, token, env)
    }

    /// Start another driver of `web-client/e2e/` (`wall.mjs`, say) with `args`, the same way:
    /// `BASE_URL`, `RAILCAST_TOKEN`, `ARTIFACTS_DIR` and `env`; it prints one JSON line too.
    pub fn spawn_script(
        script: &str,
        args: &[&str],
        base_url: &str,
        artifacts: &Path,
        token: &str,
        env: &[(&str, &str)],
    ) -> Console {
        let mut child = Command::new("node")
            .arg(web_client().join("e2e").join(script))
            .args(args)
            .env("BASE_URL", base_url)
            .env("RAILCAST_TOKEN", token)
            .env("ARTIFACTS_DIR", artifacts)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Console { child, lines }
    }

    /// Wait for a line on stdout equal to `want`.
    pub async fn wait_line(&mut self, want: &str, timeout: Duration) {
        let read = async {
            while let Some(line) = self.lines.next_line().await.expect("read stdout") {
                if line.trim() == want {
                    return true;
                }
                println!("console: {line}");
            }
            false
        };
        let seen = tokio::time::timeout(timeout, read).await.unwrap_or(false);
        assert!(seen, "the console script did not print {want}");
    }

    /// The script's result line; fails the test with its reason when it failed.
    pub async fn finish(mut self, timeout: Duration) -> Value {
        let read = async {
            let mut last = None;
            while let Some(line) = self.lines.next_line().await.expect("read stdout") {
                if line.trim_start().starts_with('{') {
                    last = Some(line);
                }
            }
            last
        };
        let line = tokio::time::timeout(timeout, read).await.expect("console script in time");
        let status = self.child.wait().await.expect("wait node");
        let line = line.unwrap_or_else(|| panic!("no result line from the console script ({status})"));
        let result: Value = serde_json::from_str(&line).expect("result JSON");
        assert!(status.success() && result["ok"] == true, "console scenario failed: {}", result["error"]);
        result
    }
}

/// Video as the latency target states it: 640×480 at 30 fps, two cameras.
pub const VGA_30: &[&str] = &["--trains", "1", "--cameras", "2", "--width", "640", "--height", "480", "--fps", "30"];

/// One line of figures for the log.
pub fn report(label: &str, r: &Value) {
    println!(
        "{label}: transport {} · {} fps painted · glass-to-glass p50 {} ms p95 {} ms ({} samples) · clock offset {} ms \
         (applied: {}) · command ack {} ms · first frames {} ms · screenshots {}",
        r["transport"],
        r["fps"],
        r["latency_p50_ms"],
        r["latency_p95_ms"],
        r["latency_samples"],
        r["clock_offset_ms"],
        r["clock_offset_applied"],
        r["ack_rtt_ms"],
        r["first_frames_ms"],
        r["screenshots"]
    );
}

/// One transport, end to end: server with the console, a simulator at 640×480/30 fps with two
/// cameras, the console forced onto `transport`; checks that both cameras paint, latency is
/// measured and the command ack came over the same transport. Prints the figures.
pub async fn stream_over(test: &str, transport: &str, label: &str) {
    stream_over_with(test, transport, label, &[]).await;
}

/// [`stream_over`] with more server arguments.
pub async fn stream_over_with(test: &str, transport: &str, label: &str, server_args: &[&str]) {
    stream_scenario(test, transport, transport, label, server_args).await;
}

/// [`stream_over_with`] for a `console.mjs` scenario whose name is not its transport
/// (`webrtc-mqtt`: WebRTC signaled over MQTT); returns the script's result line for more checks.
pub async fn stream_scenario(test: &str, scenario: &str, transport: &str, label: &str, server_args: &[&str]) -> Value {
    let dir = crate::scratch(test);
    let root = web_root();
    let server = crate::Server::start(&dir, &[&["--web-root", root.as_str()], server_args].concat()).await;
    let _sim = crate::Sim::start(&dir, &server, VGA_30);
    let port = server.http.rsplit(':').next().expect("port");
    let console = Console::spawn(
        &format!("http://localhost:{port}"),
        scenario,
        &artifacts(test),
        server.token("admin"),
        &[("MEASURE_MS", "10000")],
    );
    let r = console.finish(Duration::from_secs(120)).await;
    report(label, &r);
    assert_eq!(r["transport"], transport);
    assert_eq!(r["ack_transport"], transport, "the command went over the same transport: {r}");
    assert!(r["latency_samples"].as_u64().unwrap_or(0) > 0, "the overlay measured latency: {r}");
    assert_eq!(r["cameras"].as_array().map(Vec::len), Some(2), "both cameras painted: {r}");
    r
}
