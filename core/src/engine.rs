//! The engine: the one entry point the server calls. It checks who may do what, runs a
//! [`Flow`] on a copy of the case, and commits the result through the [`Store`].
//! Every mutating method returns a [`Committed`] whose ticket the caller must pass to
//! [`Engine::durable`] before telling anyone the action happened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::case::{Applicant, Case, CaseStatus, Data, HistoryEvent, MaterialRef, Task, TaskState};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::form::{check_data, check_materials, Filler};
use crate::office::RuleSet;
use crate::plugin::Registrar;
use crate::procedure::Procedure;
use crate::script;
use crate::store::{CaseWrite, Incident, Store, TokenRecord, VersionRecord};

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
pub struct Readiness {
    pub store_open: bool,
    pub rules_live: bool,
    /// False when the scripts folder was refused and an earlier rule set stays live:
    /// the server still serves, an administrator should look.
    pub last_reload_ok: bool,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.store_open && self.rules_live
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
    store: Arc<dyn Store>,
    rules: RwLock<Arc<RuleSet>>,
    scripts_dir: PathBuf,
    clock: Arc<dyn Clock>,
    /// Procedure versions no longer on disk, rebuilt from the store on demand.
    old_versions: Mutex<HashMap<(String, String), Arc<Procedure>>>,
    /// Valid tokens by hash, so a request does not read the store to authenticate.
    /// Revocation clears it.
    token_cache: RwLock<HashMap<String, CachedToken>>,
    /// Signs applicant tokens (see `applicant_token`).
    applicant_key: std::sync::OnceLock<Vec<u8>>,
    /// Delegations of tasks to deputies (`access`), few, kept whole in memory.
    pub(crate) delegations: RwLock<Vec<crate::access::Delegation>>,
    /// Outcome of the last load of the scripts folder (see `reload`).
    pub(crate) reload: Mutex<crate::reload::ReloadStatus>,
    /// Held for a whole reload, compile included (see `reload`).
    pub(crate) reloading: Mutex<()>,
    /// What the native plugins registered.
    plugins: Arc<Registrar>,
}

/// A valid token's actor and expiry, by the hash of its secret.
type CachedToken = (Actor, Option<chrono::DateTime<chrono::Utc>>);

const QUERY_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

fn query_code() -> String {
    let mut rng = rand::rng();
    (0..8)
        .map(|_| QUERY_ALPHABET[rng.random_range(0..QUERY_ALPHABET.len())] as char)
        .collect()
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn task_case_id(task_id: &str) -> Result<u64> {
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
        };
        *engine.delegations.write() = Self::load_delegations(engine.store.as_ref())?;
        // Loaded now, so that checking an applicant token never reads the store.
        engine.applicant_key()?;
        // Startup takes the same path as every later reload.
        if let Err(e) = engine.reload() {
            engine.start_on_last_good(e)?;
        }
        Ok(engine)
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

    fn new_case(
        &self,
        proc: &Procedure,
        applicant: &Applicant,
        bundle: Option<String>,
        channel: &str,
    ) -> Result<Case> {
        Ok(Case {
            id: self.store.next_case_id()?,
            number: String::new(),
            query_code: query_code(),
            procedure: proc.id.clone(),
            procedure_name: proc.name.clone(),
            department: proc.department.clone(),
            version: proc.version.clone(),
            bundle,
            applicant: applicant.clone(),
            channel: channel.to_string(),
            status: CaseStatus::Submitted,
            data: Data::new(),
            materials: Vec::new(),
            submitted_at: self.clock.now(),
            accepted_at: None,
            decided_at: None,
            promised_due: None,
            statutory_due: None,
            cards: Vec::new(),
            clock_stop: None,
            clock_stops: Vec::new(),
            supplement: None,
            extension: None,
            commitment: None,
            tasks: Vec::new(),
            tokens: Vec::new(),
            visited: Vec::new(),
            next_task: 0,
            next_token: 0,
            history_len: 0,
            rev: 0,
        })
    }

    fn check_applicant(a: &Applicant) -> Vec<crate::form::Problem> {
        use crate::form::Problem;
        let mut problems = Vec::new();
        let ok_id = !a.id.trim().is_empty()
            && a.id.len() <= 64
            && a.id.chars().all(|c| c.is_ascii_alphanumeric());
        if !ok_id {
            problems.push(Problem::of(
                "applicant.id",
                "applicant.id must be 1-64 letters or digits (ID card number or credit code)",
            ));
        }
        if a.name.trim().is_empty() || a.name.len() > 200 {
            problems.push(Problem::of(
                "applicant.name",
                "applicant.name is required (at most 200 bytes)",
            ));
        }
        problems
    }

    /// Builds one submitted case with its intake task, without committing it.
    fn prepare_submission(
        &self,
        rules: &RuleSet,
        actor: &Actor,
        applicant: &Applicant,
        item: BundleItem,
        bundle: Option<String>,
        mut problems: Vec<crate::form::Problem>,
    ) -> Result<CaseWrite> {
        let BundleItem {
            procedure,
            data,
            materials,
        } = item;
        let procedure = procedure.as_str();
        let proc = rules
            .procedures
            .get(procedure)
            .ok_or_else(|| Error::NotFound(format!("procedure '{procedure}' does not exist")))?;
        problems.extend(check_data(proc, &data, &data, Filler::Applicant, true));
        problems.extend(check_materials(proc, &materials));
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let channel = if matches!(actor, Actor::Staff(_)) {
            "window"
        } else {
            "online"
        };
        let mut case = self.new_case(proc, applicant, bundle, channel)?;
        case.data = data;
        case.materials = materials;
        let now = case.submitted_at;
        let mut flow = Flow::new(proc, rules, case, now);
        flow.hook(proc.hooks.on_submit.as_ref())?;
        flow.open_intake();
        let scope = format!("{}-{}", proc.number_prefix(), now.format("%Y"));
        let event = HistoryEvent {
            data_changed: flow.case.data.clone(),
            effects: flow.effects,
            materials: flow.case.materials.clone(),
            ..HistoryEvent::new(now, actor.name(), "submitted")
        };
        Ok(CaseWrite {
            before: None,
            after: flow.case,
            event,
            number_scope: Some(scope),
            timers: flow.timers,
        })
    }

    /// Receives an application: at the window (staff) or online (public).
    pub fn submit(&self, actor: &Actor, sub: Submission) -> Result<Committed> {
        self.submit_with_files(actor, sub, Vec::new())
    }

    /// Receives an application with its materials' files: each checked against its
    /// material (size, accepted format, content of that format), kept by its SHA-256, and
    /// named in the case with its hash. Every problem of the form and the files is
    /// reported at once; nothing is kept unless the whole application is accepted.
    pub fn submit_with_files(
        &self,
        actor: &Actor,
        mut sub: Submission,
        uploads: Vec<crate::files::Upload>,
    ) -> Result<Committed> {
        let mut problems = Self::check_applicant(&sub.applicant);
        let rules = self.rules();
        if let Some(proc) = rules.procedures.get(&sub.procedure) {
            for up in &uploads {
                match proc.materials.iter().find(|m| m.id == up.material) {
                    Some(decl) => problems.extend(crate::files::check_upload(decl, up)),
                    None => problems.push(crate::form::Problem::of(
                        format!("material.{}", up.material),
                        format!("unknown material '{}'", up.material),
                    )),
                }
            }
        }
        // Uploaded files replace what the submission said of the same material.
        sub.materials
            .retain(|m| !uploads.iter().any(|u| u.material == m.id));
        sub.materials.extend(uploads.iter().map(|u| MaterialRef {
            id: u.material.clone(),
            file: u.name.clone(),
            sha256: Some(crate::files::sha256(&u.bytes)),
            size: Some(u.bytes.len() as u64),
        }));
        let item = BundleItem {
            procedure: sub.procedure,
            data: sub.data,
            materials: sub.materials,
        };
        let w = self
            .prepare_submission(&rules, actor, &sub.applicant, item, None, problems)
            .inspect_err(|e| self.incident(e, actor, "submit", None, None))?;
        // Kept before the case that names them; a file of a commit that then fails is
        // named by no case (and kept once if it comes again).
        for up in &uploads {
            self.store.put_file(&up.bytes)?;
        }
        self.commit(vec![w])
    }

    /// A file a case names, for someone who may see the case: the material it is for,
    /// and its content.
    pub fn material_file(
        &self,
        actor: &Actor,
        reference: &str,
        sha256: &str,
    ) -> Result<(MaterialRef, Vec<u8>)> {
        let case = self.visible_case(actor, reference)?;
        let missing = || Error::NotFound(format!("case {reference} has no file {sha256}"));
        let named = case
            .materials
            .iter()
            .find(|m| m.sha256.as_deref() == Some(sha256))
            .cloned()
            .ok_or_else(missing)?;
        let bytes = self.store.file(sha256)?.ok_or_else(missing)?;
        Ok((named, bytes))
    }

    /// Receives a bundle (一件事): one application that opens a case per procedure, all or
    /// none, linked by a bundle reference.
    pub fn submit_bundle(
        &self,
        actor: &Actor,
        bundle: &str,
        applicant: Applicant,
        items: Vec<BundleItem>,
    ) -> Result<Committed> {
        let problems = Self::check_applicant(&applicant);
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let rules = self.rules();
        let b = rules
            .bundles
            .get(bundle)
            .ok_or_else(|| Error::NotFound(format!("bundle '{bundle}' does not exist")))?;
        if items.is_empty() {
            return Err(Error::Validation(
                "a bundle needs at least one procedure".into(),
            ));
        }
        for it in &items {
            if !b.procedures.contains(&it.procedure) {
                return Err(Error::Validation(format!(
                    "procedure '{}' is not part of bundle '{bundle}' ({})",
                    it.procedure,
                    b.procedures.join(", ")
                )));
            }
        }
        let reference = format!("{}-{}", bundle, query_code());
        let mut writes = Vec::new();
        let mut errs = Vec::new();
        for it in items {
            let name = it.procedure.clone();
            match self.prepare_submission(
                &rules,
                actor,
                &applicant,
                it,
                Some(reference.clone()),
                Vec::new(),
            ) {
                Ok(w) => writes.push(w),
                Err(e) => errs.push(format!("{name}: {e}")),
            }
        }
        if !errs.is_empty() {
            return Err(Error::Validation(errs.join("; ")));
        }
        self.commit(writes)
    }

    fn commit(&self, mut writes: Vec<CaseWrite>) -> Result<Committed> {
        let ticket = self.commit_writes(&mut writes)?;
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
        }])
    }

    /// Commits case writes with their outbox: the events of each transition and the
    /// notices its procedure's rules and the plugins' subscribers ask for.
    pub(crate) fn commit_writes(&self, writes: &mut [CaseWrite]) -> Result<u64> {
        let rules = self.rules();
        let plugins = &*self.plugins;
        let mut procs = HashMap::new();
        for w in writes.iter() {
            if !procs.contains_key(&w.after.procedure) {
                procs.insert(w.after.procedure.clone(), self.procedure_of(&w.after)?);
            }
        }
        let now = self.clock.now();
        let outbox = |before: Option<&Case>, after: &Case, h: &HistoryEvent| {
            let Some(proc) = procs.get(&after.procedure) else {
                return Vec::new();
            };
            if proc.notices.is_empty() && plugins.subscribers().is_empty() {
                return Vec::new();
            }
            let events = crate::notice::events(before, after, h);
            crate::notice::notices_for(&rules, proc, after, &events, plugins, now)
        };
        self.store.commit(writes, &outbox)
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
            Actor::Applicant(id) => {
                let case = self.case(self.case_id(reference).map_err(|_| missing())?)?;
                return if case.id == *id {
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

    pub fn bundle_cases(&self, reference: &str) -> Result<Vec<Case>> {
        self.store
            .cases_of_bundle(reference)?
            .into_iter()
            .filter_map(|id| self.store.case(id).transpose())
            .collect()
    }

    /// Tasks of the caller's groups (every group for an administrator).
    pub fn worklist(&self, actor: &Actor, f: &WorkFilter) -> Result<Vec<WorkItem>> {
        let rules = self.rules();
        let (groups, principals): (Vec<String>, Vec<String>) = match actor {
            Actor::Admin => (rules.groups.keys().cloned().collect(), Vec::new()),
            Actor::Staff(s) => {
                let principals = self.principals_of(s);
                let mut g = rules.groups_of(s);
                for p in &principals {
                    g.extend(rules.groups_of(p));
                }
                g.sort();
                g.dedup();
                (g, principals)
            }
            Actor::Applicant(_) | Actor::Public => {
                return Err(Error::Forbidden("a staff token is required".into()))
            }
        };
        let me = actor.name();
        // Whom the caller may act as in a group: themselves if a member, or a principal.
        let acts_as = |group: &str| -> Vec<String> {
            std::iter::once(me.clone())
                .chain(principals.iter().cloned())
                .filter(|p| *actor == Actor::Admin || rules.is_member(p, group))
                .collect()
        };
        let mut items = Vec::new();
        let mut cache: HashMap<u64, Option<Case>> = HashMap::new();
        for g in groups
            .iter()
            .filter(|g| f.group.as_ref().is_none_or(|x| x == *g))
        {
            for (case_id, task_id) in self.store.open_tasks_of_group(g)? {
                let case = match cache.entry(case_id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(self.store.case(case_id)?)
                    }
                };
                let Some(case) = case.as_ref() else { continue };
                // The index and the case are written together, but a reader may see one
                // before the other: trust the case.
                let Some(task) = case.task(&task_id).filter(|t| t.is_open()) else {
                    continue;
                };
                let who = acts_as(g);
                let for_me = *actor == Actor::Admin
                    || task
                        .assignee
                        .as_ref()
                        .is_none_or(|a| who.iter().any(|w| w == a));
                let keep = for_me
                    && f.procedure.as_ref().is_none_or(|p| *p == case.procedure)
                    && f.department.as_ref().is_none_or(|d| *d == case.department)
                    && f.state.is_none_or(|s| s == task.state)
                    && f.bundle
                        .as_ref()
                        .is_none_or(|b| case.bundle.as_ref() == Some(b))
                    && (!f.mine
                        || task.claimed_by.as_ref().is_some_and(|c| who.contains(c))
                        || task.assignee.as_ref().is_some_and(|a| who.contains(a)));
                if !keep {
                    continue;
                }
                let proc = self.procedure_of(case).ok();
                let outcomes = proc
                    .as_ref()
                    .map(|p| p.task_outcomes(&task.step))
                    .unwrap_or_default();
                let level = proc
                    .as_ref()
                    .map(|p| self.task_level(&rules, p, case, task))
                    .unwrap_or(crate::limits::Level::Green);
                if f.level.is_some_and(|l| l != level) {
                    continue;
                }
                items.push(WorkItem {
                    task: task.clone(),
                    case_id,
                    case_number: case.number.clone(),
                    procedure: case.procedure.clone(),
                    procedure_name: case.procedure_name.clone(),
                    department: case.department.clone(),
                    applicant: case.applicant.name.clone(),
                    bundle: case.bundle.clone(),
                    outcomes,
                    level,
                });
            }
        }
        items.sort_by(|a, b| (a.task.created_at, &a.task.id).cmp(&(b.task.created_at, &b.task.id)));
        Ok(items)
    }

    /// The warning level of a task: its step's budget if it has one, else the case's
    /// promised limit.
    fn task_level(
        &self,
        rules: &RuleSet,
        p: &Procedure,
        case: &Case,
        task: &Task,
    ) -> crate::limits::Level {
        let now = Self::clock_time(case, self.clock.now());
        let step_days = p.step(&task.step).map(|s| s.days).unwrap_or(0);
        match task.due {
            Some(due) if step_days > 0 => {
                let start = case
                    .tokens
                    .iter()
                    .find(|t| t.id == task.token)
                    .map_or(task.created_at, |t| t.entered_at);
                p.warnings
                    .level(&rules.calendar, start, step_days, due, now)
            }
            _ => self.case_level(rules, p, case),
        }
    }

    /// The time a case's limits are measured at: frozen while its clock is stopped.
    fn clock_time(
        case: &Case,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        case.clock_stop.as_ref().map_or(now, |s| s.since)
    }

    /// The warning level of a case's promised limit (green before acceptance).
    pub fn case_level(&self, rules: &RuleSet, p: &Procedure, case: &Case) -> crate::limits::Level {
        match (case.accepted_at, case.promised_due) {
            (Some(start), Some(due)) if case.status.is_open() => p.warnings.level(
                &rules.calendar,
                start,
                p.promised_days,
                due,
                Self::clock_time(case, self.clock.now()),
            ),
            _ => crate::limits::Level::Green,
        }
    }

    /// Loads a task's case and checks that `actor` may act on the task.
    fn for_task(&self, actor: &Actor, task_id: &str) -> Result<(Case, Task, Option<String>)> {
        let case = self
            .store
            .case(task_case_id(task_id)?)?
            .ok_or_else(|| Error::NotFound(format!("task {task_id} not found")))?;
        // Whoever may not see the case learns nothing of its tasks, not even why not.
        // Checked on refusal only: those who may act on a task see its case.
        match self.task_of(actor, &case, task_id) {
            Ok((task, on_behalf)) => Ok((case, task, on_behalf)),
            Err(e) => Err(self.hide(actor, &case, e, || format!("task {task_id} not found"))),
        }
    }

    /// `e` for a caller who may see `case`; otherwise the `NotFound` a missing case gets.
    pub(crate) fn hide(
        &self,
        actor: &Actor,
        case: &Case,
        e: Error,
        missing: impl FnOnce() -> String,
    ) -> Error {
        if matches!(e, Error::NotFound(_)) || self.can_see(actor, case) {
            e
        } else {
            Error::NotFound(missing())
        }
    }

    fn task_of(&self, actor: &Actor, case: &Case, task_id: &str) -> Result<(Task, Option<String>)> {
        let task = match case.task(task_id) {
            Some(t) => t.clone(),
            None => {
                return Err(match self.store.closed_task(case.id, task_id)? {
                    Some(t) => Error::Conflict(
                        format!("task {task_id} is already {:?}", t.state).to_lowercase(),
                    ),
                    None => Error::NotFound(format!("task {task_id} not found")),
                })
            }
        };
        if task.external.is_some() {
            return Err(Error::InvalidTransition(format!(
                "task {task_id} is an external task: its worker fetches and completes it through /api/external-tasks"
            )));
        }
        let staff = match actor {
            Actor::Staff(s) => s,
            Actor::Admin => {
                return Err(Error::Forbidden(
                    "tasks are handled by staff of their group, not by the administrator".into(),
                ))
            }
            Actor::Applicant(_) | Actor::Public => {
                return Err(Error::Forbidden("a staff token is required".into()))
            }
        };
        let rules = self.rules();
        // The caller acts for themselves, or as deputy for someone whose task this is.
        let candidates: Vec<String> = std::iter::once(staff.clone())
            .chain(self.principals_of(staff))
            .filter(|p| rules.is_member(p, &task.group))
            .collect();
        if candidates.is_empty() {
            return Err(Error::Forbidden(format!(
                "only members of group '{}' (or their deputies) may act on this task",
                task.group
            )));
        }
        let Some(principal) = candidates
            .into_iter()
            .find(|p| task.assignee.as_ref().is_none_or(|a| a == p))
        else {
            return Err(Error::Forbidden(format!(
                "this task is for {}",
                task.assignee.as_deref().unwrap_or_default()
            )));
        };
        if !task.is_open() {
            return Err(Error::Conflict(
                format!("task {task_id} is already {:?}", task.state).to_lowercase(),
            ));
        }
        if task
            .claimed_by
            .as_ref()
            .is_some_and(|c| c != staff && *c != principal)
        {
            return Err(Error::Conflict(format!(
                "task {task_id} is claimed by {}",
                task.claimed_by.as_deref().unwrap_or_default()
            )));
        }
        let on_behalf = (principal != *staff).then_some(principal);
        Ok((task, on_behalf))
    }

    /// Runs `f` on a flow over the task's case and commits the result with one event.
    pub(crate) fn act(
        &self,
        actor: &Actor,
        task_id: &str,
        action: &str,
        comment: Option<String>,
        f: impl FnOnce(&mut Flow, &Task) -> Result<Option<String>>,
    ) -> Result<Committed> {
        let (case, task, on_behalf) = self.for_task(actor, task_id)?;
        let case_id = case.id;
        self.act_full(actor, case, task, action, comment, on_behalf, f)
            .inspect_err(|e| self.incident(e, actor, action, Some(case_id), Some(task_id)))
    }

    pub(crate) fn act_inner(
        &self,
        actor: &Actor,
        case: Case,
        task: Task,
        action: &str,
        comment: Option<String>,
        f: impl FnOnce(&mut Flow, &Task) -> Result<Option<String>>,
    ) -> Result<Committed> {
        self.act_full(actor, case, task, action, comment, None, f)
    }

    /// As `act_inner`, recording a deputy's principal in the event.
    #[allow(clippy::too_many_arguments)]
    fn act_full(
        &self,
        actor: &Actor,
        case: Case,
        task: Task,
        action: &str,
        comment: Option<String>,
        on_behalf_of: Option<String>,
        f: impl FnOnce(&mut Flow, &Task) -> Result<Option<String>>,
    ) -> Result<Committed> {
        let proc = self.procedure_of(&case)?;
        let rules = self.rules();
        let mut flow = Flow::new(&proc, &rules, case.clone(), self.clock.now());
        let outcome = f(&mut flow, &task)?;
        let event = HistoryEvent {
            task: Some(task.id.clone()),
            step: Some(task.step.clone()),
            outcome,
            comment,
            data_changed: flow.data_changed,
            effects: flow.effects,
            on_behalf_of,
            ..HistoryEvent::new(flow.now, actor.name(), action)
        };
        self.commit_change(case, flow.case, event, flow.timers)
    }

    pub fn claim(&self, actor: &Actor, task_id: &str) -> Result<Committed> {
        let me = actor.name();
        self.act(actor, task_id, "claimed", None, |flow, task| {
            if task.claimed_by.is_some() {
                return Err(Error::Conflict(format!(
                    "task {} is already claimed by you",
                    task.id
                )));
            }
            set_task(flow, &task.id, |t| {
                t.claimed_by = Some(me);
                t.state = TaskState::Claimed;
            });
            Ok(None)
        })
    }

    pub fn release(&self, actor: &Actor, task_id: &str) -> Result<Committed> {
        self.act(actor, task_id, "released", None, |flow, task| {
            if task.claimed_by.is_none() {
                return Err(Error::InvalidTransition(format!(
                    "task {} is not claimed",
                    task.id
                )));
            }
            set_task(flow, &task.id, |t| {
                t.claimed_by = None;
                t.state = TaskState::Open;
            });
            Ok(None)
        })
    }

    /// Completes a task with an outcome, a comment and data merged into the case.
    pub fn complete(
        &self,
        actor: &Actor,
        task_id: &str,
        outcome: &str,
        comment: Option<String>,
        data: Data,
    ) -> Result<Committed> {
        let me = actor.name();
        let c = comment.clone();
        self.act(actor, task_id, "completed", comment, |flow, task| {
            let mut merged = flow.case.data.clone();
            merged.extend(data.clone());
            let errs = check_data(flow.proc, &data, &merged, Filler::Staff, false);
            if !errs.is_empty() {
                return Err(Error::Invalid(errs));
            }
            flow.merge(data);
            flow.complete_task(&task.id, &me, outcome, c)?;
            Ok(Some(outcome.to_string()))
        })
    }

    /// Returns the case to an earlier step (退回).
    pub fn return_to(
        &self,
        actor: &Actor,
        task_id: &str,
        to: &str,
        comment: Option<String>,
    ) -> Result<Committed> {
        let me = actor.name();
        let c = comment.clone();
        self.act(actor, task_id, "returned", comment, |flow, task| {
            set_task(flow, &task.id, |t| {
                t.completed_by = Some(me);
                t.outcome = Some(format!("return:{to}"));
                t.comment = c;
            });
            flow.return_to(&task.id, to)?;
            Ok(Some(format!("return:{to}")))
        })
    }

    /// Transfers a task to another group, or to a named member of its group (转办).
    pub fn transfer(
        &self,
        actor: &Actor,
        task_id: &str,
        group: Option<String>,
        staff: Option<String>,
        comment: Option<String>,
    ) -> Result<Committed> {
        if group.is_none() && staff.is_none() {
            return Err(Error::Validation(
                "name a group or a staff member to transfer to".into(),
            ));
        }
        self.act(actor, task_id, "transferred", comment, |flow, task| {
            move_task(flow, task, group, staff)
        })
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

    /// Issues a token for a staff member (or the administrator), valid for `days` days
    /// (at most [`MAX_TOKEN_DAYS`]); the secret is returned once, only its hash is kept.
    /// Creates and stores a token (only the hash of its secret is kept); returns it with
    /// the secret.
    pub(crate) fn new_token(
        &self,
        subject: &str,
        admin: bool,
        label: &str,
        lifetime: chrono::Duration,
    ) -> Result<(TokenRecord, String)> {
        let mut bytes = [0u8; 32];
        rand::rng().fill(&mut bytes);
        let secret = format!("gch_{}", hex::encode(bytes));
        let hash = hash_secret(&secret);
        let now = self.clock.now();
        let rec = TokenRecord {
            id: hash[..12].to_string(),
            subject: subject.to_string(),
            admin,
            label: label.to_string(),
            created_at: now,
            revoked_at: None,
            expires_at: Some(now + lifetime),
        };
        self.store.put_token(&hash, &rec)?;
        Ok((rec, secret))
    }

    pub fn issue_token(
        &self,
        by: &str,
        subject: &str,
        label: &str,
        days: Option<u32>,
    ) -> Result<(TokenRecord, String, u64)> {
        let admin = subject == "admin";
        if !admin && !self.rules().staff.contains_key(subject) {
            return Err(Error::Validation(format!(
                "staff '{subject}' is not in the office scripts"
            )));
        }
        let days = days.unwrap_or(DEFAULT_TOKEN_DAYS);
        if days == 0 || days > MAX_TOKEN_DAYS {
            return Err(Error::Validation(format!(
                "a token lives 1 to {MAX_TOKEN_DAYS} days"
            )));
        }
        if label.len() > 200 {
            return Err(Error::Validation("a label has at most 200 bytes".into()));
        }
        let (rec, secret) =
            self.new_token(subject, admin, label, chrono::Duration::days(days.into()))?;
        let now = rec.created_at;
        let ticket = self.store.append_audit(vec![crate::audit::Record::new(
            now,
            by,
            "token.issued",
            format!("token:{}", rec.id),
        )
        .with_detail(format!("for {subject}, {days} days"))])?;
        Ok((rec, secret, ticket))
    }

    /// What [`Engine::authenticate`] answers, from memory only: `None` when the token
    /// must be looked up in the store (a staff token's first use since start).
    pub fn authenticate_cached(&self, secret: &str) -> Option<Option<Actor>> {
        if let Some(rest) = secret.strip_prefix(APPLICANT_TOKEN_PREFIX) {
            return Some(self.applicant_token_case(rest).map(Actor::Applicant));
        }
        let (actor, expires) = self.token_cache.read().get(&hash_secret(secret)).cloned()?;
        Some(
            expires
                .is_none_or(|e| self.clock.now() < e)
                .then_some(actor),
        )
    }

    /// The actor a bearer secret stands for, if it is valid, not revoked and not expired.
    /// A staff token's first use after each start is audited as a login.
    pub fn authenticate(&self, secret: &str) -> Result<Option<Actor>> {
        if let Some(rest) = secret.strip_prefix(APPLICANT_TOKEN_PREFIX) {
            return Ok(self.applicant_token_case(rest).map(Actor::Applicant));
        }
        let hash = hash_secret(secret);
        let now = self.clock.now();
        let cached = self.token_cache.read().get(&hash).cloned();
        if let Some((a, expires)) = cached {
            return Ok(expires.is_none_or(|e| now < e).then_some(a));
        }
        let Some(rec) = self.store.token_by_hash(&hash)? else {
            return Ok(None);
        };
        if rec.revoked_at.is_some() || rec.expires_at.is_some_and(|e| now >= e) {
            return Ok(None);
        }
        let actor = if rec.admin {
            Actor::Admin
        } else {
            Actor::Staff(rec.subject.clone())
        };
        self.token_cache
            .write()
            .insert(hash, (actor.clone(), rec.expires_at));
        self.audit_or_warn(crate::audit::Record::new(
            now,
            actor.name(),
            "login",
            format!("token:{}", rec.id),
        ));
        Ok(Some(actor))
    }

    /// Drops a token from the cache: its next use reads the store (after a revocation).
    pub(crate) fn forget_token(&self, hash: &str) {
        self.token_cache.write().remove(hash);
    }

    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let mut v: Vec<TokenRecord> = self.store.tokens()?.into_iter().map(|(_, r)| r).collect();
        v.sort_by_key(|a| a.created_at);
        Ok(v)
    }

    pub fn revoke_token(&self, actor: &Actor, id: &str) -> Result<(TokenRecord, u64)> {
        let (hash, mut rec) = self
            .store
            .tokens()?
            .into_iter()
            .find(|(_, r)| r.id == id)
            .ok_or_else(|| Error::NotFound(format!("token {id} not found")))?;
        if rec.revoked_at.is_none() {
            rec.revoked_at = Some(self.clock.now());
            self.store.put_token(&hash, &rec)?;
        }
        self.forget_token(&hash);
        let ticket = self.store.append_audit(vec![crate::audit::Record::new(
            self.clock.now(),
            actor.name(),
            "token.revoked",
            format!("token:{id}"),
        )
        .with_detail(format!("of {}", rec.subject))])?;
        Ok((rec, ticket))
    }

    /// When no administrator token is usable (first start, or all revoked or expired),
    /// creates one; the caller writes it where only the operator can read it.
    pub fn bootstrap_admin(&self) -> Result<Option<String>> {
        let now = self.clock.now();
        let usable = self.store.tokens()?.into_iter().any(|(_, r)| {
            r.admin && r.revoked_at.is_none() && r.expires_at.is_none_or(|e| now < e)
        });
        if usable {
            return Ok(None);
        }
        Ok(Some(
            self.issue_token(
                "system",
                "admin",
                "created at start: no usable administrator token",
                Some(MAX_TOKEN_DAYS),
            )?
            .1,
        ))
    }

    // --- applicant tokens -----------------------------------------------------------------

    /// The server's signing key for applicant tokens, created on first use.
    fn applicant_key(&self) -> Result<Vec<u8>> {
        if let Some(k) = self.applicant_key.get() {
            return Ok(k.clone());
        }
        let key = match self.store.meta(APPLICANT_KEY)? {
            Some(k) => k,
            None => {
                let mut bytes = [0u8; 32];
                rand::rng().fill(&mut bytes);
                self.store.put_meta(APPLICANT_KEY, &bytes)?;
                bytes.to_vec()
            }
        };
        Ok(self.applicant_key.get_or_init(|| key).clone())
    }

    fn applicant_mac(&self, case: u64) -> Result<String> {
        let key = self.applicant_key()?;
        Ok(mac_of(&key, case))
    }

    /// A bearer token that reaches one case as its applicant, handed out at submission.
    pub fn applicant_token(&self, case: u64) -> Result<String> {
        Ok(format!(
            "{APPLICANT_TOKEN_PREFIX}{case}_{}",
            self.applicant_mac(case)?
        ))
    }

    /// The case an applicant token reaches, checked against the key in memory (loaded
    /// at open): no store read.
    fn applicant_token_case(&self, rest: &str) -> Option<u64> {
        let (id, mac) = rest.split_once('_')?;
        let id: u64 = id.parse().ok()?;
        let want = mac_of(self.applicant_key.get()?, id);
        bool::from(want.as_bytes().ct_eq(mac.as_bytes())).then_some(id)
    }

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

/// Staff and administrator tokens live this long unless the issuer says otherwise.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;
pub const MAX_TOKEN_DAYS: u32 = 366;
const APPLICANT_TOKEN_PREFIX: &str = "gca_";

/// HMAC-SHA256 (RFC 2104) of a case id under the applicant key, the first 20 bytes in
/// hex: a token costs no write per submission.
fn mac_of(key: &[u8], case: u64) -> String {
    use hmac::Mac;
    // HMAC takes a key of any length.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&case.to_be_bytes());
    hex::encode(&mac.finalize().into_bytes()[..20])
}
const APPLICANT_KEY: &str = "applicant_token_key";

/// Moves a task to `group` (default: its own) and, if named, to one of its members,
/// unclaimed: what a transfer and a supervisor's reassignment do.
pub(crate) fn move_task(
    flow: &mut Flow,
    task: &Task,
    group: Option<String>,
    staff: Option<String>,
) -> Result<Option<String>> {
    let target = group.unwrap_or_else(|| task.group.clone());
    if !flow.rules.groups.contains_key(&target) {
        return Err(Error::Validation(format!(
            "group '{target}' does not exist"
        )));
    }
    if let Some(s) = &staff {
        if !flow.rules.is_member(s, &target) {
            return Err(Error::Validation(format!(
                "'{s}' is not a member of group '{target}'"
            )));
        }
    }
    set_task(flow, &task.id, |t| {
        t.group = target;
        t.claimed_by = None;
        t.state = TaskState::Open;
        t.assignee = staff;
    });
    Ok(None)
}

pub(crate) fn set_task(flow: &mut Flow, id: &str, f: impl FnOnce(&mut Task)) {
    if let Some(t) = flow.case.tasks.iter_mut().find(|t| t.id == id) {
        f(t);
    }
}

impl Engine {
    /// Records script failures as incidents; other errors are the caller's to handle.
    fn incident(
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

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    /// Applicant tokens handed out before the `hmac` crate was used must stay valid: the
    /// MAC is the same HMAC-SHA256 the server computed by hand (RFC 2104).
    #[test]
    fn applicant_macs_are_rfc_2104_hmac_sha256() {
        let key = [7u8; 32];
        let case = 42u64;
        let mut k = [0u8; 64];
        k[..32].copy_from_slice(&key);
        let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let ih = Sha256::new()
            .chain_update(&inner)
            .chain_update(case.to_be_bytes())
            .finalize();
        let oh = Sha256::new()
            .chain_update(&outer)
            .chain_update(ih)
            .finalize();
        assert_eq!(super::mac_of(&key, case), hex::encode(&oh[..20]));
    }
}
