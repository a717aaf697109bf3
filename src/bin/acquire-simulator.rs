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

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acquire_exporter::config::parse_duration;
use clap::Parser;
use serde_json::json;

/// Sends realistic synthetic Acquire chat webhooks (start, accept, message, close) to an exporter.
#[derive(Parser, Debug)]
#[command(name = "acquire-simulator", version)]
struct Args {
    /// Webhook URL to POST to (http:// only).
    #[arg(
        long,
        env = "ACQUIRE_SIMULATOR_URL",
        default_value = "http://127.0.0.1:9867/webhook"
    )]
    url: String,

    /// Webhook token, sent as `Authorization: Bearer <token>`.
    #[arg(long, env = "ACQUIRE_SIMULATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// How many times faster than the wall clock simulated time runs (24 plays a day in an hour).
    #[arg(long, env = "ACQUIRE_SIMULATOR_SPEED", default_value_t = 1.0, value_parser = positive)]
    speed: f64,

    /// Chats per simulated hour at the busiest time of day, over all departments.
    #[arg(long, env = "ACQUIRE_SIMULATOR_PEAK_PER_HOUR", default_value_t = 120.0, value_parser = positive)]
    peak_per_hour: f64,

    /// Simulated time of day to start at, in hours (e.g. 9.5 for 09:30); the current UTC time of
    /// day when not given.
    #[arg(long, env = "ACQUIRE_SIMULATOR_START_HOUR", value_parser = hour)]
    start_hour: Option<f64>,

    /// Department ids, comma-separated; earlier ones get more chats.
    #[arg(
        long,
        env = "ACQUIRE_SIMULATOR_DEPARTMENTS",
        value_delimiter = ',',
        default_value = "12,15,18"
    )]
    departments: Vec<String>,

    /// Agents per department; their ids are `agent-<department><n>`.
    #[arg(long, env = "ACQUIRE_SIMULATOR_AGENTS", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=99))]
    agents: u32,

    /// Median wait in simulated seconds at an average load (it grows at the peaks).
    #[arg(long, env = "ACQUIRE_SIMULATOR_MEDIAN_WAIT", default_value_t = 20.0, value_parser = positive)]
    median_wait: f64,

    /// Median chat duration after the accept, in simulated seconds.
    #[arg(long, env = "ACQUIRE_SIMULATOR_MEDIAN_DURATION", default_value_t = 240.0, value_parser = positive)]
    median_duration: f64,

    /// Share of visitors who leave before an agent answers, at an average load.
    #[arg(long, env = "ACQUIRE_SIMULATOR_UNANSWERED_SHARE", default_value_t = 0.05, value_parser = share)]
    unanswered_share: f64,

    /// Share of deliveries sent a second time, as a sender's retry.
    #[arg(long, env = "ACQUIRE_SIMULATOR_DUPLICATE_SHARE", default_value_t = 0.02, value_parser = share)]
    duplicate_share: f64,

    /// Share of close events sent without their id, which the exporter refuses (400).
    #[arg(long, env = "ACQUIRE_SIMULATOR_INVALID_SHARE", default_value_t = 0.002, value_parser = share)]
    invalid_share: f64,

    /// Mean number of `CHAT_ON_MESSAGE` events per answered chat.
    #[arg(long, env = "ACQUIRE_SIMULATOR_MESSAGES", default_value_t = 2.0, value_parser = non_negative)]
    messages: f64,

    /// Account id sent in the events.
    #[arg(long, env = "ACQUIRE_SIMULATOR_ACCOUNT_ID", default_value = "10111")]
    account_id: String,

    /// Stop after this much wall-clock time (e.g. 90s, 10m, 2h); runs until interrupted without it.
    #[arg(long, env = "ACQUIRE_SIMULATOR_DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Print a summary line this often (wall-clock).
    #[arg(long, env = "ACQUIRE_SIMULATOR_REPORT_EVERY", default_value = "10s", value_parser = parse_duration)]
    report_every: Duration,

    /// Seed of the random numbers, for a repeatable run; from the clock when not given.
    #[arg(long, env = "ACQUIRE_SIMULATOR_SEED")]
    seed: Option<u64>,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of 0 or more")),
    }
}

fn share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

fn hour(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..24.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not an hour of the day from 0 to 24")),
    }
}

fn main() -> ExitCode {
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

/// The load of the day at `hour` (0..24, UTC), from about 0.04 at night to 1 at the morning peak.
fn daily_load(hour: f64) -> f64 {
    let bump = |centre: f64, width: f64| (-(hour - centre).powi(2) / (2.0 * width * width)).exp();
    (0.04 + bump(10.5, 1.4) + 0.85 * bump(15.0, 1.8) + 0.3 * bump(20.0, 1.2)).min(1.0)
}

/// SplitMix64: small, fast and good enough for traffic shapes (not for anything secret).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Exponential with mean `mean`.
    fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.uniform()).ln()
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Poisson with mean `mean` (Knuth; means here are small).
    fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.uniform();
        while p > limit && k < 1000 {
            k += 1;
            p *= self.uniform();
        }
        k
    }
}

// ---------------------------------------------------------------------------------------------
// The vendor's wire shape.

/// `YYYY-MM-DD HH:MM:SS` (the vendor's `date_*` format, no time zone) of a UNIX time.
fn vendor_date(unix_seconds: f64) -> String {
    let secs = unix_seconds.max(0.0) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// One chat's identity and timeline, in simulated UNIX seconds.
struct Chat {
    id: u64,
    department: String,
    started: f64,
    /// Agent id and role; `None` when the visitor left before an answer.
    agent: Option<(String, &'static str)>,
    /// Simulated seconds the visitor waited (until the accept or until leaving).
    wait: f64,
    /// Simulated seconds from the accept (or the leaving) to the close.
    duration: f64,
    ahead: usize,
}

impl Chat {
    fn start_body(&self) -> String {
        let date = vendor_date(self.started);
        json!({
            "data": {
                "id": self.id.to_string(),
                "details": {"meta": "_by:app"},
                "status": "pending",
                "date_created": date,
                "date_updated": date,
                "department_id": self.department,
            },
            "event": "CHAT_ON_START",
        })
        .to_string()
    }

    fn accept_body(&self) -> String {
        let (agent, _) = self
            .agent
            .as_ref()
            .expect("only answered chats are accepted");
        json!({
            "id": self.id.to_string(),
            "status": "active",
            "chat_wait_time": "null",
            "user": {
                "id": agent,
                "status": "active",
                "type": "agent",
                "virtual": "false",
                "owner": "true",
                "state": "online",
            },
            "event": "CHAT_ON_ACCEPT",
        })
        .to_string()
    }

    /// The fields of the chat thread that the message and close events share, with `fields`.
    fn thread_body(&self, account_id: &str, fields: serde_json::Value) -> serde_json::Value {
        let mut body = json!({
            "id": self.id.to_string(),
            "thread_id": "-1",
            "account_id": account_id,
            "session_id": self.visitor_id(),
            "room_id": format!("{:016x}", self.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            "visitor_id": self.visitor_id(),
        });
        if let (Some(body), serde_json::Value::Object(fields)) = (body.as_object_mut(), fields) {
            body.extend(fields);
        }
        body
    }

    fn message_body(&self, account_id: &str, at: f64, from_agent: bool) -> String {
        let user = match (&self.agent, from_agent) {
            (Some((agent, _)), true) => json!({"id": agent, "type": "agent", "state": "online"}),
            _ => json!({"id": self.visitor_id(), "type": "visitor"}),
        };
        let message = json!({"type": "message", "user": user}).to_string();
        self.thread_body(
            account_id,
            json!({
                "message": message,
                "recording": "[]",
                "chat_wait_time": "null",
                "chat_duration": "null",
                "date_created": vendor_date(self.started),
                "date_updated": vendor_date(at),
                "date_picked": vendor_date(self.started + self.wait),
                "event": "CHAT_ON_MESSAGE",
            }),
        )
        .to_string()
    }

    fn close_body(&self, account_id: &str, without_id: bool) -> String {
        let closed = self.started + self.wait + self.duration;
        let (wait, users, by) = match &self.agent {
            Some((agent, role)) => (
                format!("{}", self.wait.round()),
                json!({"agent": {"id": agent, "role": role}, "visitor": {"meta": "_by:app"}}),
                agent.clone(),
            ),
            None => (
                "null".to_owned(),
                json!({"visitor": {"meta": "_by:app"}}),
                "visitor".to_owned(),
            ),
        };
        let mut body = self.thread_body(
            account_id,
            json!({
                "type": "text",
                "comments": "[]",
                "chat_notes": "{}",
                "chat_wait_time": wait,
                "chat_duration": format!("{}", self.duration.round()),
                "status": "closed",
                "translate_to": "en",
                "account_translate_language": "",
                "translate_form_show": "false",
                "date_created": vendor_date(self.started),
                "date_updated": vendor_date(closed),
                "department_id": self.department,
                "past_comment": "[]",
                "past_chat": "[]",
                "translation_mode": "false",
                "users": users.to_string(),
                "by": by,
                "ahead_chats": self.ahead.to_string(),
                "ahead_time": format!("{}", (self.ahead as f64 * 30.0).round()),
                "date_picked": vendor_date(self.started + self.wait),
                "event": "CHAT_ON_CLOSE",
            }),
        );
        if without_id {
            body.as_object_mut().expect("an object").remove("id");
        }
        body.to_string()
    }

    fn visitor_id(&self) -> String {
        (self.id % 1_000_000_007).to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// A small blocking HTTP/1.1 client with keep-alive (the exporter speaks HTTP/1.1).

struct Client {
    /// `host:port` to connect to and to send as `Host`.
    authority: String,
    /// Path and query of the webhook.
    target: String,
    token: Option<String>,
    conn: Option<BufReader<TcpStream>>,
}

/// What the exporter answered.
struct Answer {
    status: u16,
    body: String,
}

impl Client {
    fn new(url: &str, token: Option<String>) -> Result<Client, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Client {
            authority,
            target,
            token,
            conn: None,
        })
    }

    /// POST one JSON body. A kept-alive connection the server closed meanwhile is reopened once.
    fn post(&mut self, body: &str) -> io::Result<Answer> {
        let reused = self.conn.is_some();
        match self.try_post(body) {
            Err(_) if reused => {
                self.conn = None;
                self.try_post(body)
            }
            other => other,
        }
    }

    fn try_post(&mut self, body: &str) -> io::Result<Answer> {
        let result = self.exchange(body);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn exchange(&mut self, body: &str) -> io::Result<Answer> {
        if self.conn.is_none() {
            let addr = self
                .authority
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other(format!("{}: no address", self.authority)))?;
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            stream.set_write_timeout(Some(Duration::from_secs(30)))?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: acquire-simulator/{}\r\nContent-Type: application/JSON\r\nContent-Length: {}\r\n",
            self.target,
            self.authority,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        conn.get_mut().write_all(request.as_bytes())?;

        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before an answer",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {:?}", line.trim())))?;
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        loop {
            line.clear();
            if conn.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(io::Error::other)?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let body = if chunked {
            read_chunked(conn)?
        } else {
            let mut buf = vec![0; length];
            conn.read_exact(&mut buf)?;
            buf
        };
        if close {
            self.conn = None;
        }
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

fn read_chunked(conn: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(io::Error::other)?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if conn.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        conn.read_exact(&mut crlf)?;
    }
}

// ---------------------------------------------------------------------------------------------
// The simulation: a clock, a queue of scheduled deliveries, and counters.

/// A delivery due at a simulated time.
struct Delivery {
    at: f64,
    seq: u64,
    kind: Kind,
    body: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Start,
    Accept,
    Message,
    Close,
}

impl PartialEq for Delivery {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Delivery {}

impl PartialOrd for Delivery {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delivery {
    /// Reversed, so that the max-heap pops the earliest delivery first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .total_cmp(&self.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
struct Counters {
    chats: u64,
    unanswered: u64,
    starts: u64,
    accepts: u64,
    messages: u64,
    closes: u64,
    observed: u64,
    duplicate: u64,
    ignored: u64,
    rejected: u64,
    errors: u64,
}

struct Simulation {
    args: Args,
    client: Client,
    rng: Rng,
    /// Wall-clock and simulated UNIX time at the start.
    real_start: Instant,
    sim_start: f64,
    pending: BinaryHeap<Delivery>,
    seq: u64,
    next_arrival: f64,
    next_chat_id: u64,
    /// Chats waiting for an answer per department, for `ahead_chats`.
    queued: Vec<usize>,
    /// Simulated times at which a queued chat leaves its department's queue.
    dequeues: BinaryHeap<std::cmp::Reverse<(u64, usize)>>,
    counters: Counters,
    /// Failed attempts in a row, and the pause before the next one.
    failures: u64,
    pause: Duration,
    /// When the next summary line is due.
    next_report: Instant,
}

/// The first pause after a failed delivery; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(10);

impl Simulation {
    fn new(args: Args, client: Client) -> Simulation {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let midnight = (now.as_secs() / 86_400 * 86_400) as f64;
        let sim_start = match args.start_hour {
            Some(h) => midnight + h * 3600.0,
            None => now.as_secs_f64(),
        };
        let seed = args.seed.unwrap_or(now.as_nanos() as u64);
        let departments = args.departments.len();
        let mut sim = Simulation {
            rng: Rng(seed),
            client,
            real_start: Instant::now(),
            sim_start,
            pending: BinaryHeap::new(),
            seq: 0,
            next_arrival: sim_start,
            // Ids from the start time in milliseconds: a restarted simulator sends new chats, not
            // retries of old ones.
            next_chat_id: now.as_millis() as u64,
            queued: vec![0; departments + 1],
            dequeues: BinaryHeap::new(),
            counters: Counters::default(),
            failures: 0,
            pause: FIRST_PAUSE,
            next_report: Instant::now() + args.report_every,
            args,
        };
        sim.next_arrival = sim.draw_arrival(sim_start);
        sim
    }

    fn sim_now(&self) -> f64 {
        self.sim_start + self.real_start.elapsed().as_secs_f64() * self.args.speed
    }

    fn real_due(&self, sim_time: f64) -> Instant {
        self.real_start
            + Duration::from_secs_f64(((sim_time - self.sim_start) / self.args.speed).max(0.0))
    }

    fn hour_of(t: f64) -> f64 {
        t.rem_euclid(86_400.0) / 3600.0
    }

    /// The next arrival after `after`: a Poisson process at the peak rate, thinned by the load of
    /// the day (the standard way to draw a process whose rate changes with time).
    fn draw_arrival(&mut self, after: f64) -> f64 {
        let peak_per_second = self.args.peak_per_hour / 3600.0;
        let mut t = after;
        loop {
            t += self.rng.exponential(1.0 / peak_per_second);
            if self.rng.chance(daily_load(Self::hour_of(t))) {
                return t;
            }
        }
    }

    fn schedule(&mut self, at: f64, kind: Kind, body: String) {
        self.seq += 1;
        let duplicate = self.rng.chance(self.args.duplicate_share);
        if duplicate {
            let retry_after = 5.0 + self.rng.exponential(20.0);
            self.seq += 1;
            self.pending.push(Delivery {
                at: at + retry_after,
                seq: self.seq,
                kind,
                body: body.clone(),
            });
        }
        self.pending.push(Delivery {
            at,
            seq: self.seq,
            kind,
            body,
        });
    }

    /// A new chat at `at`: draw its department, wait, agent and duration, and schedule its events.
    fn arrive(&mut self, at: f64) {
        let load = daily_load(Self::hour_of(at));
        let n = self.args.departments.len();
        // Department by Zipf-like weights 1, 1/2, 1/3...; one chat in twenty has none.
        let slot = if self.rng.chance(0.05) {
            n
        } else {
            let total: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
            let mut pick = self.rng.uniform() * total;
            (0..n)
                .find(|&k| {
                    pick -= 1.0 / (k + 1) as f64;
                    pick < 0.0
                })
                .unwrap_or(n - 1)
        };
        let department = self.args.departments.get(slot).cloned().unwrap_or_default();
        while let Some(std::cmp::Reverse((t, d))) = self.dequeues.peek().copied() {
            if t as f64 > at {
                break;
            }
            self.dequeues.pop();
            self.queued[d] = self.queued[d].saturating_sub(1);
        }
        let ahead = self.queued[slot];

        // Busier hours mean longer waits and more visitors who give up.
        let busy = 0.5 + load;
        let answered = !self
            .rng
            .chance((self.args.unanswered_share * busy).min(1.0));
        let (agent, wait, duration) = if answered {
            let mut wait = self.rng.log_normal(self.args.median_wait * busy, 0.9);
            if self.rng.chance(0.03) {
                wait = self.rng.log_normal(self.args.median_wait * 15.0, 0.5);
            }
            let k = self.rng.below(self.args.agents as usize);
            let role = match k {
                0 => "Administrator",
                1 => "Supervisor",
                _ => "Operator",
            };
            let agent = format!("agent-{}{k:02}", slot + 1);
            let duration = self.rng.log_normal(self.args.median_duration, 0.7);
            (
                Some((agent, role)),
                wait.min(3600.0),
                duration.min(4.0 * 3600.0),
            )
        } else {
            let gave_up = self.rng.log_normal(90.0, 0.8).min(3600.0);
            (None, gave_up, 0.0)
        };
        self.queued[slot] += 1;
        self.dequeues
            .push(std::cmp::Reverse(((at + wait) as u64, slot)));

        self.next_chat_id += 1;
        let chat = Chat {
            id: self.next_chat_id,
            department,
            started: at,
            agent,
            wait,
            duration,
            ahead,
        };
        self.counters.chats += 1;
        self.schedule(at, Kind::Start, chat.start_body());
        let answered_at = at + wait;
        let closed_at = answered_at + duration;
        if chat.agent.is_some() {
            self.schedule(answered_at, Kind::Accept, chat.accept_body());
            let messages = self.rng.poisson(self.args.messages);
            for i in 0..messages {
                let t = answered_at + self.rng.uniform() * duration;
                let body = chat.message_body(&self.args.account_id, t, i % 2 == 0);
                self.schedule(t, Kind::Message, body);
            }
        } else {
            self.counters.unanswered += 1;
        }
        let without_id = self.rng.chance(self.args.invalid_share);
        let body = chat.close_body(&self.args.account_id, without_id);
        self.schedule(closed_at, Kind::Close, body);
    }

    fn run(&mut self) {
        let deadline = self.args.duration.map(|d| self.real_start + d);
        println!(
            "acquire-simulator: sending to {} at {}x speed, from simulated {} UTC",
            self.args.url,
            self.args.speed,
            vendor_date(self.sim_start)
        );
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            self.report_when_due();
            let next_delivery = self.pending.peek().map_or(f64::INFINITY, |d| d.at);
            let at = next_delivery.min(self.next_arrival);
            let due = self.real_due(at);
            if due > now {
                let mut wake = due.min(self.next_report);
                if let Some(d) = deadline {
                    wake = wake.min(d);
                }
                std::thread::sleep(wake.saturating_duration_since(now));
                continue;
            }
            if self.next_arrival <= next_delivery {
                let arrival = self.next_arrival;
                self.arrive(arrival);
                self.next_arrival = self.draw_arrival(arrival);
            } else {
                let delivery = self.pending.pop().expect("peeked above");
                self.deliver(&delivery, deadline);
            }
        }
        self.report();
        println!("acquire-simulator: done");
    }

    /// Send one delivery, retrying with a growing pause while the exporter is unreachable or
    /// answers 5xx (as the vendor retries), until it is taken or the run's time is up. The pause
    /// carries over to the next delivery until one succeeds, so an outage is not hammered.
    fn deliver(&mut self, delivery: &Delivery, deadline: Option<Instant>) {
        loop {
            let problem = match self.client.post(&delivery.body) {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    if self.failures > 0 {
                        eprintln!(
                            "acquire-simulator: {} answers again after {} failed attempts",
                            self.args.url, self.failures
                        );
                    }
                    self.failures = 0;
                    self.pause = FIRST_PAUSE;
                    self.count(delivery.kind, &answer.body);
                    return;
                }
                Ok(answer) if answer.status >= 500 || matches!(answer.status, 408 | 429) => {
                    format!("answered {}: {}", answer.status, answer.body.trim())
                }
                Ok(answer) => {
                    self.counters.rejected += 1;
                    if self.counters.rejected.is_power_of_two() {
                        eprintln!(
                            "acquire-simulator: {} refused a {:?} event with {}: {} ({} refused so far)",
                            self.args.url,
                            delivery.kind,
                            answer.status,
                            answer.body.trim(),
                            self.counters.rejected
                        );
                    }
                    return;
                }
                Err(e) => e.to_string(),
            };
            self.counters.errors += 1;
            self.failures += 1;
            if self.failures.is_power_of_two() {
                eprintln!(
                    "acquire-simulator: {}: {problem} ({} failed attempts in a row); retrying in {:?}",
                    self.args.url, self.failures, self.pause
                );
            }
            if let Some(d) = deadline {
                if Instant::now() + self.pause >= d {
                    std::thread::sleep(d.saturating_duration_since(Instant::now()));
                    return;
                }
            }
            std::thread::sleep(self.pause);
            self.pause = (self.pause * 2).min(MAX_PAUSE);
            self.report_when_due();
        }
    }

    fn count(&mut self, kind: Kind, answer: &str) {
        let c = &mut self.counters;
        match kind {
            Kind::Start => c.starts += 1,
            Kind::Accept => c.accepts += 1,
            Kind::Message => c.messages += 1,
            Kind::Close => c.closes += 1,
        }
        let outcome = serde_json::from_str::<serde_json::Value>(answer)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_owned));
        match outcome.as_deref() {
            Some("duplicate") => c.duplicate += 1,
            Some("ignored") => c.ignored += 1,
            _ => c.observed += 1,
        }
    }

    fn report_when_due(&mut self) {
        if Instant::now() >= self.next_report {
            self.report();
            self.next_report += self.args.report_every;
        }
    }

    fn report(&self) {
        let now = self.sim_now();
        let c = &self.counters;
        println!(
            "simulated {} UTC, load {:.0}% | chats {} (unanswered {}) | sent start {} accept {} message {} close {} | exporter: observed {} duplicate {} ignored {} refused {} | errors {} | pending {}",
            vendor_date(now),
            daily_load(Self::hour_of(now)) * 100.0,
            c.chats,
            c.unanswered,
            c.starts,
            c.accepts,
            c.messages,
            c.closes,
            c.observed,
            c.duplicate,
            c.ignored,
            c.rejected,
            c.errors,
            self.pending.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acquire_exporter::decode::{Event, decode};

    fn chat(agent: bool) -> Chat {
        Chat {
            id: 1_790_000_000_123,
            department: "12".into(),
            started: 1_790_000_000.0,
            agent: agent.then(|| ("agent-101".to_owned(), "Operator")),
            wait: 42.4,
            duration: 300.0,
            ahead: 2,
        }
    }

    #[test]
    fn vendor_dates_are_civil_utc() {
        let cases = [
            (0.0, "1970-01-01 00:00:00"),
            (951_782_400.0, "2000-02-29 00:00:00"),
            (1_532_323_060.0, "2018-07-23 05:17:40"),
            (4_102_444_799.0, "2099-12-31 23:59:59"),
        ];
        for (t, want) in cases {
            assert_eq!(vendor_date(t), want, "{t}");
        }
    }

    #[test]
    fn the_day_is_quiet_at_night_and_busy_late_morning() {
        assert!(daily_load(3.0) < 0.1);
        assert!(daily_load(10.5) > 0.95);
        assert!(daily_load(12.8) < daily_load(10.5), "a lunch dip");
        assert!(daily_load(15.0) > 0.8);
        for h in 0..24 {
            let l = daily_load(f64::from(h));
            assert!((0.04..=1.0).contains(&l), "{h}: {l}");
        }
    }

    #[test]
    fn every_body_decodes_to_the_event_it_stands_for() {
        let answered = chat(true);
        match decode(Some("application/JSON"), answered.start_body().as_bytes()).unwrap() {
            Event::Started(s) => {
                assert_eq!(s.chat_id, "1790000000123");
                assert_eq!(s.department_id, "12");
            }
            other => panic!("{other:?}"),
        }
        match decode(None, answered.accept_body().as_bytes()).unwrap() {
            Event::Accepted(a) => assert_eq!(a.agent_id.as_deref(), Some("agent-101")),
            other => panic!("{other:?}"),
        }
        let message = answered.message_body("10111", 1_790_000_100.0, true);
        assert!(matches!(
            decode(None, message.as_bytes()).unwrap(),
            Event::Other(_)
        ));
        match decode(None, answered.close_body("10111", false).as_bytes()).unwrap() {
            Event::Closed(c) => {
                assert_eq!(c.wait_seconds, Some(42.0));
                assert_eq!(c.duration_seconds, Some(300.0));
                assert_eq!(c.agent_role.as_deref(), Some("operator"));
                assert_eq!(c.agent_id.as_deref(), Some("agent-101"));
                assert_eq!(c.department_id, "12");
            }
            other => panic!("{other:?}"),
        }
        match decode(None, chat(false).close_body("10111", false).as_bytes()).unwrap() {
            Event::Closed(c) => {
                assert_eq!(c.wait_seconds, None, "a visitor who left has no wait time");
                assert_eq!(c.agent_role, None);
                assert_eq!(c.agent_id, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(decode(None, answered.close_body("10111", true).as_bytes()).is_err());
    }

    #[test]
    fn every_scalar_is_a_string_and_users_is_json_text() {
        let close: serde_json::Value =
            serde_json::from_str(&chat(true).close_body("10111", false)).unwrap();
        for (key, value) in close.as_object().unwrap() {
            assert!(value.is_string(), "{key} is {value}");
        }
        let users: serde_json::Value =
            serde_json::from_str(close["users"].as_str().unwrap()).unwrap();
        assert_eq!(users["agent"]["role"], "Operator");
        assert!(
            users["agent"].get("name").is_none() && users["visitor"].get("name").is_none(),
            "no names"
        );
    }

    #[test]
    fn urls_split_into_authority_and_target() {
        let cases = [
            ("http://exporter:9867/webhook", "exporter:9867", "/webhook"),
            ("http://127.0.0.1:9867", "127.0.0.1:9867", "/"),
            (
                "http://localhost/hook?token=x",
                "localhost:80",
                "/hook?token=x",
            ),
            ("http://localhost:1?token=x", "localhost:1", "/?token=x"),
        ];
        for (url, authority, target) in cases {
            let c = Client::new(url, None).unwrap();
            assert_eq!(
                (c.authority.as_str(), c.target.as_str()),
                (authority, target)
            );
        }
        assert!(Client::new("https://example.com/webhook", None).is_err());
    }

    #[test]
    fn arrivals_follow_the_requested_peak_rate() {
        let mut rng = Rng(7);
        // Thinning at a constant load of 1 leaves a plain Poisson process: mean gap 1/rate.
        let n = 20_000;
        let mean_gap: f64 = (0..n).map(|_| rng.exponential(30.0)).sum::<f64>() / f64::from(n);
        assert!((mean_gap - 30.0).abs() < 1.0, "{mean_gap}");
        let median = {
            let mut v: Vec<f64> = (0..n).map(|_| rng.log_normal(20.0, 0.9)).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        assert!((median - 20.0).abs() < 1.0, "{median}");
    }
}
