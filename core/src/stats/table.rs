//! The figures of the whole office, summed from every case's [`CaseFigures`] into cells
//! per local day and procedure (and per day, procedure, step and group for step times).
//! Kept in memory: a commit replaces a case's old contribution with its new one, so a
//! query only adds up the cells of its period, never reads a case.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::figures::CaseFigures;
use crate::case::CaseStatus;

/// Counts of one day and procedure. Signed: a contribution is taken away as it is added.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cell {
    pub received: i64,
    pub accepted: i64,
    pub not_accepted: i64,
    pub referred: i64,
    pub withdrawn: i64,
    pub terminated: i64,
    pub approved: i64,
    pub rejected: i64,
    /// Decided cases, by working days taken (for the mean, median and 90th percentile).
    pub days: BTreeMap<u32, i64>,
    pub promised_days: i64,
    pub statutory_days: i64,
    pub on_time_promised: i64,
    pub on_time_statutory: i64,
    pub supplements: i64,
    pub extensions: i64,
    pub cards_issued: i64,
    pub cards_answered: i64,
    /// Ratings given in the period, by score (1 to 5).
    pub ratings: [i64; 5],
}

impl Cell {
    fn add(&mut self, o: &Cell, sign: i64) {
        self.received += sign * o.received;
        self.accepted += sign * o.accepted;
        self.not_accepted += sign * o.not_accepted;
        self.referred += sign * o.referred;
        self.withdrawn += sign * o.withdrawn;
        self.terminated += sign * o.terminated;
        self.approved += sign * o.approved;
        self.rejected += sign * o.rejected;
        for (d, n) in &o.days {
            let e = self.days.entry(*d).or_insert(0);
            *e += sign * n;
            if *e == 0 {
                self.days.remove(d);
            }
        }
        self.promised_days += sign * o.promised_days;
        self.statutory_days += sign * o.statutory_days;
        self.on_time_promised += sign * o.on_time_promised;
        self.on_time_statutory += sign * o.on_time_statutory;
        self.supplements += sign * o.supplements;
        self.extensions += sign * o.extensions;
        self.cards_issued += sign * o.cards_issued;
        self.cards_answered += sign * o.cards_answered;
        for (mine, theirs) in self.ratings.iter_mut().zip(o.ratings) {
            *mine += sign * theirs;
        }
    }

    /// Adds `o` into this cell.
    pub fn merge(&mut self, o: &Cell) {
        self.add(o, 1);
    }

    fn is_empty(&self) -> bool {
        *self == Cell::default()
    }
}

/// Step times of one day, procedure, step and group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StepCell {
    pub tasks: i64,
    pub minutes: i64,
}

/// `(day, department, procedure)`.
pub type CellKey = (NaiveDate, String, String);
/// `(day, department, procedure, step, group)`.
pub type StepKey = (NaiveDate, String, String, String, String);

/// `(day, department, procedure, group)`.
pub type GroupKey = (NaiveDate, String, String, String);

/// The office's figures.
#[derive(Debug, Default)]
pub struct Table {
    pub cells: BTreeMap<CellKey, Cell>,
    pub steps: BTreeMap<StepKey, StepCell>,
    /// Ratings by score of the cases each group worked on.
    pub group_ratings: BTreeMap<GroupKey, [i64; 5]>,
}

impl Table {
    /// Replaces a case's contribution `old` (none for a new case) by `new`.
    pub fn apply(&mut self, old: Option<&CaseFigures>, new: Option<&CaseFigures>) {
        if let Some(o) = old {
            self.add(o, -1);
        }
        if let Some(n) = new {
            self.add(n, 1);
        }
    }

    fn add(&mut self, f: &CaseFigures, sign: i64) {
        let mut cells: BTreeMap<NaiveDate, Cell> = BTreeMap::new();
        cells.entry(f.received).or_default().received += 1;
        if let Some(d) = f.accepted {
            cells.entry(d).or_default().accepted += 1;
        }
        if let Some(c) = f.closed {
            let cell = cells.entry(c.day).or_default();
            match c.status {
                CaseStatus::NotAccepted => cell.not_accepted += 1,
                CaseStatus::Referred => cell.referred += 1,
                CaseStatus::Withdrawn => cell.withdrawn += 1,
                CaseStatus::Terminated => cell.terminated += 1,
                CaseStatus::Approved => cell.approved += 1,
                CaseStatus::Rejected => cell.rejected += 1,
                _ => {}
            }
            if let Some(t) = f.timing {
                *cell.days.entry(t.days).or_insert(0) += 1;
                cell.promised_days += i64::from(t.promised);
                cell.statutory_days += i64::from(t.statutory);
                cell.on_time_promised += i64::from(t.on_time_promised);
                cell.on_time_statutory += i64::from(t.on_time_statutory);
            }
        }
        for d in &f.supplements {
            cells.entry(*d).or_default().supplements += 1;
        }
        for d in &f.extensions {
            cells.entry(*d).or_default().extensions += 1;
        }
        for d in &f.cards_issued {
            cells.entry(*d).or_default().cards_issued += 1;
        }
        for d in &f.cards_answered {
            cells.entry(*d).or_default().cards_answered += 1;
        }
        if let Some((day, score)) = f.rating {
            let i = usize::from(score.clamp(1, 5) - 1);
            cells.entry(day).or_default().ratings[i] += 1;
            for g in f.worked_by() {
                let key = (
                    day,
                    f.department.clone(),
                    f.procedure.clone(),
                    g.to_string(),
                );
                let slot = self.group_ratings.entry(key.clone()).or_default();
                slot[i] += sign;
                if *slot == [0; 5] {
                    self.group_ratings.remove(&key);
                }
            }
        }
        for (day, cell) in cells {
            let key = (day, f.department.clone(), f.procedure.clone());
            let slot = self.cells.entry(key.clone()).or_default();
            slot.add(&cell, sign);
            if slot.is_empty() {
                self.cells.remove(&key);
            }
        }
        for s in &f.steps {
            let key = (
                s.day,
                f.department.clone(),
                f.procedure.clone(),
                s.step.clone(),
                s.group.clone(),
            );
            let slot = self.steps.entry(key.clone()).or_default();
            slot.tasks += sign;
            slot.minutes += sign * s.minutes as i64;
            if *slot == StepCell::default() {
                self.steps.remove(&key);
            }
        }
    }
}
