//! The registry of live transport sessions (one per connected client per transport).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

use crate::auth::Principal;
use crate::hub::SubscriberCounters;

/// A transport's name, as shown in the API and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    WebSocket,
    WebRtc,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::WebSocket, Transport::WebRtc];

    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::WebRtc => "webrtc",
        }
    }
}

/// One live session's identity and counters.
#[derive(Debug)]
pub struct SessionInfo {
    pub id: u64,
    pub remote_control_id: String,
    /// Whose token opened it.
    pub principal: Principal,
    pub transport: Transport,
    pub peer: String,
    pub connected_at: SystemTime,
    /// Hub-side counters: queued and dropped.
    pub hub: Arc<SubscriberCounters>,
    /// Transport-side counters: handed to the socket.
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub events_sent: AtomicU64,
    pub commands: AtomicU64,
}

/// All live sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    map: DashMap<u64, Arc<SessionInfo>>,
    next_id: AtomicU64,
}

impl Sessions {
    /// Register a session; it is removed when the guard drops.
    pub fn register(
        self: &Arc<Self>,
        remote_control_id: &str,
        principal: Principal,
        transport: Transport,
        peer: String,
    ) -> SessionGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(SessionInfo {
            id,
            remote_control_id: remote_control_id.to_owned(),
            principal,
            transport,
            peer,
            connected_at: SystemTime::now(),
            hub: Arc::new(SubscriberCounters::default()),
            packets_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            events_sent: AtomicU64::new(0),
            commands: AtomicU64::new(0),
        });
        self.map.insert(id, Arc::clone(&info));
        SessionGuard { sessions: Arc::clone(self), info }
    }

    /// Sessions of one remote control, oldest first.
    pub fn of_remote_control(&self, id: &str) -> Vec<Arc<SessionInfo>> {
        let mut v: Vec<_> =
            self.map.iter().filter(|s| s.remote_control_id == id).map(|s| Arc::clone(s.value())).collect();
        v.sort_by_key(|s| s.id);
        v
    }

    pub fn all(&self) -> Vec<Arc<SessionInfo>> {
        let mut v: Vec<_> = self.map.iter().map(|s| Arc::clone(s.value())).collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

/// Keeps a session registered while alive.
#[derive(Debug)]
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    pub info: Arc<SessionInfo>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.map.remove(&self.info.id);
    }
}
