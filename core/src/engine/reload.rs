//! The rule set's life cycle: read the scripts folder, compile and validate all of it off
//! the request threads, and swap it in whole — or keep the live one and report why not.
//! Startup and every later reload (file watcher, periodic rescan, admin request) go
//! through [`Engine::reload`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::error::{Error, Result, ScriptProblem};
use crate::script;

/// What the last load attempt did, for the admin API and `guichet check`.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReloadStatus {
    /// Whether the last attempt went live.
    pub ok: bool,
    pub attempted_at: Option<DateTime<Utc>>,
    /// When the live rule set went live.
    pub live_since: Option<DateTime<Utc>>,
    /// Hash of the files of the live rule set.
    pub live_fingerprint: String,
    /// Why the last attempt was refused (empty when it went live).
    pub problems: Vec<ScriptProblem>,
    /// Procedure versions of the live rule set.
    pub procedures: BTreeMap<String, String>,
    /// How many reloads went live since start (the first load counts).
    pub reloads: u64,
    /// How many times the folder was read to be compared or loaded since start.
    pub attempts: u64,
    /// Things that load but deserve attention (e.g. a year without a holiday table).
    pub warnings: Vec<String>,
    /// Files of the last refused attempt: the same refusal is audited once, not on every
    /// rescan.
    #[serde(skip)]
    refused_fingerprint: String,
    /// Files of this node's folder when it took over a rule set another node made live
    /// (a shared store): the folder proposes itself again only once it changes.
    #[serde(skip)]
    superseded_fingerprint: String,
}

/// Warnings about a rule set that loads: years around `now` without a holiday table.
pub fn warnings(rules: &crate::office::RuleSet, now: DateTime<Utc>) -> Vec<String> {
    use chrono::Datelike;
    let year = rules.calendar.local_date(now).year();
    rules
        .calendar
        .missing_years(year..=year + 1)
        .into_iter()
        .map(|y| {
            format!("the calendar has no holiday table for {y}: only the weekly rest days apply")
        })
        .collect()
}

/// Who changed in the office between two rule sets: staff added or removed, group
/// members and supervisors, department heads, office roles. Recorded in the audit log
/// with the reload, since staff and their powers are declared in the scripts.
pub fn office_changes(old: &crate::office::RuleSet, new: &crate::office::RuleSet) -> Vec<String> {
    use std::collections::BTreeSet;
    fn diff(what: &str, old: &[String], new: &[String], out: &mut Vec<String>) {
        let (o, n): (BTreeSet<&String>, BTreeSet<&String>) =
            (old.iter().collect(), new.iter().collect());
        let added: Vec<&str> = n.difference(&o).map(|s| s.as_str()).collect();
        let removed: Vec<&str> = o.difference(&n).map(|s| s.as_str()).collect();
        if !added.is_empty() {
            out.push(format!("{what} +{}", added.join(" +")));
        }
        if !removed.is_empty() {
            out.push(format!("{what} -{}", removed.join(" -")));
        }
    }
    let mut out = Vec::new();
    let ids = |r: &crate::office::RuleSet| r.staff.keys().cloned().collect::<Vec<_>>();
    diff("staff", &ids(old), &ids(new), &mut out);
    let none = Vec::new();
    for (id, g) in &new.groups {
        let before = old.groups.get(id);
        diff(
            &format!("group {id} members"),
            before.map_or(&none, |g| &g.members),
            &g.members,
            &mut out,
        );
        diff(
            &format!("group {id} supervisors"),
            before.map_or(&none, |g| &g.supervisors),
            &g.supervisors,
            &mut out,
        );
    }
    for id in old.groups.keys().filter(|id| !new.groups.contains_key(*id)) {
        out.push(format!("group {id} removed"));
    }
    for (id, d) in &new.departments {
        diff(
            &format!("department {id} heads"),
            old.departments.get(id).map_or(&none, |d| &d.heads),
            &d.heads,
            &mut out,
        );
    }
    let roles = |r: &crate::office::RuleSet| {
        r.staff
            .values()
            .flat_map(|s| {
                s.roles
                    .iter()
                    .map(move |role| format!("{}:{role:?}", s.id).to_lowercase())
            })
            .collect::<Vec<_>>()
    };
    diff("roles", &roles(old), &roles(new), &mut out);
    out
}

/// What a call to [`Engine::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Nothing changed on disk since the live rule set was loaded.
    Unchanged,
    /// A new rule set is live; `changed` lists procedures added, changed or removed.
    Live { changed: Vec<String> },
}

/// The store's meta key of the last rule set that went live: its files, as JSON.
const LAST_GOOD: &str = "last_good_scripts";
/// ... and of their fingerprint, which the nodes sharing a store watch.
const LAST_GOOD_FINGERPRINT: &str = "last_good_fingerprint";

fn fingerprint(files: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    for (path, src) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(src.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..12])
}

impl Engine {
    /// Loads the scripts folder and makes it live if all of it compiles and validates.
    /// On failure the live rule set stays, the problems are kept for [`Engine::reload_status`]
    /// and returned as `Error::Load`.
    pub fn reload(&self) -> Result<ReloadOutcome> {
        self.reload_as("system")
    }

    /// As [`Engine::reload`], recording `who` asked for it in the audit log.
    pub fn reload_as(&self, who: &str) -> Result<ReloadOutcome> {
        let outcome = self.reload_once(who);
        let result = match &outcome {
            Ok(ReloadOutcome::Unchanged) => "unchanged",
            Ok(ReloadOutcome::Live { .. }) => "live",
            Err(_) => "refused",
        };
        metrics::counter!("guichet_reloads_total", "result" => result).increment(1);
        outcome
    }

    fn reload_once(&self, who: &str) -> Result<ReloadOutcome> {
        // One reload at a time, compile included: two saves in quick succession must not
        // install the older rule set last.
        let _one = self.reloading.lock();
        let now = self.now();
        let files = match script::read_dir(self.scripts_dir()) {
            Ok(files) => files,
            Err(problems) => return Err(self.refused(who, now, String::new(), problems)),
        };
        let fp = fingerprint(&files);
        {
            let mut status = self.reload.lock();
            status.attempts += 1;
            status.attempted_at = Some(now);
            if (status.live_fingerprint == fp || status.superseded_fingerprint == fp) && status.ok {
                return Ok(ReloadOutcome::Unchanged);
            }
            // The same files refused again: same answer, nothing compiled.
            if status.refused_fingerprint == fp && !status.ok {
                return Err(Error::Load(status.problems.clone()));
            }
        }
        match script::load_sources_with(self.scripts_dir(), &files, &self.plugins().modules) {
            Ok(rules) => self.go_live(who, now, rules, fp, Some(&files)),
            Err(problems) => Err(self.refused(who, now, fp, problems)),
        }
    }

    /// Makes `rules` live and records it; `files` (the folder it came from) are kept in
    /// the store as the last good rule set, which a start with a broken folder runs on.
    fn go_live(
        &self,
        who: &str,
        now: DateTime<Utc>,
        rules: crate::office::RuleSet,
        fp: String,
        files: Option<&[(String, String)]>,
    ) -> Result<ReloadOutcome> {
        let previous = self.reload.lock().procedures.clone();
        let versions: BTreeMap<String, String> = rules
            .procedures
            .values()
            .map(|p| (p.id.clone(), p.version.clone()))
            .collect();
        let mut changed: Vec<String> = versions
            .iter()
            .filter(|(id, v)| previous.get(*id) != Some(*v))
            .map(|(id, v)| format!("{id}@{v}"))
            .collect();
        changed.extend(
            previous
                .keys()
                .filter(|id| !versions.contains_key(*id))
                .map(|id| format!("{id} removed")),
        );
        let warns = warnings(&rules, now);
        for w in &warns {
            tracing::warn!(message = "calendar", warning = %w);
        }
        let office = office_changes(&self.rules(), &rules);
        if let Some(files) = files {
            // The files first: a node that sees the new fingerprint finds them.
            self.store()
                .put_meta(LAST_GOOD, &serde_json::to_vec(files)?)?;
            self.store()
                .put_meta(LAST_GOOD_FINGERPRINT, fp.as_bytes())?;
        }
        self.install(rules)?;
        let mut status = self.reload.lock();
        status.warnings = warns;
        status.ok = files.is_some();
        if files.is_some() {
            status.problems.clear();
            status.refused_fingerprint.clear();
            status.superseded_fingerprint.clear();
        }
        status.live_since = Some(now);
        status.live_fingerprint = fp;
        status.procedures = versions;
        status.reloads += 1;
        self.audit_or_warn(
            crate::audit::Record::new(now, who, "scripts.reloaded", "scripts").with_detail(
                changed
                    .iter()
                    .chain(&office)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        );
        tracing::info!(message = "scripts live", changed = %changed.join(", "), reloads = status.reloads);
        Ok(ReloadOutcome::Live { changed })
    }

    /// Records a refused folder: the live rule set stays. Logged and audited once per
    /// version of the files, not at every rescan.
    fn refused(
        &self,
        who: &str,
        now: DateTime<Utc>,
        fp: String,
        problems: Vec<ScriptProblem>,
    ) -> Error {
        let mut status = self.reload.lock();
        status.ok = false;
        status.problems = problems.clone();
        if fp.is_empty() || status.refused_fingerprint != fp {
            status.refused_fingerprint = fp;
            let first = problems.first().map(|p| p.to_string()).unwrap_or_default();
            self.audit_or_warn(
                crate::audit::Record::new(now, who, "scripts.refused", "scripts")
                    .with_detail(format!("{} problem(s); first: {first}", problems.len())),
            );
            for p in &problems {
                tracing::warn!(message = "scripts refused; the previous rule set stays live", problem = %p);
            }
        }
        Error::Load(problems)
    }

    /// On a store other nodes share: takes over the rule set another node made live since
    /// (a reload there reaches every node within a second of this being called), and the
    /// delegations as they are now. Called about once a second; says what it took over.
    pub fn follow_shared(&self) -> Result<Option<String>> {
        if !self.store().shared() {
            return Ok(None);
        }
        *self.delegations.write() = Self::load_delegations(self.store().as_ref())?;
        let Some(fp) = self.store().meta(LAST_GOOD_FINGERPRINT)? else {
            return Ok(None);
        };
        let fp = String::from_utf8_lossy(&fp).to_string();
        let _one = self.reloading.lock();
        if self.reload.lock().live_fingerprint == fp {
            return Ok(None);
        }
        let Some(bytes) = self.store().meta(LAST_GOOD)? else {
            return Ok(None);
        };
        let files: Vec<(String, String)> = serde_json::from_slice(&bytes)?;
        if fingerprint(&files) != fp {
            // Between the two writes of another node's reload: next time.
            return Ok(None);
        }
        let rules = script::load_sources_with(self.scripts_dir(), &files, &self.plugins().modules)
            .map_err(Error::Load)?;
        let now = self.now();
        let outcome = self.go_live("another node", now, rules, fp, None)?;
        let mut status = self.reload.lock();
        status.ok = true;
        status.problems.clear();
        // This node's folder, as it is now, was superseded: it goes live again only once
        // it changes.
        if let Ok(current) = script::read_dir(self.scripts_dir()) {
            status.superseded_fingerprint = fingerprint(&current);
        }
        Ok(match outcome {
            ReloadOutcome::Live { changed } => Some(format!(
                "took over the rule set another node made live: {}",
                changed.join(", ")
            )),
            ReloadOutcome::Unchanged => None,
        })
    }

    /// At start, when the scripts folder does not load: runs on the last rule set that
    /// went live (kept in the store), so a bad edit cannot keep the office closed. The
    /// folder's problems stay in the status; the watcher makes the folder live once it
    /// validates. Without a stored rule set (a first start) the folder's error stands.
    pub(crate) fn start_on_last_good(&self, folder: Error) -> Result<()> {
        let Error::Load(problems) = folder else {
            return Err(folder);
        };
        let Some(bytes) = self.store().meta(LAST_GOOD)? else {
            return Err(Error::Load(problems));
        };
        let files: Vec<(String, String)> = serde_json::from_slice(&bytes)?;
        let rules = script::load_sources_with(self.scripts_dir(), &files, &self.plugins().modules)
            .map_err(|stored| {
                tracing::error!(
                    message = "the stored rule set does not load either",
                    problems = stored.len()
                );
                Error::Load(problems.clone())
            })?;
        let now = self.now();
        tracing::warn!(
            message =
                "scripts folder refused at start; running on the last rule set that went live",
            problems = problems.len()
        );
        self.go_live("system", now, rules, fingerprint(&files), None)?;
        let mut status = self.reload.lock();
        status.ok = false;
        status.problems = problems;
        if let Ok(current) = script::read_dir(self.scripts_dir()) {
            status.refused_fingerprint = fingerprint(&current);
        }
        Ok(())
    }

    pub fn reload_status(&self) -> ReloadStatus {
        self.reload.lock().clone()
    }
}

/// One stored procedure version, as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VersionInfo {
    pub procedure: String,
    pub version: String,
    pub file: String,
    /// When this version was first loaded.
    pub since: DateTime<Utc>,
    /// Whether new cases start on it.
    pub live: bool,
    pub open_cases: u64,
}

impl Engine {
    /// Every procedure version ever loaded, with its open cases.
    pub fn versions(&self) -> Result<Vec<VersionInfo>> {
        let rules = self.rules();
        let counts = self.store().open_cases_by_version()?;
        Ok(self
            .store()
            .versions()?
            .into_iter()
            .map(|v| VersionInfo {
                live: rules
                    .procedures
                    .get(&v.procedure)
                    .is_some_and(|p| p.version == v.version),
                open_cases: counts
                    .get(&(v.procedure.clone(), v.version.clone()))
                    .copied()
                    .unwrap_or(0),
                procedure: v.procedure,
                version: v.version,
                file: v.file,
                since: v.first_loaded,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::office_changes;

    #[test]
    fn staff_and_their_powers_are_diffed() {
        let load = |office: &str| {
            crate::script::load_sources(
                std::path::Path::new("/nonexistent"),
                &[("office.rhai".to_string(), office.to_string())],
            )
            .unwrap()
        };
        let old = load(
            r#"department(#{ id: "d", name: "D" });
               staff(#{ id: "a", name: "A" }); staff(#{ id: "b", name: "B" });
               group(#{ id: "g", name: "G", department: "d", members: ["a"] });"#,
        );
        let new = load(
            r#"department(#{ id: "d", name: "D", heads: ["c"] });
               staff(#{ id: "a", name: "A" }); staff(#{ id: "c", name: "C", roles: ["auditor"] });
               group(#{ id: "g", name: "G", department: "d", members: ["a", "c"], supervisors: ["a"] });"#,
        );
        assert_eq!(
            office_changes(&old, &new),
            vec![
                "staff +c",
                "staff -b",
                "group g members +c",
                "group g supervisors +a",
                "department d heads +c",
                "roles +c:auditor",
            ]
        );
        assert!(office_changes(&new, &new).is_empty());
    }
}
