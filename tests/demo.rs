//! The demo: a shortened simulated stretch of the example office, whose statistics are
//! checked against figures this test works out itself from the cases it generated.

use std::collections::BTreeMap;
use std::sync::Arc;

use guichet::config::Config;
use guichet_core::case::CaseStatus;
use guichet_core::clock::{Clock, ManualClock};
use guichet_core::stats::{Grouping, StatsQuery};
use guichet_core::Actor;

#[derive(Default, Debug, PartialEq)]
struct Expected {
    received: i64,
    accepted: i64,
    decided: i64,
    withdrawn: i64,
    days: Vec<u32>,
    on_time_promised: i64,
    ratings: i64,
    supplements: i64,
}

#[test]
fn a_simulated_month_gives_the_figures_its_cases_say() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config {
        scripts: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts"),
        data: tmp.path().join("data"),
        ..Config::default()
    };
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T00:00:00+08:00")
        .unwrap()
        .to_utc();
    let clock = Arc::new(ManualClock::new(start));
    let e = guichet::server::open_with_clock(&cfg, clock.clone()).unwrap();
    let plan = guichet::demo::DemoPlan {
        days: 45,
        per_day: 0.8,
        seed: 7,
    };
    let report = guichet::demo::run(&e, &clock, &plan).unwrap();
    assert!(report.cases > 100, "{report:?}");
    assert!(report.actions > 3 * report.cases, "{report:?}");
    assert!(
        report.refused * 20 < report.actions,
        "the simulation acts as staff can: {report:?}"
    );

    // Every figure worked out again from the cases themselves.
    let rules = e.rules();
    let cal = &rules.calendar;
    let (from, to) = (cal.local_date(start), cal.local_date(clock.now()));
    let mut want: BTreeMap<String, Expected> = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    for id in 1..e.store().next_case_id().unwrap() {
        let Some(c) = e.store().case(id).unwrap() else {
            continue;
        };
        *statuses.entry(format!("{:?}", c.status)).or_insert(0) += 1;
        let x = want.entry(c.procedure.clone()).or_default();
        let within = |t: chrono::DateTime<chrono::Utc>| {
            let d = cal.local_date(t);
            d >= from && d <= to
        };
        x.received += i64::from(within(c.submitted_at));
        x.accepted += i64::from(c.accepted_at.is_some_and(within));
        if let (Some(acc), Some(dec)) = (c.accepted_at, c.decided_at) {
            if matches!(c.status, CaseStatus::Approved | CaseStatus::Rejected) && within(dec) {
                x.decided += 1;
                let stopped: u32 = c.clock_stops.iter().map(|s| s.days).sum();
                x.days
                    .push(cal.working_days_between(acc, dec).saturating_sub(stopped));
                x.on_time_promised += i64::from(c.promised_due.is_none_or(|d| dec <= d));
            }
        }
        if c.status == CaseStatus::Withdrawn && c.decided_at.is_some_and(within) {
            x.withdrawn += 1;
        }
        x.ratings += i64::from(c.rating.as_ref().is_some_and(|r| within(r.at)));
        x.supplements += e
            .history(id)
            .unwrap()
            .iter()
            .filter(|h| h.action == "supplement_requested" && within(h.at))
            .count() as i64;
    }
    // The simulated office did a bit of everything.
    for s in [
        "Approved",
        "Rejected",
        "Withdrawn",
        "NotAccepted",
        "InProgress",
    ] {
        assert!(statuses.contains_key(s), "no {s} case: {statuses:?}");
    }

    let r = e
        .statistics(
            &Actor::Admin,
            &StatsQuery {
                from,
                to,
                by: Grouping::Procedure,
                procedure: None,
                department: None,
            },
        )
        .unwrap();
    let mut checked = 0;
    for row in &r.rows {
        let x = &want[&row.key];
        let got = (
            row.received,
            row.accepted,
            row.decided,
            row.withdrawn,
            row.supplements,
            row.ratings.iter().sum::<i64>(),
        );
        let expected = (
            x.received,
            x.accepted,
            x.decided,
            x.withdrawn,
            x.supplements,
            x.ratings,
        );
        assert_eq!(got, expected, "{}", row.key);
        if x.decided > 0 {
            let mean = x.days.iter().sum::<u32>() as f64 / x.days.len() as f64;
            assert!((row.mean_days.unwrap() - mean).abs() < 1e-9, "{}", row.key);
            let on_time = x.on_time_promised as f64 / x.decided as f64;
            assert!(
                (row.on_time_promised.unwrap() - on_time).abs() < 1e-9,
                "{}",
                row.key
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "decisions in most procedures: {checked}");
    // The planning bureau's table, as in the article: promised against actual.
    let q = StatsQuery {
        from,
        to,
        by: Grouping::Procedure,
        procedure: None,
        department: Some("planning".into()),
    };
    let planning = e.statistics(&Actor::Admin, &q).unwrap();
    assert_eq!(planning.rows.len(), 2);
    let t = &planning.total;
    assert!(
        t.mean_days.unwrap() < t.promised_mean_days.unwrap(),
        "{t:?}"
    );
    assert!(t.speed_up.unwrap() > 0.0);
}
