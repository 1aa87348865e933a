//! One case's contribution to the office's statistics ([`CaseFigures`]): when it was
//! received, accepted and closed and how, the working days it took against its limits,
//! and the dated events the figures count (supplements asked, extensions, cards, each
//! step's working time). Kept with the case, rewritten by every commit that changes it,
//! so the figures follow the cases without ever scanning them.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::case::{Case, CaseStatus, Effect, HistoryEvent, Task, TaskState};
use crate::procedure::Procedure;

/// How long one task of a step took, in working minutes, and the day it was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTime {
    pub step: String,
    pub group: String,
    pub day: NaiveDate,
    pub minutes: u64,
}

/// A closed case's end: its status and the local day it closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closing {
    pub status: CaseStatus,
    pub day: NaiveDate,
}

/// A decided case's time against its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// Working days from acceptance to decision, the days its clock stood still excluded.
    pub days: u32,
    /// The promised limit (承诺时限) in working days.
    pub promised: u32,
    /// The statutory limit (法定时限) in working days, an extension included.
    pub statutory: u32,
    /// Decided by the promised date (moved by the clock's stops, as the case showed it).
    pub on_time_promised: bool,
    pub on_time_statutory: bool,
}

/// What one case adds to the figures. Dates are the office's local dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseFigures {
    pub procedure: String,
    pub department: String,
    pub received: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplements: Vec<NaiveDate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<NaiveDate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cards_issued: Vec<NaiveDate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cards_answered: Vec<NaiveDate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepTime>,
    /// The applicant's rating: the day given and the score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<(NaiveDate, u8)>,
}

impl CaseFigures {
    /// The groups that did the case's work (completed a task of one of its steps, not a
    /// rating's follow-up): whom its rating is counted for.
    pub fn worked_by(&self) -> Vec<&str> {
        let mut g: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| s.step != crate::rating::FOLLOW_UP_STEP)
            .map(|s| s.group.as_str())
            .collect();
        g.sort_unstable();
        g.dedup();
        g
    }
}

impl CaseFigures {
    /// The figures of `after`, the case as `event` left it, from those it had before
    /// (`None` for a new case). `closed` are the tasks the event closed.
    pub fn next(
        before: Option<&CaseFigures>,
        after: &Case,
        event: &HistoryEvent,
        closed: &[&Task],
        proc: &Procedure,
        cal: &Calendar,
    ) -> CaseFigures {
        let mut f = match before {
            Some(b) => b.clone(),
            None => CaseFigures::empty(after, cal),
        };
        f.set_case(after, proc, cal);
        f.add_event(event, cal);
        f.add_steps(closed.iter().copied(), cal);
        f
    }

    /// The figures of a case worked out again from its whole history (`guichet stats
    /// rebuild`, or a store written before figures were kept).
    pub fn rebuild(
        case: &Case,
        history: &[HistoryEvent],
        closed: &[Task],
        proc: &Procedure,
        cal: &Calendar,
    ) -> CaseFigures {
        let mut f = CaseFigures::empty(case, cal);
        f.set_case(case, proc, cal);
        for e in history {
            f.add_event(e, cal);
        }
        f.add_steps(closed.iter(), cal);
        f
    }

    fn empty(case: &Case, cal: &Calendar) -> CaseFigures {
        CaseFigures {
            procedure: case.procedure.clone(),
            department: case.department.clone(),
            received: cal.local_date(case.submitted_at),
            accepted: None,
            closed: None,
            timing: None,
            supplements: Vec::new(),
            extensions: Vec::new(),
            cards_issued: Vec::new(),
            cards_answered: Vec::new(),
            steps: Vec::new(),
            rating: None,
        }
    }

    /// What the case record says: acceptance, closing, and a decision's timing. A closed
    /// case's record no longer changes these, so a rebuild from the final record finds
    /// what the commits found.
    fn set_case(&mut self, c: &Case, proc: &Procedure, cal: &Calendar) {
        self.accepted = c.accepted_at.map(|t| cal.local_date(t));
        self.rating = c.rating.as_ref().map(|r| (cal.local_date(r.at), r.score));
        self.closed = match (c.status.is_open(), c.decided_at) {
            (false, Some(at)) => Some(Closing {
                status: c.status,
                day: cal.local_date(at),
            }),
            _ => None,
        };
        let decided = matches!(c.status, CaseStatus::Approved | CaseStatus::Rejected);
        self.timing = match (decided, c.accepted_at, c.decided_at) {
            (true, Some(from), Some(to)) => {
                let stopped: u32 = c.clock_stops.iter().map(|s| s.days).sum();
                Some(Timing {
                    days: cal.working_days_between(from, to).saturating_sub(stopped),
                    promised: proc.limits_of(c).0,
                    statutory: proc.limits_of(c).1 + c.extension.as_ref().map_or(0, |x| x.days),
                    on_time_promised: c.promised_due.is_none_or(|due| to <= due),
                    on_time_statutory: c.statutory_due.is_none_or(|due| to <= due),
                })
            }
            _ => None,
        };
    }

    fn add_event(&mut self, e: &HistoryEvent, cal: &Calendar) {
        let day = cal.local_date(e.at);
        match e.action.as_str() {
            "supplement_requested" => self.supplements.push(day),
            "extended" => self.extensions.push(day),
            "card_answered" => self.cards_answered.push(day),
            _ => {}
        }
        for fx in &e.effects {
            if let Effect::CardIssued { .. } = fx {
                self.cards_issued.push(day);
            }
        }
    }

    fn add_steps<'a>(&mut self, closed: impl Iterator<Item = &'a Task>, cal: &Calendar) {
        for t in closed {
            let (TaskState::Completed, Some(done)) = (t.state, t.completed_at) else {
                continue;
            };
            self.steps.push(StepTime {
                step: t.step.clone(),
                group: t.group.clone(),
                day: cal.local_date(done),
                minutes: cal.working_minutes_between(t.created_at, done),
            });
        }
    }
}
