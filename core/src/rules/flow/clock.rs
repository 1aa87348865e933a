//! The case's clock as routing moves it: stopping and resuming it (the limits running
//! then move by the time it stood), extending the statutory limit, the timers a limit
//! sets at its warning thresholds and end, and the case's own limits from its hook.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::case::{ClockStop, Effect, Limit, StopKind, Timer};
use crate::error::{Error, Result};
use crate::limits::{Budget, Stopped};

use super::{Flow, MovedLimit};

impl<'a> Flow<'a> {
    /// Stops the case's clock. Only one stop at a time: a stop already running is reported.
    pub fn stop_clock(&mut self, kind: StopKind, reason: &str, by: &str) -> Result<()> {
        if let Some(stop) = &self.case.clock_stop {
            return Err(Error::InvalidTransition(format!(
                "the clock is already stopped since {} ({})",
                stop.since, stop.reason
            )));
        }
        self.case.clock_stop = Some(ClockStop {
            kind,
            reason: reason.to_string(),
            by: by.to_string(),
            since: self.now,
            until: None,
            days: 0,
        });
        self.effects.push(Effect::ClockStopped {
            reason: reason.to_string(),
        });
        Ok(())
    }

    /// Restarts the clock and moves every deadline by the time it was stopped: limits in
    /// days by the working days, step budgets in hours by the working minutes.
    pub fn resume_clock(&mut self) -> Result<u32> {
        let Some(mut stop) = self.case.clock_stop.take() else {
            return Err(Error::InvalidTransition("the clock is running".into()));
        };
        let cal = &self.rules.calendar;
        let days = cal.working_days_between(stop.since, self.now);
        let stopped = Stopped {
            days,
            minutes: u32::try_from(cal.working_minutes_between(stop.since, self.now))
                .unwrap_or(u32::MAX),
        };
        stop.until = Some(self.now);
        stop.days = days;
        self.case.clock_stops.push(stop);
        self.effects.push(Effect::ClockResumed { days });
        if stopped == Stopped::default() {
            return Ok(0);
        }
        // (limit, token, budget, start, new end) of every limit that moved.
        let mut moved: Vec<MovedLimit> = Vec::new();
        if let (Some(start), Some(p), Some(st)) = (
            self.case.accepted_at,
            self.case.promised_due,
            self.case.statutory_due,
        ) {
            let (_, statutory_days) = self.proc.limits_of(&self.case);
            let (promised, statutory) = (
                self.proc.promised_budget(&self.case),
                Budget::Days(statutory_days),
            );
            self.case.promised_due = Some(promised.shift(cal, p, stopped));
            self.case.statutory_due = Some(statutory.shift(cal, st, stopped));
            moved.push((
                Limit::Promised,
                None,
                promised,
                start,
                promised.shift(cal, p, stopped),
            ));
            moved.push((
                Limit::Statutory,
                None,
                statutory,
                start,
                statutory.shift(cal, st, stopped),
            ));
        }
        let mut task_dues = Vec::new();
        for tok in self.case.tokens.iter_mut() {
            if let Some(due) = tok.due {
                let budget = self
                    .proc
                    .step(&tok.step)
                    .and_then(|s| s.budget())
                    .unwrap_or(Budget::Days(0));
                let new_due = budget.shift(cal, due, stopped);
                tok.due = Some(new_due);
                task_dues.push((tok.id, new_due));
                moved.push((Limit::Step, Some(tok.id), budget, tok.entered_at, new_due));
            }
        }
        for t in self.case.tasks.iter_mut() {
            if let Some(due) = t.due {
                // A task's due is its step's (a follow-up's own moves by whole days).
                t.due = Some(match task_dues.iter().find(|(id, _)| *id == t.token) {
                    Some((_, d)) => *d,
                    None => Budget::Days(0).shift(cal, due, stopped),
                });
            }
        }
        // New timers for the moved limits; the old ones no longer match and do nothing.
        for (limit, token, budget, start, due) in moved {
            for (threshold, at) in self.policy(token).thresholds(cal, start, budget) {
                self.timers.push(Timer {
                    at: budget.shift(cal, at, stopped),
                    case: self.case.id,
                    limit,
                    token,
                    threshold,
                    limit_due: due,
                });
            }
            self.timers.push(Timer {
                at: due,
                case: self.case.id,
                limit,
                token,
                threshold: "breach".into(),
                limit_due: due,
            });
        }
        Ok(days)
    }

    /// Extends the statutory limit by `days` working days, with new timers for it.
    pub fn extend_statutory(&mut self, days: u32) -> Result<DateTime<Utc>> {
        let (Some(start), Some(due)) = (self.case.accepted_at, self.case.statutory_due) else {
            return Err(Error::InvalidTransition(
                "the statutory limit starts at acceptance".into(),
            ));
        };
        let cal = &self.rules.calendar;
        let new_due = cal.close_of(cal.add_working_days(cal.local_date(due), days));
        self.case.statutory_due = Some(new_due);
        let budget = self.proc.limits_of(&self.case).1 + days;
        for (threshold, at) in self.proc.warnings.thresholds(cal, start, budget) {
            self.timers.push(Timer {
                at,
                case: self.case.id,
                limit: Limit::Statutory,
                token: None,
                threshold,
                limit_due: new_due,
            });
        }
        self.timers.push(Timer {
            at: new_due,
            case: self.case.id,
            limit: Limit::Statutory,
            token: None,
            threshold: "breach".into(),
            limit_due: new_due,
        });
        Ok(new_due)
    }

    /// Timers for a limit that starts now: one per warning threshold, one at its end.
    /// The warning policy of the limit `token` runs (a step's own, or the procedure's).
    pub(super) fn policy(&self, token: Option<u32>) -> &'a crate::limits::WarningPolicy {
        let step = token
            .and_then(|id| self.case.tokens.iter().find(|t| t.id == id))
            .map(|t| t.step.clone());
        self.proc.warnings_for(step.as_deref())
    }

    pub(super) fn set_timers(
        &mut self,
        limit: Limit,
        token: Option<u32>,
        start: DateTime<Utc>,
        budget: impl Into<Budget>,
        due: DateTime<Utc>,
    ) {
        let thresholds = self
            .policy(token)
            .thresholds(&self.rules.calendar, start, budget);
        for (threshold, at) in thresholds.into_iter().chain([("breach".to_string(), due)]) {
            self.timers.push(Timer {
                at,
                case: self.case.id,
                limit,
                token,
                threshold,
                limit_due: due,
            });
        }
    }

    /// The case's own limits from the procedure's `limits` hook, if it has one.
    pub(super) fn case_limits(&mut self) -> Result<()> {
        let Some(name) = self.proc.hooks.limits.clone() else {
            return Ok(());
        };
        let out = self.call(&name)?;
        let days = |k: &str| {
            out.get(k)
                .and_then(Value::as_u64)
                .and_then(|d| u32::try_from(d).ok())
        };
        match (days("promised_days"), days("statutory_days")) {
            (Some(p), Some(s)) if p <= s && s <= 3650 => {
                self.case.limits = Some(crate::case::CaseLimits {
                    promised_days: p,
                    statutory_days: s,
                });
                Ok(())
            }
            _ => Err(self.script_error(format!(
                "{name} must return #{{ promised_days, statutory_days }} in working days, the promised not above the statutory, not {out}"
            ))),
        }
    }
}
