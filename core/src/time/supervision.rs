//! Supervision (督办): timers that fall due issue supervision cards at warning thresholds
//! and overdue cards (escalations) at the end of a limit; staff list and answer cards.
//!
//! Exactly once: a timer is removed only after the card it issued is committed with its
//! case, and a card's id is derived from its timer, so a timer that fires again after a
//! crash finds its card and does nothing. A timer whose limit ended (step completed, case
//! closed) or moved (clock stopped and resumed) does nothing either.

use serde::Serialize;

use crate::case::{Card, CardAnswer, CardKind, Case, Effect, HistoryEvent, Limit, Timer};
use crate::engine::{Actor, Committed, Engine};
use crate::error::{Error, Result};
use crate::store::TimerGroup;

/// Due timer groups from which a pass fires on several threads.
const PARALLEL_FROM: usize = 64;
/// At most this many threads fire timers at once.
const MAX_LANES: usize = 4;

/// What one pass of the scheduler did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FireReport {
    /// Timer groups taken from the index (at most the pass's `max`).
    pub groups: usize,
    /// Timers fired (whether or not they issued a card).
    pub timers: usize,
    /// Cards issued.
    pub cards: usize,
    /// Pass to `Engine::durable` before reporting the cards anywhere.
    #[serde(skip)]
    pub ticket: u64,
}

/// A card with what a supervisor needs to see of its case.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CardItem {
    #[serde(flatten)]
    pub card: Card,
    pub case_id: u64,
    pub case_number: String,
    pub procedure: String,
    pub procedure_name: String,
}

impl Engine {
    /// When the next timer falls due, if any.
    pub fn next_timer(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        self.store().next_timer()
    }

    /// Fires every timer due now from at most `max` timer groups (the timers one
    /// transition set): each case's timers in time order, different cases on all cores.
    pub fn fire_due_timers(&self, max: usize) -> Result<FireReport> {
        let _pass = self.firing.lock();
        let now = self.now();
        let groups = self.store().due_timers(now, max)?;
        // A burst (many limits ending at midnight) is worth more threads than one. A
        // case's groups all go to one lane, so its timers fire in order, never conflict
        // with each other, and the lane settles the groups it fired.
        let lanes = if groups.len() < PARALLEL_FROM {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_LANES))
        };
        let mut parts: Vec<Vec<&TimerGroup>> = vec![Vec::new(); lanes];
        for group in &groups {
            let case = group.timers.first().map_or(0, |t| t.case);
            parts[(case % lanes as u64) as usize].push(group);
        }
        let reports: Vec<Result<FireReport>> = if parts.len() == 1 {
            parts.iter().map(|part| self.fire_lane(now, part)).collect()
        } else {
            std::thread::scope(|scope| {
                let running: Vec<_> = parts
                    .iter()
                    .map(|part| scope.spawn(move || self.fire_lane(now, part)))
                    .collect();
                running
                    .into_iter()
                    .map(|lane| {
                        lane.join()
                            .unwrap_or_else(|_| Err(Error::Store("a timer lane panicked".into())))
                    })
                    .collect()
            })
        };
        let mut report = FireReport {
            groups: groups.len(),
            ..FireReport::default()
        };
        for lane in reports {
            let lane = lane?;
            report.timers += lane.timers;
            report.cards += lane.cards;
            report.ticket = report.ticket.max(lane.ticket);
        }
        metrics::counter!("guichet_timers_fired_total").increment(report.timers as u64);
        if report.cards > 0 {
            metrics::counter!("guichet_cards_issued_total").increment(report.cards as u64);
            tracing::info!(message = "supervision cards issued", cards = report.cards);
        }
        Ok(report)
    }

    /// Fires the due timers of `groups` oldest first, then settles each group: what did
    /// not fall due, and a timer kept because its case changed meanwhile together with
    /// the group's later timers (so a group still fires in order), wait for a later pass.
    fn fire_lane(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        groups: &[&TimerGroup],
    ) -> Result<FireReport> {
        let mut due: Vec<(usize, usize)> = groups
            .iter()
            .enumerate()
            .flat_map(|(g, group)| {
                group
                    .timers
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.at <= now)
                    .map(move |(i, _)| (g, i))
            })
            .collect();
        // In time order across groups, not group by group.
        due.sort_by_key(|&(g, i)| groups[g].timers[i].at);
        let mut report = FireReport::default();
        let mut kept: Vec<Option<usize>> = vec![None; groups.len()];
        for (g, i) in due {
            if kept[g].is_some() {
                continue;
            }
            let timer = &groups[g].timers[i];
            metrics::histogram!("guichet_timer_lateness_seconds")
                .record((now - timer.at).num_milliseconds().max(0) as f64 / 1000.0);
            match self.fire(timer) {
                Ok(Some(ticket)) => {
                    report.cards += 1;
                    report.ticket = report.ticket.max(ticket);
                }
                Ok(None) => {}
                // Someone changed the case meanwhile: keep the timer for the next pass.
                Err(Error::Conflict(_)) => {
                    kept[g] = Some(i);
                    continue;
                }
                Err(e) => {
                    tracing::error!(message = "timer failed; dropped", case = timer.case, error = %e)
                }
            }
            report.timers += 1;
        }
        for (group, kept) in groups.iter().zip(kept) {
            let pending: Vec<Timer> = group
                .timers
                .iter()
                .enumerate()
                .filter(|&(i, t)| t.at > now || kept.is_some_and(|k| i >= k))
                .map(|(_, t)| t.clone())
                .collect();
            self.store().settle_timers(group, &pending)?;
        }
        Ok(report)
    }

    fn fire(&self, t: &Timer) -> Result<Option<u64>> {
        let Some(case) = self.store().case(t.case)? else {
            return Ok(None);
        };
        if t.limit == Limit::Commitment {
            return self.commitment_due(case, t);
        }
        // While the clock is stopped nothing is late; resuming sets new timers.
        if !case.status.is_open() || case.clock_stop.is_some() {
            return Ok(None);
        }
        let live = match t.limit {
            Limit::Step => case
                .tokens
                .iter()
                .any(|k| Some(k.id) == t.token && k.due == Some(t.limit_due)),
            Limit::Promised => case.promised_due == Some(t.limit_due),
            Limit::Statutory => case.statutory_due == Some(t.limit_due),
            Limit::Commitment => false,
        };
        let card_id = t.card_id();
        if !live || case.cards.iter().any(|c| c.id == card_id) {
            return Ok(None);
        }
        let proc = self.procedure_of(&case)?;
        // A limit of the case is held by its steps' tasks; a step's (the intake's
        // included) by that step's.
        let tasks: Vec<_> = case
            .open_tasks()
            .filter(|k| match t.token {
                None => k.step != crate::procedure::INTAKE_STEP,
                Some(token) => k.token == token,
            })
            .collect();
        let mut holders: Vec<String> = tasks.iter().map(|k| k.group.clone()).collect();
        holders.sort();
        holders.dedup();
        let mut assignees: Vec<String> = tasks.iter().filter_map(|k| k.assignee.clone()).collect();
        assignees.sort();
        assignees.dedup();
        let breach = t.threshold == "breach";
        let step = t
            .token
            .and_then(|id| case.tokens.iter().find(|k| k.id == id))
            .map(|k| k.step.clone());
        // A step's own policy names its supervisor and escalation, else the procedure's.
        let policy = proc.warnings_for(step.as_deref());
        let supervisor = if breach {
            policy.escalate_to.clone().or(policy.supervisor.clone())
        } else {
            policy.supervisor.clone()
        };
        let card = Card {
            id: card_id.clone(),
            kind: if breach {
                CardKind::Overdue
            } else {
                CardKind::Supervision
            },
            limit: t.limit,
            step: step.clone(),
            threshold: t.threshold.clone(),
            due: t.limit_due,
            issued_at: self.now(),
            holders,
            assignees,
            supervisor,
            answer: None,
        };
        let mut after = case.clone();
        after.cards.push(card);
        let lapsed = breach
            && step.as_deref() == Some(crate::procedure::INTAKE_STEP)
            && proc
                .intake_limit
                .as_ref()
                .is_some_and(|l| l.lapse == crate::procedure::Lapse::Accept);
        if lapsed {
            return self.accept_by_lapse(case, after, t, card_id).map(Some);
        }
        let what = match t.limit {
            Limit::Step => format!("step '{}' budget", step.as_deref().unwrap_or_default()),
            Limit::Promised => "promised limit".into(),
            Limit::Statutory => "statutory limit".into(),
            Limit::Commitment => "commitment".into(),
        };
        let event = HistoryEvent {
            step,
            comment: Some(if breach {
                format!("{what} passed (due {})", t.limit_due)
            } else {
                format!("{what}: warning at {} (due {})", t.threshold, t.limit_due)
            }),
            effects: vec![Effect::CardIssued { card: card_id }],
            ..HistoryEvent::new(
                self.now(),
                "scheduler",
                if breach { "overdue" } else { "card_issued" },
            )
        };
        Ok(Some(self.commit_change(case, after, event, vec![])?.ticket))
    }

    /// The intake limit passed and the procedure says the application then counts as
    /// accepted from its receipt: the overdue card and the acceptance in one commit.
    fn accept_by_lapse(&self, case: Case, after: Case, t: &Timer, card: String) -> Result<u64> {
        let proc = self.procedure_of(&case)?;
        let rules = self.rules();
        let mut flow = crate::flow::Flow::new(&proc, &rules, after, self.now());
        flow.accept_by_lapse(t.token.unwrap_or_default())?;
        let mut effects = vec![Effect::CardIssued { card }];
        effects.extend(flow.effects);
        let event = HistoryEvent {
            step: Some(crate::procedure::INTAKE_STEP.into()),
            outcome: Some("accept".into()),
            comment: Some(format!(
                "the intake limit passed ({}): the application counts as accepted from its receipt",
                t.limit_due
            )),
            effects,
            data_changed: flow.data_changed,
            ..HistoryEvent::new(flow.now, "scheduler", "accepted_by_lapse")
        };
        Ok(self
            .commit_change(case, flow.case, event, flow.timers)?
            .ticket)
    }

    /// A promise made at an acceptance with commitment fell due: if the items are still
    /// missing, the case ends as terminated.
    fn commitment_due(&self, case: Case, t: &Timer) -> Result<Option<u64>> {
        let open = case.status.is_open()
            && case
                .commitment
                .as_ref()
                .is_some_and(|c| c.due == t.limit_due);
        if !open {
            return Ok(None);
        }
        let items = case
            .commitment
            .as_ref()
            .map(|c| c.items.join("; "))
            .unwrap_or_default();
        let proc = self.procedure_of(&case)?;
        let rules = self.rules();
        let mut flow = crate::flow::Flow::new(&proc, &rules, case.clone(), self.now());
        flow.close(crate::case::CaseStatus::Terminated);
        let event = HistoryEvent {
            comment: Some(format!("commitment not kept by {}: {items}", t.limit_due)),
            effects: flow.effects,
            ..HistoryEvent::new(flow.now, "scheduler", "terminated")
        };
        Ok(Some(
            self.commit_change(case, flow.case, event, vec![])?.ticket,
        ))
    }

    /// Cards addressed to the caller's groups (every card for the administrator).
    pub fn cards(&self, actor: &Actor, answered: Option<bool>) -> Result<Vec<CardItem>> {
        let rules = self.rules();
        let groups: Vec<String> = match actor {
            Actor::Admin => rules.groups.keys().cloned().collect(),
            Actor::Staff(s) => {
                // Cards reach a group's members and its supervisors.
                let mut g = rules.groups_of(s);
                g.extend(rules.supervised_by(s));
                g.sort();
                g.dedup();
                g
            }
            Actor::Applicant(_) | Actor::Public => {
                return Err(Error::Forbidden("a staff token is required".into()))
            }
        };
        let mut cases: Vec<u64> = Vec::new();
        for g in &groups {
            cases.extend(self.store().cases_with_cards_for(g)?);
        }
        cases.sort_unstable();
        cases.dedup();
        let mut out = Vec::new();
        for case_id in cases {
            let Some(case) = self.store().case(case_id)? else {
                continue;
            };
            for card in &case.cards {
                if !card.addressed_to().any(|a| groups.iter().any(|g| g == a)) {
                    continue;
                }
                if answered.is_some_and(|a| a != card.answer.is_some()) {
                    continue;
                }
                out.push(CardItem {
                    card: card.clone(),
                    case_id,
                    case_number: case.number.clone(),
                    procedure: case.procedure.clone(),
                    procedure_name: case.procedure_name.clone(),
                });
            }
        }
        out.sort_by_key(|a| a.card.issued_at);
        Ok(out)
    }

    /// Whether `staff` answers `card`: a member or supervisor of a holder group or of its
    /// supervisor group.
    pub(crate) fn may_answer(&self, staff: &str, card: &crate::case::Card) -> bool {
        let rules = self.rules();
        card.holders
            .iter()
            .chain(&card.supervisor)
            .any(|g| rules.is_member(staff, g) || rules.supervises(staff, g))
    }

    /// A holder or supervisor answers a card with the reason for the delay.
    pub fn answer_card(
        &self,
        actor: &Actor,
        case_id: u64,
        card_id: &str,
        reason: &str,
    ) -> Result<Committed> {
        let Actor::Staff(me) = actor else {
            return Err(Error::Forbidden("cards are answered by staff".into()));
        };
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 4000 {
            return Err(Error::Validation(
                "a reason is required (at most 4000 bytes)".into(),
            ));
        }
        let case: Case = self.case(case_id)?;
        let card = case.cards.iter().find(|c| c.id == card_id).ok_or_else(|| {
            Error::NotFound(format!("card {card_id} not found on case {}", case.number))
        })?;
        if !self.may_answer(me, card) {
            return Err(Error::Forbidden(
                "only the holders and the supervisor group answer a card".into(),
            ));
        }
        if card.answer.is_some() {
            return Err(Error::Conflict(format!(
                "card {card_id} is already answered"
            )));
        }
        let mut after = case.clone();
        for c in after.cards.iter_mut().filter(|c| c.id == card_id) {
            c.answer = Some(CardAnswer {
                by: me.clone(),
                at: self.now(),
                reason: reason.to_string(),
            });
        }
        let event = HistoryEvent {
            step: card.step.clone(),
            comment: Some(reason.to_string()),
            ..HistoryEvent::new(self.now(), me.clone(), "card_answered")
        };
        self.commit_change(case, after, event, vec![])
    }
}
