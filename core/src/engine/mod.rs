//! The engine: the one entry point the server calls. It checks who may do what, runs a
//! [`Flow`] on a copy of the case, and commits the result through the [`Store`].
//! Every mutating method returns a [`Committed`] whose ticket the caller must pass to
//! [`Engine::durable`] before telling anyone the action happened.

pub mod migrate;
pub mod offers;
pub mod rating;
pub mod reload;
pub mod search;
pub mod submit;
pub mod takeback;
pub mod tasks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::case::{Applicant, Case, CaseStatus, Data, HistoryEvent, MaterialRef, Task, TaskState};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::office::RuleSet;
use crate::plugin::Registrar;
use crate::procedure::Procedure;
use crate::script;
use crate::store::{CaseWrite, Incident, Store, VersionRecord};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Admin,
    Staff(String),
    /// The applicant of one case, holding the token issued at submission.
    Applicant(u64),
    /// An applicant online, or anyone without a token.
    Public,
}

impl Actor {
    pub fn name(&self) -> String {
        match self {
            Actor::Admin => "admin".into(),
            Actor::Staff(s) => s.clone(),
            Actor::Applicant(_) | Actor::Public => "applicant".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Submission {
    pub procedure: String,
    pub applicant: Applicant,
    #[serde(default)]
    pub data: Data,
    #[serde(default)]
    pub materials: Vec<MaterialRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct BundleItem {
    pub procedure: String,
    #[serde(default)]
    pub data: Data,
    #[serde(default)]
    pub materials: Vec<MaterialRef>,
}

/// Filters of a worklist; all optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WorkFilter {
    pub procedure: Option<String>,
    pub department: Option<String>,
    pub group: Option<String>,
    /// `open` (unclaimed) or `claimed`.
    pub state: Option<TaskState>,
    /// Only tasks claimed by or assigned to the caller.
    #[serde(default)]
    pub mine: bool,
    pub bundle: Option<String>,
    /// Only tasks at this warning level.
    pub level: Option<crate::limits::Level>,
}

/// A task with what a clerk needs to see of its case.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WorkItem {
    #[serde(flatten)]
    pub task: Task,
    pub case_id: u64,
    pub case_number: String,
    pub procedure: String,
    pub procedure_name: String,
    pub department: String,
    pub applicant: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    pub outcomes: Vec<String>,
    /// Warning level of the step's budget, or of the case's promised limit if the step
    /// has none.
    pub level: crate::limits::Level,
}

/// What [`Engine::readiness`] found.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Readiness {
    pub store_open: bool,
    pub rules_live: bool,
    /// False when the scripts folder was refused and an earlier rule set stays live:
    /// the server still serves, an administrator should look.
    pub last_reload_ok: bool,
    /// False when the store's checkpoint is overdue (writes never paused long enough):
    /// out of rotation a while, the node checkpoints and a restart replays little.
    pub checkpoint_ok: bool,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.store_open && self.rules_live && self.checkpoint_ok
    }
}

/// The result of a mutation, to be made durable before it is reported.
#[derive(Debug)]
pub struct Committed {
    pub cases: Vec<Case>,
    pub ticket: u64,
}

impl Committed {
    pub fn case(&self) -> &Case {
        &self.cases[0]
    }
}

pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    rules: RwLock<Arc<RuleSet>>,
    scripts_dir: PathBuf,
    pub(crate) clock: Arc<dyn Clock>,
    /// Procedure versions no longer on disk, rebuilt from the store on demand.
    old_versions: Mutex<HashMap<(String, String), Arc<Procedure>>>,
    /// Valid tokens by hash, so a request does not read the store to authenticate.
    /// Revocation clears it.
    pub(crate) token_cache: RwLock<HashMap<String, CachedToken>>,
    /// Signs applicant tokens (see `applicant_token`).
    pub(crate) applicant_key: std::sync::OnceLock<Vec<u8>>,
    /// Delegations of tasks to deputies (`access`), few, kept whole in memory.
    pub(crate) delegations: RwLock<Vec<crate::access::Delegation>>,
    /// Outcome of the last load of the scripts folder (see `reload`).
    pub(crate) reload: Mutex<crate::reload::ReloadStatus>,
    /// Held for a whole reload, compile included (see `reload`).
    pub(crate) reloading: Mutex<()>,
    /// One pass over the due timers at a time (the scheduler's, an administrator's): a
    /// second pass would skip the groups the first holds, or take them again (its own
    /// lease), and fire them twice.
    pub(crate) firing: Mutex<()>,
    /// What the native plugins registered.
    plugins: Arc<Registrar>,
    /// The office's statistics, kept current by every commit (see `stats`).
    pub(crate) stats: RwLock<crate::stats::Table>,
}

/// A valid token's actor and expiry, by the hash of its secret, and when the store last
/// said it was valid.
pub(crate) type CachedToken = (
    Actor,
    Option<chrono::DateTime<chrono::Utc>>,
    std::time::Instant,
);

pub fn task_case_id(task_id: &str) -> Result<u64> {
    task_id
        .split_once('-')
        .and_then(|(c, _)| c.parse().ok())
        .ok_or_else(|| Error::NotFound(format!("task {task_id} not found")))
}

impl Engine {
    /// Loads the scripts folder and opens the engine on a store, without plugins.
    pub fn open(
        store: Arc<dyn Store>,
        scripts_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine> {
        Self::open_with(store, scripts_dir, clock, Arc::new(Registrar::new()))
    }

    /// Loads the scripts folder, with the plugins' script modules, and opens the engine.
    pub fn open_with(
        store: Arc<dyn Store>,
        scripts_dir: &Path,
        clock: Arc<dyn Clock>,
        plugins: Arc<Registrar>,
    ) -> Result<Engine> {
        let engine = Engine {
            plugins,
            store,
            rules: RwLock::new(Arc::new(RuleSet::default())),
            scripts_dir: scripts_dir.to_path_buf(),
            clock,
            old_versions: Mutex::new(HashMap::new()),
            token_cache: RwLock::new(HashMap::new()),
            applicant_key: std::sync::OnceLock::new(),
            delegations: RwLock::new(Vec::new()),
            reload: Mutex::new(crate::reload::ReloadStatus::default()),
            reloading: Mutex::new(()),
            firing: Mutex::new(()),
            stats: RwLock::new(crate::stats::Table::default()),
        };
        *engine.delegations.write() = Self::load_delegations(engine.store.as_ref())?;
        // Loaded now, so that checking an applicant token never reads the store.
        engine.applicant_key()?;
        // Startup takes the same path as every later reload.
        if let Err(e) = engine.reload() {
            engine.start_on_last_good(e)?;
        }
        engine.complete_work_index()?;
        engine.load_statistics()?;
        engine.complete_search_index()?;
        Ok(engine)
    }

    /// Writes the worklist entries of open tasks that have none (a store written before
    /// they existed): once, at the first start after the upgrade.
    fn complete_work_index(&self) -> Result<()> {
        let cases = self.store.cases_without_work()?;
        if cases.is_empty() {
            return Ok(());
        }
        let rules = self.rules();
        let started = std::time::Instant::now();
        for id in &cases {
            let Some(case) = self.store.case(*id)? else {
                continue;
            };
            let proc = match self.procedure_of(&case) {
                Ok(p) => p,
                Err(e) => {
                    // Listed again at the next start; its tasks show once it changes.
                    tracing::warn!(message = "no worklist entries for a case", case = case.number, error = %e);
                    continue;
                }
            };
            self.store
                .put_work(&case, Self::work_entries(&rules, &proc, &case))?;
        }
        tracing::info!(
            message = "worklist entries written for the open tasks of older cases",
            cases = cases.len(),
            ms = started.elapsed().as_millis() as u64
        );
        Ok(())
    }

    pub fn plugins(&self) -> &Arc<Registrar> {
        &self.plugins
    }

    pub fn scripts_dir(&self) -> &Path {
        &self.scripts_dir
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Makes a validated rule set live, first keeping every procedure version's source.
    pub(crate) fn install(&self, rules: RuleSet) -> Result<()> {
        let now = self.clock.now();
        for p in rules.procedures.values() {
            let src = p
                .script
                .as_ref()
                .map(|s| s.source.clone())
                .unwrap_or_default();
            let fresh = self.store.put_version(&VersionRecord {
                procedure: p.id.clone(),
                version: p.version.clone(),
                file: p.file.clone(),
                source: src,
                first_loaded: now,
            })?;
            if fresh {
                tracing::info!(message = "procedure version recorded", procedure = %p.id, version = %p.version, file = %p.file);
            }
        }
        *self.rules.write() = Arc::new(rules);
        Ok(())
    }

    /// Whether the engine can serve requests: its store is open and a rule set is live.
    pub fn readiness(&self) -> Readiness {
        let status = self.reload.lock();
        Readiness {
            store_open: self.store.available(),
            rules_live: status.live_since.is_some(),
            last_reload_ok: status.ok,
            checkpoint_ok: !self.store.upkeep_overdue(),
        }
    }

    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.read().clone()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store's own upkeep (the embedded store's checkpoint: see `Store::maintain`),
    /// recorded in the log and the audit chain when it did something. Blocking: call off
    /// the async threads.
    pub fn maintain_store(&self) -> Result<Option<String>> {
        let done = self.store.maintain()?;
        if let Some(what) = &done {
            tracing::info!(message = "store maintenance", done = %what);
            self.audit_or_warn(
                crate::audit::Record::new(self.now(), "system", "store.maintained", "store")
                    .with_detail(what.clone()),
            );
        }
        Ok(done)
    }

    /// A consistent copy of the store, uploaded files included, into the new folder `to`
    /// while the office works: store calls wait while the database is copied. Recorded in
    /// the audit chain (the copy holds every entry before this one). Blocking.
    pub fn backup(&self, by: &str, to: &Path) -> Result<crate::store::BackupReport> {
        if !to.is_absolute() {
            return Err(Error::Validation(format!(
                "{}: give the backup folder as an absolute path on the server's machine",
                to.display()
            )));
        }
        let report = self.store.backup(to)?;
        tracing::info!(message = "backup written", to = %to.display(), bytes = report.bytes, held_ms = report.held_ms);
        self.audit_or_warn(
            crate::audit::Record::new(self.now(), by, "store.backup", "store").with_detail(
                format!(
                    "to {}: {} files, {} bytes, writes held {} ms",
                    to.display(),
                    report.files,
                    report.bytes,
                    report.held_ms
                ),
            ),
        );
        Ok(report)
    }

    /// Returns once the commit with `ticket` is on disk, flushing on this thread if it is
    /// not yet. Servers group commits through [`Engine::flush`] and [`Engine::flushed`]
    /// instead of calling this once per commit.
    pub fn durable(&self, ticket: u64) -> Result<()> {
        if self.store.flushed() < ticket {
            self.store.flush()?;
        }
        Ok(())
    }

    /// Makes every commit so far durable; returns the ticket it covers (blocking).
    pub fn flush(&self) -> Result<u64> {
        self.store.flush()
    }

    /// The highest ticket on disk.
    pub fn flushed(&self) -> u64 {
        self.store.flushed()
    }

    /// The procedure version a case runs on, even if its file has changed since.
    pub fn procedure_of(&self, case: &Case) -> Result<Arc<Procedure>> {
        self.procedure_version(&case.procedure, &case.version)
            .map_err(|e| match e {
                Error::NotFound(m) => Error::Store(m),
                other => other,
            })
    }

    /// Any stored version of a procedure: the live one, or one rebuilt from its source.
    pub fn procedure_version(&self, procedure: &str, version: &str) -> Result<Arc<Procedure>> {
        if let Some(p) = self.rules().procedures.get(procedure) {
            if p.version == version {
                return Ok(p.clone());
            }
        }
        let key = (procedure.to_string(), version.to_string());
        if let Some(p) = self.old_versions.lock().get(&key).cloned() {
            return Ok(p);
        }
        let rec = self.store.version(procedure, version)?.ok_or_else(|| {
            Error::NotFound(format!("procedure {procedure} has no version {version}"))
        })?;
        let p = script::load_version(
            &self.scripts_dir,
            &rec.file,
            &rec.source,
            &rec.procedure,
            &self.plugins.modules,
        )
        .map(Arc::new)
        .map_err(|message| Error::Script {
            procedure: procedure.to_string(),
            message,
        })?;
        self.old_versions.lock().insert(key, p.clone());
        Ok(p)
    }

    pub(crate) fn commit(&self, mut writes: Vec<CaseWrite>) -> Result<Committed> {
        let ticket = self.commit_writes(&mut writes)?;
        for w in &writes {
            metrics::counter!("guichet_transitions_total", "action" => w.event.action.clone())
                .increment(1);
        }
        Ok(Committed {
            cases: writes.into_iter().map(|w| w.after).collect(),
            ticket,
        })
    }

    /// Commits one case's change with its event: the common end of every transition that
    /// is not a number-taking submission.
    pub(crate) fn commit_change(
        &self,
        before: Case,
        after: Case,
        event: HistoryEvent,
        timers: Vec<crate::case::Timer>,
    ) -> Result<Committed> {
        self.commit(vec![CaseWrite {
            before: Some(before),
            after,
            event,
            number_scope: None,
            timers,
            work: Vec::new(),
            figures: None,
        }])
    }

    /// Commits case writes with their outbox: the events of each transition and the
    /// notices its procedure's rules and the plugins' subscribers ask for.
    pub(crate) fn commit_writes(&self, writes: &mut [CaseWrite]) -> Result<u64> {
        let rules = self.rules();
        let plugins = &*self.plugins;
        let mut procs = HashMap::new();
        let mut before_figures = Vec::with_capacity(writes.len());
        for w in writes.iter_mut() {
            // What a completion changed is kept only by that completion's own commit.
            if w.after
                .take_back
                .as_ref()
                .is_some_and(|t| t.rev != w.after.rev + 1)
            {
                w.after.take_back = None;
            }
            let key = (w.after.procedure.clone(), w.after.version.clone());
            if !procs.contains_key(&key) {
                procs.insert(key.clone(), self.procedure_of(&w.after)?);
            }
            let p = procs.get(&key).cloned();
            // Read before the commit: if the case changed since `before`, the commit is a
            // conflict and these are never used.
            let (old, stored_ok) = match (&w.before, &p) {
                (Some(b), Some(p)) => {
                    let (f, ok) = self.figures_before(b, p, &rules)?;
                    (Some(f), ok)
                }
                _ => (None, false),
            };
            if let Some(p) = &p {
                w.work = Self::work_entries(&rules, p, &w.after);
                // The tasks this transition closed (the record holds only open ones).
                let closed: Vec<&crate::case::Task> =
                    w.after.tasks.iter().filter(|t| !t.is_open()).collect();
                let new = crate::stats::CaseFigures::next(
                    old.as_ref(),
                    &w.after,
                    &w.event,
                    &closed,
                    p,
                    &rules.calendar,
                );
                // Most transitions (a claim, a step passed on) change no figure: nothing
                // to write when what is stored is right.
                w.figures = (!stored_ok || old.as_ref() != Some(&new)).then_some(new);
            }
            before_figures.push(old);
        }
        let now = self.clock.now();
        let outbox = |before: Option<&Case>, after: &Case, h: &HistoryEvent| {
            let Some(proc) = procs.get(&(after.procedure.clone(), after.version.clone())) else {
                return Vec::new();
            };
            if proc.notices.is_empty() && plugins.subscribers().is_empty() {
                return Vec::new();
            }
            let events = crate::notice::events(before, after, h);
            crate::notice::notices_for(&rules, proc, after, &events, plugins, now)
        };
        let receipt = self.store.commit(writes, &outbox)?;
        let mut stats = self.stats.write();
        for (w, old) in writes.iter().zip(&before_figures) {
            if w.figures.is_some() {
                stats.apply(old.as_ref(), w.figures.as_ref());
            }
        }
        Ok(receipt)
    }

    /// A case's contribution to the statistics as the table holds it, and whether the
    /// store holds it right: as stored (written at the case's revision or an earlier one,
    /// when later commits changed no figure), unless a commit that did not happen left one
    /// for a revision the case never reached; then worked out again from the history
    /// (what the table added for it), to be written.
    fn figures_before(
        &self,
        before: &Case,
        p: &Procedure,
        rules: &RuleSet,
    ) -> Result<(crate::stats::CaseFigures, bool)> {
        match self.store.case_figures(before)? {
            Some((rev, f)) if rev <= before.rev => Ok((f, true)),
            _ => {
                let history = self.store.history(before.id)?;
                let closed = self.store.closed_tasks(before.id)?;
                let f = crate::stats::CaseFigures::rebuild(
                    before,
                    &history,
                    &closed,
                    p,
                    &rules.calendar,
                );
                Ok((f, false))
            }
        }
    }

    /// Resolves a case reference: its id or its number.
    pub fn case_id(&self, reference: &str) -> Result<u64> {
        if let Ok(id) = reference.parse::<u64>() {
            return Ok(id);
        }
        self.store
            .case_id_by_number(reference)?
            .ok_or_else(|| Error::NotFound(format!("case {reference} not found")))
    }

    pub fn case(&self, id: u64) -> Result<Case> {
        self.store
            .case(id)?
            .ok_or_else(|| Error::NotFound(format!("case {id} not found")))
    }

    /// Completed and cancelled tasks of a case (the case record holds the open ones).
    pub fn closed_tasks(&self, id: u64) -> Result<Vec<Task>> {
        self.store.closed_tasks(id)
    }

    pub fn history(&self, id: u64) -> Result<Vec<HistoryEvent>> {
        self.store.history(id)
    }

    /// The case an applicant reaches: with its applicant token, by its number (or id) and
    /// query code, or, for staff, because they may see it. Anything else is `NotFound`,
    /// exactly as for a case that does not exist.
    pub fn applicant_access(
        &self,
        actor: &Actor,
        reference: &str,
        code: Option<&str>,
    ) -> Result<Case> {
        let missing = || Error::NotFound(format!("no case {reference} with that query code"));
        match actor {
            // The token of a case reaches the cases of its bundle too: the bundle's
            // applicant got one token for the whole bundle.
            Actor::Applicant(id) => {
                let case = self.case(self.case_id(reference).map_err(|_| missing())?)?;
                return if case.id == *id || self.same_bundle(*id, &case)? {
                    Ok(case)
                } else {
                    Err(missing())
                };
            }
            // At the window or on the phone, staff who may see the case need no code.
            Actor::Staff(_) | Actor::Admin => {
                if let Ok(case) = self.visible_case(actor, reference) {
                    return Ok(case);
                }
            }
            Actor::Public => {}
        }
        let number = match self.case_id(reference).and_then(|id| self.case(id)) {
            Ok(case) => case.number,
            Err(_) => reference.to_string(),
        };
        self.track(&number, code.unwrap_or_default())
    }

    /// An applicant's view by number and query code. A wrong code looks like a missing case.
    pub fn track(&self, number: &str, code: &str) -> Result<Case> {
        let missing = || Error::NotFound(format!("no case {number} with that query code"));
        let id = self.store.case_id_by_number(number)?.ok_or_else(missing)?;
        let case = self.case(id)?;
        let given = code.trim().to_ascii_uppercase();
        // Constant-time comparison: the code is a secret.
        let same: bool = case.query_code.as_bytes().ct_eq(given.as_bytes()).into();
        if !same {
            return Err(missing());
        }
        Ok(case)
    }

    pub fn applicant_cases(&self, applicant: &str) -> Result<Vec<Case>> {
        self.store
            .cases_of_applicant(applicant)?
            .into_iter()
            .filter_map(|id| self.store.case(id).transpose())
            .collect()
    }

    /// Whether `case` belongs to the bundle of case `token_case`.
    fn same_bundle(&self, token_case: u64, case: &Case) -> Result<bool> {
        let Some(bundle) = &case.bundle else {
            return Ok(false);
        };
        Ok(self
            .store
            .case(token_case)?
            .is_some_and(|t| t.bundle.as_ref() == Some(bundle)))
    }

    /// The cases of a bundle for its applicant: with the bundle's applicant token (that of
    /// any of its cases), or else with its query code.
    pub fn track_bundle_as(
        &self,
        actor: &Actor,
        reference: &str,
        code: Option<&str>,
    ) -> Result<Vec<Case>> {
        if let Actor::Applicant(id) = actor {
            let cases = self.bundle_cases(reference)?;
            if cases.iter().any(|c| c.id == *id) {
                return Ok(cases);
            }
        }
        self.track_bundle(reference, code.unwrap_or_default())
    }

    /// The cases of a bundle for its applicant, who proves it with the bundle's query code
    /// (that of any of them). A wrong code looks like a missing bundle.
    pub fn track_bundle(&self, reference: &str, code: &str) -> Result<Vec<Case>> {
        let cases = self.bundle_cases(reference)?;
        let given = code.trim().to_ascii_uppercase();
        let known = cases.iter().fold(subtle::Choice::from(0), |any, c| {
            any | c.query_code.as_bytes().ct_eq(given.as_bytes())
        });
        if cases.is_empty() || !bool::from(known) {
            return Err(Error::NotFound(format!(
                "no bundle {reference} with that query code"
            )));
        }
        Ok(cases)
    }

    pub fn bundle_cases(&self, reference: &str) -> Result<Vec<Case>> {
        self.store
            .cases_of_bundle(reference)?
            .into_iter()
            .filter_map(|id| self.store.case(id).transpose())
            .collect()
    }

    /// The applicant withdraws an open case (撤回). `code` is required from the public.
    pub fn withdraw(
        &self,
        actor: &Actor,
        case_id: u64,
        code: Option<&str>,
        reason: Option<String>,
    ) -> Result<Committed> {
        let case = self.case(case_id)?;
        if *actor == Actor::Public {
            self.track(&case.number, code.unwrap_or_default())?;
        }
        if !case.status.is_open() {
            return Err(Error::InvalidTransition(format!(
                "case {} is already closed",
                case.number
            )));
        }
        let proc = self.procedure_of(&case)?;
        let rules = self.rules();
        let mut flow = Flow::new(&proc, &rules, case.clone(), self.clock.now());
        flow.close(CaseStatus::Withdrawn);
        let event = HistoryEvent {
            comment: reason,
            effects: flow.effects,
            ..HistoryEvent::new(flow.now, actor.name(), "withdrawn")
        };
        self.commit_change(case, flow.case, event, flow.timers)
    }

    // --- tokens -------------------------------------------------------------------------

    // --- applicant tokens -----------------------------------------------------------------

    // --- audit ----------------------------------------------------------------------------

    /// Appends records to the audit chain; the ticket makes them durable.
    pub fn audit(&self, records: Vec<crate::audit::Record>) -> Result<u64> {
        self.store.append_audit(records)
    }

    /// Appends a record whose loss must not fail the action it describes (a reload, a
    /// login): a failure is logged.
    pub(crate) fn audit_or_warn(&self, record: crate::audit::Record) {
        if let Err(e) = self.store.append_audit(vec![record]) {
            tracing::error!(message = "audit entry not written", error = %e);
        }
    }

    /// Audit entries matching `filter` from `from` on (see `audit::search`).
    pub fn audit_search(
        &self,
        filter: &crate::audit::Filter,
        from: u64,
        limit: usize,
    ) -> Result<crate::audit::Found> {
        crate::audit::search(self.store.as_ref(), filter, from, limit, 100_000)
    }

    /// One page of the audit log as stored, one entry per line, and where the next page
    /// starts (see `audit::export_page`).
    pub fn audit_export_page(&self, from: u64) -> Result<(Vec<u8>, Option<u64>)> {
        crate::audit::export_page(self.store.as_ref(), from)
    }

    pub fn verify_audit(&self) -> Result<crate::audit::Verdict> {
        crate::audit::verify(self.store.as_ref())
    }
}

impl Engine {
    /// Records script failures as incidents; other errors are the caller's to handle.
    pub(crate) fn incident(
        &self,
        e: &Error,
        actor: &Actor,
        action: &str,
        case: Option<u64>,
        task: Option<&str>,
    ) {
        let Error::Script { procedure, message } = e else {
            return;
        };
        let rec = Incident {
            id: 0,
            at: self.clock.now(),
            code: e.code().to_string(),
            message: message.clone(),
            actor: actor.name(),
            action: action.to_string(),
            procedure: Some(procedure.clone()),
            case,
            task: task.map(String::from),
        };
        if let Err(err) = self.store.record_incident(rec) {
            tracing::error!(message = "cannot record incident", error = %err);
        }
    }

    pub fn incidents(&self, limit: usize) -> Result<Vec<Incident>> {
        self.store.incidents(limit)
    }
}
