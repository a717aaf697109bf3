//! The HTTP/1.1 accept loop: optional TLS, timeouts for each phase of a connection, a connection
//! cap that nobody can fill by holding connections open, and graceful shutdown, which
//! `axum::serve` does not offer.
//!
//! - Idle timeout: a keep-alive connection waiting for its next request (or a new one for its
//!   first) is closed after [`ServerLimits::idle_timeout`].
//! - Header timeout (slowloris protection): once a request's first byte has arrived, its whole
//!   head must follow within [`ServerLimits::header_read_timeout`].
//! - Send timeout: a response the client does not take (a reader that stops reading) is cut
//!   after [`ServerLimits::send_timeout`] from the first write it held up.
//! - Maximum age: after [`ServerLimits::max_connection_age`] a connection is closed once its
//!   current request is answered, so none lives for ever.
//! - Connection cap: at most [`ServerLimits::max_connections`] at once. When a new one arrives at
//!   the cap, the connection idle the longest is closed to make room (as nginx and hyper-based
//!   proxies do), so idle keep-alive connections can never keep a client out; only when every
//!   connection is busy does the newcomer wait, in the kernel's backlog. One HTTP/1.1 connection
//!   carries one request at a time, so this also caps concurrent requests.
//! - Per-client cap (off unless [`ServerLimits::max_connections_per_client`] is set): a client
//!   (an IPv4 address or an IPv6 /64) at its cap has its own longest-idle connection closed for
//!   the new one, or the new one refused when all of its connections are busy. Behind a proxy
//!   every connection comes from the proxy: leave it off there.
//! - Body read timeouts and size limits belong to the router (tower-http layers), not here.
//! - Handlers see the client's address as `ConnectInfo<SocketAddr>`
//!   ([`axum::extract::ConnectInfo`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tower::Layer;
use tracing::{debug, info, warn};

/// Pause after an accept error such as EMFILE (out of file descriptors), so the loop does not
/// spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// How often a newcomer waiting at the cap looks again for an idle connection to close.
const CAP_RETRY: Duration = Duration::from_millis(50);

/// Bounds on what one client can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time a client has to send a request's head once its first byte has arrived.
    pub header_read_timeout: Duration,
    /// Time a connection may wait for its next request (or its first).
    pub idle_timeout: Duration,
    /// Time a response may wait for the client to take it, from the first write it held up.
    pub send_timeout: Duration,
    /// Age after which a connection is closed once its current request is answered.
    pub max_connection_age: Duration,
    /// Connections served at once; at the cap the longest-idle one makes room.
    pub max_connections: usize,
    /// Connections one client may hold; 0 for no limit (behind a proxy).
    pub max_connections_per_client: usize,
    /// Time a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(600),
            max_connections: 1024,
            max_connections_per_client: 0,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Who a connection or a check is for: an IPv4 address, or an IPv6 /64 (one host usually holds
/// a whole /64, so a finer key would give it thousands of places).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    /// An IPv4 address (IPv4-mapped IPv6 included).
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl Client {
    /// The client an address belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(v4.to_bits()),
            IpAddr::V6(v6) => Self::V6((v6.to_bits() >> 64) as u64),
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
    let registry = Arc::new(Registry::default());
    let mut http = http1::Builder::new();
    // The idle and header timeouts are kept by each connection's own clock (`drive`); hyper's
    // header timer, which starts when the previous response ends, only backs them up.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout + limits.header_read_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    // Owns every connection task, so the ones still running after the drain timeout are aborted.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    'accept: loop {
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
        let client = Client::of(peer.ip());
        let per_client = limits.max_connections_per_client;
        if per_client > 0
            && registry.count(client) >= per_client
            && !registry.close_longest_idle(Some(client))
        {
            debug!(%peer, "refused: the client holds its maximum of busy connections");
            continue;
        }
        let permit = loop {
            if let Ok(permit) = permits.clone().try_acquire_owned() {
                break permit;
            }
            // At the cap: make room by closing the connection idle the longest, if any.
            registry.close_longest_idle(None);
            tokio::select! {
                biased;
                () = &mut shutdown => break 'accept,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => break permit,
                    Err(_closed) => break 'accept,
                },
                () = tokio::time::sleep(CAP_RETRY) => {}
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let (id, state) = registry.register(client);
        let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app.clone()));
        let connection = Connection {
            stream,
            peer,
            service,
            tls: tls.clone(),
            http: http.clone(),
            state,
            limits,
        };
        let registry = registry.clone();
        connections.spawn(async move {
            let _permit = permit;
            connection.run().await;
            registry.unregister(id);
        });
    }

    drop(listener);
    debug!(
        connections = connections.len(),
        "stopped accepting; draining"
    );
    registry.close_all();
    let drained = tokio::time::timeout(drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = connections.len(),
            ?drain_timeout,
            "drain timeout reached; closing the remaining connections"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// Milliseconds on the server's clock; `BUSY` and `NEVER` are markers, not times.
const BUSY: u64 = u64::MAX;
const NEVER: u64 = u64::MAX;

/// Every live connection, so that one can be closed to make room.
struct Registry {
    epoch: Instant,
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    next: u64,
    connections: HashMap<u64, (Client, Arc<ConnState>)>,
    per_client: HashMap<Client, usize>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            inner: Mutex::default(),
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, client: Client) -> (u64, Arc<ConnState>) {
        let state = Arc::new(ConnState::new(self.epoch));
        let mut inner = self.lock();
        let id = inner.next;
        inner.next += 1;
        inner.connections.insert(id, (client, state.clone()));
        *inner.per_client.entry(client).or_default() += 1;
        (id, state)
    }

    fn unregister(&self, id: u64) {
        let mut inner = self.lock();
        if let Some((client, _)) = inner.connections.remove(&id)
            && let Some(n) = inner.per_client.get_mut(&client)
        {
            *n -= 1;
            if *n == 0 {
                inner.per_client.remove(&client);
            }
        }
    }

    fn count(&self, client: Client) -> usize {
        self.lock().per_client.get(&client).copied().unwrap_or(0)
    }

    /// Asks the connection idle the longest (of `client`, or of anyone) to close; false when
    /// every one is busy or already closing.
    fn close_longest_idle(&self, client: Option<Client>) -> bool {
        let inner = self.lock();
        let longest = inner
            .connections
            .values()
            .filter(|(c, state)| client.is_none_or(|want| *c == want) && !state.is_closing())
            .filter_map(|(_, state)| state.idle_since().map(|since| (since, state)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, state)) => {
                state.close();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for (_, state) in self.lock().connections.values() {
            state.close();
        }
    }
}

/// What a connection is doing, shared between its task (which changes it) and the accept loop
/// (which looks for the longest-idle one).
struct ConnState {
    epoch: Instant,
    accepted: Instant,
    /// When the last response was handed over (or the connection accepted); `BUSY` while a
    /// request is being served.
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived; `NEVER` before it.
    head_since: AtomicU64,
    closing: AtomicBool,
    /// Whether a request ever reached the router.
    served: AtomicBool,
    close: Notify,
}

impl ConnState {
    fn new(epoch: Instant) -> Self {
        let state = Self {
            epoch,
            accepted: Instant::now(),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(NEVER),
            closing: AtomicBool::new(false),
            served: AtomicBool::new(false),
            close: Notify::new(),
        };
        state.idle_since.store(state.now(), Ordering::Relaxed);
        state
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn idle_since(&self) -> Option<u64> {
        let since = self.idle_since.load(Ordering::Relaxed);
        (since != BUSY).then_some(since)
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.close.notify_one();
    }

    fn has_served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// A request reached the router.
    fn request_started(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.idle_since.store(BUSY, Ordering::Relaxed);
        self.head_since.store(NEVER, Ordering::Relaxed);
    }

    /// Its response was handed over (or dropped).
    fn request_finished(&self) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
    }

    /// Bytes arrived from the client.
    fn bytes_read(&self) {
        if self.idle_since().is_some() && self.head_since.load(Ordering::Relaxed) == NEVER {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// When the connection is to be closed if nothing changes meanwhile; `None` while busy.
    fn deadline(&self, limits: &ServerLimits) -> Option<Instant> {
        self.idle_since()?;
        let head = self.head_since.load(Ordering::Relaxed);
        Some(if head == NEVER {
            self.at(self.idle_since.load(Ordering::Relaxed)) + limits.idle_timeout
        } else {
            self.at(head) + limits.header_read_timeout
        })
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    service: TowerToHyperService<axum::middleware::AddExtension<Router, ConnectInfo<SocketAddr>>>,
    tls: Option<TlsAcceptor>,
    http: Arc<http1::Builder>,
    state: Arc<ConnState>,
    limits: ServerLimits,
}

impl Connection {
    /// Runs the TLS handshake when configured, then HTTP/1.1 until the client leaves, an error
    /// occurs, a limit closes it or shutdown asks it to finish its current request and close.
    async fn run(self) {
        let Self {
            stream,
            peer,
            service,
            tls,
            http,
            state,
            limits,
        } = self;
        let stream = Watched::new(stream, state.clone(), limits.send_timeout);
        let service = Tracked {
            inner: service,
            state: state.clone(),
        };
        let served = match tls {
            None => {
                let conn = http.serve_connection(TokioIo::new(stream), service);
                drive(conn, &state, &limits).await
            }
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                let stream =
                    match tokio::time::timeout(limits.tls_handshake_timeout, handshake).await {
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
                drive(conn, &state, &limits).await
            }
        };
        if let Err(error) = served {
            debug!(%peer, %error, "connection closed with an error");
        }
    }
}

/// Polls a connection to its end, asking it to close (after its current request, at once when
/// idle) when it is told to, when its idle or header deadline passes, or at its maximum age.
async fn drive<I, S, B>(
    conn: http1::Connection<I, S>,
    state: &ConnState,
    limits: &ServerLimits,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = std::pin::pin!(conn);
    let told = state.close.notified();
    let mut told = std::pin::pin!(told);
    let too_old = tokio::time::sleep_until((state.accepted + limits.max_connection_age).into());
    let mut too_old = std::pin::pin!(too_old);
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
    let timer = tokio::time::sleep_until(far());
    let mut timer = std::pin::pin!(timer);
    let mut closing = false;
    std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            if closing {
                return Poll::Pending;
            }
            // The state may have changed while the connection was polled: arm the timer anew.
            let deadline = state.deadline(limits).map_or_else(far, Into::into);
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            let expired = timer.as_mut().poll(cx).is_ready()
                && state.deadline(limits).is_some_and(|d| d <= Instant::now());
            let aged = too_old.as_mut().poll(cx).is_ready();
            let asked = told.as_mut().poll(cx).is_ready();
            if !(expired || aged || asked) {
                return Poll::Pending;
            }
            if !state.has_served() {
                // No request yet, so nothing to finish: hyper would wait for the first one.
                return Poll::Ready(Ok(()));
            }
            // Closes an idle connection at once, a busy one after its response; poll again.
            conn.as_mut().graceful_shutdown();
            closing = true;
        }
    })
    .await
}

/// The service of one connection: marks the connection busy from a request's arrival until its
/// response has been handed over.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S, B> hyper::service::Service<hyper::Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = hyper::Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        self.state.request_started();
        let guard = Finished(self.state.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        })
    }
}

/// Marks the request finished when dropped: with its response body, or with the request if
/// no response came.
struct Finished(Arc<ConnState>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that marks its request finished once hyper is done with it.
struct TrackedBody<B> {
    body: B,
    _guard: Finished,
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's socket, watched: bytes read mark the start of a request's head, and a write the
/// client holds up longer than the send timeout fails the connection.
struct Watched {
    stream: TcpStream,
    state: Arc<ConnState>,
    send_timeout: Duration,
    /// Since the first write held up, until everything written has been taken.
    held: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    fn new(stream: TcpStream, state: Arc<ConnState>, send_timeout: Duration) -> Self {
        Self {
            stream,
            state,
            send_timeout,
            held: None,
        }
    }

    /// After a write that could not complete: arms the send deadline, or fails past it.
    fn held_up(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let send_timeout = self.send_timeout;
        let held = self
            .held
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(send_timeout)));
        ready!(held.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not take the response within the send timeout",
        )))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.state.bytes_read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, bytes) {
            Poll::Pending => self.held_up(cx),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.held_up(cx),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        // Everything written has been taken by the kernel: nothing is held up any more.
        self.held = None;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
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
    async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
        let idle = Duration::from_millis(300);
        let limits = ServerLimits {
            idle_timeout: idle,
            header_read_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        };
        let server = Server::start(peer_app(), None, limits).await;
        let mut stream = server.connect().await;
        assert_eq!(get_path(&mut stream, "/peer").await.status, 200);
        let idle_since = Instant::now();
        assert!(read_until_closed(&mut stream).await.is_empty());
        assert!(idle_since.elapsed() >= idle);

        // A connection that never says anything goes the same way.
        let mut silent = server.connect().await;
        let connected = Instant::now();
        assert!(read_until_closed(&mut silent).await.is_empty());
        assert!(connected.elapsed() >= idle);
    }

    #[tokio::test]
    async fn the_header_timeout_runs_from_a_requests_first_byte_not_from_the_idle_time() {
        let limits = ServerLimits {
            idle_timeout: Duration::from_millis(400),
            header_read_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        };
        let server = Server::start(peer_app(), None, limits).await;
        let mut stream = server.connect().await;
        assert_eq!(get_path(&mut stream, "/peer").await.status, 200);
        // Idle for most of the idle timeout, then a head that takes longer than it to arrive.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for part in ["GET /pe", "er HTTP/1.1\r\n", "Host: lo", "calhost\r\n\r\n"] {
            write_all(&mut stream, part.as_bytes())
                .await
                .expect("write");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let response = tokio::time::timeout(PATIENCE, read_response(&mut stream))
            .await
            .expect("answered")
            .expect("a response");
        assert_eq!(response.status, 200);
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
    async fn at_the_cap_the_longest_idle_connection_makes_room() {
        let limits = ServerLimits {
            max_connections: 2,
            ..ServerLimits::default()
        };
        let server = Server::start(peer_app(), None, limits).await;
        let mut oldest = server.connect().await;
        assert_eq!(get_path(&mut oldest, "/peer").await.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut newer = server.connect().await;
        assert_eq!(get_path(&mut newer, "/peer").await.status, 200);

        let mut third = server.connect().await;
        let response = tokio::time::timeout(PATIENCE, get_path(&mut third, "/peer"))
            .await
            .expect("served at the cap");
        assert_eq!(response.status, 200);
        assert!(
            read_until_closed(&mut oldest).await.is_empty(),
            "the longest-idle connection was closed"
        );
        assert_eq!(
            get_path(&mut newer, "/peer").await.status,
            200,
            "the newer one lives"
        );
    }

    #[tokio::test]
    async fn when_every_connection_is_busy_a_newcomer_waits_for_a_slot() {
        let (app, mut started) = slow_app(Duration::from_millis(600));
        let limits = ServerLimits {
            max_connections: 1,
            ..ServerLimits::default()
        };
        let server = Server::start(app, None, limits).await;
        let mut busy = server.connect().await;
        write_all(&mut busy, b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        started.recv().await.expect("handler started");

        let mut second = server.connect().await;
        write_all(
            &mut second,
            b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await
        .expect("write");
        let waiting =
            tokio::time::timeout(Duration::from_millis(200), read_response(&mut second)).await;
        assert!(waiting.is_err(), "served while the only slot is busy");
        let first = read_response(&mut busy)
            .await
            .expect("the busy one finishes");
        assert_eq!((first.status, first.body.as_str()), (200, "done"));
        // Idle now: it makes room for the newcomer.
        let response = tokio::time::timeout(PATIENCE, read_response(&mut second))
            .await
            .expect("served once a slot was free")
            .expect("a response");
        assert_eq!(response.status, 200);
    }

    #[tokio::test]
    async fn a_client_at_its_own_cap_gives_up_its_idle_connection_or_is_refused() {
        let (app, mut started) = slow_app(Duration::from_secs(2));
        let app = app.merge(peer_app());
        let limits = ServerLimits {
            max_connections_per_client: 2,
            ..ServerLimits::default()
        };
        let server = Server::start(app, None, limits).await;
        let mut idle = server.connect().await;
        assert_eq!(get_path(&mut idle, "/peer").await.status, 200);
        let mut busy = server.connect().await;
        write_all(&mut busy, b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        started.recv().await.expect("handler started");

        // A third from the same address: the idle one makes room.
        let mut third = server.connect().await;
        write_all(&mut third, b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        started.recv().await.expect("the third is served");
        assert!(
            read_until_closed(&mut idle).await.is_empty(),
            "the idle one was closed"
        );

        // Both busy now: a fourth is refused at once instead of waiting.
        let mut fourth = server.connect().await;
        assert!(
            read_until_closed(&mut fourth).await.is_empty(),
            "a fourth connection is closed unanswered"
        );
        for stream in [&mut busy, &mut third] {
            let response = read_response(stream).await.expect("a response");
            assert_eq!(response.status, 200);
        }
    }

    #[tokio::test]
    async fn a_response_the_client_does_not_take_is_cut_after_the_send_timeout() {
        const BIG: usize = 64 << 20;
        let app = Router::new()
            .route("/big", get(|| async { vec![b'x'; BIG] }))
            .merge(peer_app());
        let limits = ServerLimits {
            send_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        };
        let server = Server::start(app, None, limits).await;
        let mut stream = server.connect().await;
        write_all(&mut stream, b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("write");
        // Not reading: the kernel's buffers fill and the server's writes are held up.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let taken = read_until_closed(&mut stream).await;
        assert!(
            taken.len() < BIG,
            "the connection was cut before the whole body ({} bytes)",
            taken.len()
        );
        let mut next = server.connect().await;
        assert_eq!(get_path(&mut next, "/peer").await.status, 200);
    }

    #[tokio::test]
    async fn a_connection_is_closed_at_its_maximum_age_once_its_request_is_answered() {
        let (app, mut started) = slow_app(Duration::from_millis(500));
        let limits = ServerLimits {
            max_connection_age: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(60),
            ..ServerLimits::default()
        };
        let server = Server::start(app, None, limits).await;
        let mut stream = server.connect().await;
        write_all(
            &mut stream,
            b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .await
        .expect("write");
        started.recv().await.expect("handler started");
        // The age passes during the request: it is answered, then the connection closes.
        let response = read_response(&mut stream).await.expect("answered");
        assert_eq!((response.status, response.body.as_str()), (200, "done"));
        assert!(
            response
                .head
                .to_ascii_lowercase()
                .contains("connection: close"),
            "{}",
            response.head
        );
        assert!(read_until_closed(&mut stream).await.is_empty());
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
