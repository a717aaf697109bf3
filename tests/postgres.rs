//! Replicas over a real PostgreSQL, through the real binary: the server stopped during a load,
//! a replica killed with SIGKILL during a load (with a real Prometheus scraping both replicas),
//! identical deliveries to both replicas at once, a replica that starts late, one replica
//! building the snapshots and another taking over, TLS, and the URL kept out of the process
//! listing.

mod common;
#[path = "common/postgres.rs"]
mod pg;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::prometheus::{Prometheus, value};
use common::{Exporter, close_event, get, histogram_lines, sample};
use pg::free_port;

fn replica(url: &str, extra: &[&str]) -> Exporter {
    replica_on("127.0.0.1:0", url, extra)
}

fn replica_on(addr: &str, url: &str, extra: &[&str]) -> Exporter {
    let flag = format!("--storage.url={url}");
    let mut args = vec![flag.as_str()];
    args.extend_from_slice(extra);
    Exporter::spawn_on(addr, &args)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Chats in the wait histograms, over every series.
fn counted(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("acquire_chat_wait_time_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn received(metrics: &str, outcome: &str) -> f64 {
    sample(
        metrics,
        &format!(r#"acquire_webhooks_received_total{{event="chat_close",outcome="{outcome}"}}"#),
    )
    .unwrap_or(0.0)
}

fn body(id: &str) -> Vec<u8> {
    let department = (id.len() % 3).to_string();
    close_event(id, &department, Some("Operator"), "12", "60")
}

/// What a load saw.
#[derive(Default)]
struct Tally {
    /// Chats answered 200.
    acked: BTreeSet<String>,
    /// Chats not answered 200 (503, or no answer); the sender retries them.
    failed: BTreeSet<String>,
    /// 503 answers.
    unavailable: u64,
}

/// Senders posting distinct chats as fast as they are answered, each to the next replica in
/// turn when there are several (as a load balancer would), until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Tally>>,
    acked: Arc<AtomicU64>,
    unavailable: Arc<AtomicU64>,
}

impl Load {
    fn start(urls: &[String], senders: usize, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let unavailable = Arc::new(AtomicU64::new(0));
        let threads = (0..senders)
            .map(|t| {
                let urls = urls.to_vec();
                let (stop, acked, unavailable) = (stop.clone(), acked.clone(), unavailable.clone());
                let prefix = prefix.to_owned();
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(Duration::from_secs(10)))
                        .build()
                        .into();
                    let mut tally = Tally::default();
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let id = format!("{prefix}-{t}-{i}");
                        let url = &urls[(t + i) % urls.len()];
                        i += 1;
                        let sent = agent
                            .post(url)
                            .header("Content-Type", "application/json")
                            .send(&body(&id)[..]);
                        match sent.map(|r| r.status().as_u16()) {
                            Ok(200) => {
                                acked.fetch_add(1, Ordering::Relaxed);
                                tally.acked.insert(id);
                            }
                            Ok(503) => {
                                unavailable.fetch_add(1, Ordering::Relaxed);
                                tally.unavailable += 1;
                                tally.failed.insert(id);
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            Ok(other) => panic!("{id}: answered {other}"),
                            Err(_) => {
                                tally.failed.insert(id);
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        Load {
            stop,
            threads,
            acked,
            unavailable,
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    fn unavailable(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in self.threads {
            let t = t.join().expect("a sender panicked");
            all.acked.extend(t.acked);
            all.failed.extend(t.failed);
            all.unavailable += t.unavailable;
        }
        all
    }
}

/// Send `id` until it is answered 200, as the vendor retries; the answer's body.
fn deliver(url: &str, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agent = common::agent();
        if let Ok(mut r) = agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(&body(id)[..])
        {
            if r.status().as_u16() == 200 {
                return r.body_mut().read_to_string().unwrap_or_default();
            }
        }
        assert!(Instant::now() < deadline, "{id} was never taken");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(url: &str) -> u16 {
    get(url).0
}

#[test]
fn postgres_stopped_during_load_gives_503_then_recovers_and_counts_every_200_once() {
    let mut server = pg::Postgres::start();
    server.create_database("acquire");
    let exporter = replica(&server.url("acquire"), &[]);
    let webhook = exporter.url("/webhook");
    let load = Load::start(std::slice::from_ref(&webhook), 4, "stop");
    wait_until("the load runs", Duration::from_secs(30), || {
        load.acked() >= 200
    });

    server.stop();
    wait_until("deliveries get 503", Duration::from_secs(20), || {
        load.unavailable() >= 20
    });
    wait_until("/-/ready says not ready", Duration::from_secs(10), || {
        status(&exporter.url("/-/ready")) == 503
    });
    let (code, metrics) = get(&exporter.url("/metrics"));
    assert_eq!(code, 200, "/metrics is served while the store is down");
    assert!(received(&metrics, "error") >= 1.0, "the 503s are counted");
    let acked_before = load.acked();

    server.resume();
    let back = Instant::now();
    wait_until(
        "deliveries are taken again",
        Duration::from_secs(30),
        || load.acked() > acked_before + 50,
    );
    let recovered = back.elapsed();
    wait_until("/-/ready says ready", Duration::from_secs(10), || {
        status(&exporter.url("/-/ready")) == 200
    });
    let tally = load.finish();
    assert!(tally.unavailable > 0);
    eprintln!(
        "recovered {recovered:?} after the restart; {} taken, {} answered 503",
        tally.acked.len(),
        tally.unavailable
    );
    // The vendor retries what was not taken; a delivery committed just before the server went
    // away (and answered 503) is a duplicate now.
    for id in tally.failed.difference(&tally.acked) {
        deliver(&webhook, id);
    }
    let sent: BTreeSet<&String> = tally.acked.union(&tally.failed).collect();
    let expected = sent.len() as f64;
    wait_until("every chat is counted", Duration::from_secs(10), || {
        counted(&exporter.metrics()) >= expected
    });
    let metrics = exporter.metrics();
    assert_eq!(counted(&metrics), expected, "each chat counted once");
    assert_eq!(
        server.count("acquire", "SELECT count(*) FROM acquire_events"),
        sent.len() as i64
    );
    assert_eq!(
        received(&metrics, "observed") + received(&metrics, "duplicate"),
        (tally.acked.len() + tally.failed.difference(&tally.acked).count()) as f64,
        "every 200 was observed or duplicate"
    );
}

/// `sum(max without (instance, pod) (...))` of the wait count: the dashboards' chats.
const CHATS: &str = "sum(max without (instance, pod) (acquire_chat_wait_time_seconds_count))";

#[test]
fn a_replica_killed_during_load_loses_nothing_acknowledged_and_prometheus_sees_no_jump() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let url = server.url("acquire");
    let addr_a = format!("127.0.0.1:{}", free_port());
    let a = replica_on(&addr_a, &url, &[]);
    let b = replica(&url, &[]);
    let targets = [a.base.clone(), b.base.clone()];
    let prometheus = Prometheus::start(
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: acquire\n    static_configs:\n      - targets: ['{}', '{}']\n",
            targets[0].trim_start_matches("http://"),
            targets[1].trim_start_matches("http://")
        ),
        &[],
    );
    let start_time = unix_now();
    let webhooks: Vec<String> = [&a, &b].iter().map(|r| r.url("/webhook")).collect();
    let load = Load::start(&webhooks, 4, "kill");
    let scraped = |instance: &str, n: u32| {
        format!(
            "count_over_time(acquire_chat_wait_time_seconds_count{{instance=\"{instance}\",department=\"1\"}}[5m]) >= {n}"
        )
    };
    let b_addr = b.base.trim_start_matches("http://").to_owned();
    // Prometheus has scraped both replicas a few times with the load on.
    for instance in [&addr_a, &b_addr] {
        prometheus.wait_for(&scraped(instance, 3), Duration::from_secs(60));
    }
    let acked_at_kill = load.acked();
    a.kill9();
    wait_until(
        "the other replica keeps answering",
        Duration::from_secs(20),
        || load.acked() > acked_at_kill + 400,
    );
    // Down for a few scrapes, then A starts again on its address, late: it catches up from
    // the log and takes its share of the load again.
    prometheus.wait_for(
        &format!("up{{instance=\"{addr_a}\"}} == 0"),
        Duration::from_secs(30),
    );
    let a = replica_on(&addr_a, &url, &[]);
    let samples_before = value(
        &prometheus.wait_for(
            &format!("count_over_time(up{{instance=\"{addr_a}\"}}[5m])"),
            Duration::from_secs(5),
        )[0],
    );
    prometheus.wait_for(
        &format!(
            "count_over_time(up{{instance=\"{addr_a}\"}}[5m]) >= {}",
            samples_before + 3.0
        ),
        Duration::from_secs(30),
    );
    let tally = load.finish();
    // What went unanswered is sent again, as the vendor's retries do.
    let b_webhook = b.url("/webhook");
    for id in tally.failed.difference(&tally.acked) {
        deliver(&b_webhook, id);
    }
    let sent: BTreeSet<&String> = tally.acked.union(&tally.failed).collect();
    let expected = sent.len() as f64;
    for r in [&a, &b] {
        wait_until(
            "every replica counts every chat",
            Duration::from_secs(10),
            || counted(&r.metrics()) >= expected,
        );
        assert_eq!(
            counted(&r.metrics()),
            expected,
            "nothing lost, nothing twice"
        );
    }
    assert_eq!(histogram_lines(&a.metrics()), histogram_lines(&b.metrics()));
    assert_eq!(
        server.count("acquire", "SELECT count(*) FROM acquire_events"),
        sent.len() as i64
    );

    // Prometheus, as the dashboards see the run: the de-duplicated chats never drop, never
    // pass what was sent, and increase() over the failover is what the replica that stayed
    // up shows alone.
    prometheus.wait_for(
        &format!("{CHATS} >= {expected} and on() count(up == 1) == 2"),
        Duration::from_secs(30),
    );
    let end = unix_now().ceil();
    // A whole number of steps, so that the last point is `end` itself.
    let start_time = end - (end - start_time).ceil();
    let range = prometheus
        .api(
            "/api/v1/query_range",
            &[
                ("query", CHATS),
                ("start", &format!("{start_time}")),
                ("end", &format!("{end}")),
                ("step", "1"),
            ],
        )
        .unwrap();
    let values: Vec<f64> = range["result"][0]["values"]
        .as_array()
        .expect("a series")
        .iter()
        .map(|v| v[1].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(values.len() >= 5, "{values:?}");
    for w in values.windows(2) {
        assert!(
            w[1] >= w[0],
            "the chats dropped from {} to {}: {values:?}",
            w[0],
            w[1]
        );
    }
    assert!(
        values.iter().all(|v| *v <= expected),
        "the chats jumped above the {expected} sent: {values:?}"
    );
    assert_eq!(*values.last().unwrap(), expected);
    let window = (end - start_time) as u64;
    let increase = |expr: &str| value(&prometheus.query(&format!("sum({expr})")).unwrap()[0]);
    let both = increase(&format!(
        "max without (instance, pod) (increase(acquire_chat_wait_time_seconds_count[{window}s]))"
    ));
    let alone = increase(&format!(
        "increase(acquire_chat_wait_time_seconds_count{{instance=\"{b_addr}\"}}[{window}s])"
    ));
    // Not exactly equal: increase() extrapolates at the ends of each series, and the killed
    // replica's series has a gap. A counter reset on the restart would double it.
    assert!(
        (both - alone).abs() <= 0.2 * alone,
        "increase() over the failover: {both} from both replicas, {alone} from the one that stayed up"
    );
    eprintln!(
        "{} taken, {} retried; increase() {both} from both, {alone} from one; chats {values:?}",
        tally.acked.len(),
        tally.failed.len()
    );
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn identical_deliveries_to_both_replicas_at_once_are_counted_once() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let url = server.url("acquire");
    let replicas = [replica(&url, &[]), replica(&url, &[])];
    const CHATS: usize = 300;
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let senders: Vec<_> = (0..4)
        .map(|t| {
            // Two senders per replica, every sender the same chats in the same order.
            let webhook = replicas[t % 2].url("/webhook");
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let agent = common::agent();
                barrier.wait();
                for i in 0..CHATS {
                    let (code, _) = common::post_with(
                        &agent,
                        &webhook,
                        &[("Content-Type", "application/json")],
                        &body(&format!("same-{i}")),
                    );
                    assert_eq!(code, 200);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    for r in &replicas {
        wait_until(
            "both replicas count every chat",
            Duration::from_secs(10),
            || counted(&r.metrics()) >= CHATS as f64,
        );
    }
    let metrics: Vec<String> = replicas.iter().map(Exporter::metrics).collect();
    for m in &metrics {
        assert_eq!(counted(m), CHATS as f64, "each chat once on every replica");
    }
    let observed: f64 = metrics.iter().map(|m| received(m, "observed")).sum();
    let duplicate: f64 = metrics.iter().map(|m| received(m, "duplicate")).sum();
    assert_eq!(
        observed, CHATS as f64,
        "one delivery of each chat is observed"
    );
    assert_eq!(duplicate, 3.0 * CHATS as f64);
    assert_eq!(
        server.count("acquire", "SELECT count(*) FROM acquire_events"),
        CHATS as i64
    );
}

/// Snapshots a replica has written.
fn snapshots(e: &Exporter) -> f64 {
    sample(&e.metrics(), "acquire_exporter_storage_snapshots_total").unwrap_or(0.0)
}

#[test]
fn one_replica_builds_the_snapshots_and_another_takes_over_when_it_is_gone() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let url = server.url("acquire");
    let flags = ["--storage.snapshot-every=10"];
    let replicas = [replica(&url, &flags), replica(&url, &flags)];
    for i in 0..200 {
        let r = &replicas[i % 2];
        assert_eq!(r.post_json(&body(&format!("snap-{i}"))).0, 200);
    }
    wait_until(
        "a replica writes snapshots",
        Duration::from_secs(20),
        || replicas.iter().map(snapshots).sum::<f64>() >= 2.0,
    );
    // The worker of the other looked as often, found the role taken and built nothing.
    let written: Vec<f64> = replicas.iter().map(snapshots).collect();
    let keeper = written.iter().position(|n| *n > 0.0).unwrap();
    assert_eq!(
        written[1 - keeper],
        0.0,
        "only one replica builds: {written:?}"
    );
    let failures = |e: &Exporter| {
        sample(
            &e.metrics(),
            "acquire_exporter_storage_snapshot_failures_total",
        )
        .unwrap_or(0.0)
    };
    assert_eq!(failures(&replicas[1 - keeper]), 0.0);
    assert_eq!(
        server.count("acquire", "SELECT count(*) FROM acquire_snapshots"),
        1
    );

    // The keeper is lost; its lock goes with its connection, and the other takes the role at
    // its next due snapshot.
    let [a, b] = replicas;
    let survivor = if keeper == 0 {
        a.kill9();
        b
    } else {
        b.kill9();
        a
    };
    let before = server.count("acquire", "SELECT max(seq) FROM acquire_snapshots");
    for i in 0..20 {
        assert_eq!(survivor.post_json(&body(&format!("after-{i}"))).0, 200);
    }
    wait_until(
        "the survivor writes snapshots",
        Duration::from_secs(20),
        || snapshots(&survivor) >= 1.0,
    );
    assert!(
        server.count("acquire", "SELECT max(seq) FROM acquire_snapshots") > before,
        "the survivor's snapshot covers the events after the keeper's"
    );
}

#[test]
fn every_replica_shows_the_events_of_the_others_and_one_started_late_catches_up() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let url = server.url("acquire");
    let a = replica(&url, &[]);
    for i in 0..50 {
        assert_eq!(a.post_json(&body(&format!("early-{i}"))).0, 200);
    }
    // A chat that starts on A is accepted on B: B's live queue and A's agree.
    let start = br#"{"data": {"id": "live-1", "department_id": "4"}, "event": "CHAT_ON_START"}"#;
    assert_eq!(a.post_json(start).0, 200);
    let b = replica(&url, &[]);
    assert_eq!(
        histogram_lines(&a.metrics()),
        histogram_lines(&b.metrics()),
        "started late, B loaded the log"
    );
    let waiting = r#"acquire_chats_waiting{department="4"}"#;
    assert_eq!(
        sample(&b.metrics(), waiting),
        Some(1.0),
        "B sees A's waiting chat"
    );
    let accept =
        br#"{"data": {"id": "live-1", "user": {"id": "agent-7"}}, "event": "CHAT_ON_ACCEPT"}"#;
    assert_eq!(b.post_json(accept).0, 200);
    for i in 0..50 {
        assert_eq!(b.post_json(&body(&format!("late-{i}"))).0, 200);
    }
    wait_until("A follows B's events", Duration::from_secs(5), || {
        counted(&a.metrics()) >= 100.0 && sample(&a.metrics(), waiting) == Some(0.0)
    });
    let (ma, mb) = (a.metrics(), b.metrics());
    assert_eq!(counted(&ma), 100.0);
    assert_eq!(histogram_lines(&ma), histogram_lines(&mb));
    assert_eq!(sample(&ma, waiting), sample(&mb, waiting));
}

#[test]
fn the_url_file_keeps_the_password_out_of_the_process_listing() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{}\n", server.url("acquire"))).unwrap();
    let flag = format!("--storage.url-file={}", file.path().display());
    let exporter = Exporter::spawn(&[&flag]);
    assert_eq!(exporter.post_json(&body("1")).0, 200);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", exporter.child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(pg::PASSWORD));
    let mut logs = String::new();
    while let Ok(line) = exporter.logs.try_recv() {
        logs.push_str(&line);
    }
    assert!(!logs.contains(pg::PASSWORD), "never logged: {logs}");
    assert!(
        logs.contains("127.0.0.1"),
        "the log names the server: {logs}"
    );
}

/// A certificate authority and a server certificate for `localhost`, made with openssl.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl (scripts/test installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for name in ["ca", "other-ca"] {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=test-only {name}"),
        ]);
    }
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[test]
fn tls_verify_full_connects_only_to_the_server_its_authority_signed() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let mut server = pg::Postgres::start();
    server.create_database("acquire");
    let key = server.write_private(
        "server.key",
        &std::fs::read(certs.path().join("server.key")).unwrap(),
    );
    let cert = server.write_private(
        "server.pem",
        &std::fs::read(certs.path().join("server.pem")).unwrap(),
    );
    server.stop();
    server.set("ssl=on");
    server.set(&format!("ssl_cert_file={}", cert.display()));
    server.set(&format!("ssl_key_file={}", key.display()));
    // Only TLS connections over TCP.
    server.hba("local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n");
    server.resume();
    let url = |mode: &str, root: &str| {
        format!(
            "postgres://postgres:{}@localhost:{}/acquire?sslmode={mode}&sslrootcert={}",
            pg::PASSWORD,
            server.port,
            certs.path().join(root).display()
        )
    };
    let exporter = replica(&url("verify-full", "ca.pem"), &[]);
    assert_eq!(exporter.post_json(&body("tls-1")).0, 200);
    let connections = |tls: bool| {
        server.count(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
                 WHERE ssl = {tls} AND application_name = 'acquire-exporter'"
            ),
        )
    };
    assert!(
        connections(true) >= 2,
        "the writer and the follower at least"
    );
    assert_eq!(connections(false), 0, "every connection is on TLS");
    drop(exporter);

    // A server whose certificate another authority signed is refused, naming why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .arg(format!(
            "--storage.url={}",
            url("verify-full", "other-ca.pem").replace("localhost", "127.0.0.1")
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
    assert!(!err.contains(pg::PASSWORD), "{err}");

    // sslmode=disable is refused by this server: TLS really is in use above.
    let plain = format!(
        "postgres://postgres:{}@127.0.0.1:{}/acquire?sslmode=disable",
        pg::PASSWORD,
        server.port
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .arg(format!("--storage.url={plain}"))
        .arg("--web.listen-address=127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no pg_hba.conf entry"));
}

/// The week plan read from the shared store is the one read from a SQLite store that took the
/// same deliveries; a database without the exporter's schema is refused and left as it was.
#[test]
fn the_week_plan_reads_the_shared_store_as_it_reads_a_store_folder() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    server.create_database("empty");
    let url = server.url("acquire");
    let dir = tempfile::tempdir().unwrap();
    let shared = replica(&url, &[]);
    let alone = Exporter::spawn(&[&format!("--storage.path={}", dir.path().display())]);
    for i in 0..40 {
        // Answered chats of three departments, and a few nobody answered.
        let wait = if i % 7 == 0 { "null" } else { "30" };
        let role = (wait != "null").then_some("Operator");
        // Handled for up to four hours: they arrived over the last few hours.
        let duration = (200 + (i % 5) * 3600).to_string();
        let event = close_event(
            &format!("plan-{i}"),
            &(i % 3).to_string(),
            role,
            wait,
            &duration,
        );
        assert_eq!(shared.post_json(&event).0, 200);
        assert_eq!(alone.post_json(&event).0, 200);
    }
    drop(shared);
    drop(alone);

    let plan = |source: &str| -> serde_json::Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
            .args(["plan", "--format", "json", "--history", source])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // Where it was read from, and nothing else, differs.
        let top = v.as_object_mut().expect("an object");
        assert!(top.remove("path").is_some() && top.remove("source").is_some());
        v
    };
    let from_postgres = plan(&url);
    assert_eq!(from_postgres, plan(&dir.path().display().to_string()));
    let text = from_postgres.to_string();
    for department in ["\"0\"", "\"1\"", "\"2\""] {
        assert!(text.contains(department), "{department} is planned: {text}");
    }

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .args(["plan", "--history", &server.url("empty")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds no acquire-exporter store"),
        "{stderr}"
    );
    assert!(!stderr.contains(pg::PASSWORD), "no password in {stderr}");
    assert_eq!(
        server.count(
            "empty",
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'acquire%'"
        ),
        0,
        "no schema made"
    );
}
