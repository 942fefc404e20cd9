//! Encode time of the simulated camera (render + openh264), per frame.
//!
//! `cargo run --release -p railcast-train-sim --example encode_speed`

use std::time::Instant;

use railcast_train_sim::video::{Camera, VideoConfig};

fn main() -> anyhow::Result<()> {
    const T0: u64 = 1_700_000_000_000_000;
    let n = 300u64;
    for (w, h, bitrate) in [(1280, 720, 2_000_000), (640, 480, 1_000_000), (320, 240, 400_000)] {
        let mut cam =
            Camera::new("train-1 cam 0", VideoConfig { width: w, height: h, fps: 30, bitrate_bps: bitrate, gop: 30 })?;
        let mut bytes = 0usize;
        let start = Instant::now();
        for i in 0..n {
            bytes += cam.encode_next(i, T0 + i * 33_333, 120.0, false)?.data.len();
        }
        let per_frame = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let kbps = bytes as f64 * 8.0 / (n as f64 / 30.0) / 1000.0;
        println!("{w}x{h} gop 30: {per_frame:.2} ms/frame (render + encode), {kbps:.0} kbit/s produced at 30 fps (target {} kbit/s)", bitrate / 1000);
    }
    Ok(())
}
