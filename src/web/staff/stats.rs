//! The statistics page for managers: the figures of a period as tables and two charts
//! drawn on the server as SVG (time taken against the limits; arrivals and decisions over
//! time), and the same tables as CSV. The same engine call and figures as `/api/stats`.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use guichet_core::guide::localized;
use guichet_core::stats::{Grouping, Period, Report};
use serde::{Deserialize, Serialize};

use super::super::page;
use super::super::public::{refused, PageQuery};
use super::staff;
use crate::api::stats::StatsParams;
use crate::api::{AppState, Permission};

#[derive(Deserialize, Default)]
pub(in crate::web) struct StatsForm {
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    department: Option<String>,
    /// `rows`, `steps` or `groups`: the table as CSV instead of the page.
    #[serde(default)]
    csv: Option<String>,
}

/// A named choice (`month`, `procedure`) as its type, or the value that is none.
fn enum_of<T: serde::de::DeserializeOwned>(v: Option<&str>) -> Result<Option<T>, String> {
    v.map(|v| serde_json::from_value(serde_json::json!(v)).map_err(|_| v.to_string()))
        .transpose()
}

/// A form field as a value: empty means not given.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl StatsForm {
    /// What the API would be asked, or the problem with the form.
    fn params(&self) -> Result<StatsParams, String> {
        let parse = |v: Option<&str>| {
            v.map(|v| v.parse::<NaiveDate>().map_err(|_| v.to_string()))
                .transpose()
        };
        let (from, to) = (parse(given(&self.from))?, parse(given(&self.to))?);
        let ranged = from.is_some() || to.is_some();
        Ok(StatsParams {
            period: if ranged {
                None
            } else {
                enum_of(given(&self.period))?
            },
            date: parse(given(&self.date))?,
            from,
            to,
            by: enum_of(given(&self.by))?.unwrap_or_default(),
            department: given(&self.department).map(str::to_string),
            ..StatsParams::default()
        })
    }
}

#[derive(Serialize)]
struct Bar {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    class: &'static str,
    title: String,
}

#[derive(Serialize)]
struct Label {
    x: f64,
    y: f64,
    text: String,
    anchor: &'static str,
}

/// A chart as the template draws it: bars and labels already placed.
#[derive(Serialize)]
struct Chart {
    width: f64,
    height: f64,
    bars: Vec<Bar>,
    labels: Vec<Label>,
}

const CHART_W: f64 = 640.0;

/// Per row, three bars: the mean working days taken, the promised and the statutory mean.
fn limits_chart(r: &Report, t: &dyn Fn(&str) -> String) -> Option<Chart> {
    let rows: Vec<_> = r
        .rows
        .iter()
        .filter(|row| row.mean_days.is_some())
        .collect();
    let max = rows
        .iter()
        .filter_map(|row| row.statutory_mean_days)
        .fold(0.0_f64, f64::max);
    if rows.is_empty() || max <= 0.0 {
        return None;
    }
    let (left, bar, gap) = (200.0, 12.0, 14.0);
    let scale = (CHART_W - left - 60.0) / max;
    let mut bars = Vec::new();
    let mut labels = Vec::new();
    let mut y = 10.0;
    for row in &rows {
        labels.push(Label {
            x: left - 8.0,
            y: y + bar * 1.5 + 4.0,
            text: row.name.chars().take(28).collect(),
            anchor: "end",
        });
        let series = [
            (row.mean_days, "bar-taken", "stats.mean_days"),
            (
                row.promised_mean_days,
                "bar-promised",
                "stats.promised_mean",
            ),
            (
                row.statutory_mean_days,
                "bar-statutory",
                "stats.statutory_mean",
            ),
        ];
        for (i, (v, class, key)) in series.iter().enumerate() {
            let v = v.unwrap_or(0.0);
            let yy = y + i as f64 * bar;
            bars.push(Bar {
                x: left,
                y: yy,
                w: (v * scale).max(1.0),
                h: bar - 2.0,
                class,
                title: format!("{}: {} – {v:.1}", row.name, t(key)),
            });
            labels.push(Label {
                x: left + v * scale + 4.0,
                y: yy + bar - 3.0,
                text: format!("{v:.1}"),
                anchor: "start",
            });
        }
        y += 3.0 * bar + gap;
    }
    Some(Chart {
        width: CHART_W,
        height: y,
        bars,
        labels,
    })
}

/// Per period, two bars: applications received and cases decided.
fn flow_chart(r: &Report, t: &dyn Fn(&str) -> String) -> Option<Chart> {
    if r.rows.is_empty() || matches!(r.by, Grouping::Procedure | Grouping::Department) {
        return None;
    }
    let max = r
        .rows
        .iter()
        .map(|row| row.received.max(row.decided))
        .max()
        .unwrap_or(0);
    if max <= 0 {
        return None;
    }
    let (top, bottom, height) = (10.0, 40.0, 200.0);
    let slot = (CHART_W - 20.0) / r.rows.len() as f64;
    let w = (slot / 2.0 - 1.0).max(1.0);
    let scale = (height - top - bottom) / max as f64;
    let mut bars = Vec::new();
    let mut labels = Vec::new();
    let every = (r.rows.len() / 12).max(1);
    for (i, row) in r.rows.iter().enumerate() {
        let x = 10.0 + i as f64 * slot;
        for (j, (v, class, key)) in [
            (row.received, "bar-received", "stats.received"),
            (row.decided, "bar-decided", "stats.decided"),
        ]
        .into_iter()
        .enumerate()
        {
            let h = v as f64 * scale;
            bars.push(Bar {
                x: x + j as f64 * (w + 1.0),
                y: height - bottom - h,
                w,
                h: h.max(0.5),
                class,
                title: format!("{}: {} {v}", row.name, t(key)),
            });
        }
        if i % every == 0 {
            labels.push(Label {
                x: x + w,
                y: height - bottom + 14.0,
                text: row.name.clone(),
                anchor: "middle",
            });
        }
    }
    Some(Chart {
        width: CHART_W,
        height,
        bars,
        labels,
    })
}

/// The statistics page, or one of its tables as CSV (`csv=rows|steps|groups`).
pub(in crate::web) async fn stats(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(f): Query<StatsForm>,
) -> Response {
    let q = PageQuery::lang(f.lang.clone());
    let (actor, p) = match staff(&s, &headers, &q, Permission::Staff, &Method::GET).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let lang = p.lang;
    let rules = s.engine.rules();
    let today = rules.calendar.local_date(s.engine.now());
    let departments: Vec<serde_json::Value> = rules
        .departments
        .values()
        .map(|d| serde_json::json!({ "id": d.id, "name": localized(&d.name, &d.names, lang) }))
        .collect();
    let p = page::Page {
        template: "stats.html",
        ..p
    }
    .with("departments", departments);
    let query = f
        .params()
        .map_err(|bad| page::label(lang, "stats.bad_value").replace("{value}", &bad))
        .and_then(|params| params.query(today).map_err(|e| e.message));
    let query = match query {
        Ok(q) => q,
        Err(message) => {
            let p = p.status(StatusCode::BAD_REQUEST).with("error", message);
            return show(p, &f, None, today);
        }
    };
    let found = s.pool.call(move |e| e.statistics(&actor, &query)).await;
    let mut report = match found {
        Ok(r) => r,
        Err(e) => {
            let e: crate::error::ApiError = e.into();
            return refused(p, e.status);
        }
    };
    // Names in the reader's language.
    for row in &mut report.rows {
        match report.by {
            Grouping::Procedure => {
                if let Some(pr) = rules.procedures.get(&row.key) {
                    row.name = localized(&pr.name, &pr.names, lang).to_string();
                }
            }
            Grouping::Department => {
                if let Some(d) = rules.departments.get(&row.key) {
                    row.name = localized(&d.name, &d.names, lang).to_string();
                }
            }
            _ => {}
        }
    }
    report.total.name = page::label(lang, "stats.total");
    if let Some(table) = given(&f.csv) {
        let table = if matches!(table, "steps" | "groups") {
            table
        } else {
            "rows"
        };
        return match crate::api::stats::to_csv(&report, table) {
            Ok(body) => {
                let name = format!("guichet-{table}-{}-{}.csv", report.from, report.to);
                let mut r = body.into_response();
                let h = r.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
                    h.insert(header::CONTENT_DISPOSITION, v);
                }
                page::secure(h);
                r
            }
            Err(_) => refused(p, StatusCode::INTERNAL_SERVER_ERROR),
        };
    }
    show(p, &f, Some(report), today)
}

fn show(p: page::Page, f: &StatsForm, report: Option<Report>, today: NaiveDate) -> Response {
    let lang = p.lang;
    let t = |key: &str| page::label(lang, key);
    let (limits, flow) = match &report {
        Some(r) => (limits_chart(r, &t), flow_chart(r, &t)),
        None => (None, None),
    };
    // The same choices again, for the links to the CSV files and the form.
    let query = [
        ("period", given(&f.period)),
        ("date", given(&f.date)),
        ("from", given(&f.from)),
        ("to", given(&f.to)),
        ("by", given(&f.by)),
        ("department", given(&f.department)),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", page::url_encode(v))))
    .collect::<Vec<_>>()
    .join("&");
    let (month_from, month_to) = Period::Month.range(today);
    p.with("r", report)
        .with("limits_chart", limits)
        .with("flow_chart", flow)
        .with("query", query)
        .with(
            "form",
            serde_json::json!({
                "period": given(&f.period).unwrap_or("month"),
                "date": given(&f.date).map(str::to_string).unwrap_or_else(|| today.to_string()),
                "from": given(&f.from).map(str::to_string).unwrap_or_else(|| month_from.to_string()),
                "to": given(&f.to).map(str::to_string).unwrap_or_else(|| month_to.to_string()),
                "by": given(&f.by).unwrap_or("procedure"),
                "department": given(&f.department),
                "ranged": given(&f.from).is_some() || given(&f.to).is_some(),
            }),
        )
        .into_response()
}
