//! The hardened edge, over HTTP against the real binary: the vendor's signature as it signs,
//! bounded scrapes, connections and logs, and the smaller holes an attacker or an unlucky
//! operator would find.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Exporter, close_event, sample};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const HMAC_SECRET: &str = "hmac-key";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A close event in the vendor's shape, written with spaces and escapes, with the numbers given
/// as JSON numbers; and the same body as `JSON.stringify(JSON.parse(body))` writes it, as
/// Node 20 printed it for this very text.
fn spaced_close(id: &str) -> (String, String) {
    let spaced = format!(
        "{{\n  \"id\" : \"{id}\",\n  \"account_id\" : \"1011\\u0031\",\n  \"department_id\" : \"7\",\n  \
         \"chat_wait_time\" : 12.0,\n  \"chat_duration\" : 6e1,\n  \"note\" : \"caf\\u00e9 \\/ \\u2028\",\n  \
         \"huge\" : 1e21,\n  \"zero\" : -0,\n  \"tiny\" : 0.0000001,\n  \"users\" : {{ \"agent\" : {{ \"role\" : \"Operator\" }} }},\n  \
         \"event\" : \"CHAT_ON_CLOSE\"\n}}"
    );
    let restated = format!(
        "{{\"id\":\"{id}\",\"account_id\":\"10111\",\"department_id\":\"7\",\"chat_wait_time\":12,\
         \"chat_duration\":60,\"note\":\"caf\u{e9} / \u{2028}\",\"huge\":1e+21,\"zero\":0,\"tiny\":1e-7,\
         \"users\":{{\"agent\":{{\"role\":\"Operator\"}}}},\"event\":\"CHAT_ON_CLOSE\"}}"
    );
    (spaced, restated)
}

#[test]
fn a_signature_over_json_stringify_of_the_body_is_accepted_as_well_as_one_over_its_bytes() {
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--webhook.hmac-secret={HMAC_SECRET}"),
    ]);
    let agent = common::agent();
    let post = |body: &str, signature: String| {
        common::post_with(
            &agent,
            &exporter.url("/webhook"),
            &[
                ("Content-Type", "application/json"),
                ("x-acquire-signature", &signature),
            ],
            body.as_bytes(),
        )
    };
    let (spaced, restated) = spaced_close("sig-1");
    let (spaced_2, restated_2) = spaced_close("sig-2");
    let (spaced_3, _) = spaced_close("sig-3");
    // serde_json's own serialisation keeps `12.0` and `1e21` as Rust writes them: not the text
    // the vendor signs.
    let serde_text =
        serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&spaced_3).unwrap())
            .unwrap();
    assert_ne!(serde_text.as_bytes(), spaced_3.as_bytes());
    let cases = [
        (
            "over the bytes as sent",
            spaced.as_str(),
            sign(spaced.as_bytes()),
            200,
        ),
        (
            "over JSON.stringify of the parsed body",
            spaced_2.as_str(),
            sign(restated_2.as_bytes()),
            200,
        ),
        (
            "over another serialisation",
            spaced_3.as_str(),
            sign(serde_text.as_bytes()),
            401,
        ),
        (
            "over the restated text of another chat",
            spaced_3.as_str(),
            sign(restated.as_bytes()),
            401,
        ),
        (
            "the restated text itself, signed as sent",
            restated.as_str(),
            sign(restated.as_bytes()),
            200,
        ),
    ];
    for (name, body, signature, want) in cases {
        let (status, answer) = post(body, signature);
        assert_eq!(status, want, "{name}: {answer}");
    }
    let page = exporter.metrics();
    assert_eq!(
        sample(
            &page,
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="7"}"#
        ),
        Some(2.0),
        "sig-1 and sig-2 are counted; the restated sig-1 is a duplicate"
    );
    assert_eq!(
        sample(
            &page,
            r#"acquire_webhook_rejections_total{reason="unauthorized"}"#
        ),
        Some(2.0)
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_gzip_body_is_decoded_within_the_body_limit_and_other_encodings_get_415() {
    let limit = 4096;
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--webhook.max-body-bytes={limit}"),
        &format!("--webhook.hmac-secret={HMAC_SECRET}"),
    ]);
    let agent = common::agent();
    let close = close_event("gz-1", "7", Some("Operator"), "3", "60");
    // A body that shrinks below the limit and grows past it: the whole bomb is a few bytes.
    let mut bomb = close_event("gz-2", "7", Some("Operator"), "3", "60");
    bomb.truncate(bomb.len() - 1);
    bomb.extend_from_slice(format!(",\"pad\":\"{}\"}}", " ".repeat(limit * 16)).as_bytes());
    // (name, Content-Encoding, body sent, body signed, status, the answer names)
    type Case<'a> = (&'a str, &'a str, Vec<u8>, &'a [u8], u16, &'a str);
    let cases: [Case; 6] = [
        ("gzip", "gzip", gzip(&close), &close, 200, "observed"),
        (
            "x-gzip, with identity",
            "identity, X-GZIP",
            gzip(&close),
            &close,
            200,
            "duplicate",
        ),
        (
            "past the limit once decompressed",
            "gzip",
            gzip(&bomb),
            &bomb,
            413,
            "once decompressed",
        ),
        (
            "not gzip",
            "gzip",
            close.clone(),
            &close,
            400,
            "not valid gzip",
        ),
        ("brotli", "br", close.clone(), &close, 415, "\\\"br\\\""),
        (
            "gzip twice",
            "gzip, gzip",
            gzip(&gzip(&close)),
            &close,
            415,
            "gzip, gzip",
        ),
    ];
    for (name, encoding, body, plain, want, says) in cases {
        assert!(
            body.len() < limit,
            "{name}: the body sent is under the limit"
        );
        let signature = sign(plain);
        let (status, answer) = common::post_with(
            &agent,
            &exporter.url("/webhook"),
            &[
                ("Content-Type", "application/json"),
                ("Content-Encoding", encoding),
                ("x-acquire-signature", &signature),
            ],
            &body,
        );
        assert_eq!(status, want, "{name}: {answer}");
        assert!(answer.contains(says), "{name}: {answer}");
    }
    let page = exporter.metrics();
    for (reason, n) in [
        ("payload_too_large", 1.0),
        ("malformed_body", 1.0),
        ("unsupported_media_type", 2.0),
    ] {
        let series = format!(r#"acquire_webhook_rejections_total{{reason="{reason}"}}"#);
        assert_eq!(sample(&page, &series), Some(n), "{reason}");
    }
}

#[test]
fn the_envelope_keys_are_taken_in_any_letter_case() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let data = |id: &str| {
        serde_json::json!({
            "id": id, "account_id": "10111", "department_id": "7", "chat_wait_time": "3",
            "chat_duration": "60", "users": {"agent": {"role": "Operator"}},
        })
    };
    let bodies = [
        serde_json::json!({"Data": data("case-1"), "Event": "CHAT_ON_CLOSE"}),
        serde_json::json!({"DATA": data("case-2"), "EVENT": "CHAT_ON_CLOSE"}),
        serde_json::json!({"data": data("case-3"), "eVent": "CHAT_ON_CLOSE"}),
    ];
    for body in &bodies {
        let (status, answer) = exporter.post_json(body.to_string().as_bytes());
        assert_eq!(
            (status, answer.as_str()),
            (200, r#"{"status":"observed"}"#),
            "{body}"
        );
    }
    assert_eq!(
        sample(
            &exporter.metrics(),
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="7"}"#
        ),
        Some(3.0)
    );
}

/// Runs the binary with `args` and returns its exit code and stderr, for starts that must fail.
fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .arg("--web.listen-address=127.0.0.1:0")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the exporter");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the exporter started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

#[test]
fn a_database_file_that_is_empty_or_not_a_database_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acquire-exporter.sqlite");
    for (case, contents, says) in [
        ("empty", &b""[..], "is empty"),
        (
            "not a database",
            &b"these bytes are not a SQLite database, whatever the name says"[..],
            "not a database",
        ),
    ] {
        std::fs::write(&file, contents).unwrap();
        let (code, stderr) = refused_start(&[&format!("--storage.path={}", dir.path().display())]);
        assert_eq!(code, Some(1), "{case}: {stderr}");
        assert!(
            stderr.contains(&file.display().to_string()) && stderr.contains(says),
            "{case}: the error names the file and what is wrong with it: {stderr}"
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            contents,
            "{case}: the file is left as it was"
        );
    }
}

#[test]
fn a_secret_file_of_only_whitespace_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank");
    std::fs::write(&blank, " \t \n\n").unwrap();
    for flag in ["--webhook.token-file", "--webhook.hmac-secret-file"] {
        let (code, stderr) = refused_start(&[
            "--storage.in-memory",
            &format!("{flag}={}", blank.display()),
        ]);
        assert_eq!(code, Some(1), "{flag}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "secret file {} holds only whitespace",
                blank.display()
            )),
            "{flag}: {stderr}"
        );
    }
    let (code, stderr) = refused_start(&["--storage.in-memory", "--webhook.token=   "]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("secret holds only whitespace"), "{stderr}");
}

#[test]
fn departments_and_roles_named_none_or_other_keep_their_own_series() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "departments:\n  \"12\": other\n").unwrap();
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--config.file={}", config.display()),
    ]);
    let closes = [
        ("built-in none", "", None),
        ("department id none", "none", Some("Operator")),
        ("department id other", "other", Some("None")),
        ("department named other", "12", Some("other")),
        ("already escaped", "_none", Some("Operator")),
    ];
    for (i, (name, department, role)) in closes.iter().enumerate() {
        let body = close_event(&format!("named-{i}"), department, *role, "3", "60");
        let (status, answer) = exporter.post_json(&body);
        assert_eq!(status, 200, "{name}: {answer}");
    }
    let page = exporter.metrics();
    let count = |department: &str, role: &str| {
        sample(
            &page,
            &format!(
                r#"acquire_chat_wait_time_seconds_count{{agent_role="{role}",department="{department}"}}"#
            ),
        )
    };
    let series = [
        ("none", "none", Some(1.0)),
        ("_none", "operator", Some(1.0)),
        ("_other", "_none", Some(1.0)),
        ("_other", "_other", Some(1.0)),
        ("__none", "operator", Some(1.0)),
        ("none", "operator", None),
        ("other", "none", None),
        ("other", "other", None),
    ];
    for (department, role, want) in series {
        assert_eq!(
            count(department, role),
            want,
            "department={department}, agent_role={role}"
        );
    }
    assert_eq!(
        common::histogram_lines(&page)
            .iter()
            .filter(|l| l.starts_with("acquire_chat_wait_time_seconds_count"))
            .count(),
        5,
        "five closes, five series"
    );
}

#[test]
fn sighup_neither_stops_nor_kills_the_exporter() {
    let mut exporter = Exporter::spawn(&["--storage.in-memory"]);
    let pid = exporter.child.id().to_string();
    // One at a time: signals sent together may arrive as one.
    for round in 0..3 {
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "SIGHUP {round} was not logged");
            assert!(
                exporter.child.try_wait().ok().flatten().is_none(),
                "the exporter ended on SIGHUP {round}"
            );
            if let Ok(line) = exporter.logs.recv_timeout(Duration::from_millis(200))
                && line.contains("SIGHUP received and ignored")
            {
                break;
            }
        }
    }
    let body = close_event("after-hup", "7", Some("Operator"), "3", "60");
    assert_eq!(
        exporter.post_json(&body).0,
        200,
        "still serving after SIGHUP"
    );
    assert_eq!(
        exporter.terminate(),
        Some(0),
        "SIGTERM still drains and exits 0"
    );
}

/// The log lines of the kind `like` (message prefix) written and the lines its summaries
/// counted instead, read from `logs` until their sum reaches `expected` (or 60 s pass).
struct LogTally {
    written: usize,
    suppressed: u64,
    summaries: usize,
}

fn tally_logs(
    exporter: &Exporter,
    like: &str,
    detail: &str,
    expected: u64,
    seen: &mut Vec<serde_json::Value>,
) -> LogTally {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        while let Ok(line) = exporter.logs.try_recv() {
            if let Ok(v) = serde_json::from_str(&line) {
                seen.push(v);
            }
        }
        let mut tally = LogTally {
            written: 0,
            suppressed: 0,
            summaries: 0,
        };
        for line in seen.iter() {
            let message = line["message"].as_str().unwrap_or("");
            if line["like"] == like && line["detail"] == detail {
                tally.summaries += 1;
                tally.suppressed += line["suppressed"].as_u64().expect("a count");
            } else if message.starts_with(like) {
                tally.written += 1;
            }
        }
        if tally.written as u64 + tally.suppressed >= expected || Instant::now() > deadline {
            return tally;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_flood_of_refused_deliveries_floods_the_counters_not_the_log() {
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        "--webhook.token=the-right-one",
        "--log.repeat-window=2s",
    ]);
    let body = close_event("flood", "7", Some("Operator"), "3", "60");
    let (threads, each) = (4, 500);
    let started = Instant::now();
    let senders: Vec<_> = (0..threads)
        .map(|_| {
            let url = exporter.url("/webhook?token=wrong");
            let body = body.clone();
            std::thread::spawn(move || {
                let agent = common::agent();
                for _ in 0..each {
                    let (status, _) = common::post_with(
                        &agent,
                        &url,
                        &[("Content-Type", "application/json")],
                        &body,
                    );
                    assert_eq!(status, 401);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let flood = started.elapsed();
    let refused = (threads * each) as u64;
    let mut seen = Vec::new();
    let tally = tally_logs(
        &exporter,
        "webhook rejected",
        "unauthorized",
        refused,
        &mut seen,
    );
    assert_eq!(
        tally.written as u64 + tally.suppressed,
        refused,
        "every refusal is either written or counted in a summary"
    );
    // 10 lines per 2 s window that the flood touched, and the summaries.
    let windows = flood.as_secs() / 2 + 2;
    assert!(
        tally.written as u64 <= 10 * windows,
        "{} lines for {refused} refusals in {flood:?}",
        tally.written
    );
    assert!(tally.summaries >= 1);
    let summary = seen
        .iter()
        .find(|l| l["like"] == "webhook rejected")
        .expect("a summary");
    assert_eq!(summary["level"], "WARN");
    assert!(
        summary["message"]
            .as_str()
            .unwrap()
            .ends_with("more like this in the last 2s"),
        "{summary}"
    );
    assert_eq!(
        sample(
            &exporter.metrics(),
            r#"acquire_webhook_rejections_total{reason="unauthorized"}"#
        ),
        Some(refused as f64),
        "the counter stays exact"
    );
}

/// [`Exporter::spawn`] with a cap on the size of any file the exporter writes (RLIMIT_FSIZE,
/// with SIGXFSZ ignored): writes past it fail as on a full disk.
fn spawn_with_file_size_limit(args: &[&str], bytes: u64) -> Exporter {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"));
    command
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--log.format=json")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start the exporter");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, logs) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Owned at once, so a panic below still reaps the process.
    let mut exporter = Exporter {
        child,
        base: String::new(),
        logs,
    };
    loop {
        let line = exporter
            .logs
            .recv_timeout(Duration::from_secs(60))
            .expect("the exporter did not start listening");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["message"] == "listening" {
            let address = v["address"].as_str().expect("address");
            exporter.base = format!("http://{address}");
        }
        // Deliveries are admitted once the stored state is loaded, after the listener is up.
        if v["message"] == "state loaded" {
            return exporter;
        }
    }
}

#[test]
fn failing_commits_on_a_full_disk_write_a_bounded_log() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = spawn_with_file_size_limit(
        &[
            &format!("--storage.path={}", dir.path().display()),
            "--log.repeat-window=2s",
        ],
        512 * 1024,
    );
    let agent = common::agent();
    let started = Instant::now();
    let mut failed = 0u64;
    let mut i = 0;
    // Fill the disk, then keep delivering: each delivery fails and is answered 503.
    while failed < 400 {
        assert!(i < 100_000, "the file size limit never made a commit fail");
        let body = close_event(&format!("full-{i}"), "7", Some("Operator"), "3", "60");
        let (status, answer) = common::post_with(
            &agent,
            &exporter.url("/webhook"),
            &[("Content-Type", "application/json")],
            &body,
        );
        match status {
            200 => {}
            503 => failed += 1,
            other => panic!("{other}: {answer}"),
        }
        i += 1;
    }
    let flood = started.elapsed();
    let windows = flood.as_secs() / 2 + 2;
    let mut seen = Vec::new();
    let per_delivery = tally_logs(
        &exporter,
        "could not store a webhook",
        "",
        failed,
        &mut seen,
    );
    assert_eq!(
        per_delivery.written as u64 + per_delivery.suppressed,
        failed,
        "every failed delivery is either written or counted in a summary"
    );
    assert!(per_delivery.written as u64 <= 10 * windows);
    let commits = tally_logs(&exporter, "storage commit failed", "", 1, &mut seen);
    assert!(commits.written >= 1, "the commit failure is logged");
    assert!(
        commits.written as u64 <= 10 * windows,
        "{} commit failure lines in {flood:?}",
        commits.written
    );
    assert!(commits.written as u64 + commits.suppressed <= failed);
    let page = exporter.metrics();
    let errors: f64 = page
        .lines()
        .filter(|l| {
            l.starts_with("acquire_webhooks_received_total{") && l.contains(r#"outcome="error""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(errors, failed as f64, "the error count stays exact");
}

/// A GET from the local address `source` (any 127.x.y.z is this host on Linux), so the
/// exporter sees another client than this test's other connections: status and body.
fn get_from(source: &str, base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(addr).await.expect("connect")
    });
    let mut stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64_header::encode;
    format!("Basic {}", encode(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding, for the basic-auth header.
mod base64_header {
    pub fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[test]
fn a_wrong_password_flood_does_not_starve_the_first_scrape_after_a_start() {
    let password = "the-scrapers-password";
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let hash = bcrypt::hash(password, 10).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  scraper: {hash}\n")).unwrap();
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--web.config.file={}", web.display()),
        "--web.request-timeout=10s",
    ]);
    // Many connections from 127.0.0.1 guessing passwords (a cost-10 check takes about half a
    // second in a debug build): on one first-come queue of bcrypt checks, a newcomer waits
    // behind every one of them, a minute, far past the request timeout. Its own lane lets it
    // wait for about two checks.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flood: Vec<_> = (0..128)
        .map(|t| {
            let (stop, refused) = (stop.clone(), refused.clone());
            let url = exporter.url("/metrics");
            std::thread::spawn(move || {
                let agent = common::agent();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let guess = basic_auth("scraper", &format!("guess-{t}-{i}"));
                    let answer = agent.get(&url).header("Authorization", &guess).call();
                    if answer.is_ok_and(|r| r.status() == 401) {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while refused.load(std::sync::atomic::Ordering::Relaxed) < 20 {
        assert!(Instant::now() < deadline, "the flood never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let credential = basic_auth("scraper", password);
    let (status, page) = get_from(
        "127.0.0.2",
        &exporter.base,
        "/metrics",
        &[("Authorization", &credential)],
    );
    assert_eq!(
        status, 200,
        "the first scrape gets through the flood: {page}"
    );
    assert!(page.contains("acquire_exporter_build_info"));
    // Remembered now: it passes at once even from the flooding address, past its queue.
    let (status, _) =
        common::get_with(&exporter.url("/metrics"), &[("Authorization", &credential)]);
    assert_eq!(status, 200, "a remembered credential does not wait");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in flood {
        t.join().unwrap();
    }
}

/// One request on a raw tokio stream: writes it, reads the answer's head and its
/// Content-Length body; the status.
async fn exchange(stream: &tokio::net::TcpStream, request: &[u8]) -> std::io::Result<u16> {
    let mut rest = request;
    while !rest.is_empty() {
        stream.writable().await?;
        match stream.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if answer.len() >= end + 4 + length {
                return head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| std::io::Error::other("no status"));
            }
        }
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn keep_alive_hogs_at_the_connection_cap_never_keep_a_new_webhook_waiting() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let addr: std::net::SocketAddr = exporter.base.trim_start_matches("http://").parse().unwrap();
    // The hog: 1,024 keep-alive connections (the default cap), each sending GET /-/healthy every
    // 5 s and reconnecting whenever the server closes it.
    const HOGS: usize = 1024;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    let hog = {
        let (stop, answered, connected) = (stop.clone(), answered.clone(), connected.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let request = format!("GET /-/healthy HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                let tasks: Vec<_> = (0..HOGS)
                    .map(|k| {
                        let (stop, answered, connected) =
                            (stop.clone(), answered.clone(), connected.clone());
                        let request = request.clone();
                        tokio::spawn(async move {
                            // Spread over the period, as 1,024 independent clients would be.
                            let period = Duration::from_secs(5);
                            let start = tokio::time::Instant::now()
                                + period.mul_f64(k as f64 / HOGS as f64);
                            let mut tick = tokio::time::interval_at(start, period);
                            let mut stream = None;
                            let mut first = true;
                            while !stop.load(Ordering::Relaxed) {
                                tick.tick().await;
                                if stream.is_none() {
                                    stream = tokio::net::TcpStream::connect(addr).await.ok();
                                }
                                let Some(s) = &stream else { continue };
                                match exchange(s, request.as_bytes()).await {
                                    Ok(200) => {
                                        answered.fetch_add(1, Ordering::Relaxed);
                                        if first {
                                            connected.fetch_add(1, Ordering::Relaxed);
                                            first = false;
                                        }
                                    }
                                    _ => stream = None,
                                }
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    let _ = task.await;
                }
            });
        })
    };
    // Every hog has been answered once: the cap is full of keep-alive connections.
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::Relaxed) < HOGS as u64 {
        assert!(
            Instant::now() < deadline,
            "only {} hogs got in",
            connected.load(Ordering::Relaxed)
        );
        assert!(!hog.is_finished());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Webhooks from new connections, throughout more than two of the hog's periods.
    let mut slowest = Duration::ZERO;
    let mut slowest_at = 0;
    let probes = 60;
    for i in 0..probes {
        let body = close_event(&format!("probe-{i}"), "7", Some("Operator"), "3", "60");
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let sent = Instant::now();
        let mut stream = TcpStream::connect(addr).expect("connect");
        // The acceptance bound of the issue; no answer at all is what the hog caused before.
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer);
        let took = sent.elapsed();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            read.is_ok() && text.starts_with("HTTP/1.1 200"),
            "probe {i}: no answer within 1 s ({took:?}, {read:?}): {text}"
        );
        if took > slowest {
            (slowest, slowest_at) = (took, i);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "slowest of {probes} webhooks from a new connection: {slowest:?} (probe {slowest_at})"
    );
    let before = answered.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        answered.load(Ordering::Relaxed) > before,
        "the hog itself is still being served"
    );
    stop.store(true, Ordering::Relaxed);
    hog.join().unwrap();
    assert_eq!(
        sample(
            &exporter.metrics(),
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="7"}"#
        ),
        Some(probes as f64)
    );
}

/// The peak resident memory of `pid` since the last [`reset_peak_rss`], in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Starts a new peak-memory measurement (Linux: `5` in `clear_refs` resets VmHWM to VmRSS).
fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
}

#[test]
fn concurrent_scrapes_share_their_pages_and_memory_stays_near_one_page() {
    let (departments, roles) = (800, 5);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!("limits:\n  max_departments: {}\n", departments + 10),
    )
    .unwrap();
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--config.file={}", config.display()),
    ]);
    let role_names = [
        "administrator",
        "operator",
        "supervisor",
        "agent",
        "manager",
    ];
    let posters: Vec<_> = (0..8)
        .map(|t| {
            let url = exporter.url("/webhook");
            std::thread::spawn(move || {
                let agent = common::agent();
                for i in (t..departments * roles).step_by(8) {
                    let (d, r) = (i % departments, i / departments);
                    let body = close_event(
                        &format!("page-{i}"),
                        &format!("d{d}"),
                        Some(role_names[r]),
                        "3",
                        "60",
                    );
                    let (status, _) = common::post_with(
                        &agent,
                        &url,
                        &[("Content-Type", "application/json")],
                        &body,
                    );
                    assert_eq!(status, 200);
                }
            })
        })
        .collect();
    for p in posters {
        p.join().unwrap();
    }
    let series = departments * roles;
    let pid = exporter.child.id();
    /// What one scraper saw: bytes, wait-histogram series, and whether the page ended with a
    /// line break. A body shorter than its Content-Length fails the read.
    fn scrape(url: &str) -> (usize, usize, bool) {
        use std::io::BufRead;
        let mut response = common::agent().get(url).call().expect("GET /metrics");
        assert_eq!(response.status().as_u16(), 200);
        let mut reader =
            std::io::BufReader::new(response.body_mut().with_config().limit(1 << 30).reader());
        let (mut bytes, mut counts, mut ended, mut line) = (0, 0, false, Vec::new());
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).expect("read the page");
            if n == 0 {
                break;
            }
            bytes += n;
            counts += usize::from(line.starts_with(b"acquire_chat_wait_time_seconds_count{"));
            ended = line.last() == Some(&b'\n');
        }
        (bytes, counts, ended)
    }
    let url = exporter.url("/metrics");
    reset_peak_rss(pid);
    let before = peak_rss_kib(pid);
    let (page_bytes, counts, ended) = scrape(&url);
    assert_eq!(counts, series);
    assert!(ended, "a page ends with a line break");
    let one = peak_rss_kib(pid).saturating_sub(before);
    // 50 scrapers at once, twice each.
    reset_peak_rss(pid);
    let before = peak_rss_kib(pid);
    let scrapers: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || [scrape(&url), scrape(&url)])
        })
        .collect();
    for s in scrapers {
        for (bytes, counts, ended) in s.join().unwrap() {
            assert_eq!(counts, series, "every scraper gets every series");
            assert!(ended, "and the page to its end");
            assert!(
                bytes.abs_diff(page_bytes) < page_bytes / 10,
                "{bytes} bytes, one page is {page_bytes}"
            );
        }
    }
    let fifty = peak_rss_kib(pid).saturating_sub(before);
    eprintln!(
        "page {} KiB; peak RSS growth: one scrape {one} KiB, 50 at once {fifty} KiB",
        page_bytes / 1024
    );
    // About three pages at most live at once; 50 unshared pages would be fifty.
    assert!(
        fifty < 8 * (page_bytes as u64 / 1024),
        "50 concurrent scrapes grew the peak RSS by {fifty} KiB; one page is {} KiB",
        page_bytes / 1024
    );
}
