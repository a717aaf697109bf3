//! `acquire-exporter healthcheck`: one GET of the exporter's health endpoint, over HTTP or
//! HTTPS, for container health checks (the image has no shell and no HTTP client).
//!
//! Over HTTPS the server's certificate is verified against `--ca-file` (a PEM file) or, without
//! it, the system's authorities, and its name against the URL's host. `--insecure-skip-verify`
//! keeps the encryption but skips both checks: the usual case of a check of `127.0.0.1` from
//! inside the container, whose certificate names the public host.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::admit::postgres::{Tls, tls_config};

/// How long connecting, and then each read or write, may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// What to ask and how to trust the answer.
#[derive(Debug, Clone)]
pub struct Options {
    /// `http://host:port/path` or `https://host:port/path`.
    pub url: String,
    /// Authorities that sign the server's certificate (PEM); the system's without it.
    pub ca_file: Option<PathBuf>,
    /// Encrypt, but check neither the certificate nor the name.
    pub insecure_skip_verify: bool,
}

/// A parsed URL: TLS or not, the host (for the name check and the Host header), the address,
/// the path.
#[derive(Debug, PartialEq)]
struct Url {
    tls: bool,
    host: String,
    authority: String,
    path: String,
}

fn parse(url: &str) -> Result<Url, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!(
            "{url}: the URL must start with http:// or https://"
        ));
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    if authority.is_empty() {
        return Err(format!("{url}: no host"));
    }
    // `host`, `host:port`, `[v6]` or `[v6]:port`.
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.unwrap_or(if tls { "443" } else { "80" });
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Url {
        tls,
        host: host.to_owned(),
        authority,
        path,
    })
}

/// Succeed when the endpoint answers 2xx; else say what happened.
pub fn check(options: &Options) -> Result<(), String> {
    let url = parse(&options.url)?;
    let addr: SocketAddr = url
        .authority
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", url.authority))?
        .next()
        .ok_or_else(|| format!("{}: no address", url.authority))?;
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        url.path, url.authority
    );
    let head = if url.tls {
        let mode = if options.insecure_skip_verify {
            Tls::Require
        } else {
            Tls::VerifyFull
        };
        let ca = options.ca_file.as_ref().map(|p| p.display().to_string());
        let config = tls_config(mode, ca.as_deref())
            .map_err(|e| format!("TLS: {}", e.replace("sslrootcert", "--ca-file")))?;
        let name =
            ServerName::try_from(url.host.clone()).map_err(|e| format!("{}: {e}", url.host))?;
        let connection = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(rustls::StreamOwned::new(connection, stream), &request)?
    } else {
        exchange(stream, &request)?
    };
    match head.get(9) {
        Some(b'2') => Ok(()),
        _ => Err(String::from_utf8_lossy(&head).trim().to_owned()),
    }
}

/// Send `request` and read the status line's first 12 bytes (`HTTP/1.1 200`).
fn exchange(mut stream: impl Read + Write, request: &str) -> Result<[u8; 12], String> {
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_their_scheme_host_port_and_path() {
        let cases = [
            (
                "http://127.0.0.1:9867/-/healthy",
                false,
                "127.0.0.1",
                "127.0.0.1:9867",
                "/-/healthy",
            ),
            (
                "https://exporter.example/-/healthy",
                true,
                "exporter.example",
                "exporter.example:443",
                "/-/healthy",
            ),
            ("http://localhost", false, "localhost", "localhost:80", "/"),
            ("https://[::1]:9867/x", true, "::1", "[::1]:9867", "/x"),
            ("https://[::1]/x", true, "::1", "[::1]:443", "/x"),
        ];
        for (url, tls, host, authority, path) in cases {
            assert_eq!(
                parse(url).unwrap(),
                Url {
                    tls,
                    host: host.into(),
                    authority: authority.into(),
                    path: path.into()
                },
                "{url}"
            );
        }
        for bad in ["ftp://x/", "127.0.0.1:9867/-/healthy", "http:///x"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
