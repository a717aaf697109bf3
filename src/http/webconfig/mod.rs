//! `--web.config.file`: TLS, response headers and basic auth, in the file format of Prometheus's
//! exporter-toolkit (`docs/web-configuration.md` in prometheus/exporter-toolkit), so operators
//! reuse the files they already write for node_exporter and friends.
//!
//! Supported:
//! - `tls_server_config`: `cert_file`, `key_file` (PEM; PKCS#8, PKCS#1 or SEC1 keys),
//!   `client_auth_type` (`NoClientCert`, `RequireAndVerifyClientCert`, `VerifyClientCertIfGiven`),
//!   `client_ca_file`, `min_version` and `max_version` (`TLS12`, `TLS13`),
//!   `prefer_server_cipher_suites`. Relative paths resolve against the config file's folder.
//! - `http_server_config`: `headers` (the toolkit's five security headers, with its value checks);
//!   `http2` is accepted and ignored: this server speaks HTTP/1.1 only and offers only `http/1.1`
//!   in ALPN.
//! - `basic_auth_users`: user name to bcrypt hash (`htpasswd -nBC 10 "" | tr -d ':\n'`).
//!
//! Refused with an error naming the field: the inline `cert`, `key` and `client_ca`,
//! `cipher_suites`, `curve_preferences`, `client_allowed_sans`, the client auth types that accept
//! unverified certificates, TLS 1.0 and 1.1 (rustls does not implement them), and `rate_limit`.
//! Blank values count as unset, as in the toolkit. Unlike the toolkit, the file is read once at
//! startup; [`WebConfig::tls_acceptor`] re-reads the certificate files when called again.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_yaml_ng::Value;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::version::{TLS12, TLS13};
use tokio_rustls::rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

/// Successful basic-auth verifications remembered, so a scrape every 15 s skips bcrypt.
const AUTH_CACHE_CAPACITY: usize = 64;

/// Longest password bcrypt can tell apart; longer ones are refused, as Go's bcrypt does.
const BCRYPT_MAX_PASSWORD: usize = 72;

/// Costs bcrypt accepts.
const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// Headers the toolkit lets a config set, with the values it allows (empty: any value).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Why a web config file cannot be used. Every message names the file, and the field when there
/// is one.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The config file itself cannot be read.
    #[error("web config {}: cannot read: {source}", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not YAML, or not the toolkit's schema (unknown key, wrong type); the parser's message
    /// names the field and the line.
    #[error("web config {}: {message}", file.display())]
    Syntax {
        /// The config file.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A field holds a value this exporter cannot use.
    #[error("web config {}: {field}: {message}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The field, as a dotted path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A field of the toolkit's format that this exporter does not implement.
    #[error("web config {}: {field}: not supported by acquire-exporter{hint}", file.display())]
    Unsupported {
        /// The config file.
        file: PathBuf,
        /// The field, as a dotted path.
        field: &'static str,
        /// What to do instead, starting with "; " (or empty).
        hint: &'static str,
    },
    /// A file named by a field cannot be read.
    #[error("web config {}: {field}: cannot read {}: {source}", file.display(), path.display())]
    ReadReferenced {
        /// The config file.
        file: PathBuf,
        /// The field naming the file.
        field: &'static str,
        /// The file named, resolved against the config file's folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file named by a field has unusable content.
    #[error("web config {}: {field}: {}: {message}", file.display(), path.display())]
    BadReferenced {
        /// The config file.
        file: PathBuf,
        /// The field naming the file.
        field: &'static str,
        /// The file named, resolved against the config file's folder.
        path: PathBuf,
        /// What is wrong with its content.
        message: String,
    },
}

/// The answer to a request for a page behind basic auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicAuthOutcome {
    /// Valid credentials for a configured user.
    Allowed,
    /// No users are configured: serve the request.
    NotRequired,
    /// Missing, malformed or wrong credentials: answer 401 with `WWW-Authenticate: Basic`.
    Denied,
}

/// A loaded and validated `--web.config.file`. The default is the empty config: plain HTTP, no
/// extra headers, no authentication.
#[derive(Default)]
pub struct WebConfig {
    file: PathBuf,
    tls: Option<TlsSettings>,
    headers: Vec<(HeaderName, HeaderValue)>,
    basic_auth: Option<BasicAuth>,
}

struct TlsSettings {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_auth: ClientAuth,
    versions: Vec<&'static SupportedProtocolVersion>,
    prefer_server_cipher_suites: bool,
}

enum ClientAuth {
    NoClientCert,
    Verify { ca_file: PathBuf, required: bool },
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of tls_server_config, http_server_config, basic_auth_users"
)]
struct RawConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rate_limit: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of TLS settings")]
struct RawTls {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    // Part of the toolkit's format but not implemented here: parsed only to refuse them by name.
    #[serde(default)]
    cert: Option<Value>,
    #[serde(default)]
    key: Option<Value>,
    #[serde(default)]
    client_ca: Option<Value>,
    #[serde(default)]
    cipher_suites: Option<Value>,
    #[serde(default)]
    curve_preferences: Option<Value>,
    #[serde(default)]
    client_allowed_sans: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of HTTP settings")]
struct RawHttp {
    // Accepted for compatibility and ignored: HTTP/1.1 is all this server speaks.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

impl WebConfig {
    /// Reads and validates a web config file, including the certificate, key and CA files it
    /// names, so a bad file fails at startup (and in `--check-config`) rather than on the first
    /// connection.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig =
            serde_yaml_ng::from_str(&text).map_err(|e| WebConfigError::Syntax {
                file: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let v = Validator { file: path };
        if is_set(raw.rate_limit.as_ref()) {
            return Err(v.unsupported("rate_limit", "; rate-limit in a reverse proxy"));
        }
        let config = Self {
            file: path.to_path_buf(),
            tls: raw
                .tls_server_config
                .map(|t| v.tls(t))
                .transpose()?
                .flatten(),
            headers: v.headers(raw.http_server_config.unwrap_or_default())?,
            basic_auth: v.basic_auth(raw.basic_auth_users.unwrap_or_default())?,
        };
        config.tls_acceptor()?;
        Ok(config)
    }

    /// A TLS acceptor when TLS is configured, `None` for plain HTTP. Each call reads the
    /// certificate, key and CA files again, so calling it after a renewal picks up the new files.
    /// The acceptor offers only `http/1.1` in ALPN.
    pub fn tls_acceptor(&self) -> Result<Option<TlsAcceptor>, WebConfigError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let v = Validator { file: &self.file };
        let provider = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&tls.versions)
            .map_err(|e| v.invalid("tls_server_config", e))?;
        let builder = match &tls.client_auth {
            ClientAuth::NoClientCert => builder.with_no_client_auth(),
            ClientAuth::Verify { ca_file, required } => {
                let field = "tls_server_config.client_ca_file";
                let mut roots = RootCertStore::empty();
                for ca in v.certificates(field, ca_file)? {
                    roots
                        .add(ca)
                        .map_err(|e| v.bad_referenced(field, ca_file, e))?;
                }
                let mut verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                if !required {
                    verifier = verifier.allow_unauthenticated();
                }
                let verifier = verifier
                    .build()
                    .map_err(|e| v.bad_referenced(field, ca_file, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = v.certificates("tls_server_config.cert_file", &tls.cert_file)?;
        let key = v.private_key(&tls.key_file)?;
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            v.bad_referenced(
                "tls_server_config.key_file",
                &tls.key_file,
                format!("cannot serve the certificate in cert_file: {e}"),
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ignore_client_order = tls.prefer_server_cipher_suites;
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }

    /// Whether `basic_auth_users` names at least one user.
    pub fn basic_auth_enabled(&self) -> bool {
        self.basic_auth.is_some()
    }

    /// Checks a request's `Authorization: Basic` header against `basic_auth_users`.
    ///
    /// A success is remembered (keyed by a keyed hash of user and password, compared in constant
    /// time), so repeated scrapes cost microseconds; anything else runs bcrypt, which takes
    /// tens of milliseconds at cost 10 and blocks the calling thread meanwhile: from async code
    /// prefer [`WebConfig::check_basic_auth_async`]. An unknown user costs the same bcrypt as a
    /// known one, so timing does not reveal user names.
    pub fn check_basic_auth(&self, headers: &HeaderMap) -> BasicAuthOutcome {
        match self.lookup(headers) {
            Lookup::Decided(outcome) => outcome,
            Lookup::NeedsBcrypt(auth, pending) => auth.finish(pending.verify()),
        }
    }

    /// [`WebConfig::check_basic_auth`] for async callers: a cache miss runs bcrypt on the blocking
    /// thread pool, one at a time, so a password-guessing client can neither stall the runtime
    /// nor take more than one core.
    pub async fn check_basic_auth_async(&self, headers: &HeaderMap) -> BasicAuthOutcome {
        let (auth, pending) = match self.lookup(headers) {
            Lookup::Decided(outcome) => return outcome,
            Lookup::NeedsBcrypt(auth, pending) => (auth, pending),
        };
        let Ok(permit) = auth.bcrypt_gate.clone().acquire_owned().await else {
            return BasicAuthOutcome::Denied;
        };
        // The permit moves along, so a caller that gives up does not free the slot early.
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            pending.verify()
        })
        .await
        .unwrap_or(None);
        auth.finish(verified)
    }

    /// Headers to add to every response (`http_server_config.headers`, blank ones left out).
    pub fn response_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    fn lookup(&self, headers: &HeaderMap) -> Lookup<'_> {
        let Some(auth) = &self.basic_auth else {
            return Lookup::Decided(BasicAuthOutcome::NotRequired);
        };
        let Some((user, password)) = basic_credentials(headers) else {
            return Lookup::Decided(BasicAuthOutcome::Denied);
        };
        let key = auth.cache_key(&user, &password);
        if auth.cached(&key) {
            return Lookup::Decided(BasicAuthOutcome::Allowed);
        }
        let (known_user, hash) = match auth.users.get(&user) {
            Some(hash) => (true, hash.clone()),
            None => (false, auth.decoy_hash.clone()),
        };
        Lookup::NeedsBcrypt(
            auth,
            PendingVerify {
                key,
                known_user,
                hash,
                password,
            },
        )
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users: Vec<&String> = self
            .basic_auth
            .iter()
            .flat_map(|a| a.users.keys())
            .collect();
        let headers: Vec<&HeaderName> = self.headers.iter().map(|(name, _)| name).collect();
        f.debug_struct("WebConfig")
            .field("file", &self.file)
            .field("tls", &self.tls.is_some())
            .field("headers", &headers)
            .field("basic_auth_users", &users)
            .finish()
    }
}

/// The basic-auth users and the cache of successful verifications.
struct BasicAuth {
    users: HashMap<String, String>,
    // Unknown users are checked against this real hash (the costliest configured) and refused,
    // so they take as long as known ones.
    decoy_hash: String,
    // Keyed with a per-process random key: the cache never holds a plain fast hash of a password.
    cache_mac: Hmac<Sha256>,
    cache: Mutex<AuthCache>,
    bcrypt_gate: Arc<tokio::sync::Semaphore>,
}

#[derive(Default)]
struct AuthCache {
    entries: Vec<[u8; 32]>,
    next: usize,
}

enum Lookup<'a> {
    Decided(BasicAuthOutcome),
    NeedsBcrypt(&'a BasicAuth, PendingVerify),
}

/// A bcrypt check to run, owning its inputs so it can move to a blocking thread.
struct PendingVerify {
    key: [u8; 32],
    known_user: bool,
    hash: String,
    password: Vec<u8>,
}

impl PendingVerify {
    /// The cache key when the credentials are valid, `None` otherwise.
    fn verify(self) -> Option<[u8; 32]> {
        if self.password.len() > BCRYPT_MAX_PASSWORD {
            return None;
        }
        let matches = bcrypt::verify(&self.password, &self.hash).unwrap_or(false);
        (matches && self.known_user).then_some(self.key)
    }
}

impl BasicAuth {
    fn cache_key(&self, user: &str, password: &[u8]) -> [u8; 32] {
        let mut mac = self.cache_mac.clone();
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        mac.update(&(user.len() as u64).to_le_bytes());
        mac.update(user.as_bytes());
        mac.update(password);
        mac.finalize().into_bytes().into()
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        // Scan every entry without an early exit, so timing says nothing about which one matched.
        let hit = cache
            .entries
            .iter()
            .fold(Choice::from(0), |hit, entry| hit | entry.ct_eq(key));
        hit.into()
    }

    fn remember(&self, key: [u8; 32]) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.entries.len() < AUTH_CACHE_CAPACITY {
            cache.entries.push(key);
        } else {
            let slot = cache.next;
            cache.entries[slot] = key;
            cache.next = (slot + 1) % AUTH_CACHE_CAPACITY;
        }
    }

    fn finish(&self, verified: Option<[u8; 32]>) -> BasicAuthOutcome {
        match verified {
            Some(key) => {
                if !self.cached(&key) {
                    self.remember(key);
                }
                BasicAuthOutcome::Allowed
            }
            None => BasicAuthOutcome::Denied,
        }
    }
}

/// User and password of an `Authorization: Basic` header (scheme case-insensitive, RFC 7617).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = decode_base64(rest.trim_ascii())?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_owned();
    Some((user, decoded[colon + 1..].to_vec()))
}

/// Standard base64 with padding, as browsers and Prometheus send basic-auth credentials.
fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    if input.is_empty() || input.len() % 4 != 0 {
        return None;
    }
    let chunks = input.len() / 4;
    let mut out = Vec::with_capacity(chunks * 3);
    for (i, chunk) in input.chunks_exact(4).enumerate() {
        let mut bits: u32 = 0;
        let mut padding = 0;
        for (j, &c) in chunk.iter().enumerate() {
            let sextet = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                // Padding only at the end of the last group.
                b'=' if i + 1 == chunks && j >= 2 => {
                    padding += 1;
                    0
                }
                _ => return None,
            };
            if padding > 0 && c != b'=' {
                return None;
            }
            bits = bits << 6 | u32::from(sextet);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - padding]);
    }
    Some(out)
}

/// A YAML value that counts as set: the toolkit treats null, "" and empty lists as unset.
fn is_set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Sequence(items)) => !items.is_empty(),
        Some(Value::Mapping(map)) => !map.is_empty(),
        Some(_) => true,
    }
}

/// A string field that counts as set ("" is unset, as in the toolkit).
fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

/// Builds errors naming the config file, and resolves paths against its folder.
struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, field: impl Into<String>, message: impl fmt::Display) -> WebConfigError {
        WebConfigError::Invalid {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.to_string(),
        }
    }

    fn unsupported(&self, field: &'static str, hint: &'static str) -> WebConfigError {
        WebConfigError::Unsupported {
            file: self.file.to_path_buf(),
            field,
            hint,
        }
    }

    fn bad_referenced(
        &self,
        field: &'static str,
        path: &Path,
        message: impl fmt::Display,
    ) -> WebConfigError {
        WebConfigError::BadReferenced {
            file: self.file.to_path_buf(),
            field,
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }

    /// A path from the config, relative ones taken from the config file's folder.
    fn resolve(&self, path: &str) -> PathBuf {
        let dir = self.file.parent().unwrap_or(Path::new(""));
        dir.join(path)
    }

    fn read(&self, field: &'static str, path: &Path) -> Result<Vec<u8>, WebConfigError> {
        std::fs::read(path).map_err(|source| WebConfigError::ReadReferenced {
            file: self.file.to_path_buf(),
            field,
            path: path.to_path_buf(),
            source,
        })
    }

    fn certificates(
        &self,
        field: &'static str,
        path: &Path,
    ) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
        let pem = self.read(field, path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.bad_referenced(field, path, format!("bad PEM: {e}")))?;
        if certs.is_empty() {
            return Err(self.bad_referenced(field, path, "no PEM certificate found"));
        }
        Ok(certs)
    }

    fn private_key(&self, path: &Path) -> Result<PrivateKeyDer<'static>, WebConfigError> {
        let field = "tls_server_config.key_file";
        let pem = self.read(field, path)?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
            tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound => {
                self.bad_referenced(field, path, "no PEM private key found")
            }
            e => self.bad_referenced(field, path, format!("bad PEM: {e}")),
        })
    }

    fn tls(&self, raw: RawTls) -> Result<Option<TlsSettings>, WebConfigError> {
        let refused: [(&'static str, &Option<Value>, &'static str); 6] = [
            ("tls_server_config.cert", &raw.cert, "; use cert_file"),
            ("tls_server_config.key", &raw.key, "; use key_file"),
            (
                "tls_server_config.client_ca",
                &raw.client_ca,
                "; use client_ca_file",
            ),
            (
                "tls_server_config.cipher_suites",
                &raw.cipher_suites,
                "; rustls's defaults apply",
            ),
            (
                "tls_server_config.curve_preferences",
                &raw.curve_preferences,
                "; rustls's defaults apply",
            ),
            (
                "tls_server_config.client_allowed_sans",
                &raw.client_allowed_sans,
                "",
            ),
        ];
        if let Some((field, _, hint)) = refused.iter().find(|(_, value, _)| is_set(value.as_ref()))
        {
            return Err(self.unsupported(field, hint));
        }
        let cert_file = non_blank(raw.cert_file);
        let key_file = non_blank(raw.key_file);
        let client_auth_type = non_blank(raw.client_auth_type);
        let client_ca_file = non_blank(raw.client_ca_file);
        if cert_file.is_none()
            && key_file.is_none()
            && client_auth_type.is_none()
            && client_ca_file.is_none()
        {
            return Ok(None);
        }
        let cert_file = cert_file.ok_or_else(|| {
            self.invalid(
                "tls_server_config.cert_file",
                "missing; TLS needs cert_file and key_file",
            )
        })?;
        let key_file = key_file.ok_or_else(|| {
            self.invalid(
                "tls_server_config.key_file",
                "missing; TLS needs cert_file and key_file",
            )
        })?;
        let client_auth = match (client_auth_type.as_deref(), client_ca_file) {
            (None | Some("NoClientCert"), None) => ClientAuth::NoClientCert,
            (None | Some("NoClientCert"), Some(_)) => {
                return Err(self.invalid(
                    "tls_server_config.client_ca_file",
                    "set, but client_auth_type is NoClientCert; set client_auth_type to \
                     RequireAndVerifyClientCert",
                ));
            }
            (Some(mode @ ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven")), ca) => {
                let ca = ca.ok_or_else(|| {
                    self.invalid(
                        "tls_server_config.client_auth_type",
                        format!("{mode} needs client_ca_file"),
                    )
                })?;
                ClientAuth::Verify {
                    ca_file: self.resolve(&ca),
                    required: mode == "RequireAndVerifyClientCert",
                }
            }
            (Some("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert"), _) => {
                return Err(self.unsupported(
                    "tls_server_config.client_auth_type",
                    " (it accepts unverified client certificates); use RequireAndVerifyClientCert",
                ));
            }
            (Some(other), _) => {
                return Err(self.invalid(
                    "tls_server_config.client_auth_type",
                    format!(
                        "unknown value {other:?}; expected NoClientCert, \
                         RequireAndVerifyClientCert or VerifyClientCertIfGiven"
                    ),
                ));
            }
        };
        let min = self.tls_version("tls_server_config.min_version", raw.min_version, 2)?;
        let max = self.tls_version("tls_server_config.max_version", raw.max_version, 3)?;
        if min > max {
            return Err(self.invalid("tls_server_config.min_version", "is above max_version"));
        }
        let versions = [(2, &TLS12), (3, &TLS13)]
            .into_iter()
            .filter(|(minor, _)| (min..=max).contains(minor))
            .map(|(_, version)| version)
            .collect();
        Ok(Some(TlsSettings {
            cert_file: self.resolve(&cert_file),
            key_file: self.resolve(&key_file),
            client_auth,
            versions,
            prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(true),
        }))
    }

    /// The minor number of a `TLS1x` version name (`TLS12` is 2), `default` when unset.
    fn tls_version(
        &self,
        field: &'static str,
        value: Option<String>,
        default: u8,
    ) -> Result<u8, WebConfigError> {
        match non_blank(value).as_deref() {
            None => Ok(default),
            Some("TLS12") => Ok(2),
            Some("TLS13") => Ok(3),
            Some("TLS10" | "TLS11") => {
                Err(self.unsupported(field, " (rustls implements TLS12 and TLS13 only)"))
            }
            Some(other) => Err(self.invalid(
                field,
                format!("unknown TLS version {other:?}; expected TLS12 or TLS13"),
            )),
        }
    }

    fn headers(&self, raw: RawHttp) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
        let mut headers = Vec::new();
        for (name, value) in raw.headers.unwrap_or_default() {
            let field = format!("http_server_config.headers.{name}");
            let Some((canonical, allowed)) = ALLOWED_HEADERS
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(&name))
            else {
                let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
                return Err(self.invalid(
                    field,
                    format!(
                        "this header cannot be configured; allowed: {}",
                        names.join(", ")
                    ),
                ));
            };
            if value.is_empty() {
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(self.invalid(
                    field,
                    format!("invalid value {value:?}; expected one of {allowed:?}"),
                ));
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| self.invalid(&field, "not a valid HTTP header value"))?;
            let name = HeaderName::from_bytes(canonical.as_bytes())
                .map_err(|_| self.invalid(&field, "not a valid HTTP header name"))?;
            headers.push((name, value));
        }
        Ok(headers)
    }

    fn basic_auth(
        &self,
        users: BTreeMap<String, String>,
    ) -> Result<Option<BasicAuth>, WebConfigError> {
        let mut decoy: Option<(u32, &String)> = None;
        for (user, hash) in &users {
            let field = || format!("basic_auth_users.{user}");
            if user.contains(':') {
                return Err(self.invalid(field(), "a user name cannot contain ':'"));
            }
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|e| self.invalid(field(), format!("not a bcrypt hash: {e}")))?;
            let cost = parts.get_cost();
            if !BCRYPT_COSTS.contains(&cost) {
                return Err(self.invalid(
                    field(),
                    format!("bcrypt cost {cost} is outside {BCRYPT_COSTS:?}"),
                ));
            }
            if decoy.is_none_or(|(max, _)| cost > max) {
                decoy = Some((cost, hash));
            }
        }
        let Some((_, decoy_hash)) = decoy else {
            return Ok(None);
        };
        let mut key = [0u8; 32];
        ring::default_provider()
            .secure_random
            .fill(&mut key)
            .map_err(|_| self.invalid("basic_auth_users", "no OS randomness for the auth cache"))?;
        let cache_mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts any key length");
        Ok(Some(BasicAuth {
            decoy_hash: decoy_hash.clone(),
            users: users.into_iter().collect(),
            cache_mac,
            cache: Mutex::new(AuthCache::default()),
            bcrypt_gate: Arc::new(tokio::sync::Semaphore::new(1)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
}
