//! The command audit: every command a client sends (accepted or refused), and every take and
//! release of a train's control lease, with who, through what, to which train, and how it ended, appended as one JSON line to `audit_file` (rotated by size,
//! never rewritten) and queryable by admins (`GET /api/audit`). Without a file the latest
//! [`MEMORY`] entries are kept in memory only.
//!
//! Appends never wait on the disk: entries go to a writer thread. A leaf: it imports nothing of
//! the server but `config`'s error type.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Entries kept in memory without a file.
pub const MEMORY: usize = 10_000;
/// Most entries one query returns.
pub const MAX_PAGE: usize = 1_000;

/// One command, as audited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// Increasing over the log's whole life (restarts included): the pagination cursor.
    pub seq: u64,
    /// When the server got the command, µs since the UNIX epoch.
    pub at_us: u64,
    /// The principal's name and role.
    pub principal: String,
    pub role: String,
    pub remote_control_id: String,
    /// The client session (`GET /api/sessions`).
    pub session: u64,
    pub transport: String,
    /// The train the remote control was mapped to; null when unmapped.
    pub train_id: Option<String>,
    pub request_id: String,
    /// The action as the client sent it (`{"type": "horn", "duration_ms": 500}`), or the control
    /// message (`{"type": "take_control", "force": true}`, `{"type": "release_control"}`).
    #[schema(value_type = Object)]
    pub command: Value,
    /// `acked` (the train answered; see `ok`), `refused` (by the server, before the train),
    /// `failed` (sent, no answer: timeout, train lost), or `done` (a `take_control` or
    /// `release_control` carried out: `message` is the lease's change, `taken`, `resumed`,
    /// `taken over by …`, `released`, or `held` when this session held it already).
    pub result: String,
    /// The train's answer (acked only).
    pub ok: Option<bool>,
    /// The refusal's or failure's code (`forbidden`, `rate_limited`, `not_mapped`, …).
    pub code: Option<String>,
    pub message: String,
    /// The train's command id (sent commands).
    pub command_id: Option<u64>,
    /// Sent → answered, µs (acked only).
    pub rtt_us: Option<u64>,
    /// The node that recorded it (`cluster_node_id`); absent on a server outside a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A query: `train`, `since`/`until` (µs, inclusive), the cursors `after` and `before` (a
/// `seq`, exclusive), at most `limit`, in `order`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
pub struct Query {
    /// Only this train's commands.
    pub train: Option<String>,
    /// From this time on, µs since the UNIX epoch.
    pub since: Option<u64>,
    /// Up to this time, µs since the UNIX epoch.
    pub until: Option<u64>,
    /// Entries after this `seq` (oldest first: the previous page's `next`).
    pub after: Option<u64>,
    /// Entries before this `seq` (newest first: the previous page's `next`).
    pub before: Option<u64>,
    /// At most this many (default and maximum 1,000).
    pub limit: Option<usize>,
    /// `oldest` first (the default) or `newest` first: `?order=newest&limit=50` is the last 50
    /// commands without reading the log from its start.
    #[param(inline)]
    pub order: Option<Order>,
    /// In a cluster: where a cluster-wide query goes on, the previous page's `cursor` (or
    /// `resume`). Comma-separated `node:seq` pairs: in `oldest` order the entries after `seq` on
    /// each node named, in `newest` order those before it; a node not named from its start
    /// (oldest) or its newest entry (newest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// In a cluster, `cluster` (the default) merges every node's entries; `node` reads this node's
    /// log alone, paged with `after` and `before`. Outside a cluster only `node` is meaningful.
    #[param(inline)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

/// Whose entries a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Node,
    Cluster,
}

/// The order of a page's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Oldest,
    Newest,
}

/// One page of entries, in the query's order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// The last entry's `seq` when more match: pass it as `after` (oldest first) or `before`
    /// (newest first) for the next page; null when this page is the last. One node's log only:
    /// null in a cluster-wide page.
    pub next: Option<u64>,
    /// A cluster-wide page: when more match, pass it as `cursor` (with the same order and
    /// filters) for the next page; null when this page is the last, and outside a cluster.
    #[serde(default)]
    pub cursor: Option<String>,
    /// A cluster-wide page: the `cursor` that reads, oldest first, only what is recorded after
    /// this page: every node that answered at its newest entry (a console polls with it).
    #[serde(default)]
    pub resume: Option<String>,
    /// A cluster-wide page: the nodes known to be up that did not answer in time (their entries
    /// are missing from this page; a later page with `resume` picks them up from their start).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl Page {
    /// One node's page.
    pub fn of_node(entries: Vec<Entry>, next: Option<u64>) -> Self {
        Self { entries, next, cursor: None, resume: None, missing: Vec::new() }
    }
}

/// Why the audit log cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

enum Store {
    Memory(Mutex<VecDeque<Entry>>),
    File { path: PathBuf, keep: usize, tx: Mutex<mpsc::Sender<Job>> },
}

/// What the writer thread is given: an entry to append, or a query's barrier (answered once
/// every entry sent before it is in the file).
enum Job {
    Entry(Box<Entry>),
    Sync(mpsc::SyncSender<()>),
}

/// A query waits at most this long for the writer to take in the entries recorded before it.
const SYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The audit log.
pub struct Audit {
    store: Store,
    seq: AtomicU64,
    /// The cluster node id stamped on every entry (set once, when the node joins a cluster).
    node: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("seq", &self.seq).finish_non_exhaustive()
    }
}

impl Audit {
    /// Kept in memory only.
    pub fn memory() -> Arc<Self> {
        Arc::new(Self {
            store: Store::Memory(Mutex::new(VecDeque::new())),
            seq: AtomicU64::new(0),
            node: std::sync::OnceLock::new(),
        })
    }

    /// Appended to `path` (created if needed), rotated at `max_bytes` into `path.1` … `path.KEEP`.
    /// The sequence goes on from the last entry already there.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<Arc<Self>, AuditError> {
        let err = |source| AuditError { path: path.to_owned(), source };
        let last = read_file(path).map_err(err)?.last().map_or(0, |e| e.seq);
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (writer_path, writer_keep) = (path.to_owned(), keep);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(rx, file, &writer_path, max_bytes, writer_keep))
            .map_err(err)?;
        Ok(Arc::new(Self {
            store: Store::File { path: path.to_owned(), keep, tx: Mutex::new(tx) },
            seq: AtomicU64::new(last),
            node: std::sync::OnceLock::new(),
        }))
    }

    /// Stamp every entry recorded from now on with this cluster node id.
    pub fn set_node(&self, node: &str) {
        let _ = self.node.set(node.to_owned());
    }

    /// Append one entry (its `seq`, and in a cluster its `node`, are set here).
    pub fn record(&self, mut entry: Entry) {
        entry.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        entry.node = self.node.get().cloned();
        match &self.store {
            Store::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                if m.len() >= MEMORY {
                    m.pop_front();
                }
                m.push_back(entry);
            }
            Store::File { tx, .. } => {
                let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(Job::Entry(Box::new(entry)));
            }
        }
    }

    /// The entries that match `q`, in its order.
    pub fn query(&self, q: &Query) -> Page {
        let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        let matches = |e: &Entry| {
            q.after.is_none_or(|a| e.seq > a)
                && q.before.is_none_or(|b| e.seq < b)
                && q.since.is_none_or(|s| e.at_us >= s)
                && q.until.is_none_or(|u| e.at_us <= u)
                && q.train.as_deref().is_none_or(|t| e.train_id.as_deref() == Some(t))
        };
        // Both stores hold entries in `seq` order, files oldest to newest: walk them in the
        // query's order and stop at one entry past the page (newest first no longer reads or
        // clones the whole log for its last few entries).
        let newest = q.order.unwrap_or_default() == Order::Newest;
        let want = limit + 1;
        let mut entries: Vec<Entry> = Vec::new();
        match &self.store {
            Store::Memory(m) => {
                let m = m.lock().unwrap_or_else(|e| e.into_inner());
                if newest {
                    entries.extend(m.iter().rev().filter(|e| matches(e)).take(want).cloned());
                } else {
                    entries.extend(m.iter().filter(|e| matches(e)).take(want).cloned());
                }
            }
            Store::File { path, keep, tx } => {
                // What was recorded before this query is in the file first (an entry is
                // recorded before the client hears the command's outcome).
                let (done, synced) = mpsc::sync_channel(1);
                if tx.lock().unwrap_or_else(|e| e.into_inner()).send(Job::Sync(done)).is_ok() {
                    let _ = synced.recv_timeout(SYNC_TIMEOUT);
                }
                let mut files: Vec<PathBuf> =
                    (1..=*keep).rev().map(|i| rotated(path, i)).chain(std::iter::once(path.clone())).collect();
                if newest {
                    files.reverse();
                }
                for p in files {
                    let mut file = read_file(&p).unwrap_or_default();
                    if newest {
                        file.reverse();
                    }
                    let room = want - entries.len();
                    entries.extend(file.into_iter().filter(|e| matches(e)).take(room));
                    if entries.len() == want {
                        break;
                    }
                }
            }
        }
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next = if more { entries.last().map(|e| e.seq) } else { None };
        Page::of_node(entries, next)
    }

    /// This node's part of a cluster-wide query: its entries after (or before) the seq the
    /// cursor names for `node`, and its newest seq.
    pub fn part(&self, node: &str, request: &ClusterRequest) -> NodePart {
        let last_seq = self.seq.load(Ordering::Relaxed);
        let mine = request.cursor.get(node).copied();
        let newest = request.query.order.unwrap_or_default() == Order::Newest;
        let q = Query {
            after: if newest { None } else { mine },
            before: if newest { mine } else { None },
            cursor: None,
            scope: None,
            ..request.query.clone()
        };
        let mut page = self.query(&q);
        // Entries recorded before this node joined a cluster (or before railcast stamped them)
        // are this node's too.
        for e in &mut page.entries {
            e.node.get_or_insert_with(|| node.to_owned());
        }
        NodePart { node: node.to_owned(), entries: page.entries, more: page.next.is_some(), last_seq }
    }
}

/// A cluster-wide query as one node asks every other (NATS `railcast.audit`): the filters, and
/// the seq each node goes on from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterRequest {
    pub query: Query,
    pub cursor: std::collections::BTreeMap<String, u64>,
}

/// One node's answer: its page of the query, in the query's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodePart {
    pub node: String,
    pub entries: Vec<Entry>,
    /// More of its entries match than it sent.
    pub more: bool,
    /// Its newest entry's seq, matching or not.
    pub last_seq: u64,
}

/// The largest answer a node sends another (NATS' default `max_payload` is 1 MiB).
pub const MAX_PART_BYTES: usize = 512 * 1024;

impl NodePart {
    /// As JSON of at most `max` bytes: entries dropped from the end (then `more` is set) until it
    /// fits; the asker's cursor goes on from the last entry it got.
    pub fn to_json_within(mut self, max: usize) -> Vec<u8> {
        loop {
            let body = serde_json::to_vec(&self).unwrap_or_default();
            if body.len() <= max || self.entries.is_empty() {
                return body;
            }
            let keep = (self.entries.len() * max / body.len()).min(self.entries.len() - 1);
            self.entries.truncate(keep);
            self.more = true;
        }
    }
}

/// Why a cursor is refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cursor: {0}")]
pub struct CursorError(String);

/// `node:seq,node:seq` → node → seq.
pub fn parse_cursor(s: &str) -> Result<std::collections::BTreeMap<String, u64>, CursorError> {
    let mut out = std::collections::BTreeMap::new();
    for pair in s.split(',').filter(|p| !p.is_empty()) {
        let (node, seq) = pair.rsplit_once(':').ok_or_else(|| CursorError(format!("{pair:?} is not node:seq")))?;
        let seq: u64 = seq.parse().map_err(|_| CursorError(format!("{seq:?} is not a seq")))?;
        if node.is_empty()
            || node.len() > 64
            || !node.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(CursorError(format!("{node:?} is not a node id")));
        }
        if out.insert(node.to_owned(), seq).is_some() {
            return Err(CursorError(format!("{node:?} is named twice")));
        }
    }
    if out.len() > 256 {
        return Err(CursorError("more than 256 nodes".into()));
    }
    Ok(out)
}

fn format_cursor(c: &std::collections::BTreeMap<String, u64>) -> String {
    c.iter().map(|(n, s)| format!("{n}:{s}")).collect::<Vec<_>>().join(",")
}

/// One cluster-wide page from every node's part: merged by `at_us` in the query's order (ties by
/// node, then seq), each node's entries kept in its own order, at most the query's limit.
pub fn merge(request: &ClusterRequest, parts: Vec<NodePart>, missing: Vec<String>) -> Page {
    let limit = request.query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let newest = request.query.order.unwrap_or_default() == Order::Newest;
    let mut parts = parts;
    let mut heads: Vec<std::collections::VecDeque<Entry>> =
        parts.iter_mut().map(|p| std::mem::take(&mut p.entries).into()).collect();
    let mut cursor = request.cursor.clone();
    let mut entries = Vec::new();
    while entries.len() < limit {
        let key = |e: &Entry| (e.at_us, e.node.clone().unwrap_or_default(), e.seq);
        let pick = heads.iter().enumerate().filter_map(|(i, h)| h.front().map(|e| (i, key(e)))).reduce(|a, b| {
            if (b.1 < a.1) != newest {
                b
            } else {
                a
            }
        });
        let Some((i, _)) = pick else { break };
        let e = heads[i].pop_front().expect("a head");
        cursor.insert(parts[i].node.clone(), e.seq);
        entries.push(e);
    }
    let more = parts.iter().zip(&heads).any(|(p, h)| p.more || !h.is_empty());
    // What comes after this page, oldest first: each node that answered at its newest entry.
    let mut resume = cursor.clone();
    for p in &parts {
        let taken = cursor.get(&p.node).copied().unwrap_or(0);
        resume.insert(p.node.clone(), p.last_seq.max(taken));
    }
    // A node whose part was not read to its end (oldest first) goes on from its last entry taken.
    if !newest {
        for (p, h) in parts.iter().zip(&heads) {
            if p.more || !h.is_empty() {
                match cursor.get(&p.node) {
                    Some(s) => resume.insert(p.node.clone(), *s),
                    None => resume.remove(&p.node),
                };
            }
        }
    }
    Page {
        entries,
        next: None,
        cursor: more.then(|| format_cursor(&cursor)),
        resume: Some(format_cursor(&resume)),
        missing,
    }
}

fn rotated(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The entries of one file; a missing file has none, a line that is not an entry (a torn last
/// line after a crash) is skipped.
fn read_file(path: &Path) -> std::io::Result<Vec<Entry>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(BufReader::new(file).lines().map_while(Result::ok).filter_map(|l| serde_json::from_str(&l).ok()).collect())
}

/// The writer thread: one line per entry, flushed; rotation when the file reaches `max_bytes`.
fn write_loop(rx: mpsc::Receiver<Job>, mut file: File, path: &Path, max_bytes: u64, keep: usize) {
    let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
    for job in rx {
        let entry = match job {
            Job::Entry(e) => e,
            Job::Sync(done) => {
                let _ = done.try_send(());
                continue;
            }
        };
        let mut line = serde_json::to_vec(&entry).unwrap_or_default();
        line.push(b'\n');
        if size > 0 && size + line.len() as u64 > max_bytes {
            // path.KEEP is dropped, path.i becomes path.i+1, path becomes path.1.
            for i in (1..keep).rev() {
                let _ = std::fs::rename(rotated(path, i), rotated(path, i + 1));
            }
            let _ = std::fs::rename(path, rotated(path, 1));
            match OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => {
                    file = f;
                    size = 0;
                }
                Err(e) => tracing::error!(path = %path.display(), "cannot open a new audit file: {e}"),
            }
        }
        match file.write_all(&line).and_then(|()| file.flush()) {
            Ok(()) => size += line.len() as u64,
            Err(e) => tracing::error!(path = %path.display(), seq = entry.seq, "audit entry not written: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(train: &str, at_us: u64) -> Entry {
        Entry {
            seq: 0,
            at_us,
            principal: "op".into(),
            role: "operator".into(),
            remote_control_id: "rc-1".into(),
            session: 1,
            transport: "websocket".into(),
            train_id: Some(train.into()),
            request_id: "r".into(),
            command: serde_json::json!({"type": "horn"}),
            result: "acked".into(),
            ok: Some(true),
            code: None,
            message: String::new(),
            command_id: Some(1),
            rtt_us: Some(5),
            node: None,
        }
    }

    #[test]
    fn files_rotate_and_the_sequence_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("railcast-audit-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.jsonl");
        let audit = Audit::open(&path, 1_000, 3).expect("open");
        for i in 0..20 {
            audit.record(entry(if i % 2 == 0 { "train-1" } else { "train-2" }, 1_000 + i));
        }
        // A query sees every entry recorded before it, with no wait on the caller's side.
        assert!(audit.query(&Query::default()).entries.iter().any(|e| e.seq == 20), "all 20 written");
        assert!(rotated(&path, 3).exists() && !rotated(&path, 4).exists(), "rotated at 1,000 bytes, 3 kept");
        drop(audit);
        let again = Audit::open(&path, 1_000, 3).expect("reopen");
        again.record(entry("train-1", 5_000));
        let page = again.query(&Query { train: Some("train-1".into()), ..Query::default() });
        let last = page.entries.last().expect("entries");
        assert_eq!(last.seq, 21, "the sequence goes on after a reopen");
        assert!(page.entries.iter().all(|e| e.train_id.as_deref() == Some("train-1")));
        let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let first = again.query(&Query { limit: Some(2), ..Query::default() });
        assert_eq!(first.entries.len(), 2);
        let second = again.query(&Query { after: first.next, limit: Some(2), ..Query::default() });
        assert!(second.entries[0].seq > first.entries[1].seq);
        // Newest first, paged with `before`: the same entries the other way round.
        let newest = again.query(&Query { order: Some(Order::Newest), limit: Some(2), ..Query::default() });
        let seqs: Vec<u64> = newest.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [21, 20], "the newest two, newest first");
        assert_eq!(newest.next, Some(20));
        let older =
            again.query(&Query { order: Some(Order::Newest), before: newest.next, limit: Some(3), ..Query::default() });
        let seqs: Vec<u64> = older.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [19, 18, 17], "before 20, newest first");
        // Rotation dropped the oldest files: the walk ends at the oldest entry kept.
        let kept: Vec<u64> = again.query(&Query::default()).entries.iter().map(|e| e.seq).collect();
        let last = again.query(&Query { order: Some(Order::Newest), before: Some(kept[2]), ..Query::default() });
        assert_eq!(last.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [kept[1], kept[0]]);
        assert_eq!(last.next, None, "the oldest entry ends the walk");
        let window = again.query(&Query { since: Some(1_004), until: Some(1_006), ..Query::default() });
        assert!(window.entries.iter().all(|e| (1_004..=1_006).contains(&e.at_us)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Two nodes' logs, as each would answer a cluster-wide query.
    fn two_nodes() -> (Arc<Audit>, Arc<Audit>) {
        let (a, b) = (Audit::memory(), Audit::memory());
        // a's first entry is older than its joining the cluster: no node stamped when recorded.
        a.record(entry("train-1", 10));
        a.set_node("node-a");
        b.set_node("node-b");
        // Interleaved in time; b's third entry was recorded before its second's time (an ack
        // recorded late keeps the time the command came).
        for t in [30, 50, 70] {
            a.record(entry("train-1", t));
        }
        for t in [20, 40, 35, 80, 90] {
            b.record(entry("train-1", t));
        }
        (a, b)
    }

    fn ask(a: &Audit, b: &Audit, request: &ClusterRequest) -> Page {
        merge(request, vec![a.part("node-a", request), b.part("node-b", request)], Vec::new())
    }

    fn ids(page: &Page) -> Vec<String> {
        page.entries.iter().map(|e| format!("{}:{}", e.node.as_deref().unwrap_or("?"), e.seq)).collect()
    }

    #[test]
    fn a_cluster_query_pages_every_node_once_in_time_order() {
        let (a, b) = two_nodes();
        let mut request = ClusterRequest { query: Query { limit: Some(3), ..Query::default() }, ..Default::default() };
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = ask(&a, &b, &request);
            pages += 1;
            assert!(page.next.is_none(), "no single-node cursor in a cluster page");
            seen.extend(ids(&page));
            let Some(cursor) = page.cursor else { break };
            request.cursor = parse_cursor(&cursor).expect("the page's own cursor parses");
        }
        assert_eq!(pages, 3, "9 entries, 3 a page");
        // By time, each node's entries in its own order (b:3 at 35 after b:2 at 40).
        assert_eq!(
            seen,
            [
                "node-a:1", "node-b:1", "node-a:2", "node-b:2", "node-b:3", "node-a:3", "node-a:4", "node-b:4",
                "node-b:5"
            ]
        );

        // Newest first, paged back.
        let mut request = ClusterRequest {
            query: Query { limit: Some(4), order: Some(Order::Newest), ..Query::default() },
            ..Default::default()
        };
        let first = ask(&a, &b, &request);
        assert_eq!(ids(&first), ["node-b:5", "node-b:4", "node-a:4", "node-a:3"]);
        request.cursor = parse_cursor(first.cursor.as_deref().expect("more")).expect("cursor");
        let second = ask(&a, &b, &request);
        assert_eq!(ids(&second), ["node-b:3", "node-b:2", "node-a:2", "node-b:1"]);

        // `resume` after the newest page reads only what is recorded later, on either node.
        let resume = parse_cursor(first.resume.as_deref().expect("resume")).expect("resume parses");
        assert_eq!(resume.get("node-a"), Some(&4));
        assert_eq!(resume.get("node-b"), Some(&5));
        b.record(entry("train-1", 100));
        a.record(entry("train-2", 110));
        a.record(entry("train-1", 120));
        let later =
            ClusterRequest { query: Query { train: Some("train-1".into()), ..Query::default() }, cursor: resume };
        let page = ask(&a, &b, &later);
        assert_eq!(ids(&page), ["node-b:6", "node-a:6"], "only the newer train-1 entries");
        assert!(page.cursor.is_none());
        let again =
            ClusterRequest { cursor: parse_cursor(page.resume.as_deref().expect("resume")).expect("ok"), ..later };
        assert!(ask(&a, &b, &again).entries.is_empty(), "nothing new since");
    }

    #[test]
    fn a_part_too_big_for_one_message_is_cut_at_the_end() {
        let mut e = entry("train-1", 1);
        e.message = "x".repeat(1_000);
        let entries: Vec<Entry> = (1..=100).map(|seq| Entry { seq, ..e.clone() }).collect();
        let part = NodePart { node: "node-a".into(), entries, more: false, last_seq: 100 };
        let body = part.clone().to_json_within(20_000);
        assert!(body.len() <= 20_000, "{} bytes", body.len());
        let cut: NodePart = serde_json::from_slice(&body).expect("still a part");
        assert!(cut.more && !cut.entries.is_empty() && cut.entries.len() < 100);
        assert!(cut.entries.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1), "a prefix, in order");
        let whole: NodePart = serde_json::from_slice(&part.to_json_within(MAX_PART_BYTES)).expect("part");
        assert_eq!((whole.entries.len(), whole.more), (100, false), "fits as it is");
    }

    #[test]
    fn cursors_that_are_not_node_seq_pairs_are_refused() {
        assert_eq!(parse_cursor("").expect("empty").len(), 0);
        let c = parse_cursor("a-1:5,b.2:0").expect("two nodes");
        assert_eq!((c["a-1"], c["b.2"]), (5, 0));
        for bad in ["a", "a:x", ":5", "a b:1", "a:1,a:2", "a:-1", "a:99999999999999999999"] {
            assert!(parse_cursor(bad).is_err(), "{bad:?} refused");
        }
        assert_eq!(format_cursor(&c), "a-1:5,b.2:0");
    }
}
