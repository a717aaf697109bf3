//! The Grafana dashboard against real data: the exporter (durable store, custom wait buckets, a
//! token, a small department cap) fed by the traffic simulator and by deliveries the test makes
//! on purpose (refused ones, a department past the cap, a chat that expires), scraped by a real
//! Prometheus without native histograms that also runs the kit's rules, and by a second one with
//! native histograms. Every panel query and every variable query of
//! `grafana/dashboards/acquire-chats.json`, with Grafana's variables substituted, must parse on
//! both and return finite data (native-only refIds `native…` on the native server; the store
//! starts with five weeks of one department's history, for the forecast); then the values are
//! checked against what was posted. Structural checks need no server.

mod common;
mod kit;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::prometheus::{Prometheus, scrape_config, value};
use common::{Exporter, close_event, sample};

const DASHBOARD: &str = "grafana/dashboards/acquire-chats.json";
const TOKEN: &str = "e2e-dashboard-token";

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

/// A panel query: the panel, the target's refId and expression, and the target itself.
struct Query<'a> {
    panel: String,
    ref_id: String,
    expr: String,
    target: &'a Value,
    /// The panel's minimum interval (`$__interval` is at least this).
    min_interval: Option<String>,
}

impl Query<'_> {
    /// Native-histogram queries are marked by their refId; they return nothing on a Prometheus
    /// that does not scrape native histograms.
    fn native_only(&self) -> bool {
        self.ref_id.starts_with("native")
    }

    /// A constant (a target or threshold line): no series selector at all.
    fn constant(&self) -> bool {
        !self.expr.contains('{')
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
                    min_interval: p["interval"].as_str().map(str::to_owned),
                })
        })
        .collect()
}

/// Seconds of a Prometheus duration like `15m` or `1h`.
fn seconds(d: &str) -> u64 {
    let (n, unit) = d.split_at(d.len() - 1);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("duration {d}"));
    n * match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => panic!("unit {other} in {d}"),
    }
}

/// The dashboard's variables as the test fills them in: every department and role, job
/// `acquire`, the one scraped instance, a threshold of 60 s, a range covering the whole test,
/// and `$__interval` at least the panel's minimum interval.
fn substitute(expr: &str, instance: &str, min_interval: Option<&str>) -> String {
    let interval = min_interval.map_or(15, seconds).max(15);
    let value_of = |name: &str| -> String {
        match name {
            "job" => "acquire".to_owned(),
            "instance" => instance.replace('.', "\\\\."),
            "department" | "agent_role" => ".*".to_owned(),
            "threshold" => "60".to_owned(),
            "__rate_interval" => "1m".to_owned(),
            "__interval" => format!("{interval}s"),
            "__range" => "10m".to_owned(),
            other => panic!("unknown variable ${other} in {expr}"),
        }
    };
    kit::substitute_with(expr, value_of)
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

/// The anchors GitHub gives the headings of docs/runbook.md.
fn runbook_anchors() -> BTreeSet<String> {
    let runbook = std::fs::read_to_string(kit::repo().join("docs/runbook.md")).unwrap();
    runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_panel_has_a_title_a_description_a_unit_and_a_runbook_link() {
    let d = dashboard();
    let base = format!(
        "{}#",
        kit::config()["runbookURL"].as_str().expect("runbookURL")
    );
    let anchors = runbook_anchors();
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
        let links = p["links"].as_array().map(Vec::as_slice).unwrap_or_default();
        let anchor = links
            .iter()
            .find_map(|l| l["url"].as_str()?.strip_prefix(&base))
            .unwrap_or_else(|| panic!("{title}: no link to the runbook ({base}…)"));
        assert!(
            anchors.contains(anchor),
            "{title}: docs/runbook.md has no section #{anchor}"
        );
    }
}

#[test]
fn every_query_follows_the_datasource_the_variables_and_grafana_intervals() {
    let d = dashboard();
    let config = kit::config();
    // The burn-rate panel reads the SLO alerts' long windows, which are definitions, not steps.
    let slo_windows: Vec<String> = ["fastBurn", "slowBurn"]
        .iter()
        .map(|b| format!("[{}]", config["slo"][b]["longWindow"].as_str().unwrap()))
        .collect();
    for q in queries(&d) {
        assert_eq!(
            q.target["datasource"]["uid"],
            "${datasource}",
            "{}",
            q.name()
        );
        for (i, _) in q.expr.match_indices('[') {
            let range = &q.expr[i..q.expr[i..].find(']').unwrap() + i + 1];
            assert!(
                ["[$__rate_interval]", "[$__range]", "[$__interval]"].contains(&range)
                    || slo_windows.iter().any(|w| w == range),
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
        if q.constant() {
            continue;
        }
        assert!(
            q.expr.contains("job=~\"$job\""),
            "{}: no job filter in {}",
            q.name(),
            q.expr
        );
        // ALERTS carry the job, not always an instance.
        if !q.expr.contains("ALERTS{") {
            assert!(
                q.expr.contains("instance=~\"$instance\""),
                "{}: no instance filter in {}",
                q.name(),
                q.expr
            );
        }
        // Stats and tables over the whole range are one instant query, not a range query.
        if q.expr.contains("[$__range]") {
            assert!(
                q.target["instant"] == true && q.target["range"] == false,
                "{}: a [$__range] query must be instant",
                q.name()
            );
        }
    }
}

#[test]
fn families_every_replica_exposes_are_deduplicated_before_summing() {
    let d = dashboard();
    let config = kit::config();
    let replicas: Vec<&str> = config["replicaLabels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let dedup = format!("max without ({})", replicas.join(", "));
    // Families derived from the event log (every replica exposes them alike).
    let derived = [
        "acquire_chat_wait_time_seconds",
        "acquire_chat_duration_seconds",
        "acquire_chat_accept_time_seconds",
        "acquire_chats_",
        "acquire_chat_oldest_wait_seconds",
        "acquire_label_overflow_total",
        "acquire_offered_load_erlangs",
        "acquire_agents_",
        "acquire_chat_arrivals_per_second",
        "acquire_chat_mean_handle_time_seconds",
        "acquire_visitor_patience_seconds",
    ];
    let mut checked = 0;
    for q in queries(&d) {
        // Only `sum` aggregates native histograms on Prometheus 2, and a quantile of the sum of
        // identical histograms is the quantile of one: the native quantiles need no max.
        if q.native_only() {
            assert!(
                q.expr.starts_with("histogram_quantile("),
                "{}: {}",
                q.name(),
                q.expr
            );
            continue;
        }
        if derived.iter().any(|m| q.expr.contains(m)) {
            checked += 1;
            let per_replica = q.expr.matches("acquire_exporter_").count()
                + q.expr.matches("acquire_webhook").count();
            let uses = q
                .expr
                .matches("acquire_")
                .count()
                .saturating_sub(per_replica);
            let dedups = q.expr.matches(&dedup).count();
            assert!(
                dedups >= 1 && dedups >= uses,
                "{}: every derived series read through `{dedup} (...)`: {}",
                q.name(),
                q.expr
            );
        }
    }
    assert!(checked >= 30, "{checked} queries over derived families");
}

#[test]
fn the_live_queue_comes_second_and_every_row_has_its_panels() {
    let d = dashboard();
    let rows: Vec<&str> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(rows[0], "Overview");
    assert_eq!(rows[1], "Live queue", "{rows:?}");
    let durations = rows
        .iter()
        .position(|r| r.starts_with("Durations"))
        .unwrap();
    assert!(durations > 1, "the live queue above durations: {rows:?}");
    let titles: BTreeSet<&str> = panels(&d)
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for wanted in [
        "Firing alerts",
        "Unanswered share",
        "Unanswered share by department",
        "Service-level burn rate by department",
        "CPU",
        "Resident memory",
        "Open file descriptors",
        "Uptime",
        "Scrape duration",
        "Samples per scrape",
        "Storage failures",
    ] {
        assert!(titles.contains(wanted), "no panel {wanted:?}: {titles:?}");
    }
}

fn panel<'a>(d: &'a Value, title: &str) -> &'a Value {
    panels(d)
        .into_iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?}"))
}

#[test]
fn heatmaps_count_each_chat_once_and_concurrency_uses_a_long_window() {
    let d = dashboard();
    let config = kit::config();
    for p in panels(&d).into_iter().filter(|p| p["type"] == "heatmap") {
        let title = p["title"].as_str().unwrap();
        assert_eq!(
            p["interval"], config["dashboard"]["heatmapMinInterval"],
            "{title}: a minimum interval"
        );
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            assert!(
                e.contains("increase(")
                    && e.contains("[$__interval]")
                    && !e.contains("$__rate_interval"),
                "{title}: the increase over exactly one step: {e}"
            );
        }
    }
    let little = panel(&d, "Concurrent chats (Little's law)");
    let min = little["interval"].as_str().expect("a minimum interval");
    assert!(seconds(min) >= 900, "{min}: chats last many minutes");
    let e = little["targets"][0]["expr"].as_str().unwrap();
    assert!(e.contains("[$__interval]"), "{e}");
    assert!(
        e.contains("agent_role!=\"none\""),
        "unanswered chats are no agent's load: {e}"
    );
}

#[test]
fn service_level_colours_and_lines_follow_the_chosen_threshold() {
    let d = dashboard();
    let stat = panel(&d, "Answered within $threshold s");
    let refs: Vec<&str> = stat["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["refId"].as_str().unwrap())
        .collect();
    let from_query = stat["transformations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["id"] == "configFromData")
        .expect("colours from a query (Config from query results)");
    let config_ref = from_query["options"]["configRefId"].as_str().unwrap();
    assert!(refs.contains(&config_ref), "{refs:?}");
    assert_eq!(
        from_query["options"]["mappings"][0]["handlerKey"],
        "threshold1"
    );
    let objective = stat["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["refId"] == config_ref)
        .unwrap()["expr"]
        .as_str()
        .unwrap();
    assert!(
        objective.contains("$threshold"),
        "the objective of the chosen threshold: {objective}"
    );
    for (title, line) in [
        ("Answered within $threshold s by department", "objective"),
        ("Wait time p50 / p90 / p99", "threshold"),
        ("Oldest waiting chat by department", "threshold"),
    ] {
        let p = panel(&d, title);
        assert!(
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["refId"] == line),
            "{title}: no {line} line"
        );
        assert!(
            p["fieldConfig"]["overrides"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["matcher"]["options"] == line),
            "{title}: the {line} line is not styled"
        );
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

fn variable<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no variable {name}"))
}

#[test]
fn variables_are_the_documented_ones() {
    let d = dashboard();
    assert_eq!(variable(&d, "datasource")["type"], "datasource");
    assert_eq!(variable(&d, "datasource")["query"], "prometheus");
    for name in ["job", "instance", "department", "agent_role", "threshold"] {
        let v = variable(&d, name);
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
        let v = variable(&d, name);
        assert_eq!(v["multi"], true, "{name} is multi-select");
        assert_eq!(v["includeAll"], true, "{name} has All");
    }
    for name in ["department", "agent_role"] {
        assert_eq!(
            variable(&d, name)["allValue"],
            ".*",
            "{name}: All must include values that appear later"
        );
    }
    let threshold = variable(&d, "threshold");
    assert_eq!(threshold["current"]["value"], "60");
    assert_eq!(threshold["sort"], 3, "numerically");
    let regex = threshold["regex"].as_str().unwrap();
    assert!(
        regex.starts_with("/^") && regex.ends_with("$/"),
        "anchored, so Grafana's search and Prometheus's full match agree: {regex}"
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

#[test]
fn substitution_fills_every_variable() {
    let cases = [
        ("rate(x[$__rate_interval])", None, "rate(x[1m])"),
        (
            "x{le=~\"$threshold(\\\\.0)?\"}",
            None,
            "x{le=~\"60(\\\\.0)?\"}",
        ),
        (
            "x{instance=~\"${instance}\",job=~\"$job\"}",
            None,
            "x{instance=~\"127\\\\.0\\\\.0\\\\.1:9\",job=~\"acquire\"}",
        ),
        ("increase(x[$__range])", None, "increase(x[10m])"),
        ("increase(x[$__interval])", None, "increase(x[15s])"),
        ("increase(x[$__interval])", Some("15m"), "increase(x[900s])"),
    ];
    for (expr, min, want) in cases {
        assert_eq!(substitute(expr, "127.0.0.1:9", min), want, "{expr}");
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
    let selector = substitute(selector.trim(), instance, None);
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

/// The options of the threshold variable: its label values through its regex, applied by
/// Prometheus (`label_replace` matches the whole value, like the anchored regex in Grafana).
fn threshold_options(p: &Prometheus, d: &Value, instance: &str) -> Vec<f64> {
    let v = variable(d, "threshold");
    let query = variable_query(v);
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap();
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let regex = v["regex"].as_str().unwrap();
    let re = &regex[1..regex.len() - 1];
    let q = format!(
        "count by (option) (label_replace({}, \"option\", \"$1\", \"{}\", \"{}\"))",
        substitute(selector.trim(), instance, None),
        label.trim(),
        re.replace('\\', "\\\\")
    );
    let mut options: Vec<f64> = p
        .query(&q)
        .unwrap_or_else(|e| panic!("{q}: {e}"))
        .iter()
        .filter_map(|s| s["metric"]["option"].as_str())
        .map(|o| o.parse().unwrap_or_else(|_| panic!("option {o}")))
        .collect();
    options.sort_by(f64::total_cmp);
    options
}

/// The simulator process, stopped when the test ends early.
struct Simulator(std::process::Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The number after `key` in the simulator's last summary line.
fn summary_count(out: &str, key: &str) -> f64 {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("simulated "))
        .unwrap_or_else(|| panic!("no summary line: {out}"));
    let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

const WAIT_BUCKETS: [f64; 11] = [
    5.0, 10.0, 20.0, 25.0, 40.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
];
const AUTH_FAILURES: usize = 12;
const OVERFLOWING: usize = 3;

#[test]
fn every_panel_shows_finite_values_consistent_with_what_was_posted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exporter.yml");
    // The shortest expiry the exporter allows, so that a lone start expires during the test;
    // buckets of our own (25 and 40 s are no default bounds); room for four departments (99 and
    // the simulator's 12, 15 and 18; `none` takes no room), so that the ones posted later
    // overflow.
    std::fs::write(
        &config,
        format!(
            "queue:\n  expire_after: 1m\nlimits:\n  max_departments: 4\nbuckets:\n  wait_time: {WAIT_BUCKETS:?}\n"
        ),
    )
    .unwrap();
    // The coming hour of the past five weeks in department 99: the forecast panel has data.
    let store = dir.path().join("store");
    common::history::seed(
        &store,
        "99",
        &common::history::coming_hours_of_past_weeks(),
        30,
        &[],
    );
    let exporter = Exporter::spawn(&[
        &format!("--config.file={}", config.display()),
        &format!("--storage.path={}", store.display()),
        &format!("--webhook.token={TOKEN}"),
    ]);
    // What the seeded history counts, before any delivery.
    let seeded = exporter.metrics();
    let target = exporter.base.trim_start_matches("http://").to_owned();
    let post =
        |body: &[u8]| exporter.post(&format!("/webhook?token={TOKEN}"), "application/json", body);
    // A chat that starts and is never heard of again: it feeds the "expired" panel.
    let (status, body) =
        post(br#"{"data": {"id": "lost-1", "department_id": "99"}, "event": "CHAT_ON_START"}"#);
    assert_eq!(status, 200, "{body}");
    let lost_at = Instant::now();

    // The classic server also runs the kit's rules (a copy of the alerts without `for:`), for
    // the firing-alerts panel.
    let alerts: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(kit::repo().join("prometheus/rules/acquire-alerts.yml")).unwrap(),
    )
    .unwrap();
    let mut alerts = alerts;
    for group in alerts["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            rule.as_mapping_mut().unwrap().remove("for");
        }
    }
    let alerts_copy = dir.path().join("acquire-alerts.yml");
    std::fs::write(&alerts_copy, serde_yaml_ng::to_string(&alerts).unwrap()).unwrap();
    let classic = Prometheus::start(
        &format!(
            "{}rule_files:\n  - {}\n  - {}\n",
            scrape_config(&target),
            kit::repo()
                .join("prometheus/rules/acquire-recording.yml")
                .display(),
            alerts_copy.display()
        ),
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
            .env("ACQUIRE_SIMULATOR_TOKEN", TOKEN)
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

    // Once the simulator's four departments are known, three more overflow the cap, and
    // deliveries without the token fail authentication.
    wait_until(
        "the simulator's departments",
        Duration::from_secs(120),
        || {
            let m = exporter.metrics();
            ["12", "15", "18"].iter().all(|d| {
                m.lines().any(|l| {
                    l.starts_with("acquire_chat_duration_seconds_count{")
                        && l.contains(&format!("department=\"{d}\""))
                })
            })
        },
    );
    // A counter's first sample is no increase: the classic server first holds two samples of
    // the counters the next deliveries move.
    for series in [
        r#"acquire_label_overflow_total{label="department"}"#,
        r#"acquire_webhook_rejections_total{reason="unauthorized"}"#,
    ] {
        classic.wait_for(
            &format!("count_over_time({series}[1m]) >= 2"),
            Duration::from_secs(60),
        );
    }
    for i in 0..OVERFLOWING {
        let (status, body) = post(&close_event(
            &format!("overflow-{i}"),
            &format!("7{i}"),
            Some("Operator"),
            "5",
            "60",
        ));
        assert_eq!(status, 200, "{body}");
    }
    for i in 0..AUTH_FAILURES {
        let (status, _) = exporter.post_json(&close_event(
            &format!("no-token-{i}"),
            "12",
            Some("Operator"),
            "5",
            "60",
        ));
        assert_eq!(status, 401);
    }

    // Until the lone chat expired (the exporter checks every 10 s past the 1 min expiry), and the
    // simulator is done; then until both servers scraped the final state.
    wait_until("the lone chat expired", Duration::from_secs(180), || {
        !classic
            .query("acquire_chats_expired_total{department=\"99\"} > 0")
            .unwrap()
            .is_empty()
    });
    assert!(lost_at.elapsed() >= Duration::from_secs(60));
    let status = simulator.0.wait().expect("simulator");
    let out = output.join().unwrap();
    assert!(status.success(), "the simulator failed: {out}");
    assert!(out.contains("done"), "no summary from the simulator: {out}");
    let done = now();
    for p in [&classic, &native] {
        wait_until(
            "a scrape after the traffic",
            Duration::from_secs(60),
            || {
                p.query("timestamp(up)")
                    .unwrap()
                    .first()
                    .is_some_and(|s| value(s) > done + 1.0)
            },
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while classic
        .query(r#"ALERTS{alertstate="firing",alertname=~"AcquireLabelOverflow|AcquireWebhookAuthFailures"}"#)
        .unwrap()
        .len()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the alerts the scenario makes fire did not: {}",
            classic.api("/api/v1/alerts", &[]).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let at = now();
    let metrics = exporter.metrics();

    let d = dashboard();
    let qs = queries(&d);
    assert!(qs.len() >= 50, "{} queries", qs.len());
    let mut failures = Vec::new();
    for q in &qs {
        let expr = substitute(&q.expr, &target, q.min_interval.as_deref());
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
            Ok(r) => {
                for s in &r {
                    let v = value(s);
                    if !v.is_finite() {
                        failures.push(format!(
                            "{} returned {v} for {}: {expr}",
                            q.name(),
                            s["metric"]
                        ));
                    }
                }
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The values, against what was posted.
    let values = |panel: &str, ref_id: &str| -> Vec<(Value, f64)> {
        let q = qs
            .iter()
            .find(|q| q.panel == panel && q.ref_id == ref_id)
            .unwrap_or_else(|| panic!("no query {panel:?} {ref_id}"));
        let server = if q.native_only() { &native } else { &classic };
        query_at(
            server,
            &substitute(&q.expr, &target, q.min_interval.as_deref()),
            at,
        )
        .unwrap()
        .iter()
        .map(|s| (s["metric"].clone(), value(s)))
        .collect()
    };
    let one = |panel: &str, ref_id: &str| -> f64 {
        let v = values(panel, ref_id);
        assert_eq!(v.len(), 1, "{panel:?} {ref_id}: {v:?}");
        v[0].1
    };
    let near = |what: &str, got: f64, want: f64, tolerance: f64| {
        assert!(
            (got - want).abs() <= tolerance,
            "{what}: {got}, expected {want} (± {tolerance})"
        );
    };

    assert_eq!(one("Exporter up", "A"), 1.0);
    let version = values("Exporter version", "A");
    assert_eq!(
        version[0].0["version"],
        env!("CARGO_PKG_VERSION"),
        "{version:?}"
    );

    // Exactly what the test posted on purpose (increase() extrapolates a little).
    near(
        "authentication failures",
        one("Webhook authentication failures", "A"),
        AUTH_FAILURES as f64,
        1.0,
    );
    let overflow = values("Label overflow", "A");
    let by_label = |l: &str| {
        overflow
            .iter()
            .find(|(m, _)| m["label"] == l)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {l}: {overflow:?}"))
    };
    near(
        "department overflow",
        by_label("department"),
        OVERFLOWING as f64,
        1.0,
    );
    assert_eq!(by_label("agent_role"), 0.0);

    // The service level and the unanswered share over the range, against the exporter's totals
    // less the seeded history (counted before the first scrape, so in no rate).
    let posted = |name: &str, matchers: &[&str]| {
        common::total(&metrics, name, matchers) - common::total(&seeded, name, matchers)
    };
    let answered = posted("acquire_chat_wait_time_seconds_count", &[]);
    let within = posted("acquire_chat_wait_time_seconds_bucket", &["le=\"60\""]);
    let unanswered = posted("acquire_chats_unanswered_total", &[]);
    assert!(
        answered > 50.0 && unanswered > 0.0,
        "answered {answered}, unanswered {unanswered}"
    );
    near(
        "answered within 60 s",
        one("Answered within $threshold s", "A"),
        within / (answered + unanswered),
        0.05,
    );
    near(
        "unanswered share",
        one("Unanswered share", "A"),
        unanswered / (answered + unanswered),
        0.05,
    );
    // The objective of 60 s is the configured 80 %.
    assert_eq!(one("Answered within $threshold s", "objective"), 0.8);
    for (_, share) in values("Answered within $threshold s by department", "A")
        .into_iter()
        .chain(values("Unanswered share by department", "A"))
    {
        assert!((0.0..=1.0).contains(&share), "a share of {share}");
    }
    for (_, burn) in values("Service-level burn rate by department", "fast") {
        assert!(
            (0.0..=5.0).contains(&burn),
            "a burn rate of {burn} (at most 1 / 0.2)"
        );
    }

    let p50 = one("Wait time p50 / p90 / p99", "A");
    let p90 = one("Wait time p50 / p90 / p99", "B");
    let p99 = one("Wait time p50 / p90 / p99", "C");
    let native_p90 = one("Wait time p50 / p90 / p99", "native_p90");
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= 1800.0,
        "{p50} {p90} {p99}"
    );
    assert!(
        native_p90 > 0.0 && native_p90 < 1800.0,
        "native wait p90 {native_p90}"
    );
    let d50 = one("Chat duration p50 / p90", "A");
    let d90 = one("Chat duration p50 / p90", "B");
    assert!(0.0 < d50 && d50 <= d90, "durations {d50} {d90}");

    // The per-role table counts the answered chats the exporter holds, per role.
    let per_role = values("Per agent role", "A");
    let table_total: f64 = per_role.iter().map(|(_, v)| v).sum();
    near(
        "chats answered per role",
        table_total,
        answered,
        answered * 0.1 + 2.0,
    );
    for (role, v) in &per_role {
        let r = role["agent_role"].as_str().unwrap();
        let exported = posted(
            "acquire_chat_wait_time_seconds_count",
            &[&format!("agent_role=\"{r}\"")],
        );
        near(&format!("role {r}"), *v, exported, exported * 0.1 + 2.0);
    }
    for (_, share) in values("Per agent role", "D") {
        assert!((0.0..=1.0).contains(&share), "{share}");
    }

    // The live queue passed the simulator's chats through, and the lone chat expired.
    let waited = query_at(
        &classic,
        "max_over_time(sum(acquire_chats_waiting{department=~\"12|15|18\"})[2m:1s])",
        at,
    )
    .unwrap();
    assert!(
        waited.first().map(value).unwrap_or(0.0) >= 1.0,
        "the simulator's chats pass through the live queue: {waited:?}"
    );
    for (_, v) in values("Expired chats per hour", "A") {
        assert!(v >= 0.0, "{v}");
    }
    let expired = common::total(
        &metrics,
        "acquire_chats_expired_total",
        &["department=\"99\""],
    );
    assert_eq!(expired, 1.0, "the lone chat, once");

    // The durable store: what it holds, how fast it commits, and no failure.
    let stored = sample(&metrics, "acquire_exporter_storage_events").expect("storage events");
    assert_eq!(one("Events in the store", "A"), stored);
    let observed = summary_count(&out, "exporter: observed ");
    assert!(
        stored >= observed,
        "the store holds every event the simulator saw observed ({observed}): {stored}"
    );
    let commit_p99 = one("Store commit time p99", "A");
    assert!(
        commit_p99 > 0.0 && commit_p99 <= 1.0,
        "commit p99 {commit_p99}"
    );
    assert_eq!(
        one("Storage failures", "A"),
        0.0,
        "nothing failed to commit"
    );

    // The process and its scrapes.
    assert!(one("CPU", "A") >= 0.0);
    let rss = one("Resident memory", "A");
    assert!(rss > 1e6 && rss < 1e9, "resident memory {rss}");
    let fds = one("Open file descriptors", "A");
    assert!(fds > 0.0 && fds < 1.0, "{fds}");
    let uptime = one("Uptime", "A");
    assert!(uptime > 60.0 && uptime < 3600.0, "uptime {uptime}");
    let samples = one("Samples per scrape", "A");
    assert!(samples > 100.0, "samples per scrape {samples}");
    assert_eq!(
        one("Samples per scrape", "limit"),
        kit::config()["exporter"]["sampleLimit"].as_f64().unwrap()
    );
    assert!(one("Scrape duration", "A") > 0.0);

    // Firing alerts: those the scenario makes fire, for the selected job.
    let firing: BTreeSet<String> = values("Firing alerts", "alerts")
        .iter()
        .map(|(m, _)| m["alertname"].as_str().unwrap().to_owned())
        .collect();
    for name in ["AcquireLabelOverflow", "AcquireWebhookAuthFailures"] {
        assert!(
            firing.contains(name),
            "{name} in the firing-alerts panel: {firing:?}"
        );
    }

    // Exemplars where the dashboard asks for them: native targets on the native server, the
    // heatmaps' classic buckets (OpenMetrics) on the classic one.
    let (start, end) = (format!("{:.0}", at - 300.0), format!("{:.0}", at + 1.0));
    for q in qs.iter().filter(|q| q.target["exemplar"] == true) {
        let server = if q.native_only() { &native } else { &classic };
        let expr = substitute(&q.expr, &target, q.min_interval.as_deref());
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

    // Variables: each label_values query finds values, and the threshold variable offers exactly
    // the exporter's wait bounds, custom ones included.
    for name in ["job", "instance", "department", "agent_role"] {
        let v = variable(&d, name);
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
    assert_eq!(
        threshold_options(&classic, &d, &target),
        WAIT_BUCKETS.to_vec()
    );
    drop(exporter);
}
