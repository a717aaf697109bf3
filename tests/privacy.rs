//! No personal data leaves a delivery: the names, e-mails and phone numbers of every fixture
//! are searched for in `/metrics` (all three formats), in the logs at trace level and in the
//! SQLite files, after every fixture, valid or not, was posted as JSON and as a form.
//!
//! The promise (README, "Security model"): names, e-mails and phones are never stored, logged
//! or used as labels.

mod common;

use common::{Exporter, OPENMETRICS, PROTOBUF, TEXT};

/// The personal data the fixtures hold (the vendor's examples and ours).
const PERSONAL: &[&str] = &[
    "John Deo",
    "johndeo@acquire.io",
    "David Klok",
    "John@acquire.io",
    "John",
    "Priya Raman",
    "priya.raman@example.com",
    "+44 20 7946 0321",
    "Mateo Fern",
    "mateo.fernandez@example.org",
    "+1 415 555 0187",
    "invoice 8812",
    "Logística",
];

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    for dir in ["", "invalid"] {
        let path = common::fixtures_dir().join(dir);
        let mut names: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        for name in names {
            all.push((name.display().to_string(), std::fs::read(&name).unwrap()));
        }
    }
    all
}

/// A JSON object as a form body, nested values as JSON text (how a form carries `users`).
fn as_form(body: &[u8]) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let fields: Vec<(String, String)> = value
        .as_object()?
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    serde_urlencoded::to_string(fields)
        .ok()
        .map(String::into_bytes)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn names_emails_and_phones_are_never_exposed_logged_or_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = Exporter::spawn(&[
        &format!("--storage.path={}", dir.path().display()),
        "--log.level=trace",
    ]);
    let mut observed = 0;
    for (name, body) in fixtures() {
        let (status, answer) =
            common::post_raw(&exporter.base, "/webhook", "application/JSON", body.clone());
        assert!(status == 200 || status == 400, "{name}: {status} {answer}");
        observed += usize::from(answer.contains("observed"));
        if let Some(form) = as_form(&body) {
            let (status, answer) = common::post_raw(
                &exporter.base,
                "/webhook",
                "application/x-www-form-urlencoded",
                form,
            );
            assert!(
                status == 200 || status == 400,
                "{name} as a form: {status} {answer}"
            );
        }
    }
    assert!(observed >= 4, "the valid fixtures were observed");
    let mut pages = Vec::new();
    for accept in [TEXT, OPENMETRICS, PROTOBUF] {
        let page = exporter.scrape(accept);
        assert_eq!(page.status, 200);
        assert!(
            contains(&page.body, "acquire_chat_wait_time_seconds"),
            "{accept}"
        );
        pages.push((accept, page.body));
    }
    common::signal(exporter.pid(), "TERM");
    assert_eq!(exporter.child.wait().unwrap().code(), Some(0));
    // The log reader ends with the process's stderr.
    let logs: Vec<String> = exporter.logs.iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("webhook rejected")),
        "the refusals were logged"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("\"level\":\"DEBUG\"") || l.contains("\"level\":\"TRACE\"")),
        "the log level is below info"
    );
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    assert!(
        files
            .iter()
            .any(|(name, bytes)| name.ends_with(".sqlite") && contains(bytes, "204222")),
        "the store holds the events (by id)"
    );
    for personal in PERSONAL {
        for (accept, page) in &pages {
            assert!(
                !contains(page, personal),
                "/metrics as {accept} holds {personal:?}"
            );
        }
        for line in &logs {
            assert!(
                !line.contains(personal),
                "a log line holds {personal:?}: {line}"
            );
        }
        for (name, bytes) in &files {
            assert!(!contains(bytes, personal), "{name} holds {personal:?}");
        }
    }
}
