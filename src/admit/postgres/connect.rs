//! Where the PostgreSQL store is and how to reach it: the `--storage.url` (or the file holding
//! it), TLS with rustls in libpq's `sslmode` terms, and one connection with a deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::admit::{Result, StoreError};

/// The stream of a connection (TLS or not: with `sslmode=disable` the TLS side is never used).
pub type Stream = <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<Socket>>::Stream;

/// How long a connection attempt may take when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// `disable`: plain TCP.
    Disable,
    /// `prefer` (libpq's default): TLS when the server offers it, the certificate unchecked.
    Prefer,
    /// `require`: TLS or no connection; the certificate checked only when `sslrootcert` is given
    /// (then as `verify-ca`), as libpq does.
    Require,
    /// `verify-ca`: TLS, the certificate signed by a trusted authority.
    VerifyCa,
    /// `verify-full`: TLS, the certificate signed by a trusted authority and naming the host.
    VerifyFull,
}

/// A parsed `--storage.url`.
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: MakeRustlsConnect,
    mode: Tls,
    server: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Target")
            .field("server", &self.server)
            .field("tls", &self.mode)
            .finish_non_exhaustive()
    }
}

/// A problem with the URL itself.
fn bad(problem: impl Into<String>) -> StoreError {
    StoreError::Server {
        server: "--storage.url".into(),
        problem: problem.into(),
    }
}

impl Target {
    /// Read the URL from a file (`--storage.url-file`): its first line, trimmed.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| StoreError::Server {
            server: "--storage.url-file".into(),
            problem: format!("{}: {e}", path.display()),
        })?;
        Self::parse(text.lines().next().unwrap_or("").trim())
    }

    /// Parse a `postgres://user:password@host:port/database?sslmode=...` URL. Besides what
    /// tokio-postgres reads, it takes libpq's `sslmode` (`disable`, `prefer`, `require`,
    /// `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file, or `system` for the
    /// operating system's authorities, the default).
    pub fn parse(url: &str) -> Result<Self> {
        let rest = ["postgres://", "postgresql://"]
            .iter()
            .find_map(|p| url.strip_prefix(p))
            .ok_or_else(|| bad("must be a URL like postgres://user@host:5432/database"))?;
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        let params: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| bad(format!("the query string: {e}")))?;
        let mut mode = Tls::Prefer;
        let mut root = None;
        let mut kept = Vec::new();
        for (k, v) in params {
            match k.as_str() {
                "sslmode" => {
                    mode = match v.as_str() {
                        "disable" => Tls::Disable,
                        "allow" | "prefer" => Tls::Prefer,
                        "require" => Tls::Require,
                        "verify-ca" => Tls::VerifyCa,
                        "verify-full" => Tls::VerifyFull,
                        other => {
                            return Err(bad(format!(
                                "sslmode={other}: use disable, prefer, require, verify-ca or verify-full"
                            )));
                        }
                    }
                }
                "sslrootcert" => root = Some(v),
                _ => kept.push((k, v)),
            }
        }
        let query = serde_urlencoded::to_string(&kept).map_err(|e| bad(e.to_string()))?;
        let mut config: Config = format!("postgres://{base}?{query}")
            .parse()
            .map_err(|e: tokio_postgres::Error| bad(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(bad("names no host"));
        }
        if mode == Tls::Require && root.is_some() {
            mode = Tls::VerifyCa;
        }
        config.ssl_mode(match mode {
            Tls::Disable => SslMode::Disable,
            Tls::Prefer => SslMode::Prefer,
            Tls::Require | Tls::VerifyCa | Tls::VerifyFull => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("acquire-exporter");
        }
        // A server that vanished without a word (a lost node) is noticed within seconds.
        config.keepalives_idle(Duration::from_secs(5));
        let server = describe(&config);
        let tls = tls_config(mode, root.as_deref()).map_err(|problem| StoreError::Server {
            server: server.clone(),
            problem,
        })?;
        Ok(Target {
            config,
            tls: MakeRustlsConnect::new(tls),
            mode,
            server,
        })
    }

    /// The server, for logs and errors: user, hosts, ports and database, never the password.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The TLS mode.
    pub fn tls(&self) -> Tls {
        self.mode
    }

    /// One connection attempt, bounded by the connect timeout. The connection must be polled
    /// (spawned, or driven for its notifications) for the client to work.
    pub async fn connect(&self) -> Result<(Client, Connection<Socket, Stream>)> {
        let deadline = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT)
            * 2;
        match tokio::time::timeout(deadline, self.config.connect(self.tls.clone())).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(StoreError::Server {
                server: self.server.clone(),
                problem: format!("no connection within {deadline:?}"),
            }),
        }
    }
}

fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => format!("{host}:5432"),
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or("");
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client TLS settings of `mode`, trusting `root` (a PEM file, or `system` and `None` for the
/// system's authorities) where the mode verifies; also what `acquire-exporter healthcheck` uses.
pub(crate) fn tls_config(
    mode: Tls,
    root: Option<&str>,
) -> std::result::Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        Tls::Disable | Tls::Prefer | Tls::Require => Arc::new(Unchecked {
            algorithms: provider.signature_verification_algorithms,
        }),
        Tls::VerifyCa | Tls::VerifyFull => {
            let roots = Arc::new(roots(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| e.to_string())?;
            if mode == Tls::VerifyCa {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn roots(root: Option<&str>) -> std::result::Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root {
        None | Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err("sslrootcert: the system has no certificate authorities; give sslrootcert=/path/to/ca.pem".into());
            }
        }
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert={path}: {e}"))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("sslrootcert={path}: {e}"))?;
                store
                    .add(cert)
                    .map_err(|e| format!("sslrootcert={path}: {e}"))?;
            }
            if store.is_empty() {
                return Err(format!("sslrootcert={path}: no certificate in the file"));
            }
        }
    }
    Ok(store)
}

/// `sslmode=prefer`/`require` without a root certificate: encrypted, the server not
/// authenticated (libpq's meaning of these modes). The handshake signatures are still checked.
#[derive(Debug)]
struct Unchecked {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain checked, the host name not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_with_libpq_ssl_modes_and_never_show_the_password() {
        let cases: &[(&str, &str, Tls, &str)] = &[
            (
                "plain",
                "postgres://exporter:s3cret@db:5433/acquire?sslmode=disable",
                Tls::Disable,
                "postgres://exporter@db:5433/acquire",
            ),
            (
                "default is prefer",
                "postgresql://exporter:s3cret@db/acquire",
                Tls::Prefer,
                "postgres://exporter@db:5432/acquire",
            ),
            (
                "require",
                "postgres://u:s3cret@db/a?sslmode=require&connect_timeout=5",
                Tls::Require,
                "postgres://u@db:5432/a",
            ),
            (
                "verify-full with the system's authorities",
                "postgres://u:s3cret@db.example/a?sslmode=verify-full&sslrootcert=system",
                Tls::VerifyFull,
                "postgres://u@db.example:5432/a",
            ),
        ];
        for (name, url, mode, server) in cases {
            match Target::parse(url) {
                Ok(t) => {
                    assert_eq!(t.tls(), *mode, "{name}");
                    assert_eq!(t.server(), *server, "{name}");
                    assert!(!format!("{t:?}").contains("s3cret"), "{name}");
                }
                // A machine without a trust store cannot build verify-full from `system`.
                Err(e) => assert!(
                    *mode == Tls::VerifyFull
                        && e.to_string().contains("no certificate authorities"),
                    "{name}: {e}"
                ),
            }
        }
    }

    #[test]
    fn bad_urls_are_refused_naming_the_problem() {
        let cases: &[(&str, &str, &str)] = &[
            ("not a url", "host=db user=u", "must be a URL"),
            (
                "unknown ssl mode",
                "postgres://u@db/a?sslmode=always",
                "sslmode=always",
            ),
            (
                "missing root file",
                "postgres://u@db/a?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                "sslrootcert=/nonexistent/ca.pem",
            ),
        ];
        for (name, url, expected) in cases {
            let err = Target::parse(url).expect_err(name).to_string();
            assert!(err.contains(expected), "{name}: {err}");
            assert!(!err.contains("s3cret"), "{name}: {err}");
        }
    }
}
