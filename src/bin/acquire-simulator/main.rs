//! `acquire-simulator`: synthetic Acquire webhook traffic for demos, dashboards and end-to-end tests.
//!
//! Chats arrive as a Poisson process whose rate follows a working day (quiet nights, a morning
//! peak, a lunch dip, an afternoon peak, a tail in the evening). Each chat sends the events the
//! vendor sends, in the vendor's wire shape (every scalar a string, `users` and `message` as JSON
//! text, an `event` field): `CHAT_ON_START` (wrapped in `data`), `CHAT_ON_ACCEPT` after the wait,
//! a few `CHAT_ON_MESSAGE`, and `CHAT_ON_CLOSE`. Some visitors give up before an agent answers
//! (a close with no wait time), waits are log-normal with the odd very long one and grow with the
//! load, and a small share of deliveries is sent twice, as a sender's retry would be.
//!
//! Time runs `--speed` times faster than the wall clock: waits and durations in the events are in
//! simulated seconds, while the exporter's live queue and staffing gauges measure real time, so
//! they read compressed at any speed but 1.
//!
//! The data is synthetic: ids are numbers and agent ids are `agent-<n>`; no names, e-mails or
//! phone numbers are sent.

use std::process::ExitCode;
use std::time::Duration;

use acquire_exporter::config::parse_duration;
use clap::Parser;

mod client;
mod simulation;
mod traffic;

use client::*;
use simulation::*;
use traffic::*;

/// Sends realistic synthetic Acquire chat webhooks (start, accept, message, close) to an exporter.
#[derive(Parser, Debug)]
#[command(name = "acquire-simulator", version)]
pub(crate) struct Args {
    /// Webhook URL to POST to (http:// only).
    #[arg(
        long,
        env = "ACQUIRE_SIMULATOR_URL",
        default_value = "http://127.0.0.1:9867/webhook"
    )]
    pub(crate) url: String,

    /// Webhook token, sent as `Authorization: Bearer <token>`.
    #[arg(long, env = "ACQUIRE_SIMULATOR_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// How many times faster than the wall clock simulated time runs (24 plays a day in an hour).
    #[arg(long, env = "ACQUIRE_SIMULATOR_SPEED", default_value_t = 1.0, value_parser = positive)]
    pub(crate) speed: f64,

    /// Chats per simulated hour at the busiest time of day, over all departments.
    #[arg(long, env = "ACQUIRE_SIMULATOR_PEAK_PER_HOUR", default_value_t = 120.0, value_parser = positive)]
    pub(crate) peak_per_hour: f64,

    /// Simulated time of day to start at, in hours (e.g. 9.5 for 09:30); the current UTC time of
    /// day when not given.
    #[arg(long, env = "ACQUIRE_SIMULATOR_START_HOUR", value_parser = hour)]
    pub(crate) start_hour: Option<f64>,

    /// Department ids, comma-separated; earlier ones get more chats.
    #[arg(
        long,
        env = "ACQUIRE_SIMULATOR_DEPARTMENTS",
        value_delimiter = ',',
        default_value = "12,15,18"
    )]
    pub(crate) departments: Vec<String>,

    /// Agents per department; their ids are `agent-<department><n>`.
    #[arg(long, env = "ACQUIRE_SIMULATOR_AGENTS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub(crate) agents: u32,

    /// Median wait in simulated seconds at an average load (it grows at the peaks).
    #[arg(long, env = "ACQUIRE_SIMULATOR_MEDIAN_WAIT", default_value_t = 20.0, value_parser = positive)]
    pub(crate) median_wait: f64,

    /// Median chat duration after the accept, in simulated seconds.
    #[arg(long, env = "ACQUIRE_SIMULATOR_MEDIAN_DURATION", default_value_t = 240.0, value_parser = positive)]
    pub(crate) median_duration: f64,

    /// Share of visitors who leave before an agent answers, at an average load.
    #[arg(long, env = "ACQUIRE_SIMULATOR_UNANSWERED_SHARE", default_value_t = 0.05, value_parser = share)]
    pub(crate) unanswered_share: f64,

    /// Share of deliveries sent a second time, as a sender's retry.
    #[arg(long, env = "ACQUIRE_SIMULATOR_DUPLICATE_SHARE", default_value_t = 0.02, value_parser = share)]
    pub(crate) duplicate_share: f64,

    /// Share of close events sent without their id, which the exporter refuses (400).
    #[arg(long, env = "ACQUIRE_SIMULATOR_INVALID_SHARE", default_value_t = 0.002, value_parser = share)]
    pub(crate) invalid_share: f64,

    /// Mean number of `CHAT_ON_MESSAGE` events per answered chat.
    #[arg(long, env = "ACQUIRE_SIMULATOR_MESSAGES", default_value_t = 2.0, value_parser = non_negative)]
    pub(crate) messages: f64,

    /// Account id sent in the events.
    #[arg(long, env = "ACQUIRE_SIMULATOR_ACCOUNT_ID", default_value = "10111")]
    pub(crate) account_id: String,

    /// Stop after this much wall-clock time (e.g. 90s, 10m, 2h); runs until interrupted without it.
    #[arg(long, env = "ACQUIRE_SIMULATOR_DURATION", value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,

    /// Print a summary line this often (wall-clock).
    #[arg(long, env = "ACQUIRE_SIMULATOR_REPORT_EVERY", default_value = "10s", value_parser = parse_duration)]
    pub(crate) report_every: Duration,

    /// Seed of the random numbers, for a repeatable run; from the clock when not given.
    #[arg(long, env = "ACQUIRE_SIMULATOR_SEED")]
    pub(crate) seed: Option<u64>,
}

pub(crate) fn positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

pub(crate) fn non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of 0 or more")),
    }
}

pub(crate) fn share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

pub(crate) fn hour(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..24.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not an hour of the day from 0 to 24")),
    }
}

pub(crate) fn main() -> ExitCode {
    let args = Args::parse();
    if args.departments.iter().any(|d| d.trim().is_empty()) {
        eprintln!("acquire-simulator: --departments has an empty id");
        return ExitCode::FAILURE;
    }
    let client = match Client::new(&args.url, args.token.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("acquire-simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sim = Simulation::new(args, client);
    sim.run();
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// The day's rhythm and the random draws.

#[cfg(test)]
mod tests;
