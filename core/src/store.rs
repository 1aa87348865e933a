//! Durable state behind one narrow trait, [`Store`], with the sled implementation
//! [`SledStore`]. Only this module knows the key layout.
//!
//! Durability: a commit is one sled transaction over every tree it touches (the case, its
//! history event, its indexes and counters), so a crash leaves all of it or none. sled
//! makes writes durable only on flush; [`Store::durable`] is awaited before a client is
//! answered and batches concurrent callers into one flush (group commit).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::Tree;

use crate::case::{Case, HistoryEvent};
use crate::error::{Error, Result};

/// Bumped when the key layout changes incompatibly.
const FORMAT_VERSION: u64 = 1;

/// One case written by a transition: the case as read (`None` for a new case), as written,
/// and the history event that explains it.
pub struct CaseWrite {
    pub before: Option<Case>,
    pub after: Case,
    pub event: HistoryEvent,
    /// For a new case: the counter scope its number is drawn from (`PLAN-LUP-2026`); the
    /// store sets `after.number` to `<scope>-<000042>`, gap-free within the scope.
    pub number_scope: Option<String>,
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
    /// read. Returns a ticket for [`Store::durable`].
    fn commit(&self, writes: &mut [CaseWrite]) -> Result<u64>;
    /// Resolves once every commit up to `ticket` is on disk.
    fn durable(&self, ticket: u64) -> BoxFuture<'_, Result<()>>;
    /// Ids of open tasks of a group, as `(case id, task id)`.
    fn open_tasks_of_group(&self, group: &str) -> Result<Vec<(u64, String)>>;
    fn cases_of_applicant(&self, applicant: &str) -> Result<Vec<u64>>;
    fn cases_of_bundle(&self, bundle: &str) -> Result<Vec<u64>>;
    /// Records a procedure version's source if it is new; returns whether it was.
    fn put_version(&self, rec: &VersionRecord) -> Result<bool>;
    fn version(&self, procedure: &str, version: &str) -> Result<Option<VersionRecord>>;
    fn put_token(&self, hash: &str, rec: &TokenRecord) -> Result<()>;
    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    fn tokens(&self) -> Result<Vec<(String, TokenRecord)>>;
    /// Appends an incident; its `id` is assigned here.
    fn record_incident(&self, incident: Incident) -> Result<()>;
    /// The newest incidents first, at most `limit`.
    fn incidents(&self, limit: usize) -> Result<Vec<Incident>>;
}

pub struct SledStore {
    db: sled::Db,
    cases: Tree,
    history: Tree,
    numbers: Tree,
    counters: Tree,
    group_tasks: Tree,
    applicants: Tree,
    bundles: Tree,
    versions: Tree,
    tokens: Tree,
    incidents: Tree,
    written: AtomicU64,
    flushed: AtomicU64,
    flush_lock: futures_util::lock::Mutex<()>,
}

fn cerr(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

impl SledStore {
    /// Opens (or creates) the store. sled allows one process per folder; a second server on
    /// the same folder gets a clear error instead of waiting.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledStore> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(|e| match e {
                // sled wraps the flock failure in an io::Error of its own; its text is all we have.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    Error::Store(format!(
                        "the data folder {} is in use by another Guichet process (sled allows one process per folder)",
                        path.display()
                    ))
                }
                other => Error::Store(format!("cannot open data folder {}: {other}", path.display())),
            })?;
        let meta = db.open_tree("meta")?;
        match meta.get("format_version")? {
            None => {
                meta.insert("format_version", &FORMAT_VERSION.to_be_bytes())?;
            }
            Some(v) if v.as_ref() == FORMAT_VERSION.to_be_bytes() => {}
            Some(_) => {
                return Err(Error::Store(
                    "data folder has an unsupported format version".into(),
                ))
            }
        }
        Ok(SledStore {
            cases: db.open_tree("cases")?,
            history: db.open_tree("history")?,
            numbers: db.open_tree("case_numbers")?,
            counters: db.open_tree("counters")?,
            group_tasks: db.open_tree("open_tasks_by_group")?,
            applicants: db.open_tree("cases_by_applicant")?,
            bundles: db.open_tree("cases_by_bundle")?,
            versions: db.open_tree("procedure_versions")?,
            tokens: db.open_tree("tokens")?,
            incidents: db.open_tree("incidents")?,
            db,
            written: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            flush_lock: futures_util::lock::Mutex::new(()),
        })
    }
}

fn key2(a: &str, b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + 1 + b.len());
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b);
    k
}

fn hist_key(case: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&case.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Index entries for a case's open tasks: `group \0 case \0 task`.
fn open_task_keys(c: &Case) -> Vec<Vec<u8>> {
    c.open_tasks()
        .map(|t| {
            let mut k = key2(&t.group, &c.id.to_be_bytes());
            k.push(0);
            k.extend_from_slice(t.id.as_bytes());
            k
        })
        .collect()
}

impl Store for SledStore {
    fn next_case_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()? + 1)
    }

    fn case(&self, id: u64) -> Result<Option<Case>> {
        match self.cases.get(id.to_be_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(decode_case(&v)?)),
        }
    }

    fn case_id_by_number(&self, number: &str) -> Result<Option<u64>> {
        Ok(self
            .numbers
            .get(number.as_bytes())?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    fn history(&self, id: u64) -> Result<Vec<HistoryEvent>> {
        self.history
            .scan_prefix(id.to_be_bytes())
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    fn commit(&self, writes: &mut [CaseWrite]) -> Result<u64> {
        // Serialize outside the transaction closure: it may run several times.
        let mut prepared = Vec::with_capacity(writes.len());
        for w in writes.iter() {
            let removed: Vec<Vec<u8>> = w.before.as_ref().map(open_task_keys).unwrap_or_default();
            prepared.push((removed, open_task_keys(&w.after)));
        }
        let trees = (
            &self.cases,
            &self.history,
            &self.numbers,
            &self.counters,
            &self.group_tasks,
            &self.applicants,
            &self.bundles,
        );
        let res = trees.transaction(
            |(cases, history, numbers, counters, group_tasks, applicants, bundles)| {
                let mut numbered = Vec::new();
                for (w, (removed, added)) in writes.iter().zip(&prepared) {
                    let mut after = w.after.clone();
                    let key = after.id.to_be_bytes();
                    let current = cases.get(key)?;
                    match (&w.before, current) {
                        (None, None) => {}
                        (Some(b), Some(cur)) => {
                            if stored_rev(&cur) != Some(b.rev) {
                                return Err(ConflictableTransactionError::Abort(Error::Conflict(
                                    format!(
                                        "case {} was changed by someone else; reload and try again",
                                        after.number
                                    ),
                                )));
                            }
                        }
                        _ => {
                            return Err(ConflictableTransactionError::Abort(Error::Conflict(
                                format!("case {} was changed by someone else", after.id),
                            )))
                        }
                    }
                    if let Some(scope) = &w.number_scope {
                        let n = counters
                            .get(scope.as_bytes())?
                            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
                            .unwrap_or(0)
                            + 1;
                        counters.insert(scope.as_bytes(), &n.to_be_bytes())?;
                        after.number = format!("{scope}-{n:06}");
                        numbers.insert(after.number.as_bytes(), &key)?;
                        applicants.insert(key2(&after.applicant.id, &key), &[])?;
                        if let Some(b) = &after.bundle {
                            bundles.insert(key2(b, &key), &[])?;
                        }
                    }
                    let mut event = w.event.clone();
                    event.seq = after.history_len;
                    after.history_len += 1;
                    after.rev += 1;
                    for k in removed {
                        group_tasks.remove(k.as_slice())?;
                    }
                    for k in added {
                        group_tasks.insert(k.as_slice(), &key)?;
                    }
                    let ev = serde_json::to_vec(&event)
                        .map_err(|e| ConflictableTransactionError::Abort(cerr(e)))?;
                    history.insert(&hist_key(after.id, event.seq), ev)?;
                    let bytes = encode_case(&after)
                        .map_err(|e| ConflictableTransactionError::Abort(cerr(e)))?;
                    cases.insert(&key, bytes)?;
                    numbered.push((after, event));
                }
                Ok(numbered)
            },
        );
        match res {
            Ok(done) => {
                for (w, (after, event)) in writes.iter_mut().zip(done) {
                    w.after = after;
                    w.event = event;
                }
                Ok(self.written.fetch_add(1, Ordering::SeqCst) + 1)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    fn durable(&self, ticket: u64) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.flushed.load(Ordering::SeqCst) >= ticket {
                return Ok(());
            }
            let _guard = self.flush_lock.lock().await;
            // Someone else's flush may have covered us while we waited.
            if self.flushed.load(Ordering::SeqCst) >= ticket {
                return Ok(());
            }
            let target = self.written.load(Ordering::SeqCst);
            self.db.flush_async().await?;
            self.flushed.fetch_max(target, Ordering::SeqCst);
            Ok(())
        })
    }

    fn open_tasks_of_group(&self, group: &str) -> Result<Vec<(u64, String)>> {
        let prefix = key2(group, &[]);
        self.group_tasks
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, _) = kv?;
                let rest = &k[prefix.len()..];
                let case = rest
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| Error::Store("bad task index key".into()))?;
                let task = String::from_utf8_lossy(rest.get(9..).unwrap_or_default()).to_string();
                Ok((case, task))
            })
            .collect()
    }

    fn cases_of_applicant(&self, applicant: &str) -> Result<Vec<u64>> {
        ids_under(&self.applicants, applicant)
    }

    fn cases_of_bundle(&self, bundle: &str) -> Result<Vec<u64>> {
        ids_under(&self.bundles, bundle)
    }

    fn put_version(&self, rec: &VersionRecord) -> Result<bool> {
        let key = key2(&rec.procedure, rec.version.as_bytes());
        let bytes = serde_json::to_vec(rec)?;
        let prev = self
            .versions
            .compare_and_swap(key, None as Option<&[u8]>, Some(bytes))?;
        Ok(prev.is_ok())
    }

    fn version(&self, procedure: &str, version: &str) -> Result<Option<VersionRecord>> {
        match self.versions.get(key2(procedure, version.as_bytes()))? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        }
    }

    fn put_token(&self, hash: &str, rec: &TokenRecord) -> Result<()> {
        self.tokens
            .insert(hash.as_bytes(), serde_json::to_vec(rec)?)?;
        Ok(())
    }

    fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        match self.tokens.get(hash.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        }
    }

    fn record_incident(&self, incident: Incident) -> Result<()> {
        self.incident_impl(incident)
    }

    fn incidents(&self, limit: usize) -> Result<Vec<Incident>> {
        self.incidents
            .iter()
            .rev()
            .take(limit)
            .map(|kv| Ok(serde_json::from_slice(&kv?.1)?))
            .collect()
    }

    fn tokens(&self) -> Result<Vec<(String, TokenRecord)>> {
        self.tokens
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

/// A stored case is its revision (8 bytes, big-endian) followed by its JSON, so the
/// conflict check inside a transaction reads 8 bytes instead of parsing the case.
fn encode_case(c: &Case) -> serde_json::Result<Vec<u8>> {
    let mut v = c.rev.to_be_bytes().to_vec();
    serde_json::to_writer(&mut v, c)?;
    Ok(v)
}

fn stored_rev(bytes: &[u8]) -> Option<u64> {
    bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

fn decode_case(bytes: &[u8]) -> Result<Case> {
    Ok(serde_json::from_slice(bytes.get(8..).unwrap_or_default())?)
}

impl SledStore {
    fn incident_impl(&self, mut incident: Incident) -> Result<()> {
        incident.id = self.db.generate_id()?;
        self.incidents
            .insert(incident.id.to_be_bytes(), serde_json::to_vec(&incident)?)?;
        Ok(())
    }
}

fn ids_under(tree: &Tree, prefix: &str) -> Result<Vec<u64>> {
    let p = key2(prefix, &[]);
    tree.scan_prefix(&p)
        .keys()
        .map(|k| {
            let k = k?;
            k.get(p.len()..p.len() + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| Error::Store("bad index key".into()))
        })
        .collect()
}
