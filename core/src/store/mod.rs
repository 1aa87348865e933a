//! The storage boundary: narrow tables ([`CaseTable`], [`IndexTable`], [`TimerTable`],
//! [`NoticeTable`], [`AuditTable`], [`OfficeTable`]) that every backend implements, and
//! [`open`], which picks the backend from the configuration. The engine sees only these
//! traits; one backend exists today, the embedded sled store ([`embedded`]).
//!
//! What every backend promises (checked by the conformance suite, `core/tests/store.rs`):
//! - a commit writes one change set (cases, history, closed tasks, indexes, timers,
//!   notices, numbers, audit entries) all or nothing, refused with `Conflict` if a case
//!   changed since it was read;
//! - a commit's receipt becomes durable once [`CaseTable::flushed`] reaches it (at once
//!   for a backend that is durable at commit); callers answer a client only then;
//! - case numbers are gap-free per counter scope; the audit chain is one chain;
//! - readers never see what an unfinished or failed commit wrote: no case, no number, no
//!   history, no timer and no notice of a transition that did not happen.

mod config;
pub mod copy;
pub mod embedded;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::case::{Case, HistoryEvent, Task};
use crate::error::Result;
use crate::notice::Notice;

pub use config::{open, without_password, StoreConfig};
pub use copy::{copy, CopyReport, Item};
pub use embedded::{Durability, SledStore};

/// A history event as every backend stores it, and as the audit chain hashes it: its JSON,
/// then, if it closed tasks, a newline and their JSON array (compact JSON has no raw
/// newline, so the first one ends the event). Kept in one place: a store copied from one
/// backend to another keeps its chain.
pub fn stored_event(event: &HistoryEvent, closed: &[Task]) -> Result<Vec<u8>> {
    let mut stored = serde_json::to_vec(event)?;
    if !closed.is_empty() {
        stored.push(b'\n');
        serde_json::to_writer(&mut stored, closed)?;
    }
    Ok(stored)
}

/// A stored history event and the JSON array of the tasks it closed, if any.
pub fn split_event(stored: &[u8]) -> (&[u8], Option<&[u8]>) {
    match stored.iter().position(|&b| b == b'\n') {
        Some(i) => (&stored[..i], Some(&stored[i + 1..])),
        None => (stored, None),
    }
}

/// The number of a task id (`42-3` is 3), for ordering a case's tasks.
pub fn task_number(task: &str) -> u64 {
    task.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// A commit's place in the store's order: the commit is durable once
/// [`CaseTable::flushed`] reaches it.
pub type Receipt = u64;

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
    /// What the worklist shows of each open task of `after` (the engine fills it for
    /// every commit; the store sets their case number and revision).
    pub work: Vec<WorkEntry>,
    /// The case's contribution to the statistics after the transition, when it changed
    /// (the engine fills it); written before the record with the case's new revision.
    pub figures: Option<crate::stats::CaseFigures>,
}

/// What a worklist needs of an open task, kept in the group's index so that listing a
/// group's work never reads its cases.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkEntry {
    pub case_id: u64,
    /// The case's revision this entry was written with.
    #[serde(default)]
    pub rev: u64,
    #[serde(default)]
    pub case_number: String,
    pub procedure: String,
    pub version: String,
    pub procedure_name: String,
    pub department: String,
    pub applicant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    pub task: crate::case::Task,
    pub clock: crate::limits::LevelClock,
}

/// The timers one transition set, stored under one key and due at its earliest.
#[derive(Debug, Clone)]
pub struct TimerGroup {
    pub key: Vec<u8>,
    /// Oldest first.
    pub timers: Vec<crate::case::Timer>,
}

/// Computes the notices of one case write, called by [`CaseTable::commit`] once the case has
/// its number and the event its sequence number: `(before, after, event)`. The notices
/// (the outbox) are written before the case record; one left by a crash (its `seq` not
/// below the case's `history_len`) is never delivered.
pub type Outbox<'a> = &'a (dyn Fn(Option<&Case>, &Case, &HistoryEvent) -> Vec<Notice> + Sync);

/// Where a fault can be injected ([`Store::set_fault`]): in a commit, before the case
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

/// Cases: reading them, committing their changes, and making commits durable.
pub trait CaseTable {
    fn next_case_id(&self) -> Result<u64>;
    fn case(&self, id: u64) -> Result<Option<Case>>;
    /// A case about to be changed, and whether it came from this process's cache of the
    /// cases it committed (a backend whose reads are cheap keeps none and reads it). A
    /// cached case is stale if another node changed it since: a commit from it is then a
    /// conflict (which drops it from the cache), and what the caller could not do with it
    /// is to be tried again on the case as stored.
    fn case_to_change(&self, id: u64) -> Result<(Option<Case>, bool)> {
        Ok((self.case(id)?, false))
    }
    fn case_id_by_number(&self, number: &str) -> Result<Option<u64>>;
    fn history(&self, id: u64) -> Result<Vec<HistoryEvent>>;
    /// A history event exactly as stored (the audit chain vouches for these bytes).
    fn history_raw(&self, case: u64, seq: u64) -> Result<Option<Vec<u8>>>;
    /// Tasks of a case that are completed or cancelled, in creation order. A stored case
    /// record holds only its open tasks: closed ones are written once, with the history
    /// event of the transition that closed them, which keeps the record that every
    /// transition rewrites small.
    fn closed_tasks(&self, case: u64) -> Result<Vec<Task>>;
    fn closed_task(&self, case: u64, task: &str) -> Result<Option<Task>>;
    /// Commits one change set: every case of `writes` with its history event, closed
    /// tasks, index entries, timers, notices (from `outbox`), number and audit entry, all
    /// or nothing. Fails with `Conflict` if any case changed since it was read. Returns a
    /// receipt: the commit is durable once [`CaseTable::flushed`] reaches it.
    fn commit(&self, writes: &mut [CaseWrite], outbox: Outbox<'_>) -> Result<Receipt>;
    /// Makes every commit made so far durable, on the calling thread, and returns the
    /// receipt it covers. Concurrent callers take turns. (A backend whose commits are
    /// durable when they return answers at once.)
    fn flush(&self) -> Result<Receipt>;
    /// Durable up to: every commit whose receipt is at most this is durable.
    fn flushed(&self) -> Receipt;
}

/// Lookups through the indexes a commit maintains. An index may still name a case or a
/// task that a failed or unfinished commit wrote before its case record, or that a later
/// commit closed: callers read the case and go by what it shows.
pub trait IndexTable {
    /// Calls `f` with each open task of a group as the last commit of its case described
    /// it (in no particular order).
    fn visit_work(&self, group: &str, f: &mut dyn FnMut(&Arc<WorkEntry>)) -> Result<()>;
    /// Cases whose open tasks' entries are missing or of an older format: the engine
    /// writes them again with [`IndexTable::put_work`] when it opens.
    fn cases_without_work(&self) -> Result<Vec<u64>>;
    /// Writes the entries of a case's open tasks (replacing what its index held), for a
    /// case at revision `rev`; nothing if the case has moved on since.
    fn put_work(&self, case: &Case, work: Vec<WorkEntry>) -> Result<()>;
    /// Ids of open external tasks of a topic, as `(case id, task id)`.
    fn open_tasks_of_topic(&self, topic: &str) -> Result<Vec<(u64, String)>>;
    fn cases_of_applicant(&self, applicant: &str) -> Result<Vec<u64>>;
    fn cases_of_bundle(&self, bundle: &str) -> Result<Vec<u64>>;
    /// Ids of the cases with cards still to be dealt with addressed to a group (of an
    /// open case, or unanswered), ascending.
    fn cases_with_cards_for(&self, group: &str) -> Result<Vec<u64>>;
    /// How many open cases run on each `(procedure, version)`.
    fn open_cases_by_version(&self) -> Result<BTreeMap<(String, String), u64>>;
    /// Ids of the open cases on one procedure version.
    fn open_cases_of_version(&self, procedure: &str, version: &str) -> Result<Vec<u64>>;
    /// A case's entry in the search index (written before its record by every commit that
    /// changes it, so it may describe a revision that never was: callers read the case).
    fn listing(&self, case: u64) -> Result<Option<crate::search::CaseListing>>;
    /// Calls `f` with the search index's entries from the newest case (or the oldest),
    /// starting after case `after`, until `f` answers `false`.
    fn listings(
        &self,
        after: Option<u64>,
        newest_first: bool,
        f: &mut dyn FnMut(crate::search::CaseListing) -> Result<bool>,
    ) -> Result<()>;
    /// Writes a case's search entry from its record if it has none (a store written before
    /// the index existed); returns whether it wrote one.
    fn complete_listing(&self, case: u64) -> Result<bool>;
    /// A case's contribution to the statistics as the last commit that changed it left it,
    /// with the case revision it was written at: one past the case's own revision was
    /// left by a commit that did not happen. `case` as read (a backend may answer from what
    /// it read with it: the entry changes only with the case's revision).
    fn case_figures(&self, case: &Case) -> Result<Option<(u64, crate::stats::CaseFigures)>>;
    /// Calls `f` with every case's contribution to the statistics written at the case's
    /// revision or before it (in no particular order); returns the ids of the cases whose
    /// contribution was written past it (by a commit that did not happen), to be worked
    /// out again.
    fn visit_figures(&self, f: &mut dyn FnMut(u64, crate::stats::CaseFigures)) -> Result<Vec<u64>>;
    /// Rewrites a case's contribution (a rebuild from its history, with no server
    /// running), if the case is still at revision `rev`; returns whether it was.
    fn put_figures(&self, case: u64, rev: u64, figures: &crate::stats::CaseFigures)
        -> Result<bool>;
}

/// Timers, ordered by when they fall due.
pub trait TimerTable {
    /// Groups whose earliest pending timer is due at or before `now`, oldest first, at
    /// most `limit`. A group holds all its timers, due or not. Groups of a commit still
    /// under way are not returned; those of a commit that never happened are dropped.
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
}

/// Notices: the outbox, its delivery queue and the staff inboxes. A notice belongs to its
/// case's history event `seq`: one whose `seq` is not below the case's `history_len` was
/// written by a commit that did not happen, and is never delivered (callers check).
pub trait NoticeTable {
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
    /// Notices that failed for good, the latest failure first, at most `limit`.
    fn failed_notices(&self, limit: usize) -> Result<Vec<Notice>>;
    /// `(case, seq, n)` of the inbox notices of a staff member, oldest first.
    fn inbox(&self, staff: &str) -> Result<Vec<(u64, u64, u32)>>;
}

/// The audit chain (commits append their transitions' entries themselves).
pub trait AuditTable {
    /// Appends records to the chain, in order. Returns a receipt, as a commit does.
    fn append_audit(&self, records: Vec<crate::audit::Record>) -> Result<Receipt>;
    /// Entries as stored, from sequence number `from`, at most `limit`.
    fn audit_raw(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>>;
}

/// The office's administration: procedure versions, tokens, incidents, settings.
pub trait OfficeTable {
    /// Records a procedure version's source if it is new; returns whether it was.
    fn put_version(&self, rec: &VersionRecord) -> Result<bool>;
    fn version(&self, procedure: &str, version: &str) -> Result<Option<VersionRecord>>;
    /// Every stored procedure version, in procedure and load order.
    fn versions(&self) -> Result<Vec<VersionRecord>>;
    fn put_token(&self, hash: &str, rec: &TokenRecord) -> Result<()>;
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    fn tokens(&self) -> Result<Vec<(String, TokenRecord)>>;
    /// Appends an incident; its `id` is assigned here.
    fn record_incident(&self, incident: Incident) -> Result<()>;
    /// The newest incidents first, at most `limit`.
    fn incidents(&self, limit: usize) -> Result<Vec<Incident>>;
    /// Small settings the server keeps with its data (e.g. its signing secret).
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    fn put_meta(&self, key: &str, value: &[u8]) -> Result<()>;
}

/// Uploaded files (materials), kept once by the SHA-256 of their content however many
/// cases name them. A case names a file by its hash, so its history (and the audit chain
/// over it) says exactly which content was submitted.
pub trait FileTable {
    /// Keeps `bytes`, on disk before it returns (a commit naming it may be acknowledged
    /// right after); returns the SHA-256 (hex) it is kept under.
    fn put_file(&self, bytes: &[u8]) -> Result<String>;
    /// A file by its SHA-256; `None` if there is none (or the name is not a SHA-256).
    fn file(&self, sha256: &str) -> Result<Option<Vec<u8>>>;
}

/// A backend: every table, and what the server asks of the store as a whole.
pub trait Store:
    CaseTable
    + IndexTable
    + TimerTable
    + NoticeTable
    + AuditTable
    + OfficeTable
    + FileTable
    + Send
    + Sync
{
    /// Whether calls can be served now (false while the store is being reopened).
    fn available(&self) -> bool;
    /// Whether other processes (nodes) write to this store too: what this process
    /// keeps in memory of it (token checks, delegations) must then be read again.
    fn shared(&self) -> bool {
        false
    }
    /// Whether the backend's own upkeep is overdue (the embedded store: twice the
    /// checkpoint's worth written without one, because writes never paused): a node
    /// worth taking out of rotation until it catches up.
    fn upkeep_overdue(&self) -> bool {
        false
    }
    /// The backend's own upkeep, called about once a second from a background thread
    /// (the embedded store's checkpoint); says what it did, if anything.
    fn maintain(&self) -> Result<Option<String>>;
    /// Injects a fault into later writes (`None` removes it): tests of failed writes and
    /// of what a crash between two writes leaves behind.
    #[doc(hidden)]
    fn set_fault(&self, fault: Option<Fault>);
    /// A consistent copy of the whole store (uploaded files included) into the new folder
    /// `to`, while it serves: a data folder of its own that a server can open.
    fn backup(&self, to: &std::path::Path) -> Result<BackupReport>;
    /// Calls `f` with every committed record, for a copy to another backend ([`copy()`]);
    /// nothing of a commit that did not happen.
    fn export(&self, f: &mut dyn FnMut(copy::Item) -> Result<()>) -> Result<()>;
    /// Writes records another store exported into this one (empty at the first call).
    fn import(&self, items: Vec<copy::Item>) -> Result<()>;
    /// Whether the store holds no case and no audit entry yet.
    fn is_empty(&self) -> Result<bool>;
}

/// What a backup copied and how long writes waited for it.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BackupReport {
    pub files: u64,
    pub bytes: u64,
    /// How long store calls waited while the database was copied.
    pub held_ms: u64,
    /// The whole backup.
    pub ms: u64,
}
