//! The statistics: one report of a period as JSON, or one of its tables as CSV for a
//! spreadsheet. The figures come from the engine's sums (see `guichet_core::stats`);
//! their definitions are in `docs/statistics.md`.

use chrono::NaiveDate;
use guichet_core::stats::{Grouping, Period, Report, StatsQuery};

use super::*;

/// Which period: `period` and a `date` in it (default today), or `from` and `to`.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsParams {
    /// Day, week (Monday to Sunday), month, quarter or year holding `date`.
    #[serde(default)]
    pub period: Option<Period>,
    /// A date in the period (`YYYY-MM-DD`, default today in the office).
    #[serde(default)]
    pub date: Option<NaiveDate>,
    /// First day of a range (with `to`, instead of `period`).
    #[serde(default)]
    pub from: Option<NaiveDate>,
    /// Last day of the range, included.
    #[serde(default)]
    pub to: Option<NaiveDate>,
    /// Rows per procedure (default), department, day, week or month.
    #[serde(default)]
    pub by: Grouping,
    /// Only this procedure.
    #[serde(default)]
    pub procedure: Option<String>,
    /// Only this department.
    #[serde(default)]
    pub department: Option<String>,
    /// `csv` for a spreadsheet (with `table`), else JSON.
    #[serde(default)]
    pub format: Option<String>,
    /// With `format=csv`: `rows` (default), `steps` or `groups`.
    #[serde(default)]
    pub table: Option<String>,
}

impl StatsParams {
    /// The engine's query, with today (in the office) where no date is given.
    pub(crate) fn query(&self, today: NaiveDate) -> Result<StatsQuery, ApiError> {
        let bad = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", m.to_string());
        let (from, to) = match (self.period, self.from, self.to) {
            (None, Some(from), Some(to)) => (from, to),
            (None, None, None) => Period::Month.range(self.date.unwrap_or(today)),
            (Some(p), None, None) => p.range(self.date.unwrap_or(today)),
            (Some(_), _, _) => return Err(bad("give either period (and date) or from and to")),
            _ => return Err(bad("give both from and to")),
        };
        if to < from {
            return Err(bad("the period ends before it starts"));
        }
        if (to - from).num_days() >= guichet_core::stats::report::MAX_DAYS {
            return Err(bad("a report covers at most five years"));
        }
        Ok(StatsQuery {
            from,
            to,
            by: self.by,
            procedure: self.procedure.clone(),
            department: self.department.clone(),
        })
    }
}

/// The figures of a period (JSON), or one table of them (CSV).
pub(super) async fn statistics(
    State(s): State<AppState>,
    caller: Caller,
    Query(p): Query<StatsParams>,
) -> ApiResult<axum::response::Response> {
    let actor = caller.staff_or_admin()?.clone();
    let csv = match p.format.as_deref() {
        None | Some("json") => None,
        Some("csv") => Some(p.table.clone().unwrap_or_else(|| "rows".into())),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "format is json or csv",
            ))
        }
    };
    if csv
        .as_deref()
        .is_some_and(|t| !matches!(t, "rows" | "steps" | "groups"))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "table is rows, steps or groups",
        ));
    }
    let today = s.engine.rules().calendar.local_date(s.engine.now());
    let q = p.query(today)?;
    let report = call(&s, move |e| e.statistics(&actor, &q)).await?;
    let Some(table) = csv else {
        return Ok(Json(json!({ "report": report })).into_response());
    };
    let body = to_csv(&report, &table)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let name = format!("guichet-{table}-{}-{}.csv", report.from, report.to);
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// One table of a report as CSV, with a header line; the rows table ends with the total.
pub(crate) fn to_csv(r: &Report, table: &str) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let num = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_default();
    match table {
        "steps" => {
            w.write_record([
                "procedure",
                "step",
                "step_name",
                "group",
                "group_name",
                "tasks",
                "mean_hours",
                "bottleneck",
            ])?;
            for s in &r.steps {
                w.write_record([
                    s.procedure.clone(),
                    s.step.clone(),
                    s.step_name.clone(),
                    s.group.clone(),
                    s.group_name.clone(),
                    s.tasks.to_string(),
                    num(Some(s.mean_hours)),
                    s.bottleneck.to_string(),
                ])?;
            }
        }
        "groups" => {
            w.write_record([
                "group",
                "name",
                "tasks",
                "mean_hours",
                "ratings",
                "rating_mean",
            ])?;
            for g in &r.groups {
                w.write_record([
                    g.group.clone(),
                    g.name.clone(),
                    g.tasks.to_string(),
                    num(Some(g.mean_hours)),
                    g.ratings.to_string(),
                    num(g.rating_mean),
                ])?;
            }
        }
        _ => {
            w.write_record([
                "key",
                "name",
                "received",
                "accepted",
                "not_accepted",
                "referred",
                "withdrawn",
                "commitments_broken",
                "approved",
                "rejected",
                "decided",
                "mean_days",
                "median_days",
                "p90_days",
                "promised_mean_days",
                "statutory_mean_days",
                "on_time_promised",
                "on_time_statutory",
                "speed_up",
                "supplements",
                "extensions",
                "cards_issued",
                "cards_answered",
                "ratings",
                "rating_mean",
                "satisfied",
                "open_now",
                "overdue_now",
            ])?;
            for row in r.rows.iter().chain(std::iter::once(&r.total)) {
                w.write_record([
                    row.key.clone(),
                    row.name.clone(),
                    row.received.to_string(),
                    row.accepted.to_string(),
                    row.not_accepted.to_string(),
                    row.referred.to_string(),
                    row.withdrawn.to_string(),
                    row.commitments_broken.to_string(),
                    row.approved.to_string(),
                    row.rejected.to_string(),
                    row.decided.to_string(),
                    num(row.mean_days),
                    num(row.median_days),
                    row.p90_days.map(|d| d.to_string()).unwrap_or_default(),
                    num(row.promised_mean_days),
                    num(row.statutory_mean_days),
                    num(row.on_time_promised),
                    num(row.on_time_statutory),
                    num(row.speed_up),
                    row.supplements.to_string(),
                    row.extensions.to_string(),
                    row.cards_issued.to_string(),
                    row.cards_answered.to_string(),
                    row.ratings.iter().sum::<i64>().to_string(),
                    num(row.rating_mean),
                    num(row.satisfied),
                    row.open_now.map(|n| n.to_string()).unwrap_or_default(),
                    row.overdue_now.map(|n| n.to_string()).unwrap_or_default(),
                ])?;
            }
        }
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
