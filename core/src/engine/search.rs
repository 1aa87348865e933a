//! Finding cases: the short listing every case keeps in the store's search index
//! ([`CaseListing`], written with its case record), and the staff's search over it
//! (`Engine::search_cases`): filters, newest or oldest first, a page at a time after a
//! stable cursor. Only cases the searcher may see are answered.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::case::{Case, CaseStatus};
use crate::engine::{Actor, Engine};
use crate::error::{Error, Result};
use crate::limits::Level;

/// What a search reads of a case, kept in the search index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CaseListing {
    pub id: u64,
    pub number: String,
    pub procedure: String,
    pub procedure_name: String,
    pub department: String,
    pub status: CaseStatus,
    pub applicant_id: String,
    pub applicant_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    pub submitted_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
}

impl CaseListing {
    pub fn of(c: &Case) -> CaseListing {
        CaseListing {
            id: c.id,
            number: c.number.clone(),
            procedure: c.procedure.clone(),
            procedure_name: c.procedure_name.clone(),
            department: c.department.clone(),
            status: c.status,
            applicant_id: c.applicant.id.clone(),
            applicant_name: c.applicant.name.clone(),
            bundle: c.bundle.clone(),
            submitted_at: c.submitted_at,
            decided_at: c.decided_at,
        }
    }
}

/// Most cases a search answers at once.
pub const MAX_PAGE: usize = 200;
/// Most listings one search call reads before it answers with what it found and a cursor
/// to go on from: a search that matches little of a large office stays a bounded call.
pub const MAX_SCANNED: usize = 100_000;

/// What to look for. Every filter given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CaseSearch {
    pub procedure: Option<String>,
    pub department: Option<String>,
    pub status: Option<CaseStatus>,
    /// The level of an open case now (`green`, `yellow`, `red`); closed cases have none.
    pub level: Option<Level>,
    /// The applicant's ID card number or credit code, exactly.
    pub applicant: Option<String>,
    /// The beginning of the case number (`PLAN-LUP-2026`).
    pub number: Option<String>,
    pub bundle: Option<String>,
    /// Submitted on or after / on or before these local dates.
    pub submitted_from: Option<NaiveDate>,
    pub submitted_to: Option<NaiveDate>,
    /// Closed on or after / on or before these local dates.
    pub decided_from: Option<NaiveDate>,
    pub decided_to: Option<NaiveDate>,
    /// Text in the case number or the applicant's name (any case).
    pub q: Option<String>,
    /// `oldest` first, else newest first.
    pub order: Option<Order>,
    /// Cases per page, 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Newest,
    Oldest,
}

/// One case found, with its level if it is open.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Found {
    #[serde(flatten)]
    pub case: CaseListing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
}

/// A page of a search.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SearchPage {
    pub cases: Vec<Found>,
    /// Where the next page starts (give it as `after`); none after the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl CaseSearch {
    /// Whether a listing passes the filters a listing can tell (all but level and
    /// visibility, which need the case).
    fn admits(&self, l: &CaseListing, cal: &crate::calendar::Calendar) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        let day_in = |t: Option<DateTime<Utc>>, from: Option<NaiveDate>, to: Option<NaiveDate>| {
            if from.is_none() && to.is_none() {
                return true;
            }
            let Some(t) = t else { return false };
            let d = cal.local_date(t);
            from.is_none_or(|f| d >= f) && to.is_none_or(|x| d <= x)
        };
        eq(&self.procedure, &l.procedure)
            && eq(&self.department, &l.department)
            && eq(&self.applicant, &l.applicant_id)
            && self.status.is_none_or(|s| s == l.status)
            && (self.level.is_none() || l.status.is_open())
            && self
                .bundle
                .as_deref()
                .is_none_or(|b| l.bundle.as_deref() == Some(b))
            && self
                .number
                .as_deref()
                .is_none_or(|n| l.number.starts_with(n))
            && day_in(Some(l.submitted_at), self.submitted_from, self.submitted_to)
            && day_in(l.decided_at, self.decided_from, self.decided_to)
            && self.q.as_deref().is_none_or(|q| {
                let q = q.to_lowercase();
                l.number.to_lowercase().contains(&q) || l.applicant_name.to_lowercase().contains(&q)
            })
    }
}

impl Engine {
    /// Cases the actor may see that match `s`, a page at a time.
    pub fn search_cases(&self, actor: &Actor, s: &CaseSearch) -> Result<SearchPage> {
        if !matches!(actor, Actor::Staff(_) | Actor::Admin) {
            return Err(Error::Forbidden(
                "case search is for the office's staff".into(),
            ));
        }
        let limit = s.limit.unwrap_or(50);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::Validation(format!(
                "limit is between 1 and {MAX_PAGE}"
            )));
        }
        let after = match s.after.as_deref() {
            None | Some("") => None,
            Some(a) => Some(
                a.parse::<u64>()
                    .map_err(|_| Error::Validation(format!("'{a}' is not a search cursor")))?,
            ),
        };
        let newest = s.order != Some(Order::Oldest);
        let rules = self.rules();
        let mut found = Vec::new();
        let mut scanned = 0;
        let mut last = None;
        let mut more = false;
        let mut consider = |l: CaseListing| -> Result<bool> {
            scanned += 1;
            last = Some(l.id);
            if s.admits(&l, &rules.calendar) {
                // Visibility and the level need the case itself; the entry may describe
                // a revision a failed commit never made, so the case is checked again.
                if let Some(case) = self.store().case(l.id)? {
                    let fresh = CaseListing::of(&case);
                    if s.admits(&fresh, &rules.calendar) && self.can_see(actor, &case) {
                        let level = match case.status.is_open() {
                            true => self
                                .procedure_of(&case)
                                .ok()
                                .map(|p| self.case_level(&rules, &p, &case)),
                            false => None,
                        };
                        if s.level.is_none_or(|want| level == Some(want)) {
                            found.push(Found { case: fresh, level });
                        }
                    }
                }
            }
            if found.len() >= limit || scanned >= MAX_SCANNED {
                more = true;
                return Ok(false);
            }
            Ok(true)
        };
        // An applicant's or a bundle's cases come from their own index.
        let by_index = match (&s.applicant, &s.bundle) {
            (Some(a), _) => Some(self.store().cases_of_applicant(a)?),
            (None, Some(b)) => Some(self.store().cases_of_bundle(b)?),
            _ => None,
        };
        match by_index {
            Some(mut ids) => {
                ids.sort_unstable();
                if newest {
                    ids.reverse();
                }
                for id in ids
                    .into_iter()
                    .filter(|id| after.is_none_or(|a| if newest { *id < a } else { *id > a }))
                {
                    if let Some(l) = self.store().listing(id)? {
                        if !consider(l)? {
                            break;
                        }
                    }
                }
            }
            None => self.store().listings(after, newest, &mut consider)?,
        }
        // A full page may be the last one; the next call then answers an empty page.
        Ok(SearchPage {
            cases: found,
            next: if more {
                last.map(|id| id.to_string())
            } else {
                None
            },
        })
    }
}

/// Set in the store's settings once every case has its search entry.
const INDEXED: &str = "search_indexed";

impl Engine {
    /// Gives every case of a store written before the search index existed its entry,
    /// once, at the first start after the upgrade.
    pub(crate) fn complete_search_index(&self) -> Result<()> {
        if self.store().meta(INDEXED)?.is_some() {
            return Ok(());
        }
        let mut written = 0;
        for id in 1..self.store().next_case_id()? {
            if self.store().complete_listing(id)? {
                written += 1;
            }
        }
        self.store().put_meta(INDEXED, b"1")?;
        if written > 0 {
            tracing::info!(
                message = "search index written for older cases",
                cases = written
            );
        }
        Ok(())
    }
}
