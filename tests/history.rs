//! A store that does not grow with history, against the real binary: snapshots, retention,
//! a start that answers 503 until the state is loaded, unreadable snapshots, layout changes,
//! kill -9 during a snapshot and during pruning, and the backup command.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Exporter, close_event, get, histogram_lines, sample};

fn durable(dir: &Path, extra: &[&str]) -> Exporter {
    let mut args = vec![format!("--storage.path={}", dir.display())];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::spawn(&args)
}

/// [`durable`], with the log lines written before the state was loaded.
fn durable_with_logs(dir: &Path, extra: &[&str]) -> (Exporter, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .args(["--web.listen-address=127.0.0.1:0", "--log.format=json"])
        .arg(format!("--storage.path={}", dir.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let mut address = None;
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the exporter did not start: {lines:?}");
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "listening" {
            address = v["address"].as_str().map(str::to_owned);
        }
        let loaded = v["message"] == "state loaded";
        lines.push(line);
        if loaded {
            let base = format!("http://{}", address.expect("listening first"));
            let exporter = Exporter {
                child,
                base,
                logs: rx,
            };
            return (exporter, lines);
        }
    }
}

/// `n` closes over `series` (department, role) pairs written into the store of `dir` through
/// the store's own API, received `age` ago: a store with history, built fast.
fn generate(dir: &Path, n: usize, series: usize, age: Duration) {
    use acquire_exporter::admit::{Store, sqlite::Sqlite};
    use acquire_exporter::config::SyncMode;
    use acquire_exporter::event::{ChatEvent, ChatKind};
    use std::sync::Arc;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = Arc::new(Sqlite::open(dir, SyncMode::Normal, Box::new(|_| {})).unwrap());
        let (store, _) = Store::start(engine, Arc::new(|_| {})).unwrap();
        let store = Arc::new(store);
        let then = std::time::SystemTime::now() - age;
        let then_ms = then
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let departments = series.div_ceil(4);
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in (t..n).step_by(32) {
                        let mut e = ChatEvent::empty(ChatKind::Close, &format!("g{i}"));
                        e.account_id = "10111".into();
                        e.received_ms = then_ms + i as i64;
                        e.department_id = (i % departments).to_string();
                        e.agent_role = Some(["a", "b", "c", "d"][i / departments % 4].into());
                        e.wait_seconds = Some((i % 300) as f64);
                        e.duration_seconds = Some((i % 1800) as f64);
                        store.admit(e).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        store.close().await;
    });
}

fn database(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("acquire-exporter.sqlite")).expect("open the database")
}

/// Poll until `done` holds, or fail with `what` after a generous time.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn snapshots(dir: &Path) -> i64 {
    database(dir)
        .query_row("SELECT count(*) FROM snapshots", [], |r| r.get(0))
        .unwrap()
}

fn events(dir: &Path) -> i64 {
    database(dir)
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

/// Post `n` closes numbered from `from`, all answered 200.
fn post_closes(exporter: &Exporter, from: usize, n: usize) {
    for i in from..from + n {
        let body = close_event(
            &format!("c{i}"),
            &(i % 3).to_string(),
            Some("Operator"),
            &(i % 50).to_string(),
            "90",
        );
        let (status, answer) = exporter.post_json(&body);
        assert_eq!(status, 200, "{answer}");
    }
}

#[test]
fn the_listener_answers_503_until_the_state_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    drop(durable(dir.path(), &[]));
    // The test holds the database's write lock, so the start waits in its load.
    let lock = database(dir.path());
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .args([
            "--web.listen-address=127.0.0.1:0",
            "--log.format=json",
            &format!("--storage.path={}", dir.path().display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("a log line").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_ne!(v["message"], "state loaded", "loaded through the lock");
        if v["message"] == "listening" {
            break v["address"].as_str().unwrap().to_owned();
        }
    };
    let base = format!("http://{address}");
    assert_eq!(
        get(&format!("{base}/-/ready")),
        (503, "Not ready: loading the stored state\n".to_owned())
    );
    assert_eq!(get(&format!("{base}/-/healthy")).0, 200);
    assert_eq!(get(&format!("{base}/metrics")).0, 503, "no partial page");
    let body = close_event("early", "", Some("Operator"), "3", "60");
    let (status, answer) = common::post(&format!("{base}/webhook"), "application/json", &body);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("loading its stored state"), "{answer}");
    lock.execute_batch("ROLLBACK").unwrap();
    wait_until("ready after the lock", || {
        get(&format!("{base}/-/ready")).0 == 200
    });
    let (status, _) = common::post(&format!("{base}/webhook"), "application/json", &body);
    assert_eq!(status, 200, "the sender's retry is taken once loaded");
    let page = get(&format!("{base}/metrics")).1;
    assert_eq!(
        common::total(&page, "acquire_chat_wait_time_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        sample(
            &page,
            r#"acquire_webhooks_received_total{event="chat_close",outcome="error"}"#
        ),
        Some(1.0),
        "the 503 while loading is counted"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn pruned_events_never_lower_a_counter_and_a_restart_keeps_them_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--storage.snapshot-every=20",
        "--storage.snapshot-interval=1s",
        "--storage.retention=2s",
    ];
    let exporter = durable(dir.path(), &flags);
    post_closes(&exporter, 0, 60);
    let before = exporter.metrics();
    assert_eq!(
        common::total(&before, "acquire_chat_wait_time_seconds_count", &[]),
        60.0
    );
    // Older than the retention and covered by a snapshot: pruned.
    std::thread::sleep(Duration::from_secs(3));
    post_closes(&exporter, 60, 20);
    wait_until("the old events are pruned", || {
        sample(
            &exporter.metrics(),
            "acquire_exporter_storage_pruned_events_total",
        )
        .is_some_and(|n| n >= 60.0)
    });
    let after = exporter.metrics();
    assert!(
        events(dir.path()) <= 20 + 1,
        "{} events left",
        events(dir.path())
    );
    assert_eq!(
        common::total(&after, "acquire_chat_wait_time_seconds_count", &[]),
        80.0
    );
    assert_eq!(
        sample(&after, "acquire_exporter_storage_events"),
        Some(events(dir.path()) as f64),
        "the gauge follows the pruning"
    );
    for line in histogram_lines(&before) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let now = sample(&after, series).unwrap_or_else(|| panic!("{series} is gone"));
        assert!(now >= value, "{series} went down from {value} to {now}");
    }
    assert_eq!(exporter.terminate(), Some(0));
    let restarted = durable(dir.path(), &flags);
    assert_eq!(
        histogram_lines(&restarted.metrics()),
        histogram_lines(&after),
        "a restart rebuilds the pruned events' contribution from the snapshot"
    );
}

#[test]
fn an_unreadable_snapshot_stops_the_start_naming_the_file_and_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = durable(dir.path(), &["--storage.snapshot-every=5"]);
    post_closes(&exporter, 0, 10);
    wait_until("a snapshot", || snapshots(dir.path()) > 0);
    assert_eq!(exporter.terminate(), Some(0));
    let db = database(dir.path());
    let mut data: Vec<u8> = db
        .query_row("SELECT data FROM snapshots", [], |r| r.get(0))
        .unwrap();
    data[40] ^= 0xff;
    db.execute("UPDATE snapshots SET data = ?1", [data])
        .unwrap();
    drop(db);
    let out = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .args([
            "--web.listen-address=127.0.0.1:0",
            &format!("--storage.path={}", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("acquire-exporter.sqlite"),
        "names the file: {err}"
    );
    assert!(err.contains("checksum"), "says what is wrong: {err}");
    assert!(err.contains("--storage.rebuild"), "says what to do: {err}");
    // The store is as it was: the same start fails the same way; a rebuild starts.
    let rebuilt = durable(dir.path(), &["--storage.rebuild"]);
    assert_eq!(
        common::total(
            &rebuilt.metrics(),
            "acquire_chat_wait_time_seconds_count",
            &[]
        ),
        10.0,
        "rebuilt from the retained events"
    );
}

#[test]
fn a_changed_layout_rebuilds_the_histograms_from_the_retained_events() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = durable(dir.path(), &["--storage.snapshot-every=1"]);
    for (i, wait) in ["3", "40", "700"].iter().enumerate() {
        exporter.post_json(&close_event(
            &i.to_string(),
            "",
            Some("Operator"),
            wait,
            "60",
        ));
    }
    wait_until("a snapshot of all three", || {
        database(dir.path())
            .query_row("SELECT max(seq) FROM snapshots", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .unwrap()
            == Some(3)
    });
    assert_eq!(exporter.terminate(), Some(0));
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "buckets:\n  wait_time: [10, 100]\n").unwrap();
    let (exporter, start_logs) = durable_with_logs(
        dir.path(),
        &[&format!("--config.file={}", config.display())],
    );
    let m = exporter.metrics();
    let bucket = |le: &str| {
        sample(
            &m,
            &format!(
                r#"acquire_chat_wait_time_seconds_bucket{{agent_role="operator",department="none",le="{le}"}}"#
            ),
        )
    };
    assert_eq!(bucket("10"), Some(1.0));
    assert_eq!(bucket("100"), Some(2.0));
    assert_eq!(bucket("+Inf"), Some(3.0));
    assert_eq!(bucket("60"), None, "never two layouts in one series");
    let warned = start_logs.iter().any(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        v["level"] == "WARN"
            && v["message"].as_str().is_some_and(|m| {
                m.contains("rebuilding the state from the retained events")
                    && m.contains("buckets.wait_time")
            })
    });
    assert!(
        warned,
        "the rebuild is logged at warn, naming what changed: {start_logs:?}"
    );
}

#[test]
fn a_kill_during_snapshots_loses_no_acknowledged_chat() {
    let dir = tempfile::tempdir().unwrap();
    // Two thousand series: a snapshot takes long enough that a kill lands in one.
    generate(dir.path(), 20_000, 2_000, Duration::from_secs(60));
    let flags = [
        "--storage.snapshot-every=1",
        "--storage.snapshot-interval=1s",
    ];
    let mut acknowledged = 20_000usize;
    let mut killed_in_a_snapshot = 0;
    for round in 0..5 {
        let exporter = durable(dir.path(), &flags);
        let written =
            |e: &Exporter| sample(&e.metrics(), "acquire_exporter_storage_snapshots_total");
        for i in 0..40 {
            let body = close_event(&format!("k{round}-{i}"), "1", Some("a"), "5", "60");
            if exporter.post_json(&body).0 == 200 {
                acknowledged += 1;
            }
        }
        // Snapshots follow each other as long as events come: kill while one is written.
        let before = written(&exporter);
        let last = close_event(&format!("k{round}-last"), "1", Some("a"), "5", "60");
        assert_eq!(exporter.post_json(&last).0, 200);
        acknowledged += 1;
        if written(&exporter) == before {
            killed_in_a_snapshot += 1;
        }
        exporter.kill9();
    }
    assert!(
        killed_in_a_snapshot > 0,
        "no kill landed while a snapshot was being made"
    );
    let exporter = durable(dir.path(), &flags);
    assert_eq!(
        common::total(
            &exporter.metrics(),
            "acquire_chat_wait_time_seconds_count",
            &[]
        ),
        acknowledged as f64
    );
    // Every acknowledged chat was stored: its retry is a duplicate.
    for round in 0..5 {
        for i in (0..40).step_by(3) {
            let body = close_event(&format!("k{round}-{i}"), "1", Some("a"), "5", "60");
            let (status, answer) = exporter.post_json(&body);
            assert_eq!(
                (status, answer.contains("duplicate")),
                (200, true),
                "k{round}-{i}: {answer}"
            );
        }
    }
}

#[test]
fn a_kill_during_pruning_loses_no_count_and_pruning_resumes() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 100_000, 40, Duration::from_secs(3600));
    let flags = ["--storage.snapshot-every=1", "--storage.retention=10m"];
    let exporter = durable(dir.path(), &flags);
    // The first snapshot covers every event, all older than the retention: pruning starts.
    wait_until("pruning has begun", || {
        sample(
            &exporter.metrics(),
            "acquire_exporter_storage_pruned_events_total",
        )
        .is_some_and(|n| n > 0.0)
    });
    exporter.kill9();
    let left = events(dir.path());
    assert!(
        left > 1,
        "the kill landed before the pruning ended ({left} left)"
    );
    let exporter = durable(dir.path(), &flags);
    assert_eq!(
        common::total(
            &exporter.metrics(),
            "acquire_chat_wait_time_seconds_count",
            &[]
        ),
        100_000.0,
        "the snapshot kept what the pruned events added"
    );
    // A new event and its snapshot resume the pruning, down to the newest event.
    post_closes(&exporter, 0, 1);
    wait_until("pruning resumed to the end", || events(dir.path()) <= 2);
    assert_eq!(
        common::total(
            &exporter.metrics(),
            "acquire_chat_wait_time_seconds_count",
            &[]
        ),
        100_001.0
    );
}

#[test]
fn the_backup_command_copies_the_running_store() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = durable(dir.path(), &[]);
    post_closes(&exporter, 0, 30);
    let copy = tempfile::tempdir().unwrap();
    let to = copy.path().join("acquire-exporter.sqlite");
    let out = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .args([
            "backup",
            &format!("--to={}", to.display()),
            &format!("--storage.path={}", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .args([
            "backup",
            &format!("--to={}", to.display()),
            &format!("--storage.path={}", dir.path().display()),
        ])
        .output()
        .unwrap();
    assert!(!again.status.success(), "a backup never overwrites a file");
    let live = exporter.metrics();
    drop(exporter);
    // Restoring is putting the copy in place of the database.
    let restored = durable(copy.path(), &[]);
    assert_eq!(histogram_lines(&restored.metrics()), histogram_lines(&live));
}
