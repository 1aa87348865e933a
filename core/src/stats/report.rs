//! The figures of a period, as managers read them: per procedure, department or period
//! (day, week, month), with the time taken against the promised and statutory limits,
//! on-time rates and the speed-up (提速率), and where the time goes step by step. Every
//! figure's definition is in `docs/statistics.md`.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use super::table::{Cell, StepCell, Table};
use crate::error::{Error, Result};
use crate::office::RuleSet;

/// A named span of dates containing a given date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Period {
    /// The first and last day of the period holding `d` (weeks start on Monday).
    pub fn range(self, d: NaiveDate) -> (NaiveDate, NaiveDate) {
        let ymd = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap_or(d);
        let month_end = |y: i32, m: u32| {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            ymd(ny, nm, 1) - Duration::days(1)
        };
        match self {
            Period::Day => (d, d),
            Period::Week => {
                let from = d - Duration::days(i64::from(d.weekday().num_days_from_monday()));
                (from, from + Duration::days(6))
            }
            Period::Month => (ymd(d.year(), d.month(), 1), month_end(d.year(), d.month())),
            Period::Quarter => {
                let first = (d.month() - 1) / 3 * 3 + 1;
                (ymd(d.year(), first, 1), month_end(d.year(), first + 2))
            }
            Period::Year => (ymd(d.year(), 1, 1), ymd(d.year(), 12, 31)),
        }
    }
}

/// What the rows of a report are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    #[default]
    Procedure,
    Department,
    Day,
    Week,
    Month,
}

/// Which figures: a span of local dates (both included), how to group them, and
/// optionally one procedure or one department.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Grouping,
    pub procedure: Option<String>,
    pub department: Option<String>,
}

/// Longest span a report covers.
pub const MAX_DAYS: i64 = 366 * 5;

/// The figures of one row.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Row {
    /// The procedure's or department's id, or the first day of the period.
    pub key: String,
    pub name: String,
    pub received: i64,
    pub accepted: i64,
    pub not_accepted: i64,
    pub referred: i64,
    pub withdrawn: i64,
    /// Ended because a commitment (容缺受理) was not kept.
    pub commitments_broken: i64,
    pub approved: i64,
    pub rejected: i64,
    /// Approved or rejected.
    pub decided: i64,
    /// Working days from acceptance to decision, clock stops excluded, of the decided.
    pub mean_days: Option<f64>,
    pub median_days: Option<f64>,
    pub p90_days: Option<u32>,
    /// The mean promised and statutory limits of the same cases.
    pub promised_mean_days: Option<f64>,
    pub statutory_mean_days: Option<f64>,
    /// Shares of the decided cases decided within each limit (0 to 1).
    pub on_time_promised: Option<f64>,
    pub on_time_statutory: Option<f64>,
    /// 提速率: (statutory mean − mean taken) ÷ statutory mean.
    pub speed_up: Option<f64>,
    pub supplements: i64,
    pub extensions: i64,
    pub cards_issued: i64,
    pub cards_answered: i64,
    /// Ratings (好差评) given in the period, by score from 1 to 5.
    pub ratings: [i64; 5],
    /// Their mean score, and the share of 4 and 5 (satisfied) among them.
    pub rating_mean: Option<f64>,
    pub satisfied: Option<f64>,
    /// Open now and overdue now (per procedure and department rows and the total; the
    /// state today, whatever the period).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_now: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue_now: Option<i64>,
}

impl Row {
    fn of(key: String, name: String, c: &Cell) -> Row {
        let decided = c.approved + c.rejected;
        let n: i64 = c.days.values().sum();
        let total: i64 = c.days.iter().map(|(d, k)| i64::from(*d) * k).sum();
        let ratio = |a: i64, b: i64| (b > 0).then(|| a as f64 / b as f64);
        let mean = ratio(total, n);
        let statutory = ratio(c.statutory_days, n);
        Row {
            key,
            name,
            received: c.received,
            accepted: c.accepted,
            not_accepted: c.not_accepted,
            referred: c.referred,
            withdrawn: c.withdrawn,
            commitments_broken: c.terminated,
            approved: c.approved,
            rejected: c.rejected,
            decided,
            mean_days: mean,
            median_days: median(&c.days),
            p90_days: percentile(&c.days, 0.9),
            promised_mean_days: ratio(c.promised_days, n),
            statutory_mean_days: statutory,
            on_time_promised: ratio(c.on_time_promised, n),
            on_time_statutory: ratio(c.on_time_statutory, n),
            speed_up: match (mean, statutory) {
                (Some(m), Some(s)) if s > 0.0 => Some((s - m) / s),
                _ => None,
            },
            supplements: c.supplements,
            extensions: c.extensions,
            cards_issued: c.cards_issued,
            cards_answered: c.cards_answered,
            ratings: c.ratings,
            rating_mean: rating_mean(&c.ratings),
            satisfied: ratio(c.ratings[3] + c.ratings[4], c.ratings.iter().sum::<i64>()),
            open_now: None,
            overdue_now: None,
        }
    }
}

/// The mean score of ratings counted by score.
fn rating_mean(r: &[i64; 5]) -> Option<f64> {
    let n: i64 = r.iter().sum();
    let total: i64 = r.iter().zip(1..).map(|(k, s)| k * s).sum();
    (n > 0).then(|| total as f64 / n as f64)
}

/// The middle value of a histogram (the mean of the two middle ones for an even count).
fn median(h: &BTreeMap<u32, i64>) -> Option<f64> {
    let n: i64 = h.values().sum();
    if n <= 0 {
        return None;
    }
    let nth = |k: i64| {
        let mut seen = 0;
        for (d, c) in h {
            seen += c;
            if seen > k {
                return f64::from(*d);
            }
        }
        0.0
    };
    Some(if n % 2 == 1 {
        nth(n / 2)
    } else {
        (nth(n / 2 - 1) + nth(n / 2)) / 2.0
    })
}

/// The nearest-rank percentile `p` of a histogram.
fn percentile(h: &BTreeMap<u32, i64>, p: f64) -> Option<u32> {
    let n: i64 = h.values().sum();
    if n <= 0 {
        return None;
    }
    let rank = ((p * n as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (d, c) in h {
        seen += c;
        if seen >= rank {
            return Some(*d);
        }
    }
    h.keys().next_back().copied()
}

/// Where the time goes: one step of one procedure, done by one group.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StepRow {
    pub procedure: String,
    pub step: String,
    pub step_name: String,
    pub group: String,
    pub group_name: String,
    /// Tasks of the step completed in the period.
    pub tasks: i64,
    /// Their mean working time, in working hours (office hours on working days).
    pub mean_hours: f64,
    /// The step of its procedure that takes longest on average.
    pub bottleneck: bool,
}

/// A group's work in the period, over every step it did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GroupRow {
    pub group: String,
    pub name: String,
    pub tasks: i64,
    pub mean_hours: f64,
    /// Ratings given in the period of the cases the group worked on, and their mean.
    pub ratings: i64,
    pub rating_mean: Option<f64>,
}

/// The figures of a period.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Grouping,
    pub rows: Vec<Row>,
    pub total: Row,
    pub steps: Vec<StepRow>,
    pub groups: Vec<GroupRow>,
}

/// Open and overdue cases now, per `(department, procedure)`.
pub type OpenNow = BTreeMap<(String, String), (i64, i64)>;

/// Adds up the cells of `q`'s period into a report.
pub fn report(table: &Table, rules: &RuleSet, q: &StatsQuery, open: &OpenNow) -> Result<Report> {
    if q.to < q.from {
        return Err(Error::Validation("the period ends before it starts".into()));
    }
    if (q.to - q.from).num_days() >= MAX_DAYS {
        return Err(Error::Validation(format!(
            "a report covers at most {MAX_DAYS} days"
        )));
    }
    let wanted = |dept: &str, proc: &str| {
        q.procedure.as_deref().is_none_or(|p| p == proc)
            && q.department.as_deref().is_none_or(|d| d == dept)
    };
    let proc_name = |id: &str| {
        rules
            .procedures
            .get(id)
            .map_or_else(|| id.to_string(), |p| p.name.clone())
    };
    let dept_name = |id: &str| {
        rules
            .departments
            .get(id)
            .map_or_else(|| id.to_string(), |d| d.name.clone())
    };
    let row_key = |day: NaiveDate, dept: &str, proc: &str| -> (String, String) {
        match q.by {
            Grouping::Procedure => (proc.to_string(), proc_name(proc)),
            Grouping::Department => (dept.to_string(), dept_name(dept)),
            Grouping::Day => (day.to_string(), day.to_string()),
            Grouping::Week => {
                let (from, _) = Period::Week.range(day);
                (
                    from.to_string(),
                    format!("{}-W{:02}", from.iso_week().year(), from.iso_week().week()),
                )
            }
            Grouping::Month => {
                let (from, _) = Period::Month.range(day);
                (from.to_string(), from.format("%Y-%m").to_string())
            }
        }
    };
    let mut rows: BTreeMap<String, (String, Cell)> = BTreeMap::new();
    let mut total = Cell::default();
    let start = (q.from, String::new(), String::new());
    for ((day, dept, proc), cell) in table.cells.range(start..) {
        if *day > q.to {
            break;
        }
        if !wanted(dept, proc) {
            continue;
        }
        let (key, name) = row_key(*day, dept, proc);
        rows.entry(key)
            .or_insert_with(|| (name, Cell::default()))
            .1
            .merge(cell);
        total.merge(cell);
    }
    // Procedures and departments with open work but nothing in the period still show.
    let now_rows = matches!(q.by, Grouping::Procedure | Grouping::Department);
    let mut open_total = (0, 0);
    let mut open_by: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for ((dept, proc), (o, r)) in open {
        if !wanted(dept, proc) {
            continue;
        }
        open_total.0 += o;
        open_total.1 += r;
        if now_rows {
            let (key, name) = row_key(q.from, dept, proc);
            rows.entry(key.clone())
                .or_insert_with(|| (name, Cell::default()));
            let e = open_by.entry(key).or_default();
            e.0 += o;
            e.1 += r;
        }
    }
    let rows = rows
        .into_iter()
        .map(|(key, (name, cell))| {
            let mut row = Row::of(key.clone(), name, &cell);
            if now_rows {
                let (o, r) = open_by.get(&key).copied().unwrap_or_default();
                row.open_now = Some(o);
                row.overdue_now = Some(r);
            }
            row
        })
        .collect();
    let mut total = Row::of("total".into(), "total".into(), &total);
    total.open_now = Some(open_total.0);
    total.overdue_now = Some(open_total.1);

    let mut steps: BTreeMap<(String, String, String), StepCell> = BTreeMap::new();
    let mut groups: BTreeMap<String, StepCell> = BTreeMap::new();
    let mut group_ratings: BTreeMap<String, [i64; 5]> = BTreeMap::new();
    let start = (q.from, String::new(), String::new(), String::new());
    for ((day, dept, proc, group), counts) in table.group_ratings.range(start..) {
        if *day > q.to {
            break;
        }
        if !wanted(dept, proc) {
            continue;
        }
        let slot = group_ratings.entry(group.clone()).or_default();
        for (mine, theirs) in slot.iter_mut().zip(counts) {
            *mine += theirs;
        }
        groups.entry(group.clone()).or_default();
    }
    let start = (
        q.from,
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    for ((day, dept, proc, step, group), c) in table.steps.range(start..) {
        if *day > q.to {
            break;
        }
        if !wanted(dept, proc) {
            continue;
        }
        let s = steps
            .entry((proc.clone(), step.clone(), group.clone()))
            .or_default();
        s.tasks += c.tasks;
        s.minutes += c.minutes;
        let g = groups.entry(group.clone()).or_default();
        g.tasks += c.tasks;
        g.minutes += c.minutes;
    }
    let hours = |c: &StepCell| {
        if c.tasks > 0 {
            c.minutes as f64 / 60.0 / c.tasks as f64
        } else {
            0.0
        }
    };
    let mut slowest: BTreeMap<String, f64> = BTreeMap::new();
    for ((proc, _, _), c) in &steps {
        let h = hours(c);
        let e = slowest.entry(proc.clone()).or_insert(h);
        *e = e.max(h);
    }
    let group_name = |id: &str| {
        rules
            .groups
            .get(id)
            .map_or_else(|| id.to_string(), |g| g.name.clone())
    };
    let steps = steps
        .into_iter()
        .filter(|(_, c)| c.tasks > 0)
        .map(|((proc, step, group), c)| StepRow {
            step_name: rules
                .procedures
                .get(&proc)
                .and_then(|p| p.step(&step))
                .map_or_else(|| step.clone(), |s| s.name.clone()),
            group_name: group_name(&group),
            bottleneck: slowest
                .get(&proc)
                .is_some_and(|m| *m > 0.0 && *m == hours(&c)),
            mean_hours: hours(&c),
            tasks: c.tasks,
            procedure: proc,
            step,
            group,
        })
        .collect();
    let groups = groups
        .into_iter()
        .filter(|(g, c)| c.tasks > 0 || group_ratings.contains_key(g))
        .map(|(group, c)| {
            let r = group_ratings.get(&group).copied().unwrap_or_default();
            GroupRow {
                name: group_name(&group),
                tasks: c.tasks,
                mean_hours: hours(&c),
                ratings: r.iter().sum(),
                rating_mean: rating_mean(&r),
                group,
            }
        })
        .collect();
    Ok(Report {
        from: q.from,
        to: q.to,
        by: q.by,
        rows,
        total,
        steps,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn periods_hold_their_date() {
        assert_eq!(
            Period::Week.range(d("2026-12-03")),
            (d("2026-11-30"), d("2026-12-06"))
        );
        assert_eq!(
            Period::Month.range(d("2026-02-14")),
            (d("2026-02-01"), d("2026-02-28"))
        );
        assert_eq!(
            Period::Month.range(d("2026-12-14")),
            (d("2026-12-01"), d("2026-12-31"))
        );
        assert_eq!(
            Period::Quarter.range(d("2026-08-14")),
            (d("2026-07-01"), d("2026-09-30"))
        );
        assert_eq!(
            Period::Year.range(d("2026-08-14")),
            (d("2026-01-01"), d("2026-12-31"))
        );
    }

    #[test]
    fn median_and_percentile_of_a_histogram() {
        let h: BTreeMap<u32, i64> = [(1, 2), (3, 1), (10, 1)].into_iter().collect();
        // 1, 1, 3, 10
        assert_eq!(median(&h), Some(2.0));
        assert_eq!(percentile(&h, 0.9), Some(10));
        assert_eq!(percentile(&h, 0.5), Some(1));
        let odd: BTreeMap<u32, i64> = [(2, 1), (4, 1), (9, 1)].into_iter().collect();
        assert_eq!(median(&odd), Some(4.0));
        assert_eq!(median(&BTreeMap::new()), None);
    }
}
