//! Plan: the offline `acquire-exporter plan` command. From figures a lead types in (arrivals per
//! hour, mean handle time, targets, concurrency) it answers how many agents each target needs,
//! with the trade-off around the answer, for budgeting before go-live.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::staffing::{
    self, Result, StaffingError, Target, average_speed_of_answer, erlang_c, offered_load,
    service_level, trim_number,
};

/// How the report is written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// A report for people.
    #[default]
    Text,
    /// The same numbers as JSON, for scripts.
    Json,
}

/// Arguments of `acquire-exporter plan`, such as
/// `--arrivals-per-hour 120 --handle-time 300 --target 80%/60s --target 90%/30s --concurrency 2`.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct PlanArgs {
    /// Chats arriving per hour at the time you plan for (usually the busiest hour).
    #[arg(long, value_name = "CHATS", allow_negative_numbers = true)]
    pub arrivals_per_hour: f64,
    /// Mean handle time of a chat, in seconds: the agent's time on it, from accept to close.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub handle_time: f64,
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
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Staffing figures at one number of agents.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Row {
    agents: u32,
    service_level: f64,
    wait_probability: f64,
    /// Seconds; +inf when the agents cannot keep up.
    speed_of_answer: f64,
    occupancy: f64,
}

impl Row {
    fn at(load: f64, agents: u32, target: Target, handle_time: f64) -> Row {
        Row {
            agents,
            service_level: service_level(load, agents, target.wait_seconds, handle_time),
            wait_probability: erlang_c(load, agents),
            speed_of_answer: average_speed_of_answer(load, agents, handle_time),
            // Past 100 % the queue grows without end; the share of time busy stays 100 %.
            occupancy: (load / f64::from(agents)).min(1.0),
        }
    }

    fn json(&self) -> Value {
        json!({
            "agents": self.agents,
            "service_level": self.service_level,
            "probability_of_waiting": self.wait_probability,
            "average_speed_of_answer_seconds":
                self.speed_of_answer.is_finite().then_some(self.speed_of_answer),
            "occupancy": self.occupancy,
        })
    }
}

/// The answer for one target and the rows around it (N−1 to N+2, from 1 agent).
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
    if !(args.arrivals_per_hour.is_finite() && args.arrivals_per_hour > 0.0) {
        return Err(StaffingError::OutOfRange {
            name: "--arrivals-per-hour",
            value: args.arrivals_per_hour,
            expected: "a finite number of chats above 0",
        });
    }
    if !(args.handle_time.is_finite() && args.handle_time > 0.0) {
        return Err(StaffingError::OutOfRange {
            name: "--handle-time",
            value: args.handle_time,
            expected: "a finite number of seconds above 0",
        });
    }
    let targets = if args.targets.is_empty() {
        vec![Target::DEFAULT]
    } else {
        args.targets
            .iter()
            .map(|text| Target::parse(text))
            .collect::<Result<Vec<_>, _>>()?
    };
    let offered = offered_load(args.arrivals_per_hour / 3600.0, args.handle_time);
    let (load, handle) = staffing::agent_load(
        args.arrivals_per_hour / 3600.0,
        args.handle_time,
        args.concurrency,
        ["--arrivals-per-hour", "--handle-time", "--concurrency"],
    )?;
    let answers = targets
        .into_iter()
        .map(|target| {
            let agents = staffing::required_for_load(load, handle, target)?;
            let rows = (agents.saturating_sub(1).max(1)..=agents.saturating_add(2))
                .map(|n| Row::at(load, n, target, handle))
                .collect();
            Ok(Answer {
                target,
                agents,
                rows,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(match args.format {
        Format::Text => text(args, offered, load, &answers),
        Format::Json => format!("{:#}\n", report_json(args, offered, load, &answers)),
    })
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

fn text(args: &PlanArgs, offered: f64, load: f64, answers: &[Answer]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "Offered load: {offered:.2} Erlangs ({} per hour x {} s mean handle time)",
        plural(args.arrivals_per_hour, "chat", "chats"),
        trim_number(args.handle_time, 2),
    );
    let _ = writeln!(
        out,
        "Concurrency: {} per agent, so agents carry {load:.2} Erlangs",
        plural(args.concurrency, "chat", "chats"),
    );
    for answer in answers {
        let _ = writeln!(
            out,
            "\nTarget {}: {}",
            answer.target.label(),
            plural(f64::from(answer.agents), "agent", "agents")
        );
        if let Some(row) = answer.chosen() {
            let _ = writeln!(
                out,
                "  service level {}, P(wait) {}, average speed of answer {}, occupancy {}",
                percent(row.service_level),
                percent(row.wait_probability),
                seconds(row.speed_of_answer),
                percent(row.occupancy),
            );
        }
        let _ = writeln!(
            out,
            "\n  {:2}{:>6}  {:>13}  {:>7}  {:>11}  {:>9}",
            "", "agents", "service level", "P(wait)", "avg. answer", "occupancy"
        );
        for row in &answer.rows {
            let marker = if row.agents == answer.agents {
                "->"
            } else {
                ""
            };
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
    out.push_str(
        "\nModel: Erlang C (random arrivals, one queue, nobody gives up); \
         the README says when it over- or under-estimates.\n",
    );
    out
}

fn report_json(args: &PlanArgs, offered: f64, load: f64, answers: &[Answer]) -> Value {
    let targets: Vec<Value> = answers
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
        "arrivals_per_hour": args.arrivals_per_hour,
        "handle_time_seconds": args.handle_time,
        "concurrency": args.concurrency,
        "offered_load_erlangs": offered,
        "agent_load_erlangs": load,
        "targets": targets,
    })
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
                arrivals_per_hour: 120.0,
                handle_time: 300.0,
                targets: vec!["80%/60s".to_owned()],
                concurrency: 1.0,
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
    }

    #[test]
    fn bad_input_is_refused_with_its_message() {
        let cases: [(&str, &str, &str); 13] = [
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
