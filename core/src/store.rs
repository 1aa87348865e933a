//! Durable state behind one narrow trait, [`Store`], with the sled implementation
//! [`SledStore`]. Only this module knows the key layout.
//!
//! Layout: everything a transition writes lives in one tree, `state`, under one-byte
//! prefixes. sled's batches and transactions roll its write buffer twice and take a global
//! lock (measured: 14x slower than plain inserts, twice the bytes on disk), so a commit
//! uses plain inserts in an order that makes the **case record the commit point**:
//!
//! 1. before it: the history event (with the tasks it closed), new index entries and, for a new case,
//!    its number. Left behind by a crash, these are invisible: readers only trust history
//!    below the case's `history_len`, index entries whose task the case shows open, numbers
//!    whose case exists (a dangling last number is removed before numbering resumes);
//! 2. the case record itself, one insert;
//! 3. after it: removal of index entries of tasks that closed (stale ones are filtered),
//!    the number counter, the audit entry (sealed in memory, written with the next flush).
//!    Nothing after the record can fail the commit: the transition happened, and the
//!    caller is told so.
//!
//! Timer groups are written before the record too: [`Store::due_timers`] skips a group
//! while a commit of its case is under way and removes one whose transition never reached
//! its record.
//!
//! sled recovers a prefix of its log, so a case record on disk implies everything written
//! before it. Commits of several cases at once (bundles) use one sled batch instead, to be
//! all-or-nothing. Conflicts are checked under an in-process lock per case (sled
//! guarantees a single process per folder). sled makes writes durable only on flush;
//! [`Store::flush`] makes every commit so far durable at once, and callers answer a client
//! only once the flushed ticket covers its commit, so one flush serves every commit made
//! before it (group commit; the server's engine threads decide when to flush).
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `c` | case id (u64 BE) | rev (u64 BE) + case JSON |
//! | `h` | case id, seq (u64 BE each) | history event JSON; if it closed tasks, a newline and their JSON array |
//! | `t` | case id, task number (u64 BE each) | a closed task's JSON (format 2 only; since format 3 they are kept with the event) |
//! | `N` | case number | case id |
//! | `n` | counter scope (`PLAN-LUP-2026`) `\0` number (u64 BE) | case id |
//! | `g` | group `\0` case id `\0` task id | case id |
//! | `x` | topic `\0` case id `\0` task id | case id (open external tasks) |
//! | `a` | applicant id `\0` case id | empty |
//! | `v` | procedure `\0` version `\0` case id | empty (open cases only) |
//! | `T` | due time of the earliest pending timer (ms since 1970, u64 BE), case id, history seq (u64 BE each) | the timers one transition set ([`TimerGroup`]), binary (see `encode_timers`) |
//! | `K` | group `\0` case id | empty (the case has cards addressed to the group) |
//! | `b` | bundle reference `\0` case id | empty |
//! | `o` | case id, history seq (u64 BE each), n (u32 BE) | notice JSON (the outbox) |
//! | `q` | next attempt (ms, u64 BE), case id, seq, n | empty (notices waiting for delivery) |
//! | `i` | staff id `\0` case id, seq, n | empty (a staff member's inbox) |
//!
//! A transition's timers share one key (a step's warnings and breach, a case's limits):
//! a third of all keys written per transition were timers when each had its own. Stores
//! of format 2 kept one timer per key (case id and card id after the time), format 3 a
//! JSON array; all read alike. Format 3 also kept a `K` key per card (the card id after
//! the case id); read alike too.
//!
//! Separate trees: `procedure_versions`, `tokens`, `incidents`, `meta`, and `audit` (the
//! hash chain; see `audit`). Audit entries are sealed as transitions commit and written
//! as blocks: the entries sealed since the last block, one JSON per line, under the
//! sequence number of the first (big-endian). A block is written before every flush (so an
//! acknowledged transition has its entry on disk), before the chain is read, when it grows
//! large, and at a checkpoint or close; one key per flush instead of one per transition.
//! As before, a crash can lose only a suffix of the chain, and only entries of
//! transitions no client was told about. Stores of format 2 hold one entry per key: a
//! block of one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

use parking_lot::Mutex;

use sled::{Batch, Tree};

use crate::case::{Case, HistoryEvent, Task};
use crate::error::{Error, Result};
use crate::notice::{Notice, NoticeStatus};

/// Bumped when the key layout changes: a store of a newer format is refused, one of an
/// older format this version still reads is upgraded (its number rewritten) on open.
const FORMAT_VERSION: u64 = 5;
/// Format 2 kept one timer per `T` key and each closed task under its own `t` key; format
/// 3 wrote timer groups as JSON and a `K` key per card. Format 4 reads all of those.
/// Format 5 prunes the card index (closed cases whose cards are all answered leave it);
/// opening an older store prunes it once.
const OLDEST_READABLE_FORMAT: u64 = 2;

/// How long opening waits for sled's own lock, released by the threads of a handle of
/// this process shortly after it is dropped.
const REOPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
/// While a checkpoint could not reopen the store, calls try again at most this often.
const REOPEN_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Lock stripes for the per-case conflict check.
const STRIPES: usize = 256;

/// One case written by a transition: the case as read (`None` for a new case), as written,
/// and the history event that explains it.
pub struct CaseWrite {
    pub before: Option<Case>,
    pub after: Case,
    pub event: HistoryEvent,
    /// For a new case: the counter scope its number is drawn from (`PLAN-LUP-2026`); the
    /// store sets `after.number` to `<scope>-<000042>`, gap-free within the scope.
    pub number_scope: Option<String>,
    /// Timers the transition started, written before the case (a timer left by a crash
    /// finds its limit unchanged or gone, and does nothing).
    pub timers: Vec<crate::case::Timer>,
}

/// The timers one transition set, stored under one key and due at its earliest.
#[derive(Debug, Clone)]
pub struct TimerGroup {
    pub key: Vec<u8>,
    /// Oldest first.
    pub timers: Vec<crate::case::Timer>,
}

/// Computes the notices of one case write, called by [`Store::commit`] once the case has
/// its number and the event its sequence number: `(before, after, event)`. The notices
/// (the outbox) are written before the case record; one left by a crash (its `seq` not
/// below the case's `history_len`) is never delivered.
pub type Outbox<'a> = &'a (dyn Fn(Option<&Case>, &Case, &HistoryEvent) -> Vec<Notice> + Sync);

/// Where a fault can be injected ([`SledStore::set_fault`]): in a commit, before the case
/// record (the commit point) or just after it; when a checkpoint reopens the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    BeforeRecord,
    AfterRecord,
    Reopen,
}

/// A fault injected for tests of crash states and failed writes: called at each
/// [`FaultPoint`]; an error fails the write at that point, a pause holds it there.
pub type Fault = Arc<dyn Fn(FaultPoint) -> Result<()> + Send + Sync>;

/// An outbox that sends nothing.
pub fn no_notices(_: Option<&Case>, _: &Case, _: &HistoryEvent) -> Vec<Notice> {
    Vec::new()
}

/// A stored API token (only its hash is kept).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TokenRecord {
    /// Short public id used to list and revoke the token.
    pub id: String,
    /// `admin` or a staff id.
    pub subject: String,
    pub admin: bool,
    pub label: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Tokens issued before expiry existed have none.
    #[serde(default)]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A stored procedure version.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VersionRecord {
    pub procedure: String,
    pub version: String,
    pub file: String,
    pub source: String,
    pub first_loaded: chrono::DateTime<chrono::Utc>,
}

/// A failure worth an administrator's attention that changed no case (e.g. a script that
/// broke a limit). Kept so it can be looked at after the fact.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Incident {
    pub id: u64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub code: String,
    pub message: String,
    pub actor: String,
    pub action: String,
    #[serde(default)]
    pub procedure: Option<String>,
    #[serde(default)]
    pub case: Option<u64>,
    #[serde(default)]
    pub task: Option<String>,
}

pub trait Store: Send + Sync {
    fn next_case_id(&self) -> Result<u64>;
    fn case(&self, id: u64) -> Result<Option<Case>>;
    fn case_id_by_number(&self, number: &str) -> Result<Option<u64>>;
    fn history(&self, id: u64) -> Result<Vec<HistoryEvent>>;
    /// Writes all cases atomically. Fails with `Conflict` if any case changed since it was
    /// read. Returns a ticket: the commit is durable once [`Store::flushed`] reaches it.
    fn commit(&self, writes: &mut [CaseWrite], outbox: Outbox<'_>) -> Result<u64>;
    /// Makes every commit made so far durable, on the calling thread, and returns the
    /// ticket it covers. Concurrent callers take turns.
    fn flush(&self) -> Result<u64>;
    /// The highest ticket on disk: every commit with a ticket up to it is durable.
    fn flushed(&self) -> u64;
    /// Tasks of a case that are completed or cancelled, in creation order. A stored case
    /// record holds only its open tasks: closed ones are written once, with the history
    /// event of the transition that closed them, which keeps the record that every
    /// transition rewrites small.
    fn closed_tasks(&self, case: u64) -> Result<Vec<Task>>;
    fn closed_task(&self, case: u64, task: &str) -> Result<Option<Task>>;
    /// Groups whose earliest pending timer is due at or before `now`, oldest first, at
    /// most `limit`. A group holds all its timers, due or not.
    fn due_timers(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<TimerGroup>>;
    /// When the next timer falls due.
    fn next_timer(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>>;
    /// Replaces a group by the timers of it still `pending` (after the cases its fired
    /// timers changed were committed); none left removes it.
    fn settle_timers(&self, group: &TimerGroup, pending: &[crate::case::Timer]) -> Result<()>;
    /// Ids of the cases with cards addressed to a group, ascending.
    fn cases_with_cards_for(&self, group: &str) -> Result<Vec<u64>>;
    /// Ids of open tasks of a group, as `(case id, task id)`.
    fn open_tasks_of_group(&self, group: &str) -> Result<Vec<(u64, String)>>;
    /// Ids of open external tasks of a topic, as `(case id, task id)`.
    fn open_tasks_of_topic(&self, topic: &str) -> Result<Vec<(u64, String)>>;
    fn cases_of_applicant(&self, applicant: &str) -> Result<Vec<u64>>;
    fn cases_of_bundle(&self, bundle: &str) -> Result<Vec<u64>>;
    /// Records a procedure version's source if it is new; returns whether it was.
    fn put_version(&self, rec: &VersionRecord) -> Result<bool>;
    fn version(&self, procedure: &str, version: &str) -> Result<Option<VersionRecord>>;
    /// Every stored procedure version, in procedure and load order.
    fn versions(&self) -> Result<Vec<VersionRecord>>;
    /// How many open cases run on each `(procedure, version)`.
    fn open_cases_by_version(&self) -> Result<BTreeMap<(String, String), u64>>;
    /// Ids of the open cases on one procedure version.
    fn open_cases_of_version(&self, procedure: &str, version: &str) -> Result<Vec<u64>>;
    fn put_token(&self, hash: &str, rec: &TokenRecord) -> Result<()>;
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    fn tokens(&self) -> Result<Vec<(String, TokenRecord)>>;
    /// Appends an incident; its `id` is assigned here.
    fn record_incident(&self, incident: Incident) -> Result<()>;
    /// The newest incidents first, at most `limit`.
    fn incidents(&self, limit: usize) -> Result<Vec<Incident>>;
    /// The notices of a case, committed or not (readers check `seq < history_len`).
    fn notices_of_case(&self, case: u64) -> Result<Vec<Notice>>;
    fn notice(&self, case: u64, seq: u64, n: u32) -> Result<Option<Notice>>;
    /// Rewrites a notice after a delivery attempt (or a read mark), moving its place in
    /// the delivery queue: out of it unless it is still queued.
    fn put_notice(&self, notice: &Notice) -> Result<()>;
    /// Queued notices whose next attempt is due at `now`, oldest first.
    fn due_notices(&self, now: chrono::DateTime<chrono::Utc>, limit: usize) -> Result<Vec<Notice>>;
    /// When the next queued notice is due.
    fn next_notice(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>>;
    /// Drops a notice a crash left without its case transition.
    fn remove_notice(&self, notice: &Notice) -> Result<()>;
    /// `(case, seq, n)` of the inbox notices of a staff member, oldest first.
    fn inbox(&self, staff: &str) -> Result<Vec<(u64, u64, u32)>>;
    /// Appends records to the audit chain (commits append their transitions themselves).
    /// Returns a ticket, as [`Store::commit`] does.
    fn append_audit(&self, records: Vec<crate::audit::Record>) -> Result<u64>;
    /// Audit entries as stored, from sequence number `from`, at most `limit`.
    fn audit_raw(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;
    /// A history event exactly as stored (the audit chain vouches for these bytes).
    fn history_raw(&self, case: u64, seq: u64) -> Result<Option<Vec<u8>>>;
    /// Makes the store's recovery point current, if at least `min_bytes` were written
    /// since the last one and nothing for `idle`: a start after a crash then replays only
    /// what was written since. Store calls wait meanwhile. Returns how long it took.
    fn checkpoint(
        &self,
        min_bytes: u64,
        idle: std::time::Duration,
    ) -> Result<Option<std::time::Duration>>;
    /// Whether calls can be served now (false while the store is being reopened).
    fn available(&self) -> bool;
    /// Small settings the server keeps with its data (e.g. its signing secret).
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<()>;
}

/// The open database and its trees. Replaced whole by a checkpoint.
pub struct Trees {
    db: sled::Db,
    state: Tree,
    versions: Tree,
    tokens: Tree,
    incidents: Tree,
    meta: Tree,
    audit: Tree,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Entries sealed since the last flush (a login, a refusal nobody awaited).
        let trees = self.open.get_mut().take();
        if let Some(trees) = trees {
            if let Err(e) = self.flush_trees(&trees) {
                tracing::error!(message = "audit entries not written at close", error = %e);
            }
        }
    }
}

/// The cases committed most recently, as written, so the action that follows a commit on
/// the same case (claim then complete, the next step of a chain, a parallel branch) does
/// not parse its record again: parsing was 7 % of the CPU of a transition. Only commits
/// fill it, holding the case's stripe lock; a commit first drops the entries of its
/// cases, so a commit that fails half-way leaves readers to the tree, never to a stale copy.
#[derive(Default)]
struct Recent {
    /// Each with the stamp of the `put` that wrote it.
    cases: std::collections::HashMap<u64, (Arc<Case>, u64)>,
    /// `(case, stamp)`, oldest first; an entry whose stamp is no longer the case's is
    /// stale (the case was dropped or written again since) and skipped.
    order: std::collections::VecDeque<(u64, u64)>,
    stamp: u64,
}

/// Cases kept in [`Recent`]: a few MiB.
const RECENT_CASES: usize = 4096;

impl Recent {
    fn get(&self, id: u64) -> Option<Arc<Case>> {
        self.cases.get(&id).map(|(c, _)| c.clone())
    }

    fn drop_case(&mut self, id: u64) {
        self.cases.remove(&id);
    }

    /// Callers copy the case before taking the lock.
    fn put(&mut self, c: Arc<Case>) {
        self.stamp += 1;
        self.order.push_back((c.id, self.stamp));
        self.cases.insert(c.id, (c, self.stamp));
        while self.cases.len() > RECENT_CASES {
            let Some((id, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.cases.get(&id).is_some_and(|(_, s)| *s == stamp) {
                self.cases.remove(&id);
            }
        }
        // Stale entries (a case written again, or dropped) go once they outnumber the rest.
        if self.order.len() > 2 * RECENT_CASES {
            let cases = &self.cases;
            self.order
                .retain(|(id, stamp)| cases.get(id).is_some_and(|(_, s)| s == stamp));
        }
    }
}

/// The audit chain's head and the entries sealed but not yet written.
#[derive(Default)]
struct Chain {
    /// Next sequence number and the last entry's hash; `None` until read from the tree.
    head: Option<(u64, String)>,
    /// First sequence number and the entries' JSON lines.
    block: Option<(u64, Vec<u8>)>,
}

/// A block this large is written without waiting for the next flush. Small on purpose:
/// sled writes a leaf (up to 17 entries before it splits) whole when it consolidates, and
/// a write over a quarter of its 512 KiB segment goes to a blob file of its own, created
/// and written in the committing thread. With 1 MiB blocks that was a tenth of the CPU of
/// a deadline burst; 17 blocks of 6 KiB stay under it.
const MAX_AUDIT_BLOCK: usize = 6 * 1024;

/// Access to the open trees; holds the checkpoint gate for reading while alive.
struct Open<'a> {
    _gate: parking_lot::RwLockReadGuard<'a, ()>,
    trees: Arc<Trees>,
}

impl std::ops::Deref for Open<'_> {
    type Target = Trees;
    fn deref(&self) -> &Trees {
        &self.trees
    }
}

pub struct SledStore {
    /// Cases as their last commit wrote them (see [`Recent`]).
    recent: Mutex<Recent>,
    path: std::path::PathBuf,
    cache_bytes: u64,
    /// `None` only while a checkpoint reopens the database (the gate is then held).
    /// Handles are lent only with the gate held (`t()`), so a checkpoint holding the gate
    /// holds the only one.
    open: parking_lot::RwLock<Option<Arc<Trees>>>,
    /// Every store call holds it for reading (recursively: calls nest); a checkpoint
    /// holds it for writing, so no call runs while the database is closed and reopened.
    gate: parking_lot::RwLock<()>,
    /// Bytes written since the last open or checkpoint (keys and values, approximately).
    written_bytes: AtomicU64,
    /// When the last commit was made (ms since the epoch): checkpoints wait for a lull.
    last_write_ms: AtomicU64,
    /// The audit chain's head and unwritten block; the lock orders the chain.
    audit_chain: Mutex<Chain>,
    /// Serialize commits touching the same case (by id modulo the stripe count).
    stripes: Vec<Mutex<()>>,
    /// Last number per counter scope, loaded from the `n` index on first use. The lock
    /// serializes number assignment, so case numbers are gap-free.
    counters: Mutex<std::collections::HashMap<String, u64>>,
    written: AtomicU64,
    flushed: AtomicU64,
    /// Takes turns between flushing threads: one sled flush at a time, and `flushed`
    /// only grows.
    flush_lock: Mutex<()>,
    /// Tests only (see [`SledStore::set_fault`]); `None` in production.
    fault: parking_lot::RwLock<Option<Fault>>,
    /// The folder's lock file, locked while the store is open: a second process gets a
    /// clear [`Error::InUse`], and sled's own lock is only ever contended by this process.
    _lock: std::fs::File,
    /// When a call last tried to reopen a store a checkpoint left closed.
    reopen_tried: Mutex<Option<std::time::Instant>>,
    /// Open cases per procedure version: counted from the index on first use, then kept
    /// current by every commit (the versions list no longer reads every open case).
    version_counts: Mutex<Option<std::collections::HashMap<VersionOf, u64>>>,
}

/// A procedure version: `(procedure, version)`.
type VersionOf = (String, String);

impl SledStore {
    /// Opens (or creates) the store. sled allows one process per folder; a second server on
    /// the same folder gets a clear error instead of waiting.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledStore> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::Store(format!("cannot create {}: {e}", path.display())))?;
        let lock_path = path.join("guichet.lock");
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::Store(format!("cannot open {}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => Error::InUse(path.display().to_string()),
            std::fs::TryLockError::Error(e) => {
                Error::Store(format!("cannot lock {}: {e}", lock_path.display()))
            }
        })?;
        let trees = Self::open_trees(path, cache_bytes)?;
        Ok(SledStore {
            _lock: lock,
            reopen_tried: Mutex::new(None),
            version_counts: Mutex::new(None),
            recent: Mutex::new(Recent::default()),
            path: path.to_path_buf(),
            cache_bytes,
            open: parking_lot::RwLock::new(Some(Arc::new(trees))),
            gate: parking_lot::RwLock::new(()),
            written_bytes: AtomicU64::new(0),
            last_write_ms: AtomicU64::new(0),
            audit_chain: Mutex::new(Chain::default()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            counters: Mutex::new(std::collections::HashMap::new()),
            written: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            flush_lock: Mutex::new(()),
            fault: parking_lot::RwLock::new(None),
        })
    }

    /// Injects a fault into every later commit (`None` removes it). For tests of what a
    /// failed write or a crash between two writes leaves behind.
    #[doc(hidden)]
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.write() = fault;
    }

    /// Opens the database. The caller holds the folder's lock file, so no other process
    /// has it open; sled's own lock may still be held for a moment by the threads of a
    /// handle of ours just dropped (a checkpoint, a restart in the same process), so a
    /// failure is tried again for a short while.
    fn open_trees(path: &Path, cache_bytes: u64) -> Result<Trees> {
        let deadline = std::time::Instant::now() + REOPEN_PATIENCE;
        let db = loop {
            let opened = sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .mode(sled::Mode::HighThroughput)
                // Every acknowledged write is flushed by `durable`; a background flush
                // on a timer would only compete with it.
                .flush_every_ms(None)
                .open();
            match opened {
                Ok(db) => break db,
                Err(sled::Error::Io(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => {
                    return Err(Error::Store(format!(
                        "cannot open data folder {}: {e}",
                        path.display()
                    )))
                }
            }
        };
        let meta = db.open_tree("meta")?;
        match meta.get("format_version")? {
            None => {
                meta.insert("format_version", &FORMAT_VERSION.to_be_bytes())?;
            }
            Some(v) => match be_u64(&v) {
                Some(FORMAT_VERSION) => {}
                Some(n) if (OLDEST_READABLE_FORMAT..FORMAT_VERSION).contains(&n) => {
                    prune_card_index(&db.open_tree("state")?)?;
                    meta.insert("format_version", &FORMAT_VERSION.to_be_bytes())?;
                }
                _ => {
                    return Err(Error::Store(
                        "data folder has an unsupported format version".into(),
                    ))
                }
            },
        }
        Ok(Trees {
            state: db.open_tree("state")?,
            versions: db.open_tree("procedure_versions")?,
            tokens: db.open_tree("tokens")?,
            incidents: db.open_tree("incidents")?,
            audit: db.open_tree("audit")?,
            meta,
            db,
        })
    }

    fn t(&self) -> Result<Open<'_>> {
        let gate = self.gate.read_recursive();
        if let Some(trees) = self.open.read().clone() {
            return Ok(Open { _gate: gate, trees });
        }
        drop(gate);
        self.reopen()?;
        let gate = self.gate.read_recursive();
        let trees = self.open.read().clone().ok_or_else(closed)?;
        Ok(Open { _gate: gate, trees })
    }

    /// Tries again to open a store that a checkpoint could not reopen, at most every
    /// [`REOPEN_RETRY`]; meanwhile every call answers [`Error::Unavailable`].
    fn reopen(&self) -> Result<()> {
        {
            let mut tried = self.reopen_tried.lock();
            if tried.is_some_and(|t| t.elapsed() < REOPEN_RETRY) {
                return Err(closed());
            }
            *tried = Some(std::time::Instant::now());
        }
        // A call nested in another holds the gate for reading: it cannot wait for it.
        let Some(_gate) = self
            .gate
            .try_write_for(std::time::Duration::from_millis(100))
        else {
            return Err(closed());
        };
        if self.open.read().is_some() {
            return Ok(());
        }
        let trees = self.open_checked()?;
        *self.open.write() = Some(Arc::new(trees));
        tracing::info!(message = "store reopened");
        Ok(())
    }

    fn open_checked(&self) -> Result<Trees> {
        if let Some(f) = self.fault.read().clone() {
            f(FaultPoint::Reopen)?;
        }
        Self::open_trees(&self.path, self.cache_bytes)
    }

    /// Whether the store is open (false while a checkpoint could not reopen it).
    pub fn is_open(&self) -> bool {
        self.open.read().is_some()
    }

    /// Reads the chain's head from the tree if it is not known yet. A commit calls it
    /// before its commit point, so that sealing its entry after it cannot fail.
    fn load_chain_head(&self, t: &Trees) -> Result<()> {
        let mut chain = self.audit_chain.lock();
        if chain.head.is_none() {
            chain.head = Some(match t.audit.last()? {
                None => (0, crate::audit::GENESIS.to_string()),
                Some((_, block)) => {
                    let line = block.split(|&b| b == b'\n').next_back().unwrap_or_default();
                    let last: crate::audit::Entry = serde_json::from_slice(line)?;
                    (last.seq + 1, last.hash)
                }
            });
        }
        Ok(())
    }

    /// Seals `records` into the chain, in order, under the chain's lock; they join the
    /// block [`SledStore::write_audit_block`] writes next. Cannot fail once the head is
    /// loaded: a block too large to wait is written here, and if that write fails the
    /// block stays for the next flush (which then fails, so nobody is told it is durable).
    fn seal_audit(&self, t: &Trees, records: Vec<crate::audit::Record>) {
        if records.is_empty() {
            return;
        }
        let mut chain = self.audit_chain.lock();
        let (mut seq, mut prev) = chain
            .head
            .take()
            .unwrap_or_else(|| (0, crate::audit::GENESIS.to_string()));
        let mut lines = Vec::with_capacity(records.len());
        for r in records {
            let entry = r.seal(seq, &prev);
            lines.push(entry.to_line());
            seq += 1;
            prev = entry.hash;
        }
        let first = seq - lines.len() as u64;
        let block = chain.block.get_or_insert_with(|| (first, Vec::new()));
        for line in lines {
            if !block.1.is_empty() {
                block.1.push(b'\n');
            }
            block.1.extend_from_slice(&line);
        }
        chain.head = Some((seq, prev));
        if chain
            .block
            .as_ref()
            .is_some_and(|b| b.1.len() > MAX_AUDIT_BLOCK)
        {
            if let Err(e) = Self::write_block(t, &mut chain) {
                tracing::error!(message = "audit block not written; kept for the next flush", error = %e);
            }
        }
    }

    fn append_audit_impl(&self, records: Vec<crate::audit::Record>) -> Result<()> {
        let t = self.t()?;
        self.load_chain_head(&t)?;
        self.seal_audit(&t, records);
        Ok(())
    }

    /// Writes the audit entries sealed since the last block. Callers hold the gate.
    /// Writes the audit block and flushes: every commit so far is then durable. Returns
    /// the ticket it covers.
    fn flush_trees(&self, trees: &Trees) -> Result<u64> {
        // Read first: every commit up to `target` has sealed its audit entry by now.
        let target = self.written.load(Ordering::SeqCst);
        self.write_audit_block(trees)?;
        trees.db.flush()?;
        Ok(self.flushed.fetch_max(target, Ordering::SeqCst).max(target))
    }

    fn write_audit_block(&self, trees: &Trees) -> Result<()> {
        let mut chain = self.audit_chain.lock();
        Self::write_block(trees, &mut chain)
    }

    fn write_block(trees: &Trees, chain: &mut Chain) -> Result<()> {
        // Under the chain's lock, so blocks go to the log in order and a crash can only
        // lose a suffix of the chain.
        if let Some((first, bytes)) = chain.block.take() {
            if let Err(e) = trees.audit.insert(first.to_be_bytes(), bytes.as_slice()) {
                chain.block = Some((first, bytes));
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Whether the transition that set a timer group (`seq` of `case`) is committed. Its
    /// timers are written just before its case record: `Some(false)` while a commit of
    /// the case is under way, `None` if none is and the record never came (a crash or a
    /// failed write left the group).
    fn timers_committed(&self, t: &Trees, case: u64, seq: u64) -> Result<Option<bool>> {
        let committed = |s: &SledStore| -> Result<bool> {
            let history_len = match s.recent.lock().get(case) {
                Some(c) => c.history_len,
                None => t
                    .state
                    .get(case_key(case))?
                    .map(|v| decode_case(&v))
                    .transpose()?
                    .map_or(0, |c| c.history_len),
            };
            Ok(history_len > seq)
        };
        if committed(self)? {
            return Ok(Some(true));
        }
        // A commit holds its case's stripe from before its first write to after its case
        // record; holding it here, a record still missing is missing for good.
        let Some(_stripe) = self.stripes[(case % STRIPES as u64) as usize].try_lock() else {
            return Ok(Some(false));
        };
        Ok(committed(self)?.then_some(true))
    }

    fn incident_impl(&self, mut incident: Incident) -> Result<()> {
        let t = self.t()?;
        incident.id = t.db.generate_id()?;
        t.incidents
            .insert(incident.id.to_be_bytes(), serde_json::to_vec(&incident)?)?;
        Ok(())
    }
}

fn closed() -> Error {
    Error::Unavailable("the store is being reopened after a checkpoint".into())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    k.push(prefix);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

fn case_key(id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'c';
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn task_key(case: u64, task: &str) -> Option<[u8; 17]> {
    let n: u64 = task.rsplit_once('-')?.1.parse().ok()?;
    Some(pair_key(b't', case, n))
}

/// A stored history event and the JSON array of the tasks it closed, if any.
fn split_event(stored: &[u8]) -> (&[u8], Option<&[u8]>) {
    // Compact JSON has no raw newline: the first one ends the event.
    match stored.iter().position(|&b| b == b'\n') {
        Some(i) => (&stored[..i], Some(&stored[i + 1..])),
        None => (stored, None),
    }
}

fn task_number(task: &str) -> u64 {
    task.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(u64::MAX)
}

fn hist_key(case: u64, seq: u64) -> [u8; 17] {
    pair_key(b'h', case, seq)
}

fn pair_key(prefix: u8, case: u64, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..9].copy_from_slice(&case.to_be_bytes());
    k[9..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Index entries for a case's open tasks: `g group \0 case \0 task`, and for external
/// tasks also `x topic \0 case \0 task`.
fn open_task_keys(c: &Case) -> Vec<Vec<u8>> {
    let id = c.id.to_be_bytes();
    let mut keys = Vec::new();
    for t in c.open_tasks() {
        keys.push(key(b'g', &[t.group.as_bytes(), &id, t.id.as_bytes()]));
        if let Some(x) = &t.external {
            keys.push(key(b'x', &[x.topic.as_bytes(), &id, t.id.as_bytes()]));
        }
    }
    keys
}

/// `(case id, task id)` of a task index (`g` by group, `x` by topic) under `name`.
fn task_index(state: &Tree, prefix_byte: u8, name: &str) -> Result<Vec<(u64, String)>> {
    let mut prefix = key(prefix_byte, &[name.as_bytes()]);
    prefix.push(0);
    state
        .scan_prefix(&prefix)
        .map(|kv| {
            let (k, _) = kv?;
            let rest = &k[prefix.len()..];
            let case = be_u64(rest).ok_or_else(|| Error::Store("bad task index key".into()))?;
            let task = String::from_utf8_lossy(rest.get(9..).unwrap_or_default()).to_string();
            Ok((case, task))
        })
        .collect()
}

/// The key of a timer group: `T`, the earliest time, then `tail` (case id and history
/// seq), which stays when the group moves on to its next timer.
fn timer_key(at: chrono::DateTime<chrono::Utc>, tail: &[u8]) -> Vec<u8> {
    let ms = at.timestamp_millis().max(0) as u64;
    let mut k = Vec::with_capacity(9 + tail.len());
    k.push(b'T');
    k.extend_from_slice(&ms.to_be_bytes());
    k.extend_from_slice(tail);
    k
}

/// First byte of a timer group in the binary encoding (JSON starts with `[` or `{`).
const TIMERS_BINARY: u8 = 1;

/// A timer group as written since format 4: [`TIMERS_BINARY`], the count (u32 BE), then
/// per timer its time
/// and its limit's end (seconds i64 and nanoseconds u32, BE), case id (u64 BE), limit (u8),
/// token (u8 flag, u32 BE) and threshold (u32 BE length, UTF-8). A quarter of the JSON's size,
/// and read without parsing dates: a deadline burst reads and rewrites ten thousand groups.
fn encode_timers(timers: &[crate::case::Timer]) -> Vec<u8> {
    use crate::case::Limit;
    let mut v = Vec::with_capacity(1 + timers.len() * 48);
    v.push(TIMERS_BINARY);
    v.extend_from_slice(&(timers.len() as u32).to_be_bytes());
    let time = |v: &mut Vec<u8>, t: chrono::DateTime<chrono::Utc>| {
        v.extend_from_slice(&t.timestamp().to_be_bytes());
        v.extend_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
    };
    for t in timers {
        time(&mut v, t.at);
        time(&mut v, t.limit_due);
        v.extend_from_slice(&t.case.to_be_bytes());
        v.push(match t.limit {
            Limit::Step => 0,
            Limit::Promised => 1,
            Limit::Statutory => 2,
            Limit::Commitment => 3,
        });
        match t.token {
            Some(k) => {
                v.push(1);
                v.extend_from_slice(&k.to_be_bytes());
            }
            None => v.extend_from_slice(&[0; 5]),
        }
        // Thresholds are short labels (`75%`, `10d`, `breach`); written whole whatever
        // their length, so a group always reads back as written.
        v.extend_from_slice(&(t.threshold.len() as u32).to_be_bytes());
        v.extend_from_slice(t.threshold.as_bytes());
    }
    v
}

/// The timers under a `T` key: a binary group (format 4), a JSON group (format 3), or a
/// single JSON timer as stores of format 2 wrote.
fn decode_timers(v: &[u8]) -> Result<Vec<crate::case::Timer>> {
    use crate::case::Limit;
    match v.first() {
        Some(&b'{') => return Ok(vec![serde_json::from_slice(v)?]),
        Some(&TIMERS_BINARY) => {}
        _ => return Ok(serde_json::from_slice(v)?),
    }
    let mut r = Reader { v, pos: 1 };
    let count = u32::from_be_bytes(r.array()?);
    let mut out = Vec::new();
    for _ in 0..count {
        let at = r.time()?;
        let limit_due = r.time()?;
        let case = u64::from_be_bytes(r.array()?);
        let limit = match r.take(1)?[0] {
            0 => Limit::Step,
            1 => Limit::Promised,
            2 => Limit::Statutory,
            3 => Limit::Commitment,
            _ => return Err(Reader::bad()),
        };
        let flag = r.take(1)?[0];
        let token = u32::from_be_bytes(r.array()?);
        let token = (flag != 0).then_some(token);
        let n = u32::from_be_bytes(r.array()?) as usize;
        let threshold = std::str::from_utf8(r.take(n)?)
            .map_err(|_| Reader::bad())?
            .to_string();
        out.push(crate::case::Timer {
            at,
            case,
            limit,
            token,
            threshold,
            limit_due,
        });
    }
    if r.pos != v.len() {
        return Err(Reader::bad());
    }
    Ok(out)
}

/// Reads a binary timer group field by field; running short is an error, not a panic.
struct Reader<'a> {
    v: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bad() -> Error {
        Error::Store("bad timer group value".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let field = self.v.get(self.pos..self.pos + n).ok_or_else(Self::bad)?;
        self.pos += n;
        Ok(field)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| Self::bad())
    }

    fn time(&mut self) -> Result<chrono::DateTime<chrono::Utc>> {
        let secs = i64::from_be_bytes(self.array()?);
        let nanos = u32::from_be_bytes(self.array()?);
        chrono::DateTime::from_timestamp(secs, nanos).ok_or_else(Self::bad)
    }
}

/// Index entries of a case's cards: one per group any of them is addressed to, so a
/// later card to the same groups (the breach after the warning) writes no key.
/// Rebuilds the card index from the cases it names: entries of cases with no live card
/// for the group go, format-3 entries (a key per card) become one per case and group.
/// Stores of format 4 and older kept every entry for ever.
fn prune_card_index(state: &Tree) -> Result<()> {
    let mut old = Vec::new();
    let mut cases = std::collections::BTreeSet::new();
    for k in state.scan_prefix([b'K']).keys() {
        let k = k?;
        // `K`, group, `\0`, case id, and in format 3 the card id.
        let id = k[1..]
            .iter()
            .position(|b| *b == 0)
            .and_then(|z| k.get(z + 2..z + 10))
            .and_then(be_u64);
        cases.extend(id);
        old.push(k);
    }
    let mut live = std::collections::BTreeSet::new();
    for id in cases {
        if let Some(v) = state.get(case_key(id))? {
            live.extend(card_keys(&decode_case(&v)?));
        }
    }
    let mut pruned = 0;
    for k in old {
        if !live.contains(k.as_ref()) {
            state.remove(k)?;
            pruned += 1;
        }
    }
    for k in live {
        state.insert(k, vec![])?;
    }
    tracing::info!(message = "card index rebuilt", entries_removed = pruned);
    Ok(())
}

/// The card index of a case: its groups with cards still to be dealt with, those of an
/// open case or not yet answered. A closed case whose cards are all answered leaves the
/// index (its cards stay on the case), so listing cards reads only live ones.
fn card_keys(c: &Case) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let open = c.status.is_open();
    for card in c.cards.iter().filter(|card| open || card.answer.is_none()) {
        for g in card.addressed_to() {
            out.push(key(b'K', &[g.as_bytes(), &c.id.to_be_bytes()]));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn version_key(c: &Case) -> Vec<u8> {
    key(
        b'v',
        &[
            c.procedure.as_bytes(),
            c.version.as_bytes(),
            &c.id.to_be_bytes(),
        ],
    )
}

fn notice_tail(n: &Notice) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..8].copy_from_slice(&n.case.to_be_bytes());
    k[8..16].copy_from_slice(&n.seq.to_be_bytes());
    k[16..].copy_from_slice(&n.n.to_be_bytes());
    k
}

fn notice_key(n: &Notice) -> Vec<u8> {
    let mut k = vec![b'o'];
    k.extend_from_slice(&notice_tail(n));
    k
}

fn queue_key(n: &Notice) -> Option<Vec<u8>> {
    let at = n
        .next_attempt
        .filter(|_| n.status == NoticeStatus::Queued)?;
    let mut k = vec![b'q'];
    k.extend_from_slice(&(at.timestamp_millis().max(0) as u64).to_be_bytes());
    k.extend_from_slice(&notice_tail(n));
    Some(k)
}

fn inbox_key(n: &Notice) -> Option<Vec<u8>> {
    if n.channel != crate::notice::INBOX {
        return None;
    }
    Some(key(b'i', &[n.address.as_bytes(), &notice_tail(n)]))
}

fn number_key(scope: &str, n: u64) -> Vec<u8> {
    key(b'n', &[scope.as_bytes(), &n.to_be_bytes()])
}

fn be_u64(b: &[u8]) -> Option<u64> {
    b.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// A stored case is its revision (8 bytes, big-endian) followed by its JSON, so the
/// conflict check reads 8 bytes instead of parsing the case.
fn encode_case(c: &Case) -> serde_json::Result<Vec<u8>> {
    let mut v = c.rev.to_be_bytes().to_vec();
    serde_json::to_writer(&mut v, c)?;
    Ok(v)
}

fn decode_case(bytes: &[u8]) -> Result<Case> {
    Ok(serde_json::from_slice(bytes.get(8..).unwrap_or_default())?)
}

impl Store for SledStore {
    fn checkpoint(
        &self,
        min_bytes: u64,
        idle: std::time::Duration,
    ) -> Result<Option<std::time::Duration>> {
        let quiet = |s: &SledStore| {
            now_ms().saturating_sub(s.last_write_ms.load(Ordering::Relaxed))
                >= idle.as_millis() as u64
        };
        if self.written_bytes.load(Ordering::Relaxed) < min_bytes || !quiet(self) {
            return Ok(None);
        }
        // Callers nest (read_recursive), so a waiting writer cannot block them: under
        // steady traffic this gives up rather than stall the office.
        let Some(gate) = self
            .gate
            .try_write_for(std::time::Duration::from_millis(500))
        else {
            return Ok(None);
        };
        if !quiet(self) {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let trees = self.open.write().take().ok_or_else(closed)?;
        if let Err(e) = self.flush_trees(&trees) {
            *self.open.write() = Some(trees);
            return Err(e);
        }
        // The only handle: every other is lent with the gate held (`t()`).
        drop(trees);
        // If this fails the store stays closed: calls answer `Unavailable` and try to
        // reopen it again (`t()`), and readiness reports it.
        *self.reopen_tried.lock() = Some(std::time::Instant::now());
        let reopened = self.open_checked().map_err(|e| {
            tracing::error!(message = "checkpoint could not reopen the store; retrying on use", error = %e);
            e
        })?;
        *self.open.write() = Some(Arc::new(reopened));
        self.written_bytes.store(0, Ordering::Relaxed);
        drop(gate);
        Ok(Some(started.elapsed()))
    }

    fn append_audit(&self, records: Vec<crate::audit::Record>) -> Result<u64> {
        self.append_audit_impl(records)?;
        Ok(self.written.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn audit_raw(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>> {
        let t = self.t()?;
        self.write_audit_block(&t)?;
        // The block holding `from` starts at or before it.
        let start = match t.audit.range(..=from.to_be_bytes()).next_back() {
            Some(kv) => kv?.0.to_vec(),
            None => from.to_be_bytes().to_vec(),
        };
        let mut out = Vec::new();
        for kv in t.audit.range(start..) {
            let (k, block) = kv?;
            let first = be_u64(&k).ok_or_else(|| Error::Store("bad audit key".into()))?;
            for (i, line) in block.split(|&b| b == b'\n').enumerate() {
                let seq = first + i as u64;
                if seq < from {
                    continue;
                }
                if out.len() >= limit {
                    return Ok(out);
                }
                out.push((seq, line.to_vec()));
            }
        }
        Ok(out)
    }

    fn history_raw(&self, case: u64, seq: u64) -> Result<Option<Vec<u8>>> {
        let t = self.t()?;
        Ok(t.state.get(hist_key(case, seq))?.map(|v| v.to_vec()))
    }

    fn available(&self) -> bool {
        self.is_open()
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let t = self.t()?;
        Ok(t.meta.get(key)?.map(|v| v.to_vec()))
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        let t = self.t()?;
        t.meta.insert(key, value)?;
        Ok(())
    }

    fn next_case_id(&self) -> Result<u64> {
        let t = self.t()?;
        Ok(t.db.generate_id()? + 1)
    }

    fn case(&self, id: u64) -> Result<Option<Case>> {
        let recent = self.recent.lock().get(id);
        if let Some(c) = recent {
            return Ok(Some(Case::clone(&c)));
        }
        let t = self.t()?;
        match t.state.get(case_key(id))? {
            None => Ok(None),
            Some(v) => Ok(Some(decode_case(&v)?)),
        }
    }

    fn case_id_by_number(&self, number: &str) -> Result<Option<u64>> {
        let t = self.t()?;
        let id = t
            .state
            .get(key(b'N', &[number.as_bytes()]))?
            .and_then(|v| be_u64(&v));
        // A number left by a crash before its case was written leads nowhere.
        match id {
            Some(id) if t.state.contains_key(case_key(id))? => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    fn history(&self, id: u64) -> Result<Vec<HistoryEvent>> {
        let t = self.t()?;
        let Some(len) = self.case(id)?.map(|c| c.history_len) else {
            return Ok(Vec::new());
        };
        // Events at or past `history_len` belong to a commit that did not happen.
        t.state
            .range(hist_key(id, 0)..hist_key(id, len))
            .values()
            .map(|v| Ok(serde_json::from_slice(split_event(&v?).0)?))
            .collect()
    }

    fn commit(&self, writes: &mut [CaseWrite], outbox: Outbox<'_>) -> Result<u64> {
        let t = self.t()?;
        // Lock every stripe involved, in order, so two commits cannot deadlock.
        let mut stripes: Vec<usize> = writes
            .iter()
            .map(|w| (w.after.id % STRIPES as u64) as usize)
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _case_locks = stripes
            .iter()
            .map(|&i| self.stripes[i].lock())
            .collect::<Vec<_>>();
        {
            let mut recent = self.recent.lock();
            for w in writes.iter() {
                recent.drop_case(w.after.id);
            }
        }
        let mut counters = if writes.iter().any(|w| w.number_scope.is_some()) {
            Some(self.counters.lock())
        } else {
            None
        };
        for w in writes.iter() {
            let current = t.state.get(case_key(w.after.id))?.and_then(|v| be_u64(&v));
            if current != w.before.as_ref().map(|b| b.rev) {
                return Err(Error::Conflict(format!(
                    "case {} was changed by someone else; reload and try again",
                    if w.after.number.is_empty() {
                        w.after.id.to_string()
                    } else {
                        w.after.number.clone()
                    }
                )));
            }
        }
        // Work out every key first, so nothing is written if anything fails.
        let mut plans = Vec::with_capacity(writes.len());
        // Open cases leaving one procedure version and joining another.
        let mut moved: Vec<(Option<VersionOf>, Option<VersionOf>)> = Vec::new();
        let mut taken: Vec<(String, u64)> = Vec::new();
        let mut audit = Vec::with_capacity(writes.len());
        for w in writes.iter() {
            let mut after = w.after.clone();
            let mut before_commit: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            if let (Some(scope), Some(counters)) = (&w.number_scope, counters.as_mut()) {
                let last = match taken.iter().rev().find(|(s, _)| s == scope) {
                    Some((_, n)) => *n,
                    None => match counters.get(scope) {
                        Some(n) => *n,
                        None => self.last_number(scope)?,
                    },
                };
                let n = last + 1;
                taken.push((scope.clone(), n));
                after.number = format!("{scope}-{n:06}");
                let id = after.id.to_be_bytes().to_vec();
                before_commit.push((number_key(scope, n), id.clone()));
                before_commit.push((key(b'N', &[after.number.as_bytes()]), id.clone()));
                before_commit.push((key(b'a', &[after.applicant.id.as_bytes(), &id]), vec![]));
                if let Some(b) = &after.bundle {
                    before_commit.push((key(b'b', &[b.as_bytes(), &id]), vec![]));
                }
            }
            let mut event = w.event.clone();
            event.seq = after.history_len;
            after.history_len += 1;
            after.rev += 1;
            let (open, closed): (Vec<Task>, Vec<Task>) =
                after.tasks.drain(..).partition(Task::is_open);
            after.tasks = open;
            // One key for the event and the tasks it closed; the audit entry vouches
            // for both.
            let mut stored_event = serde_json::to_vec(&event)?;
            if !closed.is_empty() {
                stored_event.push(b'\n');
                serde_json::to_writer(&mut stored_event, &closed)?;
            }
            audit.push(crate::audit::Record::transition(
                &after.number,
                after.id,
                &event,
                &stored_event,
            ));
            before_commit.push((hist_key(after.id, event.seq).to_vec(), stored_event));
            let old_keys: Vec<Vec<u8>> = w.before.as_ref().map(open_task_keys).unwrap_or_default();
            let new_keys = open_task_keys(&after);
            for k in new_keys.iter().filter(|k| !old_keys.contains(k)) {
                before_commit.push((k.clone(), after.id.to_be_bytes().to_vec()));
            }
            let mut after_commit: Vec<Vec<u8>> = old_keys
                .into_iter()
                .filter(|k| !new_keys.contains(k))
                .collect();
            let old_v = w
                .before
                .as_ref()
                .filter(|b| b.status.is_open())
                .map(version_key);
            let new_v = Some(&after).filter(|a| a.status.is_open()).map(version_key);
            if old_v != new_v {
                if let Some(k) = new_v {
                    before_commit.push((k, vec![]));
                }
                if let Some(k) = old_v {
                    after_commit.push(k);
                }
                let of = |c: &Case| (c.procedure.clone(), c.version.clone());
                moved.push((
                    w.before.as_ref().filter(|b| b.status.is_open()).map(of),
                    Some(&after).filter(|a| a.status.is_open()).map(of),
                ));
            }
            if !w.timers.is_empty() {
                let mut timers = w.timers.clone();
                timers.sort_by_key(|t| t.at);
                let tail = pair_key(b'T', after.id, event.seq);
                let k = timer_key(timers[0].at, &tail[1..]);
                before_commit.push((k, encode_timers(&timers)));
            }
            for mut n in outbox(w.before.as_ref(), &after, &event) {
                n.case = after.id;
                n.case_number = after.number.clone();
                n.seq = event.seq;
                n.id = format!("{}-{}-{}", n.case, n.seq, n.n);
                before_commit.push((notice_key(&n), serde_json::to_vec(&n)?));
                for k in queue_key(&n).into_iter().chain(inbox_key(&n)) {
                    before_commit.push((k, vec![]));
                }
            }
            let old_cards: Vec<Vec<u8>> = w.before.as_ref().map(card_keys).unwrap_or_default();
            let new_cards = card_keys(&after);
            for k in new_cards.iter().filter(|k| !old_cards.contains(k)) {
                before_commit.push((k.clone(), vec![]));
            }
            after_commit.extend(old_cards.into_iter().filter(|k| !new_cards.contains(k)));
            let record = encode_case(&after)?;
            plans.push((before_commit, record, after_commit, after, event));
        }
        self.load_chain_head(&t)?;
        let fault = self.fault.read().clone();
        if plans.len() == 1 {
            let (before_commit, record, after_commit, _, _) = &plans[0];
            for (k, v) in before_commit {
                t.state.insert(k.as_slice(), v.as_slice())?;
            }
            if let Some(f) = &fault {
                f(FaultPoint::BeforeRecord)?;
            }
            // The commit point.
            t.state.insert(case_key(plans[0].3.id), record.as_slice())?;
            // From here on the transition happened: what follows cannot turn it into an
            // error. Stale index entries that stay are filtered by their readers.
            let stale = fault
                .as_ref()
                .map_or(Ok(()), |f| f(FaultPoint::AfterRecord))
                .and_then(|()| {
                    after_commit.iter().try_for_each(|k| {
                        t.state.remove(k.as_slice()).map(drop).map_err(Error::from)
                    })
                });
            if let Err(e) = stale {
                tracing::warn!(message = "stale index entries left after a commit", case = plans[0].3.id, error = %e);
            }
        } else {
            let mut batch = Batch::default();
            for (before_commit, record, after_commit, after, _) in &plans {
                for (k, v) in before_commit {
                    batch.insert(k.as_slice(), v.as_slice());
                }
                batch.insert(&case_key(after.id), record.as_slice());
                for k in after_commit {
                    batch.remove(k.as_slice());
                }
            }
            if let Some(f) = &fault {
                f(FaultPoint::BeforeRecord)?;
            }
            t.state.apply_batch(batch)?;
        }
        // Numbers first: the next submission must not reuse one whatever happens below.
        if let Some(counters) = counters.as_mut() {
            for (scope, n) in taken {
                counters.insert(scope, n);
            }
        }
        if !moved.is_empty() {
            if let Some(counts) = self.version_counts.lock().as_mut() {
                for (left, joined) in moved {
                    if let Some(n) = left.and_then(|v| counts.get_mut(&v)) {
                        *n = n.saturating_sub(1);
                    }
                    if let Some(v) = joined {
                        *counts.entry(v).or_insert(0) += 1;
                    }
                }
            }
        }
        let bytes: usize = plans
            .iter()
            .map(|(b, record, _, _, _)| {
                record.len() + b.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            })
            .sum();
        self.written_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_write_ms.store(now_ms(), Ordering::Relaxed);
        // After the case records: a crash in between loses at most the audit entries of a
        // transition the client was never told about, never leaves an entry for a
        // transition that did not happen.
        self.seal_audit(&t, audit);
        let copies: Vec<Arc<Case>> = plans.iter().map(|p| Arc::new(p.3.clone())).collect();
        let mut recent = self.recent.lock();
        for copy in copies {
            recent.put(copy);
        }
        drop(recent);
        for (w, (_, _, _, after, event)) in writes.iter_mut().zip(plans) {
            w.after = after;
            w.event = event;
        }
        Ok(self.written.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn flush(&self) -> Result<u64> {
        let _turn = self.flush_lock.lock();
        // Holds the gate: a checkpoint (which flushes everything itself) waits for this
        // flush, or this flush for it, never a flush of a database being closed.
        let t = self.t()?;
        self.flush_trees(&t)
    }

    fn flushed(&self) -> u64 {
        self.flushed.load(Ordering::SeqCst)
    }

    fn closed_tasks(&self, case: u64) -> Result<Vec<Task>> {
        let t = self.t()?;
        let Some(c) = self.case(case)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        // Format 2: a key per closed task.
        let mut prefix = vec![b't'];
        prefix.extend_from_slice(&case.to_be_bytes());
        for v in t.state.scan_prefix(prefix).values() {
            let t: Task = serde_json::from_slice(&v?)?;
            // A task the case still shows open was closed by a commit that did not happen.
            if c.task(&t.id).is_none() {
                out.push(t);
            }
        }
        // Format 3: with the events that closed them, below `history_len` (committed).
        for v in t
            .state
            .range(hist_key(case, 0)..hist_key(case, c.history_len))
            .values()
        {
            if let (_, Some(tasks)) = split_event(&v?) {
                out.extend(serde_json::from_slice::<Vec<Task>>(tasks)?);
            }
        }
        out.sort_by_key(|t| task_number(&t.id));
        Ok(out)
    }

    fn closed_task(&self, case: u64, task: &str) -> Result<Option<Task>> {
        let t = self.t()?;
        let Some(k) = task_key(case, task) else {
            return Ok(None);
        };
        if let Some(v) = t.state.get(k)? {
            return Ok(Some(serde_json::from_slice(&v)?));
        }
        Ok(self.closed_tasks(case)?.into_iter().find(|t| t.id == task))
    }

    fn open_tasks_of_group(&self, group: &str) -> Result<Vec<(u64, String)>> {
        let t = self.t()?;
        task_index(&t.state, b'g', group)
    }

    fn open_tasks_of_topic(&self, topic: &str) -> Result<Vec<(u64, String)>> {
        let t = self.t()?;
        task_index(&t.state, b'x', topic)
    }

    fn cases_of_applicant(&self, applicant: &str) -> Result<Vec<u64>> {
        self.ids_under(b'a', applicant)
    }

    fn cases_of_bundle(&self, bundle: &str) -> Result<Vec<u64>> {
        self.ids_under(b'b', bundle)
    }

    fn put_version(&self, rec: &VersionRecord) -> Result<bool> {
        let t = self.t()?;
        let k = key(0, &[rec.procedure.as_bytes(), rec.version.as_bytes()]);
        let bytes = serde_json::to_vec(rec)?;
        let prev = t
            .versions
            .compare_and_swap(&k[1..], None as Option<&[u8]>, Some(bytes))?;
        Ok(prev.is_ok())
    }

    fn version(&self, procedure: &str, version: &str) -> Result<Option<VersionRecord>> {
        let t = self.t()?;
        let k = key(0, &[procedure.as_bytes(), version.as_bytes()]);
        match t.versions.get(&k[1..])? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        }
    }

    fn due_timers(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<TimerGroup>> {
        let t = self.t()?;
        let end = timer_key(now + chrono::Duration::milliseconds(1), &[]);
        let mut out = Vec::new();
        for kv in t.state.range(vec![b'T']..end) {
            if out.len() == limit {
                break;
            }
            let (k, v) = kv?;
            match decode_timers(&v) {
                Ok(mut timers) => {
                    // Format 2 kept a card id after the case, not a sequence number.
                    let set_by = matches!(v.first(), Some(&TIMERS_BINARY) | Some(b'['))
                        .then(|| {
                            k.get(9..17)
                                .and_then(be_u64)
                                .zip(k.get(17..25).and_then(be_u64))
                        })
                        .flatten();
                    if let Some((case, seq)) = set_by {
                        match self.timers_committed(&t, case, seq)? {
                            Some(true) => {}
                            // Its transition is being committed: the next pass sees it.
                            Some(false) => continue,
                            None => {
                                tracing::warn!(
                                    message = "timers of a transition that never committed removed",
                                    case,
                                    seq
                                );
                                t.state.remove(&k)?;
                                continue;
                            }
                        }
                    }
                    timers.sort_by_key(|t| t.at);
                    out.push(TimerGroup {
                        key: k.to_vec(),
                        timers,
                    });
                }
                // A value that cannot be read would stay first in the index and stop
                // every timer behind it: move it out of the way, where an administrator
                // sees it.
                Err(e) => {
                    let case = k.get(9..17).and_then(be_u64);
                    tracing::error!(message = "unreadable timer group removed", case = ?case, error = %e);
                    self.incident_impl(Incident {
                        id: 0,
                        at: chrono::Utc::now(),
                        code: "bad_timer".into(),
                        message: format!(
                            "unreadable timer group removed ({e}); its warnings and escalations will not come: {}",
                            hex::encode(&v[..v.len().min(256)])
                        ),
                        actor: "scheduler".into(),
                        action: "timers".into(),
                        procedure: None,
                        case,
                        task: None,
                    })?;
                    t.state.remove(&k)?;
                }
            }
        }
        Ok(out)
    }

    fn next_timer(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let t = self.t()?;
        match t.state.scan_prefix([b'T']).keys().next() {
            None => Ok(None),
            Some(k) => {
                let ms = be_u64(k?.get(1..).unwrap_or_default())
                    .ok_or_else(|| Error::Store("bad timer key".into()))?;
                Ok(chrono::DateTime::from_timestamp_millis(ms as i64))
            }
        }
    }

    fn settle_timers(&self, group: &TimerGroup, pending: &[crate::case::Timer]) -> Result<()> {
        if pending.len() == group.timers.len() {
            return Ok(());
        }
        let t = self.t()?;
        // The rest first: a crash in between leaves both, and the fired timers fire
        // again into the cards they already issued, which does nothing.
        if let Some(first) = pending.iter().map(|t| t.at).min() {
            let tail = group.key.get(9..).unwrap_or_default();
            t.state
                .insert(timer_key(first, tail), encode_timers(pending))?;
        }
        t.state.remove(group.key.as_slice())?;
        Ok(())
    }

    fn cases_with_cards_for(&self, group: &str) -> Result<Vec<u64>> {
        let t = self.t()?;
        let mut prefix = key(b'K', &[group.as_bytes()]);
        prefix.push(0);
        // Stores before format 4 had a key per card (the card id after the case id).
        let mut ids = t
            .state
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                be_u64(&k?[prefix.len()..]).ok_or_else(|| Error::Store("bad card index key".into()))
            })
            .collect::<Result<Vec<u64>>>()?;
        ids.dedup();
        Ok(ids)
    }

    fn versions(&self) -> Result<Vec<VersionRecord>> {
        let t = self.t()?;
        let mut v: Vec<VersionRecord> = t
            .versions
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect::<Result<_>>()?;
        v.sort_by(|a, b| (&a.procedure, a.first_loaded).cmp(&(&b.procedure, b.first_loaded)));
        Ok(v)
    }

    fn open_cases_by_version(&self) -> Result<BTreeMap<(String, String), u64>> {
        if let Some(counts) = self.version_counts.lock().as_ref() {
            return Ok(counts
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.clone(), *n))
                .collect());
        }
        // Counted once per process, with no commit under way (they hold the gate for
        // reading); every commit after keeps the counts current.
        let _alone = self.gate.write();
        let trees = self.open.read().clone().ok_or_else(closed)?;
        let t = &trees;
        let mut out = BTreeMap::new();
        for k in t.state.scan_prefix([b'v']).keys() {
            let k = k?;
            let parts: Vec<&[u8]> = k[1..].splitn(3, |b| *b == 0).collect();
            let [p, v, id] = parts.as_slice() else {
                continue;
            };
            // An entry whose case was never written is what a crash can leave; skip it.
            if be_u64(id).is_some_and(|id| t.state.contains_key(case_key(id)).unwrap_or(false)) {
                *out.entry((
                    String::from_utf8_lossy(p).to_string(),
                    String::from_utf8_lossy(v).to_string(),
                ))
                .or_insert(0) += 1;
            }
        }
        *self.version_counts.lock() = Some(out.clone().into_iter().collect());
        Ok(out)
    }

    fn open_cases_of_version(&self, procedure: &str, version: &str) -> Result<Vec<u64>> {
        let t = self.t()?;
        let mut prefix = key(b'v', &[procedure.as_bytes(), version.as_bytes()]);
        prefix.push(0);
        let mut out = Vec::new();
        for k in t.state.scan_prefix(&prefix).keys() {
            if let Some(id) = be_u64(&k?[prefix.len()..]) {
                if t.state.contains_key(case_key(id))? {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    fn put_token(&self, hash: &str, rec: &TokenRecord) -> Result<()> {
        let t = self.t()?;
        t.tokens.insert(hash.as_bytes(), serde_json::to_vec(rec)?)?;
        Ok(())
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let t = self.t()?;
        match t.tokens.get(hash.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        }
    }

    fn record_incident(&self, incident: Incident) -> Result<()> {
        self.incident_impl(incident)
    }

    fn incidents(&self, limit: usize) -> Result<Vec<Incident>> {
        let t = self.t()?;
        t.incidents
            .iter()
            .rev()
            .take(limit)
            .map(|kv| Ok(serde_json::from_slice(&kv?.1)?))
            .collect()
    }

    fn notices_of_case(&self, case: u64) -> Result<Vec<Notice>> {
        let t = self.t()?;
        let mut prefix = vec![b'o'];
        prefix.extend_from_slice(&case.to_be_bytes());
        t.state
            .scan_prefix(&prefix)
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    fn notice(&self, case: u64, seq: u64, n: u32) -> Result<Option<Notice>> {
        let t = self.t()?;
        let mut k = vec![b'o'];
        k.extend_from_slice(&case.to_be_bytes());
        k.extend_from_slice(&seq.to_be_bytes());
        k.extend_from_slice(&n.to_be_bytes());
        match t.state.get(k)? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        }
    }

    fn put_notice(&self, notice: &Notice) -> Result<()> {
        let t = self.t()?;
        let old = self.notice(notice.case, notice.seq, notice.n)?;
        let new_q = queue_key(notice);
        // New queue entry first: a crash in between leaves a duplicate (delivered twice,
        // deduplicated by id), never a notice out of the queue.
        if let Some(k) = &new_q {
            t.state.insert(k.as_slice(), &[] as &[u8])?;
        }
        t.state
            .insert(notice_key(notice), serde_json::to_vec(notice)?)?;
        if let Some(k) = old.as_ref().and_then(queue_key) {
            if Some(&k) != new_q.as_ref() {
                t.state.remove(k)?;
            }
        }
        Ok(())
    }

    fn due_notices(&self, now: chrono::DateTime<chrono::Utc>, limit: usize) -> Result<Vec<Notice>> {
        let t = self.t()?;
        let mut end = vec![b'q'];
        end.extend_from_slice(&((now.timestamp_millis().max(0) as u64) + 1).to_be_bytes());
        let mut out = Vec::new();
        for k in t.state.range(vec![b'q']..end).keys() {
            let k = k?;
            let tail = &k[9..];
            let (Some(case), Some(seq)) = (be_u64(tail), be_u64(&tail[8..])) else {
                continue;
            };
            let n = tail
                .get(16..20)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .unwrap_or(0);
            match self.notice(case, seq, n)? {
                // The record moved on (a queue entry left by a crash in put_notice).
                Some(rec) if queue_key(&rec).as_deref() == Some(&k[..]) => out.push(rec),
                _ => {
                    t.state.remove(&k)?;
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn next_notice(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let t = self.t()?;
        Ok(t.state
            .scan_prefix([b'q'])
            .keys()
            .next()
            .transpose()?
            .and_then(|k| be_u64(&k[1..]))
            .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64)))
    }

    fn remove_notice(&self, notice: &Notice) -> Result<()> {
        let t = self.t()?;
        for k in queue_key(notice).into_iter().chain(inbox_key(notice)) {
            t.state.remove(k)?;
        }
        t.state.remove(notice_key(notice))?;
        Ok(())
    }

    fn inbox(&self, staff: &str) -> Result<Vec<(u64, u64, u32)>> {
        let t = self.t()?;
        let mut prefix = key(b'i', &[staff.as_bytes()]);
        prefix.push(0);
        t.state
            .scan_prefix(&prefix)
            .keys()
            .map(|k| {
                let k = k?;
                let t = &k[prefix.len()..];
                match (be_u64(t), t.get(8..).and_then(be_u64), t.get(16..20)) {
                    (Some(c), Some(s), Some(n)) => {
                        Ok((c, s, u32::from_be_bytes(n.try_into().unwrap_or_default())))
                    }
                    _ => Err(Error::Store("bad inbox key".into())),
                }
            })
            .collect()
    }

    fn tokens(&self) -> Result<Vec<(String, TokenRecord)>> {
        let t = self.t()?;
        t.tokens
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k).to_string(),
                    serde_json::from_slice(&v)?,
                ))
            })
            .collect()
    }
}

impl SledStore {
    /// The highest number issued in a counter scope. A number whose case was never
    /// written (a crash between the two) is removed, so numbering stays gap-free.
    fn last_number(&self, scope: &str) -> Result<u64> {
        let t = self.t()?;
        let mut prefix = key(b'n', &[scope.as_bytes()]);
        prefix.push(0);
        while let Some(kv) = t.state.scan_prefix(&prefix).next_back() {
            let (k, v) = kv?;
            let n =
                be_u64(&k[prefix.len()..]).ok_or_else(|| Error::Store("bad counter key".into()))?;
            let id = be_u64(&v).ok_or_else(|| Error::Store("bad counter value".into()))?;
            if t.state.contains_key(case_key(id))? {
                return Ok(n);
            }
            tracing::warn!(
                message = "removing a case number whose case was never written",
                scope,
                number = n
            );
            t.state.remove(&k)?;
            t.state
                .remove(key(b'N', &[format!("{scope}-{n:06}").as_bytes()]))?;
        }
        Ok(0)
    }

    fn ids_under(&self, prefix: u8, id: &str) -> Result<Vec<u64>> {
        let t = self.t()?;
        let mut p = key(prefix, &[id.as_bytes()]);
        p.push(0);
        t.state
            .scan_prefix(&p)
            .keys()
            .map(|k| {
                let k = k?;
                be_u64(&k[p.len()..]).ok_or_else(|| Error::Store("bad index key".into()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! What a crash between the writes of one commit can leave behind, and that readers
    //! and numbering ignore it.

    use super::*;
    use crate::case::{Applicant, CaseStatus, Data};

    fn new_case(id: u64) -> Case {
        let now = chrono::Utc::now();
        Case {
            id,
            number: String::new(),
            query_code: "ABCDEFGH".into(),
            procedure: "p".into(),
            procedure_name: "P".into(),
            department: "d".into(),
            version: "v".into(),
            bundle: None,
            applicant: Applicant {
                id: "A1".into(),
                name: "A".into(),
                ..Default::default()
            },
            channel: "online".into(),
            status: CaseStatus::Submitted,
            data: Data::new(),
            materials: vec![],
            submitted_at: now,
            accepted_at: None,
            decided_at: None,
            promised_due: None,
            statutory_due: None,
            cards: vec![],
            clock_stop: None,
            clock_stops: vec![],
            supplement: None,
            extension: None,
            commitment: None,
            tasks: vec![],
            tokens: vec![],
            visited: vec![],
            next_task: 0,
            next_token: 0,
            history_len: 0,
            rev: 0,
        }
    }

    fn event() -> HistoryEvent {
        HistoryEvent::new(chrono::Utc::now(), "t", "submitted")
    }

    fn submit(s: &SledStore, id: u64) -> Case {
        let mut w = [CaseWrite {
            before: None,
            after: new_case(id),
            event: event(),
            number_scope: Some("P-2026".into()),
            timers: vec![],
        }];
        s.commit(&mut w, &no_notices).unwrap();
        w[0].after.clone()
    }

    /// Commits `before` → `after` with `timers`; returns the case as written.
    fn change(s: &SledStore, before: Case, after: Case, timers: Vec<crate::case::Timer>) -> Case {
        let mut w = [CaseWrite {
            before: Some(before),
            after,
            event: event(),
            number_scope: None,
            timers,
        }];
        s.commit(&mut w, &no_notices).unwrap();
        w[0].after.clone()
    }

    fn timer(case: u64, at: chrono::DateTime<chrono::Utc>, threshold: &str) -> crate::case::Timer {
        crate::case::Timer {
            at,
            case,
            limit: crate::case::Limit::Promised,
            token: None,
            threshold: threshold.into(),
            limit_due: at,
        }
    }

    #[test]
    fn a_transitions_timers_share_a_key_that_moves_on_to_the_next_pending_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = |h: i64| t0 + chrono::Duration::hours(h);
        let before = submit(&s, 1);
        let mut after = before.clone();
        after.status = CaseStatus::InProgress;
        // Out of order on purpose: the group is kept oldest first.
        let timers = vec![
            timer(1, at(30), "breach"),
            timer(1, at(10), "yellow"),
            timer(1, at(20), "red"),
        ];
        change(&s, before, after, timers);
        let keys = || s.t().unwrap().state.scan_prefix([b'T']).count();
        assert_eq!(keys(), 1, "one key for the transition's three timers");
        assert_eq!(s.next_timer().unwrap(), Some(at(10)));
        assert!(s.due_timers(at(9), 10).unwrap().is_empty());

        let due = s.due_timers(at(25), 10).unwrap();
        assert_eq!(due.len(), 1);
        let thresholds: Vec<&str> = due[0].timers.iter().map(|t| t.threshold.as_str()).collect();
        assert_eq!(thresholds, ["yellow", "red", "breach"]);
        // Two fired; the breach stays, under its own time now.
        s.settle_timers(&due[0], &due[0].timers[2..]).unwrap();
        assert_eq!(keys(), 1);
        assert_eq!(s.next_timer().unwrap(), Some(at(30)));
        assert!(s.due_timers(at(29), 10).unwrap().is_empty());
        let due = s.due_timers(at(30), 10).unwrap();
        assert_eq!(due[0].timers.len(), 1);
        s.settle_timers(&due[0], &[]).unwrap();
        assert_eq!(keys(), 0);
        assert_eq!(s.next_timer().unwrap(), None);
    }

    #[test]
    fn timers_a_format_2_store_wrote_one_per_key_still_fire_and_the_store_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        {
            let s = SledStore::open(dir.path(), 1 << 20).unwrap();
            let t = s.t().unwrap();
            let old = timer(7, t0, "breach");
            let mut k = vec![b'T'];
            k.extend_from_slice(&(t0.timestamp_millis() as u64).to_be_bytes());
            k.extend_from_slice(&7u64.to_be_bytes());
            k.extend_from_slice(old.card_id().as_bytes());
            t.state
                .insert(k, serde_json::to_vec(&old).unwrap())
                .unwrap();
            t.meta
                .insert("format_version", &2u64.to_be_bytes())
                .unwrap();
            t.db.flush().unwrap();
        }
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            s.meta("format_version").unwrap().as_deref(),
            Some(&FORMAT_VERSION.to_be_bytes()[..])
        );
        assert_eq!(s.next_timer().unwrap(), Some(t0));
        let due = s.due_timers(t0, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].timers, vec![timer(7, t0, "breach")]);
        s.settle_timers(&due[0], &[]).unwrap();
        assert_eq!(s.next_timer().unwrap(), None);
    }

    #[test]
    fn timer_groups_are_binary_keep_every_field_and_read_json_groups_of_format_3() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 123_456_789).unwrap();
        let group = vec![
            crate::case::Timer {
                token: Some(u32::MAX),
                limit: crate::case::Limit::Step,
                ..timer(u64::MAX, at, "75%")
            },
            crate::case::Timer {
                limit_due: at + chrono::Duration::days(3),
                limit: crate::case::Limit::Commitment,
                ..timer(2, at, "十日")
            },
            timer(3, at, ""),
        ];
        let bytes = encode_timers(&group);
        assert_eq!(decode_timers(&bytes).unwrap(), group);
        assert!(bytes.len() < serde_json::to_vec(&group).unwrap().len() / 2);
        assert_eq!(decode_timers(&encode_timers(&[])).unwrap(), vec![]);
        // Cut anywhere, a group is an error, never a panic or a shorter group.
        for n in 1..bytes.len() {
            assert!(decode_timers(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut wrong_limit = bytes.clone();
        wrong_limit[5 + 24 + 8] = 9;
        assert!(decode_timers(&wrong_limit).is_err());
        // Format 3 wrote a JSON array.
        assert_eq!(
            decode_timers(&serde_json::to_vec(&group).unwrap()).unwrap(),
            group
        );
    }

    #[test]
    fn an_unreadable_timer_group_is_moved_to_the_incidents_and_the_rest_still_fire() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let before = submit(&s, 1);
        let after = before.clone();
        change(&s, before, after, vec![timer(1, t0, "breach")]);
        // Earlier in the index than the good group, and not a timer group at all.
        let mut bad = encode_timers(&[timer(2, t0, "75%")]);
        bad.truncate(bad.len() - 1);
        let tail = pair_key(b'T', 2, 0);
        s.t()
            .unwrap()
            .state
            .insert(timer_key(t0 - chrono::Duration::hours(1), &tail[1..]), bad)
            .unwrap();
        let due = s.due_timers(t0, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].timers, vec![timer(1, t0, "breach")]);
        assert_eq!(s.t().unwrap().state.scan_prefix([b'T']).count(), 1);
        let incidents = s.incidents(10).unwrap();
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].code, "bad_timer");
        assert_eq!(incidents[0].case, Some(2));
    }

    #[test]
    fn the_card_index_has_one_key_per_case_and_group_and_reads_format_3_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let card = |id: &str, holders: &[&str], supervisor: &str| crate::case::Card {
            id: id.into(),
            kind: crate::case::CardKind::Supervision,
            limit: crate::case::Limit::Promised,
            step: None,
            threshold: id.into(),
            due: chrono::Utc::now(),
            issued_at: chrono::Utc::now(),
            holders: holders.iter().map(|h| h.to_string()).collect(),
            assignees: vec![],
            supervisor: Some(supervisor.into()),
            answer: None,
        };
        let keys = || s.t().unwrap().state.scan_prefix([b'K']).count();
        let mut before = submit(&s, 1);
        for (n, c) in [
            card("75%", &["review"], "chief"),
            // The breach to the same groups writes no key; an escalation group one.
            card("breach", &["review"], "chief"),
            card("breach-2", &["review"], "board"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut after = before.clone();
            after.cards.push(c);
            before = change(&s, before, after, vec![]);
            assert_eq!(keys(), [2, 2, 3][n]);
        }
        // Format 3: a key per card, the card id after the case id.
        let mut old = key(b'K', &[b"review", &9u64.to_be_bytes(), b"75%"]);
        s.t().unwrap().state.insert(old.clone(), vec![]).unwrap();
        old.truncate(old.len() - 2);
        old.extend_from_slice(b"breach");
        s.t().unwrap().state.insert(old, vec![]).unwrap();
        assert_eq!(s.cases_with_cards_for("review").unwrap(), [1, 9]);
        assert_eq!(s.cases_with_cards_for("board").unwrap(), [1]);
        assert!(s.cases_with_cards_for("nobody").unwrap().is_empty());
    }

    #[test]
    fn closed_cases_whose_cards_are_answered_leave_the_card_index() {
        let dir = tempfile::tempdir().unwrap();
        let card = |answered: bool| crate::case::Card {
            id: "75%".into(),
            kind: crate::case::CardKind::Supervision,
            limit: crate::case::Limit::Promised,
            step: None,
            threshold: "75%".into(),
            due: chrono::Utc::now(),
            issued_at: chrono::Utc::now(),
            holders: vec!["review".into()],
            assignees: vec![],
            supervisor: None,
            answer: answered.then(|| crate::case::CardAnswer {
                by: "a".into(),
                at: chrono::Utc::now(),
                reason: "done".into(),
            }),
        };
        {
            let s = SledStore::open(dir.path(), 1 << 20).unwrap();
            let mut cases = Vec::new();
            for id in 1..=3 {
                let before = submit(&s, id);
                let mut after = before.clone();
                after.cards.push(card(id != 2));
                cases.push(change(&s, before, after, vec![]));
            }
            assert_eq!(s.cases_with_cards_for("review").unwrap(), [1, 2, 3]);
            // Case 1 closes with its card answered: it leaves. Case 2 closes with its card
            // unanswered: it stays until answered.
            for c in cases.drain(..2) {
                let mut after = c.clone();
                after.status = CaseStatus::Approved;
                change(&s, c, after, vec![]);
            }
            assert_eq!(s.cases_with_cards_for("review").unwrap(), [2, 3]);
            // A store of format 4 kept the entry of a closed case: opened, it is pruned.
            s.t()
                .unwrap()
                .state
                .insert(key(b'K', &[b"review", &1u64.to_be_bytes()]), vec![])
                .unwrap();
            s.t()
                .unwrap()
                .meta
                .insert("format_version", &4u64.to_be_bytes())
                .unwrap();
            s.flush().unwrap();
        }
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.cases_with_cards_for("review").unwrap(), [2, 3]);
    }

    #[test]
    fn open_cases_per_version_are_counted_once_then_kept_current() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let v = ("p".to_string(), "v".to_string());
        let open = |s: &SledStore| s.open_cases_by_version().unwrap().get(&v).copied();
        let a = submit(&s, 1);
        submit(&s, 2);
        // A submission that failed before its record left its index entry behind.
        s.set_fault(Some(fail_at(FaultPoint::BeforeRecord)));
        assert!(try_submit(&s, 3).is_err());
        s.set_fault(None);
        assert_eq!(open(&s), Some(2));
        // Kept current from now on, without another count.
        submit(&s, 4);
        let mut closed = a.clone();
        closed.status = CaseStatus::Approved;
        change(&s, a, closed, vec![]);
        assert_eq!(open(&s), Some(2));
        assert_eq!(s.open_cases_of_version("p", "v").unwrap(), [2, 4]);
    }

    fn record(i: usize) -> crate::audit::Record {
        crate::audit::Record::new(chrono::Utc::now(), "t", "token.issued", format!("t:{i}"))
    }

    #[test]
    fn audit_entries_are_written_in_blocks_and_read_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = |s: &SledStore| s.t().unwrap().audit.len();
        {
            let s = SledStore::open(dir.path(), 1 << 20).unwrap();
            // A format-2 store held one entry per key: a block of one.
            let first = record(0).seal(0, crate::audit::GENESIS);
            s.t()
                .unwrap()
                .audit
                .insert(0u64.to_be_bytes(), serde_json::to_vec(&first).unwrap())
                .unwrap();
            // Three appends, then a flush: one block.
            for i in 1..4 {
                s.append_audit(vec![record(i)]).unwrap();
            }
            assert_eq!(blocks(&s), 1, "sealed, not yet written");
            let ticket = s.append_audit(vec![record(4), record(5)]).unwrap();
            assert!(s.flush().unwrap() >= ticket);
            assert_eq!(blocks(&s), 2);
            // Reading writes what is pending, so readers see every entry.
            s.append_audit(vec![record(6)]).unwrap();
            let all = s.audit_raw(0, 100).unwrap();
            assert_eq!(blocks(&s), 3);
            let seqs: Vec<u64> = all.iter().map(|(n, _)| *n).collect();
            assert_eq!(seqs, (0..7).collect::<Vec<_>>());
            for (n, bytes) in &all {
                let e: crate::audit::Entry = serde_json::from_slice(bytes).unwrap();
                assert_eq!(e.seq, *n);
            }
            // From the middle of a block, bounded.
            let page: Vec<u64> = s.audit_raw(2, 3).unwrap().iter().map(|(n, _)| *n).collect();
            assert_eq!(page, [2, 3, 4]);
            // Sealed but unwritten at close: written by the drop.
            s.append_audit(vec![record(7)]).unwrap();
        }
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        s.append_audit(vec![record(8)]).unwrap();
        let verdict = crate::audit::verify(&s).unwrap();
        assert!(verdict.ok(), "{verdict:?}");
        assert_eq!(verdict.entries, 9);
    }

    #[test]
    fn the_audit_export_comes_page_by_page_in_order_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 8 << 20).unwrap();
        let n = 2 * crate::audit::EXPORT_PAGE + 17;
        s.append_audit((0..n).map(record).collect()).unwrap();
        let (mut from, mut pages, mut seqs) = (Some(0), 0, Vec::new());
        while let Some(at) = from {
            let (lines, next) = crate::audit::export_page(&s, at).unwrap();
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let e: crate::audit::Entry = serde_json::from_slice(line).unwrap();
                seqs.push(e.seq);
            }
            pages += 1;
            from = next;
        }
        assert_eq!(pages, 3);
        assert_eq!(seqs, (0..n as u64).collect::<Vec<_>>());
        let mut whole = Vec::new();
        crate::audit::export(&s, &mut whole).unwrap();
        assert_eq!(
            whole
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            n
        );
    }

    #[test]
    fn a_case_read_after_its_commit_is_the_case_as_stored_and_the_copies_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let before = submit(&s, 3);
        let mut after = before.clone();
        after.data = serde_json::from_value(serde_json::json!({
            "capacity_kva": 1000, "ratio": 0.5, "when": "2026-11-27", "nested": { "a": [1, "x", null] }
        }))
        .unwrap();
        change(&s, before, after, vec![]);
        let recent = serde_json::to_value(s.case(3).unwrap().unwrap()).unwrap();
        s.recent.lock().cases.clear();
        let stored = serde_json::to_value(s.case(3).unwrap().unwrap()).unwrap();
        assert_eq!(recent, stored);

        // Bounded, also when the same few cases are committed over and over (each commit
        // drops its case, then writes it again).
        let mut r = Recent::default();
        for i in 0..(10 * RECENT_CASES as u64) {
            let id = if i % 3 == 0 { i } else { i % 7 };
            r.drop_case(id);
            r.put(Arc::new(new_case(id)));
            assert!(r.cases.len() <= RECENT_CASES);
            assert!(r.order.len() <= 2 * RECENT_CASES + 1);
        }
        // The hot cases are still there.
        assert!((1..7).all(|id| r.get(id).is_some()));
    }

    fn fail_at(stage: FaultPoint) -> Fault {
        Arc::new(move |at| {
            if at == stage {
                Err(Error::Store("injected write failure".into()))
            } else {
                Ok(())
            }
        })
    }

    fn try_submit(s: &SledStore, id: u64) -> Result<Case> {
        let mut w = [CaseWrite {
            before: None,
            after: new_case(id),
            event: event(),
            number_scope: Some("P-2026".into()),
            timers: vec![],
        }];
        s.commit(&mut w, &no_notices)?;
        Ok(w[0].after.clone())
    }

    #[test]
    fn a_write_that_fails_after_the_case_record_is_a_commit_and_its_number_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        s.set_fault(Some(fail_at(FaultPoint::AfterRecord)));
        // The case record is on disk: the answer is that it happened.
        let first = try_submit(&s, 1).expect("the case was written");
        assert_eq!(first.number, "P-2026-000001");
        assert_eq!(s.case_id_by_number("P-2026-000001").unwrap(), Some(1));
        s.set_fault(None);
        assert_eq!(submit(&s, 2).number, "P-2026-000002");
        // And the audit chain holds both submissions.
        let entries = s.audit_raw(0, 10).unwrap();
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn a_write_that_fails_before_the_case_record_changes_nothing_and_takes_no_number() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(submit(&s, 1).number, "P-2026-000001");
        s.set_fault(Some(fail_at(FaultPoint::BeforeRecord)));
        assert!(try_submit(&s, 2).is_err());
        assert_eq!(s.case(2).unwrap().map(|c| c.id), None);
        assert_eq!(s.case_id_by_number("P-2026-000002").unwrap(), None);
        assert_eq!(s.audit_raw(0, 10).unwrap().len(), 1);
        s.set_fault(None);
        assert_eq!(submit(&s, 3).number, "P-2026-000002");
    }

    #[test]
    fn a_number_whose_case_was_never_written_is_reused_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(submit(&s, 1).number, "P-2026-000001");
            // A crash after the number was written and before its case record.
            s.t()
                .unwrap()
                .state
                .insert(number_key("P-2026", 2), &99u64.to_be_bytes())
                .unwrap();
            s.t()
                .unwrap()
                .state
                .insert(key(b'N', &[b"P-2026-000002"]), &99u64.to_be_bytes())
                .unwrap();
            s.t().unwrap().db.flush().unwrap();
            assert_eq!(s.case_id_by_number("P-2026-000002").unwrap(), None);
        }
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let c = submit(&s, 2);
        assert_eq!(c.number, "P-2026-000002");
        assert_eq!(s.case_id_by_number("P-2026-000002").unwrap(), Some(2));
        assert_eq!(submit(&s, 3).number, "P-2026-000003");
    }

    #[test]
    fn history_and_closed_tasks_of_an_unfinished_commit_are_invisible() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let c = submit(&s, 7);
        assert_eq!(s.history(7).unwrap().len(), 1);
        // The next commit wrote its event with the task it closed, then the process died.
        let mut orphan = event();
        orphan.seq = c.history_len;
        let task = Task {
            id: "7-1".into(),
            step: "s".into(),
            step_name: "S".into(),
            group: "g".into(),
            assignee: None,
            claimed_by: None,
            state: crate::case::TaskState::Completed,
            created_at: chrono::Utc::now(),
            completed_at: None,
            completed_by: None,
            outcome: None,
            comment: None,
            token: 0,
            due: None,
            external: None,
        };
        let mut stored = serde_json::to_vec(&orphan).unwrap();
        stored.push(b'\n');
        serde_json::to_writer(&mut stored, &[&task]).unwrap();
        s.t()
            .unwrap()
            .state
            .insert(hist_key(7, c.history_len), stored)
            .unwrap();
        let mut open = c.clone();
        open.tasks.push(Task {
            state: crate::case::TaskState::Open,
            ..task.clone()
        });
        s.t()
            .unwrap()
            .state
            .insert(case_key(7), encode_case(&open).unwrap())
            .unwrap();
        // A format-2 store kept closed tasks under keys of their own.
        s.t()
            .unwrap()
            .state
            .insert(
                task_key(7, "7-1").unwrap(),
                serde_json::to_vec(&task).unwrap(),
            )
            .unwrap();
        // As after the crash: the process that cached the case is gone.
        s.recent.lock().cases.clear();
        assert_eq!(s.history(7).unwrap().len(), 1);
        assert!(s.closed_tasks(7).unwrap().is_empty());
    }

    #[test]
    fn a_checkpoint_waits_for_a_lull_then_reopens_with_everything_in_place() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(SledStore::open(&dir.path().join("s"), 8 << 20).unwrap());
        let a = submit(&s, 1);
        // Not enough written, or written too recently: nothing happens.
        assert!(s.checkpoint(u64::MAX, Duration::ZERO).unwrap().is_none());
        assert!(s
            .checkpoint(0, Duration::from_secs(3600))
            .unwrap()
            .is_none());
        // Readers and writers on other threads meanwhile: they wait, nothing is lost.
        let busy = {
            let s = s.clone();
            std::thread::spawn(move || {
                for id in 2..200u64 {
                    submit(&s, id);
                    assert!(s.case(1).unwrap().is_some());
                }
            })
        };
        let mut ran = 0;
        while !busy.is_finished() || ran == 0 {
            if s.checkpoint(0, Duration::ZERO).unwrap().is_some() {
                ran += 1;
            }
        }
        busy.join().unwrap();
        assert!(ran >= 1);
        assert_eq!(s.case(1).unwrap().unwrap().number, a.number);
        let b = submit(&s, 500);
        s.flush().unwrap();
        drop(s);
        // The next open sees every case, numbered without a gap.
        let s = SledStore::open(&dir.path().join("s"), 8 << 20).unwrap();
        for id in (1..200u64).chain([500]) {
            assert!(s.case(id).unwrap().is_some(), "case {id} lost");
        }
        assert_eq!(s.case(500).unwrap().unwrap().number, b.number);
        assert_eq!(b.number, "P-2026-000200");
    }

    #[test]
    fn a_checkpoint_that_cannot_reopen_leaves_the_store_unavailable_until_a_retry_succeeds() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 8 << 20).unwrap();
        let a = submit(&s, 1);
        s.set_fault(Some(fail_at(FaultPoint::Reopen)));
        assert!(s.checkpoint(0, Duration::ZERO).is_err());
        assert!(!s.is_open());
        // Every call refuses with a typed, retryable error; nothing panics or hangs.
        assert!(matches!(s.history(1), Err(Error::Unavailable(_))));
        assert!(matches!(s.flush(), Err(Error::Unavailable(_))));
        s.set_fault(None);
        // Calls try again at most every REOPEN_RETRY.
        std::thread::sleep(REOPEN_RETRY + Duration::from_millis(50));
        assert_eq!(s.history(1).unwrap().len(), 1);
        assert!(s.is_open());
        assert_eq!(s.case(1).unwrap().unwrap().number, a.number);
        assert_eq!(submit(&s, 2).number, "P-2026-000002");
    }

    #[test]
    fn a_second_store_on_the_same_folder_is_refused_as_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _s = SledStore::open(dir.path(), 1 << 20).unwrap();
        assert!(matches!(
            SledStore::open(dir.path(), 1 << 20),
            Err(Error::InUse(_))
        ));
    }

    #[test]
    fn a_stale_revision_is_a_conflict_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let c = submit(&s, 1);
        let mut stale = c.clone();
        stale.rev -= 1;
        let mut w = [CaseWrite {
            before: Some(stale),
            after: c.clone(),
            event: event(),
            number_scope: None,
            timers: vec![],
        }];
        assert!(matches!(
            s.commit(&mut w, &no_notices),
            Err(Error::Conflict(_))
        ));
        assert_eq!(s.history(1).unwrap().len(), 1);
        assert_eq!(s.case(1).unwrap().unwrap().rev, c.rev);
    }
}
