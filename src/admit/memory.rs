//! The memory-only engine: nothing on disk, nothing survives a restart. It remembers event keys
//! for a window or a number of deliveries (two generations of fixed-size key tables), so its
//! memory stays flat whatever the traffic.

use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Admission, BoxFuture, Engine, Result, Sink, StoreError, StoredSnapshot};
use crate::event::{Admitted, ChatEvent, Seq};

/// The memory-only engine.
pub struct Memory {
    state: Mutex<State>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").finish_non_exhaustive()
    }
}

struct State {
    dedup: MemoryDedup,
    sink: Option<Sink>,
    last: Seq,
    epoch_ms: i64,
}

impl Memory {
    /// An engine that drops retries of an event seen within `window`.
    pub fn new(window: Duration) -> Self {
        Memory {
            state: Mutex::new(State {
                dedup: MemoryDedup::new(window),
                sink: None,
                last: 0,
                epoch_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
            }),
        }
    }

    fn admit_now(&self, event: ChatEvent) -> Result<Admission> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sink) = s.sink.clone() else {
            return Err(StoreError::Closed);
        };
        if !s.dedup.insert(&event, Instant::now()) {
            return Ok(Admission::Duplicate);
        }
        s.last += 1;
        // Under the lock: events reach the sink in the order they were admitted.
        sink(&Admitted { seq: s.last, event });
        Ok(Admission::New)
    }
}

impl Engine for Memory {
    fn replay(&self, after: Seq, _through: Seq, _each: &mut dyn FnMut(&Admitted)) -> Result<Seq> {
        Ok(after)
    }

    fn start(&self, sink: Sink, _after: Seq) -> Result<()> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).sink = Some(sink);
        Ok(())
    }

    fn epoch_ms(&self) -> i64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .epoch_ms
    }

    fn last_seq(&self) -> Result<Seq> {
        Ok(self.state.lock().unwrap_or_else(|e| e.into_inner()).last)
    }

    fn events_held(&self) -> Result<u64> {
        Ok(0)
    }

    // Nothing survives a restart: no snapshots to keep, no events to prune.
    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>> {
        Ok(None)
    }

    fn save_snapshot(&self, _seq: Seq, _bytes: &[u8]) -> Result<()> {
        Ok(())
    }

    fn drop_snapshots(&self) -> Result<()> {
        Ok(())
    }

    fn prune(&self, _before_ms: i64, _through: Seq, _batch: usize) -> Result<u64> {
        Ok(0)
    }

    fn admit(&self, event: ChatEvent) -> BoxFuture<'_, Result<Admission>> {
        // Decided and recorded before the future is returned: dropping it changes nothing.
        Box::pin(std::future::ready(self.admit_now(event)))
    }

    fn is_healthy(&self) -> bool {
        true
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).sink = None;
        Box::pin(std::future::ready(()))
    }

    fn path(&self) -> Option<&Path> {
        None
    }
}

/// Slots of one generation's key table: 8 MiB, allocated once.
const TABLE_SLOTS: usize = 1 << 20;
/// Keys one generation takes before it rotates: half the slots, so probes stay short.
const KEYS_PER_GENERATION: usize = TABLE_SLOTS / 2;

/// Remembers event keys in two generations of fixed size: a generation rotates out when it is one
/// window old or holds [`KEYS_PER_GENERATION`] keys, so a key is recognised for at least one
/// window or that many later deliveries, whichever comes first, and memory is 16 MiB whatever
/// the traffic (a growing set would hold 8 bytes and more per event of the window).
#[derive(Debug)]
struct MemoryDedup {
    hasher: RandomState,
    current: KeyTable,
    previous: KeyTable,
    rotated: Instant,
    window: Duration,
}

impl MemoryDedup {
    fn new(window: Duration) -> Self {
        MemoryDedup {
            hasher: RandomState::new(),
            current: KeyTable::new(),
            previous: KeyTable::new(),
            rotated: Instant::now(),
            window,
        }
    }

    /// True when the key is new. A 64-bit keyed hash stands for the key: two different events
    /// collide with a probability near n²/2⁶⁵ (1e-8 for a million keys remembered).
    fn insert(&mut self, e: &ChatEvent, now: Instant) -> bool {
        if now.duration_since(self.rotated) >= self.window
            || self.current.len >= KEYS_PER_GENERATION
        {
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
            self.rotated = now;
        }
        let key = self.hasher.hash_one((&e.account_id, e.kind, &e.chat_id));
        !self.previous.contains(key) && self.current.insert(key)
    }
}

/// An open-addressing set of keyed hashes (linear probing, 0 marks a free slot).
struct KeyTable {
    slots: Box<[u64]>,
    len: usize,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable").field("len", &self.len).finish()
    }
}

impl KeyTable {
    fn new() -> Self {
        // Zeroed memory comes from the kernel untouched: pages count once a key lands on them.
        KeyTable {
            slots: vec![0; TABLE_SLOTS].into_boxed_slice(),
            len: 0,
        }
    }

    /// The slot holding `key`, or the free slot where it would go. The table is never more than
    /// half full, so a free slot is always found.
    fn slot(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        // The low bits of a keyed SipHash are as uniform as the high ones.
        let mut i = key as usize & mask;
        while self.slots[i] != 0 && self.slots[i] != key {
            i = (i + 1) & mask;
        }
        i
    }

    fn contains(&self, key: u64) -> bool {
        let key = key.max(1);
        self.slots[self.slot(key)] == key
    }

    /// True when the key was not there.
    fn insert(&mut self, key: u64) -> bool {
        let key = key.max(1);
        let i = self.slot(key);
        if self.slots[i] == key {
            return false;
        }
        self.slots[i] = key;
        self.len += 1;
        true
    }

    fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(0);
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::admit::Store;
    use crate::event::ChatKind;

    fn close(chat: &str, wait: f64) -> ChatEvent {
        ChatEvent {
            account_id: "10111".into(),
            wait_seconds: Some(wait),
            ..ChatEvent::empty(ChatKind::Close, chat)
        }
    }

    #[tokio::test]
    async fn memory_store_deduplicates_within_its_window() {
        let store = Store::in_memory(Duration::from_secs(3600), Arc::new(|_| {}));
        assert_eq!(store.admit(close("1", 2.0)).await.unwrap(), Admission::New);
        assert_eq!(
            store.admit(close("1", 2.0)).await.unwrap(),
            Admission::Duplicate
        );
        assert_eq!(store.admit(close("2", 2.0)).await.unwrap(), Admission::New);
    }

    #[test]
    fn memory_dedup_remembers_a_generation_of_keys_then_forgets_by_count() {
        let mut d = MemoryDedup::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let first = close("first", 1.0);
        assert!(d.insert(&first, t0));
        for i in 1..KEYS_PER_GENERATION {
            assert!(d.insert(&close(&i.to_string(), 1.0), t0), "key {i} is new");
        }
        // The first generation is full and rotates: its keys are still known.
        assert!(!d.insert(&first, t0), "known one generation later");
        assert!(!d.insert(&close("1", 1.0), t0));
        for i in KEYS_PER_GENERATION..2 * KEYS_PER_GENERATION {
            assert!(d.insert(&close(&i.to_string(), 1.0), t0), "key {i} is new");
        }
        let recent = close(&(2 * KEYS_PER_GENERATION - 1).to_string(), 1.0);
        assert!(!d.insert(&recent, t0), "a recent key is known");
        assert!(d.insert(&first, t0), "forgotten two generations later");
    }

    #[test]
    fn memory_dedup_forgets_after_two_windows() {
        let mut d = MemoryDedup::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let e = close("1", 1.0);
        assert!(d.insert(&e, t0));
        assert!(
            !d.insert(&e, t0 + Duration::from_secs(15)),
            "still known one window later"
        );
        assert!(
            d.insert(&e, t0 + Duration::from_secs(31)),
            "forgotten after two windows"
        );
    }
}
