//! The file as written, and the checks that turn it into a [`super::WebConfig`]: every
//! message names the file and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderName, HeaderValue};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_yaml_ng::Value;
use sha2::Sha256;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::version::{TLS12, TLS13};

use super::*;

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping of tls_server_config, http_server_config, basic_auth_users"
)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) tls_server_config: Option<RawTls>,
    #[serde(default)]
    pub(super) http_server_config: Option<RawHttp>,
    #[serde(default)]
    pub(super) basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) rate_limit: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of TLS settings")]
pub(super) struct RawTls {
    #[serde(default)]
    pub(super) cert_file: Option<String>,
    #[serde(default)]
    pub(super) key_file: Option<String>,
    #[serde(default)]
    pub(super) client_auth_type: Option<String>,
    #[serde(default)]
    pub(super) client_ca_file: Option<String>,
    #[serde(default)]
    pub(super) min_version: Option<String>,
    #[serde(default)]
    pub(super) max_version: Option<String>,
    #[serde(default)]
    pub(super) prefer_server_cipher_suites: Option<bool>,
    // Part of the toolkit's format but not implemented here: parsed only to refuse them by name.
    #[serde(default)]
    pub(super) cert: Option<Value>,
    #[serde(default)]
    pub(super) key: Option<Value>,
    #[serde(default)]
    pub(super) client_ca: Option<Value>,
    #[serde(default)]
    pub(super) cipher_suites: Option<Value>,
    #[serde(default)]
    pub(super) curve_preferences: Option<Value>,
    #[serde(default)]
    pub(super) client_allowed_sans: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of HTTP settings")]
pub(super) struct RawHttp {
    // Accepted for compatibility and ignored: HTTP/1.1 is all this server speaks.
    #[serde(default)]
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    pub(super) headers: Option<BTreeMap<String, String>>,
}

/// A YAML value that counts as set: the toolkit treats null, "" and empty lists as unset.
pub(super) fn is_set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Sequence(items)) => !items.is_empty(),
        Some(Value::Mapping(map)) => !map.is_empty(),
        Some(_) => true,
    }
}

/// A string field that counts as set ("" is unset, as in the toolkit).
pub(super) fn non_blank(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.is_empty())
}

/// Builds errors naming the config file, and resolves paths against its folder.
pub(super) struct Validator<'a> {
    pub(super) file: &'a Path,
}

impl Validator<'_> {
    pub(super) fn invalid(
        &self,
        field: impl Into<String>,
        message: impl fmt::Display,
    ) -> WebConfigError {
        WebConfigError::Invalid {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.to_string(),
        }
    }

    pub(super) fn unsupported(&self, field: &'static str, hint: &'static str) -> WebConfigError {
        WebConfigError::Unsupported {
            file: self.file.to_path_buf(),
            field,
            hint,
        }
    }

    pub(super) fn bad_referenced(
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
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        let dir = self.file.parent().unwrap_or(Path::new(""));
        dir.join(path)
    }

    pub(super) fn read(&self, field: &'static str, path: &Path) -> Result<Vec<u8>, WebConfigError> {
        std::fs::read(path).map_err(|source| WebConfigError::ReadReferenced {
            file: self.file.to_path_buf(),
            field,
            path: path.to_path_buf(),
            source,
        })
    }

    pub(super) fn certificates(
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

    pub(super) fn private_key(
        &self,
        path: &Path,
    ) -> Result<PrivateKeyDer<'static>, WebConfigError> {
        let field = "tls_server_config.key_file";
        let pem = self.read(field, path)?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
            tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound => {
                self.bad_referenced(field, path, "no PEM private key found")
            }
            e => self.bad_referenced(field, path, format!("bad PEM: {e}")),
        })
    }

    pub(super) fn tls(&self, raw: RawTls) -> Result<Option<TlsSettings>, WebConfigError> {
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
    pub(super) fn tls_version(
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

    pub(super) fn headers(
        &self,
        raw: RawHttp,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, WebConfigError> {
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

    pub(super) fn basic_auth(
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
            lanes: Mutex::new(std::collections::HashMap::new()),
        }))
    }
}
