//! Warning levels and supervision thresholds of time limits. A limit runs from a start
//! instant over a number of working days to a due instant; a procedure's policy says when
//! a warning (and, with the scheduler, a supervision card) is due: at shares of the limit
//! used (e.g. 50 % and 75 %) and/or a number of working days before the end (a court's
//! 10 days). Past the due instant the limit is overdue (red). A step's budget may be in
//! working hours instead ([`Budget`]): an on-site visit within four hours of office time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WarningPolicy {
    /// Shares of a limit used at which it turns yellow and a card is issued.
    #[serde(default = "default_shares")]
    pub at_shares: Vec<f64>,
    /// Working days before the end at which it turns yellow and a card is issued; applies
    /// only to limits longer than that many days.
    #[serde(default)]
    pub days_before: Vec<u32>,
    /// The group that supervises: receives cards with the holder.
    #[serde(default)]
    pub supervisor: Option<String>,
    /// The group a breach escalates to (default: the supervisor group).
    #[serde(default)]
    pub escalate_to: Option<String>,
}

fn default_shares() -> Vec<f64> {
    vec![0.75]
}

impl Default for WarningPolicy {
    fn default() -> Self {
        WarningPolicy {
            at_shares: default_shares(),
            days_before: Vec::new(),
            supervisor: None,
            escalate_to: None,
        }
    }
}

/// The size of a limit: working days (due at the close of the n-th working day after the
/// start; 0 is the close of the day it starts) or working hours (due once that much time
/// inside office hours on working days has passed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Days(u32),
    Hours(u32),
}

impl From<u32> for Budget {
    fn from(days: u32) -> Budget {
        Budget::Days(days)
    }
}

impl Budget {
    /// When a limit of this size that starts at `start` ends.
    pub fn due(self, cal: &Calendar, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Budget::Days(d) => cal.deadline(start, d),
            Budget::Hours(h) => cal.add_working_hours(start, h.saturating_mul(60)),
        }
    }

    /// `t` moved on by a clock stop of `stopped`: whole working days for a limit in days
    /// (to the close of the day), working minutes for one in hours.
    pub fn shift(self, cal: &Calendar, t: DateTime<Utc>, stopped: Stopped) -> DateTime<Utc> {
        match self {
            Budget::Days(_) if stopped.days == 0 => t,
            Budget::Days(_) => cal.close_of(cal.add_working_days(cal.local_date(t), stopped.days)),
            Budget::Hours(_) if stopped.minutes == 0 => t,
            Budget::Hours(_) => cal.add_working_hours(t, stopped.minutes),
        }
    }
}

/// How long a case's clock stood still (after some instant): in working days, as limits
/// in days move, and in working minutes, as limits in hours move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    pub days: u32,
    pub minutes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Level {
    Green,
    Yellow,
    Red,
}

/// When a limit turns yellow and red, and whether its clock is stopped: enough to tell
/// its level at any moment without the procedure or the calendar (worked out when the
/// case changes, kept with the task in the worklist's index).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelClock {
    /// The first warning threshold (none: never yellow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yellow_at: Option<DateTime<Utc>>,
    /// Red after this (none: never red).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<DateTime<Utc>>,
    /// The case's clock is stopped since then: the level stays what it was then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_at: Option<DateTime<Utc>>,
}

impl LevelClock {
    pub fn level(&self, now: DateTime<Utc>) -> Level {
        let at = self.frozen_at.unwrap_or(now);
        if self.due.is_some_and(|d| at > d) {
            Level::Red
        } else if self.yellow_at.is_some_and(|y| y <= at) {
            Level::Yellow
        } else {
            Level::Green
        }
    }
}

impl WarningPolicy {
    /// The clock of a limit of `budget` from `start`, due at `due`, moved by the clock
    /// stops since (as resuming moves the limit and its warnings).
    pub fn clock(
        &self,
        cal: &Calendar,
        (start, budget, due): (DateTime<Utc>, Budget, DateTime<Utc>),
        stopped: Stopped,
        frozen_at: Option<DateTime<Utc>>,
    ) -> LevelClock {
        LevelClock {
            yellow_at: self
                .thresholds(cal, start, budget)
                .first()
                .map(|(_, t)| budget.shift(cal, *t, stopped)),
            due: Some(due),
            frozen_at,
        }
    }

    pub fn validate(&self) -> Vec<String> {
        self.at_shares
            .iter()
            .filter(|s| !(**s > 0.0 && **s < 1.0))
            .map(|s| format!("warnings.at_shares: {s} is not between 0 and 1"))
            .collect()
    }

    /// The instants at which warnings fall due for a limit of `days` working days that
    /// started at `start`, labelled (`50%`, `10d`), in time order. Thresholds are counted
    /// in whole working days: a share is reached at the close of the first working day by
    /// which at least that share of the days has passed. Where whole days would put a
    /// share at the start itself or at the deadline (short limits: 75 % of one day, any
    /// share of an immediate item), it falls at that share of the limit's working time
    /// instead: in the afternoon, not at the moment of acceptance nor at the end.
    ///
    /// For a limit in hours the shares fall at that share of its working time, and the
    /// days before the end do not apply.
    pub fn thresholds(
        &self,
        cal: &Calendar,
        start: DateTime<Utc>,
        budget: impl Into<Budget>,
    ) -> Vec<(String, DateTime<Utc>)> {
        let days = match budget.into() {
            Budget::Days(d) => d,
            Budget::Hours(h) => {
                let minutes = f64::from(h) * 60.0;
                return self
                    .at_shares
                    .iter()
                    .map(|s| {
                        let at = cal.add_working_hours(start, (minutes * s).round() as u32);
                        (format!("{}%", (s * 100.0).round()), at)
                    })
                    .collect();
            }
        };
        let start_day = cal.local_date(start);
        let mut out: Vec<(String, DateTime<Utc>)> = Vec::new();
        let due = cal.deadline(start, days);
        let total = cal.working_minutes_between(start, due);
        for s in &self.at_shares {
            let k = ((*s * days as f64).ceil() as u32).min(days);
            let at = if (k == 0 || k == days) && total > 0 {
                cal.add_working_hours(start, (total as f64 * s).round() as u32)
            } else {
                at_day(cal, start, start_day, k)
            };
            out.push((format!("{}%", (s * 100.0).round()), at));
        }
        for n in self.days_before.iter().filter(|n| **n < days) {
            let k = days - n;
            out.push((format!("{n}d"), at_day(cal, start, start_day, k)));
        }
        out.sort_by_key(|(_, t)| *t);
        out
    }

    /// The level of a limit at `now`.
    pub fn level(
        &self,
        cal: &Calendar,
        start: DateTime<Utc>,
        days: u32,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Level {
        if now > due {
            Level::Red
        } else if self
            .thresholds(cal, start, days)
            .iter()
            .any(|(_, t)| *t <= now)
        {
            Level::Yellow
        } else {
            Level::Green
        }
    }
}

/// Close of office on the `k`-th working day after the start (the start itself if `k` is 0).
fn at_day(
    cal: &Calendar,
    start: DateTime<Utc>,
    start_day: chrono::NaiveDate,
    k: u32,
) -> DateTime<Utc> {
    if k == 0 {
        start
    } else {
        cal.close_of(cal.add_working_days(start_day, k))
    }
}
