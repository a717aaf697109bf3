//! `/metrics` pages, encoded once and shared: memory stays near one page whatever the number of
//! scrapers.
//!
//! - One encode per (format, gzip) at a time: a scraper that asks while a page in its format is
//!   being encoded waits for that page and gets the same bytes (the page began before it asked,
//!   by at most one encode, as a page always reflects some moment during the scrape). The
//!   encode runs to its end even when the scraper that started it hangs up, for the others.
//! - At most [`MAX_PAGES`] pages exist at once, encoding or being sent, whatever their formats:
//!   a page is freed when the last response holding it is sent (or its client cut by the send
//!   timeout), and a scrape that needs a new page while all are held waits for one, at most
//!   half its request timeout, then gets 503.
//! - So at most [`MAX_PAGES`] encoding threads run, off the threads that answer webhooks, and at a
//!   lower CPU priority than them (nice [`crate::niceness::BACKGROUND`] on Linux): when the CPU is short,
//!   webhooks keep their latency and scrapes take longer.
//! - A page is sent in slices of [`SLICE`] bytes (no copy), and its connection lets the other
//!   tasks run between two slices ([`PageBody`]): a webhook never waits behind a whole page, only
//!   behind one slice of each page being sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::expose::{Exposition, Format, Output};

/// Pages alive at once, all formats together.
pub const MAX_PAGES: usize = 3;

/// The bytes of a page sent before its connection lets other tasks run.
pub const SLICE: usize = 128 * 1024;

/// A shared page as a response body: [`SLICE`]-sized frames of the one buffer, with a yield to
/// the scheduler between two of them.
pub struct PageBody {
    page: Bytes,
    yielded: bool,
}

impl PageBody {
    /// The body of `page`.
    pub fn new(page: Bytes) -> Self {
        Self {
            page,
            yielded: false,
        }
    }
}

impl hyper::body::Body for PageBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        if self.page.is_empty() {
            return Poll::Ready(None);
        }
        if !self.yielded {
            // Back of the run queue: the webhooks waiting there go first.
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.yielded = false;
        let n = self.page.len().min(SLICE);
        let slice = self.page.split_to(n);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.page.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.page.len() as u64)
    }
}

/// Why no page could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// Every page slot is held by responses still being sent.
    #[error("too many metric pages are still being sent; retry shortly")]
    Busy,
    /// The encode failed (it panicked).
    #[error("encoding the metrics failed")]
    Failed,
}

type Shared = Option<Result<Bytes, PageError>>;

/// The encode in flight for one (format, gzip), which later scrapers join.
struct InFlight {
    generation: u64,
    page: watch::Receiver<Shared>,
}

/// The shared pages of one router.
pub struct Pages {
    /// One per (format, gzip), see [`slot`].
    in_flight: [Mutex<Option<InFlight>>; 6],
    next_generation: AtomicU64,
    alive: Arc<Semaphore>,
}

impl Default for Pages {
    fn default() -> Self {
        Self {
            in_flight: Default::default(),
            next_generation: AtomicU64::new(0),
            alive: Arc::new(Semaphore::new(MAX_PAGES)),
        }
    }
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("free", &self.alive.available_permits())
            .finish()
    }
}

fn slot(format: Format, gzip: bool) -> usize {
    let f = match format {
        Format::Text => 0,
        Format::OpenMetrics => 1,
        Format::Protobuf => 2,
    };
    f * 2 + usize::from(gzip)
}

/// A page's bytes with its place among the [`MAX_PAGES`], freed with the last copy.
struct Held {
    bytes: Vec<u8>,
    _place: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Pages {
    /// The page of `exposition` in `format` (gzipped with `gzip`), shared with every scraper of
    /// the same kind asking meanwhile; waits at most `wait` for a free place.
    pub async fn page(
        self: &Arc<Self>,
        exposition: &Arc<Exposition>,
        format: Format,
        gzip: bool,
        wait: Duration,
    ) -> Result<Bytes, PageError> {
        let key = slot(format, gzip);
        let mut page = {
            let mut in_flight = self.in_flight[key]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &*in_flight {
                Some(joined) => joined.page.clone(),
                None => {
                    let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
                    let (tx, rx) = watch::channel(None);
                    *in_flight = Some(InFlight {
                        generation,
                        page: rx.clone(),
                    });
                    tokio::spawn(self.clone().encode(
                        exposition.clone(),
                        format,
                        gzip,
                        wait,
                        generation,
                        tx,
                    ));
                    rx
                }
            }
        };
        match page.wait_for(Option::is_some).await {
            Ok(shared) => shared.clone().unwrap_or(Err(PageError::Failed)),
            Err(_gone) => Err(PageError::Failed),
        }
    }

    /// Takes a place, encodes on the blocking pool, and hands the page to everyone waiting.
    async fn encode(
        self: Arc<Self>,
        exposition: Arc<Exposition>,
        format: Format,
        gzip: bool,
        wait: Duration,
        generation: u64,
        page: watch::Sender<Shared>,
    ) {
        let place = tokio::time::timeout(wait, self.alive.clone().acquire_owned()).await;
        let result = match place {
            Ok(Ok(place)) => {
                let (done, encoded) = tokio::sync::oneshot::channel();
                // A thread of its own, as its priority is lowered for good.
                let spawned = std::thread::Builder::new()
                    .name("acquire-encode".into())
                    .spawn(move || {
                        crate::niceness::lower_this_thread();
                        let mut out = if gzip {
                            Output::gzip()
                        } else {
                            Output::whole(Vec::with_capacity(64 * 1024))
                        };
                        exposition.write(format, &mut out);
                        let _ = done.send(out.into_vec());
                    });
                match spawned {
                    Ok(_) => match encoded.await {
                        Ok(bytes) => Ok(Bytes::from_owner(Held {
                            bytes,
                            _place: place,
                        })),
                        Err(_panicked) => {
                            tracing::error!("encoding the metrics failed");
                            Err(PageError::Failed)
                        }
                    },
                    Err(error) => {
                        tracing::error!(%error, "cannot start a thread to encode the metrics");
                        Err(PageError::Failed)
                    }
                }
            }
            Ok(Err(_closed)) => Err(PageError::Failed),
            Err(_waited) => Err(PageError::Busy),
        };
        // Later scrapers start the next page; those waiting get this one.
        {
            let mut in_flight = self.in_flight[slot(format, gzip)]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if in_flight
                .as_ref()
                .is_some_and(|f| f.generation == generation)
            {
                *in_flight = None;
            }
        }
        page.send_replace(Some(result));
    }
}
