//! The state every node shares, in JetStream key-value buckets (docs/cluster.md):
//! - `railcast_remote_controls`: remote control id → its record (name, owner, mapped train);
//! - `railcast_revocations`: SHA-256 of a revoked token → the revocation;
//! - `railcast_trains`: train → the node that claimed it last (the owner's part, [`super::owner`]).
//!
//! Each node watches the first two buckets and applies what other nodes change to its own
//! [`RemoteControls`] and [`Auth`], so sessions everywhere follow a remap or a revocation at once;
//! what changes on this node is written to the bucket. The bucket is the truth: a node joining a
//! cluster whose bucket holds remote controls takes them and drops its own (from its state file);
//! the first node of a new cluster fills the empty bucket with its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, OnceCell};

use super::{rejected, Shared};
use crate::auth::{Auth, Revocation};
use crate::remote::{Record, RemoteControls};

pub const REMOTE_CONTROLS: &str = "railcast_remote_controls";
pub const REVOCATIONS: &str = "railcast_revocations";
pub const TRAINS: &str = "railcast_trains";

/// How long a bucket operation may take before it counts as failed (NATS away).
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before trying again what failed (opening a bucket, writing a change).
const RETRY: Duration = Duration::from_secs(1);
/// How often a node compares what its watch delivered with the bucket's last revision. A watch
/// was seen to fall silent, without an error, when the NATS server leading the bucket died; one
/// that has not reached the revision the bucket had a check before is made again.
const WATCH_CHECK: Duration = Duration::from_secs(2);

/// The buckets, opened (made if missing) on first use.
#[derive(Debug, Clone)]
pub struct Buckets {
    js: jetstream::Context,
    replicas: usize,
    open: Arc<HashMap<&'static str, OnceCell<kv::Store>>>,
}

impl Buckets {
    pub fn new(client: async_nats::Client, replicas: usize) -> Self {
        let open = [REMOTE_CONTROLS, REVOCATIONS, TRAINS].into_iter().map(|b| (b, OnceCell::new())).collect();
        Self { js: jetstream::new(client), replicas, open: Arc::new(open) }
    }

    /// What the bucket `name` holds now: its number of entries and its last revision.
    /// (`kv::Store::status` answers what the store read when it was opened.)
    pub async fn state(&self, name: &str) -> Result<(u64, u64), String> {
        match tokio::time::timeout(OP_TIMEOUT, self.js.get_stream(format!("KV_{name}"))).await {
            Ok(Ok(stream)) => {
                let state = &stream.cached_info().state;
                Ok((state.messages, state.last_sequence))
            }
            Ok(Err(e)) => Err(format!("bucket {name}: {e}")),
            Err(_) => Err(format!("bucket {name}: JetStream did not answer (stream info)")),
        }
    }

    /// The bucket `name`, made with one value per key and `cluster_kv_replicas` copies if it does
    /// not exist yet.
    pub async fn get(&self, name: &'static str) -> Result<kv::Store, String> {
        let cell = self.open.get(name).ok_or_else(|| format!("no bucket {name}"))?;
        cell.get_or_try_init(|| async {
            let timed = |what: &str| format!("bucket {name}: JetStream did not answer ({what})");
            // Another node made it already, most of the time: take it.
            if let Ok(Ok(store)) = tokio::time::timeout(OP_TIMEOUT * 3, self.js.get_key_value(name)).await {
                return Ok(store);
            }
            let config = kv::Config {
                bucket: name.to_owned(),
                history: 1,
                num_replicas: self.replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            };
            match tokio::time::timeout(OP_TIMEOUT * 3, self.js.create_key_value(config)).await {
                Ok(Ok(store)) => Ok(store),
                // Made by another node meanwhile?
                Ok(Err(e)) => match tokio::time::timeout(OP_TIMEOUT * 3, self.js.get_key_value(name)).await {
                    Ok(Ok(store)) => Ok(store),
                    _ => Err(format!("bucket {name}: {e}")),
                },
                Err(_) => Err(timed("create")),
            }
        })
        .await
        .cloned()
    }
}

/// A key of the buckets for an id (train ids and remote control ids may hold dots, which a key
/// may not start or end with nor double): `.` is written `=2e` (ids never hold `=`).
pub fn key_of(id: &str) -> String {
    id.replace('.', "=2e")
}

/// The id a key stands for.
pub fn id_of(key: &str) -> String {
    key.replace("=2e", ".")
}

/// A local store that the cluster keeps in step with one bucket.
trait Replica: Send + 'static {
    /// Its `kind` in `railcast_cluster_rejected_total`.
    const KIND: &'static str;
    const BUCKET: &'static str;
    type Value: Serialize + DeserializeOwned + PartialEq + Clone + Send;
    /// Id → value, as this node has it now.
    fn local(&self) -> BTreeMap<String, Self::Value>;
    /// A value another node wrote.
    fn apply(&self, id: &str, value: Self::Value) -> Result<(), String>;
    /// A key another node deleted.
    fn remove(&self, id: &str);
    /// Changes when this node changed something.
    fn changes(&self) -> watch::Receiver<u64>;
}

struct Remotes(Arc<RemoteControls>);

impl Replica for Remotes {
    const KIND: &'static str = "remote_control";
    const BUCKET: &'static str = REMOTE_CONTROLS;
    type Value = Record;
    fn local(&self) -> BTreeMap<String, Record> {
        self.0.list().iter().map(|rc| (rc.id.clone(), rc.record())).collect()
    }
    fn apply(&self, id: &str, value: Record) -> Result<(), String> {
        if value.id != id {
            return Err(format!("key {id:?} holds remote control {:?}", value.id));
        }
        self.0.apply(value)
    }
    fn remove(&self, id: &str) {
        self.0.apply_delete(id);
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.0.local_changes()
    }
}

struct Revocations(Arc<Auth>);

impl Replica for Revocations {
    const KIND: &'static str = "revocation";
    const BUCKET: &'static str = REVOCATIONS;
    type Value = Revocation;
    fn local(&self) -> BTreeMap<String, Revocation> {
        self.0.revocations().into_iter().map(|r| (r.sha256.clone(), r)).collect()
    }
    fn apply(&self, id: &str, value: Revocation) -> Result<(), String> {
        if crate::auth::normalize_sha256(id).as_deref() != Some(id) || value.sha256 != id {
            return Err(format!("key {id:?} is not the revocation's SHA-256 in lower-case hex"));
        }
        self.0.apply_revocation(value);
        Ok(())
    }
    fn remove(&self, id: &str) {
        self.0.apply_unrevocation(id);
    }
    fn changes(&self) -> watch::Receiver<u64> {
        self.0.local_revocations()
    }
}

/// How many buckets [`run`] keeps in step.
pub const SYNCED: usize = 2;

/// Keep remote controls and revocations in step with the buckets until `shutdown`. `in_step`
/// counts the buckets whose content this node has taken (`/readyz` waits for all).
pub async fn run(
    buckets: Buckets,
    shared: Shared,
    in_step: Arc<watch::Sender<usize>>,
    shutdown: watch::Receiver<bool>,
) {
    let remotes = tokio::spawn(sync(buckets.clone(), Remotes(shared.remotes), Arc::clone(&in_step), shutdown.clone()));
    let revocations = tokio::spawn(sync(buckets, Revocations(shared.auth), in_step, shutdown));
    let _ = tokio::join!(remotes, revocations);
}

/// What one node knows of a bucket: key → value as last seen there.
type Known<V> = HashMap<String, V>;

async fn sync<R: Replica>(
    buckets: Buckets,
    replica: R,
    in_step: Arc<watch::Sender<usize>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = replica.changes();
    let mut quiet = false;
    // Open the bucket and take what it holds, until that works.
    let (store, mut known, mut watch, mut seen) = loop {
        match initial(&buckets, &replica).await {
            Ok(v) => break v,
            Err(e) => {
                if !quiet {
                    tracing::error!(bucket = R::BUCKET, "cluster: shared state not available yet, retrying: {e}");
                    quiet = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.changed() => return,
        }
    };
    tracing::info!(bucket = R::BUCKET, entries = known.len(), "cluster: shared state in step");
    in_step.send_modify(|n| *n += 1);
    changes.mark_unchanged();
    // Something of this node's not written yet (a failed write): try again.
    let mut dirty = push(&store, &replica, &mut known).await.is_err();
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(WATCH_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The bucket's last revision at the previous check, when the watch had not delivered it yet.
    let mut due: Option<u64> = None;
    loop {
        tokio::select! {
            entry = watch.next() => match entry {
                Some(Ok(entry)) => {
                    tracing::debug!(bucket = R::BUCKET, key = %entry.key, revision = entry.revision, "cluster: change seen");
                    seen = seen.max(entry.revision);
                    take(&replica, &mut known, entry);
                }
                Some(Err(e)) => tracing::warn!(bucket = R::BUCKET, "cluster: watch: {e}"),
                None => {
                    // The watch ended (NATS gone for long): watch again after what was seen.
                    tokio::time::sleep(RETRY).await;
                    match store.watch_all_from_revision(seen + 1).await {
                        Ok(w) => watch = w,
                        Err(e) => tracing::debug!(bucket = R::BUCKET, "cluster: watch again: {e}"),
                    }
                }
            },
            _ = check.tick() => {
                let last = match buckets.state(R::BUCKET).await {
                    Ok((_, last)) => last,
                    Err(e) => { tracing::debug!("cluster: {e}"); continue }
                };
                match due {
                    Some(d) if seen < d => {
                        tracing::warn!(bucket = R::BUCKET, seen, due = d, last, "cluster: the watch fell behind the bucket: watching again");
                        // Bounded: making a consumer waits for JetStream's meta leader, which
                        // may be the server that died; the next check tries again.
                        match tokio::time::timeout(OP_TIMEOUT, store.watch_all_from_revision(seen + 1)).await {
                            Ok(Ok(w)) => {
                                watch = w;
                                due = None;
                            }
                            Ok(Err(e)) => tracing::debug!(bucket = R::BUCKET, "cluster: watch again: {e}"),
                            Err(_) => tracing::debug!(bucket = R::BUCKET, "cluster: watch again: JetStream did not answer"),
                        }
                    }
                    _ => due = (last > seen).then_some(last),
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                dirty = push(&store, &replica, &mut known).await.is_err();
            }
            _ = retry.tick(), if dirty => dirty = push(&store, &replica, &mut known).await.is_err(),
            _ = shutdown.changed() => return,
        }
    }
}

/// Open the bucket, apply what it holds (or fill it with this node's entries when it is empty),
/// and watch it from there. Also returns the last revision taken in.
async fn initial<R: Replica>(
    buckets: &Buckets,
    replica: &R,
) -> Result<(kv::Store, Known<R::Value>, kv::Watch, u64), String> {
    let store = buckets.get(R::BUCKET).await?;
    let timed = |what: &'static str| move |_| format!("{what}: JetStream did not answer");
    // Watch first, so that nothing written between reading and watching is missed; the watch
    // replays the current value of each key (`watch_all` would start with the next change only),
    // which `take` applies.
    let mut watch = store.watch_with_history(">").await.map_err(|e| format!("watch: {e}"))?;
    let (messages, last) = buckets.state(R::BUCKET).await?;
    let mut known = Known::new();
    if messages == 0 {
        // A new cluster: this node's state fills it.
        return Ok((store, known, watch, last));
    }
    let mut seen = 0;
    while let Some(entry) = tokio::time::timeout(OP_TIMEOUT, watch.next()).await.map_err(timed("replay"))? {
        let entry = entry.map_err(|e| format!("replay: {e}"))?;
        seen = entry.revision;
        take(replica, &mut known, entry);
        if seen >= last {
            break;
        }
    }
    // The bucket wins: what this node had and the cluster does not is dropped.
    for id in replica.local().keys() {
        if !known.contains_key(id) {
            tracing::info!(bucket = R::BUCKET, id = %id, "cluster: not in the shared state, dropped here");
            replica.remove(id);
        }
    }
    Ok((store, known, watch, seen))
}

/// Apply one entry of the bucket here, unless it is what this node already has.
fn take<R: Replica>(replica: &R, known: &mut Known<R::Value>, entry: kv::Entry) {
    let id = id_of(&entry.key);
    match entry.operation {
        kv::Operation::Put => match serde_json::from_slice::<R::Value>(&entry.value) {
            Ok(value) => {
                if known.get(&id) == Some(&value) {
                    return;
                }
                if let Err(e) = replica.apply(&id, value.clone()) {
                    return rejected(R::KIND, &entry.key, &e);
                }
                known.insert(id, value);
            }
            Err(e) => rejected(R::KIND, &entry.key, &e),
        },
        kv::Operation::Delete | kv::Operation::Purge => {
            // Removing what is not here is nothing.
            known.remove(&id);
            replica.remove(&id);
        }
    }
}

/// Write what changed on this node: new and changed values, and deletions.
async fn push<R: Replica>(store: &kv::Store, replica: &R, known: &mut Known<R::Value>) -> Result<(), ()> {
    let local = replica.local();
    let mut result = Ok(());
    for (id, value) in &local {
        if known.get(id) == Some(value) {
            continue;
        }
        let body = bytes::Bytes::from(serde_json::to_vec(value).expect("plain data serialises"));
        match tokio::time::timeout(OP_TIMEOUT, store.put(key_of(id), body)).await {
            Ok(Ok(_)) => {
                known.insert(id.clone(), value.clone());
            }
            Ok(Err(e)) => {
                tracing::warn!(bucket = R::BUCKET, id = %id, "cluster: cannot share a change, will retry: {e}");
                result = Err(());
            }
            Err(_) => {
                tracing::debug!(bucket = R::BUCKET, id = %id, "cluster: sharing a change: JetStream did not answer, will retry");
                result = Err(());
            }
        }
    }
    let gone: Vec<String> = known.keys().filter(|id| !local.contains_key(*id)).cloned().collect();
    for id in gone {
        match tokio::time::timeout(OP_TIMEOUT, store.delete(key_of(&id))).await {
            Ok(Ok(())) => {
                known.remove(&id);
            }
            Ok(Err(e)) => {
                tracing::warn!(bucket = R::BUCKET, id = %id, "cluster: cannot share a deletion, will retry: {e}");
                result = Err(());
            }
            Err(_) => result = Err(()),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_any_id() {
        for id in ["train-1", ".", "..", "a.b", ".x.", "rc-00ff"] {
            let key = key_of(id);
            assert!(!key.starts_with('.') && !key.ends_with('.') && !key.contains(".."), "{key}");
            assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || "-_=/".contains(c)), "{key}");
            assert_eq!(id_of(&key), id);
        }
    }
}
