//! Load generator for the exporter, run by `scripts/bench`.
//!
//! - `post`: distinct `CHAT_ON_CLOSE` events in the vendor's wire shape (every scalar a string,
//!   `users` as JSON text) over keep-alive HTTP/1.1 connections, as fast as the server answers
//!   (closed loop) or at a fixed total rate (open loop), across `departments × roles` series.
//!   Prints events/s, latency percentiles and errors, then checks that the exporter's
//!   `acquire_chat_wait_time_seconds_count` grew by exactly the number of 200s received.
//! - `scrape`: times sequential GETs of `/metrics` over one keep-alive connection, or, with
//!   `-c N --duration S`, N connections each scraping in a loop for S seconds (bodies read and
//!   dropped as they come, so the client holds no page).
//! - `ready`: polls `/-/ready` until it answers 200 and prints how long that took.
//!
//! Each mode prints a human summary on stderr and one JSON line on stdout.
//!
//! The client is a raw HTTP/1.1 client on a single-threaded tokio runtime: it formats each
//! request into a reused buffer and parses only the status line and the framing headers, so a
//! single core drives far more requests than one core of server can answer.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use serde_json::json;
use tokio::net::TcpStream;

/// The wait-time histogram's count series, summed for the end-of-run check.
const WAIT_COUNT: &str = "acquire_chat_wait_time_seconds_count";

/// Shortest time between two requests of one connection in an open-loop run.
const MIN_SLOT: Duration = Duration::from_millis(10);

/// Agent roles of the generated events; more than these get `role-N`.
const ROLES: [&str; 5] = [
    "administrator",
    "operator",
    "supervisor",
    "agent",
    "manager",
];

#[derive(Parser, Debug)]
#[command(about = "Load generator and timer for acquire-exporter benchmarks")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// POST distinct close events and report throughput and latency.
    Post(PostArgs),
    /// Time sequential GETs of the metrics page.
    Scrape(ScrapeArgs),
    /// Wait until the readiness probe answers 200.
    Ready(ReadyArgs),
}

#[derive(Args, Debug)]
struct PostArgs {
    /// Address of the server.
    #[arg(long, default_value = "127.0.0.1:9867")]
    addr: SocketAddr,
    /// Path of the webhook.
    #[arg(long, default_value = "/webhook")]
    path: String,
    /// Open connections, each with one request in flight (raised in open-loop runs so that each
    /// connection sends at most one request per 10 ms).
    #[arg(short, long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds, after the warm-up.
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Send exactly this many events (no warm-up, no time limit) instead of a timed run.
    #[arg(long)]
    events: Option<u64>,
    /// Total events per second (open loop); without it, as fast as the server answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Distinct department ids.
    #[arg(long, default_value_t = 200)]
    departments: u64,
    /// Distinct agent roles (series = departments × roles).
    #[arg(long, default_value_t = 5)]
    roles: u64,
    /// Prefix of the chat ids; defaults to one derived from the clock, so runs never collide.
    #[arg(long)]
    id_prefix: Option<String>,
    /// Skip the count check against /metrics (for a server that has no metrics, such as the floor).
    #[arg(long)]
    no_check: bool,
    /// Keep the client's core busy polling instead of sleeping between events.
    #[arg(long)]
    spin: bool,
    /// A label for the JSON line (e.g. `memory`, `durable`, `floor`).
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args, Debug)]
struct ScrapeArgs {
    /// Address of the server.
    #[arg(long, default_value = "127.0.0.1:9867")]
    addr: SocketAddr,
    /// Path of the metrics page.
    #[arg(long, default_value = "/metrics")]
    path: String,
    /// Timed GETs.
    #[arg(short = 'n', long, default_value_t = 200)]
    count: usize,
    /// Untimed GETs first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// `Accept` header to send (none by default: classic text).
    #[arg(long)]
    accept: Option<String>,
    /// Send `Accept-Encoding: gzip`, as Prometheus does.
    #[arg(long)]
    gzip: bool,
    /// Connections scraping at once (with `--duration`).
    #[arg(short, long, default_value_t = 1)]
    concurrency: usize,
    /// Scrape for this many seconds on every connection instead of `-n` sequential GETs.
    #[arg(short, long)]
    duration: Option<f64>,
    /// A label for the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Args, Debug)]
struct ReadyArgs {
    /// Address of the server.
    #[arg(long, default_value = "127.0.0.1:9867")]
    addr: SocketAddr,
    /// Path of the readiness probe.
    #[arg(long, default_value = "/-/ready")]
    path: String,
    /// Measure from this instant (nanoseconds since the Unix epoch, `date +%s%N`) rather than
    /// from the start of this command.
    #[arg(long)]
    since_unix_ns: Option<u128>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// A label for the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    // One thread: the load generator runs pinned to its own core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ok = runtime.block_on(async {
        match cli.mode {
            Mode::Post(args) => post(args).await,
            Mode::Scrape(args) => scrape(args).await,
            Mode::Ready(args) => ready(args).await,
        }
    })?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A minimal keep-alive HTTP/1.1 client.

/// One keep-alive connection.
struct Client {
    stream: TcpStream,
    /// Read buffer, always initialised; `filled` bytes of it hold the current response.
    room: Vec<u8>,
    filled: usize,
}

/// A response: status, body length, and the body when asked for.
struct Response {
    status: u16,
    body_len: usize,
    body: Option<Vec<u8>>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            room: vec![0; 16 * 1024],
            filled: 0,
        })
    }

    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.stream.try_write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.stream.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads more bytes into the buffer; an error at end of stream.
    async fn fill(&mut self) -> io::Result<()> {
        if self.room.len() - self.filled < 4096 {
            let grown = (self.room.len() * 2).max(16 * 1024);
            self.room.resize(grown, 0);
        }
        loop {
            match self.stream.try_read(&mut self.room[self.filled..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.filled += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.stream.readable().await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// The bytes read so far of the current response.
    fn buf(&self) -> &[u8] {
        &self.room[..self.filled]
    }

    /// Sends `request` and reads one response (Content-Length or chunked framing).
    async fn exchange(&mut self, request: &[u8], keep_body: bool) -> io::Result<Response> {
        self.write_all(request).await?;
        self.filled = 0;
        let head_end = loop {
            if let Some(pos) = find(self.buf(), b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.room[..head_end])
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response head not UTF-8"))?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status"))?;
        let mut length = None;
        let mut chunked = false;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
        if chunked {
            let body = self.read_chunked(head_end).await?;
            return Ok(Response {
                status,
                body_len: body.len(),
                body: keep_body.then_some(body),
            });
        }
        let length = length.unwrap_or(0);
        if !keep_body {
            // Read and drop the body as it comes: the buffer never grows past a chunk.
            let mut left = length.saturating_sub(self.filled - head_end);
            while left > 0 {
                self.filled = 0;
                self.fill().await?;
                left = left.saturating_sub(self.filled);
            }
            return Ok(Response {
                status,
                body_len: length,
                body: None,
            });
        }
        while self.filled < head_end + length {
            self.fill().await?;
        }
        Ok(Response {
            status,
            body_len: length,
            body: Some(self.room[head_end..head_end + length].to_vec()),
        })
    }

    async fn read_chunked(&mut self, mut at: usize) -> io::Result<Vec<u8>> {
        let invalid = || io::Error::new(io::ErrorKind::InvalidData, "bad chunk");
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = find(&self.buf()[at..], b"\r\n") {
                    break at + pos;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.room[at..line_end]).map_err(|_| invalid())?;
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid())?;
            at = line_end + 2;
            while self.filled < at + size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.room[at..at + size]);
            at += size + 2;
            if size == 0 {
                return Ok(body);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn get_request(addr: SocketAddr, path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n").into_bytes()
}

/// The sum of every `acquire_chat_wait_time_seconds_count` sample in a text exposition.
fn wait_count(metrics: &str) -> Option<u64> {
    let mut sum = 0u64;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(WAIT_COUNT) else {
            continue;
        };
        let rest = match rest.find('}') {
            Some(close) if rest.starts_with('{') => &rest[close + 1..],
            _ => rest,
        };
        let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
        sum += value as u64;
    }
    Some(sum)
}

async fn fetch_wait_count(addr: SocketAddr) -> io::Result<u64> {
    let mut client = Client::connect(addr).await?;
    let response = client
        .exchange(&get_request(addr, "/metrics", ""), true)
        .await?;
    let body = response.body.unwrap_or_default();
    if response.status != 200 {
        return Err(io::Error::other(format!(
            "GET /metrics answered {}",
            response.status
        )));
    }
    wait_count(&String::from_utf8_lossy(&body))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /metrics sample"))
}

// ---------------------------------------------------------------------------------------------
// post

/// The request of event number `i`: a close event as the vendor sends it.
struct Events {
    head_prefix: String,
    prefix: String,
    departments: u64,
    roles: Vec<String>,
}

impl Events {
    fn new(args: &PostArgs, prefix: String) -> Events {
        let roles = (0..args.roles.max(1))
            .map(|r| {
                ROLES
                    .get(r as usize)
                    .map_or_else(|| format!("role-{r}"), |s| (*s).to_owned())
            })
            .collect();
        Events {
            head_prefix: format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/JSON\r\nContent-Length: ",
                args.path, args.addr
            ),
            prefix,
            departments: args.departments.max(1),
            roles,
        }
    }

    /// Writes request `i` into `out`. Department and role cycle so that any run of
    /// `departments × roles` consecutive events touches every series.
    fn write(&self, i: u64, out: &mut Vec<u8>, body: &mut String) {
        use std::fmt::Write as _;
        let department = 100 + i % self.departments;
        let role = &self.roles[((i / self.departments) % self.roles.len() as u64) as usize];
        let wait = 1 + (i * 31) % 300;
        let duration = 10 + (i * 17) % 1800;
        body.clear();
        // Every scalar a string and `users` as JSON text, with the fields the vendor sends;
        // generic values only.
        let _ = write!(
            body,
            concat!(
                r#"{{"id":"{prefix}{i}","thread_id":"-1","account_id":"10111","session_id":"61111","#,
                r#""room_id":"9395a","visitor_id":"61111","type":"text","comments":"[]","chat_notes":"{{}}","#,
                r#""chat_wait_time":"{wait}","chat_duration":"{duration}","status":"active","translate_to":"en","#,
                r#""account_translate_language":"","translate_form_show":"false","#,
                r#""date_created":"2018-07-23 05:17:40","date_updated":"2018-07-23 05:17:40","#,
                r#""department_id":"{department}","past_comment":"[]","past_chat":"[]","translation_mode":"false","#,
                r#""users":"{{\"agent\":{{\"name\":\"Agent\",\"email\":\"\",\"photo\":null,\"role\":\"{role}\","#,
                r#"\"clients\":{{\"agent-15111-web-1\":{{\"name\":\"web\",\"online\":true}}}}}},"#,
                r#"\"visitor\":{{\"name\":\"Visitor\",\"email\":\"\",\"phone\":\"\",\"remarks\":\"\",\"meta\":\"_by:app\","#,
                r#"\"fields\":{{}},\"tags\":{{}},\"custom_fields\":[]}}}}","#,
                r#""by":"agent-15111","ahead_chats":"0","ahead_time":"0","date_picked":"2018-07-23 05:17:42","#,
                r#""event":"CHAT_ON_CLOSE"}}"#
            ),
            prefix = self.prefix,
            i = i,
            wait = wait,
            duration = duration,
            department = department,
            role = role,
        );
        out.clear();
        out.extend_from_slice(self.head_prefix.as_bytes());
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body.as_bytes());
    }
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Latencies in microseconds of the responses completed inside the measured window.
    latencies: Vec<u32>,
    /// 200s inside the measured window.
    measured_ok: u64,
    /// Every 200 (warm-up included), for the count check.
    all_ok: u64,
    /// Non-200 answers, by status.
    statuses: std::collections::BTreeMap<u16, u64>,
    /// Connection or protocol errors.
    io_errors: u64,
}

struct Plan {
    started: Instant,
    measure_from: Instant,
    measure_until: Instant,
    /// Event budget for `--events` runs.
    budget: Option<u64>,
    /// Time between two requests of one connection, in open-loop runs.
    interval: Option<Duration>,
}

async fn post(args: PostArgs) -> io::Result<bool> {
    let prefix = args.id_prefix.clone().unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{nanos:x}-")
    });
    let check = !args.no_check;
    let baseline = if check {
        Some(fetch_wait_count(args.addr).await.map_err(|e| {
            io::Error::new(e.kind(), format!("reading /metrics before the run: {e}"))
        })?)
    } else {
        None
    };
    // Open loop: enough connections that each waits at least `MIN_SLOT` between its requests,
    // so the timer's millisecond granularity never shows up as latency.
    let concurrency = match args.rate {
        Some(rate) if rate > 0.0 => args
            .concurrency
            .max((rate * MIN_SLOT.as_secs_f64()).ceil() as usize),
        _ => args.concurrency,
    }
    .max(1);
    let events = Arc::new(Events::new(&args, prefix));
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let (warmup, duration) = match args.events {
        Some(_) => (Duration::ZERO, Duration::from_secs(365 * 24 * 3600)),
        None => (
            Duration::from_secs_f64(args.warmup.max(0.0)),
            Duration::from_secs_f64(args.duration.max(0.001)),
        ),
    };
    let plan = Arc::new(Plan {
        started,
        measure_from: started + warmup,
        measure_until: started + warmup + duration,
        budget: args.events,
        interval: args
            .rate
            .filter(|r| *r > 0.0)
            .map(|r| Duration::from_secs_f64(concurrency as f64 / r)),
    });

    let mut tasks = Vec::with_capacity(concurrency);
    for k in 0..concurrency {
        let (events, next, stop, plan) = (events.clone(), next.clone(), stop.clone(), plan.clone());
        let addr = args.addr;
        // Open-loop connections start staggered over one interval.
        let offset = plan.interval.map_or(Duration::ZERO, |iv| {
            iv.mul_f64(k as f64 / concurrency as f64)
        });
        tasks.push(tokio::spawn(async move {
            connection(addr, &events, &next, &stop, &plan, offset).await
        }));
    }
    let spinner = args.spin.then(|| {
        let stop = stop.clone();
        let plan = plan.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) && Instant::now() < plan.measure_until {
                tokio::task::yield_now().await;
            }
        })
    });
    let mut tally = Tally::default();
    for task in tasks {
        let t = task.await.map_err(io::Error::other)?;
        tally.latencies.extend_from_slice(&t.latencies);
        tally.measured_ok += t.measured_ok;
        tally.all_ok += t.all_ok;
        tally.io_errors += t.io_errors;
        for (status, n) in t.statuses {
            *tally.statuses.entry(status).or_default() += n;
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(spinner) = spinner {
        let _ = spinner.await;
    }
    let finished = Instant::now();
    let window = match args.events {
        Some(_) => finished.duration_since(started),
        None => duration,
    };
    let rate = tally.measured_ok as f64 / window.as_secs_f64();
    let lat = Percentiles::of(&mut tally.latencies);
    let non_200: u64 = tally.statuses.values().sum();

    let count_check = match baseline {
        Some(before) => {
            let after = fetch_wait_count(args.addr).await.map_err(|e| {
                io::Error::new(e.kind(), format!("reading /metrics after the run: {e}"))
            })?;
            let grown = after.saturating_sub(before);
            Some((grown, grown == tally.all_ok))
        }
        None => None,
    };

    eprintln!(
        "{label}: {rate:.0} events/s over {secs:.1} s, {conc} connections{open}; latency p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms; {non_200} non-200, {io} I/O errors",
        label = if args.label.is_empty() {
            "post"
        } else {
            &args.label
        },
        secs = window.as_secs_f64(),
        conc = concurrency,
        open = args
            .rate
            .map_or(String::new(), |r| format!(" at a target of {r:.0}/s")),
        p50 = lat.p50_ms,
        p99 = lat.p99_ms,
        max = lat.max_ms,
        io = tally.io_errors,
    );
    if let Some((grown, ok)) = count_check {
        eprintln!(
            "count check: {WAIT_COUNT} grew by {grown}, 200s received {}: {}",
            tally.all_ok,
            if ok { "OK" } else { "MISMATCH" }
        );
    }
    let statuses: serde_json::Map<String, serde_json::Value> = tally
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    println!(
        "{}",
        json!({
            "mode": "post",
            "label": args.label,
            "concurrency": concurrency,
            "target_rate": args.rate,
            "series": events.departments * events.roles.len() as u64,
            "seconds": window.as_secs_f64(),
            "events_per_s": rate,
            "measured_ok": tally.measured_ok,
            "ok_total": tally.all_ok,
            "non_200": non_200,
            "statuses": statuses,
            "io_errors": tally.io_errors,
            "latency_ms": lat.to_json(),
            "client_cpu_s": own_cpu_seconds(),
            "count_check": count_check.map(|(grown, ok)| json!({"wait_count_grown": grown, "ok_200": tally.all_ok, "ok": ok})),
        })
    );
    let errors = non_200 + tally.io_errors;
    Ok(errors == 0 && count_check.is_none_or(|(_, ok)| ok))
}

/// One connection's loop: take the next event number, send it, read the answer.
async fn connection(
    addr: SocketAddr,
    events: &Events,
    next: &AtomicU64,
    stop: &AtomicBool,
    plan: &Plan,
    offset: Duration,
) -> Tally {
    let mut tally = Tally::default();
    let mut request = Vec::with_capacity(4096);
    let mut body = String::with_capacity(2048);
    let mut client = None;
    let mut scheduled = plan.started + offset;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // In an open-loop run, wait for this connection's next slot. Latency counts from the slot
        // when the connection is behind (the server's delay is part of it), from the actual send
        // when it had to wait (timer lateness is the client's, not the server's).
        let mut sent_at = None;
        if let Some(interval) = plan.interval {
            let now = Instant::now();
            if now < scheduled {
                tokio::time::sleep_until(scheduled.into()).await;
            } else {
                sent_at = Some(scheduled);
            }
            scheduled += interval;
        }
        let now = Instant::now();
        if now >= plan.measure_until {
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        if plan.budget.is_some_and(|b| i >= b) {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        events.write(i, &mut request, &mut body);
        let sent_at = sent_at.unwrap_or_else(Instant::now);
        let c = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(addr).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    tally.io_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match c.exchange(&request, false).await {
            Ok(response) => {
                let done = Instant::now();
                if response.status == 200 {
                    tally.all_ok += 1;
                } else {
                    *tally.statuses.entry(response.status).or_default() += 1;
                }
                if done >= plan.measure_from && done < plan.measure_until {
                    if response.status == 200 {
                        tally.measured_ok += 1;
                    }
                    let micros = done.duration_since(sent_at).as_micros();
                    tally.latencies.push(micros.min(u32::MAX as u128) as u32);
                }
            }
            Err(_) => {
                tally.io_errors += 1;
                client = None;
            }
        }
    }
    tally
}

/// CPU time (user and system) this process has used, from `/proc/self/stat` (Linux; clock
/// ticks of 1/100 s), so the harness can tell whether the client's core was the limit.
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Latency percentiles in milliseconds.
struct Percentiles {
    count: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
}

impl Percentiles {
    /// From samples in microseconds (sorted in place).
    fn of(samples: &mut [u32]) -> Percentiles {
        samples.sort_unstable();
        let at = |q: f64| -> f64 {
            if samples.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            f64::from(samples[rank - 1]) / 1000.0
        };
        let mean = if samples.is_empty() {
            0.0
        } else {
            samples.iter().map(|&s| f64::from(s)).sum::<f64>() / samples.len() as f64 / 1000.0
        };
        Percentiles {
            count: samples.len(),
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: samples.last().map_or(0.0, |&s| f64::from(s) / 1000.0),
            mean_ms: mean,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "count": self.count,
            "p50": self.p50_ms,
            "p90": self.p90_ms,
            "p99": self.p99_ms,
            "max": self.max_ms,
            "mean": self.mean_ms,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// scrape

async fn scrape(args: ScrapeArgs) -> io::Result<bool> {
    let mut extra = String::new();
    if let Some(accept) = &args.accept {
        extra.push_str(&format!("Accept: {accept}\r\n"));
    }
    if args.gzip {
        extra.push_str("Accept-Encoding: gzip\r\n");
    }
    let request = get_request(args.addr, &args.path, &extra);
    if let Some(seconds) = args.duration {
        return scrape_concurrently(&args, request, seconds).await;
    }
    let mut client = Client::connect(args.addr).await?;
    let mut bytes = 0;
    for _ in 0..args.warmup {
        client.exchange(&request, false).await?;
    }
    let mut samples = Vec::with_capacity(args.count);
    let mut failures = 0u64;
    for _ in 0..args.count {
        let started = Instant::now();
        let response = client.exchange(&request, false).await?;
        let micros = started.elapsed().as_micros();
        samples.push(micros.min(u32::MAX as u128) as u32);
        bytes = response.body_len;
        if response.status != 200 {
            failures += 1;
        }
    }
    let lat = Percentiles::of(&mut samples);
    eprintln!(
        "{label}: {n} GETs of {path}, {bytes} bytes each; p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms; {failures} non-200",
        label = if args.label.is_empty() {
            "scrape"
        } else {
            &args.label
        },
        n = args.count,
        path = args.path,
        p50 = lat.p50_ms,
        p99 = lat.p99_ms,
        max = lat.max_ms,
    );
    println!(
        "{}",
        json!({
            "mode": "scrape",
            "label": args.label,
            "accept": args.accept,
            "gzip": args.gzip,
            "bytes": bytes,
            "non_200": failures,
            "latency_ms": lat.to_json(),
        })
    );
    Ok(failures == 0)
}

/// `--concurrency` connections, each scraping in a closed loop for `seconds`.
async fn scrape_concurrently(
    args: &ScrapeArgs,
    request: Vec<u8>,
    seconds: f64,
) -> io::Result<bool> {
    let request = Arc::new(request);
    let until = Instant::now() + Duration::from_secs_f64(seconds.max(0.001));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency.max(1))
        .map(|_| {
            let (request, addr) = (request.clone(), args.addr);
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let (mut failures, mut errors, mut bytes) = (0u64, 0u64, 0usize);
                let mut client = None;
                while Instant::now() < until {
                    let c = match client.as_mut() {
                        Some(c) => c,
                        None => match Client::connect(addr).await {
                            Ok(c) => client.insert(c),
                            Err(_) => {
                                errors += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                    };
                    let sent = Instant::now();
                    match c.exchange(&request, false).await {
                        Ok(response) => {
                            let micros = sent.elapsed().as_micros();
                            samples.push(micros.min(u32::MAX as u128) as u32);
                            bytes = response.body_len;
                            if response.status != 200 {
                                failures += 1;
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            client = None;
                        }
                    }
                }
                (samples, failures, errors, bytes)
            })
        })
        .collect();
    let (mut samples, mut failures, mut errors, mut bytes) = (Vec::new(), 0, 0, 0);
    for task in tasks {
        let (s, f, e, b) = task.await.map_err(io::Error::other)?;
        samples.extend(s);
        failures += f;
        errors += e;
        bytes = bytes.max(b);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let pages = samples.len();
    let lat = Percentiles::of(&mut samples);
    eprintln!(
        "{label}: {pages} GETs of {path} on {c} connections in {elapsed:.1} s ({rate:.1}/s), {bytes} bytes each; p50 {p50:.3} ms, p99 {p99:.3} ms; {failures} non-200, {errors} I/O errors",
        label = if args.label.is_empty() {
            "scrape"
        } else {
            &args.label
        },
        path = args.path,
        c = args.concurrency,
        rate = pages as f64 / elapsed,
        p50 = lat.p50_ms,
        p99 = lat.p99_ms,
    );
    println!(
        "{}",
        json!({
            "mode": "scrape",
            "label": args.label,
            "accept": args.accept,
            "gzip": args.gzip,
            "concurrency": args.concurrency,
            "seconds": elapsed,
            "pages": pages,
            "pages_per_s": pages as f64 / elapsed,
            "bytes": bytes,
            "non_200": failures,
            "io_errors": errors,
            "latency_ms": lat.to_json(),
        })
    );
    Ok(failures == 0 && errors == 0)
}

// ---------------------------------------------------------------------------------------------
// ready

async fn ready(args: ReadyArgs) -> io::Result<bool> {
    let since = match args.since_unix_ns {
        Some(ns) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            Instant::now() - Duration::from_nanos(now.saturating_sub(ns) as u64)
        }
        None => Instant::now(),
    };
    let deadline = Instant::now() + Duration::from_secs_f64(args.timeout);
    let request = get_request(args.addr, &args.path, "Connection: close\r\n");
    let mut attempts = 0u64;
    let ready = loop {
        attempts += 1;
        let answered = async {
            let mut client = Client::connect(args.addr).await?;
            client.exchange(&request, false).await
        }
        .await;
        if matches!(answered, Ok(Response { status: 200, .. })) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let seconds = since.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} after {seconds:.3} s ({attempts} attempts)",
        if args.label.is_empty() {
            "ready"
        } else {
            &args.label
        },
        if ready { "ready" } else { "NOT ready" }
    );
    println!(
        "{}",
        json!({"mode": "ready", "label": args.label, "ready": ready, "seconds": seconds, "attempts": attempts})
    );
    Ok(ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_count_sums_every_series() {
        let text = "# TYPE acquire_chat_wait_time_seconds histogram\n\
            acquire_chat_wait_time_seconds_bucket{agent_role=\"operator\",department=\"1\",le=\"+Inf\"} 3\n\
            acquire_chat_wait_time_seconds_count{agent_role=\"operator\",department=\"1\"} 3\n\
            acquire_chat_wait_time_seconds_count{agent_role=\"agent\",department=\"2\"} 4\n\
            acquire_chat_wait_time_seconds_sum{agent_role=\"agent\",department=\"2\"} 40\n";
        assert_eq!(wait_count(text), Some(7));
        assert_eq!(wait_count("acquire_up 1\n"), Some(0));
    }
}
