//! Start-up: flags and files checked, the store opened and replayed, the server run until a
//! signal, and the two small subcommands' entry (`plan`, `healthcheck`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::admit::auth::{self, Secret, SenderAuth};
use crate::admit::{Store, postgres};
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
    /// Exit 0 when the exporter at URL answers its health check (for container health checks).
    Healthcheck {
        /// The health endpoint to ask.
        #[arg(long, default_value = "http://127.0.0.1:9867/-/healthy")]
        url: String,
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
        Some(Command::Healthcheck { url }) => match healthcheck(&url) {
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
    let metrics = Arc::new(Metrics::new(&settings));
    let exposition = Arc::new(Exposition::new(metrics.clone()).with_process_metrics());
    let started = Instant::now();
    let sink: crate::admit::Sink = {
        let metrics = metrics.clone();
        Arc::new(move |e| metrics.apply(e))
    };
    let on_commit = {
        let metrics = metrics.clone();
        move |stats: crate::admit::CommitStats| metrics.committed(stats.new, stats.seconds)
    };
    let shared = match (&args.storage_url, &args.storage_url_file) {
        (Some(url), _) => Some(postgres::Target::parse(url)?),
        (None, Some(file)) => Some(postgres::Target::from_file(file)?),
        (None, None) => None,
    };
    let store = if args.in_memory {
        Store::in_memory(args.dedup_window, sink)
    } else if let Some(target) = shared {
        let server = target.server().to_owned();
        let engine = postgres::Postgres::open(target, Box::new(on_commit))?;
        let (store, replayed) = Store::start(Arc::new(engine), sink)?;
        metrics.stored(replayed as i64);
        tracing::info!(
            events = replayed,
            seconds = started.elapsed().as_secs_f64(),
            server = %server,
            "state loaded"
        );
        store
    } else {
        let (store, replayed) = Store::open(&args.storage_path, args.sync, sink, on_commit)?;
        metrics.stored(replayed as i64);
        tracing::info!(
            events = replayed,
            seconds = started.elapsed().as_secs_f64(),
            path = %args.storage_path.display(),
            "state loaded"
        );
        store
    };
    let store = Arc::new(store);
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
    let shutdown = crate::http::serve::shutdown_signal();
    tracing::info!(
        address = %local,
        webhook = %args.webhook_path,
        metrics = %args.telemetry_path,
        tls = tls.is_some(),
        storage = if args.in_memory { "memory".to_owned() } else if store.path().is_none() { "postgres".to_owned() } else { args.storage_path.display().to_string() },
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );

    let state = Arc::new(AppState {
        metrics,
        exposition,
        store: store.clone(),
        auth,
        web_config,
        max_body_bytes: args.max_body_bytes,
        webhook_path: args.webhook_path.clone(),
        telemetry_path: args.telemetry_path.clone(),
        request_timeout: args.request_timeout,
    });
    let limits = crate::http::serve::ServerLimits {
        header_read_timeout: args.header_timeout,
        max_connections: args.max_connections,
        tls_handshake_timeout: args.header_timeout,
    };
    let served = crate::http::serve::serve(
        listener,
        app(state),
        tls,
        limits,
        shutdown,
        Duration::from_secs(10),
    )
    .await;
    store.close().await;
    if let Err(e) = served {
        tracing::error!(error = %e, "server stopped with an error");
    }
    tracing::info!("stopped");
    Ok(())
}

/// GET `url` (plain http) and succeed on a 2xx answer.
fn healthcheck(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    match &head[9..10] {
        b"2" => Ok(()),
        _ => Err(String::from_utf8_lossy(&head).into_owned()),
    }
}
