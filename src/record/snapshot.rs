//! The record stage's state as one value, to write at a sequence number and read back: every
//! histogram (classic and native buckets, sums, counts, exemplars), every counter derived from
//! the events, the label values admitted under the caps, the live queue, the staffing windows
//! and the hour-of-week history.
//!
//! Bytes: a magic, a format version, a SHA-256 of the payload, the payload (postcard). A reader
//! refuses a newer version or a checksum that does not match, with what it found; it never
//! reads a damaged snapshot as an empty one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::event::Seq;

/// The first bytes of every snapshot.
const MAGIC: &[u8; 4] = b"AQSN";

/// The format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Why a snapshot cannot be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SnapshotError {
    /// Not a snapshot at all.
    #[error("not a snapshot (no header)")]
    NotASnapshot,
    /// Written by a newer build.
    #[error("snapshot format {found} is newer than this exporter's ({supported})")]
    NewerFormat {
        /// The version found.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The bytes are not the ones written.
    #[error("snapshot checksum does not match: the snapshot is damaged")]
    Checksum,
    /// The payload does not decode.
    #[error("snapshot payload does not decode: {0}")]
    Payload(String),
}

/// The settings that shape the derived state: a state built under other settings cannot be
/// continued under these.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// Classic bounds of the wait histogram.
    pub wait_bounds: Vec<f64>,
    /// Classic bounds of the duration histogram.
    pub duration_bounds: Vec<f64>,
    /// Native buckets: (schema, max buckets, zero threshold), if enabled.
    pub native: Option<(i32, u64, f64)>,
    /// Exemplars on or off.
    pub exemplars: bool,
    /// Department id -> name.
    pub departments: Vec<(String, String)>,
    /// The department label's cap.
    pub max_departments: u64,
    /// The agent role label's cap.
    pub max_agent_roles: u64,
    /// The queue's expiry time, in milliseconds.
    pub expire_after_ms: u64,
    /// The staffing window, in milliseconds.
    pub staffing_window_ms: u64,
}

impl Fingerprint {
    /// The fingerprint of `settings`.
    pub fn of(settings: &Settings) -> Self {
        let native = settings
            .wait_layout
            .native()
            .map(|n| (n.schema(), n.max_buckets() as u64, n.zero_threshold()));
        Fingerprint {
            wait_bounds: settings.wait_layout.bounds().to_vec(),
            duration_bounds: settings.duration_layout.bounds().to_vec(),
            native,
            exemplars: settings.exemplars,
            departments: settings
                .departments
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            max_departments: settings.max_departments as u64,
            max_agent_roles: settings.max_agent_roles as u64,
            expire_after_ms: settings.queue_expire_after.as_millis() as u64,
            staffing_window_ms: settings.staffing_window.as_millis() as u64,
        }
    }

    /// What differs between `self` (the snapshot's) and `now` (the settings'), in words.
    pub fn differences(&self, now: &Fingerprint) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.wait_bounds != now.wait_bounds {
            out.push("buckets.wait_time");
        }
        if self.duration_bounds != now.duration_bounds {
            out.push("buckets.duration");
        }
        if self.native != now.native {
            out.push("native_histograms");
        }
        if self.exemplars != now.exemplars {
            out.push("exemplars");
        }
        if self.departments != now.departments {
            out.push("departments");
        }
        if (self.max_departments, self.max_agent_roles)
            != (now.max_departments, now.max_agent_roles)
        {
            out.push("limits");
        }
        if self.expire_after_ms != now.expire_after_ms {
            out.push("queue.expire_after");
        }
        if self.staffing_window_ms != now.staffing_window_ms {
            out.push("staffing.window");
        }
        out
    }
}

/// The whole derived state at one sequence number.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct State {
    /// The last event applied.
    pub seq: Seq,
    /// When the store began (seconds since the epoch): where staffing windows start.
    pub epoch: f64,
    /// The settings the state was built under.
    pub fingerprint: Fingerprint,
    /// The department label's values.
    pub departments: CappedState,
    /// The agent role label's values.
    pub roles: CappedState,
    /// Events recorded as `other`: (department, agent role).
    pub overflow: (u64, u64),
    /// Closed chats without a wait, per department.
    pub unanswered: Vec<(String, u64)>,
    /// The chat histograms.
    pub series: Vec<SeriesState>,
    /// The live queue and the staffing windows.
    pub queue: QueueState,
    /// The hour-of-week history: per department, its hours (since the epoch) and totals.
    pub history: Vec<(String, Vec<(i64, HourState)>)>,
    /// The first and last hour the history covers.
    pub history_covered: Option<(i64, i64)>,
}

/// A capped label's values.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct CappedState {
    /// Raw value -> label value.
    pub known: Vec<(String, String)>,
    /// Label values handed out.
    pub values: Vec<String>,
}

/// One (department, agent role) series.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SeriesState {
    /// Department label value.
    pub department: String,
    /// Agent role label value.
    pub role: String,
    /// The wait histogram.
    pub wait: HistogramState,
    /// The duration histogram.
    pub duration: HistogramState,
}

/// One chat histogram.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HistogramState {
    /// Observations per classic bucket, `+Inf` last.
    pub counts: Vec<u64>,
    /// Newest exemplar per classic bucket that has one.
    pub exemplars: Vec<ExemplarState>,
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Native buckets.
    pub native: Option<NativeState>,
}

/// An exemplar.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ExemplarState {
    /// Its classic bucket.
    pub bucket: u32,
    /// The chat id.
    pub chat_id: String,
    /// The observed value.
    pub value: f64,
    /// When, seconds since the epoch.
    pub seconds: i64,
    /// And nanoseconds.
    pub nanos: u32,
}

/// Native buckets.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct NativeState {
    /// Schema now.
    pub schema: i32,
    /// Zero bucket threshold.
    pub zero_threshold: f64,
    /// Zero bucket count.
    pub zero_count: u64,
    /// (index, count) of positive buckets.
    pub positive: Vec<(i32, u64)>,
    /// (index, count) of negative buckets.
    pub negative: Vec<(i32, u64)>,
}

/// The live queue.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct QueueState {
    /// The newest event time seen.
    pub frontier: f64,
    /// (chat, department, since) of the waiting chats.
    pub waiting: Vec<(String, String, f64)>,
    /// (hash of the chat id, when) of the finished chats remembered, oldest first.
    pub finished: Vec<(u64, f64)>,
    /// Departments seen in the queue or the staffing window.
    pub departments: Vec<String>,
    /// Per-department staffing state.
    pub staffing: Vec<DepartmentState>,
    /// Accept-time histograms.
    pub accept_time: Vec<(String, ClassicState)>,
    /// Expired chats.
    pub expired: Vec<(String, u64)>,
    /// Starts dropped at the cap.
    pub dropped_starts: u64,
}

/// One department's staffing state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DepartmentState {
    /// Department label value.
    pub department: String,
    /// Its window.
    pub window: WindowState,
    /// (agent, last seen).
    pub agents: Vec<(String, f64)>,
}

/// A staffing window.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct WindowState {
    /// Slot width, seconds.
    pub width: f64,
    /// (index, arrivals, closed, handle sum) per slot.
    pub slots: Vec<(i64, u64, u64, f64)>,
    /// Coverage start.
    pub start: Option<f64>,
    /// Events dropped.
    pub dropped: u64,
}

/// A classic histogram.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ClassicState {
    /// (upper bound, count), `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    /// Sum.
    pub sum: f64,
    /// Count.
    pub count: u64,
}

/// One hour's totals.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HourState {
    /// Arrivals.
    pub arrivals: u64,
    /// Answered.
    pub answered: u64,
    /// Abandoned.
    pub abandoned: u64,
    /// Sum of handle times.
    pub handle_seconds: f64,
    /// Sum of times in queue.
    pub queue_seconds: f64,
}

/// The bytes of a state: the header, then the payload compressed (zlib, fastest level: a state
/// repeats itself, ids and hours most of all).
pub fn encode(state: &State) -> Vec<u8> {
    use std::io::Write as _;
    // A Vec grows as needed: postcard only fails to serialise into one on a serde error of
    // the types themselves, which plain data cannot raise; nor does writing into a Vec fail.
    let plain = postcard::to_allocvec(state).unwrap_or_default();
    let mut z = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(plain.len() / 4),
        flate2::Compression::fast(),
    );
    let _ = z.write_all(&plain);
    let payload = z.finish().unwrap_or_default();
    let mut out = Vec::with_capacity(payload.len() + 38);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

/// The state in `bytes`, checked.
pub fn decode(bytes: &[u8]) -> Result<State, SnapshotError> {
    let header = 4 + 2 + 32;
    if bytes.len() < header || &bytes[..4] != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version > FORMAT_VERSION {
        return Err(SnapshotError::NewerFormat {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let payload = &bytes[header..];
    if Sha256::digest(payload).as_slice() != &bytes[6..header] {
        return Err(SnapshotError::Checksum);
    }
    let mut plain = Vec::with_capacity(payload.len() * 4);
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(payload), &mut plain)
        .map_err(|e| SnapshotError::Payload(e.to_string()))?;
    postcard::from_bytes(&plain).map_err(|e| SnapshotError::Payload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            seq: 42,
            epoch: 1_700_000_000.5,
            fingerprint: Fingerprint::of(&Settings::default()),
            departments: CappedState {
                known: vec![("12".into(), "Sales".into())],
                values: vec!["Sales".into()],
            },
            roles: CappedState::default(),
            overflow: (1, 2),
            unanswered: vec![("Sales".into(), 3)],
            series: Vec::new(),
            queue: QueueState::default(),
            history: Vec::new(),
            history_covered: None,
        }
    }

    #[test]
    fn a_state_reads_back_as_written() {
        let s = state();
        assert_eq!(decode(&encode(&s)), Ok(s));
    }

    #[test]
    fn damaged_newer_and_foreign_bytes_are_refused_by_name() {
        let good = encode(&state());
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(decode(&flipped), Err(SnapshotError::Checksum));
        let mut newer = good.clone();
        newer[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert_eq!(
            decode(&newer),
            Err(SnapshotError::NewerFormat {
                found: FORMAT_VERSION + 1,
                supported: FORMAT_VERSION
            })
        );
        assert_eq!(decode(b"SQLite format 3"), Err(SnapshotError::NotASnapshot));
        assert_eq!(decode(&good[..20]), Err(SnapshotError::NotASnapshot));
    }

    #[test]
    fn a_changed_layout_shows_in_the_differences() {
        let before = Fingerprint::of(&Settings::default());
        let settings = Settings {
            wait_layout: crate::layout::HistogramLayout::seconds(&[5.0, 50.0], None).unwrap(),
            exemplars: false,
            ..Settings::default()
        };
        let after = Fingerprint::of(&settings);
        assert_eq!(
            before.differences(&after),
            ["buckets.wait_time", "native_histograms", "exemplars"]
        );
        assert!(before.differences(&before).is_empty());
    }
}
