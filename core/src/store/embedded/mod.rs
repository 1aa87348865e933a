//! The embedded store: sled in the data folder, one process per folder. Only this module
//! knows the key layout.
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
//! Timer groups are written before the record too: [`TimerTable::due_timers`] skips a group
//! while a commit of its case is under way and removes one whose transition never reached
//! its record.
//!
//! sled recovers a prefix of its log, so a case record on disk implies everything written
//! before it. Commits of several cases at once (bundles) use one sled batch instead, to be
//! all-or-nothing. Conflicts are checked under an in-process lock per case (sled
//! guarantees a single process per folder). sled makes writes durable only on flush;
//! [`CaseTable::flush`] makes every commit so far durable at once, and callers answer a client
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
//! | `T` | due time of the earliest pending timer (ms since 1970, u64 BE), case id, history seq (u64 BE each) | the timers one transition set ([`TimerGroup`]), binary (see `timers::encode`) |
//! | `K` | group `\0` case id | empty (the case has cards addressed to the group) |
//! | `b` | bundle reference `\0` case id | empty |
//! | `o` | case id, history seq (u64 BE each), n (u32 BE) | notice JSON (the outbox) |
//! | `q` | next attempt (ms, u64 BE), case id, seq, n | empty (notices waiting for delivery) |
//! | `i` | staff id `\0` case id, seq, n | empty (a staff member's inbox) |
//! | `F` | when it failed (ms, u64 BE), case id, seq, n | empty (notices that failed for good) |
//! | `Q` | case id (u64 BE) | the revision it describes (u64 BE) + the case's search entry (`search::CaseListing`) JSON |
//! | `S` | case id (u64 BE) | the revision it describes (u64 BE) + the case's contribution to the statistics JSON |
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
//!
//! Files: `keys` (the layout), `cases` (reading and committing cases), `tables` (indexes,
//! notices, administration), `timers` (timer groups), `chain` (the audit chain),
//! `recent` (the recently committed cases kept parsed).
//!
//! [`TimerTable::due_timers`]: crate::store::TimerTable::due_timers
//! [`CaseTable::flush`]: crate::store::CaseTable::flush
//! [`TimerGroup`]: crate::store::TimerGroup

mod backup;
mod cases;
mod chain;
mod durable;
pub use durable::Durability;
mod export;
mod files;
mod keys;
mod recent;
mod tables;
#[cfg(test)]
mod tests;
mod timers;
mod work;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use sled::Tree;

use self::chain::Chain;
use self::keys::*;
use self::recent::Recent;
use crate::error::{Error, Result};
use crate::store::{Fault, FaultPoint, Store};

/// Bumped when the key layout changes: a store of a newer format is refused, one of an
/// older format this version still reads is upgraded (its number rewritten) on open.
const FORMAT_VERSION: u64 = 6;

/// Format 2 kept one timer per `T` key and each closed task under its own `t` key; format
/// 3 wrote timer groups as JSON and a `K` key per card. Format 4 reads all of those.
/// Format 5 prunes the card index (closed cases whose cards are all answered leave it);
/// opening an older store prunes it once. Format 6 indexes failed notices (`F`); opening
/// an older store builds that index once.
const OLDEST_READABLE_FORMAT: u64 = 2;

/// How long opening waits for sled's own lock, released by the threads of a handle of
/// this process shortly after it is dropped.
const REOPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// While a checkpoint could not reopen the store, calls try again at most this often.
const REOPEN_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Lock stripes for the per-case conflict check.
pub(super) const STRIPES: usize = 256;

/// The open database and its trees. Replaced whole by a checkpoint.
pub(crate) struct Trees {
    db: sled::Db,
    /// The files an `fsync` flush syncs after sled's own flush.
    files: durable::SyncedFiles,
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
    durability: Durability,
    /// The folder's lock file, locked while the store is open: a second process gets a
    /// clear [`Error::InUse`], and sled's own lock is only ever contended by this process.
    _lock: std::fs::File,
    /// Bytes written and quiet time after which [`Store::maintain`] runs a checkpoint
    /// (bytes 0: never).
    checkpoints: (u64, std::time::Duration),
    /// When a call last tried to reopen a store a checkpoint left closed.
    reopen_tried: Mutex<Option<std::time::Instant>>,
    /// Open cases per procedure version: counted from the index on first use, then kept
    /// current by every commit (the versions list no longer reads every open case).
    version_counts: Mutex<Option<std::collections::HashMap<VersionOf, u64>>>,
    /// The worklist's index in memory, per group once asked for (see [`work`]).
    work: work::WorkCache,
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
            checkpoints: (0, std::time::Duration::ZERO),
            version_counts: Mutex::new(None),
            work: work::WorkCache::default(),
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
            durability: Durability::default(),
        })
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
                    let state = db.open_tree("state")?;
                    if n < 5 {
                        prune_card_index(&state)?;
                    }
                    build_failed_index(&state)?;
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
            files: durable::SyncedFiles::open(path)?,
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

    /// Checkpoints from [`Store::maintain`] once `bytes` were written (0: never) and
    /// nothing for `idle`.
    pub fn with_checkpoints(mut self, bytes: u64, idle: std::time::Duration) -> SledStore {
        self.checkpoints = (bytes, idle);
        self
    }

    /// How far a flush carries acknowledged writes (default: to the disk itself).
    pub fn with_durability(mut self, durability: Durability) -> SledStore {
        self.durability = durability;
        self
    }

    /// Whether the store is open (false while a checkpoint could not reopen it).
    pub fn is_open(&self) -> bool {
        self.open.read().is_some()
    }

    /// Makes the store's recovery point current, if at least `min_bytes` were written
    /// since the last one and nothing for `idle`: a start after a crash then replays only
    /// what was written since. Store calls wait meanwhile. Returns how long it took.
    pub fn checkpoint(
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
}

impl Store for SledStore {
    fn available(&self) -> bool {
        self.is_open()
    }

    fn upkeep_overdue(&self) -> bool {
        let (bytes, _) = self.checkpoints;
        bytes > 0 && self.written_bytes.load(Ordering::Relaxed) >= bytes.saturating_mul(2)
    }

    /// A checkpoint, once `checkpoint_bytes` were written and nothing for
    /// `checkpoint_idle` (see [`SledStore::checkpoint`]).
    fn maintain(&self) -> Result<Option<String>> {
        let (bytes, idle) = self.checkpoints;
        if bytes == 0 {
            return Ok(None);
        }
        Ok(self
            .checkpoint(bytes, idle)?
            .map(|took| format!("checkpoint in {} ms", took.as_millis())))
    }

    fn set_fault(&self, fault: Option<Fault>) {
        *self.fault.write() = fault;
    }

    fn backup(&self, to: &Path) -> Result<super::BackupReport> {
        self.backup_impl(to)
    }

    fn export(&self, f: &mut dyn FnMut(super::Item) -> Result<()>) -> Result<()> {
        self.export_impl(f)
    }

    fn import(&self, _items: Vec<super::Item>) -> Result<()> {
        Err(Error::Validation(
            "a copy goes from the embedded store to PostgreSQL; to come back, restore a backup \
             of the embedded store"
                .into(),
        ))
    }

    fn is_empty(&self) -> Result<bool> {
        self.is_empty_impl()
    }
}

pub(super) fn closed() -> Error {
    Error::Unavailable("the store is being reopened after a checkpoint".into())
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
