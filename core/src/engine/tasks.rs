//! Tasks: the worklist with warning levels, who may act on a task (members of its group
//! or their deputies; nobody learns of a task of a case they may not see), and the task
//! actions: claim, release, complete, return, transfer.

use std::collections::HashMap;

use crate::calendar::Calendar;
use crate::case::{Case, Data, HistoryEvent, Task, TaskState};
use crate::engine::{task_case_id, Actor, Committed, Engine, WorkFilter, WorkItem};
use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::form::{check_data, Filler};
use crate::limits::{Budget, Level, LevelClock, Stopped};
use crate::office::RuleSet;
use crate::procedure::Procedure;
use crate::store::WorkEntry;
use crate::supervision::CardItem;

/// A supervisor's board: see [`Engine::board`].
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Board {
    /// The groups supervised.
    pub groups: Vec<String>,
    /// A page of their open tasks, worst level first, earliest due first within a level.
    pub tasks: WorkPage,
    /// Open cards addressed to the supervisor's groups.
    pub cards: Vec<CardItem>,
}

/// How a list of tasks is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkOrder {
    /// Oldest first (the API's worklist).
    Oldest,
    /// Worst level first, then oldest (the worklist page).
    WorstOldest,
    /// Worst level first, then the earliest due (the supervisor's board).
    WorstDue,
}

/// One page of a list of tasks, with what the whole list holds.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WorkPage {
    pub items: Vec<WorkItem>,
    /// Where the page starts: as asked, or the last page's start if that was past the
    /// end (the list got shorter).
    pub offset: usize,
    /// Tasks the filter keeps, over all pages.
    pub total: usize,
    /// Of the tasks the filter keeps apart from its level: how many at each level.
    pub counts: LevelCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LevelCounts {
    pub green: usize,
    pub yellow: usize,
    pub red: usize,
}

impl Engine {
    /// A page of the caller's worklist (every group's for an administrator): `size` tasks from `offset` in `order`, with the
    /// total and the counts by level. Reads the groups' work indexes, not their cases,
    /// so it costs about the same for a hundred tasks as for a hundred thousand.
    pub fn worklist_page(
        &self,
        actor: &Actor,
        f: &WorkFilter,
        order: WorkOrder,
        offset: usize,
        size: usize,
    ) -> Result<WorkPage> {
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
        self.open_work(
            &rules,
            actor,
            &groups,
            &principals,
            f,
            false,
            (order, offset, size),
        )
    }

    /// What a supervisor watches: the open tasks of the groups they supervise (as named
    /// supervisor or head of the department), worst level first and, within a level, the
    /// earliest due first (`size` from `offset`); and the open cards addressed to their
    /// groups.
    pub fn board(&self, actor: &Actor, offset: usize, size: usize) -> Result<Board> {
        let rules = self.rules();
        let groups = match actor {
            Actor::Admin => rules.groups.keys().cloned().collect(),
            Actor::Staff(s) => rules.supervised_by(s),
            Actor::Applicant(_) | Actor::Public => {
                return Err(Error::Forbidden("a staff token is required".into()))
            }
        };
        let tasks = self.open_work(
            &rules,
            actor,
            &groups,
            &[],
            &WorkFilter::default(),
            true,
            (WorkOrder::WorstDue, offset, size),
        )?;
        let cards = self.cards(actor, Some(false))?;
        Ok(Board {
            groups,
            tasks,
            cards,
        })
    }

    /// The open tasks of `groups` that `f` keeps, with their levels, a page of them in
    /// order. Supervising, every task of a group counts; otherwise only those the caller
    /// (or a principal) may take.
    #[allow(clippy::too_many_arguments)]
    fn open_work(
        &self,
        rules: &RuleSet,
        actor: &Actor,
        groups: &[String],
        principals: &[String],
        f: &WorkFilter,
        supervising: bool,
        (order, offset, size): (WorkOrder, usize, usize),
    ) -> Result<WorkPage> {
        let me = actor.name();
        let now = self.clock.now();
        let mut counts = LevelCounts::default();
        // What sorts a row, and the row.
        type Row = (
            Level,
            chrono::DateTime<chrono::Utc>,
            u64,
            u64,
            std::sync::Arc<WorkEntry>,
        );
        let mut rows: Vec<Row> = Vec::new();
        for g in groups
            .iter()
            .filter(|g| f.group.as_ref().is_none_or(|x| x == *g))
        {
            // Whom the caller may act as in this group: themselves if a member, or a
            // principal.
            let who: Vec<String> = std::iter::once(me.clone())
                .chain(principals.iter().cloned())
                .filter(|p| *actor == Actor::Admin || rules.is_member(p, g))
                .collect();
            self.store
                .visit_work(g, &mut |e: &std::sync::Arc<WorkEntry>| {
                    let task = &e.task;
                    let for_me = supervising
                        || *actor == Actor::Admin
                        || task
                            .assignee
                            .as_ref()
                            .is_none_or(|a| who.iter().any(|w| w == a));
                    let keep = for_me
                        && f.procedure.as_ref().is_none_or(|p| *p == e.procedure)
                        && f.department.as_ref().is_none_or(|d| *d == e.department)
                        && f.state.is_none_or(|s| s == task.state)
                        && f.bundle
                            .as_ref()
                            .is_none_or(|b| e.bundle.as_ref() == Some(b))
                        && (!f.mine
                            || task.claimed_by.as_ref().is_some_and(|c| who.contains(c))
                            || task.assignee.as_ref().is_some_and(|a| who.contains(a)));
                    if !keep {
                        return;
                    }
                    let level = e.clock.level(now);
                    match level {
                        Level::Green => counts.green += 1,
                        Level::Yellow => counts.yellow += 1,
                        Level::Red => counts.red += 1,
                    }
                    if f.level.is_some_and(|l| l != level) {
                        return;
                    }
                    let when = match order {
                        WorkOrder::WorstDue => {
                            task.due.unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
                        }
                        WorkOrder::Oldest | WorkOrder::WorstOldest => task.created_at,
                    };
                    let seq = task
                        .id
                        .rsplit_once('-')
                        .and_then(|(_, n)| n.parse().ok())
                        .unwrap_or(u64::MAX);
                    rows.push((level, when, e.case_id, seq, e.clone()));
                })?;
        }
        let total = rows.len();
        let offset = if offset >= total && total > 0 && size > 0 {
            (total - 1) / size * size
        } else {
            offset
        };
        let key = |r: &Row| {
            let level = if order == WorkOrder::Oldest {
                Level::Green
            } else {
                r.0
            };
            (std::cmp::Reverse(level), r.1, r.2, r.3)
        };
        // Only the rows up to the end of the page need to be in order.
        let end = offset.saturating_add(size).min(total);
        if end > 0 && end < total {
            rows.select_nth_unstable_by_key(end - 1, key);
            rows.truncate(end);
        }
        rows.sort_unstable_by_key(key);
        let mut outcomes: HashMap<(String, String, String), Vec<String>> = HashMap::new();
        let mut items = Vec::with_capacity(end.saturating_sub(offset));
        for (level, _, case_id, _, e) in rows.into_iter().skip(offset) {
            // The entry is as the last commit of its case left it; a commit that failed
            // half-way can leave one behind, so the task shown is the case's.
            let Some(case) = self.store.case(case_id)? else {
                continue;
            };
            let Some(task) = case.task(&e.task.id).filter(|t| t.is_open()) else {
                continue;
            };
            let outcomes = outcomes
                .entry((e.procedure.clone(), e.version.clone(), task.step.clone()))
                .or_insert_with(|| {
                    self.procedure_version(&e.procedure, &e.version)
                        .map(|p| p.task_outcomes(&task.step))
                        .unwrap_or_default()
                })
                .clone();
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
        Ok(WorkPage {
            items,
            offset,
            total,
            counts,
        })
    }

    /// The clock of a task's level: its step's budget if it has one, else the case's
    /// promised limit.
    pub(crate) fn task_clock(
        rules: &RuleSet,
        p: &Procedure,
        case: &Case,
        task: &Task,
    ) -> LevelClock {
        if task.step == crate::rating::FOLLOW_UP_STEP {
            return match task.due {
                Some(due) => p.warnings.clock(
                    &rules.calendar,
                    (task.created_at, Budget::Days(p.rating.days), due),
                    Stopped::default(),
                    None,
                ),
                None => LevelClock::default(),
            };
        }
        let budget = if task.step == crate::procedure::INTAKE_STEP {
            p.intake_limit.as_ref().map(|l| Budget::Days(l.days))
        } else {
            p.step(&task.step).and_then(|s| s.budget())
        };
        match (task.due, budget) {
            (Some(due), Some(budget)) => {
                let start = case
                    .tokens
                    .iter()
                    .find(|t| t.id == task.token)
                    .map_or(task.created_at, |t| t.entered_at);
                p.warnings_for(Some(&task.step)).clock(
                    &rules.calendar,
                    (start, budget, due),
                    Self::stopped_since(&rules.calendar, case, start),
                    Self::frozen_at(case),
                )
            }
            _ => Self::case_clock(rules, p, case),
        }
    }

    /// The clock stops that ended after `start`: how far resuming moved a limit that
    /// started then (working days; working minutes for a budget in hours).
    fn stopped_since(cal: &Calendar, case: &Case, start: chrono::DateTime<chrono::Utc>) -> Stopped {
        let mut out = Stopped::default();
        for s in &case.clock_stops {
            if let Some(until) = s.until.filter(|u| *u > start) {
                out.days += s.days;
                let minutes = cal.working_minutes_between(s.since, until);
                out.minutes = out
                    .minutes
                    .saturating_add(u32::try_from(minutes).unwrap_or(u32::MAX));
            }
        }
        out
    }

    /// While a case's clock is stopped its limits are measured at the stop.
    fn frozen_at(case: &Case) -> Option<chrono::DateTime<chrono::Utc>> {
        case.clock_stop.as_ref().map(|s| s.since)
    }

    /// The clock of a case's promised limit (none before acceptance: green).
    fn case_clock(rules: &RuleSet, p: &Procedure, case: &Case) -> LevelClock {
        match (case.accepted_at, case.promised_due) {
            (Some(start), Some(due)) if case.status.is_open() => p.warnings.clock(
                &rules.calendar,
                (start, p.promised_budget(case), due),
                Self::stopped_since(&rules.calendar, case, start),
                Self::frozen_at(case),
            ),
            _ => LevelClock::default(),
        }
    }

    /// The warning level of a case: the worst of its promised limit (green before
    /// acceptance) and the budgets of its open steps.
    pub fn case_level(&self, rules: &RuleSet, p: &Procedure, case: &Case) -> crate::limits::Level {
        let now = self.clock.now();
        case.open_tasks()
            .map(|t| Self::task_clock(rules, p, case, t).level(now))
            .chain([Self::case_clock(rules, p, case).level(now)])
            .max()
            .unwrap_or(crate::limits::Level::Green)
    }

    /// What the worklist index holds of each open task of `case`.
    pub(crate) fn work_entries(rules: &RuleSet, p: &Procedure, case: &Case) -> Vec<WorkEntry> {
        case.open_tasks()
            .map(|t| WorkEntry {
                case_id: case.id,
                rev: case.rev,
                case_number: case.number.clone(),
                procedure: case.procedure.clone(),
                version: case.version.clone(),
                procedure_name: case.procedure_name.clone(),
                department: case.department.clone(),
                applicant: case.applicant.name.clone(),
                bundle: case.bundle.clone(),
                task: t.clone(),
                clock: Self::task_clock(rules, p, case, t),
            })
            .collect()
    }

    /// `case` (as read: `None` if there is none) with the task `task_id` that `actor` may
    /// act on.
    fn task_in(
        &self,
        actor: &Actor,
        case: Option<Case>,
        task_id: &str,
    ) -> Result<(Case, Task, Option<String>)> {
        let case = case.ok_or_else(|| Error::NotFound(format!("task {task_id} not found")))?;
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

    pub(crate) fn task_of(
        &self,
        actor: &Actor,
        case: &Case,
        task_id: &str,
    ) -> Result<(Task, Option<String>)> {
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
    /// If the case changed meanwhile only by the system (a card the scheduler issued at
    /// that moment), the action is worked out again on the new case: the handler acted on
    /// what he saw, and a card changes nothing he decided. Anyone else's change is a
    /// conflict for him to see. (A case the store kept from this node's own commit, which
    /// another node may have changed since, is never what he saw: what fails on it is
    /// worked out again on the case as stored.)
    pub(crate) fn act(
        &self,
        actor: &Actor,
        task_id: &str,
        action: &str,
        comment: Option<String>,
        f: impl Fn(&mut Flow, &Task) -> Result<Option<String>>,
    ) -> Result<Committed> {
        let mut tries = 0;
        // The first read may come from the store's cache, which another node's commit may
        // have left behind: whatever fails on a cached case is tried again on the case as
        // stored, so that only the case as stored can refuse.
        let mut cached_first = true;
        loop {
            let (case, cached) = if cached_first {
                self.store.case_to_change(task_case_id(task_id)?)?
            } else {
                (self.store.case(task_case_id(task_id)?)?, false)
            };
            cached_first = false;
            let acted = self
                .task_in(actor, case, task_id)
                .map(|(case, task, on_behalf)| {
                    let (case_id, seen) = (case.id, case.history_len);
                    let done =
                        self.act_full(actor, case, task, action, comment.clone(), on_behalf, &f);
                    (case_id, seen, done)
                });
            let (case_id, seen, done) = match acted {
                Err(_) if cached => continue,
                Err(e) => return Err(e),
                Ok(acted) => acted,
            };
            match done {
                Err(_) if cached => {}
                Err(Error::Conflict(_)) if tries < 3 && self.moved_by_system(case_id, seen)? => {
                    tries += 1;
                }
                done => {
                    return done.inspect_err(|e| {
                        self.incident(e, actor, action, Some(case_id), Some(task_id))
                    })
                }
            }
        }
    }

    /// Whether every event of the case after the first `seen` was the system's own.
    fn moved_by_system(&self, case_id: u64, seen: u64) -> Result<bool> {
        let history = self.history(case_id)?;
        let newer = history.iter().skip(seen as usize);
        Ok(history.len() as u64 > seen && newer.into_iter().all(|e| e.actor == "scheduler"))
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
                t.claimed_by = Some(me.clone());
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
            let take_back = crate::takeback::TakeBack::before(&flow.case, task, &me);
            flow.merge(data.clone());
            flow.complete_task(&task.id, &me, outcome, c.clone())?;
            if task.external.is_none() {
                flow.case.take_back = take_back.after(&flow.case);
            }
            Ok(Some(outcome.to_string()))
        })
    }

    /// 加签: a signer of a countersign step adds another member of its group as a signer,
    /// while the step is open. Recorded with who added whom.
    pub fn add_signer(
        &self,
        actor: &Actor,
        task_id: &str,
        staff: &str,
        comment: Option<String>,
    ) -> Result<Committed> {
        let staff = staff.trim().to_string();
        self.act(actor, task_id, "signer_added", comment, |flow, task| {
            flow.add_signer(task, &staff)?;
            Ok(Some(format!("signer:{staff}")))
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
                t.completed_by = Some(me.clone());
                t.outcome = Some(format!("return:{to}"));
                t.comment = c.clone();
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
            move_task(flow, task, group.clone(), staff.clone())
        })
    }
}

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
