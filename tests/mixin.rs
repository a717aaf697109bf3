//! acquire-mixin, the one configuration of the kit, rendered by the real `jsonnet`: the committed
//! rule files and dashboard are exactly what it generates; the README's example (a job selector, a
//! stricter objective, a runbook elsewhere) generates rules that promtool accepts and that follow
//! the example; two accounts under a job regex stay apart; a burn rate that could never fire is
//! refused; the scrape configs' sample limit is the mixin's; the mixin is a library with the
//! usual fields.

mod common;
mod kit;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kit::{config, generated_files, render_into, repo, run_jsonnet};

/// Files under `dir` of the repository ending in `ext`, as repository paths.
fn committed(dir: &str, ext: &str) -> Vec<PathBuf> {
    std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| p.strip_prefix(repo()).unwrap().to_path_buf())
        .collect()
}

/// Run promtool in `dir` and fail with its output unless it succeeds.
fn promtool_in(dir: &Path, args: &[&str]) {
    let out = Command::new(common::promtool())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every alert of a generated alerts file: (name, expr, labels, runbook_url).
fn alerts_of(path: &Path) -> Vec<(String, String, serde_yaml_ng::Value, String)> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
                r["labels"].clone(),
                r["annotations"]["runbook_url"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_committed_files_are_what_the_mixin_generates() {
    let generated: BTreeSet<PathBuf> = generated_files().into_iter().collect();
    let on_disk: BTreeSet<PathBuf> = committed("prometheus/rules", "yml")
        .into_iter()
        .chain(committed("grafana/dashboards", "json"))
        .collect();
    assert_eq!(
        generated, on_disk,
        "the rule files and dashboards in the repository are the mixin's, no more, no fewer"
    );
    let dir = tempfile::tempdir().unwrap();
    render_into(dir.path(), "import 'acquire-mixin/mixin.libsonnet'", &[]);
    let mut stale = Vec::new();
    for file in &generated {
        let fresh = std::fs::read(dir.path().join(file)).unwrap();
        let kept = std::fs::read(repo().join(file)).unwrap();
        if fresh != kept {
            stale.push(file.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "{} differ from what acquire-mixin generates: run acquire-mixin/generate",
        stale.join(", ")
    );
}

#[test]
fn the_generate_script_writes_what_the_test_compares() {
    let script = std::fs::read_to_string(repo().join("acquire-mixin/generate")).unwrap();
    assert!(
        script.contains("jsonnet -S -m . acquire-mixin/generate.jsonnet"),
        "{script}"
    );
    let generate = std::fs::read_to_string(repo().join("acquire-mixin/generate.jsonnet")).unwrap();
    assert!(generate.contains("(import 'files.libsonnet')(import 'mixin.libsonnet')"));
}

/// The fenced blocks of `lang` in the README section under `heading`.
fn readme_blocks(heading: &str, lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let section = &readme[start + heading.len() + 2..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(i) = rest.find(&format!("```{lang}\n")) {
        let body = &rest[i + lang.len() + 4..];
        let end = body.find("```").expect("a closed block");
        blocks.push(body[..end].to_owned());
        rest = &body[end + 3..];
    }
    blocks
}

#[test]
fn the_readme_example_generates_rules_for_its_job_objective_and_runbook() {
    let heading = "### Changing a threshold or the job selector";
    let example = readme_blocks(heading, "jsonnet");
    assert_eq!(example.len(), 1, "one jsonnet example");
    let name = example[0]
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("// "))
        .expect("the example's first line names its file");
    let shell = readme_blocks(heading, "sh");
    let vendoring = shell
        .iter()
        .find(|b| b.contains("jb install"))
        .expect("how to vendor the mixin with jsonnet-bundler");
    assert!(
        vendoring.contains("github.com/acquire-exporter/acquire-exporter/acquire-mixin"),
        "{vendoring}"
    );
    let jsonnetfile: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("acquire-mixin/jsonnetfile.json")).unwrap(),
    )
    .expect("jsonnetfile.json, for jb");
    assert_eq!(jsonnetfile["version"], 1);
    let generate = shell
        .iter()
        .find(|b| b.contains("jsonnet -J vendor"))
        .expect("how to generate the files");

    // The layout jb leaves (vendor/acquire-mixin), the user's file, the README's commands.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("vendor")).unwrap();
    std::os::unix::fs::symlink(
        repo().join("acquire-mixin"),
        dir.path().join("vendor/acquire-mixin"),
    )
    .unwrap();
    std::fs::write(dir.path().join(name), &example[0]).unwrap();
    kit::jsonnet();
    let out = Command::new("bash")
        .current_dir(dir.path())
        .args(["-euo", "pipefail", "-c", generate])
        .output()
        .expect("run the README's commands");
    assert!(
        out.status.success(),
        "{generate}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    promtool_in(
        dir.path(),
        &[
            "check",
            "rules",
            "prometheus/rules/acquire-alerts.yml",
            "prometheus/rules/acquire-recording.yml",
        ],
    );

    // Every alert reads job support-chat only, and links to the wiki.
    let alerts = alerts_of(&dir.path().join("prometheus/rules/acquire-alerts.yml"));
    assert!(alerts.len() >= 15, "{} alerts", alerts.len());
    for (alert, expr, _, runbook) in &alerts {
        assert!(
            !expr.contains("job=\"acquire\""),
            "{alert}: the default job in {expr}"
        );
        if !expr.contains("job_") {
            assert!(expr.contains("job=\"support-chat\""), "{alert}: {expr}");
        }
        assert_eq!(
            runbook,
            &format!(
                "https://wiki.example.com/acquire/runbook#{}",
                alert.to_lowercase()
            )
        );
    }
    let recording =
        std::fs::read_to_string(dir.path().join("prometheus/rules/acquire-recording.yml")).unwrap();
    assert!(recording.contains("acquire_chats_not_answered_within_30s_per_closed"));
    assert!(recording.contains(r#"le=~"30(\\.0)?""#));
    let dashboard =
        std::fs::read_to_string(dir.path().join("grafana/dashboards/acquire-chats.json")).unwrap();
    assert!(dashboard.contains("https://wiki.example.com/acquire/runbook#"));
    assert!(
        dashboard
            .contains(r#"label_values(acquire_exporter_build_info{job=\"support-chat\"}, job)"#)
    );

    // The example's alerts fire for its job and its objective (promtool unit tests).
    std::fs::copy(
        repo().join("acquire-mixin/tests/readme-example.yml"),
        dir.path().join("readme-example.yml"),
    )
    .unwrap();
    promtool_in(dir.path(), &["test", "rules", "readme-example.yml"]);
}

#[test]
fn two_accounts_under_a_job_regex_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    render_into(
        dir.path(),
        r#"(import 'acquire-mixin/mixin.libsonnet') { _config+:: { selector: 'job=~"acquire-(eu|us)"' } }"#,
        &[],
    );
    std::fs::copy(
        repo().join("acquire-mixin/tests/two-accounts.yml"),
        dir.path().join("two-accounts.yml"),
    )
    .unwrap();
    promtool_in(dir.path(), &["test", "rules", "two-accounts.yml"]);
}

#[test]
fn a_burn_rate_that_could_never_fire_is_refused() {
    // The workbook's 14.4 with an 80 % objective needs 288 % of the chats to fail.
    let code = "(import 'acquire-mixin/mixin.libsonnet') { _config+:: { slo+: { fastBurn+: { burnRate: 14.4 } } } }.prometheusAlerts";
    let out = Command::new(kit::jsonnet())
        .current_dir(repo())
        .args(["-e", code])
        .output()
        .expect("run jsonnet");
    assert!(
        !out.status.success(),
        "a burn rate of 14.4 at 80 % was accepted"
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("could never fire"), "{said}");
    // And 14.4 is fine with a 99 % objective.
    run_jsonnet(&[
        "-e",
        "(import 'acquire-mixin/mixin.libsonnet') { _config+:: { slo+: { objective: 0.99, fastBurn+: { burnRate: 14.4 } } } }.prometheusAlerts",
    ]);
}

#[test]
fn the_scrape_configs_sample_limit_is_the_mixin_s() {
    let limit = config()["exporter"]["sampleLimit"]
        .as_u64()
        .expect("sampleLimit");
    for file in ["prometheus/prometheus.yml", "prometheus/prometheus-v3.yml"] {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(repo().join(file)).unwrap()).unwrap();
        for job in doc["scrape_configs"].as_sequence().unwrap() {
            assert_eq!(
                job["sample_limit"].as_u64(),
                Some(limit),
                "{file}: job {:?}",
                job["job_name"]
            );
        }
    }
}

#[test]
fn the_mixin_is_a_library_with_the_usual_fields() {
    let fields: serde_json::Value = serde_json::from_str(&run_jsonnet(&[
        "-e",
        "local m = import 'acquire-mixin/mixin.libsonnet'; { alerts: std.length(m.prometheusAlerts.groups), rules: std.length(m.prometheusRules.groups), dashboards: std.objectFields(m.grafanaDashboards) }",
    ]))
    .unwrap();
    assert!(fields["alerts"].as_u64().unwrap() >= 4, "{fields}");
    assert!(fields["rules"].as_u64().unwrap() >= 4, "{fields}");
    assert_eq!(
        fields["dashboards"],
        serde_json::json!(["acquire-chats.json"])
    );
}
