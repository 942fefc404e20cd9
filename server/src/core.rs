//! The state every part of the server shares: the hub, remote controls, live sessions,
//! credentials, limits and the shutdown signal. It names no transport: transports hold a [`Core`]
//! and keep their own state beside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::auth::Auth;
use crate::hub::Hub;
use crate::limits::{LimitConfig, PerAddress};
use crate::metrics::{ScrapeHook, METRICS};
use crate::remote::RemoteControls;
use crate::sessions::Registry;

/// Facts about this server process, fixed at start-up.
#[derive(Debug)]
pub struct ServerInfo {
    pub started_at: SystemTime,
    pub http_addr: SocketAddr,
    pub quic_addr: SocketAddr,
    pub cert_sha256: String,
    pub cert_pem: String,
    pub self_signed: bool,
}

/// Cheap to clone: everything is behind `Arc`s.
#[derive(Debug, Clone)]
pub struct Core {
    pub hub: Hub,
    pub remotes: Arc<RemoteControls>,
    pub sessions: Arc<Registry>,
    pub info: Arc<ServerInfo>,
    pub auth: Arc<Auth>,
    pub limits: LimitConfig,
    /// Every command, accepted or refused.
    pub audit: Arc<crate::audit::Audit>,
    /// Client sessions (every transport) per IP address.
    pub client_addresses: Arc<PerAddress>,
    /// Turns true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// The cluster (`None`: this node stands alone): whether its NATS connection is up (`/readyz`
    /// answers 503 while it is down) and which node owns each train.
    pub cluster: Option<crate::cluster::Status>,
}

impl Core {
    /// Keep the gauges of trains and remote controls current at each scrape, while the hook lives.
    pub fn gauges(&self) -> ScrapeHook {
        // Refusal series with known labels exist from the start, at 0.
        let m = &*METRICS;
        for limit in crate::limits::Limit::ALL {
            let _ = m.limit_refusals.with_label_values(&[limit.label()]);
        }
        for reason in crate::auth::TrainAuthError::ALL {
            let _ = m.auth_refusals.with_label_values(&["train", reason.reason()]);
        }
        for reason in ["missing", "invalid", "forbidden"] {
            let _ = m.auth_refusals.with_label_values(&["client", reason]);
        }
        let (hub, remotes) = (self.hub.clone(), Arc::downgrade(&self.remotes));
        crate::metrics::on_scrape(move || {
            let m = &*METRICS;
            let streams = hub.streams();
            m.trains_known.set(streams.len() as i64);
            m.trains_connected.set(streams.iter().filter(|s| s.is_online()).count() as i64);
            let samples: Vec<_> = streams
                .iter()
                .map(|s| {
                    let snap = s.snapshot();
                    crate::metrics::TrainSample {
                        train: snap.train_id.to_string(),
                        online: snap.online,
                        bytes_in: snap.bytes_in,
                        frames_in: snap.frames_in,
                        frames_dropped: snap.frames_dropped,
                        subscribers: snap.subscribers,
                        bitrate_bps: snap.bitrate_bps,
                        fps: snap.fps,
                    }
                })
                .collect();
            crate::metrics::set_trains(&samples);
            if let Some(remotes) = remotes.upgrade() {
                m.remote_controls.set(remotes.len() as i64);
            }
        })
    }

    /// Whether the server is shutting down.
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}
