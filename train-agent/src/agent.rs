//! The real train behind the session ([`railcast_uplink::Train`]): its cameras as they announce
//! themselves, commands handed to the train's systems through the hook, keyframe requests that
//! no pipe or RTSP camera can honour (said so in the ack: the server's GOP cache serves late
//! joiners), telemetry from the file the train's systems keep.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use railcast_protocol::control::{AudioInfo, CameraInfo, Command, Status, Telemetry};
use railcast_protocol::{Action, CameraId, CommandAck};
use railcast_uplink::{now_us, AckFuture, Train};
use serde::Deserialize;

use crate::camera::Camera;
use crate::hook::Hook;

#[derive(Debug)]
pub struct Agent {
    pub cameras: Vec<Arc<Camera>>,
    pub hook: Option<Hook>,
    pub telemetry_file: Option<PathBuf>,
    pub telemetry_stale_after: Duration,
    pub connected: Arc<AtomicBool>,
    /// Keyframe requests from the server that no camera could honour.
    pub keyframe_requests: AtomicU64,
    telemetry_state: std::sync::Mutex<TelemetryState>,
}

#[derive(Debug, Default)]
struct TelemetryState {
    /// The last problem logged, so that a stale or broken file is logged once, not every second.
    last_problem: Option<String>,
}

/// The telemetry file: what the train's systems write (every field optional).
#[derive(Debug, Default, Deserialize)]
struct TelemetryFile {
    #[serde(default)]
    speed_kmh: f32,
    #[serde(default)]
    odometer_m: f64,
    #[serde(default)]
    horn: bool,
    #[serde(default)]
    operator_lost: bool,
}

impl Agent {
    pub fn new(
        cameras: Vec<Arc<Camera>>,
        hook: Option<Hook>,
        telemetry_file: Option<PathBuf>,
        telemetry_stale_after: Duration,
        connected: Arc<AtomicBool>,
    ) -> Self {
        Self {
            cameras,
            hook,
            telemetry_file,
            telemetry_stale_after,
            connected,
            keyframe_requests: AtomicU64::new(0),
            telemetry_state: std::sync::Mutex::new(TelemetryState::default()),
        }
    }

    fn read_telemetry(&self, path: &PathBuf) -> Result<Telemetry, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok()).unwrap_or_default();
        if age > self.telemetry_stale_after {
            return Err(format!("{} is stale: not written for {} s", path.display(), age.as_secs()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let t: TelemetryFile =
            serde_json::from_str(&text).map_err(|e| format!("{} is not telemetry JSON: {e}", path.display()))?;
        if !t.speed_kmh.is_finite() || !t.odometer_m.is_finite() {
            return Err(format!("{}: speed and odometer must be finite numbers", path.display()));
        }
        Ok(Telemetry {
            timestamp_us: now_us(),
            speed_kmh: t.speed_kmh,
            odometer_m: t.odometer_m,
            horn: t.horn,
            operator_lost: t.operator_lost,
        })
    }
}

impl Train for Agent {
    fn hello(&self) -> (Vec<CameraInfo>, Vec<AudioInfo>) {
        let (audio, cameras): (Vec<_>, Vec<_>) = self.cameras.iter().partition(|c| c.audio_info().is_some());
        (cameras.iter().map(|c| c.info()).collect(), audio.iter().filter_map(|a| a.audio_info()).collect())
    }

    fn connected(&self, up: bool) {
        for c in &self.cameras {
            c.restart_at_keyframe();
        }
        self.connected.store(up, Ordering::Relaxed);
    }

    fn keyframe_requested(&self, camera: Option<CameraId>) {
        let n = self.keyframe_requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::info!(
                ?camera,
                requests = n,
                "the server asked for a keyframe: pipe and RTSP cameras cannot be asked; the next comes with the GOP"
            );
        }
    }

    fn execute(&self, cmd: Command) -> AckFuture {
        let command_id = cmd.command_id;
        if let Action::RequestKeyframe { camera } = &cmd.command {
            let which: Vec<&Arc<Camera>> =
                self.cameras.iter().filter(|c| camera.is_none_or(|CameraId(id)| c.id == id)).collect();
            let message = match (camera, which.first()) {
                (Some(CameraId(id)), None) => format!("no camera {id}"),
                _ => format!(
                    "unsupported: {} cannot be asked for a keyframe; the next comes with the camera's GOP",
                    which.iter().map(|c| format!("{} ({})", c.label, c.kind)).collect::<Vec<_>>().join(", ")
                ),
            };
            return Box::pin(async move { CommandAck { command_id, ok: false, message } });
        }
        match &self.hook {
            Some(hook) => {
                let hook = hook.clone();
                Box::pin(async move { hook.run(cmd).await })
            }
            None => Box::pin(async move {
                CommandAck {
                    command_id,
                    ok: false,
                    message: "no command hook is configured on this train ([commands] hook)".into(),
                }
            }),
        }
    }

    fn status(&self) -> Option<Status> {
        Some(Status { sources: self.cameras.iter().map(|c| c.status()).collect() })
    }

    fn telemetry(&self) -> Option<Telemetry> {
        let path = self.telemetry_file.as_ref()?;
        let result = self.read_telemetry(path);
        let problem = result.as_ref().err().cloned();
        if let Ok(mut s) = self.telemetry_state.lock() {
            if s.last_problem != problem {
                match &problem {
                    Some(p) => tracing::warn!("telemetry not sent: {p}"),
                    None => tracing::info!("telemetry from {}", path.display()),
                }
                s.last_problem = problem;
            }
        }
        result.ok()
    }
}
