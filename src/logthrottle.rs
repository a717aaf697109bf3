//! Log lines that cannot be flooded: a line that repeats (a refused webhook, by reason; a failed
//! commit) is written at most [`BURST`] times per window, and one summary line at the window's
//! end counts the rest: "2990 more like this in the last minute". Only the log is limited: the
//! counters of what happened stay exact.
//!
//! The window is [`set_window`] (`--log.repeat-window`, a minute by default). Each kind of line
//! has its own fixed window, opened by its first line; [`flush`], called every second by the
//! server, writes the summaries of the windows that have ended, so the last one of a flood is
//! not held back until the next line of its kind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::Level;

/// Lines of one kind written per window before the rest are only counted.
pub const BURST: u32 = 10;

/// The window, in milliseconds.
static WINDOW_MS: AtomicU64 = AtomicU64::new(60_000);

/// Every kind of line seen so far: a handful, so a list is the fastest map.
static KINDS: Mutex<Vec<Kind>> = Mutex::new(Vec::new());

/// One kind of repeated line and its current window.
struct Kind {
    level: Level,
    message: &'static str,
    detail: &'static str,
    opened: Instant,
    written: u32,
    suppressed: u64,
}

/// A summary to write once the lock is released.
struct Summary {
    level: Level,
    message: &'static str,
    detail: &'static str,
    suppressed: u64,
    window: Duration,
}

/// Sets the window (at least a millisecond).
pub fn set_window(window: Duration) {
    let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    WINDOW_MS.store(ms, Ordering::Relaxed);
}

fn window() -> Duration {
    Duration::from_millis(WINDOW_MS.load(Ordering::Relaxed))
}

/// Whether to write a line of the kind `message` (with `detail`, such as a reason, telling
/// apart kinds that share a message) at `level`: true for the first [`BURST`] of a window; the
/// rest are counted for the window's summary. The caller writes the line itself, with its own
/// fields.
pub fn allow(level: Level, message: &'static str, detail: &'static str) -> bool {
    let now = Instant::now();
    let window = window();
    let (allowed, summary) = {
        let mut kinds = KINDS.lock().unwrap_or_else(PoisonError::into_inner);
        let kind = match kinds
            .iter()
            .position(|k| k.message == message && k.detail == detail)
        {
            Some(i) => &mut kinds[i],
            None => {
                kinds.push(Kind {
                    level,
                    message,
                    detail,
                    opened: now,
                    written: 0,
                    suppressed: 0,
                });
                kinds.last_mut().expect("just pushed")
            }
        };
        let summary = roll(kind, now, window, false);
        let allowed = kind.written < BURST;
        if allowed {
            kind.written += 1;
        } else {
            kind.suppressed += 1;
        }
        (allowed, summary)
    };
    if let Some(summary) = summary {
        summary.write();
    }
    allowed
}

/// Writes the summaries of the windows that have ended.
pub fn flush() {
    summarise(false);
}

/// Writes every summary still due, ended window or not: at shutdown.
pub fn finish() {
    summarise(true);
}

fn summarise(all: bool) {
    let now = Instant::now();
    let window = window();
    let summaries: Vec<Summary> = {
        let mut kinds = KINDS.lock().unwrap_or_else(PoisonError::into_inner);
        kinds
            .iter_mut()
            .filter_map(|kind| roll(kind, now, window, all))
            .collect()
    };
    for summary in summaries {
        summary.write();
    }
}

/// Opens a new window when the current one has ended (or at once with `now_anyway`); the
/// summary of the one closed, if lines were held back.
fn roll(kind: &mut Kind, now: Instant, window: Duration, now_anyway: bool) -> Option<Summary> {
    if !now_anyway && now.duration_since(kind.opened) < window {
        return None;
    }
    let suppressed = std::mem::take(&mut kind.suppressed);
    kind.opened = now;
    kind.written = 0;
    (suppressed > 0).then_some(Summary {
        level: kind.level,
        message: kind.message,
        detail: kind.detail,
        suppressed,
        window,
    })
}

impl Summary {
    fn write(&self) {
        let Summary {
            message,
            detail,
            suppressed,
            ..
        } = *self;
        let span = match self.window.as_secs() {
            60 if self.window.subsec_nanos() == 0 => "minute".to_owned(),
            _ => format!("{:?}", self.window),
        };
        macro_rules! summary {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    like = message,
                    detail,
                    suppressed,
                    "{suppressed} more like this in the last {span}"
                )
            };
        }
        match self.level {
            Level::ERROR => summary!(Level::ERROR),
            Level::WARN => summary!(Level::WARN),
            Level::INFO => summary!(Level::INFO),
            Level::DEBUG => summary!(Level::DEBUG),
            _ => summary!(Level::TRACE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_writes_its_burst_then_counts_the_rest_until_its_window_ends() {
        let mut kind = Kind {
            level: Level::WARN,
            message: "m",
            detail: "d",
            opened: Instant::now(),
            written: 0,
            suppressed: 0,
        };
        let window = Duration::from_secs(60);
        let start = kind.opened;
        assert!(roll(&mut kind, start + Duration::from_secs(59), window, false).is_none());
        kind.written = BURST;
        kind.suppressed = 7;
        let summary = roll(&mut kind, start + window, window, false).expect("lines were held back");
        assert_eq!(summary.suppressed, 7);
        assert_eq!((kind.written, kind.suppressed), (0, 0), "a new window");
        assert!(
            roll(&mut kind, start + window * 2, window, false).is_none(),
            "nothing held back, nothing to say"
        );
    }

    #[test]
    fn kinds_are_limited_apart() {
        // Distinct messages of this test only, so other tests in the process do not interfere.
        let a = (0..BURST + 5)
            .filter(|_| allow(Level::WARN, "logthrottle test a", "x"))
            .count();
        let b = (0..3)
            .filter(|_| allow(Level::WARN, "logthrottle test a", "y"))
            .count();
        assert_eq!((a, b), (BURST as usize, 3));
    }
}
