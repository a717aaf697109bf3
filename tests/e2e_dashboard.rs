//! The Grafana dashboard against real data: the exporter fed by the traffic simulator, scraped by
//! a real Prometheus without native histograms and by a second one with them. Every panel query
//! and every variable query of `grafana/dashboards/acquire-chats.json`, with Grafana's variables
//! substituted, must parse and return data; queries marked native-only (refId `native…`) must
//! return data on the native Prometheus. Structural checks need no server.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::Exporter;
use common::prometheus::{Prometheus, scrape_config, value};

const DASHBOARD: &str = "grafana/dashboards/acquire-chats.json";

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// A panel query: the panel's title, the target's refId and expression, and the target itself.
struct Query<'a> {
    panel: String,
    ref_id: String,
    expr: String,
    target: &'a Value,
}

impl Query<'_> {
    /// Native-histogram queries are marked by their refId; they return nothing on a Prometheus
    /// that does not scrape native histograms.
    fn native_only(&self) -> bool {
        self.ref_id.starts_with("native")
    }

    fn name(&self) -> String {
        format!("{:?} {}", self.panel, self.ref_id)
    }
}

fn queries(d: &Value) -> Vec<Query<'_>> {
    panels(d)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("panel {:?} has no targets", p["title"]))
                .iter()
                .map(move |t| Query {
                    panel: p["title"].as_str().unwrap_or_default().to_owned(),
                    ref_id: t["refId"].as_str().expect("refId").to_owned(),
                    expr: t["expr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{:?}: target without expr", p["title"]))
                        .to_owned(),
                    target: t,
                })
        })
        .collect()
}

/// The dashboard's variables as the test fills them in: every department and role, job
/// `acquire`, the one scraped instance, a threshold of 60 s, and fixed intervals.
fn substitute(expr: &str, instance: &str) -> String {
    let value_of = |name: &str| -> String {
        match name {
            "job" => "acquire".to_owned(),
            "instance" => instance.replace('.', "\\\\."),
            "department" | "agent_role" => ".*".to_owned(),
            "threshold" => "60".to_owned(),
            "__rate_interval" => "1m".to_owned(),
            "__interval" => "15s".to_owned(),
            "__range" => "5m".to_owned(),
            other => panic!("unknown variable ${other} in {expr}"),
        }
    };
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("closing brace");
            (braced[..end].split(':').next().unwrap(), end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        assert!(!name.is_empty(), "a lone $ in {expr}");
        out.push_str(&value_of(name));
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

// -------------------------------------------------------------------------------------------
// Structure.

#[test]
fn dashboard_uid_is_stable_short_and_the_schema_current() {
    let d = dashboard();
    assert_eq!(
        d["uid"], "acquire-chats",
        "links and bookmarks rely on the uid"
    );
    assert!(
        d["uid"].as_str().unwrap().len() <= 40,
        "Grafana caps uids at 40"
    );
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(schema >= 41, "schemaVersion {schema} predates Grafana 12");
    assert!(
        d.get("id").is_none_or(Value::is_null),
        "an id ties the file to one Grafana database"
    );
}

#[test]
fn every_panel_has_a_title_a_description_and_a_unit() {
    let d = dashboard();
    let mut ids = std::collections::HashSet::new();
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.trim().is_empty(), "a panel without a title: {p}");
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "{title}: id reused"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["description"]
                .as_str()
                .is_some_and(|s| s.trim().len() > 20),
            "{title}: no description"
        );
        assert!(
            p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .is_some_and(|u| !u.is_empty()),
            "{title}: no unit in fieldConfig.defaults.unit"
        );
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: the panel must follow the datasource variable"
        );
    }
}

#[test]
fn every_query_follows_the_datasource_variable_and_uses_grafana_intervals() {
    let d = dashboard();
    for q in queries(&d) {
        assert_eq!(
            q.target["datasource"]["uid"],
            "${datasource}",
            "{}",
            q.name()
        );
        // Ranges are Grafana's, never hard-coded: `[5m]` breaks with a long scrape interval.
        for (i, _) in q.expr.match_indices('[') {
            let range = &q.expr[i..q.expr[i..].find(']').unwrap() + i + 1];
            assert!(
                range == "[$__rate_interval]" || range == "[$__range]",
                "{}: range {range} in {}",
                q.name(),
                q.expr
            );
        }
        assert!(
            !outside_strings(&q.expr).contains(':'),
            "{}: uses a recording rule; the dashboard must work without the rule files: {}",
            q.name(),
            q.expr
        );
        for label in ["job=~\"$job\"", "instance=~\"$instance\""] {
            assert!(
                q.expr.contains(label),
                "{}: no {label} in {}",
                q.name(),
                q.expr
            );
        }
    }
}

/// The matchers on label `name` in `expr`: operator and quoted value, e.g. `("=~", "\"60\"")`.
fn matchers<'a>(expr: &'a str, name: &str) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    for (i, _) in expr.match_indices(name) {
        let before = expr[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = expr[i + name.len()..].trim_start();
        let Some(op) = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
        else {
            continue;
        };
        let value = rest[op.len()..].trim_start();
        let Some(body) = value.strip_prefix('"') else {
            continue;
        };
        let mut end = 0;
        let mut escaped = false;
        for (j, c) in body.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = j;
                    break;
                }
                _ => {}
            }
        }
        out.push((op, &value[..end + 2]));
    }
    out
}

#[test]
fn bucket_matchers_hold_on_prometheus_3() {
    // Prometheus 3 writes le="60" as le="60.0": an exact matcher finds nothing there.
    let d = dashboard();
    let mut bucket_matchers = 0;
    for q in queries(&d) {
        for (op, value) in matchers(&q.expr, "le") {
            assert!(
                op == "=~" && value.ends_with("(\\\\.0)?\""),
                "{}: le{op}{value} misses the (\\\\.0)? alternative in {}",
                q.name(),
                q.expr
            );
            bucket_matchers += 1;
        }
    }
    assert!(
        bucket_matchers >= 3,
        "the threshold panels match buckets by le"
    );
}

#[test]
fn the_le_matcher_check_can_fail() {
    let cases: [(&str, &[(&str, &str)]); 4] = [
        (r#"x{le="60"}"#, &[("=", r#""60""#)]),
        (
            r#"x{agent_role=~"a",le=~"60(\\.0)?"}"#,
            &[("=~", r#""60(\\.0)?""#)],
        ),
        (r#"x{agent_role="le"}"#, &[]),
        (r#"x{ le != "1" }"#, &[("!=", r#""1""#)]),
    ];
    for (expr, want) in cases {
        assert_eq!(matchers(expr, "le"), want, "{expr}");
    }
}

#[test]
fn variables_are_the_documented_ones() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("templating");
    let by_name = |n: &str| {
        vars.iter()
            .find(|v| v["name"] == n)
            .unwrap_or_else(|| panic!("no variable {n}"))
    };
    assert_eq!(by_name("datasource")["type"], "datasource");
    assert_eq!(by_name("datasource")["query"], "prometheus");
    for name in ["job", "instance", "department", "agent_role"] {
        let v = by_name(name);
        assert_eq!(v["type"], "query", "{name}");
        // A string runs as written; Grafana rebuilds the object form from separate fields.
        assert!(v["query"].is_string(), "{name}: query as a string");
        assert!(
            variable_query(v).starts_with("label_values("),
            "{name}: {}",
            variable_query(v)
        );
    }
    for name in ["instance", "department", "agent_role"] {
        let v = by_name(name);
        assert_eq!(v["multi"], true, "{name} is multi-select");
        assert_eq!(v["includeAll"], true, "{name} has All");
    }
    for name in ["department", "agent_role"] {
        assert_eq!(
            by_name(name)["allValue"],
            ".*",
            "{name}: All must include values that appear later"
        );
    }
    let threshold = by_name("threshold");
    assert_eq!(threshold["type"], "custom");
    assert_eq!(threshold["current"]["value"], "60");
    assert!(
        threshold_options(&d).contains(&"60".to_owned()),
        "{threshold}"
    );
}

/// The expression without its string literals (label values may hold any character).
fn outside_strings(expr: &str) -> String {
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in expr.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, false, _) => {}
            (false, _, '"') => in_string = true,
            (false, _, c) => out.push(c),
        }
    }
    out
}

fn variable_query(v: &Value) -> String {
    v["query"]["query"]
        .as_str()
        .or_else(|| v["query"].as_str())
        .or_else(|| v["definition"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn threshold_options(d: &Value) -> Vec<String> {
    let v = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "threshold")
        .expect("threshold variable");
    v["query"]
        .as_str()
        .expect("custom query")
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect()
}

#[test]
fn substitution_fills_every_variable() {
    let cases = [
        ("rate(x[$__rate_interval])", "rate(x[1m])"),
        ("x{le=~\"$threshold(\\\\.0)?\"}", "x{le=~\"60(\\\\.0)?\"}"),
        (
            "x{instance=~\"${instance}\",job=~\"$job\"}",
            "x{instance=~\"127\\\\.0\\\\.0\\\\.1:9\",job=~\"acquire\"}",
        ),
        ("increase(x[$__range])", "increase(x[5m])"),
    ];
    for (expr, want) in cases {
        assert_eq!(substitute(expr, "127.0.0.1:9"), want, "{expr}");
    }
}

// -------------------------------------------------------------------------------------------
// Against real servers.

/// An instant query at `time`; the result vector, or Prometheus's error.
fn query_at(p: &Prometheus, expr: &str, time: f64) -> Result<Vec<Value>, String> {
    let data = p.api(
        "/api/v1/query",
        &[("query", expr), ("time", &format!("{time:.3}"))],
    )?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `label_values(selector, label)` as Grafana runs it: the label's values among the series.
fn label_values(p: &Prometheus, query: &str, instance: &str) -> Vec<String> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(...): {query}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .expect("label_values(selector, label)");
    let selector = substitute(selector.trim(), instance);
    let (start, end) = (format!("{:.0}", now() - 600.0), format!("{:.0}", now()));
    let data = p
        .api(
            &format!("/api/v1/label/{}/values", label.trim()),
            &[("match[]", &selector), ("start", &start), ("end", &end)],
        )
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    data.as_array()
        .expect("values")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// The simulator process, stopped when the test ends early.
struct Simulator(std::process::Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_panel_and_variable_query_returns_data_from_simulated_traffic() {
    let config = tempfile::NamedTempFile::new().unwrap();
    // The shortest expiry the exporter allows, so that a lone start expires during the test.
    std::fs::write(config.path(), "queue:\n  expire_after: 1m\n").unwrap();
    let config_arg = format!("--config.file={}", config.path().display());
    let exporter = Exporter::spawn(&["--storage.in-memory", &config_arg]);
    let target = exporter.base.trim_start_matches("http://").to_owned();
    // A chat that starts and is never heard of again: it feeds the "expired" panel.
    let (status, body) = exporter.post_json(
        br#"{"data": {"id": "lost-1", "department_id": "99"}, "event": "CHAT_ON_START"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let lost_at = Instant::now();

    let classic = Prometheus::start(
        &scrape_config(&target),
        &["--enable-feature=exemplar-storage"],
    );
    let native = Prometheus::start(
        &scrape_config(&target),
        &["--enable-feature=native-histograms,exemplar-storage"],
    );

    // Busy late-morning traffic at 60x: waits of a fraction of a second and chats of a few
    // seconds in wall-clock time, for longer than the lone chat takes to expire.
    let mut simulator = Simulator(
        Command::new(env!("CARGO_BIN_EXE_acquire-simulator"))
            .args([
                &format!("--url={}/webhook", exporter.base),
                "--speed=60",
                "--peak-per-hour=600",
                "--start-hour=10",
                "--duration=100s",
                "--report-every=20s",
                "--seed=42",
            ])
            .arg("--duplicate-share=0.05")
            .arg("--invalid-share=0.01")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulator"),
    );
    let mut simulator_out = simulator.0.stdout.take().unwrap();
    let output = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = simulator_out.read_to_string(&mut s);
        s
    });

    // Until the lone chat expired (the exporter checks every 10 s past the 1 min expiry), and
    // Prometheus saw it.
    wait_until(
        "the lone chat expired and was scraped",
        Duration::from_secs(120),
        || {
            !classic
                .query("acquire_chats_expired_total{department=\"99\"} > 0")
                .unwrap()
                .is_empty()
        },
    );
    assert!(lost_at.elapsed() >= Duration::from_secs(60));
    // One more scrape, then every query at one instant, while the traffic still runs.
    std::thread::sleep(Duration::from_secs(2));
    let at = now();

    let d = dashboard();
    let qs = queries(&d);
    assert!(qs.len() >= 30, "{} queries", qs.len());
    let mut failures = Vec::new();
    for q in &qs {
        let expr = substitute(&q.expr, &target);
        // Every query parses on both servers.
        for (server, p) in [("classic", &classic), ("native", &native)] {
            if let Err(e) = query_at(p, &expr, at) {
                failures.push(format!(
                    "{} does not run on the {server} server: {e}",
                    q.name()
                ));
            }
        }
        let server = if q.native_only() { &native } else { &classic };
        match query_at(server, &expr, at) {
            Ok(r) if r.is_empty() => {
                failures.push(format!("{} returned no data: {expr}", q.name()))
            }
            Ok(_) | Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Sanity of the values, not only their presence.
    let classic_value = |panel: &str, ref_id: &str| -> Vec<f64> {
        let q = qs
            .iter()
            .find(|q| q.panel == panel && q.ref_id == ref_id)
            .unwrap_or_else(|| panic!("no query {panel:?} {ref_id}"));
        let server = if q.native_only() { &native } else { &classic };
        query_at(server, &substitute(&q.expr, &target), at)
            .unwrap()
            .iter()
            .map(value)
            .collect()
    };
    for share in classic_value("Answered within $threshold s by department", "A") {
        assert!((0.0..=1.0).contains(&share), "a share of {share}");
    }
    let p50 = classic_value("Wait time p50 / p90 / p99", "A")[0];
    let p90 = classic_value("Wait time p50 / p90 / p99", "B")[0];
    let native_p90 = classic_value("Wait time p50 / p90 / p99", "native_p90")[0];
    assert!(
        0.0 < p50 && p50 <= p90 && p90 < 1800.0,
        "wait p50 {p50}, p90 {p90}"
    );
    assert!(
        native_p90 > 0.0 && native_p90 < 1800.0,
        "native wait p90 {native_p90}"
    );
    let waited = query_at(
        &classic,
        "max_over_time(sum(acquire_chats_waiting{department=~\"12|15|18\"})[1m:1s])",
        at,
    )
    .unwrap();
    assert!(
        waited.first().map(value).unwrap_or(0.0) >= 1.0,
        "the simulator's chats pass through the live queue: {waited:?}"
    );

    // Exemplars where the dashboard asks for them: native targets on the native server, the
    // heatmaps' classic buckets (OpenMetrics) on the classic one.
    let (start, end) = (format!("{:.0}", at - 300.0), format!("{:.0}", at + 1.0));
    for q in qs.iter().filter(|q| q.target["exemplar"] == true) {
        let server = if q.native_only() { &native } else { &classic };
        let expr = substitute(&q.expr, &target);
        let data = server
            .api(
                "/api/v1/query_exemplars",
                &[("query", &expr), ("start", &start), ("end", &end)],
            )
            .unwrap_or_else(|e| panic!("{}: {e}", q.name()));
        let ids: Vec<&str> = data
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["exemplars"].as_array().into_iter().flatten())
            .filter_map(|e| e["labels"]["chat_id"].as_str())
            .collect();
        assert!(
            !ids.is_empty(),
            "{}: no exemplar with a chat_id for {expr}",
            q.name()
        );
    }

    // Variables: each label_values query finds values, and the threshold options are exact
    // bounds of the wait buckets.
    let vars = d["templating"]["list"].as_array().unwrap();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap();
        for (server, p) in [("classic", &classic), ("native", &native)] {
            let values = label_values(p, &variable_query(v), &target);
            let want = match name {
                "job" => "acquire",
                "instance" => target.as_str(),
                "department" => "12",
                "agent_role" => "operator",
                other => panic!("unexpected variable {other}"),
            };
            assert!(
                values.iter().any(|x| x == want),
                "{name} on the {server} server: {values:?} lacks {want}"
            );
        }
    }
    for t in threshold_options(&d) {
        let bucket =
            format!("count(acquire_chat_wait_time_seconds_bucket{{le=~\"{t}(\\\\.0)?\"}})");
        assert!(
            !query_at(&classic, &bucket, at).unwrap().is_empty(),
            "threshold {t} is not a wait bucket bound"
        );
    }

    let status = simulator.0.wait().expect("simulator");
    let out = output.join().unwrap();
    assert!(status.success(), "the simulator failed: {out}");
    assert!(
        out.lines().any(|l| l.starts_with("simulated ")) && out.contains("done"),
        "no summary from the simulator: {out}"
    );
    drop(exporter);
}
