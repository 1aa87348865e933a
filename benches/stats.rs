//! Statistics and case search at scale.
//!
//! `cargo bench --bench stats -- [DECIDED [CASES [REPEAT]]]` (defaults 1,000,000, 100,000
//! and 50):
//! - the contributions of DECIDED decided cases spread over a year of the example office
//!   (procedures, departments, steps and groups as the scripts declare them, ratings on
//!   most) summed into the engine's table, then the year's report by procedure, by
//!   department, by month and by day, and one week's: p50/p95 of the engine-side time
//!   over REPEAT calls each (what `Engine::statistics` reads is this table);
//! - CASES cases submitted through the engine into a store on disk (one procedure, a
//!   hundred applicants, one in a hundred refused at the window), then case searches as
//!   `GET /api/cases` makes them: the first page of a selective filter (the refused
//!   ones), of an applicant's cases (through their index), of everything, and the worst
//!   case, a text no case matches (read until the scan limit): p50/p95 over REPEAT.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use guichet::config::Config;
use guichet_core::case::{CaseStatus, Data};
use guichet_core::clock::ManualClock;
use guichet_core::engine::Submission;
use guichet_core::search::CaseSearch;
use guichet_core::stats::figures::{CaseFigures, Closing, StepTime, Timing};
use guichet_core::stats::{report, Grouping, StatsQuery, Table};
use guichet_core::Actor;

mod common;
use common::{q, status_mib};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A small deterministic generator: the bench needs spread, not quality.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn time<T>(repeat: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut lat = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let t = Instant::now();
        std::hint::black_box(f());
        lat.push(t.elapsed());
    }
    (q(&mut lat, 0.5), q(&mut lat, 0.95))
}

fn statistics(decided: usize, repeat: usize) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = guichet_core::script::load_dir(&root.join("scripts")).unwrap();
    let procs: Vec<_> = rules.procedures.values().collect();
    let first = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let mut rng = Lcg(7);
    let t = Instant::now();
    let mut table = Table::default();
    for i in 0..decided {
        let p = procs[i % procs.len()];
        let received = first + chrono::Duration::days(rng.next(350) as i64);
        let days = 1 + rng.next(u64::from(p.statutory_days.max(2))) as u32;
        let closed = received + chrono::Duration::days(i64::from(days) * 7 / 5);
        let steps = p
            .steps
            .iter()
            .filter_map(|s| s.group.clone().map(|g| (s.id.clone(), g)))
            .take(4)
            .map(|(step, group)| StepTime {
                step,
                group,
                day: closed,
                minutes: 30 + rng.next(2000),
            })
            .collect();
        let f = CaseFigures {
            procedure: p.id.clone(),
            department: p.department.clone(),
            received,
            accepted: Some(received),
            closed: Some(Closing {
                status: if rng.next(10) == 0 {
                    CaseStatus::Rejected
                } else {
                    CaseStatus::Approved
                },
                day: closed,
            }),
            timing: Some(Timing {
                days,
                promised: p.promised_days,
                statutory: p.statutory_days,
                on_time_promised: days <= p.promised_days,
                on_time_statutory: days <= p.statutory_days,
            }),
            supplements: Vec::new(),
            extensions: Vec::new(),
            cards_issued: Vec::new(),
            cards_answered: Vec::new(),
            steps,
            rating: (rng.next(10) < 6).then(|| (closed, 1 + rng.next(5) as u8)),
        };
        table.apply(None, Some(&f));
    }
    println!(
        "statistics: {decided} decided cases summed in {:?} into {} day cells, {} step cells; resident {:.0} MiB",
        t.elapsed(),
        table.cells.len(),
        table.steps.len(),
        status_mib("VmRSS:")
    );
    let open = Default::default();
    let year = |by| StatsQuery {
        from: first,
        to: NaiveDate::from_ymd_opt(2025, 12, 31).unwrap(),
        by,
        procedure: None,
        department: None,
    };
    let week = StatsQuery {
        from: NaiveDate::from_ymd_opt(2025, 6, 2).unwrap(),
        to: NaiveDate::from_ymd_opt(2025, 6, 8).unwrap(),
        by: Grouping::Procedure,
        procedure: None,
        department: None,
    };
    for (name, query) in [
        ("year by procedure", year(Grouping::Procedure)),
        ("year by department", year(Grouping::Department)),
        ("year by month", year(Grouping::Month)),
        ("year by day", year(Grouping::Day)),
        ("one week", week),
    ] {
        let (p50, p95) = time(repeat, || report(&table, &rules, &query, &open).unwrap());
        println!("  report {name:<20} p50 {p50:>10.2?}  p95 {p95:>10.2?}");
    }
}

fn search(cases: usize, repeat: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let scripts = tmp.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("benches/deadlines/office.rhai"),
        scripts.join("office.rhai"),
    )
    .unwrap();
    let cfg = Config {
        scripts,
        data: tmp.path().join("data"),
        watch: false,
        ..Config::default()
    };
    let start = chrono::DateTime::parse_from_rfc3339("2025-01-02T10:00:00+08:00")
        .unwrap()
        .to_utc();
    let clock = Arc::new(ManualClock::new(start));
    let engine = guichet::server::open_with_clock(&cfg, clock.clone()).unwrap();
    let staff = Actor::Staff("a".into());
    let t = Instant::now();
    for i in 0..cases {
        let sub: Submission = serde_json::from_value(serde_json::json!({
            "procedure": "bench.deadline",
            "applicant": { "id": format!("A{}", i % 100), "name": format!("Applicant {i}") },
        }))
        .unwrap();
        let c = engine.submit(&Actor::Public, sub).unwrap().cases.remove(0);
        if i % 100 == 0 {
            let task = c.tasks[0].id.clone();
            engine
                .complete(&staff, &task, "reject", None, Data::new())
                .unwrap();
        }
        clock.advance(chrono::Duration::seconds(20));
    }
    engine.flush().unwrap();
    println!(
        "search: {cases} cases submitted in {:?}; resident {:.0} MiB",
        t.elapsed(),
        status_mib("VmRSS:")
    );
    let filter = |f: serde_json::Value| -> CaseSearch { serde_json::from_value(f).unwrap() };
    for (name, f) in [
        (
            "refused (1 in 100)",
            filter(serde_json::json!({ "status": "not_accepted" })),
        ),
        (
            "one applicant",
            filter(serde_json::json!({ "applicant": "A42" })),
        ),
        ("everything", filter(serde_json::json!({}))),
        (
            "text nobody has",
            filter(serde_json::json!({ "q": "nobody has this" })),
        ),
    ] {
        let mut found = 0;
        let (p50, p95) = time(repeat, || {
            let page = engine.search_cases(&staff, &f).unwrap();
            found = page.cases.len();
            page
        });
        println!(
            "  search {name:<20} p50 {p50:>10.2?}  p95 {p95:>10.2?}  ({found} on the first page)"
        );
    }
}

fn main() {
    guichet::server::disable_huge_pages();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let decided = args.first().copied().unwrap_or(1_000_000);
    let cases = args.get(1).copied().unwrap_or(100_000);
    let repeat = args.get(2).copied().unwrap_or(50);
    statistics(decided, repeat);
    search(cases, repeat);
}
