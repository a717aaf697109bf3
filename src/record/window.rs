//! The staffing window: arrivals and handle times over a sliding window, in slots, per
//! department.

use std::time::Duration;

use crate::record::snapshot::WindowState;

/// Most slots a [`Window`] keeps, so a typo in the configuration cannot allocate gigabytes.
pub const MAX_SLOTS: u32 = 10_000;

/// One slot of a [`Window`]: what arrived during `[index·width, (index+1)·width)`.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Absolute slot number, `floor(time / width)`; tells a live slot from a stale one.
    index: i64,
    arrivals: u64,
    closed: u64,
    handle_sum: f64,
}

/// Per-department arrivals and handle times over a sliding window (default 1 h), in fixed slots
/// (e.g. 60 one-minute slots) so memory is constant whatever the traffic.
///
/// Out of order: an event goes to the slot of its own time, so a retry minutes late still counts
/// in its own minute. One older than the window is dropped: counted in [`Window::dropped`] when
/// its slot already holds a newer time, and otherwise left in its stale slot, which no later
/// window counts. Lateness is judged per slot, never against the newest event, so one timestamp
/// far in the future costs a slot, not the rest of the window.
///
/// Slots: the window ending at `now` holds the slot of `now` (partly elapsed) and the slots
/// before it, so it spans between `slots - 1` and `slots` slot lengths; rates divide by exactly
/// that span.
///
/// Coverage: until the window has run its full length, rates divide by the time actually
/// covered, from the earliest of the start given to [`Window::starting_at`] and the events
/// recorded, not by the full window (which would under-estimate the demand after a restart).
/// The time covered is never taken below one slot, so a single first chat does not read as a
/// burst.
#[derive(Clone, Debug)]
pub struct Window {
    width: f64,
    slots: Vec<Slot>,
    start: Option<f64>,
    dropped: u64,
}

impl Default for Window {
    /// One hour in 60 one-minute slots.
    fn default() -> Self {
        Self::new(Duration::from_secs(3600), 60)
    }
}

impl Window {
    /// A window of length `window` in `slots` slots, whose coverage begins at the first event
    /// recorded. A zero length is raised to one second; slots are clamped to 1..=[`MAX_SLOTS`].
    pub fn new(window: Duration, slots: u32) -> Self {
        let slots = slots.clamp(1, MAX_SLOTS);
        let length = window.as_secs_f64().max(1.0);
        Window {
            width: length / f64::from(slots),
            slots: vec![
                Slot {
                    index: i64::MIN,
                    ..Slot::default()
                };
                slots as usize
            ],
            start: None,
            dropped: 0,
        }
    }

    /// Like [`Window::new`], with coverage beginning at `start` (unix seconds): the exporter's
    /// start, so the quiet minutes before the first chat count as quiet.
    pub fn starting_at(window: Duration, slots: u32, start: f64) -> Self {
        let mut this = Self::new(window, slots);
        if start.is_finite() {
            this.start = Some(start);
        }
        this
    }

    /// The state, for a snapshot.
    pub fn export(&self) -> WindowState {
        WindowState {
            width: self.width,
            slots: self
                .slots
                .iter()
                .map(|s| (s.index, s.arrivals, s.closed, s.handle_sum))
                .collect(),
            start: self.start,
            dropped: self.dropped,
        }
    }

    /// A window with a snapshot's state; `None` when the state is not a window's.
    pub fn import(state: &WindowState) -> Option<Self> {
        if state.slots.is_empty() || state.slots.len() > MAX_SLOTS as usize {
            return None;
        }
        if !(state.width.is_finite() && state.width > 0.0) {
            return None;
        }
        Some(Window {
            width: state.width,
            slots: state
                .slots
                .iter()
                .map(|&(index, arrivals, closed, handle_sum)| Slot {
                    index,
                    arrivals,
                    closed,
                    handle_sum,
                })
                .collect(),
            start: state.start,
            dropped: state.dropped,
        })
    }

    /// The window's length in seconds.
    pub fn length_seconds(&self) -> f64 {
        self.width * self.slots.len() as f64
    }

    /// Events dropped because their slot already held a newer time, or they had no finite time.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn slot_index(&self, at: f64) -> i64 {
        // `as` saturates, so absurd times land in extreme slots instead of panicking.
        (at / self.width).floor() as i64
    }

    fn position(&self, index: i64) -> usize {
        // rem_euclid of a positive length is in 0..len, which fits a usize.
        index.rem_euclid(self.slots.len() as i64) as usize
    }

    /// A chat arrived (its close event, or its start) at `at` (unix seconds, f64), with its
    /// handle time (duration) if known. A negative or non-finite handle time counts the arrival
    /// only.
    pub fn record(&mut self, at: f64, handle_time: Option<f64>) {
        if !at.is_finite() {
            self.dropped += 1;
            return;
        }
        let index = self.slot_index(at);
        let position = self.position(index);
        let slot = &mut self.slots[position];
        if slot.index > index {
            self.dropped += 1;
            return;
        }
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        slot.arrivals += 1;
        if let Some(handle) = handle_time.filter(|h| h.is_finite() && *h >= 0.0) {
            slot.closed += 1;
            slot.handle_sum += handle;
        }
        self.start = Some(self.start.map_or(at, |start| start.min(at)));
    }

    /// Arrivals per second and mean handle time over the window ending at `now`; None for the
    /// handle time when nothing closed in the window. (0, None) before anything is known.
    pub fn rates(&self, now: f64) -> (f64, Option<f64>) {
        let Some(start) = self.start.filter(|_| now.is_finite()) else {
            return (0.0, None);
        };
        let newest = self.slot_index(now);
        let oldest = newest.saturating_sub(self.slots.len() as i64 - 1);
        let (mut arrivals, mut closed, mut handle_sum) = (0u64, 0u64, 0.0);
        for slot in &self.slots {
            if (oldest..=newest).contains(&slot.index) {
                arrivals += slot.arrivals;
                closed += slot.closed;
                handle_sum += slot.handle_sum;
            }
        }
        let begin = (oldest as f64 * self.width).max(start);
        let covered = (now - begin).max(self.width);
        let mean_handle = (closed > 0).then(|| handle_sum / closed as f64);
        (arrivals as f64 / covered, mean_handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(start: f64) -> Window {
        Window::starting_at(Duration::from_secs(3600), 60, start)
    }

    #[test]
    fn window_rates_over_a_full_hour() {
        let mut w = window(0.0);
        // One chat a minute, mid-minute, each handled in 300 s.
        for minute in 0..60 {
            w.record(f64::from(minute) * 60.0 + 30.0, Some(300.0));
        }
        let (rate, handle) = w.rates(3600.0);
        // At 3600 the window's slots run from 60 s to now: 59 chats over 3540 s.
        assert!((rate - 1.0 / 60.0).abs() < 1e-12, "{rate}");
        assert_eq!(handle, Some(300.0));
    }

    #[test]
    fn window_just_started_divides_by_the_time_covered() {
        let mut w = window(1000.0);
        for i in 0..10 {
            w.record(1000.0 + f64::from(i) * 60.0, Some(120.0 + f64::from(i)));
        }
        let (rate, handle) = w.rates(1600.0);
        assert!((rate - 10.0 / 600.0).abs() < 1e-12, "{rate}");
        assert_eq!(handle, Some(124.5));
    }

    #[test]
    fn window_without_start_begins_at_the_first_event() {
        let mut w = Window::new(Duration::from_secs(3600), 60);
        assert_eq!(w.rates(5000.0), (0.0, None));
        w.record(5000.0, None);
        w.record(5300.0, None);
        let (rate, handle) = w.rates(5600.0);
        assert!((rate - 2.0 / 600.0).abs() < 1e-12, "{rate}");
        assert_eq!(handle, None, "no chat closed with a handle time");
        // One chat just now reads as one per slot, not as a burst.
        let mut fresh = Window::new(Duration::from_secs(3600), 60);
        fresh.record(100.0, Some(60.0));
        assert_eq!(fresh.rates(100.5), (1.0 / 60.0, Some(60.0)));
    }

    #[test]
    fn window_late_events_land_in_their_slot_or_are_dropped() {
        let mut w = window(0.0);
        w.record(7200.0, Some(100.0));
        // A retry five minutes late still counts, in its own minute.
        w.record(6900.0, Some(200.0));
        // One a window older than the newest, in the same slot as it, is dropped.
        w.record(3600.0, Some(999.0));
        // One older than the window in a stale slot is kept out of every later window.
        w.record(3500.0, Some(999.0));
        w.record(f64::NAN, Some(999.0));
        assert_eq!(w.dropped(), 2);
        // At 7200 the window's slots run from 3660 s: 59 whole minutes.
        let (rate, handle) = w.rates(7200.0);
        assert!((rate - 2.0 / 3540.0).abs() < 1e-12, "{rate}");
        assert_eq!(handle, Some(150.0));
        // The late one leaves the window with its own minute, before the newer one.
        let (rate, handle) = w.rates(6900.0 + 3600.0);
        assert!((rate - 1.0 / 3540.0).abs() < 1e-12, "{rate}");
        assert_eq!(handle, Some(100.0));
    }

    #[test]
    fn window_survives_a_timestamp_far_in_the_future() {
        let mut w = window(0.0);
        w.record(1e9, Some(5.0));
        for minute in 0..10 {
            w.record(f64::from(minute) * 60.0, Some(100.0));
        }
        assert_eq!(w.dropped(), 0);
        let (rate, handle) = w.rates(600.0);
        assert!((rate - 10.0 / 600.0).abs() < 1e-12, "{rate}");
        assert_eq!(handle, Some(100.0));
    }

    #[test]
    fn window_forgets_after_its_length() {
        let mut w = window(0.0);
        w.record(100.0, Some(60.0));
        assert_eq!(w.rates(100.0 + 3600.0), (0.0, None));
        // The slot is reused for a new minute without the old count.
        w.record(100.0 + 3600.0, Some(30.0));
        let (rate, handle) = w.rates(100.0 + 3600.0);
        // The window's slots now run from 120 s to 3700 s.
        assert!((rate - 1.0 / 3580.0).abs() < 1e-12, "{rate}");
        assert_eq!(handle, Some(30.0));
    }

    #[test]
    fn window_memory_is_bounded() {
        let w = Window::new(Duration::ZERO, u32::MAX);
        assert_eq!(w.slots.len(), MAX_SLOTS as usize);
        assert_eq!(w.length_seconds(), 1.0);
        let mut one = Window::new(Duration::from_secs(60), 0);
        assert_eq!(one.slots.len(), 1);
        for i in 0..10_000 {
            one.record(f64::from(i), Some(1.0));
        }
        assert_eq!(one.slots.len(), 1);
        // Absurd times saturate instead of panicking.
        one.record(f64::MAX, None);
        one.record(-f64::MAX, None);
        let _ = one.rates(f64::MAX);
    }
}
