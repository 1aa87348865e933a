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
    /// Things that load but deserve attention (e.g. a year without a holiday table).
    pub warnings: Vec<String>,
    /// Files of the last refused attempt: the same refusal is audited once, not on every
    /// rescan.
    #[serde(skip)]
    refused_fingerprint: String,
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
        let now = self.now();
        let files = script::read_dir(self.scripts_dir());
        let attempted = files.as_ref().map(|f| fingerprint(f)).unwrap_or_default();
        let loaded = files.and_then(|files| {
            let fp = fingerprint(&files);
            let live = {
                let s = self.reload.lock();
                (s.ok, s.live_fingerprint.clone())
            };
            if live == (true, fp.clone()) {
                return Ok(None);
            }
            script::load_sources_with(self.scripts_dir(), &files, &self.plugins().modules)
                .map(|rules| Some((rules, fp)))
        });
        let mut status = self.reload.lock();
        status.attempted_at = Some(now);
        match loaded {
            Ok(None) => Ok(ReloadOutcome::Unchanged),
            Ok(Some((rules, fp))) => {
                let versions: BTreeMap<String, String> = rules
                    .procedures
                    .values()
                    .map(|p| (p.id.clone(), p.version.clone()))
                    .collect();
                let mut changed: Vec<String> = versions
                    .iter()
                    .filter(|(id, v)| status.procedures.get(*id) != Some(*v))
                    .map(|(id, v)| format!("{id}@{v}"))
                    .collect();
                changed.extend(
                    status
                        .procedures
                        .keys()
                        .filter(|id| !versions.contains_key(*id))
                        .map(|id| format!("{id} removed")),
                );
                let warns = warnings(&rules, now);
                for w in &warns {
                    tracing::warn!(message = "calendar", warning = %w);
                }
                let office = office_changes(&self.rules(), &rules);
                self.install(rules)?;
                status.warnings = warns;
                status.ok = true;
                status.problems.clear();
                status.live_since = Some(now);
                status.live_fingerprint = fp;
                status.procedures = versions;
                status.reloads += 1;
                status.refused_fingerprint.clear();
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
            Err(problems) => {
                status.ok = false;
                status.problems = problems.clone();
                if status.refused_fingerprint != attempted {
                    status.refused_fingerprint = attempted;
                    let first = problems.first().map(|p| p.to_string()).unwrap_or_default();
                    self.audit_or_warn(
                        crate::audit::Record::new(now, who, "scripts.refused", "scripts")
                            .with_detail(format!("{} problem(s); first: {first}", problems.len())),
                    );
                }
                for p in &problems {
                    tracing::warn!(message = "scripts refused; the previous rule set stays live", problem = %p);
                }
                Err(Error::Load(problems))
            }
        }
    }

    pub fn reload_status(&self) -> ReloadStatus {
        self.reload.lock().clone()
    }
}

/// One stored procedure version, as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
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
