//! Tests of the web config: the toolkit's format, its refusals and basic auth.

use super::basic_auth::decode_base64;
use super::*;
use axum::http::header::AUTHORIZATION;

/// Passwords of the users in the fixtures (test-only).
const SCRAPER_PASSWORD: &str = "test-only-password";
const GRAFANA_PASSWORD: &str = "other-test-password";

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/webconfig")
        .join(name)
}

fn basic(user: &str, password: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = format!(
        "Basic {}",
        encode_base64(format!("{user}:{password}").as_bytes())
    );
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&value).expect("ascii"));
    headers
}

/// Reference encoder for the tests, written independently of the decoder under test.
fn encode_base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, group[0], group[1], group[2]]);
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
fn invalid_fixtures_fail_with_the_exact_error() {
    let cases = [
        (
            "invalid-unknown-top-level-key.yml",
            "unknown field `basic_auth_user`, expected one of `tls_server_config`, \
             `http_server_config`, `basic_auth_users`, `rate_limit`",
        ),
        (
            "invalid-unknown-tls-key.yml",
            "tls_server_config: unknown field `certfile`, expected one of `cert_file`, \
             `key_file`, `client_auth_type`, `client_ca_file`, `min_version`, \
             `max_version`, `prefer_server_cipher_suites`, `cert`, `key`, `client_ca`, \
             `cipher_suites`, `curve_preferences`, `client_allowed_sans` at line 2 column 3",
        ),
        (
            "invalid-not-a-mapping.yml",
            "invalid type: sequence, expected a mapping of tls_server_config, \
             http_server_config, basic_auth_users",
        ),
        (
            "invalid-bad-bcrypt-hash.yml",
            "basic_auth_users.scraper: not a bcrypt hash: Invalid hash: the hash format is \
             malformed; expected 60 ASCII bytes",
        ),
        (
            "invalid-bcrypt-cost.yml",
            "basic_auth_users.scraper: bcrypt cost 99 is outside 4..=31",
        ),
        (
            "invalid-user-with-colon.yml",
            "basic_auth_users.scraper:1: a user name cannot contain ':'",
        ),
        (
            "invalid-missing-cert-file.yml",
            "tls_server_config.cert_file: cannot read {dir}/does-not-exist.crt: No such file \
             or directory (os error 2)",
        ),
        (
            "invalid-key-file-not-set.yml",
            "tls_server_config.key_file: missing; TLS needs cert_file and key_file",
        ),
        (
            "invalid-cert-not-pem.yml",
            "tls_server_config.cert_file: {dir}/valid-empty.yml: no PEM certificate found",
        ),
        (
            "invalid-key-does-not-match-cert.yml",
            "tls_server_config.key_file: {dir}/test-only-client.key: cannot serve the \
             certificate in cert_file: keys may not be consistent: KeyMismatch",
        ),
        (
            "invalid-client-auth-type.yml",
            "tls_server_config.client_auth_type: unknown value \"RequireSomeClientCert\"; \
             expected NoClientCert, RequireAndVerifyClientCert or VerifyClientCertIfGiven",
        ),
        (
            "invalid-client-auth-type-unsupported.yml",
            "tls_server_config.client_auth_type: not supported by acquire-exporter (it \
             accepts unverified client certificates); use RequireAndVerifyClientCert",
        ),
        (
            "invalid-client-ca-without-client-auth.yml",
            "tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert; \
             set client_auth_type to RequireAndVerifyClientCert",
        ),
        (
            "invalid-client-auth-without-ca.yml",
            "tls_server_config.client_auth_type: RequireAndVerifyClientCert needs \
             client_ca_file",
        ),
        (
            "invalid-client-ca-not-pem.yml",
            "tls_server_config.client_ca_file: {dir}/test-only-server.key: no PEM \
             certificate found",
        ),
        (
            "invalid-min-version-tls10.yml",
            "tls_server_config.min_version: not supported by acquire-exporter (rustls \
             implements TLS12 and TLS13 only)",
        ),
        (
            "invalid-unknown-tls-version.yml",
            "tls_server_config.max_version: unknown TLS version \"TLS14\"; expected TLS12 \
             or TLS13",
        ),
        (
            "invalid-min-above-max.yml",
            "tls_server_config.min_version: is above max_version",
        ),
        (
            "invalid-cipher-suites.yml",
            "tls_server_config.cipher_suites: not supported by acquire-exporter; rustls's \
             defaults apply",
        ),
        (
            "invalid-inline-cert.yml",
            "tls_server_config.cert: not supported by acquire-exporter; use cert_file",
        ),
        (
            "invalid-header-not-allowed.yml",
            "http_server_config.headers.Server: this header cannot be configured; allowed: \
             Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, \
             X-XSS-Protection, Content-Security-Policy",
        ),
        (
            "invalid-header-value.yml",
            "http_server_config.headers.X-Frame-Options: invalid value \"allow-from\"; \
             expected one of [\"deny\", \"sameorigin\"]",
        ),
        (
            "invalid-rate-limit.yml",
            "rate_limit: not supported by acquire-exporter; rate-limit in a reverse proxy",
        ),
    ];
    let dir = fixture("");
    let dir = dir.to_string_lossy();
    let dir = dir.trim_end_matches('/');
    for (name, expected) in cases {
        let path = fixture(name);
        let error = WebConfig::load(&path).expect_err(name);
        let expected = format!(
            "web config {}: {}",
            path.display(),
            expected.replace("{dir}", dir)
        );
        assert_eq!(error.to_string(), expected, "{name}");
    }
}

#[test]
fn a_missing_config_file_is_named() {
    let path = fixture("does-not-exist.yml");
    let error = WebConfig::load(&path).expect_err("missing");
    let expected = format!(
        "web config {}: cannot read: No such file or directory (os error 2)",
        path.display()
    );
    assert_eq!(error.to_string(), expected);
}

#[test]
fn valid_fixtures_load() {
    struct Case {
        name: &'static str,
        tls: bool,
        basic_auth: bool,
        headers: &'static [(&'static str, &'static str)],
    }
    let cases = [
        Case {
            name: "valid-tls.yml",
            tls: true,
            basic_auth: true,
            headers: &[
                ("strict-transport-security", "max-age=31536000"),
                ("x-content-type-options", "nosniff"),
                ("x-frame-options", "deny"),
            ],
        },
        Case {
            name: "valid-mtls.yml",
            tls: true,
            basic_auth: false,
            headers: &[],
        },
        Case {
            name: "valid-mtls-optional.yml",
            tls: true,
            basic_auth: false,
            headers: &[],
        },
        Case {
            name: "valid-basic-auth-only.yml",
            tls: false,
            basic_auth: true,
            headers: &[],
        },
        Case {
            name: "valid-empty.yml",
            tls: false,
            basic_auth: false,
            headers: &[],
        },
        Case {
            name: "valid-blank-values.yml",
            tls: false,
            basic_auth: false,
            headers: &[],
        },
    ];
    for case in cases {
        let config = WebConfig::load(&fixture(case.name)).expect(case.name);
        let acceptor = config.tls_acceptor().expect(case.name);
        assert_eq!(acceptor.is_some(), case.tls, "{}", case.name);
        assert_eq!(
            config.basic_auth_enabled(),
            case.basic_auth,
            "{}",
            case.name
        );
        let headers: Vec<(&str, &str)> = config
            .response_headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().expect("ascii")))
            .collect();
        assert_eq!(headers, case.headers, "{}", case.name);
    }
}

#[test]
fn paths_resolve_against_the_config_file_folder_unless_absolute() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("web.yml");
    let absolute_cert = fixture("test-only-server.crt");
    std::fs::copy(
        fixture("test-only-server.key"),
        dir.path().join("server.key"),
    )
    .expect("copy key");
    let yaml = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: server.key\n",
        absolute_cert.display()
    );
    std::fs::write(&config, yaml).expect("write config");
    let loaded = WebConfig::load(&config).expect("absolute cert, relative key");
    assert!(loaded.tls_acceptor().expect("acceptor").is_some());
}

#[test]
fn tls_acceptor_reads_the_files_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    for file in [
        "valid-tls.yml",
        "test-only-server.crt",
        "test-only-server.key",
    ] {
        std::fs::copy(fixture(file), dir.path().join(file)).expect("copy");
    }
    let config = WebConfig::load(&dir.path().join("valid-tls.yml")).expect("load");
    std::fs::remove_file(dir.path().join("test-only-server.key")).expect("remove");
    let Err(error) = config.tls_acceptor() else {
        panic!("the key was removed after load");
    };
    let expected = format!(
        "web config {}: tls_server_config.key_file: cannot read {}: No such file or \
         directory (os error 2)",
        dir.path().join("valid-tls.yml").display(),
        dir.path().join("test-only-server.key").display()
    );
    assert_eq!(error.to_string(), expected);
}

#[test]
fn basic_auth_accepts_the_configured_users_only() {
    let config = WebConfig::load(&fixture("valid-tls.yml")).expect("load");
    let header = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("ascii"));
        headers
    };
    let long = "x".repeat(BCRYPT_MAX_PASSWORD + 1);
    let cases = [
        (
            "first user",
            basic("scraper", SCRAPER_PASSWORD),
            BasicAuthOutcome::Allowed,
        ),
        (
            "second user",
            basic("grafana", GRAFANA_PASSWORD),
            BasicAuthOutcome::Allowed,
        ),
        (
            "wrong password",
            basic("scraper", "wrong"),
            BasicAuthOutcome::Denied,
        ),
        (
            "other user's password",
            basic("grafana", SCRAPER_PASSWORD),
            BasicAuthOutcome::Denied,
        ),
        (
            "unknown user",
            basic("nobody", SCRAPER_PASSWORD),
            BasicAuthOutcome::Denied,
        ),
        (
            "user name case matters",
            basic("Scraper", SCRAPER_PASSWORD),
            BasicAuthOutcome::Denied,
        ),
        (
            "empty password",
            basic("scraper", ""),
            BasicAuthOutcome::Denied,
        ),
        (
            "password past 72 bytes",
            basic("scraper", &long),
            BasicAuthOutcome::Denied,
        ),
        ("no header", HeaderMap::new(), BasicAuthOutcome::Denied),
        (
            "bearer scheme",
            header("Bearer abc"),
            BasicAuthOutcome::Denied,
        ),
        ("not base64", header("Basic %%%%"), BasicAuthOutcome::Denied),
        (
            "no colon",
            header("Basic c2NyYXBlcg=="),
            BasicAuthOutcome::Denied,
        ),
        (
            "empty credentials",
            header("Basic "),
            BasicAuthOutcome::Denied,
        ),
    ];
    for (name, headers, expected) in &cases {
        assert_eq!(config.check_basic_auth(headers), *expected, "{name}");
    }
    let lower_scheme = format!(
        "basic {}",
        encode_base64(format!("scraper:{SCRAPER_PASSWORD}").as_bytes())
    );
    assert_eq!(
        config.check_basic_auth(&header(&lower_scheme)),
        BasicAuthOutcome::Allowed,
        "lower-case scheme"
    );
}

#[tokio::test]
async fn async_basic_auth_agrees_with_the_blocking_check() {
    let config = WebConfig::load(&fixture("valid-basic-auth-only.yml")).expect("load");
    let cases = [
        (
            basic("scraper", SCRAPER_PASSWORD),
            BasicAuthOutcome::Allowed,
        ),
        (basic("scraper", "wrong"), BasicAuthOutcome::Denied),
        (basic("nobody", SCRAPER_PASSWORD), BasicAuthOutcome::Denied),
        (HeaderMap::new(), BasicAuthOutcome::Denied),
    ];
    for (headers, expected) in &cases {
        assert_eq!(config.check_basic_auth_async(headers).await, *expected);
    }
}

#[tokio::test]
async fn a_check_from_a_client_takes_its_lane_and_leaves_none_behind() {
    let config = WebConfig::load(&fixture("valid-basic-auth-only.yml")).expect("load");
    let auth = config.basic_auth.as_ref().expect("users configured");
    let peers: [std::net::IpAddr; 3] = [
        "192.0.2.7".parse().unwrap(),
        "2001:db8::1".parse().unwrap(),
        "::ffff:192.0.2.7".parse().unwrap(),
    ];
    assert_eq!(
        Client::of(peers[0]),
        Client::of(peers[2]),
        "mapped IPv4 is IPv4"
    );
    assert_eq!(
        Client::of(peers[1]),
        Client::of("2001:db8::ffff:1".parse().unwrap()),
        "one IPv6 /64 is one client"
    );
    for peer in peers {
        for (headers, expected) in [
            (basic("scraper", "wrong"), BasicAuthOutcome::Denied),
            (
                basic("scraper", SCRAPER_PASSWORD),
                BasicAuthOutcome::Allowed,
            ),
        ] {
            assert_eq!(
                config.check_basic_auth_from(&headers, Some(peer)).await,
                expected
            );
        }
    }
    assert!(
        auth.lanes.lock().expect("lock").is_empty(),
        "the lanes of finished checks are forgotten"
    );
    // A check given up while it waits leaves nothing behind either.
    let gate = auth
        .bcrypt_gate
        .clone()
        .acquire_owned()
        .await
        .expect("gate");
    let other = basic("scraper", "other");
    let waiting = config.check_basic_auth_from(&other, Some(peers[0]));
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), waiting)
            .await
            .is_err()
    );
    drop(gate);
    assert!(auth.lanes.lock().expect("lock").is_empty());
}

#[test]
fn basic_auth_is_not_required_without_users() {
    for name in [
        "valid-empty.yml",
        "valid-blank-values.yml",
        "valid-mtls.yml",
    ] {
        let config = WebConfig::load(&fixture(name)).expect(name);
        assert_eq!(
            config.check_basic_auth(&HeaderMap::new()),
            BasicAuthOutcome::NotRequired,
            "{name}"
        );
    }
    assert_eq!(
        WebConfig::default().check_basic_auth(&HeaderMap::new()),
        BasicAuthOutcome::NotRequired
    );
}

#[test]
fn only_successes_are_cached_and_the_cache_is_bounded() {
    let config = WebConfig::load(&fixture("valid-tls.yml")).expect("load");
    let auth = config.basic_auth.as_ref().expect("users configured");
    let cached = || auth.cache.lock().expect("lock").entries.len();
    config.check_basic_auth(&basic("scraper", "wrong"));
    config.check_basic_auth(&basic("nobody", "wrong"));
    assert_eq!(cached(), 0, "failures are not cached");
    config.check_basic_auth(&basic("scraper", SCRAPER_PASSWORD));
    config.check_basic_auth(&basic("scraper", SCRAPER_PASSWORD));
    assert_eq!(cached(), 1, "one entry per credential");
    let key = auth.cache_key("scraper", SCRAPER_PASSWORD.as_bytes());
    assert!(auth.cached(&key));
    assert!(!auth.cached(&auth.cache_key("scrape", b"rtest-only-password")));
    for i in 0..AUTH_CACHE_CAPACITY * 2 {
        auth.remember(auth.cache_key(&format!("user{i}"), b"pw"));
    }
    assert_eq!(cached(), AUTH_CACHE_CAPACITY);
    assert!(!auth.cached(&key), "oldest entries are evicted");
    assert_eq!(
        config.check_basic_auth(&basic("scraper", SCRAPER_PASSWORD)),
        BasicAuthOutcome::Allowed,
        "an evicted credential is verified again"
    );
    assert!(auth.cached(&key), "and cached again");
}

#[test]
fn debug_output_leaves_out_hashes() {
    let config = WebConfig::load(&fixture("valid-basic-auth-only.yml")).expect("load");
    let debug = format!("{config:?}");
    assert!(debug.contains("\"scraper\""), "{debug}");
    assert!(!debug.contains("$2y$"), "{debug}");
}

#[test]
fn base64_decoding_round_trips_and_rejects_malformed_input() {
    for len in 0..12 {
        let input: Vec<u8> = (0..len).map(|i| (i * 37 + 200) as u8).collect();
        let encoded = encode_base64(&input);
        let decoded = decode_base64(encoded.as_bytes());
        if len == 0 {
            assert_eq!(decoded, None, "empty");
        } else {
            assert_eq!(decoded.as_deref(), Some(&input[..]), "{encoded}");
        }
    }
    let malformed = ["abc", "ab=c", "a===", "ab==cd==", "ab-_", "YWJj\n", "=abc"];
    for input in malformed {
        assert_eq!(decode_base64(input.as_bytes()), None, "{input:?}");
    }
}
