//! Working-day arithmetic on the shipped Chinese calendar (scripts/calendar.rhai).

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use guichet_core::calendar::Calendar;

fn shipped() -> Calendar {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
    guichet_core::script::load_dir(&dir)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .calendar
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Local Beijing time `YYYY-MM-DD HH:MM` as an instant.
fn bj(s: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .from_local_datetime(&naive)
        .unwrap()
        .with_timezone(&Utc)
}

#[track_caller]
fn check(start: &str, days: u32, expected: &str) {
    let cal = shipped();
    assert_eq!(
        cal.add_working_days(d(start), days),
        d(expected),
        "{start} + {days} working days"
    );
}

#[test]
fn spring_festival_2025_with_its_make_up_sunday_and_saturday() {
    // Accepted Friday 24 January: Sunday 26 January is a make-up working day.
    check("2025-01-24", 1, "2025-01-26");
    check("2025-01-24", 2, "2025-01-27");
    // 28 January to 4 February are holidays.
    check("2025-01-24", 3, "2025-02-05");
    check("2025-02-05", 3, "2025-02-08"); // Saturday 8 February is a make-up day
    check("2025-02-05", 4, "2025-02-10");
}

#[test]
fn national_day_2025() {
    check("2025-09-26", 1, "2025-09-28"); // make-up Sunday
    check("2025-09-26", 3, "2025-09-30");
    check("2025-09-26", 4, "2025-10-09"); // 1–8 October off
    check("2025-09-26", 6, "2025-10-11"); // make-up Saturday
    check("2025-09-26", 7, "2025-10-13");
}

#[test]
fn across_the_year_end() {
    // 1–3 January 2026 are off; Sunday 4 January is a make-up day.
    check("2025-12-31", 1, "2026-01-04");
    check("2025-12-30", 2, "2026-01-04");
    check("2025-12-31", 2, "2026-01-05");
}

#[test]
fn spring_festival_2026() {
    check("2026-02-13", 1, "2026-02-14"); // make-up Saturday
    check("2026-02-13", 2, "2026-02-24"); // 15–23 February off
    check("2026-02-27", 1, "2026-02-28"); // make-up Saturday
}

#[test]
fn zero_day_items_are_due_the_same_working_day() {
    check("2025-03-05", 0, "2025-03-05");
    // Accepted on a Saturday that is not a make-up day: due on the next working day,
    // which here is a make-up Sunday.
    check("2025-01-25", 0, "2025-01-26");
    check("2025-10-01", 0, "2025-10-09");
}

#[test]
fn the_day_of_acceptance_is_not_counted_and_limits_end_at_close_of_office() {
    let cal = shipped();
    // Accepted Monday 3 March 2025 at 16:00: five working days end Monday 10 March, 17:30.
    assert_eq!(
        cal.deadline(bj("2025-03-03 16:00"), 5),
        bj("2025-03-10 17:30")
    );
    // Late on Friday night in Beijing is still Friday, whatever UTC says.
    assert_eq!(
        cal.deadline(bj("2025-03-07 23:30"), 1),
        bj("2025-03-10 17:30")
    );
}

#[test]
fn working_hours_for_same_day_items() {
    let cal = shipped();
    assert_eq!(
        cal.add_working_hours(bj("2025-03-03 10:00"), 120),
        bj("2025-03-03 12:00")
    );
    // Friday 16:30 + 2 hours: one hour on Friday, one on Monday from opening.
    assert_eq!(
        cal.add_working_hours(bj("2025-03-07 16:30"), 120),
        bj("2025-03-10 10:00")
    );
    // Before opening counts from opening.
    assert_eq!(
        cal.add_working_hours(bj("2025-03-03 07:00"), 30),
        bj("2025-03-03 09:30")
    );
    // Across the Qingming holiday (4–6 April 2025).
    assert_eq!(
        cal.add_working_hours(bj("2025-04-03 17:00"), 60),
        bj("2025-04-07 09:30")
    );
}

#[test]
fn working_days_used_between_two_instants() {
    let cal = shipped();
    assert_eq!(
        cal.working_days_between(bj("2025-01-24 10:00"), bj("2025-02-05 10:00")),
        3
    );
    assert_eq!(
        cal.working_days_between(bj("2025-03-03 10:00"), bj("2025-03-03 17:00")),
        0
    );
    assert_eq!(
        cal.working_days_between(bj("2025-03-10 10:00"), bj("2025-03-03 17:00")),
        0
    );
}

#[test]
fn a_year_without_a_table_falls_back_to_the_weekly_rule_and_is_reported() {
    let cal = shipped();
    assert_eq!(cal.missing_years(2025..=2027), vec![2027]);
    // 1 January 2027 is a Friday: without a table it counts as a working day.
    check("2026-12-31", 1, "2027-01-01");
    check("2027-01-01", 1, "2027-01-04");
}

#[test]
fn bad_calendars_are_load_errors() {
    use guichet_core::calendar::{CalendarSpec, YearSpec};
    let mut spec: CalendarSpec = serde_json::from_value(serde_json::json!({})).unwrap();
    spec.utc_offset = "8".into();
    spec.rest_days = vec!["caturday".into()];
    spec.years.insert(
        "2025".into(),
        YearSpec {
            holidays: vec!["2026-01-01".into(), "2025-01-26".into()],
            workdays: vec!["2025-01-26".into()],
        },
    );
    let errs = Calendar::from_spec(&spec).unwrap_err().join("\n");
    for needle in [
        "utc_offset",
        "caturday",
        "listed under year 2025",
        "both a holiday and a make-up",
    ] {
        assert!(errs.contains(needle), "{needle} not in {errs}");
    }
}

#[test]
fn working_minutes_count_office_hours_on_working_days_only() {
    let c = shipped();
    // Same day, inside office hours.
    assert_eq!(
        c.working_minutes_between(bj("2026-03-02 10:00"), bj("2026-03-02 11:30")),
        90
    );
    // Before opening and after closing count nothing: a whole day is 09:00-17:30.
    assert_eq!(
        c.working_minutes_between(bj("2026-03-02 07:00"), bj("2026-03-02 20:00")),
        510
    );
    // Friday afternoon to Monday morning: the weekend counts nothing.
    assert_eq!(
        c.working_minutes_between(bj("2026-03-06 16:30"), bj("2026-03-09 10:00")),
        60 + 60
    );
    // Backwards is nothing; and it inverts add_working_hours.
    assert_eq!(
        c.working_minutes_between(bj("2026-03-09 10:00"), bj("2026-03-06 16:30")),
        0
    );
    let from = bj("2026-03-06 16:30");
    assert_eq!(
        c.working_minutes_between(from, c.add_working_hours(from, 600)),
        600
    );
}

#[test]
fn a_time_zone_by_name_follows_daylight_saving() {
    use guichet_core::calendar::CalendarSpec;
    let spec = |tz: Option<&str>| CalendarSpec {
        utc_offset: "+01:00".into(),
        time_zone: tz.map(str::to_string),
        rest_days: vec!["sat".into(), "sun".into()],
        office_hours: ["09:00".into(), "17:30".into()],
        years: Default::default(),
    };
    let paris = Calendar::from_spec(&spec(Some("Europe/Paris"))).unwrap();
    let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    // Winter (UTC+1), then summer (UTC+2) after the last Sunday of March.
    assert_eq!(paris.close_of(d("2026-03-27")), utc("2026-03-27T16:30:00Z"));
    assert_eq!(paris.close_of(d("2026-03-30")), utc("2026-03-30T15:30:00Z"));
    // A limit across the change ends at 17:30 local time all the same.
    let friday = utc("2026-03-27T09:00:00Z"); // 10:00 in Paris
    assert_eq!(paris.deadline(friday, 1), utc("2026-03-30T15:30:00Z"));
    assert_eq!(
        paris.local_time_text(utc("2026-03-30T07:00:00Z")),
        "2026-03-30 09:00"
    );
    // The fixed offset does not move.
    let fixed = Calendar::from_spec(&spec(None)).unwrap();
    assert_eq!(fixed.close_of(d("2026-03-30")), utc("2026-03-30T16:30:00Z"));
    // A name that is no time zone is refused.
    let err = Calendar::from_spec(&spec(Some("Mars/Olympus"))).unwrap_err();
    assert!(err[0].contains("not an IANA time zone name"), "{err:?}");
}

#[test]
fn short_limits_warn_at_the_real_share_of_their_working_time() {
    use guichet_core::limits::WarningPolicy;
    let cal = shipped();
    let policy = WarningPolicy::default(); // 75 %
    let at = |start: &str, days: u32| {
        let t = policy.thresholds(&cal, bj(start), days);
        cal.local_time_text(t[0].1)
    };
    // One day from Monday 10:00 (960 working minutes to Tuesday 17:30): Tuesday afternoon,
    // not the deadline.
    assert_eq!(at("2026-03-02 10:00", 1), "2026-03-03 13:30");
    // An immediate item accepted at 10:00 (due 17:30): in the afternoon, not at once.
    assert_eq!(at("2026-03-02 10:00", 0), "2026-03-02 15:38");
    // Longer limits keep whole days: the close of the 4th working day of 5.
    assert_eq!(at("2026-03-02 10:00", 5), "2026-03-06 17:30");
}
