//! Plan: the offline `acquire-exporter plan` command.
//!
//! - From figures a lead types in (arrivals per hour, mean handle time, targets, concurrency,
//!   and the visitors' patience if known) it answers how many agents each target needs, with the
//!   trade-off around the answer, for budgeting before go-live: Erlang C, or Erlang A with
//!   `--patience`.
//! - With `--history PATH` it makes the week-by-hour plan of [`crate::staffing::history`] from
//!   past chats ([`history`]).

pub mod history;

use std::fmt::Write as _;

use serde_json::{Value, json};
use thiserror::Error;

use crate::staffing::erlang_a::ErlangA;
use crate::staffing::history::{HistoryError, MAX_WEEKS, UtcOffset};
use crate::staffing::{
    self, StaffingError, Target, average_speed_of_answer, erlang_c, offered_load, service_level,
    trim_number,
};

/// Result alias for this module.
pub type Result<T, E = PlanError> = std::result::Result<T, E>;

/// Why a plan could not be made; the message is what the command prints.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum PlanError {
    /// A figure or a target was refused, or the model cannot staff it.
    #[error(transparent)]
    Staffing(#[from] StaffingError),
    /// The history gives nothing to plan from, or a setting is out of range.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The history file could not be read.
    #[error("--history {path}: {problem}")]
    Read {
        /// The path given.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// A line of the history file is not a usable event.
    #[error("--history {path}, line {line}: {problem}")]
    Line {
        /// The path given.
        path: String,
        /// Its line number, from 1.
        line: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// The history source cannot be read by this build.
    #[error("--history {path}: {problem}")]
    Source {
        /// The path given.
        path: String,
        /// What is missing.
        problem: String,
    },
}

impl From<staffing::TargetError> for PlanError {
    fn from(error: staffing::TargetError) -> Self {
        Self::Staffing(error.into())
    }
}

/// How the report is written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// A report for people.
    #[default]
    Text,
    /// The same numbers as JSON, for scripts.
    Json,
    /// The same numbers as CSV, one row per staffing (or per hour of the week with --history),
    /// for spreadsheets.
    Csv,
}

/// Arguments of `acquire-exporter plan`, such as
/// `--arrivals-per-hour 120 --handle-time 300 --target 80%/60s --target 90%/30s --concurrency 2`,
/// or `--history closes.jsonl --utc-offset +02:00`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct PlanArgs {
    /// Chats arriving per hour at the time you plan for (usually the busiest hour).
    #[arg(
        long,
        value_name = "CHATS",
        allow_negative_numbers = true,
        required_unless_present = "history",
        conflicts_with = "history"
    )]
    pub arrivals_per_hour: Option<f64>,
    /// Mean handle time of a chat, in seconds: the agent's time on it, from accept to close.
    #[arg(
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true,
        required_unless_present = "history",
        conflicts_with = "history"
    )]
    pub handle_time: Option<f64>,
    /// Mean patience of the visitors, in seconds (how long they would wait before giving up):
    /// plan with Erlang A, in which they do; without it, Erlang C, in which nobody gives up.
    #[arg(
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true,
        conflicts_with = "history"
    )]
    pub patience: Option<f64>,
    /// Service-level target SHARE/WAIT, such as 80%/60s, 0.8/60 or 80/60; repeat the flag for
    /// several targets.
    #[arg(
        long = "target",
        value_name = "SHARE/WAIT",
        default_value = "80%/60s",
        allow_hyphen_values = true
    )]
    pub targets: Vec<String>,
    /// Chats one agent handles at once; the load is divided by it (an approximation, see the
    /// README).
    #[arg(
        long,
        value_name = "CHATS",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub concurrency: f64,
    /// Plan every hour of the week from past chats instead: a file of close events as the
    /// vendor sends them, one JSON object per line.
    #[arg(long, value_name = "PATH")]
    pub history: Option<String>,
    /// With --history: how many past weeks of each hour to read, counted back from the newest
    /// chat (1 to 53; default 4).
    #[arg(
        long,
        value_name = "WEEKS",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WEEKS)),
        conflicts_with_all = INTERVAL_FLAGS
    )]
    pub weeks: Option<u32>,
    /// With --history: plan for this percentile (0 to 100) of the weeks' arrivals instead of
    /// their mean, such as 90 for a busier-than-usual week.
    #[arg(
        long,
        value_name = "P",
        value_parser = parse_percentile,
        conflicts_with_all = INTERVAL_FLAGS
    )]
    pub percentile: Option<f64>,
    /// With --history: the time zone of the file's dates (`date_created` carries none) and of
    /// the plan, as an offset from UTC such as +02:00 (default +00:00).
    #[arg(
        long,
        value_name = "±HH:MM",
        allow_hyphen_values = true,
        conflicts_with_all = INTERVAL_FLAGS
    )]
    pub utc_offset: Option<UtcOffset>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// The flags of an interval plan, which the history's own flags conflict with.
const INTERVAL_FLAGS: [&str; 3] = ["arrivals_per_hour", "handle_time", "patience"];

fn parse_percentile(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a number from 0 to 100")),
    }
}

/// The model an interval plan uses.
#[derive(Clone, Copy, Debug)]
enum Queue {
    /// Erlang C on the load and handle time one agent carries.
    ErlangC { load: f64, handle_time: f64 },
    /// Erlang A.
    ErlangA(ErlangA),
}

/// Staffing figures at one number of agents.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Row {
    agents: u32,
    service_level: f64,
    wait_probability: f64,
    abandon_probability: f64,
    /// Mean wait of the answered chats, seconds; +inf when the agents cannot keep up.
    speed_of_answer: f64,
    /// Mean wait of all chats, abandoned ones included; +inf when the agents cannot keep up.
    mean_wait: f64,
    occupancy: f64,
}

impl Row {
    fn at(queue: Queue, agents: u32, target: Target) -> Row {
        match queue {
            Queue::ErlangC { load, handle_time } => {
                let speed = average_speed_of_answer(load, agents, handle_time);
                Row {
                    agents,
                    service_level: service_level(load, agents, target.wait_seconds, handle_time),
                    wait_probability: erlang_c(load, agents),
                    abandon_probability: 0.0,
                    speed_of_answer: speed,
                    // Nobody gives up, so every chat is answered.
                    mean_wait: speed,
                    // Past 100 % the queue grows without end; the share of time busy stays 100 %.
                    occupancy: (load / f64::from(agents)).min(1.0),
                }
            }
            Queue::ErlangA(model) => {
                let staffed = model.at(agents);
                Row {
                    agents,
                    service_level: staffed.service_level(target.wait_seconds),
                    wait_probability: staffed.probability_of_waiting(),
                    abandon_probability: staffed.probability_of_abandoning(),
                    speed_of_answer: staffed.average_speed_of_answer().unwrap_or(f64::INFINITY),
                    mean_wait: staffed.mean_wait(),
                    occupancy: staffed.occupancy(),
                }
            }
        }
    }

    fn json(&self) -> Value {
        let finite = |x: f64| x.is_finite().then_some(x);
        json!({
            "agents": self.agents,
            "service_level": self.service_level,
            "probability_of_waiting": self.wait_probability,
            "probability_of_abandoning": self.abandon_probability,
            "average_speed_of_answer_seconds": finite(self.speed_of_answer),
            "mean_wait_seconds": finite(self.mean_wait),
            "occupancy": self.occupancy,
        })
    }
}

/// The answer for one target and the rows around it (N−1 to N+2, from 1 agent; with Erlang A
/// also the row at the load, where Erlang C has no answer).
struct Answer {
    target: Target,
    agents: u32,
    rows: Vec<Row>,
}

impl Answer {
    fn chosen(&self) -> Option<&Row> {
        self.rows.iter().find(|row| row.agents == self.agents)
    }
}

/// Run the plan; returns the report text to print (the integrator prints it and maps errors to
/// exit code 2 with the message). The text ends with a newline. No target means the default,
/// 80 % within 60 s.
pub fn run(args: &PlanArgs) -> Result<String> {
    let targets = targets(&args.targets)?;
    if let Some(path) = &args.history {
        return history::run(path, args, targets);
    }
    interval(args, targets)
}

/// The targets of `--target`; none means the default.
fn targets(texts: &[String]) -> Result<Vec<Target>> {
    if texts.is_empty() {
        return Ok(vec![Target::DEFAULT]);
    }
    Ok(texts
        .iter()
        .map(|text| Target::parse(text))
        .collect::<std::result::Result<Vec<_>, _>>()?)
}

/// The plan for one interval from typed-in figures.
fn interval(args: &PlanArgs, targets: Vec<Target>) -> Result<String> {
    let arrivals_per_hour = args.arrivals_per_hour.unwrap_or(f64::NAN);
    if !(arrivals_per_hour.is_finite() && arrivals_per_hour > 0.0) {
        return Err(StaffingError::OutOfRange {
            name: "--arrivals-per-hour",
            value: arrivals_per_hour,
            expected: "a finite number of chats above 0",
        }
        .into());
    }
    let handle_time = args.handle_time.unwrap_or(f64::NAN);
    if !(handle_time.is_finite() && handle_time > 0.0) {
        return Err(StaffingError::OutOfRange {
            name: "--handle-time",
            value: handle_time,
            expected: "a finite number of seconds above 0",
        }
        .into());
    }
    let offered = offered_load(arrivals_per_hour / 3600.0, handle_time);
    let (load, handle) = staffing::agent_load(
        arrivals_per_hour / 3600.0,
        handle_time,
        args.concurrency,
        ["--arrivals-per-hour", "--handle-time", "--concurrency"],
    )?;
    let queue = match args.patience {
        Some(patience) => Queue::ErlangA(ErlangA::named(load, handle, patience, "--patience")?),
        None => Queue::ErlangC {
            load,
            handle_time: handle,
        },
    };
    let answers = targets
        .into_iter()
        .map(|target| {
            let agents = match queue {
                Queue::ErlangC { .. } => staffing::required_for_load(load, handle, target)?,
                Queue::ErlangA(model) => model.agents_required(target)?,
            };
            let around = agents.saturating_sub(1).max(1)..=agents.saturating_add(2);
            let mut staffings: Vec<u32> = around.collect();
            if let Queue::ErlangA(_) = queue {
                // The load fits in a u32 (it is at most MAX_LOAD_ERLANGS).
                let at_load = (load.floor() as u32).max(1);
                if at_load < staffings[0] {
                    staffings.insert(0, at_load);
                }
            }
            let rows = staffings
                .into_iter()
                .map(|n| Row::at(queue, n, target))
                .collect();
            Ok(Answer {
                target,
                agents,
                rows,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let report = Report {
        arrivals_per_hour,
        handle_time,
        concurrency: args.concurrency,
        patience: args.patience,
        offered,
        load,
        answers,
    };
    Ok(match args.format {
        Format::Text => report.text(),
        Format::Json => format!("{:#}\n", report.json()),
        Format::Csv => report.csv(),
    })
}

/// An interval plan, ready to print.
struct Report {
    arrivals_per_hour: f64,
    handle_time: f64,
    concurrency: f64,
    patience: Option<f64>,
    offered: f64,
    load: f64,
    answers: Vec<Answer>,
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn seconds(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1} s")
    } else {
        "unbounded".to_owned()
    }
}

fn plural(count: f64, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        trim_number(count, 2),
        if count == 1.0 { one } else { many }
    )
}

const MODEL_C: &str = "Model: Erlang C (random arrivals, one queue, nobody gives up); \
                       the README says when it over- or under-estimates.\n";

const MODEL_A: &str = "Model: Erlang A (random arrivals, one queue, visitors give up after an \
                       exponential patience); service level counts the chats that gave up as \
                       not answered; the README says when it over- or under-estimates.\n";

impl Report {
    fn model(&self) -> &'static str {
        if self.patience.is_some() {
            "erlang_a"
        } else {
            "erlang_c"
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "Offered load: {:.2} Erlangs ({} per hour x {} s mean handle time)",
            self.offered,
            plural(self.arrivals_per_hour, "chat", "chats"),
            trim_number(self.handle_time, 2),
        );
        let _ = writeln!(
            out,
            "Concurrency: {} per agent, so agents carry {:.2} Erlangs",
            plural(self.concurrency, "chat", "chats"),
            self.load,
        );
        if let Some(patience) = self.patience {
            let _ = writeln!(
                out,
                "Patience: visitors give up after {} s on average",
                trim_number(patience, 2)
            );
        }
        for answer in &self.answers {
            let _ = writeln!(
                out,
                "\nTarget {}: {}",
                answer.target.label(),
                plural(f64::from(answer.agents), "agent", "agents")
            );
            match (answer.chosen(), self.patience) {
                (Some(row), None) => {
                    let _ = writeln!(
                        out,
                        "  service level {}, P(wait) {}, average speed of answer {}, occupancy {}",
                        percent(row.service_level),
                        percent(row.wait_probability),
                        seconds(row.speed_of_answer),
                        percent(row.occupancy),
                    );
                }
                (Some(row), Some(_)) => {
                    let _ = writeln!(
                        out,
                        "  service level {}, P(wait) {}, P(abandon) {}, average speed of answer \
                         {}, mean wait {}, occupancy {}",
                        percent(row.service_level),
                        percent(row.wait_probability),
                        percent(row.abandon_probability),
                        seconds(row.speed_of_answer),
                        seconds(row.mean_wait),
                        percent(row.occupancy),
                    );
                }
                (None, _) => {}
            }
            if self.patience.is_some() {
                let _ = writeln!(
                    out,
                    "\n  {:2}{:>6}  {:>13}  {:>7}  {:>10}  {:>11}  {:>9}  {:>9}",
                    "",
                    "agents",
                    "service level",
                    "P(wait)",
                    "P(abandon)",
                    "avg. answer",
                    "mean wait",
                    "occupancy"
                );
            } else {
                let _ = writeln!(
                    out,
                    "\n  {:2}{:>6}  {:>13}  {:>7}  {:>11}  {:>9}",
                    "", "agents", "service level", "P(wait)", "avg. answer", "occupancy"
                );
            }
            let mut previous: Option<u32> = None;
            for row in &answer.rows {
                if previous.is_some_and(|p| p + 1 < row.agents) {
                    out.push_str("       ...\n");
                }
                previous = Some(row.agents);
                let marker = if row.agents == answer.agents {
                    "->"
                } else {
                    ""
                };
                if self.patience.is_some() {
                    let _ = writeln!(
                        out,
                        "  {marker:2}{:>6}  {:>13}  {:>7}  {:>10}  {:>11}  {:>9}  {:>9}",
                        row.agents,
                        percent(row.service_level),
                        percent(row.wait_probability),
                        percent(row.abandon_probability),
                        seconds(row.speed_of_answer),
                        seconds(row.mean_wait),
                        percent(row.occupancy),
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "  {marker:2}{:>6}  {:>13}  {:>7}  {:>11}  {:>9}",
                        row.agents,
                        percent(row.service_level),
                        percent(row.wait_probability),
                        seconds(row.speed_of_answer),
                        percent(row.occupancy),
                    );
                }
            }
        }
        out.push('\n');
        out.push_str(if self.patience.is_some() {
            MODEL_A
        } else {
            MODEL_C
        });
        out
    }

    fn json(&self) -> Value {
        let targets: Vec<Value> = self
            .answers
            .iter()
            .map(|answer| {
                let chosen = answer.chosen().map(Row::json).unwrap_or(Value::Null);
                json!({
                    "target": answer.target.label(),
                    "share": answer.target.share,
                    "wait_seconds": answer.target.wait_seconds,
                    "agents_required": answer.agents,
                    "at_agents_required": chosen,
                    "around": answer.rows.iter().map(Row::json).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "model": self.model(),
            "arrivals_per_hour": self.arrivals_per_hour,
            "handle_time_seconds": self.handle_time,
            "patience_seconds": self.patience,
            "concurrency": self.concurrency,
            "offered_load_erlangs": self.offered,
            "agent_load_erlangs": self.load,
            "targets": targets,
        })
    }

    fn csv(&self) -> String {
        let mut out = String::from(
            "model,target,agents,agents_required,service_level,probability_of_waiting,\
             probability_of_abandoning,average_speed_of_answer_seconds,mean_wait_seconds,\
             occupancy\n",
        );
        let number = |x: f64| {
            if x.is_finite() {
                x.to_string()
            } else {
                String::new()
            }
        };
        for answer in &self.answers {
            for row in &answer.rows {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{}",
                    self.model(),
                    answer.target.label(),
                    row.agents,
                    answer.agents,
                    number(row.service_level),
                    number(row.wait_probability),
                    number(row.abandon_probability),
                    number(row.speed_of_answer),
                    number(row.mean_wait),
                    number(row.occupancy),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    #[command(name = "acquire-exporter")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Command {
        Plan(PlanArgs),
    }

    /// Parses the flags after `acquire-exporter plan`, given as one line.
    fn parse(flags: &str) -> std::result::Result<PlanArgs, clap::Error> {
        let words = ["acquire-exporter", "plan"]
            .into_iter()
            .chain(flags.split_whitespace());
        Cli::try_parse_from(words).map(|cli| match cli.command {
            Command::Plan(plan) => plan,
        })
    }

    fn plan(flags: &str) -> Result<String> {
        let args = parse(flags).unwrap_or_else(|e| panic!("{flags}: {e}"));
        run(&args)
    }

    fn lines(lines: &[&str]) -> String {
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }

    const MODEL: &str = "Model: Erlang C (random arrivals, one queue, nobody gives up); \
                         the README says when it over- or under-estimates.";

    #[test]
    fn text_reports() {
        let cases: [(&str, &str, String); 3] = [
            (
                // The golden case: 10 Erlangs of 180 s chats, 80 % within 20 s.
                "golden case",
                "--arrivals-per-hour 200 --handle-time 180 --target 80%/20s",
                lines(&[
                    "Offered load: 10.00 Erlangs (200 chats per hour x 180 s mean handle time)",
                    "Concurrency: 1 chat per agent, so agents carry 10.00 Erlangs",
                    "",
                    "Target 80%/20s: 14 agents",
                    "  service level 88.8%, P(wait) 17.4%, average speed of answer 7.8 s, occupancy 71.4%",
                    "",
                    "    agents  service level  P(wait)  avg. answer  occupancy",
                    "        13          79.6%    28.5%       17.1 s      76.9%",
                    "  ->    14          88.8%    17.4%        7.8 s      71.4%",
                    "        15          94.1%    10.2%        3.7 s      66.7%",
                    "        16          97.1%     5.7%        1.7 s      62.5%",
                    "",
                    MODEL,
                ]),
            ),
            (
                // 20 Erlangs at 2.5 chats per agent: 8 Erlangs of 240 s per agent.
                "concurrency with the default target",
                "--arrivals-per-hour 120 --handle-time 600 --concurrency 2.5",
                lines(&[
                    "Offered load: 20.00 Erlangs (120 chats per hour x 600 s mean handle time)",
                    "Concurrency: 2.5 chats per agent, so agents carry 8.00 Erlangs",
                    "",
                    "Target 80%/60s: 11 agents",
                    "  service level 88.4%, P(wait) 24.5%, average speed of answer 19.6 s, occupancy 72.7%",
                    "",
                    "    agents  service level  P(wait)  avg. answer  occupancy",
                    "        10          75.2%    40.9%       49.1 s      80.0%",
                    "  ->    11          88.4%    24.5%       19.6 s      72.7%",
                    "        12          94.9%    14.0%        8.4 s      66.7%",
                    "        13          97.8%     7.6%        3.6 s      61.5%",
                    "",
                    MODEL,
                ]),
            ),
            (
                // One agent fewer than the answer cannot keep up at all.
                "overloaded row and two targets",
                "--arrivals-per-hour 120 --handle-time 300 --target 50%/300s --target 0.8/20",
                lines(&[
                    "Offered load: 10.00 Erlangs (120 chats per hour x 300 s mean handle time)",
                    "Concurrency: 1 chat per agent, so agents carry 10.00 Erlangs",
                    "",
                    "Target 50%/300s: 11 agents",
                    "  service level 74.9%, P(wait) 68.2%, average speed of answer 204.6 s, occupancy 90.9%",
                    "",
                    "    agents  service level  P(wait)  avg. answer  occupancy",
                    "        10           0.0%   100.0%    unbounded     100.0%",
                    "  ->    11          74.9%    68.2%      204.6 s      90.9%",
                    "        12          93.9%    44.9%       67.4 s      83.3%",
                    "        13          98.6%    28.5%       28.5 s      76.9%",
                    "",
                    "Target 80%/20s: 14 agents",
                    "  service level 86.7%, P(wait) 17.4%, average speed of answer 13.1 s, occupancy 71.4%",
                    "",
                    "    agents  service level  P(wait)  avg. answer  occupancy",
                    "        13          76.6%    28.5%       28.5 s      76.9%",
                    "  ->    14          86.7%    17.4%       13.1 s      71.4%",
                    "        15          92.7%    10.2%        6.1 s      66.7%",
                    "        16          96.2%     5.7%        2.9 s      62.5%",
                    "",
                    MODEL,
                ]),
            ),
        ];
        for (name, args, expected) in cases {
            assert_eq!(plan(args).as_deref(), Ok(expected.as_str()), "{name}");
        }
    }

    const MODEL_A_LINE: &str = "Model: Erlang A (random arrivals, one queue, visitors give up \
                                after an exponential patience); service level counts the \
                                chats that gave up as not answered; the README says when it \
                                over- or under-estimates.";

    #[test]
    fn text_reports_with_patience() {
        // The published Erlang A case (pyworkforce): 100 chats per 30 min, 3 min, 5 min patience.
        let report =
            plan("--arrivals-per-hour 200 --handle-time 180 --patience 300 --target 80%/20s");
        let expected = lines(&[
            "Offered load: 10.00 Erlangs (200 chats per hour x 180 s mean handle time)",
            "Concurrency: 1 chat per agent, so agents carry 10.00 Erlangs",
            "Patience: visitors give up after 300 s on average",
            "",
            "Target 80%/20s: 13 agents",
            "  service level 85.8%, P(wait) 22.6%, P(abandon) 2.5%, average speed of answer 6.9 s, \
             mean wait 7.5 s, occupancy 75.0%",
            "",
            "    agents  service level  P(wait)  P(abandon)  avg. answer  mean wait  occupancy",
            "        10          51.7%    59.9%       10.9%       31.2 s     32.8 s      89.1%",
            "       ...",
            "        12          77.2%    33.2%        4.3%       11.9 s     12.8 s      79.8%",
            "  ->    13          85.8%    22.6%        2.5%        6.9 s      7.5 s      75.0%",
            "        14          91.7%    14.5%        1.4%        3.9 s      4.2 s      70.4%",
            "        15          95.4%     8.9%        0.8%        2.1 s      2.3 s      66.2%",
            "",
            MODEL_A_LINE,
        ]);
        assert_eq!(report.as_deref(), Ok(expected.as_str()));
    }

    #[test]
    fn json_report_with_patience_has_rows_at_and_above_the_load() {
        let number = |value: &Value| value.as_f64().unwrap_or(f64::NAN);
        let flags = "--arrivals-per-hour 200 --handle-time 180 --patience 300 --target 80%/20s \
                     --format json";
        let report: Value = serde_json::from_str(&plan(flags).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report["model"], "erlang_a");
        assert_eq!(report["patience_seconds"], 300.0);
        let target = &report["targets"][0];
        assert_eq!(target["agents_required"], 13);
        let rows = target["around"].as_array().cloned().unwrap_or_default();
        let fourteen = rows
            .iter()
            .find(|row| row["agents"] == 14)
            .unwrap_or_else(|| panic!("{rows:?}"));
        // pyworkforce's published figures, to their precision; its "average speed of answer"
        // is the mean wait of all chats, 0.069919 min.
        assert!((number(&fourteen["probability_of_waiting"]) - 0.14526).abs() < 5e-6);
        assert!((number(&fourteen["probability_of_abandoning"]) - 0.013984).abs() < 5e-7);
        assert!((number(&fourteen["service_level"]) - 0.916792).abs() < 5e-7);
        assert!((number(&fourteen["occupancy"]) - 0.704297).abs() < 5e-7);
        assert!((number(&fourteen["mean_wait_seconds"]) / 60.0 - 0.069919).abs() < 5e-7);
        assert!(number(&fourteen["average_speed_of_answer_seconds"]) < 4.19);
        // At twice the load of 14 agents every row still has finite figures.
        let flags = "--arrivals-per-hour 400 --handle-time 180 --patience 300 --target 80%/20s \
                     --format json";
        let report: Value = serde_json::from_str(&plan(flags).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        let rows = report["targets"][0]["around"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(rows[0]["agents"], 20, "the row at the load comes first");
        let overloaded: Vec<&Value> = rows
            .iter()
            .filter(|r| number(&r["agents"]) <= 20.0)
            .collect();
        assert!(!overloaded.is_empty());
        for row in overloaded {
            for field in [
                "service_level",
                "probability_of_waiting",
                "probability_of_abandoning",
                "average_speed_of_answer_seconds",
                "mean_wait_seconds",
                "occupancy",
            ] {
                let value = number(&row[field]);
                assert!(value.is_finite() && value >= 0.0, "{field} in {row}");
            }
            assert!(number(&row["probability_of_abandoning"]) > 0.0, "{row}");
            assert!(number(&row["service_level"]) > 0.0, "{row}");
        }
        // Without patience the same rows exist as before and nobody abandons.
        let flags = "--arrivals-per-hour 200 --handle-time 180 --target 80%/20s --format json";
        let report: Value = serde_json::from_str(&plan(flags).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report["model"], "erlang_c");
        assert_eq!(report["patience_seconds"], Value::Null);
        let chosen = &report["targets"][0]["at_agents_required"];
        assert_eq!(chosen["probability_of_abandoning"], 0.0);
        assert_eq!(
            chosen["mean_wait_seconds"],
            chosen["average_speed_of_answer_seconds"]
        );
    }

    #[test]
    fn csv_report_has_a_row_per_staffing() {
        let flags = "--arrivals-per-hour 200 --handle-time 180 --target 80%/20s --format csv";
        let report = plan(flags).unwrap_or_else(|e| panic!("{e}"));
        let rows: Vec<&str> = report.lines().collect();
        assert_eq!(
            rows[0],
            "model,target,agents,agents_required,service_level,probability_of_waiting,\
             probability_of_abandoning,average_speed_of_answer_seconds,mean_wait_seconds,occupancy"
        );
        let agents: Vec<&str> = rows[1..]
            .iter()
            .map(|r| r.split(',').nth(2).unwrap_or(""))
            .collect();
        assert_eq!(agents, ["13", "14", "15", "16"]);
        assert!(
            rows[2].starts_with("erlang_c,80%/20s,14,14,0.888"),
            "{}",
            rows[2]
        );
    }

    #[test]
    fn json_report_carries_the_same_numbers() {
        let flags = "--arrivals-per-hour 200 --handle-time 180 --target 80%/20s \
                     --target 50%/300s --format json";
        let report = plan(flags).unwrap_or_else(|e| panic!("{e}"));
        let report: Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report["arrivals_per_hour"], 200.0);
        assert_eq!(report["handle_time_seconds"], 180.0);
        assert_eq!(report["concurrency"], 1.0);
        assert_eq!(report["offered_load_erlangs"], 10.0);
        assert_eq!(report["agent_load_erlangs"], 10.0);
        let golden = &report["targets"][0];
        assert_eq!(golden["target"], "80%/20s");
        assert_eq!(golden["share"], 0.8);
        assert_eq!(golden["wait_seconds"], 20.0);
        assert_eq!(golden["agents_required"], 14);
        let chosen = &golden["at_agents_required"];
        let number = |value: &Value| value.as_f64().unwrap_or(f64::NAN);
        // The golden figures, to their printed precision.
        assert!((number(&chosen["probability_of_waiting"]) - 0.17413).abs() < 5e-6);
        assert!((number(&chosen["service_level"]) - 0.88835).abs() < 5e-6);
        assert!((number(&chosen["average_speed_of_answer_seconds"]) - 7.836).abs() < 5e-4);
        assert!((number(&chosen["occupancy"]) - 10.0 / 14.0).abs() < 1e-12);
        let agents: Vec<_> = golden["around"]
            .as_array()
            .map(|rows| rows.iter().map(|row| row["agents"].clone()).collect())
            .unwrap_or_default();
        assert_eq!(agents, [13, 14, 15, 16]);
        // A row that cannot keep up has no average speed of answer.
        let overloaded = &report["targets"][1]["around"][0];
        assert_eq!(overloaded["agents"], 10);
        assert_eq!(overloaded["average_speed_of_answer_seconds"], Value::Null);
        assert_eq!(overloaded["service_level"], 0.0);
        assert_eq!(overloaded["probability_of_waiting"], 1.0);
    }

    #[test]
    fn flags_and_defaults() {
        let args =
            parse("--arrivals-per-hour 120 --handle-time 300").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            args,
            PlanArgs {
                arrivals_per_hour: Some(120.0),
                handle_time: Some(300.0),
                patience: None,
                targets: vec!["80%/60s".to_owned()],
                concurrency: 1.0,
                history: None,
                weeks: None,
                percentile: None,
                utc_offset: None,
                format: Format::Text,
            }
        );
        let flags = "--arrivals-per-hour=120 --handle-time 300 --target 90%/30s \
                     --target 0.8/60 --concurrency 3 --format json";
        let args = parse(flags).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.targets, ["90%/30s", "0.8/60"]);
        assert_eq!(args.concurrency, 3.0);
        assert_eq!(args.format, Format::Json);
        // An empty list of targets (built in code) plans for the default.
        let no_target = PlanArgs {
            targets: Vec::new(),
            ..args.clone()
        };
        let default_target = PlanArgs {
            targets: vec!["80%/60s".to_owned()],
            ..args
        };
        assert_eq!(run(&no_target), run(&default_target));
        // Required flags, and numbers clap itself refuses.
        assert!(parse("--handle-time 300").is_err());
        assert!(parse("--arrivals-per-hour lots --handle-time 300").is_err());
        assert!(parse("--arrivals-per-hour 1 --handle-time 5m").is_err());
        assert!(parse("--arrivals-per-hour 1 --handle-time 5 --format xml").is_err());
        // The history flags: the figures come from the history, so typed-in ones conflict, and
        // the history's own flags need it.
        let args = parse("--history closes.jsonl --weeks 8 --percentile 90 --utc-offset -05:30")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.history.as_deref(), Some("closes.jsonl"));
        assert_eq!(args.weeks, Some(8));
        assert_eq!(args.percentile, Some(90.0));
        assert_eq!(args.utc_offset.map(|o| o.minutes()), Some(-330));
        for refused in [
            "--history h --arrivals-per-hour 1",
            "--history h --handle-time 300",
            "--history h --patience 300",
            "--history h --weeks 0",
            "--history h --weeks 54",
            "--history h --percentile 101",
            "--history h --utc-offset +15:00",
            "--arrivals-per-hour 1 --handle-time 300 --weeks 4",
            "--arrivals-per-hour 1 --handle-time 300 --percentile 90",
            "--arrivals-per-hour 1 --handle-time 300 --utc-offset +02:00",
        ] {
            assert!(parse(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn bad_input_is_refused_with_its_message() {
        let cases: [(&str, &str, &str); 16] = [
            (
                "zero patience",
                "--arrivals-per-hour 120 --handle-time 300 --patience 0",
                "--patience must be a finite number of seconds above 0, at most 1000000 handle \
                 times, got 0",
            ),
            (
                "negative patience",
                "--arrivals-per-hour 120 --handle-time 300 --patience -5",
                "--patience must be a finite number of seconds above 0, at most 1000000 handle \
                 times, got -5",
            ),
            (
                "patience past a million handle times",
                "--arrivals-per-hour 120 --handle-time 300 --patience 1e9",
                "--patience must be a finite number of seconds above 0, at most 1000000 handle \
                 times, got 1000000000",
            ),
            (
                "zero arrivals",
                "--arrivals-per-hour 0 --handle-time 300",
                "--arrivals-per-hour must be a finite number of chats above 0, got 0",
            ),
            (
                "negative arrivals",
                "--arrivals-per-hour -5 --handle-time 300",
                "--arrivals-per-hour must be a finite number of chats above 0, got -5",
            ),
            (
                "NaN arrivals",
                "--arrivals-per-hour NaN --handle-time 300",
                "--arrivals-per-hour must be a finite number of chats above 0, got NaN",
            ),
            (
                "zero handle time",
                "--arrivals-per-hour 120 --handle-time 0",
                "--handle-time must be a finite number of seconds above 0, got 0",
            ),
            (
                "infinite handle time",
                "--arrivals-per-hour 120 --handle-time inf",
                "--handle-time must be a finite number of seconds above 0, got inf",
            ),
            (
                "concurrency below one",
                "--arrivals-per-hour 120 --concurrency 0.5 --handle-time 300",
                "--concurrency must be a finite number of chats per agent, 1 or more, got 0.5",
            ),
            (
                "negative concurrency",
                "--arrivals-per-hour 120 --concurrency -2 --handle-time 300",
                "--concurrency must be a finite number of chats per agent, 1 or more, got -2",
            ),
            (
                "share of 100%",
                "--arrivals-per-hour 120 --target 100%/60s --handle-time 300",
                "target \"100%/60s\": the share must be above 0% and below 100%",
            ),
            (
                "share of 1",
                "--arrivals-per-hour 120 --target 1/60 --handle-time 300",
                "target \"1/60\": the share must be above 0% and below 100%",
            ),
            (
                "negative share",
                "--arrivals-per-hour 120 --target -80%/60s --handle-time 300",
                "target \"-80%/60s\": the share must be above 0% and below 100%",
            ),
            (
                "negative wait, after a good target",
                "--arrivals-per-hour 120 --target 80%/60s --target 90%/-5s --handle-time 300",
                "target \"90%/-5s\": the wait must be a finite number of seconds, 0 or more",
            ),
            (
                "target without a wait",
                "--arrivals-per-hour 120 --target 80% --handle-time 300",
                "target \"80%\" is not SHARE/WAIT such as 80%/60s, 0.8/60 or 80/60",
            ),
            (
                "load past the model's range",
                "--arrivals-per-hour 1e12 --handle-time 3600",
                "an offered load of 1000000000000 Erlangs is past the 1000000 Erlangs this model computes",
            ),
        ];
        for (name, args, message) in cases {
            match plan(args) {
                Err(error) => assert_eq!(error.to_string(), message, "{name}"),
                Ok(report) => panic!("{name}: accepted:\n{report}"),
            }
        }
    }
}
