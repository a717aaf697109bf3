//! Test harness: the real exporter binary on an ephemeral port, spoken to over HTTP.
//!
//! The exporter binds `127.0.0.1:0` and logs the address it bound (`{"message":"listening",
//! "address":...}`): no port is chosen before the process owns it, so two tests never race for
//! one. Every wait here polls for its condition and checks that the child is still alive.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as dto;

/// How long a condition may take before a test fails: generous, for a loaded CI machine.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The `Accept` header of each exposition format.
pub const TEXT: &str = "text/plain;version=0.0.4";
pub const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";
pub const PROTOBUF: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";

/// A running exporter process.
pub struct Exporter {
    pub child: Child,
    pub base: String,
    pub logs: mpsc::Receiver<String>,
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The exporter binary with `args`, an ephemeral listen address and JSON logs.
pub fn exporter_command(args: &[&str]) -> Command {
    exporter_command_on("127.0.0.1:0", args)
}

/// The exporter binary with `args` and JSON logs, listening on `addr`.
pub fn exporter_command_on(addr: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"));
    command
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.format=json")
        .args(args);
    command
}

/// A free port on the loopback, for a server that must keep its address across restarts.
///
/// It is bound and released, so some other process may take it before the server does; to make
/// that unlikely it is drawn at random from below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), where no `bind(:0)` and no outgoing connection lands, as
/// a port the kernel handed out and released could be handed out again at once.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    for _ in 0..200 {
        // Each `RandomState` has keys of its own: the hash of nothing is a fresh random number.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = low + (random % u64::from(high - low)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Exporter {
    /// Start the binary with `args` (plus an ephemeral listen address and JSON logs) and wait
    /// until it listens.
    pub fn spawn(args: &[&str]) -> Exporter {
        Self::start(exporter_command(args))
    }

    /// Start the binary with `args` listening on `addr` (a fixed address, so that a restarted
    /// exporter is the same Prometheus target; or every address) and wait until it listens.
    pub fn spawn_on(addr: &str, args: &[&str]) -> Exporter {
        Self::start(exporter_command_on(addr, args))
    }

    /// Start the binary with SIGXFSZ ignored, as `sh -c 'trap "" XFSZ; exec ...'` does: a write
    /// past a file size limit (`prlimit --fsize`) then fails with EFBIG instead of killing it.
    pub fn spawn_ignoring_sigxfsz(args: &[&str]) -> Exporter {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"trap "" XFSZ; exec "$0" "$@""#)
            .arg(env!("CARGO_BIN_EXE_acquire-exporter"))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.format=json")
            .args(args);
        Self::start(command)
    }

    /// Start `command` (an exporter that logs JSON) and wait until it logs that it listens.
    pub fn start(mut command: Command) -> Exporter {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the exporter");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        let mut address = None;
        loop {
            let line = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let exited = child.try_wait().expect("wait");
                    if exited.is_some() || Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "the exporter did not start listening ({exited:?}):\n{}",
                            seen.join("\n")
                        );
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait");
                    panic!(
                        "the exporter exited with {status} before listening:\n{}",
                        seen.join("\n")
                    );
                }
            };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "listening" {
                    address = v["address"].as_str().map(str::to_owned);
                }
            }
            // Listening comes first, then the stored state loads: deliveries before that get 503.
            let loaded = serde_json::from_str::<serde_json::Value>(&line)
                .is_ok_and(|v| v["message"] == "state loaded");
            if loaded {
                let address = address
                    .take()
                    .expect("listening before the state is loaded");
                return Exporter {
                    child,
                    base: format!("http://{address}"),
                    logs: rx,
                };
            }
            seen.push(line);
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` of the listener.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.address()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails the test when the process has exited.
    pub fn assert_alive(&mut self) {
        let exited = self.child.try_wait().expect("wait");
        assert!(exited.is_none(), "the exporter exited: {exited:?}");
    }

    /// Poll `condition` (every 50 ms) until it holds; fails when the exporter exits or after
    /// [`PATIENCE`].
    pub fn wait_until(&mut self, what: &str, mut condition: impl FnMut(&Exporter) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if condition(self) {
                return;
            }
            self.assert_alive();
            assert!(Instant::now() < deadline, "waited in vain for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// POST a body with a content type; the status and the body.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
        post(&self.url(path), content_type, body)
    }

    pub fn post_json(&self, body: &[u8]) -> (u16, String) {
        self.post("/webhook", "application/JSON", body)
    }

    pub fn metrics(&self) -> String {
        get(&self.url("/metrics")).1
    }

    /// `/metrics` with an `Accept` header, uncompressed.
    pub fn scrape(&self, accept: &str) -> Scrape {
        scrape(&self.url("/metrics"), accept, false)
    }

    /// A protobuf scrape, decoded.
    pub fn protobuf(&self) -> Vec<dto::MetricFamily> {
        let page = self.scrape(PROTOBUF);
        assert_eq!(page.status, 200);
        decode_protobuf(&page.body)
    }

    /// Stop with SIGTERM and wait; the exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        signal(self.child.id(), "TERM");
        let status = self.child.wait().expect("wait");
        status.code()
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send a signal (`TERM`, `KILL`, ...) with kill(1).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// The TCP connections the server side of `port` holds on the loopback, other than its
/// listener, from /proc/net/tcp and tcp6.
pub fn server_connections(port: u16) -> usize {
    const LISTEN: &str = "0A";
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit(':').next()?;
                    let local_port = u16::from_str_radix(local_port, 16).ok()?;
                    (local_port == port && *fields.get(3)? != LISTEN).then_some(())
                })
                .collect::<Vec<_>>()
        })
        .count()
}

/// Bytes received and not yet read by the server side of each loopback connection to `port`
/// from the client port `client`, from /proc/net/tcp (`rx_queue`).
pub fn unread_by_server(port: u16, client: u16) -> Option<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|table| {
            table.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port_of = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
                if port_of(fields.get(1)?)? != port || port_of(fields.get(2)?)? != client {
                    return None;
                }
                let rx = fields.get(4)?.split(':').nth(1)?;
                u64::from_str_radix(rx, 16).ok()
            })
        })
}

/// A `/metrics` answer.
pub struct Scrape {
    pub status: u16,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub body: Vec<u8>,
}

impl Scrape {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 page")
    }
}

/// GET `url` with an `Accept` header, and `Accept-Encoding: gzip` when `gzip`.
pub fn scrape(url: &str, accept: &str, gzip: bool) -> Scrape {
    let mut req = agent().get(url).header("Accept", accept);
    if gzip {
        req = req.header("Accept-Encoding", "gzip");
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header").to_owned())
    };
    let (content_type, content_encoding) = (header("content-type"), header("content-encoding"));
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("a body");
    Scrape {
        status: resp.status().as_u16(),
        content_type,
        content_encoding,
        body,
    }
}

/// The length-delimited MetricFamily messages of a protobuf page, decoded with prost.
pub fn decode_protobuf(mut page: &[u8]) -> Vec<dto::MetricFamily> {
    use prost::Message as _;
    let mut families = Vec::new();
    while !page.is_empty() {
        let length = prost::encoding::decode_varint(&mut page).expect("a length") as usize;
        assert!(length <= page.len(), "a family runs past the page");
        let (message, rest) = page.split_at(length);
        page = rest;
        families.push(dto::MetricFamily::decode(message).expect("a MetricFamily"));
    }
    families
}

/// The value of label `name` of a protobuf series.
pub fn label<'m>(metric: &'m dto::Metric, name: &str) -> Option<&'m str> {
    metric
        .label
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    post_with(&agent(), url, &[("Content-Type", content_type)], body)
}

pub fn post_with(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut req = agent.post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, text)
}

pub fn get(url: &str) -> (u16, String) {
    get_with(url, &[])
}

pub fn get_with(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .unwrap_or_default();
    (status, text)
}

/// The value of the sample `series` (name and labels exactly as exposed, e.g.
/// `acquire_chat_wait_time_seconds_count{agent_role="administrator",department="none"}`).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// The sum of every sample of the family `name` (any label set) whose line contains each of
/// `labels` (e.g. `le="60"`).
pub fn total(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every sample line of the chat histograms, for before/after comparisons.
pub fn histogram_lines(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("acquire_chat_wait_time_seconds")
                || l.starts_with("acquire_chat_duration_seconds")
        })
        .map(str::to_owned)
        .collect()
}

/// The promtool binary; the tests that need it fail (never skip) without it.
pub fn promtool() -> String {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    assert!(
        found,
        "promtool is not installed: apt-get install -y prometheus (the README's test command does it)"
    );
    "promtool".to_owned()
}

/// A close event in the vendor's wire shape (every scalar a string, users as JSON text).
pub fn close_event(
    chat_id: &str,
    department: &str,
    role: Option<&str>,
    wait: &str,
    duration: &str,
) -> Vec<u8> {
    let users = match role {
        Some(role) => serde_json::json!({"agent": {"name": "Agent", "role": role}, "visitor": {"name": "Visitor"}}).to_string(),
        None => serde_json::json!({"visitor": {"name": "Visitor"}}).to_string(),
    };
    serde_json::json!({
        "id": chat_id,
        "account_id": "10111",
        "department_id": department,
        "chat_wait_time": wait,
        "chat_duration": duration,
        "users": users,
        "by": "agent-15111",
        "event": "CHAT_ON_CLOSE",
    })
    .to_string()
    .into_bytes()
}

/// POST over a raw connection, writing the body from another thread: the server may answer
/// (413) and close before the body is all sent, which an ordinary client reports as an error.
pub fn post_raw(base: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    let mut writer = stream.try_clone().expect("clone");
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    drop(stream);
    let _ = sending.join();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// POST every body to `path` over one keep-alive connection, writing up to 64 requests ahead of
/// the answers (HTTP/1.1 pipelining); the status of each, in order. For the tests that need
/// hundreds of thousands of deliveries.
pub fn pipeline(addr: &str, path: &str, bodies: &[Vec<u8>]) -> Vec<u16> {
    use std::io::{Read, Write};
    const AHEAD: usize = 64;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut statuses = Vec::with_capacity(bodies.len());
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut request = Vec::new();
    for window in bodies.chunks(AHEAD) {
        request.clear();
        for body in window {
            request.extend_from_slice(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            request.extend_from_slice(body);
        }
        stream.write_all(&request).expect("write requests");
        let mut answered = 0;
        while answered < window.len() {
            if let Some((status, used)) = one_response(&buf) {
                statuses.push(status);
                buf.drain(..used);
                answered += 1;
                continue;
            }
            let n = stream.read(&mut chunk).expect("read answers");
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    statuses
}

/// The status and length of the first whole response in `buf` (Content-Length framed).
fn one_response(buf: &[u8]) -> Option<(u16, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head_end + length).then_some((status, head_end + length))
}

/// [`pipeline`] on `threads` connections at once, the bodies dealt out in turn; fails the test
/// unless every answer is 200.
pub fn post_all(addr: &str, bodies: Vec<Vec<u8>>, threads: usize) {
    let mut shares: Vec<Vec<Vec<u8>>> = vec![Vec::new(); threads];
    for (i, body) in bodies.into_iter().enumerate() {
        shares[i % threads].push(body);
    }
    let senders: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let addr = addr.to_owned();
            std::thread::spawn(move || {
                let statuses = pipeline(&addr, "/webhook", &share);
                let refused = statuses.iter().filter(|s| **s != 200).count();
                assert_eq!(
                    refused,
                    0,
                    "{refused} of {} deliveries not 200",
                    share.len()
                );
            })
        })
        .collect();
    for s in senders {
        s.join().expect("a sender");
    }
}

pub mod history;
pub mod prometheus;
