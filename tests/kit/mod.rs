//! The mixin from the tests: its configuration and its files, rendered by the real `jsonnet`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The jsonnet binary; the tests that need it fail (never skip) without it.
pub fn jsonnet() -> &'static str {
    let found = Command::new("jsonnet").arg("--version").output().is_ok();
    assert!(
        found,
        "jsonnet is not installed: apt-get install -y jsonnet (scripts/test does it)"
    );
    "jsonnet"
}

/// Run jsonnet from the repository's root with `args`; its standard output.
pub fn run_jsonnet(args: &[&str]) -> String {
    let out = Command::new(jsonnet())
        .current_dir(repo())
        .args(args)
        .output()
        .expect("run jsonnet");
    assert!(
        out.status.success(),
        "jsonnet {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The mixin's `_config`, as JSON.
pub fn config() -> serde_json::Value {
    let text = run_jsonnet(&["-e", "(import 'acquire-mixin/mixin.libsonnet')._config"]);
    serde_json::from_str(&text).expect("the config as JSON")
}

/// The committed files the mixin generates: paths under the repository.
pub fn generated_files() -> Vec<PathBuf> {
    let text = run_jsonnet(&[
        "-e",
        "std.objectFields(import 'acquire-mixin/generate.jsonnet')",
    ]);
    let names: Vec<String> = serde_json::from_str(&text).expect("file names");
    names.into_iter().map(PathBuf::from).collect()
}

/// Render `mixin` (jsonnet code) with files.libsonnet into `dir`, as `jsonnet -S -m` does.
pub fn render_into(dir: &Path, mixin: &str, jpath: &[&Path]) {
    for sub in ["prometheus/rules", "grafana/dashboards"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let code = format!("(import 'acquire-mixin/files.libsonnet')({mixin})");
    let mut cmd = Command::new(jsonnet());
    cmd.current_dir(repo()).arg("-J").arg(repo());
    for p in jpath {
        cmd.arg("-J").arg(p);
    }
    let out = cmd
        .args(["-S", "-m"])
        .arg(dir)
        .args(["-e", &code])
        .output()
        .expect("run jsonnet");
    assert!(
        out.status.success(),
        "jsonnet: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `expr` with each Grafana variable (`$name`, `${name}`, `${name:format}`) replaced by
/// `value_of(name)`.
pub fn substitute_with(expr: &str, value_of: impl Fn(&str) -> String) -> String {
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
