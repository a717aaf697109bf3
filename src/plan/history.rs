//! `plan --history PATH`: the week-by-hour plan of [`crate::staffing::history`] from past chats.
//!
//! The history comes from a [`HistorySource`], chosen from the PATH:
//! - a file of close events in the vendor's wire shape, one JSON object per line (a user's own
//!   export or a capture of the webhooks), decoded by [`crate::decode::decode`] as the receiver
//!   does. Each chat counts in the hour it arrived, its `date_created`, read in the time zone
//!   `--utc-offset` names (the vendor's dates carry none). A chat closed with no wait, or with
//!   a zero wait and no agent, was abandoned, and its duration is its time in queue: a visitor
//!   who left the page without closing the chat counts as waiting until the chat timed out, so
//!   the patience estimate runs long. Other events on the way (starts, accepts, messages) are
//!   skipped and counted.
//! - the exporter's store folder (opened read-only) or a `postgres://` URL of the shared store:
//!   the hour-of-week aggregates the store keeps, from its newest snapshot and the events after
//!   it. A database without the exporter's schema is refused, not given one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::{Format, PlanArgs, PlanError, Result};
use crate::admit::Engine;
use crate::admit::normalise;
use crate::admit::postgres::{self, Postgres};
use crate::admit::sqlite::Sqlite;
use crate::decode;
use crate::event::ChatKind;
use crate::event::Seq;
use crate::record::snapshot;
use crate::staffing::Target;
use crate::staffing::history::{
    Cell, DEFAULT_WEEKS, DepartmentPlan, HOURS_PER_WEEK, History, HourTotals, PlanSettings, Slot,
    UtcOffset, WeekPlan, Weekday, days_from_civil, local_time, week_plan,
};

/// The longest line of a history file: far above any close event (the receiver takes bodies of
/// at most 1 MiB by default), so one bad file cannot exhaust memory.
pub const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// How many lines are read between two trims of the history to the weeks the plan reads.
const TRIM_EVERY: u64 = 100_000;

/// Where `plan --history PATH` reads its history from. To read another kind, add a variant, a
/// rule in [`HistorySource::parse`] and an arm in [`HistorySource::load`] that returns its
/// [`History`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistorySource {
    /// A file of close events in the vendor's wire shape, one JSON object per line.
    CloseEvents(PathBuf),
    /// The exporter's store folder (`--storage.path`).
    StoreFolder(PathBuf),
    /// A PostgreSQL store, by its URL.
    Postgres(String),
}

/// What a source gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The chats, per department and hour.
    pub history: History,
    /// Close events counted.
    pub closes: u64,
    /// Other events skipped (starts, accepts, messages).
    pub other_events: u64,
}

impl HistorySource {
    /// The source a PATH names: a `postgres://` or `postgresql://` URL, an existing folder (a
    /// store), or else a file.
    pub fn parse(path: &str) -> Self {
        let lower = path.trim_start().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Self::Postgres(path.to_owned());
        }
        let path_buf = PathBuf::from(path);
        if path_buf.is_dir() {
            Self::StoreFolder(path_buf)
        } else {
            Self::CloseEvents(path_buf)
        }
    }

    /// What kind of source this is, for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CloseEvents(_) => "close events file",
            Self::StoreFolder(_) => "store folder",
            Self::Postgres(_) => "PostgreSQL store",
        }
    }

    /// The PATH as the report shows it: a URL without its user and password.
    pub fn shown(&self) -> String {
        match self {
            Self::CloseEvents(path) | Self::StoreFolder(path) => path.display().to_string(),
            Self::Postgres(url) => without_credentials(url),
        }
    }

    /// Reads the history. `offset` is the time zone of dates that carry none; `weeks` bounds
    /// what is kept to the weeks the plan reads.
    pub fn load(&self, offset: UtcOffset, weeks: u32) -> Result<Loaded> {
        match self {
            Self::CloseEvents(path) => read_close_events(path, &self.shown(), offset, weeks),
            Self::StoreFolder(path) => {
                let engine = Sqlite::open_read_only(path).map_err(|e| PlanError::Source {
                    path: self.shown(),
                    problem: e.to_string(),
                })?;
                read_store(&engine, &self.shown(), weeks)
            }
            Self::Postgres(url) => {
                let source_error = |problem: String| PlanError::Source {
                    path: self.shown(),
                    problem,
                };
                let target =
                    postgres::Target::parse(url).map_err(|e| source_error(e.to_string()))?;
                holds_a_store(&target).map_err(source_error)?;
                let engine = Postgres::open(target, Box::new(|_| {}))
                    .map_err(|e| source_error(e.to_string()))?;
                read_store(&engine, &self.shown(), weeks)
            }
        }
    }
}

/// The hour-of-week history a store keeps: its newest snapshot's, and the close events after it
/// added in the same way as the exporter adds them.
pub fn read_store(engine: &dyn Engine, shown: &str, weeks: u32) -> Result<Loaded> {
    let store_error = |problem: String| PlanError::Source {
        path: shown.to_owned(),
        problem,
    };
    let mut loaded = Loaded {
        history: History::new(),
        closes: 0,
        other_events: 0,
    };
    let mut names: HashMap<String, String> = HashMap::new();
    let mut after = 0;
    if let Some(stored) = engine
        .load_snapshot()
        .map_err(|e| store_error(e.to_string()))?
    {
        let state = snapshot::decode(&stored.bytes)
            .map_err(|e| store_error(format!("the snapshot at event {}: {e}", stored.seq)))?;
        for (department, hours) in &state.history {
            for (hour, t) in hours {
                loaded.history.add(
                    department,
                    *hour,
                    &HourTotals {
                        arrivals: t.arrivals,
                        answered: t.answered,
                        abandoned: t.abandoned,
                        handle_seconds: t.handle_seconds,
                        queue_seconds: t.queue_seconds,
                    },
                );
            }
        }
        loaded.history.set_covered(state.history_covered);
        names = state.departments.known.into_iter().collect();
        after = stored.seq;
    }
    engine
        .replay(after, Seq::MAX, &mut |e| {
            if e.kind != ChatKind::Close {
                loaded.other_events += 1;
                return;
            }
            let department = match names.get(&e.department_id) {
                Some(name) => name.as_str(),
                None if e.department_id.is_empty() => crate::record::NONE,
                None => e.department_id.as_str(),
            };
            crate::record::add_arrival(&mut loaded.history, department, e);
            loaded.closes += 1;
        })
        .map_err(|e| store_error(e.to_string()))?;
    keep_recent(&mut loaded.history, weeks);
    Ok(loaded)
}

/// Succeeds when the database of `target` holds the exporter's schema: opening the engine on
/// any other would create it, which a report must not do.
fn holds_a_store(target: &postgres::Target) -> std::result::Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (client, connection) = target.connect().await.map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let found = client
            .query_one("SELECT to_regclass('acquire_meta') IS NOT NULL", &[])
            .await
            .map_err(|e| format!("{}: {e}", target.server()))?
            .get::<_, bool>(0);
        drop(client);
        let _ = driver.await;
        if found {
            Ok(())
        } else {
            Err(format!(
                "{} holds no acquire-exporter store (no acquire_meta table)",
                target.server()
            ))
        }
    })
}

/// `postgres://user:secret@host/db` as `postgres://…@host/db`.
fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://…{}", &rest[at..]),
        None => url.to_owned(),
    }
}

fn read_close_events(path: &Path, shown: &str, offset: UtcOffset, weeks: u32) -> Result<Loaded> {
    let read_error = |e: std::io::Error| PlanError::Read {
        path: shown.to_owned(),
        problem: e.to_string(),
    };
    let mut reader = BufReader::new(File::open(path).map_err(read_error)?);
    let mut loaded = Loaded {
        history: History::new(),
        closes: 0,
        other_events: 0,
    };
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut line)
            .map_err(read_error)?;
        if read == 0 {
            break;
        }
        number += 1;
        let line_error = |problem: String| PlanError::Line {
            path: shown.to_owned(),
            line: number,
            problem,
        };
        if line.len() as u64 > MAX_LINE_BYTES {
            return Err(line_error(format!(
                "longer than {} MiB: expected one event per line",
                MAX_LINE_BYTES / 1024 / 1024
            )));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event = decode::decode(None, &line).map_err(|e| line_error(e.to_string()))?;
        // The receiver's own rules (a zero wait with no agent is unanswered); the receive time
        // is not used: the plan takes the hour from `date_created`.
        let closed = match normalise::recordable(event, 0) {
            Some(closed) if closed.kind == ChatKind::Close => closed,
            _ => {
                loaded.other_events += 1;
                continue;
            }
        };
        // The decoder took it, so it is UTF-8.
        let text = String::from_utf8_lossy(&line);
        let created = date_created(&text).ok_or_else(|| {
            line_error(
                "field `date_created` is missing: the plan counts each chat in the hour it \
                 arrived"
                    .to_owned(),
            )
        })?;
        let local = parse_local_time(&created).ok_or_else(|| {
            line_error(format!(
                "field `date_created`: {:?} is not a date and time such as 2018-07-23 05:17:40",
                created.chars().take(40).collect::<String>()
            ))
        })?;
        let arrived = local - i64::from(offset.minutes()) * 60;
        let wait = closed.wait_seconds;
        let department = if closed.department_id.is_empty() {
            crate::record::NONE
        } else {
            closed.department_id.as_str()
        };
        loaded
            .history
            .add_close(department, arrived as f64, wait, closed.duration_seconds);
        loaded.closes += 1;
        if number % TRIM_EVERY == 0 {
            keep_recent(&mut loaded.history, weeks);
        }
    }
    keep_recent(&mut loaded.history, weeks);
    Ok(loaded)
}

/// Keeps the weeks a plan of `weeks` weeks reads, and one more.
fn keep_recent(history: &mut History, weeks: u32) {
    if let Some(newest) = history.newest_hour() {
        history.forget_before(newest - HOURS_PER_WEEK * (i64::from(weeks) + 1));
    }
}

/// The event's `date_created` (in `data` first, as the decoder reads fields); a value of
/// `null`, `"null"` or `""` is none. A line the decoder took that is not strict JSON (the
/// vendor's printed examples) is searched for the field as text.
fn date_created(line: &str) -> Option<String> {
    let value = match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(body)) => {
            let field = |object: &Map<String, Value>| match object.get("date_created") {
                Some(Value::String(s)) => Some(s.trim().to_owned()),
                _ => None,
            };
            body.get("data")
                .and_then(Value::as_object)
                .and_then(field)
                .or_else(|| field(&body))
        }
        Ok(_) => None,
        Err(_) => {
            let after = &line[line.find("\"date_created\"")? + "\"date_created\"".len()..];
            let after = after.trim_start().strip_prefix(':')?.trim_start();
            let after = after.strip_prefix('"')?;
            Some(after[..after.find('"')?].trim().to_owned())
        }
    }?;
    (!value.is_empty() && !value.eq_ignore_ascii_case("null")).then_some(value)
}

/// `2018-07-23 05:17:40` (or with a `T`, without seconds, or with a fraction of a second) as the
/// seconds since 1970-01-01 00:00 of that clock reading.
pub fn parse_local_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = text.split_once([' ', 'T'])?;
    let number = |s: &str, digits: usize| -> Option<u32> {
        (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut date_parts = date.split('-');
    let year = number(date_parts.next()?, 4)?;
    let month = number(date_parts.next()?, 2)?;
    let day = number(date_parts.next()?, 2)?;
    if date_parts.next().is_some() {
        return None;
    }
    let time = time.trim_start();
    let whole = time.split_once('.').map_or(time, |(whole, fraction)| {
        if fraction.bytes().all(|b| b.is_ascii_digit()) {
            whole
        } else {
            ""
        }
    });
    let mut time_parts = whole.split(':');
    let hour = number(time_parts.next()?, 2)?;
    let minute = number(time_parts.next()?, 2)?;
    let second = match time_parts.next() {
        Some(s) => number(s, 2)?,
        None => 0,
    };
    if time_parts.next().is_some() {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

/// `plan --history PATH`: read, plan, print.
pub(super) fn run(path: &str, args: &PlanArgs, targets: Vec<Target>) -> Result<String> {
    let source = HistorySource::parse(path);
    let settings = PlanSettings {
        weeks: args.weeks.unwrap_or(DEFAULT_WEEKS),
        percentile: args.percentile,
        offset: args.utc_offset.unwrap_or_default(),
        targets,
        concurrency: args.concurrency,
    };
    if !(settings.concurrency.is_finite() && settings.concurrency >= 1.0) {
        return Err(crate::staffing::StaffingError::OutOfRange {
            name: "--concurrency",
            value: settings.concurrency,
            expected: "a finite number of chats per agent, 1 or more",
        }
        .into());
    }
    let loaded = source.load(settings.offset, settings.weeks)?;
    let plan = week_plan(&loaded.history, &settings)?;
    let report = GridReport {
        source: &source,
        loaded: &loaded,
        settings: &settings,
        plan: &plan,
    };
    Ok(match args.format {
        Format::Text => report.text(),
        Format::Json => format!("{:#}\n", report.json()),
        Format::Csv => report.csv(),
    })
}

/// A week plan, ready to print.
struct GridReport<'a> {
    source: &'a HistorySource,
    loaded: &'a Loaded,
    settings: &'a PlanSettings,
    plan: &'a WeekPlan,
}

/// `-` for an unknown figure.
fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// A CSV field, quoted when it must be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn number(value: Option<f64>) -> String {
    value.map(|x| x.to_string()).unwrap_or_default()
}

impl GridReport<'_> {
    fn averaging(&self) -> String {
        match self.settings.percentile {
            Some(p) => format!("percentile {} of the weeks' arrivals", trim(p)),
            None => "mean of the weeks' arrivals".to_owned(),
        }
    }

    fn table(
        &self,
        out: &mut String,
        title: &str,
        department: &DepartmentPlan,
        value: impl Fn(&Cell) -> String,
    ) {
        let _ = writeln!(out, "\n{title}");
        let _ = write!(out, "{:>5}", "");
        for day in Weekday::ALL {
            let _ = write!(out, "  {:>6}", day.short());
        }
        out.push('\n');
        for hour in 0..24u8 {
            let _ = write!(out, "{}", Slot::start_time(hour, self.settings.offset));
            for day in 0..7 {
                let cell = &department.cells[day * 24 + usize::from(hour)];
                let _ = write!(out, "  {:>6}", value(cell));
            }
            out.push('\n');
        }
    }

    fn text(&self) -> String {
        let offset = self.settings.offset;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "History: {} close events from {} {} ({} other events skipped)",
            self.loaded.closes,
            self.source.kind(),
            self.source.shown(),
            self.loaded.other_events,
        );
        let _ = writeln!(
            out,
            "Plan: each hour of the week from its last {} before {} (the newest chat's hour, \
             left out), {}",
            plural(self.settings.weeks, "week", "weeks"),
            local_time(self.plan.until_hour, offset),
            self.averaging(),
        );
        let _ = writeln!(
            out,
            "Times are local at UTC{offset}; {} per agent; - where the history has no such \
             hour",
            super::plural(self.settings.concurrency, "chat", "chats"),
        );
        for department in &self.plan.departments {
            let _ = writeln!(out, "\nDepartment {}", department.department);
            self.table(&mut out, "Arrivals per hour", department, |cell| {
                or_dash(cell.arrivals_per_hour.map(|a| format!("{a:.1}")))
            });
            self.table(&mut out, "Mean handle time, seconds", department, |cell| {
                or_dash(cell.handle_time_seconds.map(|h| format!("{h:.0}")))
            });
            self.table(
                &mut out,
                "Visitor patience, seconds (Erlang A where known, Erlang C where -)",
                department,
                |cell| or_dash(cell.patience_seconds.map(|p| format!("{p:.0}"))),
            );
            for (i, target) in self.plan.targets.iter().enumerate() {
                let title = format!("Agents required for {}", target.label());
                self.table(&mut out, &title, department, |cell| {
                    or_dash(cell.agents_required[i].map(|n| n.to_string()))
                });
            }
        }
        out
    }

    fn json(&self) -> Value {
        let offset = self.settings.offset;
        let departments: Vec<Value> = self
            .plan
            .departments
            .iter()
            .map(|department| {
                let cells: Vec<Value> = department
                    .cells
                    .iter()
                    .map(|cell| {
                        let agents: Map<String, Value> = self
                            .plan
                            .targets
                            .iter()
                            .zip(&cell.agents_required)
                            .map(|(target, agents)| (target.label(), json!(agents)))
                            .collect();
                        json!({
                            "day": cell.slot.day.short(),
                            "hour": cell.slot.hour,
                            "start": Slot::start_time(cell.slot.hour, offset),
                            "weeks": cell.weeks,
                            "arrivals_per_hour": cell.arrivals_per_hour,
                            "handle_time_seconds": cell.handle_time_seconds,
                            "patience_seconds": cell.patience_seconds,
                            "model": cell.model.label(),
                            "agents_required": agents,
                        })
                    })
                    .collect();
                json!({"department": department.department, "cells": cells})
            })
            .collect();
        json!({
            "source": self.source.kind(),
            "path": self.source.shown(),
            "closes": self.loaded.closes,
            "other_events": self.loaded.other_events,
            "utc_offset": offset.to_string(),
            "weeks": self.settings.weeks,
            "percentile": self.settings.percentile,
            "concurrency": self.settings.concurrency,
            "from": local_time(self.plan.from_hour, offset),
            "until": local_time(self.plan.until_hour, offset),
            "targets": self.plan.targets.iter().map(Target::label).collect::<Vec<_>>(),
            "departments": departments,
        })
    }

    fn csv(&self) -> String {
        let offset = self.settings.offset;
        let mut out = String::from(
            "department,day,hour,start,weeks,arrivals_per_hour,handle_time_seconds,\
             patience_seconds,model",
        );
        for target in &self.plan.targets {
            let _ = write!(
                out,
                ",{}",
                csv_field(&format!("agents_required {}", target.label()))
            );
        }
        out.push('\n');
        for department in &self.plan.departments {
            for cell in &department.cells {
                let _ = write!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    csv_field(&department.department),
                    cell.slot.day.short(),
                    cell.slot.hour,
                    Slot::start_time(cell.slot.hour, offset),
                    cell.weeks,
                    number(cell.arrivals_per_hour),
                    number(cell.handle_time_seconds),
                    number(cell.patience_seconds),
                    cell.model.label(),
                );
                for agents in &cell.agents_required {
                    let _ = write!(
                        out,
                        ",{}",
                        agents.map(|n| n.to_string()).unwrap_or_default()
                    );
                }
                out.push('\n');
            }
        }
        out
    }
}

fn trim(x: f64) -> String {
    crate::staffing::trim_number(x, 2)
}

fn plural(count: u32, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_apart_by_their_path() {
        let folder = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let folder_path = folder.path().to_string_lossy().into_owned();
        let file = folder.path().join("closes.jsonl");
        let cases = [
            (
                "postgres url",
                "postgres://plan:secret@db.example:5432/acquire".to_owned(),
                "PostgreSQL store",
                "postgres://…@db.example:5432/acquire".to_owned(),
            ),
            (
                "postgresql url without credentials",
                "postgresql://db/acquire".to_owned(),
                "PostgreSQL store",
                "postgresql://db/acquire".to_owned(),
            ),
            (
                "a folder",
                folder_path.clone(),
                "store folder",
                folder_path.clone(),
            ),
            (
                "a file, even before it exists",
                file.to_string_lossy().into_owned(),
                "close events file",
                file.to_string_lossy().into_owned(),
            ),
        ];
        for (name, path, kind, shown) in cases {
            let source = HistorySource::parse(&path);
            assert_eq!(source.kind(), kind, "{name}");
            assert_eq!(source.shown(), shown, "{name}");
        }
    }

    #[test]
    fn local_times_parse() {
        let base = days_from_civil(2018, 7, 23) * 86_400;
        let cases = [
            ("2018-07-23 05:17:40", Some(base + 5 * 3600 + 17 * 60 + 40)),
            ("2018-07-23T05:17:40", Some(base + 5 * 3600 + 17 * 60 + 40)),
            (" 2018-07-23 05:17 ", Some(base + 5 * 3600 + 17 * 60)),
            (
                "2018-07-23 05:17:40.250",
                Some(base + 5 * 3600 + 17 * 60 + 40),
            ),
            (
                "2024-02-29 00:00:00",
                Some(days_from_civil(2024, 2, 29) * 86_400),
            ),
            ("2023-02-29 00:00:00", None),
            ("2018-13-01 00:00:00", None),
            ("2018-07-23 24:00:00", None),
            ("2018-07-23 05:60:00", None),
            ("2018-07-23", None),
            ("23/07/2018 05:17:40", None),
            ("2018-07-23 05:17:40+02:00", None),
            ("2018-07-23 05:17:40.x", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_local_time(text), expected, "{text}");
        }
    }

    #[test]
    fn date_created_is_found_in_every_shape() {
        let cases = [
            (
                "flat",
                r#"{"id":"1","date_created":"2018-07-23 05:17:40"}"#,
                Some("2018-07-23 05:17:40"),
            ),
            (
                "envelope, data first",
                r#"{"date_created":"2000-01-01 00:00:00","data":{"date_created":"2018-07-23 05:17:40"}}"#,
                Some("2018-07-23 05:17:40"),
            ),
            ("null text", r#"{"date_created":"null"}"#, None),
            ("empty", r#"{"date_created":""}"#, None),
            ("absent", r#"{"id":"1"}"#, None),
            (
                "not strict JSON, as the vendor prints users",
                r#"{"users":"{"agent":{"role":"Operator"}}", "date_created" : "2018-07-23 05:17:40"}"#,
                Some("2018-07-23 05:17:40"),
            ),
        ];
        for (name, line, expected) in cases {
            assert_eq!(date_created(line).as_deref(), expected, "{name}");
        }
    }
}
