//! What a staff member may do on a case, worked out by the same checks the actions run:
//! the pages offer exactly the actions the engine would accept, and never keep a second
//! copy of who may do what.

use serde::Serialize;

use crate::case::{Case, CaseStatus, StopKind};
use crate::engine::{Actor, Engine};
use crate::procedure::{Procedure, INTAKE_STEP};

/// The actions open to one staff member on one case.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Offers {
    /// Per open (non-external) task, in the case's order.
    pub tasks: Vec<TaskOffers>,
    /// Stop the clock with a reason (a case in progress).
    pub suspend: bool,
    /// End a suspension staff declared.
    pub resume: bool,
    /// Extend the statutory limit (the approver group, once).
    pub extend: bool,
    /// Issue a supervision card (a supervisor of a group holding open work).
    pub issue_card: bool,
    /// The open cards this staff member answers.
    pub answer_cards: Vec<String>,
    /// Withdraw the case on the applicant's behalf (撤回: at the window or on the phone;
    /// staff who may see it, auditors excepted, who only read).
    pub withdraw: bool,
    /// Record the rating the applicant gives at the window (a decided case not rated).
    pub rate: bool,
    /// 撤回: the task this staff member completed last and may still take back.
    pub take_back: Option<String>,
}

/// The actions open on one task.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskOffers {
    pub task: String,
    /// Claim, release, complete, return, transfer, ask for supplements.
    pub act: bool,
    /// The outcomes completing it may give.
    pub outcomes: Vec<String>,
    /// The earlier steps it may be returned to.
    pub returns: Vec<String>,
    /// It is the window's acceptance: accepting with a commitment is offered.
    pub intake: bool,
    /// Reassign it to another group or member (a supervisor of its group).
    pub reassign: bool,
    /// The members of its group, for a transfer or reassignment to one of them.
    pub members: Vec<String>,
    /// 加签: members who could be added as signers (a countersign step, its signer acting).
    pub add_signers: Vec<String>,
}

impl Engine {
    /// Who `actor` could add as a signer of task `t`'s countersign step: the group's
    /// members not signing it yet (none unless the step is countersigned and `actor` may
    /// act on the task).
    fn signer_candidates(
        &self,
        actor: &Actor,
        case: &Case,
        proc: &Procedure,
        t: &crate::case::Task,
    ) -> Vec<String> {
        let countersign = proc.step(&t.step).is_some_and(|s| {
            matches!(
                s.mode,
                crate::procedure::Mode::All | crate::procedure::Mode::Sequential
            )
        });
        if !countersign || self.task_of(actor, case, &t.id).is_err() {
            return Vec::new();
        }
        let queued: Vec<&String> = case
            .tokens
            .iter()
            .filter(|k| k.id == t.token)
            .flat_map(|k| k.queue.iter())
            .collect();
        let rules = self.rules();
        rules
            .groups
            .get(&t.group)
            .map(|g| g.members.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|m| {
                !queued.contains(&m)
                    && !case
                        .open_tasks()
                        .any(|o| o.token == t.token && o.assignee.as_deref() == Some(m.as_str()))
            })
            .collect()
    }

    /// What `actor` may do on `case` now. Staff only; anyone else may do nothing here.
    pub fn offers(&self, actor: &Actor, case: &Case, proc: &Procedure) -> Offers {
        let Actor::Staff(me) = actor else {
            return Offers::default();
        };
        let rules = self.rules();
        let tasks = case
            .open_tasks()
            .filter(|t| t.external.is_none())
            .map(|t| TaskOffers {
                task: t.id.clone(),
                act: self.task_of(actor, case, &t.id).is_ok(),
                outcomes: proc.task_outcomes(&t.step),
                returns: proc
                    .step(&t.step)
                    .and_then(|s| s.return_to.clone())
                    .unwrap_or_default(),
                intake: t.step == INTAKE_STEP,
                reassign: rules.supervises(me, &t.group),
                members: rules
                    .groups
                    .get(&t.group)
                    .map(|g| g.members.clone())
                    .unwrap_or_default(),
                add_signers: self.signer_candidates(actor, case, proc, t),
            })
            .collect();
        let handler = self.check_case_staff(actor, case).is_ok();
        let stop = case.clock_stop.as_ref().map(|s| s.kind);
        Offers {
            tasks,
            suspend: handler && case.status == CaseStatus::InProgress,
            resume: handler && stop == Some(StopKind::Suspension),
            extend: self.check_extension(me, case, proc).is_ok(),
            issue_card: case.status.is_open() && !self.card_holders(me, case).is_empty(),
            answer_cards: case
                .cards
                .iter()
                .filter(|c| c.answer.is_none() && self.may_answer(me, c))
                .map(|c| c.id.clone())
                .collect(),
            withdraw: case.status.is_open() && self.can_see(actor, case) && !rules.is_auditor(me),
            take_back: self.may_take_back(actor, case),
            rate: crate::rating::may_be_rated(case)
                && self.can_see(actor, case)
                && !rules.is_auditor(me),
        }
    }
}
