//! The HTTP/1.1 accept loop: optional TLS, a header read timeout, a connection cap and graceful
//! shutdown, which `axum::serve` does not offer.
//!
//! - Header read timeout (slowloris protection): a client must deliver a request's complete head
//!   within [`ServerLimits::header_read_timeout`]. The clock also runs while a keep-alive
//!   connection waits for its next request, so it doubles as the idle timeout.
//! - Connection cap: past [`ServerLimits::max_connections`] the loop stops calling `accept`, and
//!   new connections wait in the kernel's backlog instead of being accepted and dropped. One
//!   HTTP/1.1 connection carries one request at a time, so this also caps concurrent requests.
//! - Body read timeouts and size limits belong to the router (tower-http layers), not here.
//! - Handlers see the client's address as `ConnectInfo<SocketAddr>`
//!   ([`axum::extract::ConnectInfo`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::middleware::AddExtension;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Layer;
use tracing::{debug, info, warn};

/// Pause after an accept error such as EMFILE (out of file descriptors), so the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Bounds on what one client can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time a client has to send a request's head; also the keep-alive idle timeout.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish (for at most `drain_timeout`, after which the remaining connections are
/// closed), and returns.
///
/// Errors on one connection are logged at debug level and never stop the loop; accept errors
/// are logged and retried after a short pause, so the result is `Ok` today.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain_timeout: Duration,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    let graceful = GracefulShutdown::new();
    // Owns every connection task, so the ones still running after the drain timeout are aborted.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_connection_error(&error) => {
                    debug!(%error, "connection failed before accept");
                    continue;
                }
                Err(error) => {
                    warn!(%error, "accept failed; retrying shortly");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                    }
                }
            },
        };
        // Reap finished tasks so the set holds only live connections.
        while connections.try_join_next().is_some() {}
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app.clone()));
        let connection = Connection {
            stream,
            peer,
            service,
            tls: tls.clone(),
            http: http.clone(),
            watcher: graceful.watcher(),
        };
        connections.spawn(async move {
            let _permit = permit;
            connection.run(limits.tls_handshake_timeout).await;
        });
    }

    drop(listener);
    debug!(
        connections = connections.len(),
        "stopped accepting; draining"
    );
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            connections = connections.len(),
            ?drain_timeout,
            "drain timeout reached; closing the remaining connections"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// One accepted connection and what it needs to be served.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    service: TowerToHyperService<AddExtension<Router, ConnectInfo<SocketAddr>>>,
    tls: Option<TlsAcceptor>,
    http: Arc<http1::Builder>,
    watcher: Watcher,
}

impl Connection {
    /// Runs the TLS handshake when configured, then HTTP/1.1 until the client leaves, an error
    /// occurs or shutdown asks the connection to finish its current request and close.
    async fn run(self, handshake_timeout: Duration) {
        let Self {
            stream,
            peer,
            service,
            tls,
            http,
            watcher,
        } = self;
        let served = match tls {
            None => {
                let conn = http.serve_connection(TokioIo::new(stream), service);
                watcher.watch(conn).await
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                let stream = match tokio::time::timeout(handshake_timeout, handshake).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_elapsed) => {
                        debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let conn = http.serve_connection(TokioIo::new(stream), service);
                watcher.watch(conn).await
            }
        };
        if let Err(error) = served {
            debug!(%peer, %error, "connection closed with an error");
        }
    }
}

/// Errors that concern only the connection being accepted (the peer gave up), not the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM; SIGHUP is logged and ignored (there is no
/// configuration to reload, and its default action would end the process without draining).
/// The handlers are installed by this call, not at the first poll, so a signal that comes right
/// after start (before the server is polled) still shuts down gracefully instead of killing the
/// process. If a handler cannot be installed, that signal is logged and ignored rather than
/// ending the process. Needs a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let wait = |installed: std::io::Result<Signal>, name: &'static str| async move {
            match installed {
                Ok(mut s) => {
                    s.recv().await;
                    info!("{name} received; shutting down");
                }
                Err(error) => {
                    warn!(%error, "cannot listen for {name}");
                    std::future::pending::<()>().await;
                }
            }
        };
        let interrupt = wait(signal(SignalKind::interrupt()), "SIGINT");
        let terminate = wait(signal(SignalKind::terminate()), "SIGTERM");
        let hangup = signal(SignalKind::hangup());
        // SIGHUP would end the process without draining; the configuration is read only at
        // start, so there is nothing to reload: it is logged and otherwise ignored.
        let ignore_hangups = async move {
            match hangup {
                Ok(mut s) => {
                    while s.recv().await.is_some() {
                        warn!(
                            "SIGHUP received and ignored: the configuration is read only at start; \
                             restart the exporter (SIGTERM) to apply changes"
                        );
                    }
                }
                Err(error) => warn!(%error, "cannot listen for SIGHUP"),
            }
            std::future::pending::<()>().await;
        };
        async move {
            tokio::select! {
                () = interrupt => {}
                () = terminate => {}
                () = ignore_hangups => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => info!("SIGINT received; shutting down"),
            Err(error) => {
                warn!(%error, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::webconfig::WebConfig;
    use axum::routing::get;
    use std::path::{Path, PathBuf};
    use std::pin::Pin;
    use std::time::Instant;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::sync::{mpsc, oneshot};
    use tokio::task::JoinHandle;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::crypto::ring;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    /// Upper bound for anything that should happen "soon", generous for a loaded CI machine.
    const PATIENCE: Duration = Duration::from_secs(5);

    struct Server {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<io::Result<()>>,
    }

    impl Server {
        async fn start(app: Router, tls: Option<TlsAcceptor>, limits: ServerLimits) -> Self {
            Self::start_draining(app, tls, limits, PATIENCE).await
        }

        async fn start_draining(
            app: Router,
            tls: Option<TlsAcceptor>,
            limits: ServerLimits,
            drain_timeout: Duration,
        ) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let (stop, stopped) = oneshot::channel::<()>();
            let shutdown = async move {
                let _ = stopped.await;
            };
            let task = tokio::spawn(serve(listener, app, tls, limits, shutdown, drain_timeout));
            Self {
                addr,
                stop: Some(stop),
                task,
            }
        }

        async fn connect(&self) -> TcpStream {
            TcpStream::connect(self.addr).await.expect("connect")
        }

        fn shut_down(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    /// `/peer` answers with the client address the handler saw.
    fn peer_app() -> Router {
        Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
    }

    /// `AsyncWriteExt::write_all`, which needs tokio's io-util feature.
    async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_write(cx, bytes)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
        }
        std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_flush(cx)).await
    }

    /// `AsyncReadExt::read`, which needs tokio's io-util feature.
    async fn read_some<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_read(cx, &mut buf)).await?;
        Ok(buf.filled().len())
    }

    struct Response {
        status: u16,
        head: String,
        body: String,
    }

    /// Sends a GET and reads one response (Content-Length framed, as axum sends them).
    async fn get_path<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, path: &str) -> Response {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        write_all(stream, request.as_bytes())
            .await
            .expect("write request");
        read_response(stream).await.expect("a response")
    }

    async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Response> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let n = read_some(stream, &mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or(io::ErrorKind::InvalidData)?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let n = read_some(stream, &mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
        Ok(Response { status, head, body })
    }

    /// Reads until the server closes the connection; the bytes it sent meanwhile.
    async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
        let mut all = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout(PATIENCE, read_some(stream, &mut chunk)).await {
                Ok(Ok(0) | Err(_)) => return all,
                Ok(Ok(n)) => all.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("connection still open after {PATIENCE:?}"),
            }
        }
    }

    #[tokio::test]
    async fn serves_a_request_and_shows_the_peer_address_to_handlers() {
        let server = Server::start(peer_app(), None, ServerLimits::default()).await;
        let mut stream = server.connect().await;
        let response = get_path(&mut stream, "/peer").await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body,
            stream.local_addr().expect("addr").to_string()
        );
        let missing = get_path(&mut stream, "/nope").await;
        assert_eq!(missing.status, 404);
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_on_one_connection() {
        let server = Server::start(peer_app(), None, ServerLimits::default()).await;
        let mut stream = server.connect().await;
        let local = stream.local_addr().expect("addr").to_string();
        for i in 0..3 {
            let response = get_path(&mut stream, "/peer").await;
            assert_eq!(
                (response.status, response.body.as_str()),
                (200, local.as_str()),
                "request {i}"
            );
            assert!(
                !response
                    .head
                    .to_ascii_lowercase()
                    .contains("connection: close"),
                "request {i}"
            );
        }
    }

    #[tokio::test]
    async fn a_client_stalling_in_the_header_is_disconnected_after_the_timeout() {
        let timeout = Duration::from_millis(300);
        let limits = ServerLimits {
            header_read_timeout: timeout,
            ..ServerLimits::default()
        };
        let server = Server::start(peer_app(), None, limits).await;
        let mut stream = server.connect().await;
        let started = Instant::now();
        write_all(&mut stream, b"GET /peer HTTP/1.1\r\nHost: lo")
            .await
            .expect("write");
        let answer = read_until_closed(&mut stream).await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= timeout,
            "closed after {elapsed:?}, before the timeout"
        );
        assert!(
            !String::from_utf8_lossy(&answer).contains(" 200 "),
            "no request was served"
        );

        // The server is still healthy for the next client.
        let mut next = server.connect().await;
        assert_eq!(get_path(&mut next, "/peer").await.status, 200);
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
        let timeout = Duration::from_millis(300);
        let limits = ServerLimits {
            header_read_timeout: timeout,
            ..ServerLimits::default()
        };
        let server = Server::start(peer_app(), None, limits).await;
        let mut stream = server.connect().await;
        assert_eq!(get_path(&mut stream, "/peer").await.status, 200);
        let idle_since = Instant::now();
        assert!(read_until_closed(&mut stream).await.is_empty());
        assert!(idle_since.elapsed() >= timeout);
    }

    /// `/slow` reports that it started, then answers "done" after `delay`.
    fn slow_app(delay: Duration) -> (Router, mpsc::Receiver<()>) {
        let (started, started_rx) = mpsc::channel(8);
        let app = Router::new().route(
            "/slow",
            get(move || {
                let started = started.clone();
                async move {
                    let _ = started.send(()).await;
                    tokio::time::sleep(delay).await;
                    "done"
                }
            }),
        );
        (app, started_rx)
    }

    #[tokio::test]
    async fn graceful_shutdown_lets_an_in_flight_request_finish() {
        let (app, mut started) = slow_app(Duration::from_millis(500));
        let mut server = Server::start(app, None, ServerLimits::default()).await;
        let mut stream = server.connect().await;
        let request = b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n";
        write_all(&mut stream, request).await.expect("write");
        started.recv().await.expect("handler started");
        server.shut_down();

        // New connections are refused once the listener is closed.
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(server.addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still accepting after shutdown");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let response = read_response(&mut stream)
            .await
            .expect("the in-flight response");
        assert_eq!((response.status, response.body.as_str()), (200, "done"));
        let result = tokio::time::timeout(PATIENCE, &mut server.task).await;
        assert!(
            matches!(result, Ok(Ok(Ok(())))),
            "serve returned after draining"
        );
    }

    #[tokio::test]
    async fn shutdown_closes_connections_still_busy_after_the_drain_timeout() {
        let (app, mut started) = slow_app(Duration::from_secs(60));
        let drain = Duration::from_millis(300);
        let mut server = Server::start_draining(app, None, ServerLimits::default(), drain).await;
        let mut stream = server.connect().await;
        write_all(
            &mut stream,
            b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await
        .expect("write");
        started.recv().await.expect("handler started");
        let stopping = Instant::now();
        server.shut_down();
        let result = tokio::time::timeout(PATIENCE, &mut server.task).await;
        assert!(matches!(result, Ok(Ok(Ok(())))), "serve returned");
        assert!(
            stopping.elapsed() >= drain,
            "returned before the drain timeout"
        );
        assert!(
            read_until_closed(&mut stream).await.is_empty(),
            "no response, connection closed"
        );
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_until_a_slot_frees() {
        let limits = ServerLimits {
            max_connections: 1,
            ..ServerLimits::default()
        };
        let server = Server::start(peer_app(), None, limits).await;
        let mut first = server.connect().await;
        assert_eq!(get_path(&mut first, "/peer").await.status, 200);

        // The kernel completes the TCP handshake, but the server does not accept it yet.
        let mut second = server.connect().await;
        write_all(
            &mut second,
            b"GET /peer HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await
        .expect("write");
        let waiting =
            tokio::time::timeout(Duration::from_millis(300), read_response(&mut second)).await;
        assert!(
            waiting.is_err(),
            "second connection served while the first holds the only slot"
        );

        drop(first);
        let response = tokio::time::timeout(PATIENCE, read_response(&mut second))
            .await
            .expect("served once the first connection closed")
            .expect("a response");
        assert_eq!(response.status, 200);
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/webconfig")
            .join(name)
    }

    fn certificates(name: &str) -> Vec<CertificateDer<'static>> {
        let pem = std::fs::read(fixture(name)).expect("read test certificate");
        CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .expect("PEM certificate")
    }

    /// A TLS client trusting the test-only CA, offering h2 and http/1.1, with an optional client
    /// certificate.
    fn tls_client(client_cert: bool) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        for ca in certificates("test-only-ca.crt") {
            roots.add(ca).expect("CA certificate");
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots);
        let mut config = if client_cert {
            let key = std::fs::read(fixture("test-only-client.key")).expect("read key");
            let key = PrivateKeyDer::from_pem_slice(&key).expect("PEM key");
            builder
                .with_client_auth_cert(certificates("test-only-client.crt"), key)
                .expect("client certificate")
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }

    fn acceptor(config: &str) -> Option<TlsAcceptor> {
        let web = WebConfig::load(&fixture(config)).expect("load web config");
        let acceptor = web.tls_acceptor().expect("acceptor");
        assert!(acceptor.is_some(), "{config} configures TLS");
        acceptor
    }

    fn localhost() -> ServerName<'static> {
        ServerName::try_from("localhost").expect("server name")
    }

    #[tokio::test]
    async fn tls_serves_http1_with_the_configured_certificate() {
        let server = Server::start(
            peer_app(),
            acceptor("valid-tls.yml"),
            ServerLimits::default(),
        )
        .await;

        // A plain-HTTP client fails its handshake without disturbing the server.
        let mut plain = server.connect().await;
        write_all(&mut plain, b"GET /peer HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        let answer = read_until_closed(&mut plain).await;
        assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"));

        let tcp = server.connect().await;
        let local = tcp.local_addr().expect("addr").to_string();
        let mut tls = tls_client(false)
            .connect(localhost(), tcp)
            .await
            .expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        for _ in 0..2 {
            let response = get_path(&mut tls, "/peer").await;
            assert_eq!(
                (response.status, response.body.as_str()),
                (200, local.as_str())
            );
        }
    }

    #[tokio::test]
    async fn a_stalled_tls_handshake_is_cut_after_its_timeout() {
        let timeout = Duration::from_millis(300);
        let limits = ServerLimits {
            tls_handshake_timeout: timeout,
            ..ServerLimits::default()
        };
        let server = Server::start(peer_app(), acceptor("valid-tls.yml"), limits).await;
        let mut stream = server.connect().await;
        let started = Instant::now();
        assert!(read_until_closed(&mut stream).await.is_empty());
        assert!(started.elapsed() >= timeout);
    }

    #[tokio::test]
    async fn client_certificates_are_required_when_configured() {
        let server = Server::start(
            peer_app(),
            acceptor("valid-mtls.yml"),
            ServerLimits::default(),
        )
        .await;

        let mut with_cert = tls_client(true)
            .connect(localhost(), server.connect().await)
            .await
            .expect("handshake with a client certificate");
        assert_eq!(get_path(&mut with_cert, "/peer").await.status, 200);

        // Under TLS 1.3 the client learns of the refusal on its first read, not in connect.
        let refused = async {
            let mut tls = tls_client(false)
                .connect(localhost(), server.connect().await)
                .await?;
            write_all(&mut tls, b"GET /peer HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
            read_response(&mut tls).await
        };
        assert!(
            refused.await.is_err(),
            "served a client without a certificate"
        );
    }

    #[tokio::test]
    async fn client_certificates_are_optional_with_verify_if_given() {
        let server = Server::start(
            peer_app(),
            acceptor("valid-mtls-optional.yml"),
            ServerLimits::default(),
        )
        .await;
        for with_cert in [false, true] {
            let mut tls = tls_client(with_cert)
                .connect(localhost(), server.connect().await)
                .await
                .expect("handshake");
            assert_eq!(
                get_path(&mut tls, "/peer").await.status,
                200,
                "certificate: {with_cert}"
            );
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn shutdown_signal_resolves_on_sigterm() {
        // The call installs the handlers, so the SIGTERM below cannot end the test process.
        let mut signal = Box::pin(shutdown_signal());
        let early = tokio::time::timeout(Duration::from_millis(50), &mut signal).await;
        assert!(early.is_err(), "resolved without a signal");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        tokio::time::timeout(PATIENCE, signal)
            .await
            .expect("resolved on SIGTERM");
    }
}
