//! Hour-of-week history, and the week-by-hour plan made from it.
//!
//! [`History`] keeps, per department and per absolute hour (UTC, hours since the Unix epoch),
//! the totals of the chats that arrived in that hour ([`HourTotals`]). From it:
//! - [`week_plan`]: per department, a 7 × 24 grid in the user's local time (a fixed
//!   [`UtcOffset`]) with, per cell, the arrivals per hour, the handle time, the visitors'
//!   patience and the agents each target needs;
//! - [`forecast`]: the same figures for one coming hour, from the same hour of the previous
//!   weeks (what `acquire_agents_forecast` exposes).
//!
//! # How a cell is made
//! A cell (Monday 09:00, say) takes the last `weeks` occurrences of its hour (the same hour of
//! each week): in a week plan, those before the hour of the newest chat in the history (that
//! hour is left out, as an export or a capture usually ends part-way through it); in a
//! forecast, those before the hour forecast. Occurrences before the history's first hour are
//! not counted (no data is not zero demand). Then:
//! - arrivals per hour: the mean of the occurrences' arrivals, or, with a percentile P, the P-th
//!   percentile of them (linear between the two nearest ranks, as a spreadsheet's
//!   PERCENTILE.INC): plan with the 90th to staff for a busier-than-usual week;
//! - handle time: the answered chats' durations summed over the occurrences, divided by their
//!   number; the department's over the whole window when no chat was answered in the cell;
//! - patience: the maximum-likelihood estimate for exponential patience over the occurrences,
//!   the time in queue of every chat (answered or not) divided by the number abandoned; none
//!   while nobody abandoned;
//! - agents required per target: Erlang A with that patience when there is one (see
//!   [`Model::for_patience`]), else Erlang C.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use super::erlang_a::Model;
use super::{StaffingError, Target};

/// Hours in a week.
pub const HOURS_PER_WEEK: i64 = 168;

/// Most weeks a plan looks back (a year and a day, as the store keeps).
pub const MAX_WEEKS: u32 = 53;

/// Weeks a plan looks back unless told otherwise.
pub const DEFAULT_WEEKS: u32 = 4;

/// What arrived in one hour of one department.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HourTotals {
    /// Chats that arrived (by their start) in the hour, answered or not.
    pub arrivals: u64,
    /// Of them, chats an agent answered and whose duration is known.
    pub answered: u64,
    /// Of them, chats that closed without an answer and whose duration is known.
    pub abandoned: u64,
    /// Sum of the answered chats' durations (their handle times), seconds.
    pub handle_seconds: f64,
    /// Sum of the times in queue of the answered and abandoned chats, seconds: the wait of an
    /// answered chat, the duration of an abandoned one (start to close).
    pub queue_seconds: f64,
}

impl HourTotals {
    /// Count one closed chat. `wait_seconds` is its wait when an agent answered it, `None`
    /// when nobody did (the caller decides: a close with no wait, or a zero wait and no agent,
    /// was not answered); `duration_seconds` is the chat's duration.
    ///
    /// An answered chat adds its duration as handle time and its wait as time in queue; an
    /// abandoned one adds its duration as time in queue (a visitor who left the page without
    /// closing the chat stays "in queue" until the chat times out, which inflates the patience).
    /// A chat without a duration, or with a wait or duration that is negative or not finite,
    /// counts as an arrival only.
    pub fn add_close(&mut self, wait_seconds: Option<f64>, duration_seconds: Option<f64>) {
        self.arrivals += 1;
        let usable = |x: &f64| x.is_finite() && *x >= 0.0;
        let Some(duration) = duration_seconds.filter(usable) else {
            return;
        };
        match wait_seconds {
            Some(wait) if usable(&wait) => {
                self.answered += 1;
                self.handle_seconds += duration;
                self.queue_seconds += wait;
            }
            Some(_) => {}
            None => {
                self.abandoned += 1;
                self.queue_seconds += duration;
            }
        }
    }

    /// Adds `other` to these totals.
    pub fn merge(&mut self, other: &HourTotals) {
        self.arrivals += other.arrivals;
        self.answered += other.answered;
        self.abandoned += other.abandoned;
        self.handle_seconds += other.handle_seconds;
        self.queue_seconds += other.queue_seconds;
    }
}

/// The hour (hours since the Unix epoch, UTC) of a time in Unix seconds; `None` when the time
/// is not finite or far outside any calendar.
pub fn hour_of(unix_seconds: f64) -> Option<i64> {
    let hour = (unix_seconds / 3600.0).floor();
    (hour.is_finite() && hour.abs() < 1e15).then_some(hour as i64)
}

/// Per department and per hour, the totals of the chats that arrived; and the hours it covers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    departments: BTreeMap<String, BTreeMap<i64, HourTotals>>,
    /// The first and the last hour anything was added for.
    covered: Option<(i64, i64)>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the department's hours, each `(hour, totals)` as [`History::add`] does, in one bulk
    /// build of its map where the department has none yet (a snapshot's load).
    pub fn add_hours(
        &mut self,
        department: &str,
        hours: impl IntoIterator<Item = (i64, HourTotals)>,
    ) {
        match self.departments.get_mut(department) {
            Some(existing) if !existing.is_empty() => {
                for (hour, totals) in hours {
                    existing.entry(hour).or_default().merge(&totals);
                }
            }
            _ => {
                // Summed per hour, as single adds would: a repeated hour merges.
                let mut sorted: Vec<(i64, HourTotals)> = hours.into_iter().collect();
                sorted.sort_by_key(|(hour, _)| *hour);
                let mut merged: Vec<(i64, HourTotals)> = Vec::with_capacity(sorted.len());
                for (hour, totals) in sorted {
                    match merged.last_mut() {
                        Some((last, sum)) if *last == hour => sum.merge(&totals),
                        _ => merged.push((hour, totals)),
                    }
                }
                let built: BTreeMap<i64, HourTotals> = merged.into_iter().collect();
                if built.is_empty() {
                    return;
                }
                self.departments.insert(department.to_owned(), built);
            }
        }
        let Some(hours) = self.departments.get(department) else {
            return;
        };
        if let (Some((&first, _)), Some((&last, _))) =
            (hours.first_key_value(), hours.last_key_value())
        {
            self.covered = Some(match self.covered {
                Some((a, b)) => (a.min(first), b.max(last)),
                None => (first, last),
            });
        }
    }

    /// Adds `totals` to the department's hour (hours since the Unix epoch, UTC).
    pub fn add(&mut self, department: &str, hour: i64, totals: &HourTotals) {
        let hours = match self.departments.get_mut(department) {
            Some(hours) => hours,
            None => self.departments.entry(department.to_owned()).or_default(),
        };
        hours.entry(hour).or_default().merge(totals);
        self.covered = Some(match self.covered {
            Some((first, last)) => (first.min(hour), last.max(hour)),
            None => (hour, hour),
        });
    }

    /// Counts one closed chat that arrived at `arrived_at` (Unix seconds), as
    /// [`HourTotals::add_close`]; false (and nothing counted) when the time is not usable.
    pub fn add_close(
        &mut self,
        department: &str,
        arrived_at: f64,
        wait_seconds: Option<f64>,
        duration_seconds: Option<f64>,
    ) -> bool {
        let Some(hour) = hour_of(arrived_at) else {
            return false;
        };
        let mut totals = HourTotals::default();
        totals.add_close(wait_seconds, duration_seconds);
        self.add(department, hour, &totals);
        true
    }

    /// Every (department, hour, totals), by department and hour.
    pub fn entries(&self) -> impl Iterator<Item = (&str, i64, &HourTotals)> {
        self.departments
            .iter()
            .flat_map(|(d, hours)| hours.iter().map(move |(h, t)| (d.as_str(), *h, t)))
    }

    /// Sets the first and the last hour covered, as a snapshot of the history had them.
    pub fn set_covered(&mut self, covered: Option<(i64, i64)>) {
        self.covered = covered;
    }

    /// The department's totals in `hour` (zero when nothing arrived).
    pub fn totals(&self, department: &str, hour: i64) -> HourTotals {
        self.departments
            .get(department)
            .and_then(|hours| hours.get(&hour))
            .copied()
            .unwrap_or_default()
    }

    /// The departments, in order.
    pub fn departments(&self) -> impl Iterator<Item = &str> {
        self.departments.keys().map(String::as_str)
    }

    /// The first hour anything was added for: what came before is unknown, not zero.
    pub fn first_hour(&self) -> Option<i64> {
        self.covered.map(|(first, _)| first)
    }

    /// The hour of the newest chat.
    pub fn newest_hour(&self) -> Option<i64> {
        self.covered.map(|(_, last)| last)
    }

    /// Drops the hours before `hour` (keeping [`History::first_hour`] as it was), to bound the
    /// memory of a long history to the weeks a plan reads.
    pub fn forget_before(&mut self, hour: i64) {
        for hours in self.departments.values_mut() {
            // Most calls have nothing to drop: the split, and the drop of the part before it,
            // only where an hour is older.
            if hours
                .first_key_value()
                .is_some_and(|(first, _)| *first < hour)
            {
                *hours = hours.split_off(&hour);
            }
        }
        self.departments.retain(|_, hours| !hours.is_empty());
    }

    fn pooled(&self, department: &str, from: i64, to: i64) -> HourTotals {
        let mut sum = HourTotals::default();
        if let Some(hours) = self.departments.get(department) {
            if from < to {
                for totals in hours.range(from..to).map(|(_, t)| t) {
                    sum.merge(totals);
                }
            }
        }
        sum
    }
}

/// Why an offset such as `+02:00` was refused.
#[derive(Clone, Debug, Error, PartialEq)]
#[error("UTC offset {0:?} is not ±HH:MM between -12:00 and +14:00, such as +02:00 or -05:30")]
pub struct OffsetError(pub String);

/// A fixed offset from UTC, in minutes east: the user's local time (no daylight saving: use the
/// offset in force for the weeks planned).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UtcOffset {
    minutes: i32,
}

impl UtcOffset {
    /// UTC itself.
    pub const UTC: UtcOffset = UtcOffset { minutes: 0 };

    /// The offset of `minutes` east of UTC, from −12:00 to +14:00.
    pub fn from_minutes(minutes: i32) -> Result<Self, OffsetError> {
        if (-12 * 60..=14 * 60).contains(&minutes) {
            Ok(UtcOffset { minutes })
        } else {
            Err(OffsetError(format!("{minutes} minutes")))
        }
    }

    /// Minutes east of UTC.
    pub fn minutes(&self) -> i32 {
        self.minutes
    }

    /// Parses `+02:00`, `-05:30`, `+0200`, `+2`, `Z` or `UTC`.
    pub fn parse(text: &str) -> Result<Self, OffsetError> {
        let error = || OffsetError(text.to_owned());
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("z") || trimmed.eq_ignore_ascii_case("utc") {
            return Ok(Self::UTC);
        }
        let (sign, rest) = match trimmed.as_bytes().first() {
            Some(b'+') => (1, &trimmed[1..]),
            Some(b'-') => (-1, &trimmed[1..]),
            _ => return Err(error()),
        };
        let (hours, minutes) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None if rest.len() == 4 => rest.split_at(2),
            None => (rest, "0"),
        };
        let digits = |s: &str| -> Option<i32> {
            (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let (Some(hours), Some(minutes)) = (digits(hours), digits(minutes)) else {
            return Err(error());
        };
        if minutes >= 60 {
            return Err(error());
        }
        Self::from_minutes(sign * (hours * 60 + minutes)).map_err(|_| error())
    }
}

impl fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.minutes < 0 { '-' } else { '+' };
        let minutes = self.minutes.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

impl FromStr for UtcOffset {
    type Err = OffsetError;

    fn from_str(s: &str) -> Result<Self, OffsetError> {
        Self::parse(s)
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar (H. Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The local date and time an hour (UTC, since the epoch) begins at: `2024-03-04 09:00`.
pub fn local_time(hour: i64, offset: UtcOffset) -> String {
    let minutes = hour * 60 + i64::from(offset.minutes);
    let (year, month, day) = civil_from_days(minutes.div_euclid(24 * 60));
    let of_day = minutes.rem_euclid(24 * 60);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        of_day / 60,
        of_day % 60
    )
}

/// A day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    /// Monday, the first column of a plan (ISO 8601).
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Weekday {
    /// Monday to Sunday.
    pub const ALL: [Weekday; 7] = [
        Self::Monday,
        Self::Tuesday,
        Self::Wednesday,
        Self::Thursday,
        Self::Friday,
        Self::Saturday,
        Self::Sunday,
    ];

    /// `Mon` … `Sun`.
    pub fn short(self) -> &'static str {
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][self as usize]
    }
}

/// An hour of the week in local time: a cell of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    /// The local day the cell begins on.
    pub day: Weekday,
    /// The local hour the cell begins in, 0 to 23. With an offset that is not a whole number of
    /// hours (+05:30) a cell begins at that many minutes past it: cells are UTC hours.
    pub hour: u8,
}

impl Slot {
    /// The cell an hour (UTC, since the epoch) falls in, in the local time of `offset`.
    pub fn of(hour: i64, offset: UtcOffset) -> Slot {
        let local_hour = (hour * 60 + i64::from(offset.minutes)).div_euclid(60);
        // 1970-01-01 was a Thursday, the fourth day of an ISO week.
        let day = (local_hour.div_euclid(24) + 3).rem_euclid(7) as usize;
        Slot {
            day: Weekday::ALL[day],
            hour: local_hour.rem_euclid(24) as u8,
        }
    }

    /// 0 (Monday, 00:00) to 167 (Sunday, 23:00).
    pub fn index(&self) -> usize {
        self.day as usize * 24 + usize::from(self.hour)
    }

    /// The cell of index 0 to 167 (taken modulo 168).
    pub fn from_index(index: usize) -> Slot {
        let index = index % 168;
        Slot {
            day: Weekday::ALL[index / 24],
            hour: (index % 24) as u8,
        }
    }

    /// `Mon 09:00`, with the minutes the offset puts cells at (`Mon 08:30` at +05:30).
    pub fn label(&self, offset: UtcOffset) -> String {
        format!(
            "{} {}",
            self.day.short(),
            Self::start_time(self.hour, offset)
        )
    }

    /// `09:00`: when a cell of this local hour begins, in local time.
    pub fn start_time(hour: u8, offset: UtcOffset) -> String {
        format!("{hour:02}:{:02}", offset.minutes.rem_euclid(60))
    }
}

/// How a plan is made from the history.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSettings {
    /// Weeks to look back, 1 to [`MAX_WEEKS`].
    pub weeks: u32,
    /// Plan for this percentile (0 to 100) of the weeks' arrivals instead of their mean.
    pub percentile: Option<f64>,
    /// The local time of the grid.
    pub offset: UtcOffset,
    /// The targets; none means [`Target::DEFAULT`].
    pub targets: Vec<Target>,
    /// Chats one agent handles at once, 1 or more.
    pub concurrency: f64,
}

impl Default for PlanSettings {
    fn default() -> Self {
        PlanSettings {
            weeks: DEFAULT_WEEKS,
            percentile: None,
            offset: UtcOffset::UTC,
            targets: vec![Target::DEFAULT],
            concurrency: 1.0,
        }
    }
}

impl PlanSettings {
    fn checked(&self) -> Result<Vec<Target>, HistoryError> {
        if !(1..=MAX_WEEKS).contains(&self.weeks) {
            return Err(StaffingError::OutOfRange {
                name: "weeks",
                value: f64::from(self.weeks),
                expected: "a whole number of weeks from 1 to 53",
            }
            .into());
        }
        if let Some(p) = self.percentile {
            if !(0.0..=100.0).contains(&p) {
                return Err(StaffingError::OutOfRange {
                    name: "percentile",
                    value: p,
                    expected: "a number from 0 to 100",
                }
                .into());
            }
        }
        if !(self.concurrency.is_finite() && self.concurrency >= 1.0) {
            return Err(StaffingError::OutOfRange {
                name: "concurrency",
                value: self.concurrency,
                expected: "a finite number of chats per agent, 1 or more",
            }
            .into());
        }
        let targets = if self.targets.is_empty() {
            vec![Target::DEFAULT]
        } else {
            self.targets.clone()
        };
        for target in &targets {
            target.validate().map_err(StaffingError::from)?;
        }
        Ok(targets)
    }
}

/// Why a plan could not be made.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum HistoryError {
    /// Nothing to plan from.
    #[error("the history holds no chat")]
    Empty,
    /// Every chat is in the newest hour, which a week plan leaves out.
    #[error(
        "every chat in the history arrived in its newest hour ({0}), which a plan leaves out \
         as incomplete: the plan needs chats from earlier hours"
    )]
    NoCompleteHour(String),
    /// A setting is out of range.
    #[error(transparent)]
    Staffing(#[from] StaffingError),
    /// The model could not staff one cell.
    #[error("department {department:?}, {slot}: {source}")]
    Cell {
        /// The department.
        department: String,
        /// The cell, such as `Mon 09:00`.
        slot: String,
        /// Why.
        source: StaffingError,
    },
}

/// The plan of one hour of the week (or of one coming hour) of one department.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Which hour of the week.
    pub slot: Slot,
    /// How many past weeks of this hour the figures come from (0 when none is in the history).
    pub weeks: u32,
    /// Chats arriving in the hour: the mean (or the percentile) over those weeks; `None` when
    /// no week is.
    pub arrivals_per_hour: Option<f64>,
    /// Mean handle time, seconds: the cell's answered chats, else the department's in the
    /// window; `None` when nobody was answered at all.
    pub handle_time_seconds: Option<f64>,
    /// Mean visitor patience (maximum-likelihood, exponential), seconds; `None` while nobody
    /// abandoned in the cell.
    pub patience_seconds: Option<f64>,
    /// Erlang A with the patience when there is one, else Erlang C.
    pub model: Model,
    /// Agents required, per target (in the order of the settings); `None` when the arrivals or
    /// the handle time are unknown.
    pub agents_required: Vec<Option<u32>>,
}

/// The week's plan of one department: 168 cells, Monday 00:00 first, in local time.
#[derive(Clone, Debug, PartialEq)]
pub struct DepartmentPlan {
    /// The department (its id, as in the history).
    pub department: String,
    /// The cells, indexed by [`Slot::index`].
    pub cells: Vec<Cell>,
}

/// A week-by-hour plan.
#[derive(Clone, Debug, PartialEq)]
pub struct WeekPlan {
    /// The first hour (UTC, since the epoch) any cell reads.
    pub from_hour: i64,
    /// The hour after the last one read: the hour of the newest chat, left out.
    pub until_hour: i64,
    /// The targets, in the order of each cell's `agents_required`.
    pub targets: Vec<Target>,
    /// One plan per department with a chat in the window, in order.
    pub departments: Vec<DepartmentPlan>,
}

/// The forecast of one department for one coming hour.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    /// The department.
    pub department: String,
    /// Its figures for the hour.
    pub cell: Cell,
}

/// The `p`-th percentile (0 to 100) of `values`, linear between the nearest ranks.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let Some(last) = values.len().checked_sub(1) else {
        return f64::NAN;
    };
    let rank = p / 100.0 * last as f64;
    let below = rank.floor() as usize;
    let above = (below + 1).min(last);
    values[below] + (rank - below as f64) * (values[above] - values[below])
}

/// One cell from the hours it reads (`samples`) and the department's pooled totals over the
/// window (for the handle time when the cell has none).
fn cell(
    history: &History,
    department: &str,
    slot: Slot,
    samples: &[i64],
    window: &HourTotals,
    settings: &PlanSettings,
    targets: &[Target],
) -> Result<Cell, StaffingError> {
    let mut pooled = HourTotals::default();
    let mut arrivals: Vec<f64> = Vec::with_capacity(samples.len());
    for &hour in samples {
        let totals = history.totals(department, hour);
        arrivals.push(totals.arrivals as f64);
        pooled.merge(&totals);
    }
    let arrivals_per_hour = (!arrivals.is_empty()).then(|| match settings.percentile {
        Some(p) => percentile(&mut arrivals, p),
        None => arrivals.iter().sum::<f64>() / arrivals.len() as f64,
    });
    let mean = |sum: f64, count: u64| (count > 0).then(|| sum / count as f64);
    let handle_time_seconds = mean(pooled.handle_seconds, pooled.answered)
        .or_else(|| mean(window.handle_seconds, window.answered));
    let patience_seconds = mean(pooled.queue_seconds, pooled.abandoned);
    let model = match handle_time_seconds {
        Some(handle) => Model::for_patience(patience_seconds, handle, settings.concurrency),
        None => patience_seconds.map_or(Model::ErlangC, |p| Model::ErlangA {
            patience_seconds: p,
        }),
    };
    let agents_required = targets
        .iter()
        .map(|&target| match (arrivals_per_hour, handle_time_seconds) {
            (Some(0.0), _) => Ok(Some(0)),
            (Some(a), Some(handle)) => model
                .agents_required(a / 3600.0, handle, target, settings.concurrency)
                .map(Some),
            _ => Ok(None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Cell {
        slot,
        weeks: samples.len() as u32,
        arrivals_per_hour,
        handle_time_seconds,
        patience_seconds,
        model,
        agents_required,
    })
}

/// The hours a cell reads: `latest`, then a week, two weeks … back, `weeks` of them at most,
/// none before `first`.
fn samples(latest: i64, weeks: u32, first: i64) -> Vec<i64> {
    (0..i64::from(weeks))
        .map(|k| latest - k * HOURS_PER_WEEK)
        .take_while(|&hour| hour >= first)
        .collect()
}

/// The week-by-hour plan: per department with a chat in the window, every hour of the week in
/// local time from the last `weeks` weeks of that hour before the hour of the newest chat (see
/// the module's documentation for each figure).
pub fn week_plan(history: &History, settings: &PlanSettings) -> Result<WeekPlan, HistoryError> {
    let targets = settings.checked()?;
    let (Some(first), Some(newest)) = (history.first_hour(), history.newest_hour()) else {
        return Err(HistoryError::Empty);
    };
    let until = newest;
    let from = first.max(until - HOURS_PER_WEEK * i64::from(settings.weeks));
    if from >= until {
        return Err(HistoryError::NoCompleteHour(local_time(
            newest,
            settings.offset,
        )));
    }
    let last = until - 1;
    let last_index = Slot::of(last, settings.offset).index() as i64;
    let mut departments = Vec::new();
    for department in history.departments() {
        let window = history.pooled(department, from, until);
        if window.arrivals == 0 {
            continue;
        }
        let cells = (0..168)
            .map(|index| {
                let slot = Slot::from_index(index);
                let back = (last_index - index as i64).rem_euclid(HOURS_PER_WEEK);
                let hours = samples(last - back, settings.weeks, first);
                cell(
                    history, department, slot, &hours, &window, settings, &targets,
                )
                .map_err(|source| HistoryError::Cell {
                    department: department.to_owned(),
                    slot: slot.label(settings.offset),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        departments.push(DepartmentPlan {
            department: department.to_owned(),
            cells,
        });
    }
    Ok(WeekPlan {
        from_hour: from,
        until_hour: until,
        targets,
        departments,
    })
}

/// The forecast for the coming `hour` (UTC, since the epoch; the next hour for a live gauge):
/// per department with a chat in the `weeks` weeks before it, the figures of [`week_plan`]'s
/// cell for that hour, read from the same hour of each of those weeks.
pub fn forecast(
    history: &History,
    hour: i64,
    settings: &PlanSettings,
) -> Result<Vec<Forecast>, HistoryError> {
    let targets = settings.checked()?;
    let Some(first) = history.first_hour() else {
        return Ok(Vec::new());
    };
    let from = first.max(hour - HOURS_PER_WEEK * i64::from(settings.weeks));
    let slot = Slot::of(hour, settings.offset);
    let hours = samples(hour - HOURS_PER_WEEK, settings.weeks, first);
    let mut forecasts = Vec::new();
    for department in history.departments() {
        let window = history.pooled(department, from, hour);
        if window.arrivals == 0 {
            continue;
        }
        let cell = cell(
            history, department, slot, &hours, &window, settings, &targets,
        )
        .map_err(|source| HistoryError::Cell {
            department: department.to_owned(),
            slot: slot.label(settings.offset),
            source,
        })?;
        forecasts.push(Forecast {
            department: department.to_owned(),
            cell,
        });
    }
    Ok(forecasts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01 was a Monday; its midnight UTC in hours since the epoch.
    const MONDAY: i64 = 19_723 * 24;

    #[test]
    fn hours_added_at_once_equal_hours_added_one_by_one() {
        let hours = [
            (MONDAY + 5, totals(2, 1, 1, 60.0, 30.0)),
            (MONDAY + 1, totals(1, 1, 0, 10.0, 5.0)),
            (MONDAY + 5, totals(3, 3, 0, 90.0, 9.0)),
        ];
        let mut one_by_one = History::new();
        let mut at_once = History::new();
        // Department 7 is known before the bulk add, 8 is not.
        for history in [&mut at_once, &mut one_by_one] {
            history.add("7", MONDAY, &totals(1, 0, 1, 0.0, 4.0));
        }
        for (hour, t) in &hours {
            one_by_one.add("7", *hour, t);
            one_by_one.add("8", *hour, t);
        }
        at_once.add_hours("7", hours);
        at_once.add_hours("8", hours);
        at_once.add_hours("9", []);
        assert_eq!(
            at_once, one_by_one,
            "into a known and into a new department"
        );
    }

    fn totals(arrivals: u64, answered: u64, abandoned: u64, handle: f64, queue: f64) -> HourTotals {
        HourTotals {
            arrivals,
            answered,
            abandoned,
            handle_seconds: handle,
            queue_seconds: queue,
        }
    }

    #[test]
    fn calendar_and_slots() {
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [-1000, 0, 11_016, 11_017, 19_723, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(19_723 + 59), (2024, 2, 29));
        let cases = [
            (
                "utc monday midnight",
                MONDAY,
                Ok(UtcOffset::UTC),
                "Mon 00:00",
            ),
            ("a day later", MONDAY + 33, Ok(UtcOffset::UTC), "Tue 09:00"),
            (
                "east of utc",
                MONDAY + 7,
                UtcOffset::parse("+02:00"),
                "Mon 09:00",
            ),
            (
                "west, to sunday",
                MONDAY + 2,
                UtcOffset::parse("-05:00"),
                "Sun 21:00",
            ),
            (
                "half hour",
                MONDAY + 3,
                UtcOffset::parse("+05:30"),
                "Mon 08:30",
            ),
            (
                "newfoundland",
                MONDAY + 12,
                UtcOffset::parse("-03:30"),
                "Mon 08:30",
            ),
            ("before the epoch", -1, Ok(UtcOffset::UTC), "Wed 23:00"),
        ];
        for (name, hour, offset, label) in cases {
            let offset = offset.unwrap_or_else(|e| panic!("{name}: {e}"));
            let slot = Slot::of(hour, offset);
            assert_eq!(slot.label(offset), label, "{name}");
            assert_eq!(Slot::from_index(slot.index()), slot, "{name}");
        }
        assert_eq!(
            local_time(MONDAY + 7, UtcOffset::parse("+02:00").unwrap()),
            "2024-01-01 09:00"
        );
        assert_eq!(
            local_time(MONDAY, UtcOffset::parse("-00:30").unwrap()),
            "2023-12-31 23:30"
        );
    }

    #[test]
    fn offsets_parse_and_print() {
        let cases = [
            ("+02:00", 120, "+02:00"),
            ("-05:30", -330, "-05:30"),
            ("+0545", 345, "+05:45"),
            ("+2", 120, "+02:00"),
            ("Z", 0, "+00:00"),
            ("utc", 0, "+00:00"),
            (" +14:00 ", 840, "+14:00"),
            ("-12:00", -720, "-12:00"),
        ];
        for (text, minutes, printed) in cases {
            let offset = UtcOffset::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(offset.minutes(), minutes, "{text}");
            assert_eq!(offset.to_string(), printed, "{text}");
        }
        for bad in [
            "",
            "02:00",
            "+2:60",
            "+15:00",
            "-12:30",
            "+ab:00",
            "+123",
            "+02:00:00",
        ] {
            let error = UtcOffset::parse(bad).expect_err(bad);
            assert_eq!(
                error.to_string(),
                format!(
                    "UTC offset {bad:?} is not ±HH:MM between -12:00 and +14:00, such as +02:00 \
                     or -05:30"
                )
            );
        }
    }

    #[test]
    fn closes_count_by_what_is_known() {
        let mut t = HourTotals::default();
        t.add_close(Some(12.0), Some(300.0));
        t.add_close(None, Some(90.0));
        t.add_close(Some(3.0), None);
        t.add_close(None, None);
        t.add_close(Some(f64::NAN), Some(10.0));
        assert_eq!(t, totals(5, 1, 1, 300.0, 102.0));
        let mut merged = t;
        merged.merge(&t);
        assert_eq!(merged, totals(10, 2, 2, 600.0, 204.0));
        let mut history = History::new();
        assert!(history.add_close("sales", 3600.0 * 5.5, Some(1.0), Some(2.0)));
        assert!(!history.add_close("sales", f64::NAN, Some(1.0), Some(2.0)));
        assert_eq!(history.totals("sales", 5), totals(1, 1, 0, 2.0, 1.0));
        assert_eq!(history.totals("sales", 6), HourTotals::default());
        assert_eq!(history.totals("other", 5), HourTotals::default());
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let cases = [
            (0.0, 12.0),
            (25.0, 13.5),
            (50.0, 15.0),
            (90.0, 17.4),
            (100.0, 18.0),
        ];
        for (p, expected) in cases {
            let got = percentile(&mut [18.0, 12.0, 16.0, 14.0], p);
            assert!((got - expected).abs() < 1e-12, "P{p}: {got}");
        }
        assert_eq!(percentile(&mut [7.0], 90.0), 7.0);
    }

    /// A history of `weeks` weeks from `MONDAY`, in which the hour `h` of the week (UTC) has
    /// `arrivals(h, week)` chats, answered within 10 s and handled in 300 s, except for two an
    /// hour in business hours that leave after 60 s.
    fn history(weeks: i64, arrivals: impl Fn(i64, i64) -> u64) -> History {
        let mut history = History::new();
        for hour in 0..weeks * HOURS_PER_WEEK {
            let week = hour / HOURS_PER_WEEK;
            let of_week = hour % HOURS_PER_WEEK;
            let n = arrivals(of_week, week);
            let business = (9..17).contains(&(of_week % 24)) && of_week < 5 * 24;
            let abandoned = if business { 2.min(n) } else { 0 };
            let answered = n - abandoned;
            let t = totals(
                n,
                answered,
                abandoned,
                300.0 * answered as f64,
                10.0 * answered as f64 + 60.0 * abandoned as f64,
            );
            history.add("sales", MONDAY + hour, &t);
        }
        history
    }

    #[test]
    fn week_plan_reads_the_last_weeks_of_each_hour() {
        // Five weeks; Monday 10:00 grows by 2 a week (10 … 18), every other hour has 4 + hour.
        let rates = |of_week: i64, week: i64| {
            if of_week == 10 {
                10 + 2 * week as u64
            } else {
                4 + (of_week % 24) as u64
            }
        };
        let mut h = history(5, rates);
        // The newest chat, in the hour after the five weeks: that hour is left out.
        h.add(
            "sales",
            MONDAY + 5 * HOURS_PER_WEEK,
            &totals(1, 1, 0, 300.0, 0.0),
        );
        let target = Target {
            share: 0.8,
            wait_seconds: 20.0,
        };
        let settings = PlanSettings {
            targets: vec![target],
            ..PlanSettings::default()
        };
        let plan = week_plan(&h, &settings).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.until_hour, MONDAY + 5 * HOURS_PER_WEEK);
        assert_eq!(plan.from_hour, MONDAY + HOURS_PER_WEEK);
        assert_eq!(plan.departments.len(), 1);
        let cells = &plan.departments[0].cells;
        assert_eq!(cells.len(), 168);
        // Monday 10:00 over weeks 1 to 4: 12, 14, 16, 18.
        let monday_ten = &cells[10];
        assert_eq!(monday_ten.slot.label(UtcOffset::UTC), "Mon 10:00");
        assert_eq!(monday_ten.weeks, 4);
        assert_eq!(monday_ten.arrivals_per_hour, Some(15.0));
        assert_eq!(monday_ten.handle_time_seconds, Some(300.0));
        // Patience: 10 s for each answered chat plus 60 s for each of the two who left, per two.
        let patience = (10.0 * 52.0 + 60.0 * 8.0) / 8.0;
        assert_eq!(monday_ten.patience_seconds, Some(patience));
        let model = Model::ErlangA {
            patience_seconds: patience,
        };
        assert_eq!(monday_ten.model, model);
        let expected = model.agents_required(15.0 / 3600.0, 300.0, target, 1.0);
        assert_eq!(monday_ten.agents_required, vec![expected.ok()]);
        // Saturday 03:00: nobody left, so Erlang C.
        let saturday = &cells[5 * 24 + 3];
        assert_eq!(saturday.arrivals_per_hour, Some(7.0));
        assert_eq!(saturday.patience_seconds, None);
        assert_eq!(saturday.model, Model::ErlangC);
        let expected = super::super::agents_required(7.0 / 3600.0, 300.0, target, 1.0);
        assert_eq!(saturday.agents_required, vec![expected.ok()]);
        // Percentiles plan for a busier week: the 100th is the busiest of the four.
        let busiest = PlanSettings {
            percentile: Some(100.0),
            ..settings.clone()
        };
        let plan = week_plan(&h, &busiest).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.departments[0].cells[10].arrivals_per_hour, Some(18.0));
        // Two weeks: 16 and 18.
        let two = PlanSettings {
            weeks: 2,
            ..settings.clone()
        };
        let plan = week_plan(&h, &two).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.departments[0].cells[10].arrivals_per_hour, Some(17.0));
        assert_eq!(plan.departments[0].cells[10].weeks, 2);
        // Ten weeks asked, five in the history: every cell reads the weeks there are.
        let ten = PlanSettings {
            weeks: 10,
            ..settings
        };
        let plan = week_plan(&h, &ten).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.departments[0].cells[10].weeks, 5);
        assert_eq!(plan.departments[0].cells[10].arrivals_per_hour, Some(14.0));
    }

    #[test]
    fn week_plan_follows_the_local_time() {
        // One week; 20 chats at 07:00 UTC each day, 1 in every other hour.
        let h = history(2, |of_week, _| if of_week % 24 == 7 { 20 } else { 1 });
        let settings = PlanSettings {
            offset: UtcOffset::parse("+02:00").unwrap(),
            ..PlanSettings::default()
        };
        let plan = week_plan(&h, &settings).unwrap_or_else(|e| panic!("{e}"));
        let cells = &plan.departments[0].cells;
        for day in 0..7 {
            assert_eq!(
                cells[day * 24 + 9].arrivals_per_hour,
                Some(20.0),
                "day {day}"
            );
            assert_eq!(
                cells[day * 24 + 7].arrivals_per_hour,
                Some(1.0),
                "day {day}"
            );
        }
    }

    #[test]
    fn handle_time_falls_back_to_the_department() {
        let mut h = History::new();
        // Monday 09:00: three chats, none answered nor abandoned with a duration.
        h.add("support", MONDAY + 9, &totals(3, 0, 0, 0.0, 0.0));
        h.add("support", MONDAY + 10, &totals(2, 2, 0, 400.0, 0.0));
        h.add("support", MONDAY + 11, &totals(1, 1, 0, 100.0, 0.0));
        // Another department, only in the hour left out.
        h.add("sales", MONDAY + 30, &totals(1, 1, 0, 100.0, 0.0));
        let plan = week_plan(&h, &PlanSettings::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.departments.len(), 1, "{plan:?}");
        let cells = &plan.departments[0].cells;
        assert_eq!(cells[9].handle_time_seconds, Some(500.0 / 3.0));
        assert_eq!(cells[10].handle_time_seconds, Some(200.0));
        // An hour with no chat plans for none; before the history's first hour nothing is known.
        assert_eq!(cells[12].arrivals_per_hour, Some(0.0));
        assert_eq!(cells[12].agents_required, vec![Some(0)]);
        assert_eq!(cells[8].weeks, 0);
        assert_eq!(cells[8].arrivals_per_hour, None);
        assert_eq!(cells[8].agents_required, vec![None]);
    }

    #[test]
    fn plans_refuse_what_they_cannot_plan() {
        let settings = PlanSettings::default();
        assert_eq!(
            week_plan(&History::new(), &settings),
            Err(HistoryError::Empty)
        );
        let mut h = History::new();
        h.add("sales", MONDAY, &totals(4, 4, 0, 100.0, 0.0));
        let error = week_plan(&h, &settings).expect_err("one hour");
        assert_eq!(
            error.to_string(),
            "every chat in the history arrived in its newest hour (2024-01-01 00:00), which a \
             plan leaves out as incomplete: the plan needs chats from earlier hours"
        );
        h.add("sales", MONDAY + 1, &totals(1, 1, 0, 100.0, 0.0));
        let cases = [
            (
                PlanSettings {
                    weeks: 0,
                    ..PlanSettings::default()
                },
                "weeks must be a whole number of weeks from 1 to 53, got 0",
            ),
            (
                PlanSettings {
                    percentile: Some(101.0),
                    ..PlanSettings::default()
                },
                "percentile must be a number from 0 to 100, got 101",
            ),
            (
                PlanSettings {
                    concurrency: 0.5,
                    ..PlanSettings::default()
                },
                "concurrency must be a finite number of chats per agent, 1 or more, got 0.5",
            ),
        ];
        for (settings, message) in cases {
            let error = week_plan(&h, &settings).expect_err(message);
            assert_eq!(error.to_string(), message);
        }
        // A cell past the model's range names itself.
        h.add("sales", MONDAY, &totals(1, 1, 0, 1e15, 0.0));
        let error = week_plan(&h, &settings).expect_err("huge load");
        assert!(
            error
                .to_string()
                .starts_with("department \"sales\", Mon 00:00: an offered load of"),
            "{error}"
        );
    }

    #[test]
    fn forecast_reads_the_same_hour_of_previous_weeks() {
        let rates = |of_week: i64, week: i64| {
            if of_week == 10 {
                10 + 2 * week as u64
            } else {
                3
            }
        };
        let h = history(5, rates);
        let settings = PlanSettings::default();
        // Monday 10:00 of week 5, the hour after the history: weeks 1 to 4 (12 … 18).
        let coming = MONDAY + 5 * HOURS_PER_WEEK + 10;
        let forecasts = forecast(&h, coming, &settings).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(forecasts.len(), 1);
        assert_eq!(forecasts[0].department, "sales");
        let cell = &forecasts[0].cell;
        assert_eq!(cell.slot.label(UtcOffset::UTC), "Mon 10:00");
        assert_eq!(cell.arrivals_per_hour, Some(15.0));
        assert_eq!(cell.weeks, 4);
        // The same as the week plan's cell when the history ends just before it.
        let mut until = h.clone();
        until.add("sales", coming, &HourTotals::default());
        let plan = week_plan(&until, &settings).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&plan.departments[0].cells[10], cell);
        // Monday 10:00 of week 2 reads weeks 0 and 1 only.
        let early = forecast(&h, MONDAY + 2 * HOURS_PER_WEEK + 10, &settings)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(early[0].cell.arrivals_per_hour, Some(11.0));
        assert_eq!(early[0].cell.weeks, 2);
        assert_eq!(forecast(&History::new(), coming, &settings), Ok(Vec::new()));
    }

    #[test]
    fn forgetting_keeps_what_the_plan_reads() {
        let mut h = history(6, |_, week| 1 + week as u64);
        h.add("sales", MONDAY + 6 * HOURS_PER_WEEK, &HourTotals::default());
        let settings = PlanSettings::default();
        let before = week_plan(&h, &settings).unwrap_or_else(|e| panic!("{e}"));
        h.forget_before(before.from_hour);
        assert_eq!(h.first_hour(), Some(MONDAY));
        assert_eq!(h.totals("sales", MONDAY), HourTotals::default());
        assert_eq!(week_plan(&h, &settings), Ok(before));
    }
}
