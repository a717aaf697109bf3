//! A minimal HTTP/1.1 client with keep-alive, enough to post webhooks.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub(crate) struct Client {
    /// `host:port` to connect to and to send as `Host`.
    pub(crate) authority: String,
    /// Path and query of the webhook.
    pub(crate) target: String,
    pub(crate) token: Option<String>,
    pub(crate) conn: Option<BufReader<TcpStream>>,
}

/// What the exporter answered.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Client {
    pub(crate) fn new(url: &str, token: Option<String>) -> Result<Client, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
        }) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Client {
            authority,
            target,
            token,
            conn: None,
        })
    }

    /// POST one JSON body. A kept-alive connection the server closed meanwhile is reopened once.
    pub(crate) fn post(&mut self, body: &str) -> io::Result<Answer> {
        let reused = self.conn.is_some();
        match self.try_post(body) {
            Err(_) if reused => {
                self.conn = None;
                self.try_post(body)
            }
            other => other,
        }
    }

    pub(crate) fn try_post(&mut self, body: &str) -> io::Result<Answer> {
        let result = self.exchange(body);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    pub(crate) fn exchange(&mut self, body: &str) -> io::Result<Answer> {
        if self.conn.is_none() {
            let addr = self
                .authority
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| io::Error::other(format!("{}: no address", self.authority)))?;
            let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            stream.set_write_timeout(Some(Duration::from_secs(30)))?;
            stream.set_nodelay(true)?;
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: acquire-simulator/{}\r\nContent-Type: application/JSON\r\nContent-Length: {}\r\n",
            self.target,
            self.authority,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        conn.get_mut().write_all(request.as_bytes())?;

        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before an answer",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| io::Error::other(format!("not an HTTP answer: {:?}", line.trim())))?;
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        loop {
            line.clear();
            if conn.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(io::Error::other)?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        let body = if chunked {
            read_chunked(conn)?
        } else {
            let mut buf = vec![0; length];
            conn.read_exact(&mut buf)?;
            buf
        };
        if close {
            self.conn = None;
        }
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

pub(crate) fn read_chunked(conn: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        conn.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(io::Error::other)?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if conn.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        conn.read_exact(&mut crlf)?;
    }
}

// ---------------------------------------------------------------------------------------------
// The simulation: a clock, a queue of scheduled deliveries, and counters.
