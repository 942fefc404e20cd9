//! Remote controls (operators' consoles) and the train each one is mapped to.
//!
//! A mapping lives in a `watch` channel: every session of the remote control, whatever its
//! transport, sees a change at once and switches its subscription without reconnecting.
//!
//! With a state file (`state_file`), remote controls and their mappings survive a restart: the
//! file is rewritten (to a temporary file, then renamed) after every change and read at start-up.
//!
//! In a cluster every node holds the same remote controls: changes made here are announced
//! ([`RemoteControls::local_changes`]) and changes made on other nodes are applied
//! ([`RemoteControls::apply`], [`RemoteControls::apply_delete`]) by `cluster::state`.

use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;
use railcast_protocol::TrainId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::limits::{Limit, LimitHit};
use crate::state_file::{StateError, StateFile};

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
    /// The only non-admin client allowed to open sessions for it; `None`: any authenticated one.
    pub owner: Option<String>,
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
    /// Wake every session following this remote control without changing its mapping: they
    /// re-check what may have changed around it (the credentials, after a reload).
    pub fn nudge(&self) {
        self.mapping.send_modify(|_| {});
    }

    /// What the state file and the cluster keep of it.
    pub fn record(&self) -> Record {
        Record {
            id: self.id.clone(),
            name: self.name.clone(),
            owner: self.owner.clone(),
            train_id: self.train().map(|t| t.to_string()),
            created_at_ms: self.created_at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        }
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
#[derive(Debug)]
pub struct RemoteControls {
    map: DashMap<String, Arc<RemoteControl>>,
    max: usize,
    /// The state file, if there is one.
    store: Option<Arc<StateFile>>,
    /// Bumped by every change made on this node ([`RemoteControls::persist`]).
    local_changes: watch::Sender<u64>,
}

/// One remote control as the state file and the cluster keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub train_id: Option<String>,
    pub created_at_ms: u64,
}

/// This part's member of the state file.
const MEMBER: &str = "remote_controls";

impl RemoteControls {
    /// At most `max` remote controls; with `state_file`, load it (a missing file is an empty
    /// state) and keep it up to date.
    pub fn open(max: usize, state_file: Option<&Arc<StateFile>>) -> Result<Self, StateError> {
        let mut this = Self { map: DashMap::new(), max, store: None, local_changes: watch::Sender::new(0) };
        let Some(file) = state_file else { return Ok(this) };
        for s in file.get::<Vec<Record>>(MEMBER)? {
            let rc = Self::from_record(s).map_err(|message| file.error_in(message))?;
            this.map.insert(rc.id.clone(), Arc::new(rc));
        }
        this.store = Some(Arc::clone(file));
        Ok(this)
    }

    fn from_record(s: Record) -> Result<RemoteControl, String> {
        let train = match s.train_id {
            Some(t) => Some(TrainId::new(t).map_err(|e| format!("remote control {}: {e}", s.id))?),
            None => None,
        };
        Ok(RemoteControl {
            id: s.id,
            name: s.name,
            owner: s.owner,
            created_at: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(s.created_at_ms),
            mapping: watch::Sender::new(Mapping { train, deleted: false }),
        })
    }

    /// Call after every change made on this node: writes the state file, if there is one (a
    /// failure is logged: serving goes on), and tells the cluster.
    pub fn persist(&self) {
        self.local_changes.send_modify(|n| *n += 1);
        self.write_state_file();
    }

    /// Changes whenever a remote control is created, mapped or deleted on this node.
    pub fn local_changes(&self) -> watch::Receiver<u64> {
        self.local_changes.subscribe()
    }

    /// A remote control created or changed on another node: created here, or its mapping
    /// follows (its sessions switch at once). Its id, name and owner never change. Not counted
    /// against `max_remote_controls` (the node that created it counted it).
    pub fn apply(&self, record: Record) -> Result<(), String> {
        let train = match &record.train_id {
            Some(t) => Some(TrainId::new(t.clone()).map_err(|e| format!("remote control {}: {e}", record.id))?),
            None => None,
        };
        railcast_protocol::ids::validate_id(&record.id)
            .map_err(|e| format!("remote control id {:?}: {e}", record.id))?;
        match self.map.entry(record.id.clone()) {
            dashmap::Entry::Occupied(rc) => rc.get().set_train(train),
            dashmap::Entry::Vacant(slot) => {
                slot.insert(Arc::new(Self::from_record(record)?));
            }
        }
        self.write_state_file();
        Ok(())
    }

    /// A remote control deleted on another node: its sessions here close.
    pub fn apply_delete(&self, id: &str) {
        if self.delete(id).is_some() {
            self.write_state_file();
        }
    }

    fn write_state_file(&self) {
        let Some(file) = &self.store else { return };
        let records: Vec<Record> = self.list().iter().map(|rc| rc.record()).collect();
        file.set(MEMBER, &records);
    }

    /// Create one, unless `max_remote_controls` are defined already.
    pub fn create(&self, name: Option<String>, owner: Option<String>) -> Result<Arc<RemoteControl>, LimitHit> {
        if self.map.len() >= self.max {
            let max = self.max;
            return Err(Limit::RemoteControls
                .refuse(format!("{max} remote controls are defined already (max_remote_controls)")));
        }
        loop {
            let id = format!("rc-{:016x}", rand::random::<u64>());
            if let dashmap::Entry::Vacant(slot) = self.map.entry(id.clone()) {
                let rc = Arc::new(RemoteControl {
                    name: name.clone().unwrap_or_else(|| id.clone()),
                    id,
                    owner: owner.clone(),
                    created_at: SystemTime::now(),
                    mapping: watch::Sender::new(Mapping::default()),
                });
                slot.insert(Arc::clone(&rc));
                return Ok(rc);
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
