//! Sender authentication over HTTP, in every accepted and refused form.

mod common;

use common::{Exporter, fixture, sample};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const TOKEN: &str = "s3cret-token";
const HMAC_SECRET: &str = "hmac-key";

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn a_token_is_accepted_from_the_query_or_a_bearer_header_and_refused_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--webhook.token-file={}", token_file.display()),
    ]);
    let agent = common::agent();
    let body = fixture("chat-close-users-as-json-string.json");
    let json = ("Content-Type", "application/json");
    // (name, path with query, extra headers, expected status)
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>, u16);
    let cases: Vec<Case> = vec![
        ("no_token", "/webhook".into(), vec![], 401),
        (
            "wrong_query_token",
            "/webhook?token=nope".into(),
            vec![],
            401,
        ),
        (
            "wrong_bearer",
            "/webhook".into(),
            vec![("Authorization", "Bearer nope".into())],
            401,
        ),
        (
            "token_prefix_only",
            format!("/webhook?token={}", &TOKEN[..4]),
            vec![],
            401,
        ),
        (
            "query_token",
            format!("/webhook?token={TOKEN}"),
            vec![],
            200,
        ),
        (
            "bearer",
            "/webhook".into(),
            vec![("Authorization", format!("Bearer {TOKEN}"))],
            200,
        ),
    ];
    for (name, path, headers, want) in cases {
        let mut h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        h.push(json);
        let (status, answer) = common::post_with(&agent, &exporter.url(&path), &h, &body);
        assert_eq!(status, want, "{name}: {answer}");
        assert!(
            !answer.contains(TOKEN),
            "{name}: the answer leaks the token"
        );
    }
    let m = exporter.metrics();
    assert_eq!(
        sample(
            &m,
            r#"acquire_webhook_rejections_total{reason="unauthorized"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_wait_time_seconds_count{agent_role="administrator",department="none"}"#
        ),
        Some(1.0)
    );
    drop(exporter);
}

#[test]
fn an_hmac_signature_of_the_raw_body_is_required_when_configured() {
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--webhook.hmac-secret={HMAC_SECRET}"),
    ]);
    let agent = common::agent();
    let body = fixture("chat-close-users-as-json-string.json");
    let good = sign(&body);
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("missing", None, 401),
        ("not_hex", Some("zz".into()), 401),
        ("signature_of_another_body", Some(sign(b"{}")), 401),
        ("uppercase_hex", Some(good.to_uppercase()), 200),
    ];
    for (name, signature, want) in cases {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(s) = &signature {
            h.push(("x-acquire-signature", s.as_str()));
        }
        let (status, answer) = common::post_with(&agent, &exporter.url("/webhook"), &h, &body);
        assert_eq!(status, want, "{name}: {answer}");
    }
    let m = exporter.metrics();
    assert_eq!(
        sample(
            &m,
            r#"acquire_webhook_rejections_total{reason="unauthorized"}"#
        ),
        Some(3.0)
    );
    let logs: Vec<String> = exporter.logs.try_iter().collect();
    assert!(
        logs.iter().all(|l| !l.contains(HMAC_SECRET)),
        "a log line holds the secret"
    );
}
