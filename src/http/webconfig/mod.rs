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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

mod basic_auth;
mod raw;

use self::basic_auth::{AuthCache, BasicAuth, Lane, Lookup, PendingVerify, basic_credentials};
use self::raw::{RawConfig, Validator, is_set};
use crate::http::serve::Client;

/// Successful basic-auth verifications remembered, so a scrape every 15 s skips bcrypt.
pub(super) const AUTH_CACHE_CAPACITY: usize = 64;

/// Longest password bcrypt can tell apart; longer ones are refused, as Go's bcrypt does.
pub(super) const BCRYPT_MAX_PASSWORD: usize = 72;

/// Costs bcrypt accepts.
pub(super) const BCRYPT_COSTS: std::ops::RangeInclusive<u32> = 4..=31;

/// Headers the toolkit lets a config set, with the values it allows (empty: any value).
pub(super) const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
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

pub(super) struct TlsSettings {
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
    pub(super) client_auth: ClientAuth,
    pub(super) versions: Vec<&'static SupportedProtocolVersion>,
    pub(super) prefer_server_cipher_suites: bool,
}

pub(super) enum ClientAuth {
    NoClientCert,
    Verify { ca_file: PathBuf, required: bool },
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
    /// nor take more than one core. All callers share one first-come queue: prefer
    /// [`WebConfig::check_basic_auth_from`], which is fair between clients.
    pub async fn check_basic_auth_async(&self, headers: &HeaderMap) -> BasicAuthOutcome {
        self.check_basic_auth_from(headers, None).await
    }

    /// [`WebConfig::check_basic_auth_async`] for a request from `peer`: a remembered credential
    /// passes at once, without queueing; a cache miss waits for the one bcrypt slot, and each
    /// client (an IPv4 address or an IPv6 /64) has at most one check queued for it, its others
    /// waiting their turn behind it. So a flood of wrong passwords from one address delays
    /// another client's first scrape (after a start, when nothing is remembered yet) by one
    /// check per flooding client, not by the whole flood. Behind a proxy every request comes
    /// from the proxy's address and the queue is first come, first served again.
    pub async fn check_basic_auth_from(
        &self,
        headers: &HeaderMap,
        peer: Option<std::net::IpAddr>,
    ) -> BasicAuthOutcome {
        let (auth, pending) = match self.lookup(headers) {
            Lookup::Decided(outcome) => return outcome,
            Lookup::NeedsBcrypt(auth, pending) => (auth, pending),
        };
        let lane = peer.map(|ip| Lane::join(&auth.lanes, Client::of(ip)));
        let _turn = match &lane {
            Some(lane) => Some(lane.turn.lock().await),
            None => None,
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

#[cfg(test)]
mod tests;
