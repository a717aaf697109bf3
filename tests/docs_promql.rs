//! Every PromQL query of docs/runbook.md and README.md runs as written on a real Prometheus that
//! scrapes the real exporter and runs the kit's rules: each ```promql block, and each inline code
//! span that is a query (a metric or recording rule with a matcher, a function call, a range or
//! an operator), and each label matcher written alone (run as a selector). Every metric and recording rule a query names must exist: the exporter's own,
//! the recorded ones, Prometheus's (`up`, `scrape_*`, `ALERTS`), or one the exporter does not
//! expose yet but the kit already reads. A query Prometheus refuses (a single backslash in a
//! bucket matcher: "unknown escape sequence") or a misspelt name fails the test.

mod common;
mod kit;

use std::collections::BTreeSet;
use std::time::Duration;

use common::prometheus::{Prometheus, scrape_config};
use common::{Exporter, close_event};

/// Metrics the kit reads that the exporter does not expose yet (the staffing work adds them).
const COMING: &[&str] = &[
    "acquire_chats_abandoned_total",
    "acquire_visitor_patience_seconds",
    "acquire_agents_forecast",
];

/// A query found in a document: where, and its text.
#[derive(Debug, PartialEq)]
struct Snippet {
    file: &'static str,
    line: usize,
    query: String,
}

/// The identifiers of `query` that name series: metrics of the exporter, process and scrape
/// metrics, `up`, `ALERTS`, and recording rules (level:metric:operations). Label values and
/// names in string literals do not count.
fn series_names(query: &str) -> Vec<String> {
    let mut outside = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for c in query.chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, false, _) => {}
            (false, _, '"') => {
                in_string = true;
                outside.push(' ');
            }
            (false, _, c) => outside.push(c),
        }
    }
    outside
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            w.starts_with("acquire_")
                || w.starts_with("process_")
                || w.starts_with("scrape_")
                || *w == "up"
                || *w == "ALERTS"
                || w.matches(':').count() == 2
        })
        .map(str::to_owned)
        .collect()
}

/// Whether an inline code span is a query rather than a name or a label list like
/// `acquire_chats_waiting{department}`: it names a series and has PromQL syntax (a matcher with
/// its operator, a call, a range, or an operator between operands).
fn is_query(span: &str) -> bool {
    if series_names(span).is_empty() || span.contains('…') || span.contains("...") {
        return false;
    }
    let matcher = span.contains('{')
        && ["=\"", "=~\"", "!=\"", "!~\""]
            .iter()
            .any(|op| span.contains(op));
    let call =
        span.contains('(') && !span.contains('{') || span.contains(")") && span.contains('(');
    let range = span.contains('[') && span.contains(']');
    let operator = [
        " / ", " * ", " > ", " < ", " == ", " - ", " + ", " and ", " or ", " offset ",
    ]
    .iter()
    .any(|op| span.contains(op));
    matcher || call || range || operator
}

/// A label matcher written alone, like `le=~"60(\\.0)?"`, as the selector `{...}` Prometheus can
/// parse: a reader types it into a query as written.
fn matcher_fragment(span: &str) -> Option<String> {
    let name_end = span.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    let rest = &span[name_end..];
    let op = ["=~", "!~", "!=", "="]
        .into_iter()
        .find(|op| rest.starts_with(op))?;
    let value = &rest[op.len()..];
    (name_end > 0 && value.len() >= 2 && value.starts_with('"') && value.ends_with('"'))
        .then(|| format!("{{{span}}}"))
}

/// The queries of a Markdown file: ```promql blocks, inline spans that are queries, and label
/// matchers written alone (as a selector).
fn snippets(file: &'static str, text: &str) -> Vec<Snippet> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if line.trim_start().starts_with("```") {
            let lang = line.trim_start().trim_start_matches('`').trim();
            let mut body = Vec::new();
            for (_, l) in lines.by_ref() {
                if l.trim_start().starts_with("```") {
                    break;
                }
                body.push(l);
            }
            if lang == "promql" {
                out.push(Snippet {
                    file,
                    line: i + 1,
                    query: body.join("\n"),
                });
            }
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('`') else { break };
            let span = &after[..end];
            if is_query(span) {
                out.push(Snippet {
                    file,
                    line: i + 1,
                    query: span.to_owned(),
                });
            } else if let Some(selector) = matcher_fragment(span) {
                out.push(Snippet {
                    file,
                    line: i + 1,
                    query: selector,
                });
            }
            rest = &after[end + 1..];
        }
    }
    out
}

#[test]
fn the_snippet_finder_tells_queries_from_names() {
    let text = "A `le=~\"60(\\.0)?\"` alone is a matcher, and\n\
        `acquire_x{le=~\"60(\\.0)?\"}` a query, and so is `rate(acquire_x_total[5m])`.\n\
        `acquire_chats_waiting{department}` lists labels; `acquire_x` is a name; \
        `histogram_quantile(0.9, …) > 120` is elided; `job_department:acquire_x:rate5m offset 1w` runs.\n\
        ```promql\nup{job=\"acquire\"}\n== 0\n```\n```yaml\nup: 1\n```\n";
    let found: Vec<String> = snippets("t.md", text)
        .into_iter()
        .map(|s| s.query)
        .collect();
    assert_eq!(
        found,
        [
            "{le=~\"60(\\.0)?\"}",
            "acquire_x{le=~\"60(\\.0)?\"}",
            "rate(acquire_x_total[5m])",
            "job_department:acquire_x:rate5m offset 1w",
            "up{job=\"acquire\"}\n== 0",
        ]
    );
    assert_eq!(
        series_names("sum by (job) (rate(acquire_y_total{reason=\"acquire_z\"}[5m])) / up"),
        ["acquire_y_total", "up"]
    );
}

#[test]
fn every_promql_query_in_the_runbook_and_the_readme_runs_on_prometheus() {
    let runbook = std::fs::read_to_string(kit::repo().join("docs/runbook.md")).unwrap();
    let readme = std::fs::read_to_string(kit::repo().join("README.md")).unwrap();
    let mut all = snippets("docs/runbook.md", &runbook);
    all.extend(snippets("README.md", &readme));
    let in_runbook = all.iter().filter(|s| s.file == "docs/runbook.md").count();
    assert!(in_runbook >= 40, "{in_runbook} queries in the runbook");

    // A Prometheus with the kit's rules, scraping an exporter with a few chats.
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    for (i, (department, wait)) in [("12", "5"), ("12", "300"), ("13", "null")]
        .iter()
        .enumerate()
    {
        let role = (*wait != "null").then_some("Operator");
        let (status, body) =
            exporter.post_json(&close_event(&format!("c{i}"), department, role, wait, "60"));
        assert_eq!(status, 200, "{body}");
    }
    let target = exporter.base.trim_start_matches("http://").to_owned();
    let rules = kit::repo().join("prometheus/rules");
    let prometheus = Prometheus::start(
        &format!(
            "{}rule_files:\n  - {}\n  - {}\n",
            scrape_config(&target),
            rules.join("acquire-recording.yml").display(),
            rules.join("acquire-alerts.yml").display()
        ),
        &[],
    );
    prometheus.wait_for(
        "job_department:acquire_chats_closed:rate5m",
        Duration::from_secs(60),
    );

    // The names a query may use.
    let mut known: BTreeSet<String> = [
        "up",
        "ALERTS",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
    ]
    .iter()
    .chain(COMING)
    .map(|s| s.to_string())
    .collect();
    for line in exporter.metrics().lines() {
        let name = line
            .strip_prefix("# TYPE ")
            .map(|t| t.split(' ').next().unwrap())
            .unwrap_or_else(|| line.split(['{', ' ']).next().unwrap());
        if !name.is_empty() && !name.starts_with('#') {
            known.insert(name.to_owned());
            known.insert(format!("{name}_total"));
        }
    }
    // Families that appear with their first event (a staffing target, an expiry).
    for name in [
        "acquire_agents_required",
        "acquire_chats_expired_total",
        "acquire_chat_accept_time_seconds_bucket",
    ] {
        known.insert(name.to_owned());
    }
    let recorded = std::fs::read_to_string(rules.join("acquire-recording.yml")).unwrap();
    for line in recorded.lines() {
        if let Some(name) = line.trim().strip_prefix("- record: ") {
            known.insert(name.to_owned());
        }
    }

    let mut failures = Vec::new();
    for s in &all {
        for name in series_names(&s.query) {
            if !known.contains(&name) {
                failures.push(format!(
                    "{}:{}: no series {name} in `{}`",
                    s.file, s.line, s.query
                ));
            }
        }
        if let Err(e) = prometheus.query(&s.query) {
            failures.push(format!("{}:{}: `{}`: {e}", s.file, s.line, s.query));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
