//! Who may do what.
//!
//! - **Trains** present a per-train token in their hello; the server keeps one token (or its
//!   SHA-256) per train id and refuses a hello without the right one.
//! - **Remote controls and API callers** present a bearer token (`Authorization: Bearer …`, or
//!   `access_token=` in the query of `/ws`, which browsers cannot give headers). Each token names
//!   a principal with a [`Role`]: `viewer` watches, `operator` also commands the train its remote
//!   control is mapped to, `admin` also manages remote controls, mappings and sessions.
//!
//! The tokens come from a credentials file (`auth_file`, TOML; `docs/security.md`), re-read on
//! SIGHUP for rotation. Without one the server generates demo credentials at start-up (three
//! client tokens and one token per demo train id), prints them and can write them to a file in
//! the same format, which the simulator reads. Tokens are kept as SHA-256 digests only, and
//! compared in constant time.
//!
//! A credential can also be **revoked** at run time (`POST /api/revocations`, by token or by its
//! SHA-256): it stops working at once, for clients and trains alike, and every live session or
//! train connection it opened ends. In a cluster the revocations are shared by every node
//! (docs/cluster.md). With a state file (`state_file`) they survive a restart; without one they
//! last until the process ends, so remove the token from the credentials file as well.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use railcast_protocol::{Secret, TrainId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::state_file::{StateError, StateFile};

/// What a client may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watch the video of the train its remote control is mapped to.
    Viewer,
    /// Also command that train.
    Operator,
    /// Also create and delete remote controls, map them to trains, see and end sessions.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// An authenticated client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Which credential it came from: a session checks it is still in force after a reload.
    key: TokenKey,
}

/// The digest of a client token, standing for the credential; its `Debug` shows nothing of it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TokenKey(Digest32);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl Principal {
    /// May this principal open sessions for a remote control owned by `owner` (`None`: any
    /// authenticated client)?
    pub fn may_use(&self, owner: Option<&str>) -> bool {
        self.role == Role::Admin || owner.is_none_or(|o| o == self.name)
    }
}

/// One client credential in a credentials file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// Who it is (shown in logs and sessions; remote controls may be owned by a name).
    pub name: String,
    pub role: Role,
    /// The token itself, or …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// … its SHA-256 in hex, so the file holds no secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A credentials file: `[[clients]]` entries and a `[trains]` table of train id → token (or
/// `"sha256:<hex>"`). Several entries may share a name, which is how a token is rotated without
/// downtime: add the new one, reload, move the clients over, remove the old one, reload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
    #[serde(default)]
    pub trains: BTreeMap<String, String>,
}

/// Why credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Why a train's hello was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrainAuthError {
    #[error("the hello carries no token; this server requires one per train")]
    Missing,
    #[error("the token does not match the one configured for this train id")]
    Invalid,
    #[error("no token is configured for this train id")]
    UnknownTrain,
}

impl TrainAuthError {
    /// Every reason.
    pub const ALL: [TrainAuthError; 3] = [Self::Missing, Self::Invalid, Self::UnknownTrain];

    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            TrainAuthError::Missing => "missing",
            TrainAuthError::Invalid => "invalid",
            TrainAuthError::UnknownTrain => "unknown_train",
        }
    }
}

type Digest32 = [u8; 32];

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_digest(hex_digest: &str) -> Option<Digest32> {
    let bytes = hex::decode(hex_digest.trim()).ok()?;
    bytes.try_into().ok()
}

/// Equal in time independent of where the inputs differ.
fn same(a: &Digest32, b: &Digest32) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Default)]
struct Table {
    /// Digest of the token → its principal. Looking up by digest reveals nothing of the token.
    clients: HashMap<Digest32, Principal>,
    trains: HashMap<String, Digest32>,
}

impl Table {
    fn from_file(file: &CredentialsFile, path: &Path) -> Result<Self, AuthError> {
        let bad = |message: String| AuthError::Parse { path: path.to_owned(), message };
        let mut t = Table::default();
        for (i, c) in file.clients.iter().enumerate() {
            if c.name.trim().is_empty() {
                return Err(bad(format!("clients[{i}]: empty name")));
            }
            let d = match (&c.token, &c.sha256) {
                (Some(tok), None) if tok.len() >= 16 => digest(tok),
                (Some(_), None) => {
                    return Err(bad(format!("clients[{i}] ({}): token shorter than 16 characters", c.name)))
                }
                (None, Some(h)) => parse_digest(h)
                    .ok_or_else(|| bad(format!("clients[{i}] ({}): sha256 must be 64 hex digits", c.name)))?,
                _ => return Err(bad(format!("clients[{i}] ({}): give exactly one of token or sha256", c.name))),
            };
            if t.clients.insert(d, Principal { name: c.name.clone(), role: c.role, key: TokenKey(d) }).is_some() {
                return Err(bad(format!("clients[{i}] ({}): the same token is listed twice", c.name)));
            }
        }
        for (id, tok) in &file.trains {
            TrainId::new(id.clone()).map_err(|e| bad(format!("trains.{id}: {e}")))?;
            let d = match tok.strip_prefix("sha256:") {
                Some(h) => parse_digest(h).ok_or_else(|| bad(format!("trains.{id}: sha256 must be 64 hex digits")))?,
                None if tok.len() >= 16 => digest(tok),
                None => return Err(bad(format!("trains.{id}: token shorter than 16 characters"))),
            };
            t.trains.insert(id.clone(), d);
        }
        Ok(t)
    }
}

/// A fresh random token: 128 bits, hex.
pub fn generate_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Demo credentials: an admin, an operator and a viewer, and trains `train-1` … `train-N`.
pub fn demo_credentials(trains: usize) -> CredentialsFile {
    let client =
        |name: &str, role| ClientEntry { name: name.into(), role, token: Some(generate_token()), sha256: None };
    CredentialsFile {
        clients: vec![
            client("demo-admin", Role::Admin),
            client("demo-operator", Role::Operator),
            client("demo-viewer", Role::Viewer),
        ],
        trains: (1..=trains).map(|n| (format!("train-{n}"), generate_token())).collect(),
    }
}

/// The credentials in force. Cheap to share; [`Auth::reload`] swaps them atomically.
#[derive(Debug)]
pub struct Auth {
    table: RwLock<Arc<Table>>,
    /// The file to re-read on reload; `None` for generated credentials.
    path: Option<PathBuf>,
    /// Counts successful reloads and revocations; live sessions watch it ([`Auth::changes`]).
    revision: watch::Sender<u64>,
    /// Revoked credentials (token digest → when and why).
    revoked: RwLock<BTreeMap<Digest32, Revocation>>,
    /// Counts revocations made or lifted here (not those applied from other nodes): the cluster
    /// shares them ([`Auth::local_revocations`]).
    local_revocations: watch::Sender<u64>,
    /// Where the revocations are kept across restarts ([`Auth::keep_revocations`]).
    store: OnceLock<Arc<StateFile>>,
}

/// This part's member of the state file.
const MEMBER: &str = "revocations";

/// A revoked credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// SHA-256 of the token, hex.
    pub sha256: String,
    /// Milliseconds since the Unix epoch.
    pub revoked_at_ms: u64,
    /// Who revoked it (the admin's name).
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The SHA-256 (hex) a revocation names: the token's, or a digest given as such.
pub fn token_sha256(token: &str) -> String {
    hex::encode(digest(token))
}

/// A digest in hex as revocations name it: 64 hex digits (either case), or `None`.
pub fn normalize_sha256(hex_digest: &str) -> Option<String> {
    parse_digest(hex_digest).map(hex::encode)
}

impl Auth {
    /// Load `path`, or generate demo credentials when `path` is `None` (returned, to be shown).
    pub fn load(path: Option<&Path>, demo_trains: usize) -> Result<(Self, Option<CredentialsFile>), AuthError> {
        match path {
            Some(p) => {
                let table = Table::from_file(&read(p)?, p)?;
                Ok((Self::new(table, Some(p.to_owned())), None))
            }
            None => {
                let file = demo_credentials(demo_trains);
                let table = Table::from_file(&file, Path::new("<generated>"))?;
                Ok((Self::new(table, None), Some(file)))
            }
        }
    }

    fn new(table: Table, path: Option<PathBuf>) -> Self {
        Self {
            table: RwLock::new(Arc::new(table)),
            path,
            revision: watch::Sender::new(0),
            revoked: RwLock::new(BTreeMap::new()),
            local_revocations: watch::Sender::new(0),
            store: OnceLock::new(),
        }
    }

    /// Take the revocations `file` keeps (in force at once) and keep every later change there.
    pub fn keep_revocations(&self, file: &Arc<StateFile>) -> Result<(), StateError> {
        for r in file.get::<Vec<Revocation>>(MEMBER)? {
            let sha256 = r.sha256.clone();
            if self.insert_revocation(r).is_none() {
                return Err(file.error_in(format!("{MEMBER}: {sha256:?} is not a SHA-256 in hex")));
            }
        }
        let _ = self.store.set(Arc::clone(file));
        Ok(())
    }

    /// Write the revocations to the state file, if there is one.
    fn persist(&self) {
        if let Some(file) = self.store.get() {
            file.set(MEMBER, &self.revocations());
        }
    }

    fn is_revoked(&self, d: &Digest32) -> bool {
        self.revoked.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(d)
    }

    /// Revoke a credential here: the revocation in force, and whether it is this one (false:
    /// it was revoked already, and the first revocation stays). `None` for a malformed digest.
    pub fn revoke(&self, revocation: Revocation) -> Option<(Revocation, bool)> {
        let (standing, added) = self.insert_revocation(revocation)?;
        if added {
            self.local_revocations.send_modify(|r| *r += 1);
        }
        Some((standing, added))
    }

    /// Lift a revocation made here or elsewhere. False if `sha256` was not revoked.
    pub fn unrevoke(&self, sha256: &str) -> bool {
        let removed = self.apply_unrevocation(sha256);
        if removed {
            self.local_revocations.send_modify(|r| *r += 1);
        }
        removed
    }

    /// A revocation from another node: in force here at once, live sessions re-check.
    pub fn apply_revocation(&self, revocation: Revocation) -> bool {
        self.insert_revocation(revocation).is_some_and(|(_, added)| added)
    }

    /// Keep `revocation` unless its digest is revoked already; live sessions re-check when it is
    /// new. The revocation in force and whether it is this one.
    fn insert_revocation(&self, revocation: Revocation) -> Option<(Revocation, bool)> {
        let d = parse_digest(&revocation.sha256)?;
        let (standing, added) = {
            let mut revoked = self.revoked.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            match revoked.entry(d) {
                std::collections::btree_map::Entry::Vacant(v) => (v.insert(revocation).clone(), true),
                std::collections::btree_map::Entry::Occupied(o) => (o.get().clone(), false),
            }
        };
        if added {
            self.revision.send_modify(|r| *r += 1);
            self.persist();
        }
        Some((standing, added))
    }

    /// A revocation lifted on another node.
    pub fn apply_unrevocation(&self, sha256: &str) -> bool {
        let Some(d) = parse_digest(sha256) else { return false };
        let removed = self.revoked.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&d).is_some();
        if removed {
            self.persist();
        }
        removed
    }

    /// Every revocation in force, by digest.
    pub fn revocations(&self) -> Vec<Revocation> {
        self.revoked.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }

    /// Changes whenever a revocation is made or lifted on this node (not when one is applied
    /// from another node).
    pub fn local_revocations(&self) -> watch::Receiver<u64> {
        self.local_revocations.subscribe()
    }

    fn table(&self) -> Arc<Table> {
        Arc::clone(&self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Re-read the credentials file. New connections and requests use the new credentials at once;
    /// on error the old ones stay. Returns (clients, trains) counts.
    pub fn reload(&self) -> Result<(usize, usize), AuthError> {
        let Some(path) = &self.path else { return Ok(self.counts()) };
        let table = Table::from_file(&read(path)?, path)?;
        let counts = (table.clients.len(), table.trains.len());
        *self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
        self.revision.send_modify(|r| *r += 1);
        Ok(counts)
    }

    /// Changes after every successful [`Auth::reload`]: a live session then checks
    /// [`Auth::in_force`] for the principal that opened it.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// How many reloads succeeded so far.
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// Does the credential `principal` came from still stand for the same name and role? False
    /// once its token is removed from the credentials file or revoked, or its name or role changed.
    pub fn in_force(&self, principal: &Principal) -> bool {
        self.table().clients.get(&principal.key.0).is_some_and(|p| p == principal) && !self.is_revoked(&principal.key.0)
    }

    /// (client tokens, train tokens) in force.
    pub fn counts(&self) -> (usize, usize) {
        let t = self.table();
        (t.clients.len(), t.trains.len())
    }

    /// The principal a bearer token stands for.
    pub fn client(&self, token: &str) -> Option<Principal> {
        let d = digest(token);
        if self.is_revoked(&d) {
            return None;
        }
        self.table().clients.get(&d).cloned()
    }

    /// Check a train's hello token.
    pub fn train(&self, id: &TrainId, token: Option<&Secret>) -> Result<(), TrainAuthError> {
        let table = self.table();
        let expected = table.trains.get(id.as_str());
        let token = token.ok_or(TrainAuthError::Missing)?;
        let got = digest(token.expose());
        match expected {
            Some(_) if self.is_revoked(&got) => Err(TrainAuthError::Invalid),
            Some(want) if same(want, &got) => Ok(()),
            Some(_) => Err(TrainAuthError::Invalid),
            None => Err(TrainAuthError::UnknownTrain),
        }
    }

    /// Is a token configured for this train id (it may connect)?
    pub fn knows_train(&self, id: &str) -> bool {
        self.table().trains.contains_key(id)
    }
}

fn read(path: &Path) -> Result<CredentialsFile, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|e| AuthError::Parse { path: path.to_owned(), message: e.message().to_owned() })
}

/// Write credentials as TOML, readable by the owner only.
pub fn write(path: &Path, file: &CredentialsFile) -> Result<(), AuthError> {
    let err = |source| AuthError::Write { path: path.to_owned(), source };
    let text = toml::to_string(file).map_err(|e| err(std::io::Error::other(e)))?;
    let header = "# railcast credentials (generated at start-up; docs/security.md)\n";
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(err)?;
    std::io::Write::write_all(&mut f, format!("{header}{text}").as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Table, AuthError> {
        let f: CredentialsFile =
            toml::from_str(text).map_err(|e| AuthError::Parse { path: "t".into(), message: e.message().to_owned() })?;
        Table::from_file(&f, Path::new("t"))
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }

    #[test]
    fn tokens_and_digests_both_work() {
        let tok = "0123456789abcdef0123";
        let text = format!(
            "[[clients]]\nname = \"a\"\nrole = \"operator\"\ntoken = \"{tok}\"\n\
             [[clients]]\nname = \"b\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\
             [trains]\n\"train-1\" = \"{tok}\"\n\"train-2\" = \"sha256:{}\"\n",
            hex::encode(digest("viewer-token-0000")),
            hex::encode(digest("train-2-token-000")),
        );
        let t = file(&text).expect("valid");
        let auth = Auth::new(t, None);
        assert_eq!(auth.client(tok).map(|p| p.role), Some(Role::Operator));
        assert_eq!(auth.client("viewer-token-0000").map(|p| p.name), Some("b".into()));
        assert_eq!(auth.client("nope-nope-nope-nope"), None);
        let id = |s: &str| TrainId::new(s).expect("id");
        assert_eq!(auth.train(&id("train-1"), Some(&Secret(tok.into()))), Ok(()));
        assert_eq!(auth.train(&id("train-2"), Some(&Secret("train-2-token-000".into()))), Ok(()));
        assert_eq!(auth.train(&id("train-1"), Some(&Secret("train-2-token-000".into()))), Err(TrainAuthError::Invalid));
        assert_eq!(auth.train(&id("train-1"), None), Err(TrainAuthError::Missing));
        assert_eq!(auth.train(&id("train-9"), Some(&Secret(tok.into()))), Err(TrainAuthError::UnknownTrain));
    }

    #[test]
    fn a_revoked_credential_stops_working_and_can_be_restored() {
        let (client, train) = ("client-token-00000", "train-token-000000");
        let text = format!(
            "[[clients]]\nname = \"a\"\nrole = \"operator\"\ntoken = \"{client}\"\n[trains]\n\"t\" = \"{train}\"\n"
        );
        let auth = Auth::new(file(&text).expect("valid"), None);
        let principal = auth.client(client).expect("known");
        let (mut changes, local) = (auth.changes(), auth.local_revocations());
        let revocation = |sha256: String| Revocation { sha256, revoked_at_ms: 1, by: "admin".into(), note: None };
        assert_eq!(auth.revoke(revocation(token_sha256(client))).map(|(_, added)| added), Some(true));
        let again = Revocation { revoked_at_ms: 2, ..revocation(token_sha256(client)) };
        let (standing, added) = auth.revoke(again).expect("a digest");
        assert!(!added && standing.revoked_at_ms == 1, "the first revocation stays");
        assert!(changes.has_changed().expect("open"), "live sessions re-check");
        changes.mark_unchanged();
        assert_eq!(*local.borrow(), 1);
        assert_eq!(auth.client(client), None);
        assert!(!auth.in_force(&principal));
        // Another node's revocation of the train's token, given as an upper-case digest.
        let upper = token_sha256(train).to_uppercase();
        assert_eq!(normalize_sha256(&upper), Some(token_sha256(train)));
        assert!(auth.apply_revocation(revocation(upper)));
        assert_eq!(*local.borrow(), 1, "not this node's own");
        let id = TrainId::new("t").expect("id");
        assert_eq!(auth.train(&id, Some(&Secret(train.into()))), Err(TrainAuthError::Invalid));
        assert!(auth.unrevoke(&token_sha256(client)));
        assert!(!auth.unrevoke(&token_sha256(client)));
        assert!(auth.in_force(&principal));
        assert_eq!(auth.revocations().len(), 1);
        assert!(!auth.apply_revocation(revocation("not hex".into())));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, needle) in [
            ("[[clients]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"short\"\n", "shorter than 16"),
            ("[[clients]]\nname = \"a\"\nrole = \"root\"\ntoken = \"0123456789abcdef\"\n", "unknown variant"),
            ("[[clients]]\nname = \"a\"\nrole = \"admin\"\n", "exactly one of"),
            ("[[clients]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"zz\"\n", "64 hex"),
            ("[trains]\n\"bad/id\" = \"0123456789abcdef\"\n", "trains.bad/id"),
            ("[trains]\n\"t1\" = \"x\"\n", "shorter than 16"),
            ("colour = 1\n", "unknown field"),
        ] {
            let err = file(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn demo_credentials_round_trip_through_toml() {
        let demo = demo_credentials(3);
        let text = toml::to_string(&demo).expect("toml");
        let back: CredentialsFile = toml::from_str(&text).expect("parse");
        assert_eq!(back.clients.len(), 3);
        assert_eq!(back.trains.len(), 3);
        Table::from_file(&back, Path::new("demo")).expect("valid");
    }

    #[test]
    fn a_reload_tells_which_principals_are_no_longer_in_force() {
        let dir = std::env::temp_dir().join(format!("railcast-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("credentials.toml");
        let entry = |name: &str, role: &str, token: &str| {
            format!("[[clients]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken = \"{token}\"\n")
        };
        let (a, b, c) = ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc");
        let write = |text: String| std::fs::write(&path, text).expect("write");
        write(entry("alice", "operator", a) + &entry("bob", "operator", b) + &entry("carol", "viewer", c));
        let (auth, _) = Auth::load(Some(&path), 0).expect("load");
        let [alice, bob, carol] = [a, b, c].map(|t| auth.client(t).expect("known token"));
        let mut changes = auth.changes();
        assert!(!changes.has_changed().expect("open"));
        assert!([&alice, &bob, &carol].iter().all(|p| auth.in_force(p)));

        // Alice's token removed, Bob's role lowered, Carol unchanged.
        write(entry("bob", "viewer", b) + &entry("carol", "viewer", c));
        auth.reload().expect("reload");
        assert!(changes.has_changed().expect("open"), "a reload is announced");
        changes.mark_unchanged();
        assert!(!auth.in_force(&alice), "token removed");
        assert!(!auth.in_force(&bob), "role changed");
        assert!(auth.in_force(&carol));

        // A file that does not parse changes nothing, and is not announced.
        write("[[clients]]\nname = \"x\"\n".into());
        assert!(auth.reload().is_err());
        assert!(!changes.has_changed().expect("open"));
        assert!(auth.in_force(&carol));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ownership() {
        let key = TokenKey(digest("0123456789abcdef"));
        let op = Principal { name: "alice".into(), role: Role::Operator, key };
        let admin = Principal { name: "root".into(), role: Role::Admin, key };
        assert!(op.may_use(None) && op.may_use(Some("alice")) && !op.may_use(Some("bob")));
        assert!(admin.may_use(Some("bob")));
    }
}
