//! Start-up: flags and files checked, the store opened and replayed, the server run until a
//! signal, and the two small subcommands' entry (`plan`, `healthcheck`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::admit::auth::{self, Secret, SenderAuth};
use crate::admit::postgres::{Postgres, Target};
use crate::admit::sqlite::Sqlite;
use crate::admit::{CommitStats, Engine, Sink, Store};
use crate::checkpoint::{self, Policy, Worker};
use crate::config::{self, LogFormat, RunArgs, Settings};
use crate::expose::Exposition;
use crate::http::webconfig::WebConfig;
use crate::http::{AppState, app};
use crate::record::Metrics;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A secret flag or file.
    #[error(transparent)]
    Secret(#[from] auth::AuthConfigError),
    /// The web config file.
    #[error(transparent)]
    WebConfig(#[from] crate::http::webconfig::WebConfigError),
    /// The store.
    #[error(transparent)]
    Store(#[from] crate::admit::StoreError),
    /// The stored state.
    #[error(transparent)]
    Load(#[from] crate::checkpoint::LoadError),
    /// Loading failed otherwise.
    #[error("loading the stored state: {0}")]
    Loading(String),
    /// The log level.
    #[error("--log.level: {0}")]
    LogLevel(String),
    /// The listen address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A path flag.
    #[error("{flag}: {problem}")]
    Path {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "acquire-exporter",
    version,
    about = "Prometheus exporter for Acquire chat webhooks: wait and duration histograms by department and agent role",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A subcommand; without one the exporter runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of the exporter itself.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands besides running the exporter.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Answer the staffing question offline: agents needed for an arrival rate, a handle time
    /// and a service-level target (Erlang C, or Erlang A with --patience), or for every hour of
    /// the week from past chats (--history).
    Plan(crate::plan::PlanArgs),
    /// A consistent copy of the store, taken while the exporter runs (restore: stop the
    /// exporter and put the copy in place of the database file).
    Backup {
        /// The file to write (it must not exist).
        #[arg(long)]
        to: PathBuf,
        /// Folder of the store to copy.
        #[arg(
            long = "storage.path",
            env = "ACQUIRE_EXPORTER_STORAGE_PATH",
            default_value = "data/"
        )]
        storage_path: PathBuf,
    },
    /// Exit 0 when the exporter at URL answers its health check (for container health checks).
    Healthcheck {
        /// The health endpoint to ask: http:// or https://.
        #[arg(
            long,
            env = "ACQUIRE_EXPORTER_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:9867/-/healthy"
        )]
        url: String,
        /// Over HTTPS, trust the authorities of this PEM file instead of the system's.
        #[arg(long = "ca-file", env = "ACQUIRE_EXPORTER_HEALTHCHECK_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// Over HTTPS, check neither the certificate nor its name (still encrypted): for a
        /// check of 127.0.0.1 whose certificate names the public host.
        #[arg(long = "insecure-skip-verify")]
        insecure_skip_verify: bool,
    },
}

/// The binary's entry point: parse the command line and run.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Plan(args)) => match crate::plan::run(&args) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("acquire-exporter plan: {e}");
                ExitCode::from(2)
            }
        },
        Some(Command::Backup { to, storage_path }) => {
            match crate::admit::sqlite::backup(&storage_path, &to) {
                Ok(bytes) => {
                    println!(
                        "backed up {} to {} ({bytes} bytes)",
                        storage_path.join(crate::admit::sqlite::FILE_NAME).display(),
                        to.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("acquire-exporter backup: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Command::Healthcheck {
            url,
            ca_file,
            insecure_skip_verify,
        }) => match crate::healthcheck::check(&crate::healthcheck::Options {
            url,
            ca_file,
            insecure_skip_verify,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::FAILURE
            }
        },
        None => match run(cli.run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("acquire-exporter: {e}");
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn init_logging(args: &RunArgs) -> Result<(), StartError> {
    crate::logthrottle::set_window(args.log_repeat_window);
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .map_err(|e| StartError::LogLevel(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    }
    .map_err(|e| StartError::LogLevel(e.to_string()))
}

fn secret(
    value: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<Option<Secret>, StartError> {
    Ok(match (value, file) {
        (Some(v), _) => Some(Secret::new(v.clone())?),
        (None, Some(path)) => Some(Secret::from_file(path)?),
        (None, None) => None,
    })
}

fn check_path(flag: &'static str, path: &str) -> Result<(), StartError> {
    if !path.starts_with('/') || path.contains(['?', '#', '*', '{', '}']) {
        return Err(StartError::Path {
            flag,
            problem: format!("{path:?} must be an absolute path like /webhook"),
        });
    }
    Ok(())
}

/// Everything built from the flags before serving.
struct Prepared {
    settings: Settings,
    auth: SenderAuth,
    web_config: Option<WebConfig>,
}

fn prepare(args: &RunArgs) -> Result<Prepared, StartError> {
    check_path("--webhook.path", &args.webhook_path)?;
    check_path("--web.telemetry-path", &args.telemetry_path)?;
    if args.webhook_path == args.telemetry_path {
        return Err(StartError::Path {
            flag: "--webhook.path",
            problem: "must differ from --web.telemetry-path".into(),
        });
    }
    let settings = Settings::load(args.config_file.as_deref())?;
    let auth = SenderAuth::new(
        secret(&args.token, &args.token_file)?,
        secret(&args.hmac_secret, &args.hmac_secret_file)?,
    );
    let web_config = args
        .web_config_file
        .as_deref()
        .map(WebConfig::load)
        .transpose()?;
    if let Some(web) = &web_config {
        web.tls_acceptor()?;
    }
    Ok(Prepared {
        settings,
        auth,
        web_config,
    })
}

/// Run the exporter until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> Result<(), StartError> {
    init_logging(&args)?;
    let prepared = prepare(&args)?;
    if args.check_config {
        println!("configuration is valid");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("acquire-exporter")
        .build()
        .map_err(|source| StartError::Listen {
            addr: args.listen_address,
            source,
        })?;
    runtime.block_on(serve(args, prepared))
}

async fn serve(args: RunArgs, prepared: Prepared) -> Result<(), StartError> {
    let Prepared {
        settings,
        auth,
        web_config,
    } = prepared;
    if !auth.is_enabled() {
        tracing::warn!(
            "webhook authentication is off: anyone who can reach {} can write into the metrics; set --webhook.token or --webhook.hmac-secret",
            args.webhook_path
        );
    }
    let tls = match &web_config {
        Some(w) => w.tls_acceptor()?,
        None => None,
    };
    // The listener comes first: while the stored state loads, deliveries get 503 (and are
    // retried) rather than a refused connection.
    let listener = tokio::net::TcpListener::bind(args.listen_address)
        .await
        .map_err(|source| StartError::Listen {
            addr: args.listen_address,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartError::Listen {
        addr: args.listen_address,
        source,
    })?;
    // Before "listening": from then on a SIGTERM is a graceful shutdown.
    let signal = crate::http::serve::shutdown_signal();
    let metrics = Arc::new(Metrics::new(&settings));
    let exposition = Arc::new(Exposition::new(metrics.clone()).with_process_metrics());
    let state = Arc::new(AppState {
        metrics: metrics.clone(),
        exposition,
        store: OnceLock::new(),
        auth,
        web_config,
        max_body_bytes: args.max_body_bytes,
        webhook_path: args.webhook_path.clone(),
        telemetry_path: args.telemetry_path.clone(),
        request_timeout: args.request_timeout,
    });
    tracing::info!(
        address = %local,
        webhook = %args.webhook_path,
        metrics = %args.telemetry_path,
        tls = tls.is_some(),
        storage = if args.in_memory { "memory".to_owned() } else if args.storage_url.is_some() || args.storage_url_file.is_some() { "postgres".to_owned() } else { args.storage_path.display().to_string() },
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    let (failed, load_failed) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        tokio::select! {
            () = signal => {}
            _ = load_failed => {}
        }
    };
    let log_summaries = tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            crate::logthrottle::flush();
        }
    });
    let limits = crate::http::serve::ServerLimits {
        header_read_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        send_timeout: args.request_timeout,
        max_connection_age: args.max_connection_age,
        max_connections: args.max_connections,
        max_connections_per_client: args.max_connections_per_client,
        tls_handshake_timeout: args.header_timeout,
    };
    let server = tokio::spawn(crate::http::serve::serve(
        listener,
        app(state.clone()),
        tls,
        limits,
        stop,
        Duration::from_secs(10),
    ));
    let loading = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || load(&args, &settings, metrics))
    };
    let loading_started = Instant::now();
    let Started {
        store,
        worker,
        loaded,
        location,
    } = match loading.await {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => {
            let _ = failed.send(());
            let _ = server.await;
            return Err(e);
        }
        Err(e) => {
            let _ = failed.send(());
            let _ = server.await;
            return Err(StartError::Loading(e.to_string()));
        }
    };
    let _ = state.store.set(store.clone());
    // From here on deliveries are admitted: what the tests and the operators wait for.
    match loaded {
        Some(loaded) => tracing::info!(
            snapshot = loaded.snapshot,
            events = loaded.replayed,
            rebuilt = loaded.rebuilt,
            seconds = loading_started.elapsed().as_secs_f64(),
            storage = %location,
            "state loaded"
        ),
        None => tracing::info!(storage = "memory", "state loaded"),
    }
    let served = server.await;
    if let Some(worker) = worker {
        worker.stop();
    }
    log_summaries.abort();
    crate::logthrottle::finish();
    store.close().await;
    match served {
        Ok(Err(e)) => tracing::error!(error = %e, "server stopped with an error"),
        Err(e) => tracing::error!(error = %e, "server stopped with an error"),
        Ok(Ok(())) => {}
    }
    tracing::info!("stopped");
    Ok(())
}

/// What a start made: the store admitting, and for a durable one the snapshot worker and how
/// the state was loaded.
struct Started {
    store: Arc<Store>,
    worker: Option<Worker>,
    loaded: Option<checkpoint::Loaded>,
    /// Where the state lives, for the log: the database file, or the server (never a password).
    location: String,
}

/// The stored state loaded into `metrics`, admission started, and the snapshot worker for a
/// durable store.
fn load(args: &RunArgs, settings: &Settings, metrics: Arc<Metrics>) -> Result<Started, StartError> {
    let started = Instant::now();
    let sink: Sink = {
        let metrics = metrics.clone();
        Arc::new(move |e| metrics.apply(e))
    };
    if args.in_memory {
        return Ok(Started {
            store: Arc::new(Store::in_memory(args.dedup_window, sink)),
            worker: None,
            loaded: None,
            location: "memory".to_owned(),
        });
    }
    let on_commit = {
        let metrics = metrics.clone();
        move |stats: CommitStats| metrics.committed(stats.new, stats.seconds)
    };
    let shared = match (&args.storage_url, &args.storage_url_file) {
        (Some(url), _) => Some(Target::parse(url)?),
        (None, Some(file)) => Some(Target::from_file(file)?),
        (None, None) => None,
    };
    let (engine, location): (Arc<dyn Engine>, String) = match shared {
        Some(target) => {
            let location = target.server().to_owned();
            (
                Arc::new(Postgres::open(target, Box::new(on_commit))?),
                location,
            )
        }
        None => {
            let engine = Sqlite::open(&args.storage_path, args.sync, Box::new(on_commit))?;
            let location = args.storage_path.join(crate::admit::sqlite::FILE_NAME);
            (Arc::new(engine), location.display().to_string())
        }
    };
    let loaded = checkpoint::load(&*engine, &metrics, args.rebuild, &location)?;
    metrics.stored(engine.events_held()? as i64);
    let store = Arc::new(Store::resume(engine.clone(), sink, loaded.last)?);
    let policy = Policy {
        every_events: args.snapshot_every,
        interval: args.snapshot_interval,
        retention: (!args.retention.is_zero()).then_some(args.retention),
    };
    let worker = Worker::start(
        engine,
        settings.clone(),
        policy,
        loaded.snapshot,
        metrics.clone(),
    )
    .map_err(|e| StartError::Loading(e.to_string()))?;
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "state read");
    Ok(Started {
        store,
        worker: Some(worker),
        loaded: Some(loaded),
        location,
    })
}
