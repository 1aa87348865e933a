//! Who may see a case. Task actions are checked where they happen (`Engine::for_task`:
//! members of the task's group, or their deputies); this module owns the read side and the
//! roles a caller holds, so that the API can hide a case from those who may not see it
//! (404, as if it did not exist).
//!
//! Roles come from the office scripts: group members are staff; `supervisors` of a group
//! and `heads` of a department see that group's or department's cases; staff with the
//! `auditor` role read everything; the administrator token reads everything; an
//! applicant token reads its own case.

use std::collections::BTreeSet;

use crate::case::Case;
use crate::engine::{Actor, Engine};
use crate::error::{Error, Result};
use crate::office::RuleSet;
use crate::procedure::Procedure;

/// Every group a procedure's cases pass through: the intake group, the steps' groups,
/// the extension approver and the supervisor groups of its warnings.
pub fn groups_of(p: &Procedure) -> BTreeSet<&str> {
    // A group worked out per case is known from the case's tasks, not from here.
    let mut g: BTreeSet<&str> = p
        .steps
        .iter()
        .filter(|s| !s.dynamic_group())
        .filter_map(|s| s.group.as_deref())
        .collect();
    g.insert(p.intake.as_str());
    if let Some(x) = &p.extension {
        g.insert(x.approver.as_str());
    }
    g
}

impl Engine {
    /// Whether `actor` may read `case` (its data, tasks, history and notices).
    pub fn can_see(&self, actor: &Actor, case: &Case) -> bool {
        let staff = match actor {
            Actor::Admin => return true,
            Actor::Applicant(id) => return *id == case.id,
            Actor::Public => return false,
            Actor::Staff(s) => s,
        };
        let rules = self.rules();
        if rules.is_auditor(staff) || rules.is_head(staff, &case.department) {
            return true;
        }
        let mut people = vec![staff.as_str()];
        let principals = self.principals_of(staff);
        people.extend(principals.iter().map(String::as_str));
        people
            .iter()
            .any(|who| self.sees_as_staff(&rules, who, case))
    }

    fn sees_as_staff(&self, rules: &RuleSet, who: &str, case: &Case) -> bool {
        let named = case.tasks.iter().any(|t| {
            t.assignee.as_deref() == Some(who)
                || t.claimed_by.as_deref() == Some(who)
                || rules.is_member(who, &t.group)
                || rules.supervises(who, &t.group)
        });
        named
            || self.procedure_of(case).is_ok_and(|p| {
                groups_of(&p)
                    .iter()
                    .any(|g| rules.is_member(who, g) || rules.supervises(who, g))
            })
    }

    /// A case by id or number, if `actor` may see it; otherwise `NotFound`, exactly as for
    /// a case that does not exist, so that numbers cannot be probed.
    pub fn visible_case(&self, actor: &Actor, reference: &str) -> Result<Case> {
        let hidden = || Error::NotFound(format!("case {reference} not found"));
        let id = self.case_id(reference).map_err(|_| hidden())?;
        let case = self.store().case(id)?.ok_or_else(hidden)?;
        if self.can_see(actor, &case) {
            Ok(case)
        } else {
            Err(hidden())
        }
    }

    /// The id of a case by id or number, if `actor` may see it (see [`Engine::visible_case`]).
    pub fn visible_case_id(&self, actor: &Actor, reference: &str) -> Result<u64> {
        self.visible_case(actor, reference).map(|c| c.id)
    }

    /// The roles `actor` holds, as `/api/me` shows them.
    pub fn roles(&self, actor: &Actor) -> Vec<&'static str> {
        match actor {
            Actor::Admin => vec!["administrator"],
            Actor::Applicant(_) => vec!["applicant"],
            Actor::Public => vec![],
            Actor::Staff(s) => {
                let mut r = self.rules().roles_of(s);
                if !self.principals_of(s).is_empty() {
                    r.push("deputy");
                }
                r
            }
        }
    }
}

/// A staff member's tasks handed to a deputy for a period (leave, a mission), recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Delegation {
    pub id: String,
    /// Whose tasks.
    pub from: String,
    /// The deputy.
    pub to: String,
    /// First and last day, in the office's calendar, both included.
    pub starts: chrono::NaiveDate,
    pub ends: chrono::NaiveDate,
    pub reason: String,
    pub by: String,
    pub at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What a caller asks for when delegating.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DelegationRequest {
    pub from: String,
    pub to: String,
    pub starts: chrono::NaiveDate,
    pub ends: chrono::NaiveDate,
    pub reason: String,
}

const DELEGATIONS: &str = "delegations";

impl Engine {
    pub(crate) fn load_delegations(store: &dyn crate::store::Store) -> Result<Vec<Delegation>> {
        match store.meta(DELEGATIONS)? {
            None => Ok(Vec::new()),
            Some(v) => Ok(serde_json::from_slice(&v)?),
        }
    }

    /// The staff whose tasks `deputy` handles today.
    pub fn principals_of(&self, deputy: &str) -> Vec<String> {
        let today = self.rules().calendar.local_date(self.now());
        self.delegations
            .read()
            .iter()
            .filter(|d| {
                d.to == deputy && d.revoked_at.is_none() && d.starts <= today && today <= d.ends
            })
            .map(|d| d.from.clone())
            .collect()
    }

    /// Every delegation, newest first.
    /// The delegations `actor` gave or received, or may manage as a supervisor of the
    /// delegating staff member's groups (every one for the administrator and auditors),
    /// newest first.
    pub fn delegations_for(&self, actor: &Actor) -> Vec<Delegation> {
        let rules = self.rules();
        self.delegations()
            .into_iter()
            .filter(|d| match actor {
                Actor::Staff(me) => {
                    d.from == *me
                        || d.to == *me
                        || rules.is_auditor(me)
                        || rules
                            .groups_of(&d.from)
                            .iter()
                            .any(|g| rules.supervises(me, g))
                }
                Actor::Admin => true,
                Actor::Applicant(_) | Actor::Public => false,
            })
            .collect()
    }

    pub fn delegations(&self) -> Vec<Delegation> {
        let mut v = self.delegations.read().clone();
        v.reverse();
        v
    }

    /// Hands `from`'s tasks to `to` between two dates. Staff delegate their own tasks; a
    /// supervisor of one of `from`'s groups or the administrator may delegate for them.
    pub fn delegate(&self, actor: &Actor, req: DelegationRequest) -> Result<(Delegation, u64)> {
        let rules = self.rules();
        let allowed = match actor {
            Actor::Admin => true,
            Actor::Staff(s) => {
                *s == req.from
                    || rules
                        .groups_of(&req.from)
                        .iter()
                        .any(|g| rules.supervises(s, g))
            }
            _ => false,
        };
        if !allowed {
            return Err(Error::Forbidden(
                "staff delegate their own tasks; a supervisor of their group or the administrator may delegate for them".into(),
            ));
        }
        for who in [&req.from, &req.to] {
            if !rules.staff.contains_key(who) {
                return Err(Error::Validation(format!(
                    "staff '{who}' is not in the office scripts"
                )));
            }
        }
        if req.from == req.to {
            return Err(Error::Validation("a deputy must be someone else".into()));
        }
        if req.ends < req.starts || (req.ends - req.starts).num_days() > 366 {
            return Err(Error::Validation(
                "'ends' must be on or after 'starts', at most a year later".into(),
            ));
        }
        let reason = req.reason.trim();
        if reason.is_empty() || reason.len() > 1000 {
            return Err(Error::Validation(
                "a reason is required (at most 1000 bytes)".into(),
            ));
        }
        let mut all = self.delegations.write();
        // Another node may have changed them since this one last looked.
        if self.store.shared() {
            *all = Self::load_delegations(self.store.as_ref())?;
        }
        let d = Delegation {
            id: format!("d{}", all.len() + 1),
            from: req.from,
            to: req.to,
            starts: req.starts,
            ends: req.ends,
            reason: reason.to_string(),
            by: actor.name(),
            at: self.now(),
            revoked_at: None,
        };
        let mut next = all.clone();
        next.push(d.clone());
        self.store()
            .put_meta(DELEGATIONS, &serde_json::to_vec(&next)?)?;
        *all = next;
        let ticket = self.store().append_audit(vec![crate::audit::Record::new(
            d.at,
            actor.name(),
            "delegation.created",
            format!("delegation:{}", d.id),
        )
        .with_detail(format!(
            "{} -> {} from {} to {}: {}",
            d.from, d.to, d.starts, d.ends, d.reason
        ))])?;
        Ok((d, ticket))
    }

    /// Ends a delegation early (its author, its deputy's principal, a supervisor, or the
    /// administrator).
    pub fn revoke_delegation(&self, actor: &Actor, id: &str) -> Result<(Delegation, u64)> {
        let rules = self.rules();
        let mut all = self.delegations.write();
        if self.store.shared() {
            *all = Self::load_delegations(self.store.as_ref())?;
        }
        let pos = all
            .iter()
            .position(|d| d.id == id)
            .ok_or_else(|| Error::NotFound(format!("delegation {id} not found")))?;
        let allowed = match actor {
            Actor::Admin => true,
            Actor::Staff(s) => {
                *s == all[pos].from
                    || *s == all[pos].by
                    || rules
                        .groups_of(&all[pos].from)
                        .iter()
                        .any(|g| rules.supervises(s, g))
            }
            _ => false,
        };
        if !allowed {
            return Err(Error::Forbidden(
                "only the delegating staff member, a supervisor or the administrator ends a delegation".into(),
            ));
        }
        if all[pos].revoked_at.is_some() {
            return Err(Error::Conflict(format!("delegation {id} is already ended")));
        }
        let mut next = all.clone();
        next[pos].revoked_at = Some(self.now());
        self.store()
            .put_meta(DELEGATIONS, &serde_json::to_vec(&next)?)?;
        *all = next;
        let d = all[pos].clone();
        let ticket = self.store().append_audit(vec![crate::audit::Record::new(
            self.now(),
            actor.name(),
            "delegation.revoked",
            format!("delegation:{id}"),
        )])?;
        Ok((d, ticket))
    }
}

impl Engine {
    /// A supervisor of a task's group reassigns it (to a member, or to another group)
    /// without being a member; members transfer through `Engine::transfer`.
    pub fn reassign(
        &self,
        actor: &Actor,
        task_id: &str,
        group: Option<String>,
        staff: Option<String>,
        comment: Option<String>,
    ) -> Result<crate::engine::Committed> {
        let Actor::Staff(me) = actor else {
            return Err(Error::Forbidden(
                "tasks are reassigned by a supervisor of their group".into(),
            ));
        };
        let case_id = crate::engine::task_case_id(task_id)?;
        let case = self
            .store()
            .case(case_id)?
            .ok_or_else(|| Error::NotFound(format!("task {task_id} not found")))?;
        let task = case
            .task(task_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("task {task_id} not found")))?;
        if !self.rules().supervises(me, &task.group) {
            let refused = Error::Forbidden(format!(
                "only a supervisor of group '{}' reassigns its tasks",
                task.group
            ));
            return Err(self.hide(actor, &case, refused, || {
                format!("task {task_id} not found")
            }));
        }
        if task.external.is_some() {
            return Err(Error::InvalidTransition(format!(
                "task {task_id} is an external task"
            )));
        }
        if group.is_none() && staff.is_none() {
            return Err(Error::Validation(
                "name a group or a staff member to reassign to".into(),
            ));
        }
        self.act_inner(actor, case, task, "reassigned", comment, |flow, task| {
            crate::tasks::move_task(flow, task, group, staff)
        })
    }

    /// A supervisor issues a supervision card by hand on a case whose work is in a group
    /// they supervise (besides the cards the limits issue on their own).
    /// The groups holding `case`'s open work that `staff` supervises: to whom a card
    /// they issue goes (none: they may not issue one).
    pub(crate) fn card_holders(&self, staff: &str, case: &crate::case::Case) -> Vec<String> {
        let rules = self.rules();
        case.open_tasks()
            .map(|t| t.group.clone())
            .filter(|g| rules.supervises(staff, g))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    pub fn issue_card(
        &self,
        actor: &Actor,
        case_id: u64,
        reason: &str,
    ) -> Result<crate::engine::Committed> {
        let Actor::Staff(me) = actor else {
            return Err(Error::Forbidden("cards are issued by supervisors".into()));
        };
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 4000 {
            return Err(Error::Validation(
                "a reason is required (at most 4000 bytes)".into(),
            ));
        }
        let case = self.case(case_id)?;
        let open: Vec<&crate::case::Task> = case.tasks.iter().filter(|t| t.is_open()).collect();
        let holders = self.card_holders(me, &case);
        if holders.is_empty() {
            return Err(Error::Forbidden(
                "only a supervisor of a group holding the case's open work issues a card".into(),
            ));
        }
        let now = self.now();
        let step = open
            .iter()
            .find(|t| holders.contains(&t.group))
            .map(|t| t.step.clone());
        let card = crate::case::Card {
            id: format!("manual-{}", case.history_len),
            kind: crate::case::CardKind::Supervision,
            limit: crate::case::Limit::Promised,
            step: step.clone(),
            threshold: "manual".into(),
            due: case.promised_due.unwrap_or(now),
            issued_at: now,
            assignees: open
                .iter()
                .filter(|t| holders.contains(&t.group))
                .filter_map(|t| t.assignee.clone().or_else(|| t.claimed_by.clone()))
                .collect(),
            holders,
            supervisor: None,
            answer: None,
        };
        let card_id = card.id.clone();
        let mut after = case.clone();
        after.cards.push(card);
        // As a timer's card does: the holders and the procedure's notice rules hear of it.
        let event = crate::case::HistoryEvent {
            step,
            comment: Some(reason.to_string()),
            effects: vec![crate::case::Effect::CardIssued { card: card_id }],
            ..crate::case::HistoryEvent::new(now, me.clone(), "card_issued")
        };
        self.commit_change(case, after, event, vec![])
    }
}
