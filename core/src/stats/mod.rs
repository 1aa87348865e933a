//! Statistics an office is run on: what each case contributes (`figures`), the office's
//! sums kept in memory as cases move (`table`), and the reports read from them
//! (`report`). The engine keeps the table current in the same call that commits a
//! transition, and rebuilds it at start from the contributions the store keeps.

pub mod figures;
pub mod report;
pub mod table;

pub use figures::CaseFigures;
pub use report::{report, Grouping, Period, Report, StatsQuery};
pub use table::Table;

use std::collections::{BTreeMap, HashSet};

use crate::engine::{Actor, Engine};
use crate::error::{Error, Result};

/// Set in the store's settings once every case's contribution is written.
const BUILT: &str = "stats_built";

impl Engine {
    /// Fills the statistics from the contributions the store keeps; a store written
    /// before they were kept gets them worked out from each case's history, once.
    pub(crate) fn load_statistics(&self) -> Result<()> {
        if self.store().meta(BUILT)?.is_none() {
            let n = self.rebuild_figures()?;
            self.store().put_meta(BUILT, b"1")?;
            if n > 0 {
                tracing::info!(
                    message = "statistics worked out from the history",
                    cases = n
                );
            }
        }
        let mut table = Table::default();
        let stale = self
            .store()
            .visit_figures(&mut |_, f| table.apply(None, Some(&f)))?;
        // Contributions a crash left for transitions that did not happen: again from the
        // history, which has only those that did.
        for id in stale {
            if let Some(f) = self.figures_from_history(id)? {
                table.apply(None, Some(&f));
            }
        }
        *self.stats.write() = table;
        Ok(())
    }

    /// A case's contribution worked out from its history and written; `None` if the case
    /// or its procedure version cannot be read.
    fn figures_from_history(&self, id: u64) -> Result<Option<CaseFigures>> {
        let Some(case) = self.store().case(id)? else {
            return Ok(None);
        };
        let proc = match self.procedure_of(&case) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(message = "no figures for a case", case = case.number, error = %e);
                return Ok(None);
            }
        };
        let history = self.store().history(id)?;
        let closed = self.store().closed_tasks(id)?;
        let rules = self.rules();
        let f = CaseFigures::rebuild(&case, &history, &closed, &proc, &rules.calendar);
        self.store().put_figures(id, case.rev, &f)?;
        Ok(Some(f))
    }

    /// Works out every case's contribution again from its history and writes it; returns
    /// how many cases it did. Meant for a store no server is running on (`guichet stats
    /// rebuild`); the figures in memory are then loaded again.
    pub fn rebuild_statistics(&self) -> Result<u64> {
        let n = self.rebuild_figures()?;
        self.store().put_meta(BUILT, b"1")?;
        self.load_statistics()?;
        Ok(n)
    }

    fn rebuild_figures(&self) -> Result<u64> {
        let mut done = 0;
        for id in 1..self.store().next_case_id()? {
            if self.figures_from_history(id)?.is_some() {
                done += 1;
            }
        }
        Ok(done)
    }

    /// The figures of a period for staff and the administrator (managers read them; they
    /// name no applicant).
    pub fn statistics(&self, actor: &Actor, q: &StatsQuery) -> Result<Report> {
        if !matches!(actor, Actor::Staff(_) | Actor::Admin) {
            return Err(Error::Forbidden(
                "statistics are for the office's staff".into(),
            ));
        }
        let rules = self.rules();
        let open = self.open_now(&rules)?;
        let table = self.stats.read();
        report(&table, &rules, q, &open)
    }

    /// Open cases and overdue cases now, per department and procedure.
    fn open_now(&self, rules: &crate::office::RuleSet) -> Result<report::OpenNow> {
        let mut out: report::OpenNow = BTreeMap::new();
        for ((procedure, _), n) in self.store().open_cases_by_version()? {
            let dept = rules
                .procedures
                .get(&procedure)
                .map(|p| p.department.clone())
                .unwrap_or_default();
            out.entry((dept, procedure)).or_default().0 += n as i64;
        }
        let now = self.now();
        let mut overdue: HashSet<u64> = HashSet::new();
        for group in rules.groups.keys() {
            self.store().visit_work(group, &mut |e| {
                if e.clock.level(now) == crate::limits::Level::Red && overdue.insert(e.case_id) {
                    out.entry((e.department.clone(), e.procedure.clone()))
                        .or_default()
                        .1 += 1;
                }
            })?;
        }
        Ok(out)
    }
}
