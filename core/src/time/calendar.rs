//! Working-day arithmetic on an office calendar: weekly rest days, public holidays and
//! make-up working days (调休) per year, office hours, and the office's time zone (an IANA
//! name with its daylight saving, or a fixed UTC offset).
//!
//! Rules (DOMAIN.md): the day a limit starts from (acceptance) is not counted; a limit of
//! N working days ends at the close of office on the N-th working day after it, so a limit
//! never ends on a non-working day. A limit of 0 days is an immediate item: due at the
//! close of office on the start day (or the next working day if that is not one).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use serde::{Deserialize, Serialize};

/// A calendar as declared by `calendar(#{ ... })` in a script.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    /// Offset of local office time from UTC, e.g. `+08:00` (when no `time_zone`).
    #[serde(default = "default_offset")]
    pub utc_offset: String,
    /// The office's time zone by IANA name (`Asia/Shanghai`, `Europe/Paris`), daylight
    /// saving included; takes precedence over `utc_offset`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Weekly rest days: `mon` … `sun`.
    #[serde(default = "default_rest")]
    pub rest_days: Vec<String>,
    /// Opening and closing time, local: `["09:00", "17:30"]`.
    #[serde(default = "default_hours")]
    pub office_hours: [String; 2],
    /// Per year: public holidays and make-up working days (YYYY-MM-DD).
    #[serde(default)]
    pub years: BTreeMap<String, YearSpec>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YearSpec {
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Weekend days declared working days (调休).
    #[serde(default)]
    pub workdays: Vec<String>,
}

fn default_offset() -> String {
    "+08:00".into()
}
fn default_rest() -> Vec<String> {
    vec!["sat".into(), "sun".into()]
}
fn default_hours() -> [String; 2] {
    ["09:00".into(), "17:30".into()]
}

/// Where the office's clocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Zone {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    zone: Zone,
    /// Weekly rest days, indexed from Monday.
    rest: [bool; 7],
    opens: NaiveTime,
    closes: NaiveTime,
    holidays: BTreeSet<NaiveDate>,
    workdays: BTreeSet<NaiveDate>,
    years: BTreeSet<i32>,
}

impl Default for Calendar {
    /// Monday to Friday, 09:00–17:30 at UTC+8, no holiday table.
    fn default() -> Self {
        Calendar::from_spec(&CalendarSpec {
            utc_offset: default_offset(),
            time_zone: None,
            rest_days: default_rest(),
            office_hours: default_hours(),
            years: BTreeMap::new(),
        })
        .unwrap_or_else(|_| unreachable!("the default calendar is valid"))
    }
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

impl Calendar {
    /// Builds a calendar, listing every problem in the declaration.
    pub fn from_spec(spec: &CalendarSpec) -> Result<Calendar, Vec<String>> {
        let mut errs = Vec::new();
        let offset = parse_offset(&spec.utc_offset).unwrap_or_else(|| {
            errs.push(format!(
                "utc_offset '{}' must look like +08:00",
                spec.utc_offset
            ));
            FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!())
        });
        let zone = match &spec.time_zone {
            None => Zone::Fixed(offset),
            Some(name) => match name.parse::<chrono_tz::Tz>() {
                Ok(tz) => Zone::Named(tz),
                Err(_) => {
                    errs.push(format!(
                        "time_zone '{name}' is not an IANA time zone name (like Asia/Shanghai)"
                    ));
                    Zone::Fixed(offset)
                }
            },
        };
        let mut rest = [false; 7];
        for d in &spec.rest_days {
            match weekday(d) {
                Some(w) => rest[w.num_days_from_monday() as usize] = true,
                None => errs.push(format!(
                    "rest day '{d}' must be one of mon, tue, wed, thu, fri, sat, sun"
                )),
            }
        }
        if rest.iter().all(|r| *r) {
            errs.push("every weekday is a rest day".into());
        }
        let time = |s: &str, errs: &mut Vec<String>| {
            NaiveTime::parse_from_str(s, "%H:%M").unwrap_or_else(|_| {
                errs.push(format!("office hour '{s}' must be HH:MM"));
                NaiveTime::MIN
            })
        };
        let opens = time(&spec.office_hours[0], &mut errs);
        let closes = time(&spec.office_hours[1], &mut errs);
        if opens >= closes {
            errs.push("office hours must open before they close".into());
        }
        let (mut holidays, mut workdays, mut years) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for (y, ys) in &spec.years {
            let Ok(year) = y.parse::<i32>() else {
                errs.push(format!("year '{y}' is not a year"));
                continue;
            };
            years.insert(year);
            for (list, set, what) in [
                (&ys.holidays, &mut holidays, "holiday"),
                (&ys.workdays, &mut workdays, "workday"),
            ] {
                for d in list {
                    match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
                        Ok(date) if date.year() == year => {
                            set.insert(date);
                        }
                        Ok(_) => errs.push(format!("{what} {d} is listed under year {y}")),
                        Err(_) => errs.push(format!("{what} '{d}' must be YYYY-MM-DD")),
                    }
                }
            }
        }
        for d in holidays.intersection(&workdays) {
            errs.push(format!("{d} is both a holiday and a make-up working day"));
        }
        if errs.is_empty() {
            Ok(Calendar {
                zone,
                rest,
                opens,
                closes,
                holidays,
                workdays,
                years,
            })
        } else {
            Err(errs)
        }
    }

    /// Years the calendar has a table for.
    pub fn years(&self) -> &BTreeSet<i32> {
        &self.years
    }

    /// A warning for each year in `range` without a table (only the weekly rule applies).
    pub fn missing_years(&self, range: std::ops::RangeInclusive<i32>) -> Vec<i32> {
        range.filter(|y| !self.years.contains(y)).collect()
    }

    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        !self.holidays.contains(&d) && !self.rest[d.weekday().num_days_from_monday() as usize]
    }

    /// An instant as the office's local date and time.
    pub fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self.zone {
            Zone::Fixed(o) => t.with_timezone(&o).naive_local(),
            Zone::Named(tz) => t.with_timezone(&tz).naive_local(),
        }
    }

    /// A local date and time as an instant. Daylight saving: a time the clocks skip is
    /// taken an hour later, a time they repeat at its first occurrence.
    pub fn instant(&self, l: NaiveDateTime) -> Option<DateTime<Utc>> {
        fn pick<T: TimeZone>(z: &T, l: NaiveDateTime) -> Option<DateTime<Utc>> {
            z.from_local_datetime(&l)
                .earliest()
                .or_else(|| z.from_local_datetime(&(l + Duration::hours(1))).earliest())
                .map(|x| x.with_timezone(&Utc))
        }
        match self.zone {
            Zone::Fixed(o) => pick(&o, l),
            Zone::Named(tz) => pick(&tz, l),
        }
    }

    /// The local date of an instant.
    pub fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        self.local(t).date()
    }

    /// An instant as the office's local date and time (`2026-11-30 14:05`), for people.
    pub fn local_time_text(&self, t: DateTime<Utc>) -> String {
        self.local(t).format("%Y-%m-%d %H:%M").to_string()
    }

    /// Opening of office on a local date, as an instant.
    pub fn opening_of(&self, d: NaiveDate) -> DateTime<Utc> {
        self.at(d, self.opens)
    }

    /// Close of office on a local date, as an instant.
    pub fn close_of(&self, d: NaiveDate) -> DateTime<Utc> {
        self.at(d, self.closes)
    }

    fn at(&self, d: NaiveDate, t: NaiveTime) -> DateTime<Utc> {
        self.instant(d.and_time(t))
            .unwrap_or_else(|| d.and_time(t).and_utc())
    }

    /// The `n`-th working day after `start` (`start` itself is not counted); for `n == 0`,
    /// `start` if it is a working day, else the next one.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> NaiveDate {
        let mut d = start;
        if n == 0 {
            while !self.is_working_day(d) {
                d = d.succ_opt().unwrap_or(d);
            }
            return d;
        }
        let mut left = n;
        while left > 0 {
            d = match d.succ_opt() {
                Some(x) => x,
                None => return d,
            };
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }

    /// When a limit of `days` working days that starts at `from` ends.
    pub fn deadline(&self, from: DateTime<Utc>, days: u32) -> DateTime<Utc> {
        self.close_of(self.add_working_days(self.local_date(from), days))
    }

    /// Adds working hours within office hours (for same-day items).
    pub fn add_working_hours(&self, from: DateTime<Utc>, minutes: u32) -> DateTime<Utc> {
        let mut left = Duration::minutes(minutes as i64);
        let mut local = self.local(from);
        loop {
            let d = local.date();
            if self.is_working_day(d) {
                let start = local.max(d.and_time(self.opens));
                let end = d.and_time(self.closes);
                if start < end {
                    let avail = end - start;
                    if left <= avail {
                        return self.instant(start + left).unwrap_or(from);
                    }
                    left -= avail;
                }
            }
            local = match d.succ_opt() {
                Some(n) => n.and_time(NaiveTime::MIN),
                None => return from,
            };
        }
    }

    /// Working minutes from `a` to `b`: the time inside office hours on working days (0
    /// if `b` is not after `a`). The measure of how long a step took.
    pub fn working_minutes_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
        if b <= a {
            return 0;
        }
        let (from, to) = (self.local(a), self.local(b));
        let mut total = 0;
        let mut d = from.date();
        while d <= to.date() {
            if self.is_working_day(d) {
                let start = from.max(d.and_time(self.opens));
                let end = to.min(d.and_time(self.closes));
                if start < end {
                    total += (end - start).num_minutes().max(0) as u64;
                }
            }
            d = match d.succ_opt() {
                Some(n) => n,
                None => break,
            };
        }
        total
    }

    /// Working days from `a` to `b`, counting the days after `a` up to and including `b`
    /// (0 if `b` is not after `a`). The measure of a limit used so far.
    pub fn working_days_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> u32 {
        let (mut d, end) = (self.local_date(a), self.local_date(b));
        let mut n = 0;
        while d < end {
            d = match d.succ_opt() {
                Some(x) => x,
                None => break,
            };
            if self.is_working_day(d) {
                n += 1;
            }
        }
        n
    }
}
