//! Sender authentication of webhook deliveries: a shared token, an HMAC-SHA256 body signature, or both.
//!
//! Off when nothing is configured. Every comparison runs in constant time, and no error message
//! carries the configured secret or the value a client supplied, so messages can go to the client
//! (a 401 body) and to the log as they are.
//!
//! - Token: `?token=<token>` in the URL's query string (percent-decoded; a `+` stays a `+`, so a
//!   base64 token pasted unencoded still matches) or an `Authorization: Bearer <token>` header. When a
//!   request carries both, the header is the one checked.
//! - Signature: `x-acquire-signature: <hex>`, the HMAC-SHA256 keyed with the configured secret,
//!   64 hex digits in either case, of either of two texts: the raw body as received, or the body
//!   as JavaScript's `JSON.stringify(JSON.parse(body))` writes it again (the vendor's sample signs
//!   `JSON.stringify(req.body)`; see [`js_json`] for exactly what that text is), so a
//!   pretty-printed or `", "`-spaced body signed that way verifies too. Both comparisons are
//!   constant-time; the second is computed only when the first fails. A `sha256=` prefix is
//!   accepted too, as GitHub and several other vendors send it.

use std::fmt;
use std::path::{Path, PathBuf};

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub mod js_json;

/// Header carrying the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "x-acquire-signature";

type HmacSha256 = Hmac<Sha256>;

/// A secret read from a flag, an env var or a file; `Debug` and `Display` print `<redacted>`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret given on the command line or in the environment; refuses an empty one
    /// and one of only whitespace (a blank variable or a stray space is a mistake, not a key).
    pub fn new(s: String) -> Result<Self, AuthConfigError> {
        if s.is_empty() {
            return Err(AuthConfigError::Empty);
        }
        if s.trim().is_empty() {
            return Err(AuthConfigError::Blank);
        }
        Ok(Self(s))
    }

    /// Reads a secret from a file, dropping one trailing newline (`\n` or `\r\n`) as editors and
    /// `echo` add it; refuses a file of only whitespace. Errors name the file, never its content.
    pub fn from_file(path: &Path) -> Result<Self, AuthConfigError> {
        let bytes = std::fs::read(path).map_err(|source| AuthConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut s = String::from_utf8(bytes).map_err(|_| AuthConfigError::NotUtf8 {
            path: path.to_path_buf(),
        })?;
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
        if s.is_empty() {
            return Err(AuthConfigError::EmptyFile {
                path: path.to_path_buf(),
            });
        }
        if s.trim().is_empty() {
            return Err(AuthConfigError::BlankFile {
                path: path.to_path_buf(),
            });
        }
        Ok(Self(s))
    }

    fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a configured secret could not be used; raised at startup.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The flag or env var was set to an empty string.
    #[error("secret is empty")]
    Empty,
    /// The flag or env var holds only whitespace.
    #[error("secret holds only whitespace")]
    Blank,
    /// The secret file could not be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    Read {
        /// The file named by the flag.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The secret file is not UTF-8 text.
    #[error("secret file {} is not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file named by the flag.
        path: PathBuf,
    },
    /// The secret file is empty (or holds only a newline).
    #[error("secret file {} is empty", path.display())]
    EmptyFile {
        /// The file named by the flag.
        path: PathBuf,
    },
    /// The secret file holds only whitespace (spaces, tabs, newlines).
    #[error("secret file {} holds only whitespace", path.display())]
    BlankFile {
        /// The file named by the flag.
        path: PathBuf,
    },
}

/// Why a delivery was refused. Messages are safe to send to the client and to log.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum AuthError {
    /// A token is configured and the request carried none.
    #[error(
        "missing webhook token: put it in the URL as ?token=... or send Authorization: Bearer ..."
    )]
    MissingToken,
    /// The request carried a token that is not the configured one.
    #[error("wrong webhook token")]
    WrongToken,
    /// A signing secret is configured and the request has no signature header.
    #[error("missing x-acquire-signature header")]
    MissingSignature,
    /// The signature header is not 64 hex digits (optionally after `sha256=`).
    #[error("malformed x-acquire-signature header: expected 64 hex digits of HMAC-SHA256")]
    BadSignature,
    /// The signature is well formed but matches neither the body nor its `JSON.stringify` form.
    #[error(
        "x-acquire-signature does not match the request body (neither its bytes nor JSON.stringify of it)"
    )]
    WrongSignature,
}

impl AuthError {
    /// The authentication method that failed, for logs and metrics: `"token"` or `"hmac"`.
    pub fn method(&self) -> &'static str {
        match self {
            Self::MissingToken | Self::WrongToken => "token",
            Self::MissingSignature | Self::BadSignature | Self::WrongSignature => "hmac",
        }
    }
}

/// The sender checks configured for the webhook endpoint.
#[derive(Clone)]
pub struct SenderAuth {
    // Only the token's digest is kept: equal-length digests compare in constant time without
    // revealing the token's length.
    token_digest: Option<[u8; 32]>,
    // Keyed once here; each check clones the keyed state instead of re-deriving the key pads.
    hmac: Option<HmacSha256>,
}

impl SenderAuth {
    /// Builds the checks; with neither secret, every delivery passes.
    pub fn new(token: Option<Secret>, hmac_secret: Option<Secret>) -> Self {
        Self {
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            hmac: hmac_secret.map(|s| {
                HmacSha256::new_from_slice(s.as_bytes())
                    .expect("HMAC-SHA256 accepts keys of any length")
            }),
        }
    }

    /// Whether any check is configured.
    pub fn is_enabled(&self) -> bool {
        self.token_digest.is_some() || self.hmac.is_some()
    }

    /// Checks one delivery: the token (query string or bearer header) and the body signature,
    /// each when configured; both must pass when both are. `query` is the raw query string
    /// without the `?`.
    pub fn check(
        &self,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), AuthError> {
        if let Some(expected) = &self.token_digest {
            let supplied = bearer_token(headers)
                .map(|t| Sha256::digest(t).into())
                .or_else(|| query.and_then(query_token_digest))
                .ok_or(AuthError::MissingToken)?;
            if !bool::from(expected.ct_eq(&supplied)) {
                return Err(AuthError::WrongToken);
            }
        }
        if let Some(mac) = &self.hmac {
            let header = headers
                .get(SIGNATURE_HEADER)
                .ok_or(AuthError::MissingSignature)?;
            let signature = parse_signature(header.as_bytes()).ok_or(AuthError::BadSignature)?;
            let verifies = |text: &[u8]| {
                let mut mac = mac.clone();
                mac.update(text);
                mac.verify_slice(&signature).is_ok()
            };
            let signed = verifies(body)
                || js_json::stringify(body).is_some_and(|restated| verifies(&restated));
            if !signed {
                return Err(AuthError::WrongSignature);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for SenderAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |set: bool| if set { "<redacted>" } else { "<none>" };
        f.debug_struct("SenderAuth")
            .field("token", &redacted(self.token_digest.is_some()))
            .field("hmac_secret", &redacted(self.hmac.is_some()))
            .finish()
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750).
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// SHA-256 of the first `token` parameter's percent-decoded value, decoded straight into the
/// hasher so the hot path allocates nothing.
fn query_token_digest(query: &str) -> Option<[u8; 32]> {
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))?
        .as_bytes();
    if value.is_empty() {
        return None;
    }
    let mut hasher = Sha256::new();
    let mut rest = value;
    while let Some(pos) = rest.iter().position(|b| *b == b'%') {
        hasher.update(&rest[..pos]);
        match rest.get(pos + 1..pos + 3).and_then(hex_pair) {
            Some(byte) => {
                hasher.update([byte]);
                rest = &rest[pos + 3..];
            }
            None => {
                // A `%` not followed by two hex digits stays literal, as browsers treat it.
                hasher.update(b"%");
                rest = &rest[pos + 1..];
            }
        }
    }
    hasher.update(rest);
    Some(hasher.finalize().into())
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

/// The 32 bytes of a signature header: 64 hex digits, optionally after `sha256=`.
fn parse_signature(value: &[u8]) -> Option<[u8; 32]> {
    let value = value.trim_ascii();
    let hex_digits = match value.split_at_checked(7) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case(b"sha256=") => rest,
        _ => value,
    };
    let mut signature = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut signature).ok()?;
    Some(signature)
}

#[cfg(test)]
mod tests {
    use super::AuthError::*;
    use super::*;
    use axum::http::HeaderValue;

    const TOKEN: &str = "s3cr+t/t0ken=";
    const KEY: &str = "signing-key";
    const BODY: &[u8] = br#"{"event":"CHAT_ON_CLOSE","id":"42"}"#;

    fn secret(s: &str) -> Option<Secret> {
        Some(Secret::new(s.to_owned()).expect("non-empty"))
    }

    /// Lower-case hex HMAC-SHA256 of `body` under `key`, computed independently of `check`.
    fn sign(key: &str, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                *name,
                HeaderValue::from_str(value).expect("valid header value"),
            );
        }
        map
    }

    #[test]
    fn token_from_the_query_string() {
        let auth = SenderAuth::new(secret(TOKEN), None);
        let cases = [
            ("percent-encoded", "token=s3cr%2Bt%2Ft0ken%3D", Ok(())),
            ("lower-case escapes", "token=s3cr%2bt%2ft0ken%3d", Ok(())),
            ("pasted unencoded", "token=s3cr+t/t0ken=", Ok(())),
            (
                "among other parameters",
                "a=1&token=s3cr%2Bt/t0ken%3D&b",
                Ok(()),
            ),
            (
                "first token parameter wins",
                "token=no&token=s3cr+t/t0ken=",
                Err(WrongToken),
            ),
            ("wrong token", "token=s3cr+t/t0ken", Err(WrongToken)),
            (
                "plus is not a space",
                "token=s3cr%20t/t0ken=",
                Err(WrongToken),
            ),
            ("empty token", "token=", Err(MissingToken)),
            (
                "other parameter name",
                "tokens=s3cr+t/t0ken=",
                Err(MissingToken),
            ),
            ("no parameters", "", Err(MissingToken)),
        ];
        for (name, query, expected) in cases {
            assert_eq!(
                auth.check(Some(query), &HeaderMap::new(), BODY),
                expected,
                "{name}"
            );
        }
        assert_eq!(auth.check(None, &HeaderMap::new(), BODY), Err(MissingToken));
    }

    #[test]
    fn token_from_the_authorization_header() {
        let auth = SenderAuth::new(secret(TOKEN), None);
        let good_query = Some("token=s3cr+t/t0ken=");
        let cases = [
            ("bearer", None, "Bearer s3cr+t/t0ken=", Ok(())),
            (
                "lower-case scheme, padding",
                None,
                "bearer  s3cr+t/t0ken= ",
                Ok(()),
            ),
            ("wrong token", None, "Bearer s3cr+t", Err(WrongToken)),
            (
                "header wins over the query",
                good_query,
                "Bearer other",
                Err(WrongToken),
            ),
            (
                "basic falls back to the query",
                good_query,
                "Basic dXNlcjpwYXNz",
                Ok(()),
            ),
            ("scheme without a token", None, "Bearer ", Err(MissingToken)),
            (
                "scheme glued to the token",
                None,
                "Bearers3cr+t/t0ken=",
                Err(MissingToken),
            ),
        ];
        for (name, query, header, expected) in cases {
            let hdrs = headers(&[("authorization", header)]);
            assert_eq!(auth.check(query, &hdrs, BODY), expected, "{name}");
        }
    }

    #[test]
    fn query_percent_decoding_keeps_malformed_escapes_literal() {
        let auth = SenderAuth::new(secret("100%zz%4"), None);
        for query in ["token=100%zz%4", "token=100%25zz%254"] {
            assert_eq!(
                auth.check(Some(query), &HeaderMap::new(), BODY),
                Ok(()),
                "{query}"
            );
        }
    }

    #[test]
    fn signature_is_checked_in_every_accepted_form() {
        let auth = SenderAuth::new(None, secret(KEY));
        let lower = sign(KEY, BODY);
        let cases = [
            ("lower-case hex", lower.clone(), Ok(())),
            ("upper-case hex", lower.to_uppercase(), Ok(())),
            ("sha256= prefix", format!("sha256={lower}"), Ok(())),
            (
                "SHA256= prefix",
                format!("SHA256={}", lower.to_uppercase()),
                Ok(()),
            ),
            ("surrounding spaces", format!(" {lower} "), Ok(())),
            (
                "signed with another key",
                sign("other-key", BODY),
                Err(WrongSignature),
            ),
            (
                "signature of another body",
                sign(KEY, b"{}"),
                Err(WrongSignature),
            ),
            ("truncated hex", lower[..62].to_owned(), Err(BadSignature)),
            ("not hex", "zz".to_owned(), Err(BadSignature)),
            ("empty", String::new(), Err(BadSignature)),
            (
                "other algorithm prefix",
                format!("sha1={lower}"),
                Err(BadSignature),
            ),
        ];
        for (name, signature, expected) in cases {
            let hdrs = headers(&[(SIGNATURE_HEADER, &signature)]);
            assert_eq!(auth.check(None, &hdrs, BODY), expected, "{name}");
        }
        assert_eq!(
            auth.check(None, &HeaderMap::new(), BODY),
            Err(MissingSignature)
        );
    }

    #[test]
    fn a_signature_over_json_stringify_of_the_body_verifies() {
        let auth = SenderAuth::new(None, secret(KEY));
        let spaced = br#"{ "event": "CHAT_ON_CLOSE", "id": "4\u0032", "n": 1.0 }"#;
        let restated = br#"{"event":"CHAT_ON_CLOSE","id":"42","n":1}"#;
        type Case<'a> = (&'a str, &'a [u8], String, Result<(), AuthError>);
        let cases: [Case; 4] = [
            ("raw bytes", spaced, sign(KEY, spaced), Ok(())),
            ("JSON.stringify form", spaced, sign(KEY, restated), Ok(())),
            (
                "another text",
                spaced,
                sign(KEY, br#"{"event":"CHAT_ON_CLOSE","id":"42","n":1.0}"#),
                Err(WrongSignature),
            ),
            ("not JSON", b"id=42", sign(KEY, b"{}"), Err(WrongSignature)),
        ];
        for (name, body, signature, expected) in cases {
            let hdrs = headers(&[(SIGNATURE_HEADER, &signature)]);
            assert_eq!(auth.check(None, &hdrs, body), expected, "{name}");
        }
    }

    #[test]
    fn both_checks_must_pass_when_both_are_configured() {
        let auth = SenderAuth::new(secret(TOKEN), secret(KEY));
        let good_sig = sign(KEY, BODY);
        let bad_sig = sign("other-key", BODY);
        let query = Some("token=s3cr+t/t0ken=");
        let cases = [
            ("token and signature", query, &good_sig, Ok(())),
            (
                "token, wrong signature",
                query,
                &bad_sig,
                Err(WrongSignature),
            ),
            (
                "no token, good signature",
                None,
                &good_sig,
                Err(MissingToken),
            ),
            (
                "wrong token, good signature",
                Some("token=x"),
                &good_sig,
                Err(WrongToken),
            ),
        ];
        for (name, query, sig, expected) in cases {
            let hdrs = headers(&[(SIGNATURE_HEADER, sig)]);
            assert_eq!(auth.check(query, &hdrs, BODY), expected, "{name}");
        }
    }
    #[test]
    fn disabled_auth_lets_everything_through() {
        let auth = SenderAuth::new(None, None);
        assert!(!auth.is_enabled());
        assert_eq!(auth.check(None, &HeaderMap::new(), BODY), Ok(()));
        assert!(SenderAuth::new(secret(TOKEN), None).is_enabled());
        assert!(SenderAuth::new(None, secret(KEY)).is_enabled());
    }

    #[test]
    fn errors_name_the_failed_method() {
        let cases = [
            (AuthError::MissingToken, "token"),
            (AuthError::WrongToken, "token"),
            (AuthError::MissingSignature, "hmac"),
            (AuthError::BadSignature, "hmac"),
            (AuthError::WrongSignature, "hmac"),
        ];
        for (error, method) in cases {
            assert_eq!(error.method(), method, "{error:?}");
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_display_or_errors() {
        let auth = SenderAuth::new(secret(TOKEN), secret(KEY));
        let debug = format!("{auth:?}");
        assert_eq!(
            debug,
            r#"SenderAuth { token: "<redacted>", hmac_secret: "<redacted>" }"#
        );
        let s = Secret::new(TOKEN.to_owned()).expect("non-empty");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        let supplied = "Bearer supplied-token-value";
        let errors = [
            auth.check(Some("token=supplied-token-value"), &HeaderMap::new(), BODY),
            auth.check(None, &headers(&[("authorization", supplied)]), BODY),
        ];
        for error in errors {
            let message = error.expect_err("wrong token").to_string();
            assert!(!message.contains("supplied-token-value"), "{message}");
            assert!(!message.contains(TOKEN), "{message}");
        }
    }

    #[test]
    fn secret_new_refuses_empty_and_blank() {
        assert!(matches!(
            Secret::new(String::new()),
            Err(AuthConfigError::Empty)
        ));
        assert_eq!(AuthConfigError::Empty.to_string(), "secret is empty");
        assert!(matches!(
            Secret::new(" \t\n".to_owned()),
            Err(AuthConfigError::Blank)
        ));
    }

    #[test]
    fn secret_from_file_trims_one_trailing_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cases: &[(&str, &[u8], &str)] = &[
            ("no newline", b"abc", "abc"),
            ("one newline", b"abc\n", "abc"),
            ("crlf", b"abc\r\n", "abc"),
            ("only the last of two newlines", b"abc\n\n", "abc\n"),
            ("inner spaces kept", b" a b \n", " a b "),
        ];
        for (name, content, expected) in cases {
            let path = dir.path().join("secret");
            std::fs::write(&path, content).expect("write secret");
            let from_file = Secret::from_file(&path).expect(name);
            let auth = SenderAuth::new(Some(from_file), None);
            // Percent-encode every byte: the query carries newlines and edge spaces a header cannot.
            let encoded: String = expected.bytes().map(|b| format!("%{b:02X}")).collect();
            let ok = auth.check(Some(&format!("token={encoded}")), &HeaderMap::new(), BODY);
            assert_eq!(ok, Ok(()), "{name}");
        }
    }

    #[test]
    fn secret_file_errors_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let binary = dir.path().join("binary");
        std::fs::write(&binary, b"\xff\xfesecret-content").expect("write");
        let blank = dir.path().join("blank");
        std::fs::write(&blank, " \t\r\n\n").expect("write");
        let cases = [
            (
                &missing,
                format!(
                    "cannot read secret file {}: No such file or directory (os error 2)",
                    missing.display()
                ),
            ),
            (&empty, format!("secret file {} is empty", empty.display())),
            (
                &blank,
                format!("secret file {} holds only whitespace", blank.display()),
            ),
            (
                &binary,
                format!("secret file {} is not UTF-8 text", binary.display()),
            ),
        ];
        for (path, expected) in cases {
            let error = Secret::from_file(path).expect_err("must fail");
            assert_eq!(error.to_string(), expected);
        }
    }
}
