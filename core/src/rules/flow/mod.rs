//! Routing: how a case moves through its procedure's steps. Pure with respect to storage:
//! a [`Flow`] takes a copy of the case, applies one action and everything it sets off
//! (steps entered, tasks created, parallel joins, automatic steps, hooks, the decision),
//! and records each consequence as an [`Effect`]. The engine then commits the result in one
//! write, or drops it if anything failed, so a failed action changes nothing.
//! The tasks a step opens are in `tasks`; the clock (stops, limits and their timers) in
//! `clock`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::case::{
    Case, CaseStatus, Data, Effect, External, Limit, StopKind, Task, TaskState, Token,
};
use crate::error::{Error, Result};
use crate::limits::Budget;
use crate::office::RuleSet;
use crate::procedure::{Mode, Procedure, Route, RouteRef, StepKind, Target, INTAKE_STEP};

mod clock;
mod tasks;

type MovedLimit = (Limit, Option<u32>, Budget, DateTime<Utc>, DateTime<Utc>);

/// Steps entered in one transition beyond which routing is taken to loop.
const MAX_STEPS_PER_TRANSITION: u32 = 256;

pub struct Flow<'a> {
    pub proc: &'a Procedure,
    pub rules: &'a RuleSet,
    pub case: Case,
    pub now: DateTime<Utc>,
    pub effects: Vec<Effect>,
    pub data_changed: Data,
    /// Materials this transition received (recorded in its history event).
    pub materials_received: Vec<crate::case::MaterialRef>,
    /// Timers for the limits this transition started.
    pub timers: Vec<crate::case::Timer>,
    entered: u32,
}

impl<'a> Flow<'a> {
    pub fn new(proc: &'a Procedure, rules: &'a RuleSet, case: Case, now: DateTime<Utc>) -> Self {
        Flow {
            proc,
            rules,
            case,
            now,
            effects: Vec::new(),
            data_changed: Data::new(),
            materials_received: Vec::new(),
            timers: Vec::new(),
            entered: 0,
        }
    }

    /// The procedure's compiled script (hooks, automatic steps, conditions).
    fn script(&self) -> Result<std::sync::Arc<crate::script::ProcedureScript>> {
        self.proc
            .script
            .clone()
            .ok_or_else(|| self.script_error("no script".into()))
    }

    /// Calls the script's function `name` on the case as scripts see it.
    fn call(&self, name: &str) -> Result<Value> {
        self.script()?
            .call(name, &self.case_view())
            .map_err(|m| self.script_error(m))
    }

    fn script_error(&self, message: String) -> Error {
        Error::Script {
            procedure: format!("{} ({})", self.proc.id, self.proc.file),
            message,
        }
    }

    /// What scripts see of a case.
    pub fn case_view(&self) -> Value {
        let c = &self.case;
        json!({
            "id": c.id,
            "number": c.number,
            "procedure": c.procedure,
            "status": c.status,
            "applicant": c.applicant,
            "data": c.data,
            "materials": c.materials,
            "visited": c.visited,
            "year": c.submitted_at.format("%Y").to_string(),
        })
    }

    pub fn merge(&mut self, data: Data) {
        for (k, v) in data {
            self.case.data.insert(k.clone(), v.clone());
            self.data_changed.insert(k, v);
        }
    }

    /// Runs a hook; an object it returns is merged into the case data.
    pub fn hook(&mut self, name: Option<&String>) -> Result<()> {
        let Some(name) = name else { return Ok(()) };
        let out = self.call(name)?;
        match out {
            Value::Null => {}
            Value::Object(m) => self.merge(m),
            other => {
                return Err(self.script_error(format!(
                    "hook {name} must return a map of data or nothing, not {other}"
                )))
            }
        }
        self.effects.push(Effect::HookRan { hook: name.clone() });
        Ok(())
    }

    fn resolve(&self, route: &Route) -> Result<Target> {
        match route {
            Route::To(t) => Ok(Target::parse(t)),
            Route::Rules(rules) => {
                let script = self.script()?;
                let applicant = serde_json::to_value(&self.case.applicant).unwrap_or(Value::Null);
                let data = Value::Object(self.case.data.clone());
                for r in rules {
                    let hit = match &r.when {
                        None => true,
                        Some(cond) => script
                            .condition(cond, &data, &applicant)
                            .map_err(|m| self.script_error(m))?,
                    };
                    if hit {
                        return Ok(Target::parse(&r.to));
                    }
                }
                Err(self.script_error("no routing rule matched".into()))
            }
        }
    }

    pub fn follow(&mut self, route: RouteRef<'_>, parent: Option<u32>) -> Result<()> {
        let target = match route {
            RouteRef::Route(r) => self.resolve(r)?,
            RouteRef::Rejected => Target::Rejected,
        };
        self.enter(target, parent)
    }

    fn enter(&mut self, target: Target, parent: Option<u32>) -> Result<()> {
        if !self.case.status.is_open() {
            return Ok(());
        }
        self.entered += 1;
        if self.entered > MAX_STEPS_PER_TRANSITION {
            return Err(
                self.script_error("routing loops: too many steps entered in one action".into())
            );
        }
        match target {
            Target::Approved => self.decide(CaseStatus::Approved),
            Target::Rejected => self.decide(CaseStatus::Rejected),
            Target::Join => self.join(parent),
            Target::Step(id) => self.activate(&id, parent),
        }
    }

    fn new_token(&mut self, step: &str, parent: Option<u32>) -> u32 {
        let id = self.case.next_token;
        self.case.next_token += 1;
        self.case.tokens.push(Token {
            id,
            step: step.to_string(),
            parent,
            pending: 0,
            queue: Vec::new(),
            entered_at: self.now,
            due: None,
        });
        id
    }

    fn token_mut(&mut self, id: u32) -> Option<&mut Token> {
        self.case.tokens.iter_mut().find(|t| t.id == id)
    }

    /// 加签: `staff` signs the countersign step `task` belongs to as well: a task of its own
    /// now (all sign, in any order), or after the signers still waiting (in turn).
    pub(crate) fn add_signer(&mut self, task: &Task, staff: &str) -> Result<()> {
        let step = self
            .proc
            .step(&task.step)
            .ok_or_else(|| Error::Validation(format!("step '{}' takes no signers", task.step)))?;
        // The group the step's tasks went to for this case.
        let group = task.group.clone();
        if !self.rules.is_member(staff, &group) {
            return Err(Error::Validation(format!(
                "'{staff}' is not a member of group '{group}'"
            )));
        }
        let signing = |t: &Task| t.token == task.token && t.is_open();
        let already = self
            .case
            .tasks
            .iter()
            .any(|t| signing(t) && t.assignee.as_deref() == Some(staff))
            || self
                .token_mut(task.token)
                .is_some_and(|t| t.queue.iter().any(|s| s == staff));
        if already {
            return Err(Error::Conflict(format!(
                "'{staff}' already signs this step"
            )));
        }
        match step.mode {
            Mode::All => {
                let name = step.name.clone();
                self.create_task(task.token, &task.step, &name, &group, Some(staff.to_string()));
                Ok(())
            }
            Mode::Sequential => {
                if let Some(t) = self.token_mut(task.token) {
                    t.queue.push(staff.to_string());
                }
                Ok(())
            }
            Mode::Single | Mode::Any => Err(Error::Validation(format!(
                "step '{}' is not a countersign step (mode all or sequential): it takes no added signer",
                step.id
            ))),
        }
    }

    /// Opens the intake task at the window: the case's first task, due by the
    /// procedure's intake limit if it has one.
    pub fn open_intake(&mut self) {
        let token = self.new_token(INTAKE_STEP, None);
        if let Some(limit) = &self.proc.intake_limit {
            let due = self.rules.calendar.deadline(self.now, limit.days);
            if let Some(t) = self.token_mut(token) {
                t.due = Some(due);
            }
            self.set_timers(Limit::Step, Some(token), self.now, limit.days, due);
        }
        let group = self.proc.intake.clone();
        self.create_task(token, INTAKE_STEP, "Intake", &group, None);
    }

    /// The intake limit passed with the lapse `accept`: the application counts as accepted
    /// from its receipt (the intake token's start), the open intake task closed by it.
    pub fn accept_by_lapse(&mut self, token: u32) -> Result<()> {
        let receipt = self
            .case
            .tokens
            .iter()
            .find(|t| t.id == token && t.step == INTAKE_STEP)
            .map(|t| t.entered_at)
            .ok_or_else(|| Error::InvalidTransition("the case is not at intake".into()))?;
        let now = self.now;
        for t in self.case.tasks.iter_mut() {
            if t.token == token && t.is_open() {
                t.state = TaskState::Completed;
                t.completed_at = Some(now);
                t.completed_by = Some("scheduler".into());
                t.outcome = Some("accept".into());
                t.comment =
                    Some("the intake limit passed: accepted by law from the receipt".into());
            }
        }
        self.case.tokens.retain(|t| t.id != token);
        self.accept_from(receipt)
    }

    fn activate(&mut self, id: &str, parent: Option<u32>) -> Result<()> {
        let proc = self.proc;
        let step = proc
            .step(id)
            .ok_or_else(|| self.script_error(format!("route to unknown step '{id}'")))?;
        self.effects.push(Effect::StepEntered {
            step: id.to_string(),
        });
        self.hook(step.on_enter.as_ref())?;
        let token = self.new_token(id, parent);
        // An excluded step while the clock is already stopped (waiting on the applicant, a
        // suspension) leaves that stop in place; it resumes the way it was stopped.
        if !step.counted && self.case.clock_stop.is_none() {
            self.stop_clock(
                StopKind::ExcludedStep,
                &format!("step '{}' is not counted", step.name),
                "engine",
            )?;
        }
        // A step without `days` or `hours` has no budget of its own; only the case's
        // limits apply.
        if let Some(budget) = step.budget() {
            let due = budget.due(&self.rules.calendar, self.now);
            if let Some(t) = self.token_mut(token) {
                t.due = Some(due);
            }
            self.set_timers(Limit::Step, Some(token), self.now, budget, due);
        }
        match step.kind {
            StepKind::Task => {
                let group = self.group_of(step)?;
                let signers = if step.signers.is_empty() {
                    self.rules
                        .groups
                        .get(&group)
                        .map(|g| g.members.clone())
                        .unwrap_or_default()
                } else {
                    step.signers.clone()
                };
                match step.mode {
                    Mode::Single => self.create_task(token, id, &step.name, &group, None),
                    Mode::All | Mode::Any => {
                        if signers.is_empty() {
                            return Err(Error::Validation(format!(
                                "step '{id}': group '{group}' has no one to sign"
                            )));
                        }
                        for s in signers {
                            self.create_task(token, id, &step.name, &group, Some(s));
                        }
                    }
                    Mode::Sequential => {
                        let mut queue = signers.into_iter();
                        let first = queue.next().ok_or_else(|| {
                            Error::Validation(format!(
                                "step '{id}': group '{group}' has no one to sign"
                            ))
                        })?;
                        if let Some(t) = self.token_mut(token) {
                            t.queue = queue.collect();
                        }
                        self.create_task(token, id, &step.name, &group, Some(first));
                    }
                }
                Ok(())
            }
            StepKind::Auto if step.topic.is_some() => {
                let group = step.group.clone().unwrap_or_default();
                self.create_task(token, id, &step.name, &group, None);
                if let Some(t) = self.case.tasks.last_mut() {
                    t.external = Some(External {
                        topic: step.topic.clone().unwrap_or_default(),
                        retries: step.retries,
                        worker: None,
                        lease_until: None,
                        retry_at: None,
                        error: None,
                        incident: false,
                    });
                }
                Ok(())
            }
            StepKind::Auto => {
                let run = step.run.clone().unwrap_or_default();
                let out = self.call(&run)?;
                let (outcome, data) = self.auto_result(&run, out)?;
                self.merge(data);
                self.effects.push(Effect::AutoStepRan {
                    step: id.to_string(),
                    outcome: outcome.clone(),
                });
                self.complete_token(token, &outcome)
            }
            StepKind::Parallel => {
                if let Some(t) = self.token_mut(token) {
                    t.pending = step.branches.len() as u32;
                }
                for b in &step.branches {
                    self.enter(Target::Step(b.clone()), Some(token))?;
                }
                Ok(())
            }
        }
    }

    /// An automatic step returns an outcome name, nothing (approve), or
    /// `#{ outcome: "...", data: #{...} }`.
    fn auto_result(&self, run: &str, out: Value) -> Result<(String, Data)> {
        match out {
            Value::Null => Ok(("approve".into(), Data::new())),
            Value::String(s) => Ok((s, Data::new())),
            Value::Object(mut m) => {
                let outcome = match m.remove("outcome") {
                    None => "approve".to_string(),
                    Some(Value::String(s)) => s,
                    Some(v) => {
                        return Err(
                            self.script_error(format!("{run}: outcome must be text, not {v}"))
                        )
                    }
                };
                let data = match m.remove("data") {
                    None => Data::new(),
                    Some(Value::Object(d)) => d,
                    Some(v) => {
                        return Err(self.script_error(format!("{run}: data must be a map, not {v}")))
                    }
                };
                if let Some(k) = m.keys().next() {
                    return Err(self.script_error(format!(
                        "{run}: unexpected key '{k}' (use outcome and data)"
                    )));
                }
                Ok((outcome, data))
            }
            other => Err(self.script_error(format!(
                "{run} returned {other}; expected an outcome or a map"
            ))),
        }
    }

    fn cancel_tasks_of(&mut self, tokens: &[u32]) {
        for t in self.case.tasks.iter_mut() {
            if t.is_open() && tokens.contains(&t.token) {
                t.state = TaskState::Cancelled;
                t.completed_at = Some(self.now);
                self.effects
                    .push(Effect::TaskCancelled { task: t.id.clone() });
            }
        }
    }

    /// The token and every token below it (branches of parallel steps).
    fn subtree(&self, root: u32) -> Vec<u32> {
        let mut out = vec![root];
        let mut i = 0;
        while i < out.len() {
            let p = out[i];
            out.extend(
                self.case
                    .tokens
                    .iter()
                    .filter(|t| t.parent == Some(p))
                    .map(|t| t.id),
            );
            i += 1;
        }
        out
    }

    fn remove_tokens(&mut self, ids: &[u32]) {
        self.cancel_tasks_of(ids);
        self.case.tokens.retain(|t| !ids.contains(&t.id));
    }

    /// Completes a step instance with an outcome and follows the step's route.
    pub fn complete_token(&mut self, token: u32, outcome: &str) -> Result<()> {
        let tok = self
            .case
            .tokens
            .iter()
            .find(|t| t.id == token)
            .cloned()
            .ok_or_else(|| Error::InvalidTransition("this step is no longer active".into()))?;
        let proc = self.proc;
        let step = proc
            .step(&tok.step)
            .ok_or_else(|| self.script_error(format!("unknown step '{}'", tok.step)))?;
        let route = proc.route_for(step, outcome).ok_or_else(|| {
            Error::Validation(format!(
                "step '{}' has no outcome '{outcome}'; allowed: {}",
                step.id,
                proc.outcomes_of(step).join(", ")
            ))
        })?;
        let sub = self.subtree(token);
        self.remove_tokens(&sub);
        if !step.counted
            && self
                .case
                .clock_stop
                .as_ref()
                .is_some_and(|s| s.kind == StopKind::ExcludedStep)
        {
            self.resume_clock()?;
        }
        self.case.visited.push(step.id.clone());
        self.effects.push(Effect::StepCompleted {
            step: step.id.clone(),
            outcome: outcome.to_string(),
        });
        self.hook(step.on_complete.as_ref())?;
        self.follow(route, tok.parent)
    }

    fn join(&mut self, parent: Option<u32>) -> Result<()> {
        let Some(pid) = parent else {
            return Err(self.script_error("@join outside a parallel branch".into()));
        };
        let Some(p) = self.token_mut(pid) else {
            return Err(self.script_error("parallel step is no longer active".into()));
        };
        p.pending = p.pending.saturating_sub(1);
        let (done, step) = (p.pending == 0, p.step.clone());
        self.effects.push(Effect::BranchJoined { step });
        if done {
            self.complete_token(pid, "approve")
        } else {
            Ok(())
        }
    }

    fn decide(&mut self, status: CaseStatus) -> Result<()> {
        let all: Vec<u32> = self.case.tokens.iter().map(|t| t.id).collect();
        self.remove_tokens(&all);
        self.case.status = status;
        self.case.decided_at = Some(self.now);
        self.effects.push(Effect::Decided { status });
        self.hook(self.proc.hooks.on_decide.as_ref())
    }

    /// Closes the case outside the routing (withdrawal, intake refusal or referral).
    pub fn close(&mut self, status: CaseStatus) {
        let all: Vec<u32> = self.case.tokens.iter().map(|t| t.id).collect();
        self.remove_tokens(&all);
        self.case.status = status;
        self.case.decided_at = Some(self.now);
        self.effects.push(Effect::Decided { status });
    }

    /// A handler completes a task with an outcome. Eligibility and data validation are the
    /// engine's job; this moves the case.
    pub fn complete_task(
        &mut self,
        task_id: &str,
        actor: &str,
        outcome: &str,
        comment: Option<String>,
    ) -> Result<()> {
        let idx = self
            .case
            .tasks
            .iter()
            .position(|t| t.id == task_id)
            .ok_or_else(|| Error::NotFound(format!("task {task_id} not found")))?;
        if self.case.tasks[idx].step == crate::rating::FOLLOW_UP_STEP {
            self.complete_follow_up(outcome, comment.as_ref())?;
        }
        let task = &mut self.case.tasks[idx];
        task.state = TaskState::Completed;
        task.completed_at = Some(self.now);
        task.completed_by = Some(actor.to_string());
        task.claimed_by = Some(actor.to_string());
        task.outcome = Some(outcome.to_string());
        task.comment = comment;
        let (token, step_id) = (task.token, task.step.clone());
        if step_id == crate::rating::FOLLOW_UP_STEP {
            return Ok(());
        }
        if step_id == INTAKE_STEP {
            return self.intake_decision(token, outcome);
        }
        let step = self
            .proc
            .step(&step_id)
            .ok_or_else(|| self.script_error(format!("unknown step '{step_id}'")))?;
        if self.proc.route_for(step, outcome).is_none() {
            return Err(Error::Validation(format!(
                "step '{}' has no outcome '{outcome}'; allowed: {}",
                step.id,
                self.proc.outcomes_of(step).join(", ")
            )));
        }
        if outcome != "approve" {
            return self.complete_token(token, outcome);
        }
        match step.mode {
            Mode::Single | Mode::Any => self.complete_token(token, outcome),
            Mode::All => {
                let others_open = self
                    .case
                    .tasks
                    .iter()
                    .any(|t| t.token == token && t.is_open());
                if others_open {
                    Ok(())
                } else {
                    self.complete_token(token, outcome)
                }
            }
            Mode::Sequential => {
                let next = self.token_mut(token).and_then(|t| {
                    if t.queue.is_empty() {
                        None
                    } else {
                        Some(t.queue.remove(0))
                    }
                });
                match next {
                    Some(who) => {
                        let (name, group) =
                            (step.name.clone(), step.group.clone().unwrap_or_default());
                        self.create_task(token, &step_id, &name, &group, Some(who));
                        Ok(())
                    }
                    None => self.complete_token(token, outcome),
                }
            }
        }
    }

    fn intake_decision(&mut self, token: u32, outcome: &str) -> Result<()> {
        match outcome {
            "accept" => {
                self.case.tokens.retain(|t| t.id != token);
                self.accept()
            }
            "reject" => {
                self.close(CaseStatus::NotAccepted);
                Ok(())
            }
            "refer" => {
                self.close(CaseStatus::Referred);
                Ok(())
            }
            other => Err(Error::Validation(format!(
                "intake outcome '{other}' is not one of: accept, reject, refer"
            ))),
        }
    }

    /// Accepts the case: its limits start now and it goes to its first step.
    pub fn accept(&mut self) -> Result<()> {
        self.accept_from(self.now)
    }

    /// Accepts the case with its limits running from `start` (now, or the receipt when
    /// the intake limit lapsed into an acceptance).
    fn accept_from(&mut self, start: DateTime<Utc>) -> Result<()> {
        self.case.status = CaseStatus::InProgress;
        self.case.accepted_at = Some(start);
        // The clock starts at acceptance; that day itself is not counted.
        self.case_limits()?;
        let (_, statutory_days) = self.proc.limits_of(&self.case);
        let promised_budget = self.proc.promised_budget(&self.case);
        let cal = &self.rules.calendar;
        let promised = promised_budget.due(cal, start);
        let statutory = cal.deadline(start, statutory_days);
        self.case.promised_due = Some(promised);
        self.case.statutory_due = Some(statutory);
        self.set_timers(Limit::Promised, None, start, promised_budget, promised);
        self.set_timers(Limit::Statutory, None, start, statutory_days, statutory);
        self.hook(self.proc.hooks.on_accept.as_ref())?;
        let start = self.proc.start.clone();
        self.follow(RouteRef::Route(&start), None)
    }

    /// Returns the case from a task's step to an earlier step (退回). Everything active
    /// between the two, including sibling branches of a parallel step, is cancelled.
    pub fn return_to(&mut self, task_id: &str, target: &str) -> Result<()> {
        let task = self
            .case
            .task(task_id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("task {task_id} not found")))?;
        if task.step == INTAKE_STEP {
            return Err(Error::InvalidTransition(
                "an intake task cannot return the case".into(),
            ));
        }
        if target == INTAKE_STEP {
            return Err(Error::InvalidTransition(
                "an accepted case cannot return to intake: acceptance is not undone by a return; \
                 to get more from the applicant, ask for a supplement"
                    .into(),
            ));
        }
        if !self.case.visited.iter().any(|v| v == target) {
            return Err(Error::InvalidTransition(format!(
                "step '{target}' has not been passed in this case, so the case cannot return to it"
            )));
        }
        if let Some(allowed) = self
            .proc
            .step(&task.step)
            .and_then(|s| s.return_to.as_ref())
        {
            if !allowed.iter().any(|a| a == target) {
                return Err(Error::InvalidTransition(format!(
                    "step '{}' may only return to: {}",
                    task.step,
                    allowed.join(", ")
                )));
            }
        }
        let target_scope = self.proc.scopes.get(target).cloned().flatten();
        let mut cur = Some(task.token);
        while let Some(tid) = cur {
            let tok = self
                .case
                .tokens
                .iter()
                .find(|t| t.id == tid)
                .cloned()
                .ok_or_else(|| Error::InvalidTransition("this step is no longer active".into()))?;
            let scope = self.proc.scopes.get(&tok.step).cloned().flatten();
            if scope == target_scope {
                let sub = self.subtree(tid);
                self.remove_tokens(&sub);
                return self.enter(Target::Step(target.to_string()), tok.parent);
            }
            cur = tok.parent;
        }
        Err(Error::InvalidTransition(format!(
            "step '{target}' is in another parallel branch; return within the branch or to a step before it"
        )))
    }
}
