//! Remote controls (operators' consoles) and the train each one is mapped to.
//!
//! A mapping lives in a `watch` channel: every session of the remote control, whatever its
//! transport, sees a change at once and switches its subscription without reconnecting.

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;
use railcast_protocol::TrainId;
use tokio::sync::watch;

/// What a remote control's sessions follow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    pub train: Option<TrainId>,
    /// The remote control was deleted: sessions close.
    pub deleted: bool,
}

#[derive(Debug)]
pub struct RemoteControl {
    pub id: String,
    pub name: String,
    pub created_at: SystemTime,
    mapping: watch::Sender<Mapping>,
}

impl RemoteControl {
    pub fn train(&self) -> Option<TrainId> {
        self.mapping.borrow().train.clone()
    }
    pub fn watch(&self) -> watch::Receiver<Mapping> {
        self.mapping.subscribe()
    }
    pub fn set_train(&self, train: Option<TrainId>) {
        self.mapping.send_if_modified(|m| {
            let changed = m.train != train;
            m.train = train;
            changed
        });
    }
}

/// All remote controls.
#[derive(Debug, Default)]
pub struct RemoteControls {
    map: DashMap<String, Arc<RemoteControl>>,
}

impl RemoteControls {
    pub fn create(&self, name: Option<String>) -> Arc<RemoteControl> {
        loop {
            let id = format!("rc-{:016x}", rand::random::<u64>());
            if let dashmap::Entry::Vacant(slot) = self.map.entry(id.clone()) {
                let rc = Arc::new(RemoteControl {
                    name: name.clone().unwrap_or_else(|| id.clone()),
                    id,
                    created_at: SystemTime::now(),
                    mapping: watch::Sender::new(Mapping::default()),
                });
                slot.insert(Arc::clone(&rc));
                return rc;
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<RemoteControl>> {
        self.map.get(id).map(|r| Arc::clone(r.value()))
    }

    /// Every remote control, oldest first.
    pub fn list(&self) -> Vec<Arc<RemoteControl>> {
        let mut all: Vec<_> = self.map.iter().map(|r| Arc::clone(r.value())).collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        all
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Remove it; its sessions see `deleted` and close.
    pub fn delete(&self, id: &str) -> Option<Arc<RemoteControl>> {
        let (_, rc) = self.map.remove(id)?;
        rc.mapping.send_modify(|m| m.deleted = true);
        Some(rc)
    }
}
