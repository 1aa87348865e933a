//! Stopping the clock: supplement requests (补正) before and after acceptance, the
//! applicant's answer, and suspensions declared by staff. Every stop and resume is a
//! history event with who and why; resuming moves every deadline by the working days lost
//! (see `Flow::resume_clock`). Excluded steps stop and resume the clock by themselves.

use crate::case::{
    Case, CaseStatus, Data, HistoryEvent, MaterialRef, StopKind, SupplementRequest, TaskState,
};
use crate::engine::{Actor, Committed, Engine};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::form::{check_data, check_materials_partial, Filler};
use crate::procedure::INTAKE_STEP;
use crate::tasks::set_task;

impl Engine {
    /// Runs `f` on a flow over `case` and commits the result with one history event.
    fn change_case(
        &self,
        case: Case,
        actor: &Actor,
        action: &str,
        comment: Option<String>,
        f: impl FnOnce(&mut Flow) -> Result<()>,
    ) -> Result<Committed> {
        let proc = self.procedure_of(&case)?;
        let rules = self.rules();
        let mut flow = Flow::new(&proc, &rules, case.clone(), self.now());
        f(&mut flow)?;
        let event = HistoryEvent {
            comment,
            data_changed: flow.data_changed,
            effects: flow.effects,
            materials: flow.materials_received,
            ..HistoryEvent::new(flow.now, actor.name(), action)
        };
        self.commit_change(case, flow.case, event, flow.timers)
    }

    /// A handler asks the applicant for everything missing, in one notice. At intake the
    /// case goes back to the applicant before any clock starts; after acceptance the clock
    /// stops until the applicant answers.
    pub fn request_supplement(
        &self,
        actor: &Actor,
        task_id: &str,
        items: Vec<String>,
        comment: Option<String>,
    ) -> Result<Committed> {
        let items = item_list(items)?;
        let me = actor.name();
        let text = format!("supplement requested: {}", items.join("; "));
        self.act(
            actor,
            task_id,
            "supplement_requested",
            comment.clone(),
            |flow, task| {
                if flow.case.status == CaseStatus::Supplement {
                    return Err(Error::InvalidTransition(
                        "the case already waits on the applicant".into(),
                    ));
                }
                let before_acceptance = task.step == INTAKE_STEP;
                flow.case.supplement = Some(SupplementRequest {
                    items: items.clone(),
                    comment: comment.clone(),
                    by: me.clone(),
                    at: flow.now,
                    before_acceptance,
                });
                flow.case.status = CaseStatus::Supplement;
                if before_acceptance {
                    // The intake decision is "not yet": the window decides again on the answer.
                    let now = flow.now;
                    set_task(flow, &task.id, |t| {
                        t.state = TaskState::Completed;
                        t.completed_at = Some(now);
                        t.completed_by = Some(me.clone());
                        t.outcome = Some("supplement".into());
                    });
                    let token = task.token;
                    flow.case.tokens.retain(|t| t.id != token);
                } else {
                    flow.stop_clock(StopKind::Applicant, &text, &me)?;
                }
                Ok(Some("supplement".into()))
            },
        )
    }

    /// Accepts at the window with a commitment (容缺受理): the case is accepted and its
    /// steps start, but the clock stops until the applicant supplies the promised items;
    /// if they are not there at close of office on `by`, the case is terminated.
    pub fn accept_with_commitment(
        &self,
        actor: &Actor,
        task_id: &str,
        items: Vec<String>,
        by: &str,
        comment: Option<String>,
    ) -> Result<Committed> {
        let items = item_list(items)?;
        let date = chrono::NaiveDate::parse_from_str(by, "%Y-%m-%d").map_err(|_| {
            Error::Validation(format!("`by` must be a date YYYY-MM-DD, not '{by}'"))
        })?;
        let rules = self.rules();
        let due = rules.calendar.close_of(date);
        if due <= self.now() {
            return Err(Error::Validation(
                "the promised date must be in the future".into(),
            ));
        }
        let me = actor.name();
        let text = format!("accepted with commitment: {} by {by}", items.join("; "));
        self.act(
            actor,
            task_id,
            "accepted_with_commitment",
            comment.clone(),
            |flow, task| {
                if task.step != INTAKE_STEP {
                    return Err(Error::InvalidTransition(
                        "only the intake decision can accept with a commitment".into(),
                    ));
                }
                flow.complete_task(&task.id, &me, "accept", comment.clone())?;
                flow.case.commitment = Some(crate::case::Commitment {
                    items: items.clone(),
                    due,
                    by: me.clone(),
                    at: flow.now,
                });
                flow.stop_clock(StopKind::Applicant, &text, &me)?;
                flow.timers.push(crate::case::Timer {
                    at: due,
                    case: flow.case.id,
                    limit: crate::case::Limit::Commitment,
                    token: None,
                    threshold: "commitment".into(),
                    limit_due: due,
                });
                Ok(Some("accept".into()))
            },
        )
    }

    /// The applicant answers a supplement request (or delivers what was promised at an
    /// acceptance with commitment) with data and materials.
    pub fn supply(
        &self,
        number: &str,
        code: &str,
        data: Data,
        materials: Vec<MaterialRef>,
    ) -> Result<Committed> {
        self.supply_with_files(number, code, data, materials, Vec::new())
    }

    /// As [`Engine::supply`], with the files of the materials, checked and kept as an
    /// application's are.
    pub fn supply_with_files(
        &self,
        number: &str,
        code: &str,
        data: Data,
        mut materials: Vec<MaterialRef>,
        uploads: Vec<crate::files::Upload>,
    ) -> Result<Committed> {
        let case = self.track(number, code)?;
        let request = match (&case.supplement, &case.commitment) {
            (Some(r), _) => r.clone(),
            (None, Some(c)) => SupplementRequest {
                items: c.items.clone(),
                comment: None,
                by: c.by.clone(),
                at: c.at,
                before_acceptance: false,
            },
            (None, None) => {
                return Err(Error::InvalidTransition(format!(
                    "case {number} is not waiting for supplementary materials"
                )))
            }
        };
        let proc = self.procedure_of(&case)?;
        let mut merged = case.data.clone();
        merged.extend(data.clone());
        let mut errs = check_data(&proc, &data, &merged, Filler::Applicant, true);
        errs.extend(crate::files::check_uploads(&proc, &uploads));
        crate::files::name_uploads(&mut materials, &uploads);
        errs.extend(check_materials_partial(&proc, &materials));
        if data.is_empty() && materials.is_empty() {
            errs.push(
                crate::form::Problem::general(
                    "send at least one of the materials or answers asked for",
                )
                .code("nothing_sent"),
            );
        }
        if !errs.is_empty() {
            return Err(Error::Invalid(errs));
        }
        self.keep_files(&uploads)?;
        self.change_case(
            case,
            &Actor::Public,
            "supplemented",
            Some(request.items.join("; ")),
            |flow| {
                flow.merge(data);
                for m in materials {
                    flow.case.materials.retain(|x| x.id != m.id);
                    flow.case.materials.push(m.clone());
                    flow.materials_received.push(m);
                }
                flow.case.supplement = None;
                if flow.case.commitment.take().is_some() {
                    // Delivered what was promised: the clock runs again; the status never
                    // changed.
                    flow.resume_clock()?;
                } else if request.before_acceptance {
                    flow.case.status = CaseStatus::Submitted;
                    flow.open_intake();
                } else {
                    flow.case.status = CaseStatus::InProgress;
                    flow.resume_clock()?;
                }
                Ok(())
            },
        )
    }

    /// Staff stop a case's clock with a reason (e.g. an on-site inspection the law
    /// excludes). Only holders of its open tasks or its supervisor group may.
    pub fn suspend(&self, actor: &Actor, case_id: u64, reason: &str) -> Result<Committed> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 2000 {
            return Err(Error::Validation(
                "a reason is required (at most 2000 bytes)".into(),
            ));
        }
        let case = self.case(case_id)?;
        self.check_case_staff(actor, &case)?;
        if case.status != CaseStatus::InProgress {
            return Err(Error::InvalidTransition(
                "only a case in progress can be suspended".into(),
            ));
        }
        let me = actor.name();
        self.change_case(case, actor, "suspended", Some(reason.to_string()), |flow| {
            flow.stop_clock(StopKind::Suspension, reason, &me)
        })
    }

    /// Ends a suspension declared by staff.
    pub fn resume(
        &self,
        actor: &Actor,
        case_id: u64,
        comment: Option<String>,
    ) -> Result<Committed> {
        let case = self.case(case_id)?;
        self.check_case_staff(actor, &case)?;
        match case.clock_stop.as_ref().map(|s| s.kind) {
            Some(StopKind::Suspension) => {}
            Some(other) => {
                return Err(Error::InvalidTransition(
                    format!(
                    "the clock was stopped by {other:?}, not by a suspension; it resumes by itself"
                )
                    .to_lowercase(),
                ))
            }
            None => return Err(Error::InvalidTransition("the clock is running".into())),
        }
        self.change_case(case, actor, "resumed", comment, |flow| {
            flow.resume_clock().map(|_| ())
        })
    }

    /// Extends the statutory limit once, as the procedure allows, by a member of its
    /// approver group, with a reason.
    pub fn extend(&self, actor: &Actor, case_id: u64, reason: &str) -> Result<Committed> {
        let Actor::Staff(me) = actor else {
            return Err(Error::Forbidden("a staff token is required".into()));
        };
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 2000 {
            return Err(Error::Validation(
                "a reason is required (at most 2000 bytes)".into(),
            ));
        }
        let case = self.case(case_id)?;
        let proc = self.procedure_of(&case)?;
        let policy = self.check_extension(me, &case, &proc)?;
        let who = me.clone();
        self.change_case(case, actor, "extended", Some(reason.to_string()), |flow| {
            let previous_due = flow.case.statutory_due.ok_or_else(|| {
                Error::InvalidTransition("the statutory limit starts at acceptance".into())
            })?;
            flow.extend_statutory(policy.days)?;
            flow.case.extension = Some(crate::case::Extension {
                days: policy.days,
                reason: reason.to_string(),
                by: who,
                at: flow.now,
                previous_due,
            });
            Ok(())
        })
    }

    /// The extension `staff` may grant on `case`, or why not.
    pub(crate) fn check_extension(
        &self,
        staff: &str,
        case: &Case,
        proc: &crate::procedure::Procedure,
    ) -> Result<crate::procedure::ExtensionPolicy> {
        let Some(policy) = proc.extension.clone() else {
            return Err(Error::InvalidTransition(format!(
                "procedure '{}' allows no extension",
                proc.id
            )));
        };
        if !self.rules().is_member(staff, &policy.approver) {
            return Err(Error::Forbidden(format!(
                "extensions are approved by group '{}'",
                policy.approver
            )));
        }
        if case.extension.is_some() {
            return Err(Error::Conflict(
                "the statutory limit was already extended once".into(),
            ));
        }
        if !case.status.is_open() {
            return Err(Error::InvalidTransition("the case is closed".into()));
        }
        if case.statutory_due.is_none() {
            return Err(Error::InvalidTransition(
                "the statutory limit starts at acceptance".into(),
            ));
        }
        Ok(policy)
    }

    pub(crate) fn check_case_staff(&self, actor: &Actor, case: &Case) -> Result<()> {
        let Actor::Staff(me) = actor else {
            return Err(Error::Forbidden("a staff token is required".into()));
        };
        let rules = self.rules();
        let proc = self.procedure_of(case)?;
        let holder = case.open_tasks().any(|t| rules.is_member(me, &t.group));
        let supervisor = proc
            .warnings
            .supervisor
            .as_ref()
            .is_some_and(|g| rules.is_member(me, g));
        if holder || supervisor {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "only the case's handlers or its supervisor group may".into(),
            ))
        }
    }
}

/// The items of a supplement request or a commitment: trimmed, at least one, at most 100
/// of 500 bytes each.
fn item_list(items: Vec<String>) -> Result<Vec<String>> {
    let items: Vec<String> = items
        .into_iter()
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .collect();
    if items.is_empty() {
        return Err(Error::Validation("list every item (at least one)".into()));
    }
    if items.len() > 100 || items.iter().any(|i| i.len() > 500) {
        return Err(Error::Validation(
            "at most 100 items of 500 bytes each".into(),
        ));
    }
    Ok(items)
}
