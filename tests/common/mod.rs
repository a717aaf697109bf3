//! Test harness: the real exporter binary on an ephemeral port, spoken to over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

impl Exporter {
    /// Start the binary with `args` (plus an ephemeral listen address and JSON logs) and wait
    /// until it listens.
    pub fn spawn(args: &[&str]) -> Exporter {
        Self::spawn_on("127.0.0.1:0", args)
    }

    pub fn spawn_on(addr: &str, args: &[&str]) -> Exporter {
        let mut child = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.format=json")
            .args(args)
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
        let mut address = None;
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the exporter did not start listening");
                }
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] == "listening" {
                address = v["address"].as_str().map(str::to_owned);
            }
            // Listening comes first, then the stored state loads: deliveries before that get 503.
            if v["message"] == "state loaded" {
                let address = address.expect("listening before the state is loaded");
                return Exporter {
                    child,
                    base: format!("http://{address}"),
                    logs: rx,
                };
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
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

    /// Stop with SIGTERM and wait; the exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
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

pub mod prometheus;
