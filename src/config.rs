//! Configuration: command-line flags (each with an `ACQUIRE_EXPORTER_*` env var) and the YAML
//! config file, parsed strictly (unknown keys are errors).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use crate::layout::{HistogramLayout, LayoutError, NativeLayout};
use crate::staffing::Target;

/// Default wait-time buckets, in seconds: a few seconds to 30 minutes, with the usual
/// service-level thresholds (15, 20, 30, 60, 120, 300 s) as exact boundaries.
pub const DEFAULT_WAIT_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0,
    1200.0, 1800.0,
];

/// Default chat-duration buckets, in seconds: 30 s to 4 h.
pub const DEFAULT_DURATION_BUCKETS: &[f64] = &[
    30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0,
    7200.0, 10800.0, 14400.0,
];

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How hard a commit is made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SyncMode {
    /// A commit is written to the operating system before the 200: it survives a crash of the
    /// process (kill -9), not a power loss (SQLite `synchronous=NORMAL` in WAL mode).
    Normal,
    /// Each group commit is also flushed to disk (fsync): it survives a power loss too.
    Full,
}

/// Flags of the exporter.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Address to listen on for the webhook, /metrics and the landing page.
    #[arg(
        long = "web.listen-address",
        env = "ACQUIRE_EXPORTER_WEB_LISTEN_ADDRESS",
        default_value = "0.0.0.0:9867"
    )]
    pub listen_address: SocketAddr,

    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        env = "ACQUIRE_EXPORTER_WEB_TELEMETRY_PATH",
        default_value = "/metrics"
    )]
    pub telemetry_path: String,

    /// Exporter-toolkit web config file (TLS, basic auth for /metrics).
    #[arg(long = "web.config.file", env = "ACQUIRE_EXPORTER_WEB_CONFIG_FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Maximum number of open connections; at the cap the one idle the longest is closed to make
    /// room, and only when all are busy do new ones wait in the kernel's backlog.
    #[arg(
        long = "web.max-connections",
        env = "ACQUIRE_EXPORTER_WEB_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_connections: usize,

    /// Connections one client (an IPv4 address or an IPv6 /64) may hold; 0 for no limit. Leave
    /// it 0 behind a proxy, where every connection comes from the proxy.
    #[arg(
        long = "web.max-connections-per-client",
        env = "ACQUIRE_EXPORTER_WEB_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 0
    )]
    pub max_connections_per_client: usize,

    /// Time a client has to send a request's headers once its first byte has arrived (protects
    /// against slow clients).
    #[arg(long = "web.header-timeout", env = "ACQUIRE_EXPORTER_WEB_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Time a keep-alive connection may wait for its next request (or a new one for its first).
    #[arg(long = "web.idle-timeout", env = "ACQUIRE_EXPORTER_WEB_IDLE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Age after which a connection is closed once its current request is answered.
    #[arg(long = "web.max-connection-age", env = "ACQUIRE_EXPORTER_WEB_MAX_CONNECTION_AGE", default_value = "10m", value_parser = parse_duration)]
    pub max_connection_age: Duration,

    /// Time a request may take from its headers to the answer, body read included; also the time
    /// a client has to take the answer once it stops reading.
    #[arg(long = "web.request-timeout", env = "ACQUIRE_EXPORTER_WEB_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Path of the webhook receiver (the URL to set in Acquire's webhook settings).
    #[arg(
        long = "webhook.path",
        env = "ACQUIRE_EXPORTER_WEBHOOK_PATH",
        default_value = "/webhook"
    )]
    pub webhook_path: String,

    /// Largest webhook body accepted, in bytes; larger ones get 413.
    #[arg(
        long = "webhook.max-body-bytes",
        env = "ACQUIRE_EXPORTER_WEBHOOK_MAX_BODY_BYTES",
        default_value_t = 64 * 1024
    )]
    pub max_body_bytes: usize,

    /// Shared token senders must present (`?token=` or `Authorization: Bearer`).
    #[arg(
        long = "webhook.token",
        env = "ACQUIRE_EXPORTER_WEBHOOK_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// File holding the shared token.
    #[arg(
        long = "webhook.token-file",
        env = "ACQUIRE_EXPORTER_WEBHOOK_TOKEN_FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,

    /// Secret for the HMAC-SHA256 body signature in `x-acquire-signature`.
    #[arg(
        long = "webhook.hmac-secret",
        env = "ACQUIRE_EXPORTER_WEBHOOK_HMAC_SECRET",
        hide_env_values = true
    )]
    pub hmac_secret: Option<String>,

    /// File holding the HMAC secret.
    #[arg(
        long = "webhook.hmac-secret-file",
        env = "ACQUIRE_EXPORTER_WEBHOOK_HMAC_SECRET_FILE",
        conflicts_with = "hmac_secret"
    )]
    pub hmac_secret_file: Option<PathBuf>,

    /// YAML config file (buckets, department names, limits); embedded defaults without it.
    #[arg(long = "config.file", env = "ACQUIRE_EXPORTER_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,

    /// Check the configuration and exit: 0 when valid, 1 with the problem otherwise.
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Folder of the durable state (an SQLite database).
    #[arg(
        long = "storage.path",
        env = "ACQUIRE_EXPORTER_STORAGE_PATH",
        default_value = "data/"
    )]
    pub storage_path: PathBuf,

    /// A PostgreSQL database shared by several replicas instead of the SQLite file
    /// (`postgres://user:password@host:5432/database?sslmode=verify-full&sslrootcert=ca.pem`).
    #[arg(
        long = "storage.url",
        env = "ACQUIRE_EXPORTER_STORAGE_URL",
        hide_env_values = true,
        conflicts_with = "in_memory"
    )]
    pub storage_url: Option<String>,

    /// File holding the --storage.url (its first line), so the password stays out of process
    /// listings.
    #[arg(
        long = "storage.url-file",
        env = "ACQUIRE_EXPORTER_STORAGE_URL_FILE",
        conflicts_with_all = ["storage_url", "in_memory"]
    )]
    pub storage_url_file: Option<PathBuf>,

    /// Keep state in memory only: nothing survives a restart.
    #[arg(long = "storage.in-memory", env = "ACQUIRE_EXPORTER_STORAGE_IN_MEMORY")]
    pub in_memory: bool,

    /// Durability of a commit: `normal` survives a process crash, `full` a power loss too.
    #[arg(
        long = "storage.sync",
        env = "ACQUIRE_EXPORTER_STORAGE_SYNC",
        value_enum,
        default_value = "normal"
    )]
    pub sync: SyncMode,

    /// Raw events older than this are deleted once a snapshot covers them (de-duplication holds
    /// for as long); 0 keeps them for good.
    #[arg(long = "storage.retention", env = "ACQUIRE_EXPORTER_STORAGE_RETENTION", default_value = "35d", value_parser = parse_retention)]
    pub retention: Duration,

    /// A snapshot of the derived state after this many new events.
    #[arg(
        long = "storage.snapshot-every",
        env = "ACQUIRE_EXPORTER_STORAGE_SNAPSHOT_EVERY",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub snapshot_every: u64,

    /// A snapshot of the derived state after this much time, if any event came.
    #[arg(long = "storage.snapshot-interval", env = "ACQUIRE_EXPORTER_STORAGE_SNAPSHOT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub snapshot_interval: Duration,

    /// Rebuild the derived state from the retained events, setting aside a snapshot that
    /// cannot be read (what events older than the retention added is lost).
    #[arg(long = "storage.rebuild", env = "ACQUIRE_EXPORTER_STORAGE_REBUILD")]
    pub rebuild: bool,

    /// With --storage.in-memory: how long a delivered event is remembered to drop retries.
    #[arg(long = "storage.dedup-window", env = "ACQUIRE_EXPORTER_STORAGE_DEDUP_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub dedup_window: Duration,

    /// Log level: error, warn, info, debug or trace.
    #[arg(
        long = "log.level",
        env = "ACQUIRE_EXPORTER_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,

    /// Log format.
    #[arg(
        long = "log.format",
        env = "ACQUIRE_EXPORTER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// A repeated log line (a refused webhook, by reason; a failed commit) is written at most 10
    /// times per this window, then one line counts the rest.
    #[arg(long = "log.repeat-window", env = "ACQUIRE_EXPORTER_LOG_REPEAT_WINDOW", default_value = "1m", value_parser = parse_duration)]
    pub log_repeat_window: Duration,
}

/// The config file, as written by the user. Every key is optional; unknown keys are errors.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Department id to the name used as the `department` label.
    #[serde(default)]
    pub departments: BTreeMap<String, String>,
    /// Classic histogram buckets.
    #[serde(default)]
    pub buckets: BucketsConfig,
    /// Native histogram resolution.
    #[serde(default)]
    pub native_histograms: NativeConfig,
    /// Caps on label values.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Exemplars on the chat histograms.
    #[serde(default)]
    pub exemplars: ExemplarsConfig,
    /// The live queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// The staffing estimate.
    #[serde(default)]
    pub staffing: StaffingConfig,
}

/// `buckets:` in the config file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct BucketsConfig {
    /// Upper bounds for `acquire_chat_wait_time_seconds`, in seconds.
    pub wait_time: Option<Vec<f64>>,
    /// Upper bounds for `acquire_chat_duration_seconds`, in seconds.
    pub duration: Option<Vec<f64>>,
}

/// `native_histograms:` in the config file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct NativeConfig {
    /// Expose native histograms (protobuf scrapes only).
    pub enabled: bool,
    /// Largest ratio between neighbouring bucket bounds (1.1 = 10 % resolution).
    pub bucket_factor: f64,
    /// Most buckets per series; past it the resolution halves.
    pub max_buckets: usize,
}

impl Default for NativeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bucket_factor: 1.1,
            max_buckets: 160,
        }
    }
}

/// `limits:` in the config file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Distinct `department` values before new ones are recorded as `other`.
    pub max_departments: usize,
    /// Distinct `agent_role` values before new ones are recorded as `other`.
    pub max_agent_roles: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_departments: 200,
            max_agent_roles: 50,
        }
    }
}

/// `exemplars:` in the config file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    /// Attach the chat id of the latest observation to each bucket.
    pub enabled: bool,
}

impl Default for ExemplarsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `queue:` in the config file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// A waiting chat with no accept or close after this long is dropped and counted as expired.
    #[serde(with = "duration_text")]
    pub expire_after: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            expire_after: Duration::from_secs(4 * 3600),
        }
    }
}

/// `staffing:` in the config file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct StaffingConfig {
    /// The sliding window for arrival rates and handle times.
    #[serde(with = "duration_text")]
    pub window: Duration,
    /// Service-level targets such as `80%/60s`.
    pub targets: Vec<String>,
    /// Chats one agent handles at once.
    pub concurrency: f64,
}

impl Default for StaffingConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3600),
            targets: vec!["80%/60s".to_owned()],
            concurrency: 1.0,
        }
    }
}

/// The configuration the exporter runs with: the file's values checked and filled with defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Department id to label name.
    pub departments: BTreeMap<String, String>,
    /// The layout of the wait-time histograms (classic bounds, native buckets if enabled).
    pub wait_layout: HistogramLayout,
    /// The layout of the duration histograms.
    pub duration_layout: HistogramLayout,
    /// Cap on department values.
    pub max_departments: usize,
    /// Cap on agent-role values.
    pub max_agent_roles: usize,
    /// Exemplars on or off.
    pub exemplars: bool,
    /// Queue expiry.
    pub queue_expire_after: Duration,
    /// Staffing window.
    pub staffing_window: Duration,
    /// Staffing targets.
    pub staffing_targets: Vec<Target>,
    /// Chats per agent.
    pub concurrency: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_file(FileConfig::default()).expect("the embedded defaults are valid")
    }
}

/// A configuration problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed or has an unknown key.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the field and position.
        message: String,
    },
    /// A value is out of range.
    #[error("config file {path}: field `{field}`: {problem}")]
    Invalid {
        /// The file (`<embedded defaults>` for none).
        path: PathBuf,
        /// The field's path, such as `buckets.wait_time`.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl Settings {
    /// Read and check a config file; `None` gives the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Settings::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: FileConfig = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Settings::from_file(file).map_err(|(field, problem)| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            problem,
        })
    }

    fn from_file(file: FileConfig) -> Result<Self, (&'static str, String)> {
        let wait_bounds = file.buckets.wait_time.as_deref();
        let wait_bounds = wait_bounds.unwrap_or(DEFAULT_WAIT_BUCKETS);
        HistogramLayout::seconds(wait_bounds, None)
            .map_err(|e| layout_problem("buckets.wait_time", e))?;
        let duration_bounds = file.buckets.duration.as_deref();
        let duration_bounds = duration_bounds.unwrap_or(DEFAULT_DURATION_BUCKETS);
        HistogramLayout::seconds(duration_bounds, None)
            .map_err(|e| layout_problem("buckets.duration", e))?;
        let n = &file.native_histograms;
        // Checked even when native histograms are off.
        let native = NativeLayout::seconds(n.bucket_factor, n.max_buckets)
            .map_err(|e| layout_problem("native_histograms", e))?;
        let native = n.enabled.then_some(native);
        let wait_layout = HistogramLayout::seconds(wait_bounds, native)
            .map_err(|e| layout_problem("buckets.wait_time", e))?;
        let duration_layout = HistogramLayout::seconds(duration_bounds, native)
            .map_err(|e| layout_problem("buckets.duration", e))?;
        if file.limits.max_departments == 0 {
            return Err(("limits.max_departments", "must be at least 1".to_owned()));
        }
        if file.limits.max_agent_roles == 0 {
            return Err(("limits.max_agent_roles", "must be at least 1".to_owned()));
        }
        for (id, name) in &file.departments {
            if name.trim().is_empty() {
                return Err((
                    "departments",
                    format!("department {id:?} has an empty name"),
                ));
            }
            if name.len() > 128 {
                return Err((
                    "departments",
                    format!("the name of department {id:?} is longer than 128 bytes"),
                ));
            }
        }
        let staffing_targets = file
            .staffing
            .targets
            .iter()
            .map(|t| Target::parse(t).map_err(|e| ("staffing.targets", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if !(file.staffing.concurrency.is_finite() && file.staffing.concurrency >= 1.0) {
            return Err((
                "staffing.concurrency",
                format!(
                    "{} is not a number of chats of at least 1",
                    file.staffing.concurrency
                ),
            ));
        }
        if file.staffing.window < Duration::from_secs(60) {
            return Err(("staffing.window", "must be at least 1m".to_owned()));
        }
        if file.queue.expire_after < Duration::from_secs(60) {
            return Err(("queue.expire_after", "must be at least 1m".to_owned()));
        }
        Ok(Settings {
            departments: file.departments,
            wait_layout,
            duration_layout,
            max_departments: file.limits.max_departments,
            max_agent_roles: file.limits.max_agent_roles,
            exemplars: file.exemplars.enabled,
            queue_expire_after: file.queue.expire_after,
            staffing_window: file.staffing.window,
            staffing_targets,
            concurrency: file.staffing.concurrency,
        })
    }
}

/// The field and the message of a layout the file gives: the rules are the layout's own
/// ([`HistogramLayout::seconds`], [`NativeLayout::seconds`]), the words the file's.
fn layout_problem(bounds_field: &'static str, e: LayoutError) -> (&'static str, String) {
    match e {
        LayoutError::NoBounds
        | LayoutError::TooManyBounds(_)
        | LayoutError::BoundNotPositive(_)
        | LayoutError::BoundNotFinite(_) => (bounds_field, e.to_string()),
        LayoutError::BoundsNotIncreasing { .. } => (
            bounds_field,
            "bounds must be strictly increasing".to_owned(),
        ),
        LayoutError::BucketFactor(f) | LayoutError::BucketFactorTooLarge(f) => (
            "native_histograms.bucket_factor",
            format!("{f} is not a factor above 1"),
        ),
        LayoutError::ZeroMaxBuckets => (
            "native_histograms.max_buckets",
            "0 is too few (at least 2)".to_owned(),
        ),
        LayoutError::TooFewBuckets(n) => (
            "native_histograms.max_buckets",
            format!("{n} is too few (at least 2)"),
        ),
        LayoutError::ZeroThreshold(_) => ("native_histograms", e.to_string()),
    }
}

/// A retention: a duration, or `0` for none (keep everything).
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

/// Parse a Prometheus-style duration such as `30s`, `5m`, `1h30m`, `7d`, `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30s, 5m, 1h30m or 7d");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86400),
            "w" => Duration::from_secs(7 * 86400),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The exporter's flags alone, as the command line flattens them.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn durations() {
        let cases = [
            ("30s", Some(30_000)),
            ("5m", Some(300_000)),
            ("1h30m", Some(5_400_000)),
            ("250ms", Some(250)),
            ("7d", Some(604_800_000)),
            ("", None),
            ("5", None),
            ("m", None),
            ("5x", None),
            ("-5s", None),
        ];
        for (text, want) in cases {
            let got = parse_duration(text).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn embedded_defaults_hold_the_service_level_thresholds() {
        let s = Settings::default();
        for t in [15.0, 20.0, 30.0, 60.0, 120.0, 300.0] {
            assert!(s.wait_layout.bounds().contains(&t), "{t}");
        }
        assert_eq!(s.wait_layout.bounds().last(), Some(&1800.0));
        assert_eq!(s.duration_layout.bounds().first(), Some(&30.0));
        assert_eq!(s.duration_layout.bounds().last(), Some(&14400.0));
    }

    fn load_text(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        std::fs::write(&path, text).unwrap();
        Settings::load(Some(&path)).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: "config.yml".into(),
                message,
            },
            ConfigError::Invalid { field, problem, .. } => ConfigError::Invalid {
                path: "config.yml".into(),
                field,
                problem,
            },
            other => other,
        })
    }

    #[test]
    fn config_file_errors_name_the_field() {
        let cases = [
            (
                "unknown_top_key",
                "colour: blue\n",
                "unknown field `colour`",
            ),
            (
                "unknown_nested_key",
                "buckets:\n  wait: [1, 2]\n",
                "unknown field `wait`",
            ),
            (
                "unsorted_buckets",
                "buckets:\n  wait_time: [5, 2]\n",
                "field `buckets.wait_time`: bounds must be strictly increasing",
            ),
            (
                "negative_bucket",
                "buckets:\n  duration: [-1, 2]\n",
                "field `buckets.duration`: -1 is not a positive number of seconds",
            ),
            (
                "empty_department_name",
                "departments:\n  \"12\": \"  \"\n",
                "field `departments`: department \"12\" has an empty name",
            ),
            (
                "bad_factor",
                "native_histograms:\n  bucket_factor: 1\n",
                "field `native_histograms.bucket_factor`",
            ),
            (
                "bad_target",
                "staffing:\n  targets: [\"fast\"]\n",
                "field `staffing.targets`",
            ),
            (
                "bad_window",
                "staffing:\n  window: soon\n",
                "is not a duration",
            ),
        ];
        for (name, text, want) in cases {
            let err = load_text(text).expect_err(name).to_string();
            assert!(err.starts_with("config file config.yml"), "{name}: {err}");
            assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn config_file_values_apply() {
        let s = load_text(
            "departments:\n  \"12\": Sales\nbuckets:\n  wait_time: [10, 60]\nlimits:\n  max_departments: 3\nstaffing:\n  targets: [\"90%/20s\", \"80%/60s\"]\n  window: 30m\n",
        )
        .unwrap();
        assert_eq!(s.departments.get("12").map(String::as_str), Some("Sales"));
        assert_eq!(s.wait_layout.bounds(), [10.0, 60.0]);
        assert_eq!(s.duration_layout.bounds(), DEFAULT_DURATION_BUCKETS);
        assert_eq!(s.max_departments, 3);
        assert_eq!(s.staffing_targets.len(), 2);
        assert_eq!(s.staffing_window, Duration::from_secs(1800));
    }

    #[test]
    fn flags_parse_with_prometheus_style_names() {
        let cli = Cli::try_parse_from([
            "acquire-exporter",
            "--web.listen-address=127.0.0.1:1234",
            "--webhook.path=/hook",
            "--storage.in-memory",
            "--log.format=json",
        ])
        .unwrap();
        assert_eq!(cli.run.listen_address.port(), 1234);
        assert_eq!(cli.run.webhook_path, "/hook");
        assert!(cli.run.in_memory);
        assert_eq!(cli.run.log_format, LogFormat::Json);
    }
}
