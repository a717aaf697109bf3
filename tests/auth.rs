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

#[test]
fn basic_auth_from_the_web_config_guards_metrics_but_not_the_webhook() {
    let config = common::fixtures_dir().join("webconfig/valid-basic-auth-only.yml");
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--web.config.file={}", config.display()),
    ]);
    let (status, _) = common::get(&exporter.url("/metrics"));
    assert_eq!(status, 401, "no credentials");
    let wrong = format!("Basic {}", base64("scraper:wrong"));
    assert_eq!(
        common::get_with(&exporter.url("/metrics"), &[("Authorization", &wrong)]).0,
        401
    );
    let right = format!("Basic {}", base64("scraper:test-only-password"));
    let (status, body) = common::get_with(&exporter.url("/metrics"), &[("Authorization", &right)]);
    assert_eq!(status, 200);
    assert!(body.contains("acquire_exporter_build_info"));
    assert_eq!(
        common::get(&exporter.url("/")).0,
        401,
        "the landing page too"
    );
    assert_eq!(
        common::get(&exporter.url("/-/healthy")).0,
        200,
        "probes stay open"
    );
    assert_eq!(
        exporter
            .post_json(&fixture("chat-close-users-as-json-string.json"))
            .0,
        200,
        "the webhook has its own auth"
    );
}

fn base64(s: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
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

#[test]
fn tls_from_the_web_config_serves_https_only() {
    let config = common::fixtures_dir().join("webconfig/valid-tls.yml");
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--web.config.file={}", config.display()),
    ]);
    let addr = exporter.base.trim_start_matches("http://").to_owned();
    // A plain HTTP request gets no HTTP answer from a TLS listener.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP was served"
    );
    let said = https(
        &addr,
        "GET /-/healthy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(
        said.contains("HTTP/1.1 200") && said.contains("Healthy"),
        "{said}"
    );
}

/// One request over TLS with `openssl s_client`, trusting the test-only CA; what came back.
fn https(addr: &str, request: &str) -> String {
    use std::io::Write;
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", addr, "-CAfile"])
        .arg(common::fixtures_dir().join("webconfig/test-only-ca.crt"))
        .args(["-verify_return_error", "-brief", "-ign_eof"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(request.as_bytes())?;
            child.wait_with_output()
        })
        .expect("openssl s_client runs");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.starts_with("HTTP/1.1 "),
        "no HTTP answer over TLS:\n{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

#[test]
fn tls_and_basic_auth_together_guard_metrics_over_https_only() {
    let config = common::fixtures_dir().join("webconfig/valid-tls.yml");
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--web.config.file={}", config.display()),
    ]);
    let addr = exporter.base.trim_start_matches("http://").to_owned();
    let get = |path: &str, authorization: Option<&str>| {
        let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        https(
            &addr,
            &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    let status = |answer: &str| answer.get(9..12).unwrap_or("").to_owned();
    let right = format!("Basic {}", base64("scraper:test-only-password"));
    let wrong = format!("Basic {}", base64("scraper:wrong"));
    let other_user = format!("Basic {}", base64("grafana:other-test-password"));
    // (name, path, Authorization, status)
    let cases = [
        ("metrics_without_credentials", "/metrics", None, "401"),
        (
            "metrics_wrong_password",
            "/metrics",
            Some(wrong.as_str()),
            "401",
        ),
        (
            "metrics_right_password",
            "/metrics",
            Some(right.as_str()),
            "200",
        ),
        (
            "metrics_second_user",
            "/metrics",
            Some(other_user.as_str()),
            "200",
        ),
        ("landing_page_without_credentials", "/", None, "401"),
        ("health_stays_open", "/-/healthy", None, "200"),
        ("readiness_stays_open", "/-/ready", None, "200"),
    ];
    for (name, path, authorization, want) in cases {
        let answer = get(path, authorization);
        assert_eq!(status(&answer), want, "{name}: {answer}");
        if want == "200" && path == "/metrics" {
            assert!(answer.contains("acquire_exporter_build_info"), "{name}");
        }
    }
    let body = fixture("chat-close-users-as-json-string.json");
    let post = format!(
        "POST /webhook HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        String::from_utf8(body).unwrap()
    );
    let answer = https(&addr, &post);
    assert_eq!(
        status(&answer),
        "200",
        "the webhook has its own auth: {answer}"
    );
    let answer = get("/metrics", Some(&right));
    assert!(
        answer.contains(
            r#"acquire_chat_wait_time_seconds_count{agent_role="administrator",department="none"} 1"#
        ),
        "{answer}"
    );
    // A plain-HTTP client with the right password gets no page.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {right}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("acquire_exporter_build_info"),
        "plain HTTP served the metrics"
    );
}

/// `acquire-exporter healthcheck` with `args` (and `env`): its exit code and what it printed.
fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .arg("healthcheck")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_container_health_check_speaks_tls_and_verifies_the_certificate() {
    let config = common::fixtures_dir().join("webconfig/valid-tls.yml");
    // On every address, so that 127.0.0.2 (a name the certificate does not give) reaches it.
    let exporter = Exporter::spawn_on(
        "0.0.0.0:0",
        &[
            "--storage.in-memory",
            &format!("--web.config.file={}", config.display()),
        ],
    );
    let port = exporter.port();
    let ca = common::fixtures_dir().join("webconfig/test-only-ca.crt");
    let ca = format!("--ca-file={}", ca.display());
    let https = |host: &str| format!("--url=https://{host}:{port}/-/healthy");

    // The certificate names localhost and 127.0.0.1, signed by the test-only authority.
    for host in ["localhost", "127.0.0.1"] {
        assert_eq!(
            healthcheck(&[&https(host), &ca], &[]),
            (Some(0), String::new())
        );
    }
    // Not signed by an authority the system trusts.
    let (code, said) = healthcheck(&[&https("localhost")], &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("unhealthy") && said.contains("certificate"),
        "{said}"
    );
    // Signed, but for another name.
    let (code, said) = healthcheck(&[&https("127.0.0.2"), &ca], &[]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("certificate"), "{said}");
    // Encrypted without checks: the usual check of 127.0.0.1 with a certificate for the public
    // name.
    assert_eq!(
        healthcheck(&[&https("127.0.0.2"), "--insecure-skip-verify"], &[]).0,
        Some(0)
    );
    // Plain HTTP gets no answer from a TLS listener.
    let plain = format!("--url=http://127.0.0.1:{port}/-/healthy");
    assert_eq!(healthcheck(&[&plain], &[]).0, Some(1));
    // The URL and the authority from the environment, as a container sets them.
    let url = format!("https://localhost:{port}/-/healthy");
    let ca_path = common::fixtures_dir().join("webconfig/test-only-ca.crt");
    let env = [
        ("ACQUIRE_EXPORTER_HEALTHCHECK_URL", url.as_str()),
        (
            "ACQUIRE_EXPORTER_HEALTHCHECK_CA_FILE",
            ca_path.to_str().unwrap(),
        ),
    ];
    assert_eq!(healthcheck(&[], &env).0, Some(0));
    drop(exporter);
    // Nobody listening.
    let (code, said) = healthcheck(&[&https("localhost"), &ca], &[]);
    assert_eq!(code, Some(1));
    assert!(said.contains("unhealthy"), "{said}");
}
