//! A full disk under the recorder: a small tmpfs is `record_dir`, a filler file takes all of it
//! while the simulator streams video and audio. The live relay does not notice (a WebSocket viewer
//! gets every frame, none missing), the failure shows in the metrics and in one `error` line per
//! track, not one per frame, and when the filler goes the recording resumes by itself within
//! seconds: new segment files appear, and every file left plays.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::mqtt::metric;
use testkit::record::{decode_errors, recordings};
use testkit::ws::Client;
use testkit::{remote_control, scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

/// A tmpfs of `size` mounted at a path; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (root, or CAP_SYS_ADMIN) to fill a disk: `mount -t tmpfs` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a process holds a file): detach it now, it goes when released.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Fill the file system of `path` with a file there; its size.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0x55u8; 16 * 1024];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "filling: {e}");
                break;
            }
        }
    }
    let _ = f.flush();
    n
}

/// The camera-0 frame numbers a viewer received, and whether they follow each other.
fn gaps(client: &Client) -> Vec<(u32, u32)> {
    let seqs: Vec<u32> = client.frames().iter().filter(|f| f.camera == 0).map(|f| f.seq).collect();
    seqs.windows(2).filter(|w| w[1] != w[0] + 1).map(|w| (w[0], w[1])).collect()
}

fn error_lines(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.contains("ERROR") && l.contains("recording: cannot")).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_spares_the_live_relay_and_recording_resumes_when_space_returns() {
    let dir = scratch("record_disk_full");
    let rec = dir.join("rec");
    let _tmpfs = Tmpfs::mount(&rec, "1m");
    let rec_arg = rec.to_str().expect("utf8");
    let args = ["--record-dir", rec_arg, "--record-trains", "train-1", "--record-segment-duration", "2s"];
    let mut server = Server::start(&dir, &args).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1", "--audio", "tone"], SMALL_VIDEO].concat());
    wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let viewer = Client::connect(&server.ws_url(&rc)).await;
    viewer.wait_frames(15).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while recordings(&rec).len() < 2 {
        assert!(Instant::now() < deadline, "the recording did not start: {:?}", recordings(&rec));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The disk fills up.
    let filler = rec.join("filler");
    let filled = fill(&filler);
    let full_at = Instant::now();
    let frames_before = viewer.frames().len();
    let files_full = recordings(&rec);
    println!("filled {filled} bytes; files: {files_full:#?}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let writes = metric(&server, "railcast_record_errors_total{kind=\"write\"}").await;
    let creates = metric(&server, "railcast_record_errors_total{kind=\"create\"}").await;
    let failing = metric(&server, "railcast_record_failing").await;
    let errors = error_lines(&server.log);
    let during = viewer.frames().len() - frames_before;
    println!(
        "{:.1} s full: {writes} write and {creates} create errors, {failing} failing; {during} frames relayed",
        full_at.elapsed().as_secs_f64()
    );
    println!("error lines: {errors:#?}");
    assert!(writes + creates >= 2.0, "the failures are counted");
    assert!(writes + creates <= 2.0 * 8.0, "at most one try a second per track: {}", writes + creates);
    assert_eq!(failing, 2.0, "the camera and the microphone fail");
    assert!(!errors.is_empty() && errors.len() <= 2, "one error line per track and episode: {errors:#?}");
    assert!(errors.iter().any(|l| l.contains("No space left on device")), "{errors:?}");
    // 5 s at 15 fps plus 50 audio packets a second.
    assert!(during >= 4 * (15 + 50), "the viewer kept receiving: {during} frames in 5 s");
    assert_eq!(gaps(&viewer), [], "the viewer missed no frame");

    // Space returns: new segments follow within seconds.
    std::fs::remove_file(&filler).expect("delete the filler");
    let freed_at = Instant::now();
    let deadline = freed_at + Duration::from_secs(15);
    let recovered = loop {
        let new: Vec<_> = recordings(&rec).into_iter().filter(|f| !files_full.contains(f)).collect();
        let camera = new.iter().any(|f| f.to_string_lossy().contains("camera-0"));
        let audio = new.iter().any(|f| f.to_string_lossy().contains("audio-256"));
        if camera && audio {
            break freed_at.elapsed();
        }
        assert!(Instant::now() < deadline, "recording did not resume: {new:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failing = metric(&server, "railcast_record_failing").await;
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    let back: Vec<_> = log.lines().filter(|l| l.contains("recording: writing works again")).collect();
    println!("resumed {recovered:?} after the filler went; {back:#?}");
    assert_eq!(failing, 0.0, "nothing fails any more");
    assert_eq!(back.len(), 2, "one line per track says it works again: {back:#?}");
    assert_eq!(error_lines(&server.log).len(), errors.len(), "no new error lines");
    assert_eq!(gaps(&viewer), [], "the viewer missed no frame");

    server.signal("TERM");
    tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await.expect("the server stops").expect("wait");
    drop(sim);
    let files = recordings(&rec);
    println!("files: {files:#?}");
    for file in &files {
        assert_eq!(decode_errors(file), "", "{} plays", file.display());
    }
    assert!(files.len() > files_full.len());
}
