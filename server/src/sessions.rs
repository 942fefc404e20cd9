//! The registry of live client sessions: one per connected client per transport, whatever the
//! transport. The API lists them; `railcast_sessions{transport}` counts them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

use crate::auth::Principal;
use crate::hub::SubscriberCounters;
use crate::metrics::METRICS;

/// One live client session's identity and counters.
#[derive(Debug)]
pub struct ClientSession {
    pub id: u64,
    pub remote_control_id: String,
    /// Whose token opened it.
    pub principal: Principal,
    /// The transport's name, as shown in the API and metric labels (`websocket`, `webrtc`).
    pub transport: &'static str,
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

impl ClientSession {
    /// Count video packets handed to the transport.
    pub fn sent(&self, packets: u64, bytes: u64) {
        self.packets_sent.fetch_add(packets, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// All live sessions.
#[derive(Debug, Default)]
pub struct Registry {
    map: DashMap<u64, Arc<ClientSession>>,
    next_id: AtomicU64,
    /// Woken each time the last session ends.
    emptied: tokio::sync::Notify,
}

impl Registry {
    /// Make `transport`'s session gauge exist (at 0) before its first session.
    pub fn declare_transport(transport: &'static str) {
        let _ = METRICS.sessions.with_label_values(&[transport]);
    }

    /// Register a session; it is removed when the returned guard drops.
    pub fn register(
        self: &Arc<Self>,
        remote_control_id: &str,
        principal: Principal,
        transport: &'static str,
        peer: String,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientSession {
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
        METRICS.sessions.with_label_values(&[transport]).inc();
        Registration { registry: Arc::clone(self), info }
    }

    /// Sessions of one remote control, oldest first.
    pub fn of_remote_control(&self, id: &str) -> Vec<Arc<ClientSession>> {
        let mut v: Vec<_> =
            self.map.iter().filter(|s| s.remote_control_id == id).map(|s| Arc::clone(s.value())).collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// Resolves once no session is live (at shutdown: every session has said its goodbye).
    pub async fn wait_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.map.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    pub fn all(&self) -> Vec<Arc<ClientSession>> {
        let mut v: Vec<_> = self.map.iter().map(|s| Arc::clone(s.value())).collect();
        v.sort_by_key(|s| s.id);
        v
    }
}

/// Keeps a session registered while alive.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    pub info: Arc<ClientSession>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.registry.map.remove(&self.info.id).is_some() {
            METRICS.sessions.with_label_values(&[self.info.transport]).dec();
        }
        if self.registry.map.is_empty() {
            self.registry.emptied.notify_waiters();
        }
    }
}
