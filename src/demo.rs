//! `guichet demo`: a year (or any number of days) of the example office on a simulated
//! clock, written into a fresh data folder, so that a newcomer sees an office with a
//! history: applications arriving on working days (more on Mondays), the window accepting
//! or refusing them, staff handling each step after a realistic delay (some slow, some
//! late), supplements asked and answered, returns, withdrawals, external checks, cards and
//! their answers, ratings and the follow-ups of the low ones. Every action goes through
//! the same engine calls as the API; the statistics are then what the office would show.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Utc};
use guichet_core::case::{Applicant, Case, CaseStatus, Data, MaterialRef, Task};
use guichet_core::clock::{Clock, ManualClock};
use guichet_core::engine::Submission;
use guichet_core::procedure::{FieldType, Procedure, INTAKE_STEP};
use guichet_core::rating::{RatingRequest, FOLLOW_UP_STEP};
use guichet_core::{Actor, Engine};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How much of a year, how busy, which randomness.
#[derive(Debug, Clone)]
pub struct DemoPlan {
    /// Calendar days simulated, ending yesterday.
    pub days: u32,
    /// Arrivals per procedure and working day, on average (before the weekday pattern).
    pub per_day: f64,
    pub seed: u64,
}

impl Default for DemoPlan {
    fn default() -> Self {
        DemoPlan {
            days: 365,
            per_day: 1.2,
            seed: 2026,
        }
    }
}

/// What a demo did.
#[derive(Debug, Default, Clone)]
pub struct DemoReport {
    pub cases: u64,
    pub actions: u64,
    /// Actions the engine refused (a task another branch had closed, a case withdrawn
    /// meanwhile): the simulation goes on, as staff would.
    pub refused: u64,
    pub cards: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrive(String),
    Act(u64, String),
    Supply(u64),
    Withdraw(u64),
    Rate(u64),
    AnswerCard(u64, String),
}

/// The simulation: the engine, its clock, the queue of what happens next.
struct Sim<'a> {
    e: &'a Engine,
    clock: &'a ManualClock,
    rng: StdRng,
    queue: BinaryHeap<Reverse<(DateTime<Utc>, u64, Event)>>,
    seq: u64,
    /// Tasks and cards already scheduled (each is acted on once).
    scheduled: HashSet<String>,
    report: DemoReport,
}

/// Runs the demo on `e`, whose clock is `clock`, set to the first simulated day.
pub fn run(e: &Engine, clock: &ManualClock, plan: &DemoPlan) -> guichet_core::Result<DemoReport> {
    let mut sim = Sim {
        e,
        clock,
        rng: StdRng::seed_from_u64(plan.seed),
        queue: BinaryHeap::new(),
        seq: 0,
        scheduled: HashSet::new(),
        report: DemoReport::default(),
    };
    let rules = e.rules();
    let cal = &rules.calendar;
    let first = cal.local_date(clock.now());
    let mut procedures: Vec<&Arc<Procedure>> = rules.procedures.values().collect();
    procedures.sort_by(|a, b| a.id.cmp(&b.id));
    let mut last_timers = clock.now();
    for offset in 0..plan.days {
        let day = first + Duration::days(i64::from(offset));
        if cal.is_working_day(day) {
            // Mondays are busiest, Fridays quietest.
            let weekday = [1.4, 1.1, 1.0, 0.95, 0.75, 0.5, 0.5]
                [day.weekday().num_days_from_monday() as usize];
            for p in &procedures {
                let n = sim.poisson(plan.per_day * weekday);
                for _ in 0..n {
                    let minute = sim.rng.random_range(0..480);
                    let at = cal.opening_of(day) + Duration::minutes(minute);
                    sim.push(at, Event::Arrive(p.id.clone()));
                }
            }
        }
        let end = cal.opening_of(day + Duration::days(1));
        while let Some(Reverse((at, _, _))) = sim.queue.peek() {
            if *at >= end {
                break;
            }
            let Some(Reverse((at, _, event))) = sim.queue.pop() else {
                break;
            };
            if at > clock.now() {
                clock.advance(at - clock.now());
            }
            // Timers fire as the scheduler would, every quarter of an hour at most.
            if clock.now() - last_timers >= Duration::minutes(15) {
                sim.report.cards += e.fire_due_timers(10_000)?.cards as u64;
                last_timers = clock.now();
            }
            sim.handle(event);
        }
        if end > clock.now() {
            clock.advance(end - clock.now());
        }
        sim.report.cards += e.fire_due_timers(10_000)?.cards as u64;
        last_timers = clock.now();
    }
    Ok(sim.report)
}

impl Sim<'_> {
    fn push(&mut self, at: DateTime<Utc>, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, e)));
    }

    fn poisson(&mut self, mean: f64) -> u32 {
        // Knuth's method: few arrivals a day, so the loop is short.
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.rng.random::<f64>();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    /// `minutes` working minutes from now, inside office hours.
    fn later(&self, minutes: u32) -> DateTime<Utc> {
        self.e
            .rules()
            .calendar
            .add_working_hours(self.clock.now(), minutes)
    }

    fn handle(&mut self, event: Event) {
        let done = match event {
            Event::Arrive(p) => self.arrive(&p),
            Event::Act(case, task) => self.act(case, &task),
            Event::Supply(case) => self.supply(case),
            Event::Withdraw(case) => self.withdraw(case),
            Event::Rate(case) => self.rate(case),
            Event::AnswerCard(case, card) => self.answer_card(case, &card),
        };
        match done {
            Ok(Some(case)) => {
                self.report.actions += 1;
                self.follow(&case);
            }
            Ok(None) => {}
            Err(e) => {
                self.report.refused += 1;
                tracing::debug!(message = "demo action refused", error = %e);
            }
        }
    }

    /// Schedules what comes next for a case as it now is.
    fn follow(&mut self, case: &Case) {
        let open: Vec<Task> = case.open_tasks().cloned().collect();
        for t in open {
            if !self.scheduled.insert(t.id.clone()) {
                continue;
            }
            let minutes = self.handling_minutes(case, &t);
            let at = self.later(minutes);
            self.push(at, Event::Act(case.id, t.id.clone()));
        }
        for card in case.cards.iter().filter(|c| c.answer.is_none()) {
            if self.scheduled.insert(format!("card:{}", card.id)) && self.chance(0.7) {
                let minutes = self.rng.random_range(60..1500);
                let at = self.later(minutes);
                self.push(at, Event::AnswerCard(case.id, card.id.clone()));
            }
        }
        if case.status == CaseStatus::Supplement
            && self
                .scheduled
                .insert(format!("supply:{}:{}", case.id, case.history_len))
        {
            let minutes = self.rng.random_range(300..2000);
            let at = self.later(minutes);
            self.push(at, Event::Supply(case.id));
        }
        if guichet_core::rating::may_be_rated(case)
            && self.scheduled.insert(format!("rate:{}", case.id))
            && self.chance(0.65)
        {
            let minutes = self.rng.random_range(30..2000);
            let at = self.later(minutes);
            self.push(at, Event::Rate(case.id));
        }
    }

    /// How long staff take over a task: most well within the step's days, some slow, a
    /// few past the limit.
    fn handling_minutes(&mut self, case: &Case, t: &Task) -> u32 {
        const DAY: f64 = 510.0;
        if t.step == INTAKE_STEP {
            return self.rng.random_range(10..240);
        }
        if t.external.is_some() {
            return self.rng.random_range(1..30);
        }
        let days = self
            .e
            .procedure_of(case)
            .ok()
            .and_then(|p| p.step(&t.step).and_then(|s| s.days))
            .filter(|d| *d > 0)
            .unwrap_or(if t.step == FOLLOW_UP_STEP { 3 } else { 1 });
        let budget = f64::from(days) * DAY;
        let u = self.rng.random::<f64>();
        // Most well within the step's days; some slow; a few stall for days (a file
        // waiting on someone's desk), which makes cases late.
        let share = if u < 0.8 {
            0.05 + 0.5 * self.rng.random::<f64>()
        } else if u < 0.95 {
            0.55 + 0.45 * self.rng.random::<f64>()
        } else if u < 0.98 {
            1.0 + 1.5 * self.rng.random::<f64>()
        } else {
            3.0 + 4.0 * self.rng.random::<f64>()
        };
        (budget * share).max(5.0) as u32
    }

    fn arrive(&mut self, procedure: &str) -> guichet_core::Result<Option<Case>> {
        let Some(p) = self.e.rules().procedures.get(procedure).cloned() else {
            return Ok(None);
        };
        let n = self.report.cases + 1;
        let company = [
            "Riverside",
            "Harbour",
            "Lotus",
            "Maple",
            "Jade",
            "Summit",
            "Orchard",
            "Pearl",
        ];
        let name = format!("{} {} Co.", company[(n % 8) as usize], n);
        let sub = Submission {
            procedure: p.id.clone(),
            applicant: Applicant {
                id: format!("91310000DEMO{n:06}"),
                name,
                phone: Some(format!("139{n:08}")),
                email: None,
                language: Some(if self.chance(0.7) { "zh" } else { "en" }.into()),
            },
            data: self.form_data(&p),
            materials: p
                .materials
                .iter()
                .filter(|m| m.required)
                .map(|m| MaterialRef {
                    id: m.id.clone(),
                    file: format!(
                        "{}.{}",
                        m.id,
                        m.formats.first().map_or("pdf", String::as_str)
                    ),
                    sha256: None,
                    size: None,
                })
                .collect(),
        };
        // A third at the window, the rest online.
        let actor = if self.chance(0.33) {
            self.member(&p.intake).map_or(Actor::Public, Actor::Staff)
        } else {
            Actor::Public
        };
        let case = self.e.submit(&actor, sub)?.cases.remove(0);
        self.report.cases += 1;
        if self.chance(0.02) {
            let minutes = self.rng.random_range(60..3000);
            let at = self.later(minutes);
            self.push(at, Event::Withdraw(case.id));
        }
        Ok(Some(case))
    }

    /// Answers an applicant would give to the procedure's form.
    fn form_data(&mut self, p: &Procedure) -> Data {
        let mut data = Data::new();
        for f in p.fields.iter().filter(|f| !f.internal) {
            let clamp = |v: f64| {
                v.max(f.min.unwrap_or(f64::MIN))
                    .min(f.max.unwrap_or(f64::MAX))
            };
            let v = match f.kind {
                FieldType::String | FieldType::Text => {
                    let candidates = [
                        "91310000MA1FL0001X",
                        "110101199003074578",
                        "SH204518",
                        "DEMO-0001",
                    ];
                    match &f.regex {
                        Some(re) => match candidates.iter().find(|c| re.is_match(c)) {
                            Some(c) => serde_json::json!(c),
                            None => continue,
                        },
                        None => serde_json::json!(format!("Demo {}", f.label)),
                    }
                }
                FieldType::Integer => {
                    serde_json::json!(clamp(f64::from(self.rng.random_range(1..200u32))) as i64)
                }
                FieldType::Number => {
                    serde_json::json!(clamp(f64::from(self.rng.random_range(50..1500u32))))
                }
                FieldType::Boolean => serde_json::json!(self.chance(0.5)),
                FieldType::Date => serde_json::json!(self
                    .e
                    .rules()
                    .calendar
                    .local_date(self.clock.now())
                    .to_string()),
                FieldType::Enum => {
                    let i = self.rng.random_range(0..f.values.len().max(1));
                    match f.values.get(i) {
                        Some(v) => serde_json::json!(v),
                        None => continue,
                    }
                }
            };
            data.insert(f.id.clone(), v);
        }
        data
    }

    /// The staff fields a step's handler fills in, where the procedure requires them.
    fn staff_data(p: &Procedure) -> Data {
        let mut data = Data::new();
        for f in p.fields.iter().filter(|f| f.internal && f.required) {
            let v = match f.kind {
                FieldType::Integer => serde_json::json!(f.min.unwrap_or(1.0) as i64),
                FieldType::Number => serde_json::json!(f.min.unwrap_or(1.0)),
                FieldType::Boolean => serde_json::json!(true),
                FieldType::Enum => serde_json::json!(f.values.first()),
                _ => serde_json::json!("DEMO"),
            };
            data.insert(f.id.clone(), v);
        }
        data
    }

    /// A member of a group (the first; the assignee where a task names one).
    fn member(&self, group: &str) -> Option<String> {
        self.e
            .rules()
            .groups
            .get(group)
            .and_then(|g| g.members.first().cloned())
    }

    fn act(&mut self, case_id: u64, task_id: &str) -> guichet_core::Result<Option<Case>> {
        let case = self.e.case(case_id)?;
        let Some(task) = case.task(task_id).filter(|t| t.is_open()).cloned() else {
            return Ok(None);
        };
        let p = self.e.procedure_of(&case)?;
        if let Some(ext) = &task.external {
            let worker = "demo-worker";
            let (locked, _) = self.e.fetch_for_plugin(
                worker,
                std::slice::from_ref(&ext.topic),
                100,
                Duration::minutes(5),
            )?;
            let mut last = None;
            for job in locked {
                let mut data = Data::new();
                if p.field("credit_rating").is_some() {
                    data.insert("credit_rating".into(), serde_json::json!("A"));
                }
                last = Some(
                    self.e
                        .complete_for_plugin(worker, &job.job.task, None, data)?
                        .cases
                        .remove(0),
                );
            }
            return Ok(last);
        }
        let who = task
            .assignee
            .clone()
            .or_else(|| self.member(&task.group))
            .ok_or_else(|| guichet_core::Error::Validation(format!("no one in {}", task.group)))?;
        let actor = Actor::Staff(who);
        if task.claimed_by.is_none() {
            self.e.claim(&actor, task_id)?;
        }
        if task.step == INTAKE_STEP {
            let u = self.rng.random::<f64>();
            if u < 0.05 {
                let item = p
                    .materials
                    .first()
                    .map_or("a signed form".to_string(), |m| m.name.clone());
                return Ok(Some(
                    self.e
                        .request_supplement(&actor, task_id, vec![item], None)?
                        .cases
                        .remove(0),
                ));
            }
            let outcome = if u < 0.09 { "reject" } else { "accept" };
            return Ok(Some(
                self.e
                    .complete(&actor, task_id, outcome, None, Data::new())?
                    .cases
                    .remove(0),
            ));
        }
        if task.step == FOLLOW_UP_STEP {
            let (outcome, reply) = if self.chance(0.5) {
                (
                    "resolved",
                    "We reviewed how your case was handled and changed our practice.",
                )
            } else {
                (
                    "explained",
                    "We looked into it; here is why it took the time it did.",
                )
            };
            return Ok(Some(
                self.e
                    .complete(&actor, task_id, outcome, Some(reply.into()), Data::new())?
                    .cases
                    .remove(0),
            ));
        }
        let returns = p
            .step(&task.step)
            .and_then(|s| s.return_to.clone())
            .unwrap_or_default();
        if !returns.is_empty() && self.chance(0.04) {
            let to = returns[0].clone();
            // The step sent back is worked again: it gets a new task.
            return Ok(Some(
                self.e
                    .return_to(&actor, task_id, &to, Some("Please check again.".into()))?
                    .cases
                    .remove(0),
            ));
        }
        let outcome = if self.chance(0.03) {
            "reject"
        } else {
            "approve"
        };
        let done = match self.e.complete(&actor, task_id, outcome, None, Data::new()) {
            Err(guichet_core::Error::Invalid(_)) => {
                self.e
                    .complete(&actor, task_id, outcome, None, Self::staff_data(&p))?
            }
            other => other?,
        };
        Ok(Some(done.cases.into_iter().next().unwrap_or(case)))
    }

    fn supply(&mut self, case_id: u64) -> guichet_core::Result<Option<Case>> {
        let case = self.e.case(case_id)?;
        if case.status != CaseStatus::Supplement {
            return Ok(None);
        }
        let p = self.e.procedure_of(&case)?;
        let materials = p
            .materials
            .iter()
            .take(1)
            .map(|m| MaterialRef {
                id: m.id.clone(),
                file: format!(
                    "{}-v2.{}",
                    m.id,
                    m.formats.first().map_or("pdf", String::as_str)
                ),
                sha256: None,
                size: None,
            })
            .collect();
        // A procedure without materials is answered with the form's first answer again.
        let mut data = Data::new();
        if p.materials.is_empty() {
            if let Some((k, v)) = p
                .fields
                .iter()
                .filter(|f| !f.internal)
                .find_map(|f| case.data.get(&f.id).map(|v| (f.id.clone(), v.clone())))
            {
                data.insert(k, v);
            }
        }
        let done = self
            .e
            .supply(&case.number, &case.query_code, data, materials)?;
        Ok(Some(done.cases.into_iter().next().unwrap_or(case)))
    }

    fn withdraw(&mut self, case_id: u64) -> guichet_core::Result<Option<Case>> {
        let case = self.e.case(case_id)?;
        if !case.status.is_open() {
            return Ok(None);
        }
        let code = case.query_code.clone();
        let done = self.e.withdraw(
            &Actor::Public,
            case_id,
            Some(&code),
            Some("No longer needed.".into()),
        )?;
        Ok(Some(done.cases.into_iter().next().unwrap_or(case)))
    }

    fn rate(&mut self, case_id: u64) -> guichet_core::Result<Option<Case>> {
        let case = self.e.case(case_id)?;
        // Late or refused cases are rated lower.
        let late = case
            .promised_due
            .zip(case.decided_at)
            .is_some_and(|(due, at)| at > due);
        let bad = late || matches!(case.status, CaseStatus::Rejected | CaseStatus::NotAccepted);
        let u = self.rng.random::<f64>();
        let score = match (bad, u) {
            (false, u) if u < 0.62 => 5,
            (false, u) if u < 0.9 => 4,
            (false, u) if u < 0.97 => 3,
            (false, _) => 2,
            (true, u) if u < 0.3 => 4,
            (true, u) if u < 0.6 => 3,
            (true, u) if u < 0.85 => 2,
            (true, _) => 1,
        };
        let request = RatingRequest {
            score,
            tags: Vec::new(),
            comment: (score <= 2).then(|| "It took too long and no one told me why.".to_string()),
        };
        let done = self.e.rate(&Actor::Public, case_id, request)?;
        Ok(Some(done.cases.into_iter().next().unwrap_or(case)))
    }

    fn answer_card(&mut self, case_id: u64, card_id: &str) -> guichet_core::Result<Option<Case>> {
        let case = self.e.case(case_id)?;
        let Some(card) = case
            .cards
            .iter()
            .find(|c| c.id == card_id && c.answer.is_none())
        else {
            return Ok(None);
        };
        let group = card.holders.first().or(card.supervisor.as_ref()).cloned();
        let Some(who) = group.as_deref().and_then(|g| self.member(g)) else {
            return Ok(None);
        };
        let done = self.e.answer_card(
            &Actor::Staff(who),
            case_id,
            card_id,
            "Working on it; done this week.",
        )?;
        Ok(Some(done.cases.into_iter().next().unwrap_or(case)))
    }
}
