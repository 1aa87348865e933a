//! Receiving applications: one case, or a bundle of cases from one form; with uploaded
//! files; every problem of the form reported at once.

use std::collections::HashMap;

use rand::Rng;

use crate::case::{Applicant, Case, CaseStatus, Data, HistoryEvent, MaterialRef};
use crate::engine::{Actor, BundleItem, Committed, Engine, Submission};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::form::{check_data, check_materials, Filler};
use crate::office::RuleSet;
use crate::procedure::Procedure;
use crate::store::CaseWrite;

const QUERY_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

fn query_code() -> String {
    let mut rng = rand::rng();
    (0..8)
        .map(|_| QUERY_ALPHABET[rng.random_range(0..QUERY_ALPHABET.len())] as char)
        .collect()
}

impl Engine {
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
            limits: None,
            rating: None,
            take_back: None,
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
            problems.push(
                Problem::of(
                    "applicant.id",
                    "applicant.id must be 1-64 letters or digits (ID card number or credit code)",
                )
                .code("applicant_id"),
            );
        }
        if a.name.trim().is_empty() || a.name.len() > 200 {
            problems.push(
                Problem::of(
                    "applicant.name",
                    "applicant.name is required (at most 200 bytes)",
                )
                .code("applicant_name"),
            );
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
        if !proc.window && !matches!(actor, Actor::Staff(_)) {
            return Err(Error::Forbidden(format!(
                "'{procedure}' is an internal procedure: staff submit it"
            )));
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
        if proc.window {
            flow.open_intake();
        } else {
            // An internal request needs no window: accepted as it is received.
            flow.accept()?;
        }
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
            work: Vec::new(),
            figures: None,
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
            problems.extend(crate::files::check_uploads(proc, &uploads));
        }
        crate::files::name_uploads(&mut sub.materials, &uploads);
        let item = BundleItem {
            procedure: sub.procedure,
            data: sub.data,
            materials: sub.materials,
        };
        let w = self
            .prepare_submission(&rules, actor, &sub.applicant, item, None, problems)
            .inspect_err(|e| self.incident(e, actor, "submit", None, None))?;
        self.keep_files(&uploads)?;
        self.commit(vec![w])
    }

    /// Keeps uploaded files before the case that names them is written: a file of a
    /// commit that then fails is named by no case (and kept once if it comes again).
    pub(crate) fn keep_files(&self, uploads: &[crate::files::Upload]) -> Result<()> {
        for up in uploads {
            self.store.put_file(&up.bytes)?;
        }
        Ok(())
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
        shared: Data,
        items: Vec<BundleItem>,
    ) -> Result<Committed> {
        self.submit_bundle_with_files(actor, bundle, applicant, shared, items, Vec::new())
    }

    /// As [`Engine::submit_bundle`], with files: `(procedure, upload)`. `shared` holds the
    /// bundle's own fields, entered once and copied into every item whose procedure
    /// declares them. Every problem of every item is reported at once, its field named
    /// `<procedure>:<field>` (`shared:<field>` for a shared one). The cases share one query
    /// code: the applicant follows the bundle, and each of its cases, with one code.
    pub fn submit_bundle_with_files(
        &self,
        actor: &Actor,
        bundle: &str,
        applicant: Applicant,
        shared: Data,
        items: Vec<BundleItem>,
        uploads: Vec<(String, crate::files::Upload)>,
    ) -> Result<Committed> {
        use crate::form::Problem;
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
        let mut problems: Vec<Problem> = shared
            .keys()
            .filter(|k| !b.fields.contains(k))
            .map(|k| {
                Problem::of(
                    format!("shared:{k}"),
                    format!(
                        "'{k}' is not a field of bundle '{bundle}' (its fields: {})",
                        b.fields.join(", ")
                    ),
                )
            })
            .collect();
        let reference = format!("{}-{}", bundle, query_code());
        let mut by_procedure: HashMap<String, Vec<crate::files::Upload>> = HashMap::new();
        for (p, u) in uploads {
            by_procedure.entry(p).or_default().push(u);
        }
        let mut writes = Vec::new();
        for mut it in items {
            let name = it.procedure.clone();
            if let Some(proc) = rules.procedures.get(&name) {
                for (k, v) in &shared {
                    if proc.fields.iter().any(|f| &f.id == k) {
                        it.data.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
            let mine = by_procedure
                .get(&name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut found = Vec::new();
            if let Some(proc) = rules.procedures.get(&name) {
                found.extend(crate::files::check_uploads(proc, mine));
            }
            crate::files::name_uploads(&mut it.materials, mine);
            match self.prepare_submission(
                &rules,
                actor,
                &applicant,
                it,
                Some(reference.clone()),
                found,
            ) {
                Ok(w) => writes.push(w),
                Err(Error::Invalid(list)) => {
                    for p in list {
                        let field = p.field.clone().unwrap_or_default();
                        // A shared field's problem is said once, at the shared field.
                        if b.fields.contains(&field) {
                            let at = format!("shared:{field}");
                            if !problems
                                .iter()
                                .any(|q| q.field.as_deref() == Some(at.as_str()))
                            {
                                problems.push(Problem {
                                    field: Some(at),
                                    ..p
                                });
                            }
                            continue;
                        }
                        problems.push(Problem {
                            field: Some(format!("{name}:{field}")),
                            message: format!("{name}: {}", p.message),
                            ..p
                        });
                    }
                }
                Err(e) => problems.push(Problem::of(format!("{name}:"), format!("{name}: {e}"))),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        if let Some(code) = writes.first().map(|w| w.after.query_code.clone()) {
            for w in &mut writes {
                w.after.query_code = code.clone();
            }
        }
        for files in by_procedure.values() {
            self.keep_files(files)?;
        }
        self.commit(writes)
    }
}
